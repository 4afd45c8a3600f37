"""Write Documents as rows of a Parquet dataset (id, text, metadata JSON, one column per encoder).

Documents become Arrow record batches in the writing DoFn (vectors stacked into one array per batch, no
per-row Python lists), and the batches are handed to Beam's ``WriteToParquetBatched`` as tables of about
the size Beam's ``WriteToParquet`` buffered into one row group (64 MiB). A document whose metadata has no
JSON form is its own dead letter, as before.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.utils.windowed_value import WindowedValue

from neural_ingest.metadata import MetadataError, metadata_json
from neural_ingest.model_info import DenseVector, SparseVector
from neural_ingest.records import INDEX, Document
from neural_ingest.transforms import counters
from neural_ingest.transforms.chunks import ArrowTable
from neural_ingest.transforms.counters import DEAD_LETTER

ROW_GROUP_BYTES = 64 << 20  # Beam's WriteToParquet default row_group_buffer_size: rows buffered per row group
BATCH_ROWS = 1000  # documents per Arrow record batch (Beam's default record_batch_size)


def metadata_or_dead(doc: Document) -> Any:
    """The metadata column's JSON, or the document's dead letter (a value with no JSON form)."""
    try:
        return metadata_json(doc.metadata)
    except MetadataError as e:
        return counters.dead_letter(INDEX, "invalid_metadata", f"metadata {e}", doc, doc_id=doc.id)


def record_batch(schema: pa.Schema, text_field: str, fields: list[str], rows: list[tuple[Document, str]]) -> pa.RecordBatch:
    """(document, metadata JSON) pairs -> one record batch of ``schema``: dense vectors stacked into one
    float32 array, sparse maps as (token, weight) lists."""
    docs = [d for d, _ in rows]
    cols: list[pa.Array] = [
        pa.array([d.id for d in docs], pa.string()),
        pa.array([d.text for d in docs], pa.string()),
        pa.array([m for _, m in rows], pa.string()),
    ]
    for f in fields:
        typ = schema.field(f).type
        if pa.types.is_fixed_size_list(typ):
            dense: list[DenseVector] = [d.embeddings[f] for d in docs]
            flat = np.stack([np.asarray(v, dtype=np.float32) for v in dense]).reshape(-1)
            cols.append(pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), type=typ))
        else:
            sparse: list[SparseVector] = [d.embeddings[f] for d in docs]
            cols.append(pa.array([list(v.items()) for v in sparse], type=typ))
    return pa.RecordBatch.from_arrays(cols, schema=schema)


class ToArrowFn(beam.DoFn):
    """Documents -> Arrow tables of about ``row_group_bytes`` (one row group each), per window and bundle;
    metadata with no JSON form -> dead letter. ``indexed`` is counted as documents enter a record batch."""

    def __init__(self, schema: pa.Schema, text_field: str, fields: list[str], progress_every: float,
                 row_group_bytes: int = ROW_GROUP_BYTES, batch_rows: int = BATCH_ROWS):
        self.schema = schema
        self.text_field = text_field
        self.fields = fields
        self.progress_every = progress_every
        self.row_group_bytes = row_group_bytes
        self.batch_rows = batch_rows

    def start_bundle(self) -> None:
        self._rows: dict[Any, list[tuple[Document, str]]] = {}
        self._batches: dict[Any, list[pa.RecordBatch]] = {}
        self._bytes: dict[
            Any, int
        ] = {}  # per window: the buffered batches' nbytes, kept as they come (not summed again per batch)

    def process(self, doc: Any, window: Any = beam.DoFn.WindowParam) -> Iterable[Any]:
        """A Document, or a list of them (a chunk: ``ReadRecords(chunked=True)``), each its own row or dead letter."""
        rows = self._rows.setdefault(window, [])
        for d in doc if type(doc) is list else (doc,):
            meta = metadata_or_dead(d)
            if type(meta) is not str:
                yield meta
                continue
            rows.append((d, meta))
            if len(rows) >= self.batch_rows:
                table = self._add_batch(window)
                rows = self._rows.setdefault(window, [])
                if table is not None:
                    yield table

    def finish_bundle(self) -> Iterable[WindowedValue]:
        for window in {*self._rows, *self._batches}:
            self._add_batch(window, full=False)
            table = self._table(window)
            if table is not None:
                yield WindowedValue(table, window.max_timestamp(), (window,))
        self._rows, self._batches, self._bytes = {}, {}, {}

    def _add_batch(self, window: Any, full: bool = True) -> pa.Table | None:
        """The window's buffered documents become a record batch; with ``full``, the window's batches
        as a table once they fill a row group (else they stay buffered for the caller to take)."""
        rows = self._rows.pop(window, [])
        if rows:
            batch = record_batch(self.schema, self.text_field, self.fields, rows)
            self._batches.setdefault(window, []).append(batch)
            self._bytes[window] = self._bytes.get(window, 0) + batch.nbytes
            counters.inc("indexed", len(rows))
            counters.Progress.add("written", len(rows), self.progress_every)
        if full and self._bytes.get(window, 0) >= self.row_group_bytes:
            return self._table(window)
        return None

    def _table(self, window: Any) -> pa.Table | None:
        self._bytes.pop(window, None)
        batches = self._batches.pop(window, [])
        return pa.Table.from_batches(batches, schema=self.schema) if batches else None


class WriteParquetDataset(beam.PTransform[beam.PCollection[Any], dict[str, beam.PCollection[Any]]]):
    """Documents -> Parquet files under ``prefix``; {"dead_letter": metadata with no JSON form} (a write error fails the run)."""

    def __init__(self, prefix: str, schema: pa.Schema, text_field: str, fields: list[str], progress_every: float):
        super().__init__()
        self.prefix = prefix
        self.schema = schema
        self.text_field = text_field
        self.fields = fields
        self.progress_every = progress_every

    def expand(self, docs: beam.PCollection[Any]) -> dict[str, beam.PCollection[Any]]:
        to_arrow = beam.ParDo(ToArrowFn(self.schema, self.text_field, self.fields, self.progress_every)).with_output_types(
            ArrowTable
        )
        tables = docs | "ToArrow" >> to_arrow.with_outputs(
            DEAD_LETTER, main="tables"
        )
        _ = tables.tables | "WriteParquet" >> beam.io.WriteToParquetBatched(self.prefix, self.schema, file_name_suffix=".parquet")
        return {DEAD_LETTER: tables[DEAD_LETTER]}
