"""The growth benchmark (benchmarks/growth.py) on 30 documents: real `neural-ingest` subprocesses into Parquet
and three reindex nights behind an alias of its own on the test node. Checks the structure of growth.json and
the counts of each night (what an incremental reindex must do), never timings."""
from __future__ import annotations

import json

import pytest

from benchmarks.growth import (
    CHANGED_EVERY,
    CHANGED_OFFSET,
    build_corpus,
    changed_variant,
    main,
)


def test_changed_variant_changes_one_percent_of_the_texts_deterministically(tmp_path):
    corpus = build_corpus(250, tmp_path)
    path, changed = changed_variant(corpus)
    before = [json.loads(line) for line in corpus.read_text().splitlines()]
    after = [json.loads(line) for line in path.read_text().splitlines()]
    diff = [a["id"] for a, b in zip(after, before) if a != b]
    assert changed == len(diff) == 3 and diff == [f"d{i}" for i in range(CHANGED_OFFSET, 250, CHANGED_EVERY)]
    assert [a["id"] for a in after] == [b["id"] for b in before]
    assert changed_variant(corpus) == (path, changed) and path.read_text() == "\n".join(map(json.dumps, after)) + "\n"


@pytest.mark.slow
@pytest.mark.opensearch
def test_growth_benchmark_writes_its_result_structure(tmp_path, opensearch_url, os_client):
    out = tmp_path / "out"
    res = main(["--sizes", "30", "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--encoder", "tiny",
                "--opensearch-url", opensearch_url, "--skip", "opensearch", "--batch-size", "16"])
    saved = json.loads((out / "growth.json").read_text())
    assert saved["schema"] == 1 and saved["kind"] == "growth"
    assert {"machine", "settings", "corpora", "runs", "ratios", "skipped", "scenarios"} <= set(saved)
    assert saved["corpora"]["30"]["documents"] == 30 and saved["corpora"]["30"]["changed_documents"] == 1
    runs = {r["scenario"]: r for r in saved["runs"]}
    assert set(runs) == {"parquet", "reindex_full", "reindex_unchanged", "reindex_changed"}, saved["runs"]
    for r in runs.values():
        assert r["exit_code"] == 0, r.get("log_tail")
        assert r["documents"] == 30 and r["seconds"] > 0 and r["peak_rss_main_gib"] > 0 and r["peak_rss_tree_gib"] > 0
        assert r["summary"]["read"] == r["summary"]["indexed"] == 30 and r["summary"]["reconciles"], r["summary"]
        assert r["command"].startswith(("neural-ingest run ", "neural-ingest reindex "))
    # the nights: a full build encodes everything, an unchanged night nothing, a 1%-changed night that 1%
    assert runs["parquet"]["summary"]["encoded"] == runs["reindex_full"]["summary"]["encoded"] == 30
    assert runs["reindex_full"]["reindex"]["status"] == "swapped"
    assert (runs["reindex_unchanged"]["summary"]["encoded"], runs["reindex_unchanged"]["summary"]["reused"]) == (0, 30)
    assert (runs["reindex_changed"]["summary"]["encoded"], runs["reindex_changed"]["summary"]["reused"]) == (1, 29)
    assert runs["reindex_changed"]["reindex"]["previous_index"] == runs["reindex_unchanged"]["reindex"]["new_index"]
    ratios = {q["ratio"]: q for q in saved["ratios"]}
    assert set(ratios) == {"reindex_unchanged/reindex_full", "reindex_changed/reindex_full"}
    assert all({"documents", "value", "target", "met"} <= set(q) for q in ratios.values())
    assert "opensearch" in saved["skipped"] and res["runs"] == saved["runs"]
    assert (out / "growth.png").stat().st_size > 10_000
    # what the benchmark created on the shared node is gone
    alias = runs["reindex_full"]["alias"]
    assert not os_client.indices.exists(index=f"{alias}-*", allow_no_indices=False, expand_wildcards="all")
