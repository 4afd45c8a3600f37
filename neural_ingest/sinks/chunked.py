"""Chunked documents in the sinks: index mapping, stored shapes, and document-level search.

OpenSearch, ``storage: nested`` (default): the document keeps its text and metadata, and a nested
field (``chunks``) holds one object per chunk: ``{"text", "start", "end", "index", <encoder
fields>}``. A ``nested`` query (``score_mode: max``) around the ``knn`` / ``neural_sparse`` clause
returns whole documents scored by their best chunk, and ``inner_hits`` (size 1) gives that chunk.

OpenSearch, ``storage: separate``: one document per chunk, ``_id`` ``<doc id>#<index>``, with
``parent_id``, ``chunk_index``, ``chunk_start``, ``chunk_end``, the chunk's text in the text field,
the metadata and the encoder fields at the top level. Search collapses on ``parent_id``.

Parquet: a ``chunks`` column, ``list<struct<text, start, end, index, <encoder fields>>>``, in place of
the per-document vector columns (storage does not apply); exact search scores every chunk and keeps
each document's best.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pyarrow as pa

from neural_ingest.chunking import CHUNK_END, CHUNK_INDEX, CHUNK_KEYS, CHUNK_START, PARENT_ID, chunk_id
from neural_ingest.encoders.base import ModelInfo
from neural_ingest.metadata import json_value, metadata_json
from neural_ingest.records import Document
from neural_ingest.sinks.base import Hit, SinkError

log = logging.getLogger(__name__)

# knn "k" for separate storage: chunks fetched so that collapsing on parent_id still leaves k documents.
# Nested storage asks for the sink's knn.search_candidates parents (Lucene's HNSW queue; see KnnConfig).
SEPARATE_OVERSAMPLE = 10


# --------------------------------------------------------------------------- mapping
def chunk_properties(props: dict[str, Any], plan: Any) -> dict[str, Any]:
    """The encoder fields' mappings (``props``) placed for chunked storage."""
    if plan.storage == "nested":
        inner = {
            "text": {"type": "text"},
            "start": {"type": "integer"},
            "end": {"type": "integer"},
            "index": {"type": "integer"},
            **props,
        }
        return {plan.field: {"type": "nested", "properties": inner}}
    return {
        **props,
        PARENT_ID: {"type": "keyword"},
        CHUNK_INDEX: {"type": "integer"},
        CHUNK_START: {"type": "integer"},
        CHUNK_END: {"type": "integer"},
    }


def chunk_mapping_problems(props: dict[str, Any], plan: Any) -> tuple[list[str], dict[str, Any]]:
    """(problems, the properties the encoder fields are found in) for an existing index."""
    if plan.storage == "nested":
        have = props.get(plan.field)
        if have is None:
            return [], {}  # the nested field is added to the mapping
        if have.get("type") != "nested":
            return [
                f"field {plan.field!r} is {have.get('type') or 'object'!r} in the index but chunking (storage nested) "
                "needs a 'nested' field: use another chunking.field or a new index"
            ], {}
        return [], have.get("properties", {})
    problems = []
    parent = props.get(PARENT_ID)
    if parent is not None and parent.get("type") != "keyword":
        problems.append(f"field {PARENT_ID!r} is {parent.get('type')!r} in the index but separate chunks need 'keyword'")
    if plan.field in props and props[plan.field].get("type") == "nested":
        problems.append(
            f"index holds nested chunks in {plan.field!r} but chunking.storage is separate: use a new index"
        )
    return problems, props


# --------------------------------------------------------------------------- documents
def _vec_json(vec: Any) -> Any:
    return {str(k): float(v) for k, v in vec.items()} if isinstance(vec, dict) else np.asarray(vec).tolist()


def nested_source(doc: Document, text_field: str, plan: Any) -> dict[str, Any]:
    """The indexed document with its chunks in the nested field."""
    src: dict[str, Any] = json_value(doc.metadata)  # MetadataError (a ValueError): the caller's dead letter
    src[text_field] = doc.text
    objs = []
    for i, ch in enumerate(doc.chunks or []):
        obj = {k: ch[k] for k in CHUNK_KEYS}
        for f, vecs in doc.embeddings.items():
            obj[f] = _vec_json(vecs[i])
        objs.append(obj)
    src[plan.field] = objs
    return src


