"""Beam metrics for every record's fate, so the summary can reconcile read = indexed + failed + skipped.

Counter names: ``read``, ``encoded.<field>``, ``indexed``, ``failed.<stage>.<reason>``,
``skipped.<reason>``. They live in one namespace and are summed by :mod:`neural_ingest.summary`.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeAlias

from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from neural_ingest.records import DeadLetter

NAMESPACE = "neural_ingest"
DEAD_LETTER = "dead_letter"  # tag of every transform's dead-letter output
UNCOUNTED = "UncountedIdPass"  # label of a second read (duplicate ids): its counters are not the run's (summary.counter_totals)
SKIPPED = "skipped"  # tag of records deliberately left out (empty text, duplicate id), written beside dead letters

log = logging.getLogger("neural_ingest.progress")

DeadLetterOutput: TypeAlias = TaggedOutput[str, DeadLetter]  # a record's dead letter (or skip) on its tagged output


_COUNTERS: dict[str, Any] = {}  # name -> Beam's DelegatingCounter: it finds the current bundle's cell at each inc


def inc(name: str, n: int = 1) -> None:
    if n:
        counter = _COUNTERS.get(name)
        if counter is None:  # building one costs more than the inc itself: once per name and process
            counter = _COUNTERS[name] = Metrics.counter(NAMESPACE, name)
        counter.inc(n)


class Tallied:
    """DoFn mixin: ``self.count(name)`` adds to a per-bundle :class:`Tally` flushed in ``finish_bundle``;
    outside a bundle (a test calling ``process`` directly) it counts at once, as :func:`inc` does."""

    _tally: Tally | None = None

    def start_bundle(self) -> None:
        self._tally = Tally()

    def finish_bundle(self) -> None:
        tally, self._tally = self._tally, None
        if tally is not None:
            tally.flush()

    def count(self, name: str, n: int = 1) -> None:
        if self._tally is None:
            inc(name, n)
        else:
            self._tally.add(name, n)


class Tally:
    """Counts a DoFn adds up per bundle and hands to Beam once, in ``flush`` (call it from ``finish_bundle``):
    one counter update per name and bundle instead of one per record."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def flush(self) -> None:
        counts, self.counts = self.counts, {}
        for name, n in counts.items():
            inc(name, n)


def failed(stage: str, reason: str, n: int = 1) -> None:
    inc(f"failed.{stage}.{reason}", n)


def skipped(reason: str, n: int = 1) -> None:
    inc(f"skipped.{reason}", n)


def dead_letter(stage: str, reason: str, message: str, record: Any, doc_id: str | None = None, status: int | None = None,
                attempts: int = 1) -> DeadLetterOutput:
    """Every stage's one failure path: count ``failed.<stage>.<reason>`` and return the record's dead letter as the
    ``dead_letter`` tagged output."""
    failed(stage, reason)
    return TaggedOutput(DEAD_LETTER, DeadLetter(stage, reason, message, record, doc_id=doc_id, status=status, attempts=attempts))


def skip_record(stage: str, reason: str, message: str, record: Any, doc_id: str | None = None) -> DeadLetterOutput:
    """Count a skipped record and return it as a tagged output, so skips are listed, never silent."""
    skipped(reason)
    return TaggedOutput(SKIPPED, DeadLetter(stage, reason, message, record, doc_id=doc_id))


class Progress:
    """Process-wide progress of a long run: a rich progress bar on a terminal, else a log line at most
    every ``every`` seconds.

    Counted inside DoFns, so the DirectRunner (in-process) drives the bar of the CLI; on other runners
    each worker logs its own lines. Rates are shown only once a second has passed, never over ~0 s.
    """

    _lock = threading.Lock()
    _totals: ClassVar[dict[str, int]] = {}
    _start: float | None = None
    _last: float = 0.0
    total: int | None = None  # records expected, when the source can tell cheaply (ETA)
    display: str = "log"  # "log" | "bar" | "off": the CLI picks it (-q: off; a terminal: bar)
    _bar: Any = None
    _tasks: ClassVar[dict[str, Any]] = {}
    clock: Callable[[], float] = time.monotonic
    console: Any = None  # the bar's rich Console (default: stderr)

    @classmethod
    def add(cls, what: str, n: int, every: float = 10.0) -> None:
        if cls.display == "off":
            return
        with cls._lock:
            now = cls.clock()
            if cls._start is None:  # a worker that did not see begin(): its first record starts the clock
                cls._start = cls._last = now
            cls._totals[what] = cls._totals.get(what, 0) + n
            if cls._bar is not None:
                cls._advance(what, n)
                return
            if now - cls._last < every:
                return
            cls._last = now
            line = describe(cls._totals, now - cls._start, cls.total)
        log.info("progress: %s", line)

    @classmethod
    def _advance(cls, what: str, n: int) -> None:
        task = cls._tasks.get(what)
        if task is None:
            task = cls._tasks[what] = cls._bar.add_task(what, total=cls.total)
        cls._bar.advance(task, n)

    @classmethod
    def begin(cls, total: int | None = None) -> None:
        """A run starts: reset the counts and the clock; start the bar when the display is one."""
        cls.reset()
        cls.total = total
        cls._start = cls._last = cls.clock()
        if cls.display == "bar":
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            cls._bar = Bar(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                _rate_column(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=cls.console or Console(stderr=True),
                transient=False,
            )
            cls._bar.start()

    @classmethod
    def end(cls) -> None:
        with cls._lock:
            bar, cls._bar, cls._tasks = cls._bar, None, {}
        if bar is not None:
            bar.stop()

    @classmethod
    def reset(cls) -> None:
        cls.end()
        with cls._lock:
            cls._totals, cls._start, cls._last, cls.total = {}, None, 0.0, None


def describe(totals: dict[str, int], elapsed: float, total: int | None = None) -> str:
    """``encoded[embedding] 1,200/3,000 (40%), 95.3/s, ETA 19 s``; no rate before a second has passed."""
    parts = []
    for k, v in sorted(totals.items()):
        part = f"{k} {v:,}" + (f"/{total:,} ({v / total:.0%})" if total else "")
        if elapsed >= 1.0:
            rate = v / elapsed
            part += f", {rate:,.1f}/s"
            if total and rate > 0 and v < total:
                part += f", ETA {(total - v) / rate:,.0f} s"
        parts.append(part)
    return "; ".join(parts)


def _rate_column() -> Any:
    """Built lazily, so importing the transforms on a worker does not import rich.progress."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Documents per second, blank until a second has passed (no "32000000000.0/s")."""

        def render(self, task: Any) -> Text:
            elapsed = task.elapsed or 0.0
            return Text(f"{task.completed / elapsed:,.1f}/s" if elapsed >= 1.0 else "-/s")

    return RateColumn()
