"""Dense ingest into the real OpenSearch: fidelity, self-retrieval, idempotence, mapping, search; the index
built with each HNSW engine (lucene, faiss: the `knn_engine` fixture)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from support import cosine, hold_model

from neural_ingest.cli import main
from neural_ingest.pipelines.ingest import run_ingest
from neural_ingest.sinks.base import SinkError


@pytest.fixture(scope="module")
def os_run(opensearch_url, tmp_path_factory, knn_engine):
    """One pipeline run of the sample corpus into a fresh k-NN index (per engine)."""
    import uuid

    from opensearchpy import OpenSearch
    from support import MINILM, SAMPLE

    from neural_ingest.config import parse_config

    tmp = tmp_path_factory.mktemp("os")
    index = f"t-dense-{knn_engine}-{uuid.uuid4().hex[:6]}"
    cfg = parse_config(
        {
            "source": {
                "type": "jsonl",
                "path": str(SAMPLE / "docs.jsonl"),
                "text_fields": ["title", "body"],
                "metadata_fields": ["topic", "year"],
            },
            "encoder": {"type": "sentence_transformers", "model": MINILM, "device": "cpu"},
            "sink": {
                "type": "opensearch",
                "hosts": [opensearch_url],
                "index": index,
                "knn": {"engine": knn_engine},
                "bulk": {"max_docs": 100},
            },
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


@pytest.mark.knn
def test_counts_reconcile(os_run, sample_docs):
    cfg, summary, client, _ = os_run
    assert summary.read == len(sample_docs)
    assert summary.indexed == len(sample_docs) and summary.failed == 0 and summary.skipped == 0
    assert summary.reconciles
    assert summary.index == cfg.sink.index
    assert client.count(index=cfg.sink.index)["count"] == len(sample_docs)


@pytest.mark.knn
def test_mapping_from_the_model(os_run, knn_engine, node_features):
    cfg, _, client, _ = os_run
    m = client.indices.get_mapping(index=cfg.sink.index)[cfg.sink.index]["mappings"]["properties"]["embedding"]
    assert m["type"] == "knn_vector" and m["dimension"] == 384
    assert m["method"]["space_type"] == "cosinesimil" and m["method"]["engine"] == knn_engine
    settings = client.indices.get_settings(index=cfg.sink.index, flat_settings=True)[cfg.sink.index]["settings"]
    assert settings["index.knn"] == "true"
    if int(node_features["version"].split(".")[0]) >= 3:
        # k-NN 3.x creates knn indices with derived source: vectors are left out of the stored _source and
        # rebuilt from the vector data on read (the fidelity test below and reindex's reuse read them back)
        assert settings["index.knn.derived_source.enabled"] == "true"


@pytest.mark.knn
def test_vectors_in_the_index_equal_sentence_transformers(os_run, sample_docs, st_model):
    cfg, _, client, _ = os_run
    stored = all_docs(client, cfg.sink.index)
    want = st_model.encode([f"{d['title']}\n\n{d['body']}" for d in sample_docs], batch_size=32)
    assert set(stored) == {d["id"] for d in sample_docs}
    worst = min(cosine(stored[d["id"]]["embedding"], w) for d, w in zip(sample_docs, want))
    assert worst >= 0.9999
    d0 = sample_docs[0]
    assert stored[d0["id"]]["topic"] == d0["topic"] and stored[d0["id"]]["year"] == d0["year"]


@pytest.mark.knn
def test_self_retrieval(os_run):
    """What HNSW promises: approximate top-10s that agree with exact search. Not that every stored vector is
    its own top-1: an HNSW graph (faiss's, also stock faiss) can leave a few vectors unreachable."""
    cfg, _, client, _ = os_run
    stored = all_docs(client, cfg.sink.index)
    ids = list(stored)
    vecs = np.asarray([stored[i]["embedding"] for i in ids], dtype=np.float64)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    exact = np.argsort(-(vecs @ vecs.T), axis=1)[:, :10]  # cosine: the exact top-10 of each stored vector
    found, self_top1 = 0, 0
    for row, doc_id in enumerate(ids):
        res = client.search(
            index=cfg.sink.index,
            body={
                "size": 10,
                "_source": False,
                "query": {"knn": {"embedding": {"vector": stored[doc_id]["embedding"], "k": 20}}},
            },
        )
        got = [h["_id"] for h in res["hits"]["hits"]]
        found += len(set(got) & {ids[j] for j in exact[row]})
        self_top1 += got[:1] == [doc_id]
    recall = found / (10 * len(ids))
    assert recall >= 0.98, f"recall@10 against exact search {recall:.3f}"
    assert self_top1 >= 0.98 * len(ids), f"{len(ids) - self_top1} of {len(ids)} stored vectors are not their own top-1"


@pytest.mark.knn
def test_rerun_is_idempotent(os_run):
    cfg, _, client, _ = os_run
    before = set(all_docs(client, cfg.sink.index))
    summary = run_ingest(cfg)
    client.indices.refresh(index=cfg.sink.index)
    assert summary.indexed == len(before)
    assert set(all_docs(client, cfg.sink.index)) == before
    assert client.count(index=cfg.sink.index)["count"] == len(before)


@pytest.mark.knn
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


@pytest.mark.knn
def test_dimension_conflict_refused_before_encoding(os_client, index_name, make_config, tmp_path):
    os_client.indices.create(
        index=index_name,
        body={
            "settings": {"index.knn": True},
            "mappings": {
                "properties": {
                    "embedding": {
                        "type": "knn_vector",
                        "dimension": 768,
                        "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"},
                    }
                }
            },
        },
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


@pytest.mark.knn
def test_validate_accepts_a_good_config(os_client, index_name, make_config, tmp_path):
    path = tmp_path / "c.json"
    path.write_text(make_config(sink="opensearch", index=index_name).model_dump_json())
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 0, r.output
    assert "config is valid" in r.output
    assert not os_client.indices.exists(index=index_name), "validate changes nothing"
