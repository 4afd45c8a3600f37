"""Beam metrics for every record's fate, so the summary can reconcile read = indexed + failed + skipped.

Counter names: ``read``, ``encoded.<field>``, ``indexed``, ``failed.<stage>.<reason>``,
``skipped.<reason>``. They live in one namespace and are summed by :mod:`neural_ingest.summary`.
"""
from __future__ import annotations

import logging
import threading
import time

from apache_beam.metrics import Metrics

NAMESPACE = "neural_ingest"
DEAD_LETTER = "dead_letter"  # tag of every transform's dead-letter output
SKIPPED = "skipped"  # tag of records deliberately left out (empty text, duplicate id), written beside dead letters

log = logging.getLogger("neural_ingest.progress")


def inc(name: str, n: int = 1) -> None:
    if n:
        Metrics.counter(NAMESPACE, name).inc(n)


def failed(stage: str, reason: str, n: int = 1) -> None:
    inc(f"failed.{stage}.{reason}", n)


def skipped(reason: str, n: int = 1) -> None:
    inc(f"skipped.{reason}", n)


def skip_record(stage: str, reason: str, message: str, record, doc_id: str | None = None):
    """Count a skipped record and return it as a tagged output, so skips are listed, never silent."""
    import apache_beam as beam

    from neural_ingest.records import DeadLetter

    skipped(reason)
    return beam.pvalue.TaggedOutput(SKIPPED, DeadLetter(stage, reason, message, record, doc_id=doc_id))


class Progress:
    """Process-wide progress lines for long runs, at most one every ``every`` seconds.

    Works on every runner: on a cluster it shows up in each worker's log.
    """

    _lock = threading.Lock()
    _totals: dict[str, int] = {}
    _start: float | None = None
    _last: float = 0.0

    @classmethod
    def add(cls, what: str, n: int, every: float = 10.0) -> None:
        with cls._lock:
            now = time.monotonic()
            if cls._start is None:
                cls._start = now
            cls._totals[what] = cls._totals.get(what, 0) + n
            if now - cls._last < every:
                return
            cls._last = now
            elapsed = max(now - cls._start, 1e-9)
            parts = ", ".join(f"{k} {v:,} ({v / elapsed:.1f}/s)" for k, v in sorted(cls._totals.items()))
        log.info("progress: %s", parts)

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls._totals, cls._start, cls._last = {}, None, 0.0
