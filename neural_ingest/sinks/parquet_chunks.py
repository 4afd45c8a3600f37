"""Chunked documents in the Parquet dataset: a ``chunks`` column, ``list<struct<text, start, end, index,
<encoder fields>>>``, in place of the per-document vector columns (chunking.storage does not apply), and
exact document-level search that scores every chunk and keeps each document's best."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from neural_ingest.chunking import CHUNK_KEYS
from neural_ingest.metadata import metadata_json
from neural_ingest.model_info import DenseVector, ModelInfo, SparseVector
from neural_ingest.records import Document
from neural_ingest.sinks.base import ChunkLayout, DenseQuery, Hit, SinkError, SparseQuery
from neural_ingest.sinks.scoring import dense_scores, fuse_with_passages, sparse_scores

if TYPE_CHECKING:  # the sink builds its searcher (ParquetSink.chunk_searcher) and the searcher reads the sink
    from neural_ingest.sinks.parquet import ParquetSink


def parquet_chunk_type(fields: dict[str, ModelInfo]) -> pa.DataType:
    cols = [
        pa.field("text", pa.string()),
        pa.field("start", pa.int32()),
        pa.field("end", pa.int32()),
        pa.field("index", pa.int32()),
    ]
    for name, info in fields.items():
        if info.kind == "sparse":
            cols.append(pa.field(name, pa.map_(pa.string(), pa.float32())))
        else:
            cols.append(pa.field(name, pa.list_(pa.float32(), info.dimension)))
    return pa.list_(pa.struct(cols))


def parquet_schema(text_field: str, fields: dict[str, ModelInfo], plan: ChunkLayout) -> pa.Schema:
    """id, text, metadata and the chunk list column (no per-document vector columns)."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field(text_field, pa.string()),
            pa.field("metadata", pa.string()),
            pa.field(plan.field, parquet_chunk_type(fields)),
        ]
    )


def parquet_row(
    doc: Document, text_field: str, fields: list[str], plan: ChunkLayout, metadata: str | None = None
) -> dict[str, Any]:
    """``metadata``: the metadata column's JSON (neural_ingest.metadata.metadata_json), computed here if not given."""
    chunks = []
    for i, ch in enumerate(doc.chunks or []):
        obj = {k: ch[k] for k in CHUNK_KEYS}
        for f in fields:
            vec = doc.embeddings[f][i]
            obj[f] = list(vec.items()) if isinstance(vec, dict) else np.asarray(vec).tolist()
        chunks.append(obj)
    meta = metadata if metadata is not None else metadata_json(doc.metadata)
    return {"id": doc.id, text_field: doc.text, "metadata": meta, plan.field: chunks}


class ChunkedParquet:
    """Exact document-level search over the chunk column of a Parquet dataset: best chunk per document; a Searcher."""

    def __init__(self, sink: ParquetSink, chunking: ChunkLayout, fields: list[str]):
        self.sink = sink
        self.plan = chunking
        self.fields = fields

    def describe(self) -> str:
        return self.sink.describe()

    def _chunks(self, field: str) -> tuple[pa.Table, pa.StructArray, np.ndarray]:
        """The dataset, the chunks of every document in order (slicing applied), and each document's chunk offsets."""
        table = self.sink.read_table()
        if self.plan.field not in table.column_names:
            raise SinkError(
                f"dataset {self.sink.path} has no chunk column {self.plan.field!r} (columns {table.column_names}): "
                "it was written without chunking; run the pipeline again with this config"
            )
        col = table.column(self.plan.field).combine_chunks()
        offsets = col.offsets.to_numpy()
        values = col.flatten()
        if values.type.get_field_index(field) < 0:
            raise SinkError(f"dataset {self.sink.path} has no chunk field {field!r}")
        return table, values, offsets - offsets[0]

    @staticmethod
    def _child(values: pa.StructArray, name: str) -> pa.Array:
        return values.flatten()[values.type.get_field_index(name)]

    def _top(
        self, table: pa.Table, values: pa.StructArray, offsets: np.ndarray, scores: np.ndarray, k: int,
        matched: np.ndarray | None = None,
    ) -> list[Hit]:
        n = len(offsets) - 1
        doc_of = np.repeat(np.arange(n), np.diff(offsets))
        best = np.full(n, -np.inf)
        np.maximum.at(best, doc_of, scores)
        if matched is not None:
            ok = np.zeros(n, dtype=bool)
            ok[doc_of[matched]] = True
            best[~ok] = -np.inf
        # the best chunk of each document: the first one reaching its maximum
        arg = np.full(n, -1)
        for i in np.flatnonzero(scores == best[doc_of])[::-1]:
            arg[doc_of[i]] = i
        cand = np.flatnonzero(np.isfinite(best))
        top = cand[np.argsort(-best[cand], kind="stable")][:k]
        text_field = self.sink.cfg.text_field
        ids = table.column("id").to_pylist()
        texts = table.column(text_field).to_pylist()
        metas = table.column("metadata").to_pylist()
        kids = {key: self._child(values, key) for key in CHUNK_KEYS}
        out = []
        for d in top:
            c = int(arg[d])
            passage = {key: kids[key][c].as_py() for key in CHUNK_KEYS}
            passage["score"] = float(scores[c])
            out.append(Hit(ids[d], float(best[d]), {text_field: texts[d], **json.loads(metas[d] or "{}")}, passage))
        return out

    def search(self, field: str, info: ModelInfo, vector: DenseVector, k: int) -> list[Hit]:
        table, values, offsets = self._chunks(field)
        vec = self._child(values, field)
        matrix = vec.flatten().to_numpy(zero_copy_only=False).reshape(len(vec), -1).astype(np.float32)
        scores = dense_scores(matrix, np.asarray(vector, dtype=np.float32), info.space_type)
        return self._top(table, values, offsets, scores, k)

    def search_sparse(self, field: str, info: ModelInfo, query: SparseVector, k: int) -> list[Hit]:
        table, values, offsets = self._chunks(field)
        col = self._child(values, field)
        if not pa.types.is_map(col.type):
            raise SinkError(f"chunk field {field!r} holds {col.type}, not a sparse map")
        scores = sparse_scores(col, query)
        return self._top(table, values, offsets, scores, k, matched=np.flatnonzero(scores > 0))

    def search_hybrid(
        self, dense: DenseQuery, sparse: SparseQuery, k: int, weights: tuple[float, float] | None = None
    ) -> list[Hit]:
        return fuse_with_passages([self.search(*dense, k), self.search_sparse(*sparse, k)], weights, k)
