"""Write chunked Documents: OpenSearch (nested or one document per chunk) and Parquet rows (a chunk column).

A document counts as ``indexed`` once, when all of it landed (every chunk, for separate storage);
``indexed_chunks`` counts chunks. With separate storage, the chunks a document no longer has (it got
shorter since the last run) are deleted right after its new chunks are written: ids are
``<doc id>#<index>``, so the new chunks overwrite the old ones in place and only ``index >= count``
can be stale. A document whose stale chunks cannot be deleted is a dead letter (replay fixes it).
Nested storage needs none of that: the document is replaced whole.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import apache_beam as beam
import pyarrow as pa

from neural_ingest.chunking import chunk_id
from neural_ingest.config import OpenSearchSinkConfig
from neural_ingest.records import Document
from neural_ingest.sinks.base import ChunkLayout
from neural_ingest.sinks.opensearch_chunks import delete_stale_chunks, nested_source, separate_sources
from neural_ingest.sinks.parquet_chunks import parquet_row
from neural_ingest.transforms import counters
from neural_ingest.transforms.counters import DEAD_LETTER
from neural_ingest.transforms.write_opensearch import BulkIndexFn

if TYPE_CHECKING:
    from neural_ingest.sinks.bulk import BulkItem, BulkResult

log = logging.getLogger(__name__)

MAX_ID_BYTES = 512  # OpenSearch's _id limit


class BulkIndexChunkedFn(BulkIndexFn):
    """BulkIndexFn for chunked Documents: a document's chunks in one (nested) or a document each (separate)."""

    def __init__(self, cfg: OpenSearchSinkConfig, plan: ChunkLayout, progress_every: float = 10.0):
        super().__init__(cfg, progress_every)
        self.plan = plan

    def _items(self, doc: Document) -> list[BulkItem]:
        from neural_ingest.sinks.bulk import make_item

        if self.plan.storage == "nested":
            return [make_item(doc, self.cfg.index, doc.id, nested_source(doc, self.cfg.text_field, self.plan))]
        items = []
        for cid, src in separate_sources(doc, self.cfg.text_field):
            if len(cid.encode("utf-8")) > MAX_ID_BYTES:
                raise ValueError(f"chunk id {cid[:80]!r}... is longer than OpenSearch's {MAX_ID_BYTES}-byte _id limit")
            items.append(make_item(doc, self.cfg.index, cid, src))
        return items

    def _outputs(self, batch: Sequence[Document]) -> Iterable[Any]:
        items: list[BulkItem] = []
        docs: list[tuple[Document, int]] = []
        for doc in batch:
            try:
                its = self._items(doc)
            except (TypeError, ValueError) as e:  # NaN, unserialisable metadata, too long an id
                yield self._dead(doc, "invalid_document", f"cannot index document: {e}")
                continue
            items += its
            docs.append((doc, len(its)))
        w = self._bulk_writer()
        before = w.retried_items, w.retried_requests, w.splits
        failed: dict[int, BulkResult] = {}  # id(doc) -> first failed result
        ok_chunks = 0
        for res in w.write(items):
            if res.ok:
                ok_chunks += 1
            else:
                failed.setdefault(id(res.item.key), res)
        landed = [doc for doc, _n in docs if id(doc) not in failed]
        for doc, n in docs:
            bad = failed.get(id(doc))
            if bad is not None:
                msg = bad.message or ""
                if n > 1:
                    msg = f"chunk {bad.item.doc_id}: {msg}"
                yield self._dead(doc, bad.error_type or "bulk_error", msg, bad.status, bad.item.attempts)
        if self.plan.storage == "separate" and landed:
            try:
                deleted = delete_stale_chunks(self._opensearch(), self.cfg.index, {d.id: len(d.chunks or []) for d in landed})
                counters.inc("deleted_stale_chunks", deleted)
            except Exception as e:  # noqa: BLE001 - the documents' state in the index is wrong: dead letters
                log.warning("could not delete stale chunks of %d documents: %s", len(landed), e)
                for doc in landed:
                    yield self._dead(
                        doc, "stale_chunks", f"new chunks written, old ones past {len(doc.chunks or [])} not deleted: {e}"[:2000]
                    )
                landed = []
        counters.inc("indexed", len(landed))
        counters.inc("indexed_chunks", ok_chunks)
        counters.inc("retried.index.items", w.retried_items - before[0])
        counters.inc("retried.index.requests", w.retried_requests - before[1])
        counters.inc("retried.index.splits", w.splits - before[2])
        counters.Progress.add("indexed", len(landed), self.progress_every)


class WriteChunkedToOpenSearch(beam.PTransform[beam.PCollection[Any], dict[str, beam.PCollection[Any]]]):
    """Chunked Documents -> {"dead_letter": DeadLetters}; bulk requests bounded by docs and bytes as usual."""

    def __init__(self, cfg: OpenSearchSinkConfig, plan: ChunkLayout, progress_every: float = 10.0):
        super().__init__()
        self.cfg = cfg
        self.plan = plan
        self.progress_every = progress_every

    def expand(self, docs: beam.PCollection[Any]) -> dict[str, beam.PCollection[Any]]:
        n = self.cfg.bulk.max_docs
        size = (lambda d: len(d.chunks or []) or 1) if self.plan.storage == "separate" else (lambda d: 1)
        out = (
            docs
            | "BatchForBulk" >> beam.BatchElements(min_batch_size=min(n, 50), max_batch_size=n, element_size_fn=size)
            | "BulkChunks"
            >> beam.ParDo(BulkIndexChunkedFn(self.cfg, self.plan, self.progress_every)).with_outputs(DEAD_LETTER, main="ok")
        )
        return {DEAD_LETTER: out[DEAD_LETTER]}


def chunk_record_batch(schema: pa.Schema, text_field: str, fields: list[str], plan: ChunkLayout,
                       rows: list[tuple[Document, str]]) -> pa.RecordBatch:
    """(chunked document, metadata JSON) pairs -> one record batch of the chunked schema (a chunk list column);
    their chunks are counted as ``indexed_chunks``."""
    counters.inc("indexed_chunks", sum(len(d.chunks or []) for d, _ in rows))
    return pa.RecordBatch.from_pylist([parquet_row(d, text_field, fields, plan, meta) for d, meta in rows], schema=schema)


__all__ = ["BulkIndexChunkedFn", "WriteChunkedToOpenSearch", "chunk_id", "chunk_record_batch"]
