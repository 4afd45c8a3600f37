"""The embedded default sink: a local Parquet dataset, replaced atomically at the end of each run."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from neural_ingest.config import ParquetSinkConfig
from neural_ingest.encoders.base import ModelInfo
from neural_ingest.sinks.base import Hit, Sink, SinkError


def arrow_schema(text_field: str, fields: dict[str, ModelInfo]) -> pa.Schema:
    cols = [pa.field("id", pa.string(), nullable=False), pa.field(text_field, pa.string()), pa.field("metadata", pa.string())]
    for name, info in fields.items():
        if info.kind == "sparse":
            cols.append(pa.field(name, pa.map_(pa.string(), pa.float32())))
        else:
            cols.append(pa.field(name, pa.list_(pa.float32(), info.dimension)))
    return pa.schema(cols)


class ParquetSink(Sink):
    def __init__(self, cfg: ParquetSinkConfig):
        self.cfg = cfg
        self.path = Path(cfg.path)

    def describe(self) -> str:
        return self.cfg.describe()

    def staging(self, run_id: str) -> Path:
        return self.path.parent / f".{self.path.name}.staging-{run_id}"

    def check(self, fields: dict[str, ModelInfo]) -> list[str]:
        parent = self.path.parent
        if parent.exists() and not os.access(parent, os.W_OK):
            return [f"cannot write under {parent}: choose another sink.path"]
        return []

    def prepare(self, fields: dict[str, ModelInfo], run_id: str) -> None:
        problems = self.check(fields)
        if problems:
            raise SinkError("; ".join(problems))
        self.staging(run_id).mkdir(parents=True, exist_ok=True)

    def write(self, run_id: str, fields: dict[str, ModelInfo], progress_every: float) -> beam.PTransform:
        if self.chunking is not None:  # a chunk list column instead of per-document vectors
            from neural_ingest.sinks.chunked import parquet_schema
            from neural_ingest.transforms.write_chunks import WriteChunkedParquet

            schema = parquet_schema(self.cfg.text_field, fields, self.chunking)
            prefix = str(self.staging(run_id) / "part")
            return WriteChunkedParquet(prefix, schema, self.cfg.text_field, list(fields), self.chunking, progress_every)
        from neural_ingest.transforms.write_parquet import WriteParquetDataset

        schema = arrow_schema(self.cfg.text_field, fields)
        return WriteParquetDataset(str(self.staging(run_id) / "part"), schema, self.cfg.text_field, list(fields), progress_every)

    def finalize(self, run_id: str, success: bool) -> None:
        staging = self.staging(run_id)
        if not success:
            shutil.rmtree(staging, ignore_errors=True)
            return
        old = self.path.parent / f".{self.path.name}.old-{run_id}"
        if self.path.exists():
            self.path.rename(old)
        staging.rename(self.path)
        shutil.rmtree(old, ignore_errors=True)

    def read_table(self) -> pa.Table:
        import pyarrow.dataset as ds

        if not self.path.exists():
            raise SinkError(f"no dataset at {self.path}: run `neural-ingest run CONFIG` first")
        return ds.dataset(str(self.path), format="parquet").to_table()

    def search(self, field: str, info: ModelInfo, vector: Any, k: int) -> list[Hit]:
        """Exact search, scored the way OpenSearch's k-NN scores the same space type."""
        table = self.read_table()
        if field not in table.column_names:
            raise SinkError(f"dataset {self.path} has no field {field!r}; columns: {table.column_names}")
        col = table.column(field).combine_chunks()
        matrix = col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1).astype(np.float32)
        q = np.asarray(vector, dtype=np.float32)
        space = info.space_type or "cosinesimil"
        if space == "cosinesimil":
            norms = np.linalg.norm(matrix, axis=1) * max(np.linalg.norm(q), 1e-12)
            scores = (1 + (matrix @ q) / np.maximum(norms, 1e-12)) / 2
        elif space == "innerproduct":
            dot = matrix @ q
            scores = np.where(dot >= 0, dot + 1, 1 / (1 - dot))
        else:
            scores = 1 / (1 + np.sum((matrix - q) ** 2, axis=1))
        top = np.argsort(-scores, kind="stable")[:k]
        ids = table.column("id").to_pylist()
        texts = table.column(self.cfg.text_field).to_pylist()
        metas = table.column("metadata").to_pylist()
        return [
            Hit(ids[i], float(scores[i]), {self.cfg.text_field: texts[i], **json.loads(metas[i] or "{}")}) for i in top
        ]

    def search_sparse(self, field: str, info: ModelInfo, query: dict[str, float], k: int) -> list[Hit]:
        """Exact sparse search: dot product of the query with each stored map, the stored weights truncated to
        the precision rank_features keeps, so scores agree with OpenSearch's; only documents sharing a token match."""
        from neural_ingest.encoders.sparse_weights import lucene_quantize

        table = self.read_table()
        if field not in table.column_names:
            raise SinkError(f"dataset {self.path} has no field {field!r}; columns: {table.column_names}")
        col = table.column(field).combine_chunks()
        if not pa.types.is_map(col.type):
            raise SinkError(f"field {field!r} in {self.path} holds {col.type}, not a sparse map")
        tokens = [t for t, w in query.items() if w > 0]
        n = len(col)
        offsets = col.offsets.to_numpy()
        start, end = int(offsets[0]), int(offsets[-1])
        keys = col.keys.slice(start, end - start)
        vals = lucene_quantize(col.items.slice(start, end - start).to_numpy(zero_copy_only=False))
        pos = pc.index_in(keys, value_set=pa.array(tokens, pa.string())).to_numpy(zero_copy_only=False)
        qw = np.asarray([float(query[t]) for t in tokens] + [0.0], dtype=np.float64)
        pos = np.where(np.isnan(pos.astype(np.float64)), len(tokens), pos).astype(np.int64)
        rows = np.repeat(np.arange(n), np.diff(offsets))
        scores = np.bincount(rows, weights=qw[pos] * vals.astype(np.float64), minlength=n)
        matched = np.flatnonzero(scores > 0)
        top = matched[np.argsort(-scores[matched], kind="stable")][:k]
        ids = table.column("id").to_pylist()
        texts = table.column(self.cfg.text_field).to_pylist()
        metas = table.column("metadata").to_pylist()
        return [
            Hit(ids[i], float(scores[i]), {self.cfg.text_field: texts[i], **json.loads(metas[i] or "{}")}) for i in top
        ]