def separate_sources(doc: Document, text_field: str) -> list[tuple[str, dict[str, Any]]]:
    """(_id, source) of each chunk document."""
    out = []
    metadata = json_value(doc.metadata)  # MetadataError (a ValueError): the caller's dead letter
    for i, ch in enumerate(doc.chunks or []):
        src: dict[str, Any] = dict(metadata)
        src[text_field] = ch["text"]
        src[PARENT_ID] = doc.id
        src[CHUNK_INDEX] = ch["index"]
        src[CHUNK_START] = ch["start"]
        src[CHUNK_END] = ch["end"]
        for f, vecs in doc.embeddings.items():
            src[f] = _vec_json(vecs[i])
        out.append((chunk_id(doc.id, ch["index"]), src))
    return out


def stale_chunks_query(counts: dict[str, int]) -> dict[str, Any]:
    """Chunk documents of these parents with ``chunk_index >= `` the parent's new chunk count."""
    by_count: dict[int, list[str]] = {}
    for doc_id, n in counts.items():
        by_count.setdefault(n, []).append(doc_id)
    should = [
        {"bool": {"filter": [{"terms": {PARENT_ID: sorted(ids)}}, {"range": {CHUNK_INDEX: {"gte": n}}}]}}
        for n, ids in sorted(by_count.items())
    ]
    return {"bool": {"should": should, "minimum_should_match": 1}}


def delete_stale_chunks(client: Any, index: str, counts: dict[str, int], page: int = 1000) -> int:
    """Delete the chunks a shorter document no longer has (ids found by a search, deleted in bulk, so
    no reindex module is needed). Idempotent; returns how many were deleted. Raises on errors."""
    if not counts:
        return 0
    query = stale_chunks_query(counts)
    ids: list[str] = []
    after = None
    while True:
        body: dict[str, Any] = {
            "size": page,
            "query": query,
            "_source": False,
            "sort": [{PARENT_ID: "asc"}, {CHUNK_INDEX: "asc"}],
        }
        if after is not None:
            body["search_after"] = after
        hits = client.search(index=index, body=body)["hits"]["hits"]
        ids += [h["_id"] for h in hits]
        if len(hits) < page:
            break
        after = hits[-1]["sort"]
    if not ids:
        return 0
    lines = "".join(json.dumps({"delete": {"_index": index, "_id": i}}) + "\n" for i in ids)
    resp = client.bulk(body=lines)
    bad = [
        it["delete"] for it in resp.get("items", []) if it["delete"].get("status", 200) >= 300 and it["delete"].get("status") != 404
    ]
    if bad:
        raise RuntimeError(f"could not delete {len(bad)} stale chunks, e.g. {bad[0].get('_id')}: {bad[0].get('error')}")
    return len(ids)


# --------------------------------------------------------------------------- OpenSearch search
def _passage(src: dict[str, Any], score: float) -> dict[str, Any]:
    return {**{k: src.get(k) for k in CHUNK_KEYS}, "score": float(score)}


