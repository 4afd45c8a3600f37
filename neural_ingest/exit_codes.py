"""Exit codes of every `neural-ingest` command, and which errors a user can fix (the README's table).

One place decides the code, so `run`, `reindex` and the CronJob's podFailurePolicy agree.
"""
from __future__ import annotations

OK = 0
INTERNAL = 1  # a bug: please report it
USER = 2  # config, input, model or cluster: something to fix, then run again
ERROR_BUDGET = 3  # the run finished but too many records failed (run.max_failed / max_failed_ratio)
VALIDATION = 4  # reindex: the new index failed validation; the alias was not touched
LOCKED = 5  # reindex / rollback: another run holds the lock
INTERRUPTED = 130  # Ctrl-C / SIGINT


def user_error_types() -> tuple[type[BaseException], ...]:
    """Errors a user can fix: shown as one line, exit 2."""
    from neural_ingest.catalogue import ModelMismatchError, UnknownModelError
    from neural_ingest.config import ConfigError
    from neural_ingest.model_resolve import ModelNotFoundError
    from neural_ingest.sinks.base import SinkError

    return (ConfigError, ModelNotFoundError, ModelMismatchError, UnknownModelError, SinkError)


def exit_code_for(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else INTERNAL
    from neural_ingest.sinks.lock import LockHeld, LockLost

    if isinstance(exc, (LockHeld, LockLost)):
        return LOCKED
    return USER if isinstance(exc, user_error_types()) else INTERNAL


def one_line(exc: BaseException, limit: int = 500) -> str:
    """The exception as one line, for an internal error (a bug): its type, then its message."""
    from neural_ingest.redact import redact_text

    text = " ".join(redact_text(str(exc)).split()) or type(exc).__name__
    if exit_code_for(exc) == INTERNAL:  # a bug: its type helps the report
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
