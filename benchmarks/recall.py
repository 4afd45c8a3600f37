"""k-NN engine and HNSW parameters side by side: recall@10 of a plain client query, build time, size.

    python -m benchmarks.recall --docs 3000 --queries 300 --opensearch-url http://127.0.0.1:9270

The corpus (benchmarks/corpus.py) is encoded once with all-MiniLM-L6-v2 (cached); the queries are the
first sentences of a seeded sample of its documents (neural_ingest/sinks/recall.py), encoded by the same
model. Each configuration builds a fresh index through the pipeline's own sink stage (same bulk requests,
bulk-load settings and final refresh as ``neural-ingest run``), then the plain query
``{"knn": {"embedding": {"vector": q, "k": 10}}}`` (size 10) is compared with exact search (numpy over
the same vectors, and OpenSearch's script_score brute force as a cross-check). The node needs the faiss
native libraries (scripts/opensearch-local.sh builds them) for the faiss rows.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import logger, timed
from benchmarks.harness import MODEL

# (label, sink.knn settings); the first is the old default, "defaults" is the shipped one.
GRID: list[tuple[str, dict[str, Any]]] = [
    ("lucene m16 efc128 (old default)", {"engine": "lucene", "m": 16, "ef_construction": 128}),
    ("lucene m32 efc256", {"engine": "lucene", "m": 32, "ef_construction": 256}),
    ("lucene m16 efc128 ef_search100", {"engine": "lucene", "m": 16, "ef_construction": 128, "ef_search": 100}),
    ("faiss m16 efc128 ef_search100", {"engine": "faiss", "m": 16, "ef_construction": 128, "ef_search": 100}),
    ("faiss m16 efc256 ef_search100", {"engine": "faiss", "m": 16, "ef_construction": 256, "ef_search": 100}),
    ("faiss m32 efc256 ef_search100", {"engine": "faiss", "m": 32, "ef_construction": 256, "ef_search": 100}),
    ("faiss m16 efc128 ef_search200", {"engine": "faiss", "m": 16, "ef_construction": 128, "ef_search": 200}),
    ("lucene m16 efc128 ef_search10", {"engine": "lucene", "m": 16, "ef_construction": 128, "ef_search": 10}),
    ("faiss m16 efc128 ef_search10", {"engine": "faiss", "m": 16, "ef_construction": 128, "ef_search": 10}),
    ("faiss sq fp16", {"engine": "faiss", "encoder": "sq_fp16"}),
    ("faiss in_memory 32x", {"engine": "faiss", "mode": "in_memory", "compression_level": "32x"}),
    ("faiss on_disk 32x", {"engine": "faiss", "mode": "on_disk", "compression_level": "32x"}),
    ("faiss on_disk 8x", {"engine": "faiss", "mode": "on_disk", "compression_level": "8x"}),
]


log = logger("recall")


def _vectors(texts: list[str], cache: Path, tag: str, model: Any, as_queries: bool = False):
    import numpy as np

    path = cache / f"vectors-{tag}-{hashlib.sha1(chr(1).join(texts).encode()).hexdigest()[:12]}.npy"
    if path.exists():
        return np.load(path)
    vecs = np.asarray(model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
    np.save(path, vecs)
    return vecs


def build(url: str, records_path: str, vec_path: str, knn: dict[str, Any], info: Any) -> tuple[str, float]:
    """A fresh index loaded through the pipeline's sink stage; (index, seconds)."""
    from benchmarks.opensearch_runs import load_through_sink
    from neural_ingest.config import OpenSearchSinkConfig

    cfg = OpenSearchSinkConfig(hosts=[url], index=f"bench-recall-{uuid.uuid4().hex[:8]}", knn=knn,
                               recall={"sample_queries": 0})
    secs, _ = timed(lambda: load_through_sink(cfg, {"embedding": info}, records_path, vec_path))
    return cfg.index, secs


