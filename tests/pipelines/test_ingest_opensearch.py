"""Dense ingest into the real OpenSearch: fidelity, self-retrieval, idempotence, mapping, search."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from neural_ingest.cli import main
from neural_ingest.pipelines.ingest import run_ingest
from neural_ingest.sinks.base import SinkError
from support import hold_model, cosine


@pytest.fixture(scope="module")
def os_run(opensearch_url, tmp_path_factory):
    """One pipeline run of the sample corpus into a fresh k-NN index."""
    import uuid

    from opensearchpy import OpenSearch

    from neural_ingest.config import parse_config
    from support import MINILM, SAMPLE

    tmp = tmp_path_factory.mktemp("os")
    index = f"t-dense-{uuid.uuid4().hex[:6]}"
    cfg = parse_config(
        {
            "source": {"type": "jsonl", "path": str(SAMPLE / "docs.jsonl"), "text_fields": ["title", "body"], "metadata_fields": ["topic", "year"]},
            "encoder": {"type": "sentence_transformers", "model": MINILM, "device": "cpu"},
            "sink": {"type": "opensearch", "hosts": [opensearch_url], "index": index, "knn": {"engine": "lucene"}, "bulk": {"max_docs": 100}},
            "dead_letter": {"path": str(tmp / "dlq")},
        }
    )
    keep = hold_model(cfg)  # noqa: F841 - keeps the shared model alive for the search tests
    summary = run_ingest(cfg)
    client = OpenSearch(hosts=[opensearch_url], timeout=60)
    yield cfg, summary, client, tmp
    client.indices.delete(index=index, ignore=[404])


def all_docs(client, index):
    res = client.search(index=index, body={"size": 10000, "query": {"match_all": {}}})
    return {h["_id"]: h["_source"] for h in res["hits"]["hits"]}


def test_counts_reconcile(os_run, sample_docs):
    cfg, summary, client, _ = os_run
    assert summary.read == len(sample_docs)
    assert summary.indexed == len(sample_docs) and summary.failed == 0 and summary.skipped == 0
    assert summary.reconciles
    assert summary.index == cfg.sink.index
    assert client.count(index=cfg.sink.index)["count"] == len(sample_docs)


def test_mapping_from_the_model(os_run):
    cfg, _, client, _ = os_run
    m = client.indices.get_mapping(index=cfg.sink.index)[cfg.sink.index]["mappings"]["properties"]["embedding"]
    assert m["type"] == "knn_vector" and m["dimension"] == 384
    assert m["method"]["space_type"] == "cosinesimil" and m["method"]["engine"] == "lucene"
    settings = client.indices.get_settings(index=cfg.sink.index)[cfg.sink.index]["settings"]["index"]
    assert settings["knn"] == "true"


def test_vectors_in_the_index_equal_sentence_transformers(os_run, sample_docs, st_model):
    cfg, _, client, _ = os_run
    stored = all_docs(client, cfg.sink.index)
    want = st_model.encode([f"{d['title']}\n\n{d['body']}" for d in sample_docs], batch_size=32)
    assert set(stored) == {d["id"] for d in sample_docs}
    worst = min(cosine(stored[d["id"]]["embedding"], w) for d, w in zip(sample_docs, want))
    assert worst >= 0.9999
    d0 = sample_docs[0]
    assert stored[d0["id"]]["topic"] == d0["topic"] and stored[d0["id"]]["year"] == d0["year"]


def test_self_retrieval(os_run):
    cfg, _, client, _ = os_run
    stored = all_docs(client, cfg.sink.index)
    wrong = []
    for doc_id, src in stored.items():
        res = client.search(
            index=cfg.sink.index,
            body={"size": 1, "_source": False, "query": {"knn": {"embedding": {"vector": src["embedding"], "k": 20}}}},
        )
        top = res["hits"]["hits"][0]["_id"]
        if top != doc_id:
            wrong.append((doc_id, top))
    assert not wrong


def test_rerun_is_idempotent(os_run):
    cfg, _, client, _ = os_run
    before = set(all_docs(client, cfg.sink.index))
    summary = run_ingest(cfg)
    client.indices.refresh(index=cfg.sink.index)
    assert summary.indexed == len(before)
    assert set(all_docs(client, cfg.sink.index)) == before
    assert client.count(index=cfg.sink.index)["count"] == len(before)


def test_search_cli_finds_expected_documents(os_run, sample_queries, tmp_path):
    cfg, _, _, _ = os_run
    path = tmp_path / "c.json"  # JSON is YAML: the CLI reads the exact config the run used
    path.write_text(cfg.model_dump_json())
    runner = CliRunner()
    misses = []
    for q in sample_queries:
        r = runner.invoke(main, ["search", str(path), q["query"], "-k", "3", "--json"])
        assert r.exit_code == 0, r.output
        ids = [h["id"] for h in json.loads(r.output.strip().splitlines()[-1])]
        if q["expected_id"] not in ids:
            misses.append((q["query"], q["expected_id"], ids))
    assert not misses, misses


def test_dimension_conflict_refused_before_encoding(os_client, index_name, make_config, tmp_path):
    os_client.indices.create(
        index=index_name,
        body={"settings": {"index.knn": True}, "mappings": {"properties": {"embedding": {
            "type": "knn_vector", "dimension": 768, "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}}}}},
    )
    cfg = make_config(sink="opensearch", index=index_name)
    with pytest.raises(SinkError) as e:
        run_ingest(cfg)
    assert "768" in str(e.value) and "384" in str(e.value)
    assert not (tmp_path / "dlq").exists(), "the pipeline never started"
    assert os_client.count(index=index_name)["count"] == 0

    path = tmp_path / "c.json"
    path.write_text(cfg.model_dump_json())
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code != 0
    assert "768" in r.output and "384" in r.output


def test_validate_accepts_a_good_config(os_client, index_name, make_config, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(make_config(sink="opensearch", index=index_name).model_dump_json())
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 0, r.output
    assert "config is valid" in r.output
    assert not os_client.indices.exists(index=index_name), "validate changes nothing"
