"""Keep keys and tokens out of messages: every error, log line and summary text from the remote
encoders passes through a :class:`Redactor` holding the secrets of its config."""
from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterable
from urllib.parse import quote

from neural_ingest.redact import (
    MASK,  # re-exported
    scrub_auth_headers,  # re-exported
)
from neural_ingest.redact import redact_url as safe_url  # one URL redaction for the whole tool

__all__ = ["MASK", "Redactor", "protect_logs", "safe_url", "scrub_auth_headers"]

_MIN_LEN = 4  # shorter "secrets" would mask ordinary words


class Redactor:
    """Replaces each known secret (and its URL-quoted and Basic-auth forms) with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        for s in secrets:
            if not s or len(s) < _MIN_LEN:
                continue
            forms = {s, quote(s, safe=""), base64.b64encode(s.encode()).decode()}
            for f in forms:
                if f not in self._secrets:
                    self._secrets.append(f)
        self._secrets.sort(key=len, reverse=True)  # longest first, so a secret inside another goes too

    def add_basic_auth(self, username: str | None, password: str | None) -> None:
        if username is not None and password:
            self.add(password, base64.b64encode(f"{username}:{password}".encode()).decode())

    def __call__(self, text: object) -> str:
        out = str(text)
        for s in self._secrets:
            if s in out:
                out = out.replace(s, MASK)
        return out

    def __bool__(self) -> bool:
        return bool(self._secrets)


class _LogFilter(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.redactors: list[Redactor] = []
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactors:
            return True
        msg = record.getMessage()
        clean = msg
        for r in list(self.redactors):
            clean = r(clean)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


_FILTER = _LogFilter()
# Loggers that may print request lines, URLs or encoder errors (a logger's filters only see records
# logged to that very logger, so each is named; urllib3 at DEBUG prints method + path + query).
_LOGGERS = (
    "urllib3.connectionpool",
    "requests",
    "neural_ingest.transforms.encode",
    "neural_ingest.encoders.remote.client",
    "neural_ingest.encoders.remote.encoder",
)


def protect_logs(redactor: Redactor) -> None:
    """Redact ``redactor``'s secrets from the HTTP libraries' and our own log records."""
    if not redactor:
        return
    with _FILTER.lock:
        if redactor not in _FILTER.redactors:
            _FILTER.redactors.append(redactor)
        for name in _LOGGERS:
            lg = logging.getLogger(name)
            if _FILTER not in lg.filters:
                lg.addFilter(_FILTER)
