"""Bulk-index Documents into OpenSearch; item-level failures become dead letters, the rest land."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import apache_beam as beam

from neural_ingest.config import OpenSearchSinkConfig
from neural_ingest.metadata import json_value
from neural_ingest.records import INDEX, Document
from neural_ingest.transforms import counters
from neural_ingest.transforms.counters import DEAD_LETTER, DeadLetterOutput

if TYPE_CHECKING:  # at run time imported where used (setup), as the sinks are
    from opensearchpy import OpenSearch

    from neural_ingest.sinks.bulk import BulkResult, BulkWriter

log = logging.getLogger(__name__)


def to_source(doc: Document, text_field: str) -> dict[str, Any]:
    """The indexed document: metadata at the top level (filterable), text, and one field per encoder.
    Metadata in OpenSearch's JSON forms (neural_ingest.metadata); a MetadataError is a ValueError: a dead letter."""
    src: dict[str, Any] = json_value(doc.metadata)
    if doc.text is not None:  # None: a plain dict written as it is (neural_ingest.beam.WriteToOpenSearch)
        src[text_field] = doc.text
    for field, vec in doc.embeddings.items():
        src[field] = {str(k): float(v) for k, v in vec.items()} if isinstance(vec, dict) else vec.tolist()
    return src


def dead_letter(record: Any, reason: str, message: str, doc_id: str | None = None, status: int | None = None,
                attempts: int = 1) -> DeadLetterOutput:
    """The write stage's one failure path: count ``failed.index.<reason>`` and return the tagged dead letter."""
    return counters.dead_letter(INDEX, reason, message, record, doc_id=doc_id, status=status, attempts=attempts)


class BulkIndexFn(beam.DoFn):
    """Index a batch with :class:`~neural_ingest.sinks.bulk.BulkWriter`; report each document's fate.
    ``emit_ids``: the ids of the documents indexed are the main output (the public API's ``indexed``)."""

    def __init__(self, cfg: OpenSearchSinkConfig, progress_every: float = 10.0, emit_ids: bool = False):
        self.cfg = cfg
        self.progress_every = progress_every
        self.emit_ids = emit_ids
        self._client: OpenSearch | None = None
        self._writer: BulkWriter | None = None

    def setup(self) -> None:
        from neural_ingest.sinks.bulk import BulkWriter
        from neural_ingest.sinks.opensearch_client import make_client

        self._client = make_client(self.cfg)
        self._writer = BulkWriter(self._client, self.cfg.bulk)

    def teardown(self) -> None:
        if self._client is not None:
            self._client.close()

    def _opensearch(self) -> OpenSearch:
        """The client of ``setup()`` (Beam calls it before the first bundle). Methods, not properties: Beam reads
        every attribute of a DoFn when it builds the pipeline, before setup()."""
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__} used before setup(): no OpenSearch client")
        return self._client

    def _bulk_writer(self) -> BulkWriter:
        """The bulk writer of ``setup()``."""
        if self._writer is None:
            raise RuntimeError(f"{type(self).__name__} used before setup(): no bulk writer")
        return self._writer

    def _dead(self, doc: Document, reason: str, message: str, status: int | None = None, attempts: int = 1) -> DeadLetterOutput:
        return dead_letter(doc, reason, message, doc.id, status, attempts)

    def process(self, batch: Any) -> Iterable[Any]:
        yield from self._outputs(batch)

    def _outputs(self, batch: Sequence[Document]) -> Iterable[Any]:
        from neural_ingest.sinks.bulk import make_item

        items = []
        for doc in batch:
            try:
                items.append(make_item(doc, self.cfg.index, doc.id, to_source(doc, self.cfg.text_field)))
            except (TypeError, ValueError) as e:  # NaN or unserialisable metadata
                yield self._dead(doc, "invalid_document", f"cannot serialise document as JSON: {e}")
        w = self._bulk_writer()
        before = w.retried_items, w.retried_requests, w.splits
        results = list(w.write(items))
        deltas = (w.retried_items - before[0], w.retried_requests - before[1], w.splits - before[2])
        yield from self._report_results(results, deltas)

    def _report_results(self, results: Iterable[BulkResult], deltas: tuple[int, int, int]) -> Iterable[Any]:
        """The one bulk-result reporter: each landed document's id (``emit_ids``) or each failed one's dead letter,
        then the ``indexed`` and ``retried.index.*`` counts (``deltas``: items retried, requests retried, splits)."""
        ok = 0
        for res in results:
            if res.ok:
                ok += 1
                if self.emit_ids:
                    yield res.item.doc_id
            else:
                yield self._dead(res.item.key, res.error_type or "bulk_error", res.message or "", res.status, res.item.attempts)
        counters.inc("indexed", ok)
        counters.inc("retried.index.items", deltas[0])
        counters.inc("retried.index.requests", deltas[1])
        counters.inc("retried.index.splits", deltas[2])
        counters.Progress.add("indexed", ok, self.progress_every)


class WriteToOpenSearch(beam.PTransform[beam.PCollection[Any], dict[str, beam.PCollection[Any]]]):
    """Documents -> {"dead_letter": DeadLetters} (and "indexed": ids, with ``emit_ids``); requests bounded by
    document count and bytes. The public :class:`neural_ingest.beam.WriteToOpenSearch` wraps this one."""

    def __init__(self, cfg: OpenSearchSinkConfig, fields: list[str], progress_every: float = 10.0, emit_ids: bool = False):
        super().__init__()
        self.cfg = cfg
        self.fields = fields
        self.progress_every = progress_every
        self.emit_ids = emit_ids

    def expand(self, docs: beam.PCollection[Any]) -> dict[str, beam.PCollection[Any]]:
        from neural_ingest.transforms.batching import BufferDocumentsFn
        from neural_ingest.transforms.chunks import Chunk

        n = self.cfg.bulk.max_docs
        out = (
            docs
            # Full requests from the start, as helpers.bulk sends them (the adaptive ramp-up from 50 sent 28
            # requests instead of 6 for 3000 documents); Documents or lists of them (chunks) in, lists of n out.
            | "BatchForBulk" >> beam.ParDo(BufferDocumentsFn(n, exact=True)).with_output_types(Chunk)
            | "Bulk" >> beam.ParDo(_bulk_fn(self.cfg, self.progress_every, self.emit_ids)).with_outputs(DEAD_LETTER, main="ok")
        )
        return {DEAD_LETTER: out[DEAD_LETTER], **({"indexed": out.ok} if self.emit_ids else {})}


def _bulk_fn(cfg: OpenSearchSinkConfig, progress_every: float, emit_ids: bool = False) -> beam.DoFn:
    """Requests on a background thread, overlapping encoding (bulk.in_flight > 0), or in line."""
    if getattr(cfg.bulk, "in_flight", 0) > 0:
        from neural_ingest.transforms.write_overlap import OverlappedBulkIndexFn

        return OverlappedBulkIndexFn(cfg, progress_every, emit_ids)
    return BulkIndexFn(cfg, progress_every, emit_ids)
