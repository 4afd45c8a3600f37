"""Chunked documents in an OpenSearch index: the stored shapes, stale chunk removal, and document-level search.

``storage: nested`` (default): the document keeps its text and metadata, and a nested field (``chunks``)
holds one object per chunk: ``{"text", "start", "end", "index", <encoder fields>}``. A ``nested`` query
(``score_mode: max``) around the ``knn`` / ``neural_sparse`` clause returns whole documents scored by their
best chunk, and ``inner_hits`` (size 1) gives that chunk.

``storage: separate``: one document per chunk, ``_id`` ``<doc id>#<index>``, with ``parent_id``,
``chunk_index``, ``chunk_start``, ``chunk_end``, the chunk's text in the text field, the metadata and the
encoder fields at the top level. Search collapses on ``parent_id``.

The mapping of both is in mapping.py.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_exc

from neural_ingest.chunking import CHUNK_END, CHUNK_INDEX, CHUNK_KEYS, CHUNK_START, PARENT_ID, chunk_id
from neural_ingest.metadata import json_value
from neural_ingest.model_info import DenseVector, ModelInfo, SparseVector, Vector
from neural_ingest.records import Document
from neural_ingest.sinks import sparse_query as sq
from neural_ingest.sinks.base import ChunkLayout, DenseQuery, Hit, SinkError, SparseQuery
from neural_ingest.sinks.knn_query import knn_clause
from neural_ingest.sinks.opensearch_client import connection_problem
from neural_ingest.sinks.scoring import fuse_with_passages

if TYPE_CHECKING:  # the sink builds its searcher (OpenSearchSink.chunk_searcher) and the searcher queries the sink
    from neural_ingest.sinks.opensearch import OpenSearchSink

log = logging.getLogger(__name__)

# knn "k" for separate storage: chunks fetched so that collapsing on parent_id still leaves k documents.
# Nested storage asks for the sink's knn.search_candidates parents (Lucene's HNSW queue; see KnnConfig).
SEPARATE_OVERSAMPLE = 10


# --------------------------------------------------------------------------- documents
def _vec_json(vec: Vector) -> dict[str, float] | list[float]:
    if isinstance(vec, Mapping):
        return {str(k): float(v) for k, v in vec.items()}
    out: list[float] = np.asarray(vec).tolist()
    return out


def nested_source(doc: Document, text_field: str, plan: ChunkLayout) -> dict[str, Any]:
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


def delete_stale_chunks(client: OpenSearch, index: str, counts: dict[str, int], page: int = 1000) -> int:
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
        it["delete"]
        for it in resp.get("items", [])
        if it["delete"].get("status", 200) >= 300 and it["delete"].get("status") != 404
    ]
    if bad:
        raise RuntimeError(f"could not delete {len(bad)} stale chunks, e.g. {bad[0].get('_id')}: {bad[0].get('error')}")
    return len(ids)


# --------------------------------------------------------------------------- search
def _passage(src: dict[str, Any], score: float) -> dict[str, Any]:
    return {**{k: src.get(k) for k in CHUNK_KEYS}, "score": float(score)}


class ChunkedOpenSearch:
    """Document-level search over chunks in an OpenSearch index (nested or separate storage); a Searcher."""

    def __init__(self, sink: OpenSearchSink, chunking: ChunkLayout, fields: list[str]):
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

    def dense_body(self, field: str, vector: DenseVector, k: int) -> dict[str, Any]:
        knn = self.sink.cfg.knn
        if self.plan.storage == "nested":
            return self.nested_body(knn_clause(knn, f"{self.plan.field}.{field}", vector, k), k)
        return self.separate_body(knn_clause(knn, field, vector, k * SEPARATE_OVERSAMPLE), k)

    def sparse_body(self, field: str, query: SparseVector, k: int) -> dict[str, Any]:
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
        try:
            return self.hits(self.sink.client.search(index=self.sink.cfg.index, body=body))
        except os_exc.OpenSearchException as e:
            raise SinkError(connection_problem(self.sink.cfg, e)) from None

    def search(self, field: str, info: ModelInfo, vector: DenseVector, k: int) -> list[Hit]:
        return self._search(self.dense_body(field, vector, k))

    def search_sparse(self, field: str, info: ModelInfo, query: SparseVector, k: int) -> list[Hit]:
        return self._search(self.sparse_body(field, query, k))

    def search_hybrid(
        self, dense: DenseQuery, sparse: SparseQuery, k: int, weights: tuple[float, float] | None = None
    ) -> list[Hit]:
        # neural-search's hybrid query drops inner_hits, so the two nested searches are fused here
        # (hybrid.fuse reproduces its min_max + arithmetic_mean) and each document keeps a passage.
        return fuse_with_passages([self.search(*dense, k), self.search_sparse(*sparse, k)], weights, k)
