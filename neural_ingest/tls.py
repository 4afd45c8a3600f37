"""TLS settings said plainly: a warning on every run that turns certificate checks off, a CA bundle
that does not exist named as such, and https:// against a plain-HTTP node told apart from an
unreachable one."""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from neural_ingest.redact import redact_url

log = logging.getLogger("neural_ingest.tls")

PROBE_TIMEOUT = 5.0  # seconds; only bounds a node that accepts and never answers, on an error path


def ca_certs_problem(field: str, ca_certs: str | None) -> str | None:
    """``sink.ca_certs: /path does not exist`` when the configured CA bundle is missing."""
    if ca_certs and not os.path.exists(os.path.expanduser(ca_certs)):
        return f"{field}: {ca_certs} does not exist: give the path of the CA bundle (PEM) that signed the server's certificate"
    return None


def speaks_plain_http(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the server behind an https:// URL answers a plain HTTP request (it does not speak TLS)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    if not host:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            return s.recv(5) == b"HTTP/"
    except OSError:
        return False


NODE_TLS = "enable TLS on the node (plugins.security.ssl.http.enabled)"


def plain_http_problem(field: str, hosts: Iterable[str], enable: str = NODE_TLS) -> str | None:
    """``sink.hosts: https://h:p speaks plain HTTP ...`` for the first https URL whose server does."""
    for h in hosts:
        if h.startswith("https://") and speaks_plain_http(h):
            plain = redact_url("http://" + h[len("https://"):])
            return (
                f"{field}: {redact_url(h)} speaks plain HTTP, not TLS: use {plain}, or {enable}"
            )
    return None


def ssl_problem(where: str, host: str, err: Exception, ca_certs: str | None) -> str:
    """A TLS failure as one sentence with its fix (certificate not trusted, wrong name, other)."""
    text = str(err)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        if "match" in text.lower() or "mismatch" in text.lower():
            return (
                f"the TLS certificate of {host} is not issued for that name: "
                f"connect with the name on the certificate ({where}.hosts)"
            )
        if ca_certs:
            return (
                f"the TLS certificate of {host} is not signed by {where}.ca_certs ({ca_certs}): give the CA bundle that signed it"
            )
        return f"the TLS certificate of {host} is not trusted: set {where}.ca_certs to the CA bundle (PEM) that signed it"
    return f"TLS to {host} failed ({type(err).__name__}): check that the node serves TLS on that port and {where}.ca_certs"


def _unverified(where: str, block: Any) -> str | None:
    if getattr(block, "verify_certs", True) is not False:
        return None
    hosts = getattr(block, "hosts", None) or [getattr(block, "url", "")]
    shown = ", ".join(redact_url(h) for h in hosts)
    if not any(h.startswith("https://") for h in hosts):
        return (
            f"{where}.verify_certs is false, and {shown} is plain HTTP without TLS anyway: "
            "traffic and credentials can be read on the way"
        )
    return (
        f"{where}.verify_certs is false: the TLS certificate of {shown} is not checked "
        f"(traffic and credentials can be intercepted); give {where}.ca_certs instead"
    )


def tls_warnings(cfg: Any) -> list[str]:
    """One line per config block (source, each encoder, sink) that turns certificate checks off."""
    blocks = [("source", cfg.source), *((f"encoders.{i}", e) for i, e in enumerate(cfg.encoders)), ("sink", cfg.sink)]
    return [w for where, block in blocks if (w := _unverified(where, block))]


def warn_insecure(cfg: Any) -> None:
    for w in tls_warnings(cfg):
        log.warning("%s", w)
