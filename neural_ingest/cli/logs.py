"""Logging for the CLI: logs and progress on stderr, results on stdout; one line per event unless -v."""
from __future__ import annotations

import logging
import os
import sys

VERBOSE = False  # -v: tracebacks and debug logs (read by the error path)
QUIET = False  # -q: warnings only; the summary only when it has news


def setup_logging(verbose: bool, quiet: bool = False) -> None:
    """Logs and progress on stderr (results go to stdout); INFO by default, so progress shows.

    Client libraries (opensearch-py, urllib3) log every failed request with a traceback: without -v
    they stay quiet (ERROR), our own warnings say what happened in one line, and no traceback is shown.
    """
    from neural_ingest.redact import install_log_redaction

    install_log_redaction()  # credentials in URLs out of every log line and traceback, any library's
    global VERBOSE, QUIET
    VERBOSE, QUIET = verbose, quiet
    tty = sys.stderr.isatty()
    handler: logging.Handler
    if tty:
        from rich.console import Console
        from rich.logging import RichHandler

        handler = RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False, markup=False)
        fmt, datefmt = "%(message)s", None
    else:  # a log file or a CronJob's log: one plain line per event, no wrapping
        handler = logging.StreamHandler(sys.stderr)
        fmt, datefmt = "%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"
    handler.setFormatter(logging.Formatter(fmt, datefmt) if verbose else OneLineFormatter(fmt, datefmt))
    # Beam's GCP IO says this on import when its optional extras are absent: not the user's concern.
    handler.addFilter(lambda r: "apitools not found" not in r.getMessage())
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    for noisy in ("apache_beam", "sentence_transformers", "transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    for client in ("opensearch", "urllib3"):  # one line per failed request, with a traceback: -v only
        logging.getLogger(client).setLevel(logging.DEBUG if verbose else logging.ERROR)
    # after the handler: importing Beam logs
    from neural_ingest.transforms.counters import Progress

    Progress.display = "off" if quiet else "bar" if tty else "log"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class OneLineFormatter(logging.Formatter):
    """Without -v a log record is its one line: tracebacks only with -v. Formats a copy, so other handlers
    (a log file, pytest's capture) still get the record whole."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None, "stack_info": None})
        return super().format(record)
