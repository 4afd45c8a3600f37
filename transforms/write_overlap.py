"""Bulk indexing that overlaps encoding: requests go out on a background thread.

In a fused Beam stage the encoder and the bulk DoFn run on one thread: while a bulk request is in
flight the model would sit idle. ``OverlappedBulkIndexFn`` hands each batch (serialisation and the
request with all of :class:`~neural_ingest.sinks.bulk.BulkWriter`'s retries, splits and outage
handling) to a background thread and returns at once, so encoding goes on. ``bulk.in_flight`` threads
send requests, each with its own BulkWriter, so as many requests are outstanding at most: past that,
``process`` waits for the oldest (back-pressure, memory bounded).

Every document's fate is still reported within the bundle it came in: finished requests are drained
at each ``process`` call and all remaining ones in ``finish_bundle``, their outputs and dead letters
emitted as WindowedValues in the batch's own window. Counters are incremented on the DoFn's thread
(Beam metrics are per thread); the background thread only builds requests and talks to the cluster.
"""
from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeAlias

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue

from neural_ingest.config import OpenSearchSinkConfig
from neural_ingest.records import Document
from neural_ingest.transforms.write_opensearch import BulkIndexFn, to_source

if TYPE_CHECKING:
    from neural_ingest.sinks.bulk import BulkItem, BulkResult, BulkWriter

# What a background request hands back: (invalid documents with why, bulk results, retry deltas).
Written: TypeAlias = "tuple[list[tuple[Document, str]], list[BulkResult], tuple[int, int, int]]"

log = logging.getLogger(__name__)


class OverlappedBulkIndexFn(BulkIndexFn):
    """BulkIndexFn whose requests go out on ``bulk.in_flight`` background threads (module docstring)."""

    def __init__(self, cfg: OpenSearchSinkConfig, progress_every: float = 10.0, emit_ids: bool = False):
        super().__init__(cfg, progress_every, emit_ids)
        self._pool: ThreadPoolExecutor | None = None
        # (the request's future, the batch's window, its timestamp), oldest first
        self._pending: collections.deque[tuple[Future[Written], Any, Any]] = collections.deque()

    def setup(self) -> None:
        super().setup()
        self._pool = ThreadPoolExecutor(max_workers=max(1, self.cfg.bulk.in_flight), thread_name_prefix="neural-ingest-bulk")
        self._local = threading.local()

    def _thread_writer(self) -> BulkWriter:
        """One BulkWriter per sending thread: its retry counters are read back per request."""
        w: BulkWriter | None = getattr(self._local, "writer", None)
        if w is None:
            from neural_ingest.sinks.bulk import BulkWriter

            w = self._local.writer = BulkWriter(self._client, self.cfg.bulk)
        return w

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        super().teardown()

    def start_bundle(self) -> None:
        self._pending = collections.deque()

    # ---------------------------------------------------------------- background thread
    def _build_and_write(self, batch: Sequence[Document]) -> Written:
        """(invalid documents, bulk results, retry deltas): no Beam calls here, only data."""
        from neural_ingest.sinks.bulk import make_item

        invalid: list[tuple[Document, str]] = []
        items: list[BulkItem] = []
        for doc in batch:
            try:
                items.append(make_item(doc, self.cfg.index, doc.id, to_source(doc, self.cfg.text_field)))
            except (TypeError, ValueError) as e:  # NaN or unserialisable metadata
                invalid.append((doc, f"cannot serialise document as JSON: {e}"))
        w = self._thread_writer()
        before = w.retried_items, w.retried_requests, w.splits
        results = list(w.write(items))
        deltas = (w.retried_items - before[0], w.retried_requests - before[1], w.splits - before[2])
        return invalid, results, deltas

    # ---------------------------------------------------------------- DoFn thread
    def _report(self, fut: Future[Written], window: Any, timestamp: Any) -> Iterable[Any]:
        invalid, results, deltas = fut.result()  # a failure of the request machinery fails the bundle, as in line

        def windowed(tagged: beam.pvalue.TaggedOutput[str, Any]) -> beam.pvalue.TaggedOutput[str, WindowedValue]:
            return beam.pvalue.TaggedOutput(tagged.tag, WindowedValue(tagged.value, timestamp, (window,)))

        for doc, message in invalid:
            yield windowed(self._dead(doc, "invalid_document", message))
        for out in self._report_results(results, deltas):  # BulkIndexFn's reporter, outside process(): windowed here
            yield windowed(out) if isinstance(out, beam.pvalue.TaggedOutput) else WindowedValue(out, timestamp, (window,))

    def _drain(self, keep: int) -> Iterable[Any]:
        """Report finished requests; wait for the oldest until at most ``keep`` remain outstanding."""
        while self._pending and (len(self._pending) > keep or self._pending[0][0].done()):
            yield from self._report(*self._pending.popleft())

    def process(
        self, batch: Any, window: Any = beam.DoFn.WindowParam, timestamp: Any = beam.DoFn.TimestampParam
    ) -> Iterable[Any]:
        limit = max(1, self.cfg.bulk.in_flight)
        yield from self._drain(keep=limit - 1)  # room for this batch
        if self._pool is None:
            raise RuntimeError("process() before setup(): the bulk thread pool is not started")
        self._pending.append((self._pool.submit(self._build_and_write, list(batch)), window, timestamp))

    def finish_bundle(self) -> Iterable[Any]:
        yield from self._drain(keep=0)
