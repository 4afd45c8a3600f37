"""The overhead benchmark (benchmarks/overhead.py) on a few dozen documents: it runs all three comparisons in
one process and writes overhead.json with the agreed structure. Timings are not checked."""
from __future__ import annotations

import json

from benchmarks.growth import build_corpus
from benchmarks.overhead import main


def test_synthetic_corpus_is_deterministic(tmp_path):
    a = build_corpus(30, tmp_path / "a").read_text()
    assert a == build_corpus(30, tmp_path / "b").read_text()
    rows = [json.loads(line) for line in a.splitlines()]
    assert [r["id"] for r in rows] == [f"d{i}" for i in range(30)]
    assert all(200 <= len(r["body"]) <= 1500 and r["topic"] in "abcde" for r in rows)


def test_overhead_writes_runs_and_ratios(tmp_path, opensearch_url, os_client):
    out = tmp_path / "out"
    prefix = f"overhead-test-{tmp_path.name.lower()[-12:]}"
    res = main(["--docs", "40", "--out", str(out), "--work-dir", str(tmp_path / "work"), "--dimension", "16",
                "--batch-size", "8", "--hash-batch-size", "16", "--write-batch", "15", "--opensearch-url", opensearch_url,
                "--index-prefix", prefix, "--repeat", "2"])
    assert json.loads((out / "overhead.json").read_text()) == res
    assert res["schema"] == 1 and res["corpus"]["documents"] == 40 and res["skipped"] == {}
    assert {"cores", "load_before", "load_after"} <= set(res["machine"])
    names = [r["name"] for r in res["runs"]]
    assert names == ["tiny_direct_encode", "tiny_parquet", "hash_bare_loop", "hash_parquet", "hash_raw_bulk", "hash_opensearch"]
    for r in res["runs"]:
        assert r["docs"] == 40 and r["seconds"] > 0 and r["docs_per_second"] > 0 and r["cpu_seconds"] >= 0
        assert len(r["repeats"]) == 2 and r["seconds"] == min(r["repeats"])  # the fastest of --repeat runs
    assert [r["count_in_index"] for r in res["runs"] if "count_in_index" in r] == [40, 40]
    assert [r["rows_written"] for r in res["runs"] if "rows_written" in r] == [40, 40]
    assert set(res["ratios"]) == {
        "tiny_parquet/tiny_direct_encode",
        "hash_parquet/hash_bare_loop",
        "hash_opensearch/hash_raw_bulk",
    }
    assert all(set(v) == {"ratio", "cpu_ratio", "target", "met"} and v["ratio"] > 0 for v in res["ratios"].values())
    assert os_client.indices.get(index=f"{prefix}*") == {}  # every index it made is deleted
    assert not (tmp_path / "work").exists()  # scratch removed


def test_bare_loop_writes_the_sinks_columns_and_the_contract_vectors(tmp_path):
    import numpy as np
    import pyarrow.parquet as pq

    from benchmarks.overhead import Overhead, parse_args
    from neural_ingest.encoders.hash import hash_vectors

    corpus = build_corpus(25, tmp_path / "c")
    bench = Overhead(parse_args(["--docs", "25", "--out", str(tmp_path / "o"), "--dimension", "8", "--hash-batch-size", "4",
                                 "--write-batch", "10"]))
    assert bench.bare_loop(corpus, tmp_path / "bare") == 25
    table = pq.read_table(tmp_path / "bare")
    assert table.column_names == ["id", "text", "metadata", "embedding"] and table.num_rows == 25
    assert len(list((tmp_path / "bare").glob("*.parquet"))) == 3
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    want = hash_vectors([f"{r['title']}\n\n{r['body']}" for r in rows], 8)
    np.testing.assert_allclose(np.array(table.column("embedding").to_pylist(), dtype=np.float32), want)
