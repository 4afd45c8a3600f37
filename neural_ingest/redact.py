"""Credentials never reach any output: one ``redact_url`` for every URL the tool shows (describe(),
errors, summaries), ``redact_text`` for free text that may quote one, and a log-record hook so that
client libraries' log lines and tracebacks are redacted too.

A URL keeps its user name (useful to tell which account a config uses) and loses its password, a
bare userinfo (often a token), and the values of query parameters named like secrets.
"""
from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Query parameter / header names whose values are secrets (masking a harmless one costs nothing).
SECRET_NAME = re.compile(r"(?i)key|token|secret|sig|passw|auth|credential")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s'\"<>`]+")
_QUERY_PARAM = re.compile(r"(^|[&;])([^=&;]+)=([^&;#]*)")
_AUTH_HEADER = re.compile(
    r"(?i)(authorization|x-api-key|api-key)(['\"]?\s*[:=]\s*['\"]?)([^'\"\s,}]+(?:\s+[^'\"\s,}]+)?)"
)


def _redact_query(query: str) -> str:
    return _QUERY_PARAM.sub(lambda m: f"{m.group(1)}{m.group(2)}={MASK}" if SECRET_NAME.search(m.group(2)) else m.group(0), query)


def redact_url(url: str) -> str:
    """``https://user:secret@host:9200/x?api_key=k`` -> ``https://user:***@host:9200/x?api_key=***``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced [ in the host: mask anything between :// and the last @
        return re.sub(r"(://)[^/?#]*@", rf"\1{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if sep else f"{MASK}@{hostport}"
    query = _redact_query(parts.query) if parts.query else parts.query
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub_auth_headers(text: str) -> str:
    """Mask anything that looks like an Authorization / API-key header value."""
    return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def redact_text(text: str) -> str:
    """Every URL inside ``text`` redacted, and header-like secrets masked."""
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    return scrub_auth_headers(text)


def _redact_record(record: logging.LogRecord) -> None:
    try:
        msg = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string is the handler's to report
        return
    clean = redact_text(msg)
    if clean != msg:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact_text(record.exc_text)


def install_log_redaction() -> None:
    """Redact every log record of this process, from any library, whatever handlers are configured
    later (a record factory, so it holds across ``basicConfig(force=True)``); idempotent."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_neural_ingest_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    factory._neural_ingest_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
