"""Recall of a built k-NN index, measured the way its clients will query it.

After a run the index answers a sample of held-out queries twice: with the plain query shape client
applications send (``{"knn": {field: {"vector": q, "k": k}}}``, ``size`` k, no method_parameters) and
exactly. recall@k is the mean share of the exact top k that the plain query returns.

Queries: the documents' own vectors would find themselves and say little, so each sampled document
gives its first sentence (encoded as a query by the run's model), or ``sink.recall.queries_path`` gives
the texts (JSONL, one ``{"text": ...}`` a line).

Exact search is OpenSearch's own brute force, ``script_score`` with ``knn_score`` over the same field and
space type: it scores every document with the full-precision vectors (also for compressed / on_disk
fields, whose doc values keep the full vectors), so it is exact whatever the size of the index, costs one
request per query and no vector leaves the cluster; reading every stored vector back to the client
would cost the whole index in JSON per run.
"""
from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from neural_ingest.config.sinks import KNN_MAX_K
from neural_ingest.model_info import DenseVector

log = logging.getLogger(__name__)

MIN_QUERY_WORDS = 3
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
MSEARCH_BATCH = 50
MIN_SAMPLE = 20
LOW_RECALL = 0.95  # below it the summary warns

Hit = tuple[str, float]  # (document id, score)


def first_sentence(text: str, min_words: int = MIN_QUERY_WORDS) -> str | None:
    """The first sentence (or paragraph line) of at least ``min_words`` words: a held-out query that is
    not the document's own vector; None when the text has none."""
    for raw in _SENTENCE_END.split(text or ""):
        part = " ".join(raw.split())
        if len(part.split()) >= min_words:
            return part
    return None


def load_queries(path: str, field: str = "text") -> list[str]:
    """Query texts from a JSONL file (the ``text`` field of each line)."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)[field]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"sink.recall.queries_path {path} line {n}: not a JSON object with a {field!r} string") from None
        if isinstance(text, str) and text.strip():
            out.append(text)
    return out


def sample_texts(client: Any, index: str, text_field: str, n: int, seed: int) -> list[str]:
    """The texts of ``n`` documents drawn at random (reproducibly for a seed)."""
    body = {
        "size": n,
        "_source": [text_field],
        "query": {"function_score": {"query": {"match_all": {}}, "random_score": {"seed": seed, "field": "_seq_no"}}},
    }
    hits = client.search(index=index, body=body, request_timeout=120)["hits"]["hits"]
    return [str(h.get("_source", {}).get(text_field) or "") for h in hits]


def sample_size(most: int, documents: int) -> int:
    """``most`` queries, but no more than a tenth of a small index (at least 20): encoding the queries must
    stay a small part of the run (a 300-document run encodes 30, not 200)."""
    return min(most, documents, max(MIN_SAMPLE, documents // 10))


def plain_query(field: str, vector: DenseVector, k: int) -> dict[str, Any]:
    """What a client application sends: k neighbours, size k, the index's own search settings."""
    return {"size": k, "_source": False, "query": {"knn": {field: {"vector": [float(x) for x in vector], "k": k}}}}


def exact_query(field: str, vector: DenseVector, k: int, space_type: str,
                among: dict[str, Any] | None = None) -> dict[str, Any]:
    """Brute force over every document (or those ``among`` matches): knn_score with the field's space type (same
    order as the knn query)."""
    return {
        "size": k,
        "_source": False,
        "query": {
            "script_score": {
                "query": among or {"match_all": {}},
                "script": {
                    "source": "knn_score",
                    "lang": "knn",
                    "params": {"field": field, "query_value": [float(x) for x in vector], "space_type": space_type},
                },
            }
        },
    }


def msearch_hits(client: Any, index: str, bodies: list[dict[str, Any]], preference: str | None = None) -> list[list[Hit]]:
    """(id, score) of each body's hits, best first, in MSEARCH_BATCH requests; a failed query raises."""
    head: dict[str, Any] = {"index": index, **({"preference": preference} if preference else {})}
    out: list[list[Hit]] = []
    for i in range(0, len(bodies), MSEARCH_BATCH):
        lines: list[Any] = []
        for b in bodies[i:i + MSEARCH_BATCH]:
            lines += [head, b]
        res = client.msearch(body=lines, request_timeout=300)
        for r in res["responses"]:
            if "error" in r:
                err = r["error"]
                reason = err.get("root_cause", [{}])[0].get("reason") if isinstance(err, dict) else err
                raise RuntimeError(f"query failed: {str(reason or err)[:300]}")
            out.append([(h["_id"], float(h["_score"] or 0.0)) for h in r["hits"]["hits"]])
    return out


def _msearch_ids(client: Any, index: str, bodies: list[dict[str, Any]]) -> list[list[str]]:
    return [[doc_id for doc_id, _ in hits] for hits in msearch_hits(client, index, bodies)]


def recall_at_k(approx: list[list[str]], exact: list[list[str]], k: int) -> float:
    """Mean over queries of |approx top k & exact top k| / min(k, |exact top k|)."""
    shares = [len(set(a[:k]) & set(e[:k])) / min(k, len(e)) for a, e in zip(approx, exact) if e]
    return sum(shares) / len(shares) if shares else 0.0


