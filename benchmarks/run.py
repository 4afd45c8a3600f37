"""Side-by-side throughput benchmark: raw model, the pipeline, raw bulk indexing, Beam's MLTransform.

One command, one machine, one run, one real-text corpus (benchmarks/corpus.py):

    python -m benchmarks.run --docs 3000 --batch-sizes 16,32,64 --out benchmarks/results/

measures, for each batch size B (same model, max_seq_length and thread count everywhere):

1. ``raw_encode``: ``SentenceTransformer.encode(texts, batch_size=B)`` over the texts in corpus order
   (sentence-transformers sorts the texts of one call by character length itself);
2. ``pipeline_parquet``: ``run_ingest`` end to end (read JSONL, prepare, encode, write) into Parquet;
3. ``pipeline_opensearch``: the same into a real OpenSearch (fresh k-NN index, lucene HNSW);
6. ``recall``: k-NN engines and HNSW parameters side by side (benchmarks/recall.py): recall@10 of a plain
   client ``k: 10`` query, build time, index size;
5. ``mltransform``: Beam's ``MLTransform`` + ``SentenceTransformerEmbeddings`` (min = max batch = B),
   JSONL in, Parquet out;

and once, at the middle batch size:

4. ``raw_bulk`` (``opensearchpy.helpers.bulk`` of the raw vectors into a fresh index with the same
   mapping) against ``indexing_stage`` (the pipeline's own sink stage fed the same vectors);
- ablations: fixed-size batches, batches sorted by characters, bulk requests in line (no overlap),
  refreshes disabled while loading (bulk_refresh: disable), one torch thread;
- faster backends: ONNX Runtime and OpenVINO, fp32 and int8, speed-up over torch fp32 and the smallest
  cosine to the torch vectors over every document; the pipeline with the fastest int8 one;
- CUDA, when torch sees a GPU.

It prints a table, writes ``results.json`` and ``chart.png`` into ``--out``.
It prints a table, writes ``results.json`` and ``chart.png`` into ``--out``.

This module is the command line and the order of the measurements; each measurement lives in a module
of its own: harness.py (settings, corpus and model, the runs recorded), baselines.py (1, 5),
pipeline_runs.py (2, 3), opensearch_node.py and opensearch_runs.py (4), recall.py (6), ablations.py,
backends.py (faster backends, CUDA), report.py (ratios and targets, table, chart).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from benchmarks import opensearch_node
from benchmarks.ablations import ablations
from benchmarks.backends import backends, fastest_int8_pipeline, gpu
from benchmarks.baselines import mltransform, raw_encode
from benchmarks.common import ROOT, load_average, machine_info, quiet_logging
from benchmarks.harness import MODEL, Bench, log
from benchmarks.opensearch_runs import indexing_stage, raw_bulk
from benchmarks.pipeline_runs import pipeline
from benchmarks.report import TARGETS, draw_chart, print_table, ratios

SCHEMA = 1
NOTES = [
    "raw_encode is one SentenceTransformer.encode call over all texts in corpus order: it sorts them "
    "by character length itself, so its batches have little padding; the pipeline encodes batch by "
    "batch and sorts windows of documents by token count (encoder batching: sorted).",
    "pipeline runs start with the model already loaded (as a long-lived worker has it); MLTransform "
    "loads its own copy inside the run: docs_per_second_excl_load takes that time out and is the "
    "figure the ratio uses.",
]


def run(bench: Bench) -> dict[str, Any]:
    """Every measurement in order (the node started first and stopped last), then the result document."""
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    machine = machine_info()
    bench.setup()
    opensearch_node.start(bench)
    try:
        recall_rows, backend_rows, gpu_info = measure(bench)
    finally:
        opensearch_node.stop(bench)
        shutil.rmtree(bench.work, ignore_errors=True)
    machine["load_average_end"] = load_average()
    w = bench.w
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "started": started,
        "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
        "machine": machine,
        "corpus": {**w.corpus.as_dict(), "tokens": w.token_stats},
        "settings": {
            "model": MODEL,
            "model_dir": w.model_dir,
            "max_seq_length": w.max_seq_length,
            "threads": bench.threads,
            "batch_sizes": bench.batch_sizes,
            "reference_batch_size": bench.b0,
            "opensearch": bench.os_url,
            "model_load_seconds": round(w.model_load_seconds, 2),
            "notes": NOTES,
        },
        "runs": bench.runs,
        "backends": backend_rows,
        "recall": recall_rows,
        "gpu": gpu_info,
        "skipped": bench.skipped,
    }
    result["ratios"], result["targets"] = ratios(bench.runs, bench.batch_sizes, bench.b0, backend_rows)
    return result


def measure(bench: Bench) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The measurements --skip leaves; (recall rows, backend rows, GPU result)."""
    skip, skipped = bench.skip, bench.skipped
    vectors: dict[int, Any] = {}
    for b in bench.batch_sizes:
        vectors[b] = raw_encode(bench, b)
        pipeline(bench, "parquet", b, "pipeline_parquet")
        if bench.os_url:
            pipeline(bench, "opensearch", b, "pipeline_opensearch")
        if "mltransform" not in skip:
            mltransform(bench, b)
    if "mltransform" in skip:
        skipped["mltransform"] = "--skip mltransform"
    ref = vectors[bench.b0]
    if bench.os_url:
        raw_bulk(bench, ref)
        indexing_stage(bench, ref)
    recall_rows: list[dict[str, Any]] = []
    if bench.os_url and "recall" not in skip:  # k-NN engines / HNSW parameters: benchmarks/recall.py
        from benchmarks.recall import measure_grid

        w = bench.w
        recall_rows = measure_grid(bench.os_url, w.corpus, w.records, w.held, bench.cache)
    elif "recall" in skip:
        skipped["recall"] = "--skip recall"
    if "ablations" not in skip:
        ablations(bench, ref)
    else:
        skipped["ablations"] = "--skip ablations"
    backend_rows: list[dict[str, Any]] = []
    if "backends" not in skip:
        backend_rows = backends(bench, ref)
        fastest_int8_pipeline(bench, backend_rows, TARGETS["fast_backend_int8_min_cosine"])
    else:
        skipped["backends"] = "--skip backends"
    gpu_info = gpu(bench) if "gpu" not in skip else {"available": False, "reason": "--skip gpu"}
    return recall_rows, backend_rows, gpu_info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=3000, help="corpus size (Python docstrings, built once into --cache-dir)")
    ap.add_argument("--batch-sizes", default="16,32,64", help="comma-separated; the middle one is the reference")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="where results.json and chart.png go")
    ap.add_argument("--cache-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "neural-ingest", "bench"))
    ap.add_argument("--threads", type=int, default=None, help="torch / runtime threads; default: all cores")
    ap.add_argument("--opensearch-url", default=None, help="use this OpenSearch instead of starting one")
    ap.add_argument("--opensearch-port", type=int, default=9270, help="port of the local instance started (name: bench)")
    ap.add_argument("--keep-opensearch", action="store_true", help="leave the started instance running")
    ap.add_argument(
        "--skip", default="", help="comma-separated: opensearch, mltransform, ablations, backends, threads, gpu, recall"
    )
    ap.add_argument("--no-chart", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    quiet_logging()
    result = run(Bench(args))
    out = Path(args.out)
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.no_chart:
        draw_chart(result, out / "chart.png")
    print_table(result)
    log(f"wrote {out / 'results.json'}" + ("" if args.no_chart else f" and {out / 'chart.png'}"))
    return result


if __name__ == "__main__":
    main()
