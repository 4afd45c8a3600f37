"""Whole pipelines, built from the transforms package and run by the CLI."""
