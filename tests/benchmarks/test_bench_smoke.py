"""The benchmark harness on a tiny corpus: it runs end to end and writes results.json with the agreed
structure (runs, ratios, targets, corpus provenance, machine). Timings are not checked."""
from __future__ import annotations

import importlib.util
import json

from benchmarks.corpus import build_corpus, load_texts


def test_corpus_is_real_text_deterministic_and_sized(tmp_path):
    a = build_corpus(40, tmp_path / "a")
    b = build_corpus(40, tmp_path / "b")
    assert a.documents == 40 and a.sha256 == b.sha256
    assert "PSF" in next(iter(a.licences.values()))
    rows = load_texts(a.path)
    assert len({r["id"] for r in rows}) == 40
    words = [len(r["text"].split()) for r in rows]
    assert min(words) >= 20 and max(words) > 2 * min(words)  # varied lengths


def test_benchmark_harness_writes_the_result_structure(tmp_path, opensearch_url):
    """All five measurements, OpenSearch included (the real test node), on 24 documents."""
    from benchmarks.run import main

    chart = importlib.util.find_spec("matplotlib") is not None
    out = tmp_path / "out"
    args = ["--docs", "24", "--batch-sizes", "8", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--skip", "ablations,backends,gpu", "--threads", "1", "--opensearch-url", opensearch_url]
    main(args + ([] if chart else ["--no-chart"]))
    res = json.loads((out / "results.json").read_text())
    assert res["schema"] == 1
    assert {"machine", "corpus", "settings", "runs", "ratios", "targets", "backends", "gpu", "skipped"} <= set(res)
    assert res["corpus"]["documents"] == 24 and res["corpus"]["licences"] and res["corpus"]["tokens"]["mean"] > 0
    assert res["machine"]["cores"] >= 1 and "torch" in res["machine"]["versions"]
    names = {(r["name"], r["batch_size"]) for r in res["runs"]}
    assert {("raw_encode", 8), ("pipeline_parquet", 8), ("pipeline_opensearch", 8), ("mltransform", 8),
            ("raw_bulk", None), ("indexing_stage", None)} <= names
    for r in res["runs"]:
        assert r["docs"] == 24 and r["seconds"] > 0 and r["docs_per_second"] > 0
        if "count_in_index" in r:
            assert r["count_in_index"] == 24, r
    assert set(res["ratios"]) >= {"pipeline_parquet/raw_encode", "pipeline_opensearch/raw_encode",
                                  "indexing_stage/raw_bulk", "pipeline_parquet/mltransform"}
    assert all({"ratio", "at", "value", "target", "met"} <= set(t) for t in res["targets"])
    assert set(res["skipped"]) >= {"ablations", "backends"} and "opensearch" not in res["skipped"]
    assert res["gpu"]["available"] in (True, False)
    rows = {r["config"]: r for r in res["recall"]}  # faiss rows say why they were skipped on a node without it
    assert "lucene m16 efc128 (old default)" in rows and all("recall_at_10" in r or r.get("skipped") for r in rows.values())
    assert rows["lucene m16 efc128 (old default)"]["exact_vs_numpy"] == 1.0
    if chart:
        assert (out / "chart.png").stat().st_size > 10_000
