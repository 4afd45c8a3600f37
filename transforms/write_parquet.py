"""Write Documents as rows of a Parquet dataset: id, text, metadata JSON and one column per encoder (or one chunk
list column, for chunked documents).

Each bundle writes its rows to a temporary Parquet file of its own, one row group per ~64 MiB of Arrow record batches
(vectors stacked into one array per batch, no per-row Python lists); ``CommitBundleFiles`` names the committed files
``part-NNNNN.parquet`` after all bundles (a bundle that was retried leaves nothing). Two stages, where Beam's
``WriteToParquet`` costs five. A document whose metadata has no JSON form is its own dead letter.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from neural_ingest.metadata import MetadataError, metadata_json
from neural_ingest.model_info import DenseVector, SparseVector
from neural_ingest.records import INDEX, Document
from neural_ingest.transforms import counters
from neural_ingest.transforms.bundle_files import BundleFilesFn, CommitBundleFiles, temp_dir_under
from neural_ingest.transforms.counters import DEAD_LETTER

ROW_GROUP_BYTES = 64 << 20  # Beam's WriteToParquet default row_group_buffer_size: rows buffered per row group
BATCH_ROWS = 1000  # documents per Arrow record batch (Beam's default record_batch_size)
PART = "part"

Rows = list[tuple[Document, str]]  # (document, its metadata JSON)
ToBatch = Callable[[Rows], pa.RecordBatch]


def metadata_or_dead(doc: Document) -> Any:
    """The metadata column's JSON, or the document's dead letter (a value with no JSON form)."""
    try:
        return metadata_json(doc.metadata)
    except MetadataError as e:
        return counters.dead_letter(INDEX, "invalid_metadata", f"metadata {e}", doc, doc_id=doc.id)


def record_batch(schema: pa.Schema, fields: list[str], rows: Rows) -> pa.RecordBatch:
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


def write_empty(schema: pa.Schema, path: str) -> None:
    """A Parquet file of ``schema`` with no rows: the dataset of a run that wrote none still has its columns."""
    with FileSystems.create(path, mime_type="application/x-parquet") as f:
        pq.write_table(schema.empty_table(), f, compression="none")


class WriteParquetFn(BundleFilesFn):
    """Documents (or chunks of them: lists) -> rows of the bundle's temporary Parquet file; metadata with no JSON form
    -> dead letter. ``indexed`` is counted as documents enter a record batch."""

    ext = "parquet"

    def __init__(self, temp_dir: str, schema: pa.Schema, to_batch: ToBatch, progress_every: float,
                 row_group_bytes: int = ROW_GROUP_BYTES, batch_rows: int = BATCH_ROWS):
        super().__init__(temp_dir)
        self.schema = schema
        self.to_batch = to_batch
        self.progress_every = progress_every
        self.row_group_bytes = row_group_bytes
        self.batch_rows = batch_rows

    def open_file(self, path: str) -> Any:
        stream = FileSystems.create(path, mime_type="application/x-parquet")
        return pq.ParquetWriter(stream, self.schema, compression="none"), stream  # Beam's WriteToParquet codec

    def close_file(self, handle: Any) -> None:
        writer, stream = handle
        writer.close()
        stream.close()

    def start_bundle(self) -> None:
        super().start_bundle()
        self._rows: Rows = []
        self._batches: list[pa.RecordBatch] = []
        self._bytes = 0  # the buffered batches' nbytes, kept as they come

    def process(self, doc: Any) -> Iterable[Any]:
        for d in doc if type(doc) is list else (doc,):
            meta = metadata_or_dead(d)
            if type(meta) is not str:
                yield meta
                continue
            self._rows.append((d, meta))
            if len(self._rows) >= self.batch_rows:
                self._add_batch()

    def finish_bundle(self) -> Iterable[Any]:
        self._add_batch()
        self._write_row_group()
        yield from super().finish_bundle()

    def _add_batch(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        batch = self.to_batch(rows)
        self._batches.append(batch)
        self._bytes += batch.nbytes
        counters.inc("indexed", len(rows))
        counters.Progress.add("written", len(rows), self.progress_every)
        if self._bytes >= self.row_group_bytes:
            self._write_row_group()

    def _write_row_group(self) -> None:
        batches, self._batches, self._bytes = self._batches, [], 0
        if batches:
            table = pa.Table.from_batches(batches, schema=self.schema)
            self.file(PART)[0].write_table(table, row_group_size=table.num_rows)


class WriteParquetDataset(beam.PTransform[beam.PCollection[Any], dict[str, beam.PCollection[Any]]]):
    """Documents -> ``<directory>/part-NNNNN.parquet``; {"dead_letter": metadata with no JSON form} (a write error
    fails the run). ``to_batch`` makes the rows' record batch (``record_batch``, or chunked rows')."""

    def __init__(self, directory: str, schema: pa.Schema, to_batch: ToBatch, progress_every: float):
        super().__init__()
        self.directory = directory
        self.schema = schema
        self.to_batch = to_batch
        self.progress_every = progress_every

    def expand(self, docs: beam.PCollection[Any]) -> dict[str, beam.PCollection[Any]]:
        temp_dir = temp_dir_under(self.directory)
        out = docs | "ToParquet" >> beam.ParDo(
            WriteParquetFn(temp_dir, self.schema, self.to_batch, self.progress_every)
        ).with_outputs(DEAD_LETTER, main="files")
        empty = partial(write_empty, self.schema)
        _ = out.files | "Commit" >> CommitBundleFiles(self.directory, temp_dir, [PART], "parquet", empty)
        return {DEAD_LETTER: out[DEAD_LETTER]}
