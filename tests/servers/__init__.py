"""Loopback servers that tests start and stop (127.0.0.1 only, free ports)."""
