"""The embedded default sink: a local Parquet dataset, replaced atomically at the end of each run.

A run (mode REPLACE) publishes its output as the whole dataset. A replay (mode UPSERT) adds its rows:
the dataset is rebuilt beside the live one (files without a replayed id hard-linked, the others
rewritten without those rows, the new rows added) and swapped in the same way, so a failure at any
point leaves the live dataset as it was.
"""
from __future__ import annotations

import json
import os
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from neural_ingest.config import ParquetSinkConfig
from neural_ingest.model_info import DenseVector, ModelInfo, SparseVector
from neural_ingest.sinks.base import REPLACE, UPSERT, ChunkLayout, Hit, Searcher, Sink, SinkError
from neural_ingest.sinks.parquet_chunks import ChunkedParquet, parquet_schema
from neural_ingest.sinks.scoring import dense_scores, sparse_scores


def arrow_schema(text_field: str, fields: dict[str, ModelInfo]) -> pa.Schema:
    cols = [pa.field("id", pa.string(), nullable=False), pa.field(text_field, pa.string()), pa.field("metadata", pa.string())]
    for name, info in fields.items():
        if info.kind == "sparse":
            cols.append(pa.field(name, pa.map_(pa.string(), pa.float32())))
        else:
            cols.append(pa.field(name, pa.list_(pa.float32(), info.dimension)))
    return pa.schema(cols)