def probe(client: Any, index: str, field: str, vectors: Sequence[DenseVector], k: int, space_type: str,
          depth: int) -> tuple[float, FieldProbes]:
    """recall@k for query ``vectors``, and the probes a later night carries forward (each query's exact top ``depth``)."""
    approx = _msearch_ids(client, index, [plain_query(field, v, k) for v in vectors])
    exact = msearch_hits(client, index, [exact_query(field, v, depth, space_type) for v in vectors])
    probes = FieldProbes(space_type, [[float(x) for x in v] for v in vectors], exact, [cut_off(hits, depth) for hits in exact])
    return recall_at_k(approx, [[i for i, _ in hits] for hits in exact], k), probes


def cut_off(hits: list[Hit], depth: int) -> float | None:
    """The score above which an exact search asked for ``depth`` hits listed every document: the last hit's when it
    returned that many (more may tie or follow), None when it returned fewer (it listed them all)."""
    return hits[-1][1] if len(hits) >= depth else None


@dataclass
class FieldProbes:
    """One dense field's recall probes on an index: the query vectors and, per query, its exact hits best first.
    ``bound[q]``: every document scoring above it is in ``exact[q]`` (None: every document of the index is)."""

    space_type: str
    vectors: list[list[float]]
    exact: list[list[Hit]]
    bound: list[float | None]


@dataclass
class Probes:
    """What a recall check asked and found (sinks/recall_probes.py carries it to the next night)."""

    k: int
    depth: int
    source: str
    fields: dict[str, FieldProbes] = dc_field(default_factory=dict)


def field_facts(client: Any, index: str, field: str) -> dict[str, Any]:
    """Engine, space type and HNSW parameters as the index has them (not as configured)."""
    props = next(iter(client.indices.get_mapping(index=index).values()))["mappings"].get("properties", {})
    fm = props.get(field, {})
    method = fm.get("method") or {}
    got = next(iter(client.indices.get_settings(index=index, include_defaults=True, flat_settings=True).values()))
    key = "index.knn.algo_param.ef_search"
    ef = got.get("settings", {}).get(key) or got.get("defaults", {}).get(key)
    params = dict(method.get("parameters") or {})
    if ef is not None:
        params["index.knn.algo_param.ef_search"] = int(ef)
    for key in ("mode", "compression_level"):
        if fm.get(key):
            params[key] = fm[key]
    return {"engine": method.get("engine") or "faiss", "space_type": method.get("space_type") or fm.get("space_type") or "l2",
            "params": params}


def check_index(sink: Any, encoders: list[tuple[str, Any]], fields: dict[str, Any]) -> dict[str, Any] | None:
    """recall@k of the built index for the run's summary; None where there is nothing to measure (check off,
    no dense field). Never raises: a failed measurement is reported as such, the run's result stands."""
    return check_index_probes(sink, encoders, fields)[0]


def probe_depth(k: int) -> int:
    """Exact hits kept per query: twice k, so a night that rewrites or deletes a few of them still knows the top k."""
    return min(KNN_MAX_K, 2 * k)


def check_index_probes(sink: Any, encoders: list[tuple[str, Any]], fields: dict[str, Any],
                       depth: int | None = None) -> tuple[dict[str, Any] | None, Probes | None]:
    """check_index, and its probes (exact top ``depth`` per query; None when nothing was measured)."""
    rcfg = sink.cfg.recall
    dense = [(f, e) for f, e in encoders if fields[f].kind == "dense"]
    if rcfg.sample_queries <= 0 or not dense:
        return None, None
    k = rcfg.k
    base: dict[str, Any] = {"k": k, "queries": 0, "recall_at_k": None}
    if getattr(sink, "chunking", None) is not None:
        return {**base, "skipped": "chunked index: vectors are per chunk, so recall per document is not measured"}, None
    client, index = sink.client, sink.index_name
    try:
        if rcfg.queries_path:
            texts = load_queries(rcfg.queries_path)[: rcfg.sample_queries]
            source = f"queries_path {rcfg.queries_path}"
        else:
            n = sample_size(rcfg.sample_queries, int(client.count(index=index)["count"]))
            texts = [q for q in (first_sentence(t) for t in sample_texts(client, index, sink.cfg.text_field, n, rcfg.seed)) if q]
            source = "first sentences of sampled documents"
        if not texts:
            return {**base, "skipped": f"no query text ({source}): set sink.recall.queries_path"}, None
        t0 = time.monotonic()
        probes = Probes(k, max(k, depth or k), source)
        by_field: dict[str, Any] = {}
        for fname, encoder in dense:
            facts = field_facts(client, index, fname)
            vecs = encoder.encode_queries(encoder.acquire(), texts)
            r, probes.fields[fname] = probe(client, index, fname, vecs, k, facts["space_type"], probes.depth)
            by_field[fname] = {"recall_at_k": round(r, 4), "engine": facts["engine"], "params": facts["params"]}
    except Exception as e:  # noqa: BLE001 - the measurement must not fail a run that indexed everything
        log.warning("recall check of %s failed: %s", index, e)
        return {**base, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}, None
    return summarise(base, len(texts), source, by_field, time.monotonic() - t0), probes


def summarise(base: dict[str, Any], queries: int, source: str, by_field: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The summary's recall section: the worst field's figure, and every field's when there are several."""
    worst = min(by_field, key=lambda f: by_field[f]["recall_at_k"])
    out = {**base, "queries": queries, "query_source": source, "field": worst, **by_field[worst], "seconds": round(seconds, 2)}
    if len(by_field) > 1:
        out["by_field"] = by_field
    return out
