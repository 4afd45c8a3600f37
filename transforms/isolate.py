"""The one per-document failure protocol of encoding: encode the batch; if that raises, encode each document
alone; a document that still fails is a ``Failure``, which its DoFn turns into a dead letter whose reason is
``failure_reason``'s (an EncodeError's own reason, else the exception's type: never its message). Every encode
path (plain, chunked) and the remote-encoder tests go through ``isolated``."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from neural_ingest.encoders.base import EncodeError

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

MESSAGE_LIMIT = 2000  # characters of an exception's message kept in its dead letter


def failure_reason(e: BaseException) -> tuple[str, int | None, int]:
    """A failed encode as (reason, HTTP status, attempts). An EncodeError names its reason (http_429, timeout) and
    status; any other exception is its type's name (``failed.encode.UnicodeDecodeError``), so the counter names
    stay few and stable (a UnicodeDecodeError's own ``reason`` attribute, "invalid start byte", is not one)."""
    if isinstance(e, EncodeError):
        return e.reason or type(e).__name__, e.status, e.attempts or 1
    return type(e).__name__, None, 1


@dataclass(frozen=True)
class Failure(Generic[T]):
    """One item that failed to encode even alone, and why."""

    item: T
    error: BaseException

    def dead_letter(self) -> tuple[str, str, int | None, int]:
        """(reason, message, status, attempts) for the item's dead letter."""
        reason, status, attempts = failure_reason(self.error)
        return reason, str(self.error)[:MESSAGE_LIMIT], status, attempts


def isolated(
    batch: Sequence[T], encode: Callable[[Sequence[T]], R], what: str = "batch"
) -> Iterator[tuple[Sequence[T], R] | Failure[T]]:
    """``(items, encode(items))`` for the whole batch; when that raises, for each item alone, and a ``Failure`` for
    an item that fails alone."""
    try:
        result = encode(batch)
    except Exception as e:  # noqa: BLE001 - any model error must become a dead letter, not a crash
        if len(batch) == 1:
            yield Failure(batch[0], e)
            return
        log.warning("%s of %d failed to encode (%s); retrying one by one", what, len(batch), e)
    else:
        yield batch, result
        return
    for item in batch:
        try:
            one = encode([item])
        except Exception as e:  # noqa: BLE001 - as above, for the one item
            yield Failure(item, e)
            continue
        yield [item], one
