"""The quickstart path: sample corpus -> real all-MiniLM-L6-v2 -> local Parquet dataset -> search."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from support import ROOT, SAMPLE, cosine, hold_model, write_jsonl

from neural_ingest.cli import main
from neural_ingest.pipelines.ingest import run_ingest


@pytest.fixture(scope="module")
def parquet_run(tmp_path_factory):
    """One pipeline run over the whole sample corpus, shared by the tests below."""
    from neural_ingest.config import load_config

    tmp = tmp_path_factory.mktemp("pq")
    cfg = load_config(
        ROOT / "configs" / "quickstart.yaml",
        [f"source.path={SAMPLE / 'docs.jsonl'}", f"sink.path={tmp / 'ds'}", f"dead_letter.path={tmp / 'dlq'}"],
    )
    keep = hold_model(cfg)  # noqa: F841 - keeps the shared model alive for the search tests
    summary = run_ingest(cfg, summary_path=str(tmp / "summary.json"))
    return cfg, summary, tmp


def test_summary_reconciles_and_is_written(parquet_run, sample_docs):
    _cfg, _summary, tmp = parquet_run
    data = json.loads((tmp / "summary.json").read_text())
    for key in ("read", "encoded", "indexed", "failed", "skipped", "seconds", "docs_per_second", "sink", "index"):
        assert key in data
    assert data["read"] == len(sample_docs) == data["indexed"] + data["failed"] + data["skipped"]
    assert data["indexed"] == len(sample_docs) and data["failed"] == 0


def test_every_vector_equals_sentence_transformers(parquet_run, sample_docs, st_model):
    cfg, _, _ = parquet_run
    table = pq.read_table(cfg.sink.path)
    got = dict(zip(table.column("id").to_pylist(), np.array(table.column("embedding").to_pylist(), dtype=np.float32)))
    assert table.schema.field("embedding").type.list_size == 384
    texts = [f"{d['title']}\n\n{d['body']}" for d in sample_docs]
    want = st_model.encode(texts, batch_size=32)
    assert set(got) == {d["id"] for d in sample_docs}
    worst = min(cosine(got[d["id"]], w) for d, w in zip(sample_docs, want))
    assert worst >= 0.9999


def test_rerun_replaces_the_dataset(parquet_run, tmp_path):
    cfg, _, _ = parquet_run
    small = write_jsonl(
        tmp_path / "few.jsonl", [{"id": "a", "title": "t", "body": "b"}, {"id": "b", "title": "t2", "body": "b2"}]
    )
    cfg2 = cfg.model_copy(update={"source": cfg.source.model_copy(update={"path": str(small)}),
                                  "sink": cfg.sink.model_copy(update={"path": str(tmp_path / "ds")})})
    run_ingest(cfg2)
    run_ingest(cfg2)
    assert sorted(pq.read_table(tmp_path / "ds").column("id").to_pylist()) == ["a", "b"]
    assert not list(tmp_path.glob(".ds.*")), "staging directories are cleaned up"


def test_search_finds_expected_documents(parquet_run, sample_queries):
    cfg, _, _tmp = parquet_run
    runner = CliRunner()
    misses = []
    for q in sample_queries:
        r = runner.invoke(
            main,
            [
                "search",
                str(ROOT / "configs" / "quickstart.yaml"),
                q["query"],
                "-k",
                "3",
                "--json",
                "--set",
                f"sink.path={cfg.sink.path}",
            ],
        )
        assert r.exit_code == 0, r.output
        ids = [h["id"] for h in json.loads(r.output.strip().splitlines()[-1])]
        if q["expected_id"] not in ids:
            misses.append((q["query"], q["expected_id"], ids))
    assert not misses, misses


def test_duplicate_ids_in_a_run_are_counted_once_and_the_last_is_kept(make_config, tmp_path):
    """Duplicate ids are found by a second read of the source: its records, dead letters and skips must
    not be counted again (read = indexed + failed + skipped), and the last copy of each id is written."""
    write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "title": "first a", "body": "x"}, {"id": "b", "title": "b", "body": "y"}])
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"id": "a", "title": "last a", "body": "x"})
        + "\n{not json\n"
        + json.dumps({"id": "e", "title": " ", "body": ""})
        + "\n"
    )
    cfg = make_config(source_path=tmp_path / "*.jsonl")
    s = run_ingest(cfg)
    assert (s.read, s.indexed, s.failed, s.skipped) == (5, 2, 1, 2)
    assert s.skipped_by_reason == {"duplicate_id": 1, "empty_text": 1} and s.failed_by_reason == {"read.malformed_json": 1}
    table = pq.read_table(cfg.sink.path)
    assert dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist())) == {"a": "last a\n\nx", "b": "b\n\ny"}