class ChunkedOpenSearch:
    """Document-level search over chunks in an OpenSearch index (nested or separate storage)."""

    def __init__(self, sink: Any, chunking: Any, fields: list[str]):
        self.sink = sink
        self.plan = chunking
        self.fields = fields  # every encoder field, left out of returned sources

    def describe(self) -> str:
        return self.sink.describe()

    # ---- query bodies (unit-tested without a cluster)
    def nested_body(self, clause: dict[str, Any], k: int) -> dict[str, Any]:
        f = self.plan.field
        return {
            "size": k,
            "query": {
                "nested": {
                    "path": f,
                    "score_mode": "max",
                    "query": clause,
                    "inner_hits": {"size": 1, "_source": {"includes": [f"{f}.{key}" for key in CHUNK_KEYS]}},
                }
            },
            "_source": {"excludes": [f]},
        }

    def separate_body(self, clause: dict[str, Any], k: int) -> dict[str, Any]:
        return {"size": k, "query": clause, "collapse": {"field": PARENT_ID}, "_source": {"excludes": list(self.fields)}}

    def dense_body(self, field: str, vector: Any, k: int) -> dict[str, Any]:
        from neural_ingest.sinks.opensearch import knn_clause

        knn = self.sink.cfg.knn
        if self.plan.storage == "nested":
            return self.nested_body(knn_clause(knn, f"{self.plan.field}.{field}", vector, k), k)
        return self.separate_body(knn_clause(knn, field, vector, k * SEPARATE_OVERSAMPLE), k)

    def sparse_body(self, field: str, query: dict[str, float], k: int) -> dict[str, Any]:
        from neural_ingest.sinks import sparse_query as sq

        path = f"{self.plan.field}.{field}" if self.plan.storage == "nested" else field
        if self.sink.neural_search_enabled():
            clause = sq.neural_sparse_clause(path, query)
        else:
            _plain, dotted = sq.split_dotted(query)
            if dotted:
                log.warning(
                    "without neural-search, query tokens containing '.' (%s) are left out of chunked sparse search",
                    ", ".join(sorted(dotted)[:10]),
                )
            clause = sq.rank_feature_clause(path, query)
        return self.nested_body(clause, k) if self.plan.storage == "nested" else self.separate_body(clause, k)

    # ---- results
    def hits(self, res: dict[str, Any]) -> list[Hit]:
        out = []
        text_field = self.sink.cfg.text_field
        for h in res["hits"]["hits"]:
            src = dict(h.get("_source") or {})
            if self.plan.storage == "nested":
                inner = ((h.get("inner_hits") or {}).get(self.plan.field) or {}).get("hits", {}).get("hits", [])
                passage = _passage(inner[0].get("_source", {}), inner[0].get("_score") or 0.0) if inner else None
                out.append(Hit(h["_id"], float(h["_score"]), src, passage))
            else:
                passage = {
                    "text": src.get(text_field),
                    "start": src.pop(CHUNK_START, None),
                    "end": src.pop(CHUNK_END, None),
                    "index": src.pop(CHUNK_INDEX, None),
                    "score": float(h["_score"]),
                }
                parent = src.pop(PARENT_ID, None) or h["_id"].rsplit("#", 1)[0]
                out.append(Hit(parent, float(h["_score"]), src, passage))
        return out

    def _search(self, body: dict[str, Any]) -> list[Hit]:
        from opensearchpy import exceptions as os_exc

        from neural_ingest.sinks.opensearch import connection_problem

        try:
            return self.hits(self.sink.client.search(index=self.sink.cfg.index, body=body))
        except os_exc.OpenSearchException as e:
            raise SinkError(connection_problem(self.sink.cfg, e)) from None

    def search(self, field: str, info: ModelInfo, vector: Any, k: int) -> list[Hit]:
        return self._search(self.dense_body(field, vector, k))

    def search_sparse(self, field: str, info: ModelInfo, query: dict[str, float], k: int) -> list[Hit]:
        return self._search(self.sparse_body(field, query, k))

    def search_hybrid(self, dense, sparse, k: int, weights=None) -> list[Hit]:
        # neural-search's hybrid query drops inner_hits, so the two nested searches are fused here
        # (hybrid.fuse reproduces its min_max + arithmetic_mean) and each document keeps a passage.
        return fuse_with_passages(
            [self.search(*dense, k), self.search_sparse(*sparse, k)], weights, k
        )


def fuse_with_passages(legs: list[list[Hit]], weights, k: int) -> list[Hit]:
    """hybrid.fuse, plus each document's passage from the leg that weighs most in its score."""
    from neural_ingest.hybrid import DEFAULT_WEIGHTS, fuse, min_max

    w = list(weights or DEFAULT_WEIGHTS)
    fused = fuse(legs, w, k)
    best: dict[str, tuple[float, dict[str, Any] | None]] = {}
    for leg, hits in enumerate(legs):
        for hit, norm in zip(hits, min_max([h.score for h in hits])):
            contrib = w[leg] * norm
            if hit.id not in best or contrib > best[hit.id][0]:
                best[hit.id] = (contrib, hit.passage)
    for h in fused:
        h.passage = best.get(h.id, (0.0, None))[1]
    return fused


# --------------------------------------------------------------------------- Parquet
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