class ParquetSink(Sink):
    def __init__(self, cfg: ParquetSinkConfig, mode: str = REPLACE, chunking: ChunkLayout | None = None):
        super().__init__(mode, chunking)
        self.cfg = cfg
        self.path = Path(cfg.path)

    def describe(self) -> str:
        return self.cfg.describe()

    def staging(self, run_id: str) -> Path:
        return self.path.parent / f".{self.path.name}.staging-{run_id}"

    def schema(self, fields: dict[str, ModelInfo]) -> pa.Schema:
        if self.chunking is not None:  # a chunk list column instead of per-document vectors
            return parquet_schema(self.cfg.text_field, fields, self.chunking)
        return arrow_schema(self.cfg.text_field, fields)

    def check(self, fields: dict[str, ModelInfo]) -> list[str]:
        parent = self.path.parent
        if parent.exists() and not os.access(parent, os.W_OK):
            return [f"cannot write under {parent}: choose another sink.path"]
        if self.mode == UPSERT and self.path.exists():
            return self._schema_problems(fields)
        return []

    def _schema_problems(self, fields: dict[str, ModelInfo]) -> list[str]:
        """Rows added to an existing dataset must have its columns and types (same model, same chunking)."""
        import pyarrow.dataset as ds

        if not self._files():
            return []
        try:
            have = ds.dataset(str(self.path), format="parquet").schema
        except (pa.ArrowException, OSError) as e:
            return [f"cannot read the dataset at {self.path} to add rows to it: {e}"]
        want = self.schema(fields)
        if [(f.name, f.type) for f in have] != [(f.name, f.type) for f in want]:
            return [
                f"dataset {self.path} has columns {_columns(have)} but this config writes {_columns(want)}: replay with the "
                "config (models, chunking, sink.text_field) that built it, or rebuild it with `neural-ingest run`"
            ]
        return []

    def _files(self) -> list[Path]:
        """The dataset's Parquet files, as pyarrow reads them (names starting with '.' or '_' are not data)."""
        if not self.path.is_dir():
            return []
        return sorted(
            f for f in self.path.rglob("*.parquet")
            if f.is_file() and not any(part.startswith((".", "_")) for part in f.relative_to(self.path).parts)
        )

    def count(self) -> int | None:
        if not self.path.exists():
            return 0
        try:
            return int(sum(pq.ParquetFile(f).metadata.num_rows for f in self._files()))
        except (pa.ArrowException, OSError):
            return None

    def prepare(self, fields: dict[str, ModelInfo], run_id: str) -> None:
        problems = self.check(fields)
        if problems:
            raise SinkError("; ".join(problems))
        self.staging(run_id).mkdir(parents=True, exist_ok=True)

    def write(self, run_id: str, fields: dict[str, ModelInfo], progress_every: float) -> beam.PTransform[Any, Any]:
        from neural_ingest.transforms.write_parquet import WriteParquetDataset, record_batch

        schema = self.schema(fields)
        to_batch: Any = partial(record_batch, schema, list(fields))
        if self.chunking is not None:
            from neural_ingest.transforms.write_chunks import chunk_record_batch

            to_batch = partial(chunk_record_batch, schema, self.cfg.text_field, list(fields), self.chunking)
        return WriteParquetDataset(str(self.staging(run_id)), schema, to_batch, progress_every)

    def finalize(self, run_id: str, success: bool) -> None:
        staging = self.staging(run_id)
        if not success:
            shutil.rmtree(staging, ignore_errors=True)
            return
        if self.mode != UPSERT:
            self._swap(staging, run_id)
            return
        merged = self.path.parent / f".{self.path.name}.merge-{run_id}"
        try:
            self._merge(staging, merged, run_id)
            self._swap(merged, run_id)
        except (pa.ArrowException, OSError) as e:
            shutil.rmtree(merged, ignore_errors=True)
            raise SinkError(f"could not add the replayed rows to {self.path} ({e}); the dataset is unchanged") from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _swap(self, new: Path, run_id: str) -> None:
        """Publish ``new`` as the dataset: two renames; the old dataset is put back if the second fails."""
        old = self.path.parent / f".{self.path.name}.old-{run_id}"
        if self.path.exists():
            self.path.rename(old)
        try:
            new.rename(self.path)
        except OSError:
            if old.exists():
                old.rename(self.path)
            raise
        shutil.rmtree(old, ignore_errors=True)

    def _merge(self, staging: Path, merged: Path, run_id: str) -> None:
        """The live dataset plus the staged rows in ``merged``; a live row whose id was staged is left out."""
        new_files = sorted(staging.rglob("*.parquet"))
        ids = pa.array(
            sorted({i for f in new_files for i in pq.read_table(f, columns=["id"]).column("id").to_pylist()}), pa.string()
        )
        merged.mkdir(parents=True)
        data = set(self._files())
        live = sorted(f for f in self.path.rglob("*") if f.is_file()) if self.path.is_dir() else []
        for f in live:  # every file comes along (data files rewritten only where a row is replaced)
            dest = merged / f.relative_to(self.path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if f not in data or not _copy_without(f, dest, ids):
                _link_or_copy(f, dest)
        for n, f in enumerate(new_files):
            f.rename(merged / f"part-{run_id}-{n:05d}.parquet")  # unique names: a later replay adds its own

    def read_table(self) -> pa.Table:
        import pyarrow.dataset as ds

        if not self.path.exists():
            raise SinkError(f"no dataset at {self.path}: run `neural-ingest run CONFIG` first")
        return ds.dataset(str(self.path), format="parquet").to_table()

    def searchable_count(self) -> int | None:
        if not self.path.is_dir():
            raise SinkError(f"no Parquet dataset at {self.path}: check sink.path, or build it with `neural-ingest run CONFIG`")
        return self.count()

    def chunk_searcher(self, chunking: ChunkLayout, fields: list[str]) -> Searcher:
        return ChunkedParquet(self, chunking, fields)

    def _column(self, field: str) -> tuple[pa.Table, pa.Array]:
        table = self.read_table()
        if field not in table.column_names:
            raise SinkError(f"dataset {self.path} has no field {field!r}; columns: {table.column_names}")
        return table, table.column(field).combine_chunks()

    def _hits(self, table: pa.Table, rows: np.ndarray, scores: np.ndarray) -> list[Hit]:
        ids = table.column("id").to_pylist()
        texts = table.column(self.cfg.text_field).to_pylist()
        metas = table.column("metadata").to_pylist()
        return [
            Hit(ids[i], float(scores[i]), {self.cfg.text_field: texts[i], **json.loads(metas[i] or "{}")}) for i in rows
        ]

    def search(self, field: str, info: ModelInfo, vector: DenseVector, k: int) -> list[Hit]:
        """Exact search, scored the way OpenSearch's k-NN scores the same space type."""
        table, col = self._column(field)
        matrix = col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1).astype(np.float32)
        scores = dense_scores(matrix, np.asarray(vector, dtype=np.float32), info.space_type)
        return self._hits(table, np.argsort(-scores, kind="stable")[:k], scores)

    def search_sparse(self, field: str, info: ModelInfo, query: SparseVector, k: int) -> list[Hit]:
        """Exact sparse search (scoring.sparse_scores, as OpenSearch scores it); only documents sharing a token match."""
        table, col = self._column(field)
        if not pa.types.is_map(col.type):
            raise SinkError(f"field {field!r} in {self.path} holds {col.type}, not a sparse map")
        scores = sparse_scores(col, query)
        matched = np.flatnonzero(scores > 0)
        return self._hits(table, matched[np.argsort(-scores[matched], kind="stable")][:k], scores)


def _columns(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)


def _link_or_copy(src: Path, dest: Path) -> None:
    """A hard link (no copy; the live file stays as it is), or a copy where links are not possible."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _copy_without(src: Path, dest: Path, ids: pa.Array) -> bool:
    """Write ``src`` to ``dest`` without the rows whose id is in ``ids`` (nothing when none is left);
    False, writing nothing, when it has none of them."""
    if not len(ids):
        return False
    replayed = pc.is_in(pq.read_table(src, columns=["id"]).column("id"), value_set=ids)
    n = pc.sum(replayed.cast(pa.int64())).as_py() or 0
    if n == 0:
        return False
    if n == len(replayed):
        return True  # every row of the file is replaced
    pf = pq.ParquetFile(src)
    with pq.ParquetWriter(dest, pf.schema_arrow) as writer:
        for batch in pf.iter_batches():
            keep = pc.invert(pc.is_in(batch.column("id"), value_set=ids))
            writer.write_table(pa.Table.from_batches([batch.filter(keep)], schema=pf.schema_arrow))
    return True