def measure_grid(
    url: str,
    corpus: Any,
    records: list[dict],
    held: Any,
    cache: Path,
    queries_n: int = 300,
    k: int = 10,
    only: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per GRID configuration (benchmarks/run.py calls this too). faiss rows are skipped, saying so,
    on a node without the faiss libraries: a faiss write would crash it."""
    import random

    import numpy as np
    from opensearchpy import OpenSearch

    from neural_ingest.sinks import knn_support
    from neural_ingest.sinks import recall as rc

    docs = _vectors([r["text"] for r in records], cache, "docs", held.model)
    vec_path = str(cache / f"recall-docs-{corpus.sha256[:12]}.npy")
    np.save(vec_path, docs)
    rng = random.Random(0)
    sample = rng.sample(range(len(records)), min(queries_n, len(records)))
    qtexts = [q for q in (rc.first_sentence(records[i]["text"]) for i in sample) if q]
    queries = _vectors(qtexts, cache, "queries", held.model)
    # Exact top k over the very vectors indexed (cosine: normalise; all-MiniLM-L6-v2's are unit length already).
    dn = docs / np.linalg.norm(docs, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    ids = np.array([r["id"] for r in records])
    exact_np = [list(ids[np.argsort(-row, kind="stable")[:k]]) for row in qn @ dn.T]
    log(f"corpus {len(records)} docs, {len(qtexts)} queries (first sentences), k={k}")
    client = OpenSearch(hosts=[url], timeout=300)
    version = client.info()["version"]["number"]
    has_faiss, why = knn_support.faiss_available(client)
    rows: list[dict[str, Any]] = []
    for label, knn in GRID:
        if only and not any(s in label for s in only):
            continue
        if knn.get("engine") == "faiss" and not has_faiss:
            rows.append({"config": label, "knn": knn, "opensearch": version, "skipped": f"no faiss: {why}"})
            continue
        try:
            index, secs = build(url, corpus.path, vec_path, knn, held.info)
        except Exception as e:  # noqa: BLE001 - a configuration the cluster rejects is a row saying so
            rows.append({"config": label, "knn": knn, "opensearch": version, "error": " ".join(str(e).split())[:300]})
            log(f"{label}: {rows[-1]['error']}")
            continue
        try:
            approx = rc._msearch_ids(client, index, [rc.plain_query("embedding", q, k) for q in queries])
            exact_os = rc._msearch_ids(client, index, [rc.exact_query("embedding", q, k, "cosinesimil") for q in queries])
            stats = client.indices.stats(index=index, metric="store,segments")["indices"][index]["primaries"]
            if knn.get("compression_level") or knn.get("mode") == "on_disk":  # what the query's rescoring gives
                body = [rc.plain_query("embedding", q, k) for q in queries]
                for b in body:
                    b["query"]["knn"]["embedding"]["rescore"] = False
                no_rescore = rc.recall_at_k(rc._msearch_ids(client, index, body), exact_np, k)
                for b in body:
                    b["query"]["knn"]["embedding"]["rescore"] = {"oversample_factor": 3.0}
                rescore3 = rc.recall_at_k(rc._msearch_ids(client, index, body), exact_np, k)
            else:
                no_rescore = rescore3 = None
            # A large index ends up in few large segments: the same queries on one merged segment.
            client.indices.forcemerge(index=index, max_num_segments=1, request_timeout=600)
            client.indices.refresh(index=index)
            merged = rc._msearch_ids(client, index, [rc.plain_query("embedding", q, k) for q in queries])
            row = {
                "config": label,
                "knn": knn,
                "opensearch": version,
                "docs": len(records),
                "queries": len(qtexts),
                "recall_at_10": round(rc.recall_at_k(approx, exact_np, k), 3),
                "recall_at_10_one_segment": round(rc.recall_at_k(merged, exact_np, k), 3),
                "recall_at_10_rescore_false": None if no_rescore is None else round(no_rescore, 3),
                "recall_at_10_oversample_3": None if rescore3 is None else round(rescore3, 3),
                "exact_vs_numpy": round(rc.recall_at_k(exact_os, exact_np, k), 3),
                "build_seconds": round(secs, 1),
                "size_mib": round(stats["store"]["size_in_bytes"] / 2**20, 1),
                "segments": stats["segments"]["count"],
            }
        finally:
            client.indices.delete(index=index, ignore=[404])
        rows.append(row)
        log(json.dumps(row))
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print("| configuration | recall@10 (plain k: 10) | same, one segment | rescore false / oversample 3 | build s | size MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "recall_at_10" not in r:
            print(f"| {r['config']} | {r.get('skipped') or 'rejected: ' + r.get('error', '')[:120]} | | | | |")
            continue
        rescore = (
            ""
            if r["recall_at_10_rescore_false"] is None
            else f"{r['recall_at_10_rescore_false']:.3f} / {r['recall_at_10_oversample_3']:.3f}"
        )
        print(
            f"| {r['config']} | {r['recall_at_10']:.3f} | {r['recall_at_10_one_segment']:.3f} | {rescore} | "
            f"{r['build_seconds']} | {r['size_mib']} |"
        )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.recall", description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--opensearch-url", required=True, help="a node with the k-NN plugin (and faiss libraries for faiss rows)")
    ap.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "neural-ingest", "bench"))
    ap.add_argument("--only", default="", help="comma-separated substrings of the labels to run")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    import logging

    from benchmarks.corpus import build_corpus, load_texts
    from neural_ingest.config import SentenceTransformersEncoderConfig
    from neural_ingest.encoders.dense import SentenceTransformerEncoder

    logging.basicConfig(level=logging.WARNING)
    cache = Path(args.cache_dir).expanduser()
    corpus = build_corpus(args.docs, cache)
    records = load_texts(corpus.path)
    held = SentenceTransformerEncoder(SentenceTransformersEncoderConfig(model=MODEL, device="cpu")).acquire()
    rows = measure_grid(
        args.opensearch_url, corpus, records, held, cache, args.queries, args.k, [s for s in args.only.split(",") if s]
    )
    print_rows(rows)
    if args.out:
        Path(args.out).write_text(
            json.dumps({"command": " ".join(["python -m benchmarks.recall", *sys.argv[1:]]), "rows": rows}, indent=2) + "\n"
        )
    return rows


if __name__ == "__main__":
    main()