def parquet_schema(text_field: str, fields: dict[str, ModelInfo], plan: Any) -> pa.Schema:
    """id, text, metadata and the chunk list column (no per-document vector columns)."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field(text_field, pa.string()),
            pa.field("metadata", pa.string()),
            pa.field(plan.field, parquet_chunk_type(fields)),
        ]
    )


def parquet_row(doc: Document, text_field: str, fields: list[str], plan: Any, metadata: str | None = None) -> dict[str, Any]:
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


def dense_scores(matrix: np.ndarray, q: np.ndarray, space: str) -> np.ndarray:
    """k-NN scores for one query against rows of ``matrix`` (as ParquetSink.search scores documents)."""
    if space == "cosinesimil":
        norms = np.linalg.norm(matrix, axis=1) * max(np.linalg.norm(q), 1e-12)
        return (1 + (matrix @ q) / np.maximum(norms, 1e-12)) / 2
    if space == "innerproduct":
        dot = matrix @ q
        return np.where(dot >= 0, dot + 1, 1 / (1 - dot))
    return 1 / (1 + np.sum((matrix - q) ** 2, axis=1))


class ChunkedParquet:
    """Exact document-level search over the chunk column of a Parquet dataset: best chunk per document."""

    def __init__(self, sink: Any, chunking: Any, fields: list[str]):
        self.sink = sink
        self.plan = chunking
        self.fields = fields

    def describe(self) -> str:
        return self.sink.describe()

    def _chunks(self, field: str) -> tuple[Any, pa.Array, np.ndarray]:
        table = self.sink.read_table()
        if self.plan.field not in table.column_names:
            raise SinkError(
                f"dataset {self.sink.path} has no chunk column {self.plan.field!r} (columns {table.column_names}): "
                "it was written without chunking; run the pipeline again with this config"
            )
        col = table.column(self.plan.field).combine_chunks()
        offsets = col.offsets.to_numpy()
        values = col.flatten()  # the chunks of every document, in order (slicing applied)
        if values.type.get_field_index(field) < 0:
            raise SinkError(f"dataset {self.sink.path} has no chunk field {field!r}")
        return table, values, offsets - offsets[0]

    @staticmethod
    def _child(values: pa.StructArray, name: str) -> pa.Array:
        return values.flatten()[values.type.get_field_index(name)]

    def _top(self, table: Any, values: Any, offsets: np.ndarray, scores: np.ndarray, k: int, matched=None) -> list[Hit]:
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
        ids = table.column("id").to_pylist()
        texts = table.column(self.sink.cfg.text_field).to_pylist()
        metas = table.column("metadata").to_pylist()
        kids = {key: self._child(values, key) for key in CHUNK_KEYS}
        out = []
        for d in top:
            c = int(arg[d])
            passage = {key: kids[key][c].as_py() for key in CHUNK_KEYS}
            passage["score"] = float(scores[c])
            out.append(Hit(ids[d], float(best[d]), {self.sink.cfg.text_field: texts[d], **json.loads(metas[d] or "{}")}, passage))
        return out

    def search(self, field: str, info: ModelInfo, vector: Any, k: int) -> list[Hit]:
        table, values, offsets = self._chunks(field)
        vec = self._child(values, field)
        matrix = vec.flatten().to_numpy(zero_copy_only=False).reshape(len(vec), -1).astype(np.float32)
        scores = dense_scores(matrix, np.asarray(vector, dtype=np.float32), info.space_type or "cosinesimil")
        return self._top(table, values, offsets, scores, k)

    def search_sparse(self, field: str, info: ModelInfo, query: dict[str, float], k: int) -> list[Hit]:
        import pyarrow.compute as pc

        from neural_ingest.encoders.sparse_weights import lucene_quantize

        table, values, offsets = self._chunks(field)
        col = self._child(values, field)
        if not pa.types.is_map(col.type):
            raise SinkError(f"chunk field {field!r} holds {col.type}, not a sparse map")
        tokens = [t for t, w in query.items() if w > 0]
        m = len(col)
        moff = col.offsets.to_numpy()
        start, end = int(moff[0]), int(moff[-1])
        keys = col.keys.slice(start, end - start)
        vals = lucene_quantize(col.items.slice(start, end - start).to_numpy(zero_copy_only=False))
        pos = pc.index_in(keys, value_set=pa.array(tokens, pa.string())).to_numpy(zero_copy_only=False)
        qw = np.asarray([float(query[t]) for t in tokens] + [0.0], dtype=np.float64)
        pos = np.where(np.isnan(pos.astype(np.float64)), len(tokens), pos).astype(np.int64)
        rows = np.repeat(np.arange(m), np.diff(moff))
        scores = np.bincount(rows, weights=qw[pos] * vals.astype(np.float64), minlength=m)
        return self._top(table, values, offsets, scores, k, matched=np.flatnonzero(scores > 0))

    def search_hybrid(self, dense, sparse, k: int, weights=None) -> list[Hit]:
        return fuse_with_passages([self.search(*dense, k), self.search_sparse(*sparse, k)], weights, k)


def chunked_searcher(sink: Any, chunking: Any, fields: list[str]) -> Any:
    """The sink's document-level search over chunks."""
    from neural_ingest.sinks.opensearch import OpenSearchSink
    from neural_ingest.sinks.parquet import ParquetSink

    if isinstance(sink, OpenSearchSink):
        return ChunkedOpenSearch(sink, chunking, fields)
    if isinstance(sink, ParquetSink):
        return ChunkedParquet(sink, chunking, fields)
    raise SinkError(f"{sink.describe()} does not support chunked search")
