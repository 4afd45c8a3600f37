"""Dense + sparse in one run: one read of the source, two encoders, one index with both fields; hybrid search."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from sparse_models import DOCS, QUERIES, build_mlm, config, corpus, os_sink, stored
from support import MINILM

from neural_ingest.pipelines.ingest import run_ingest


def encoders(mlm_dir: Path) -> list[dict]:
    return [
        {"type": "sentence_transformers", "model": MINILM, "device": "cpu"},
        {"type": "neural_sparse", "model": str(mlm_dir), "device": "cpu", "batch_size": 4},
    ]


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory) -> Path:
    return build_mlm(tmp_path_factory.mktemp("hybrid-models") / "tiny-bi", seed=5)


@pytest.fixture(scope="module")
def hybrid_run(mlm_dir, opensearch_url, tmp_path_factory):
    from opensearchpy import OpenSearch

    tmp = tmp_path_factory.mktemp("hybrid-run")
    index = f"t-hybrid-{uuid.uuid4().hex[:6]}"
    cfg = config(tmp, encoders(mlm_dir), os_sink(opensearch_url, index))
    summary = run_ingest(cfg)
    client = OpenSearch(hosts=[opensearch_url], timeout=60)
    yield cfg, summary, client
    client.indices.delete(index=index, ignore=[404])


def test_one_read_two_encoders_both_fields_on_every_document(hybrid_run):
    cfg, summary, client = hybrid_run
    assert summary.read == len(DOCS)  # the source was read once, not once per encoder
    assert summary.encoded_by_field == {"embedding": len(DOCS), "sparse_embedding": len(DOCS)}
    assert summary.indexed == len(DOCS) and summary.failed == 0 and summary.reconciles
    props = client.indices.get_mapping(index=cfg.sink.index)[cfg.sink.index]["mappings"]["properties"]
    assert props["embedding"]["type"] == "knn_vector" and props["embedding"]["dimension"] == 384
    assert props["sparse_embedding"] == {"type": "rank_features"}
    docs = stored(client, cfg.sink.index)
    assert len(docs) == len(DOCS)
    for d in docs.values():
        assert len(d["embedding"]) == 384
        assert d["sparse_embedding"] and all(w > 0 for w in d["sparse_embedding"].values())


@pytest.mark.needs_plugins("opensearch-neural-search")
def test_hybrid_search_pipeline_equals_client_side_fusion(hybrid_run):
    """neural-search's normalization processor (server) and neural_ingest.hybrid.fuse (client) agree."""
    from neural_ingest.search import search

    cfg, _, _ = hybrid_run
    plain = cfg.model_copy(deep=True)
    plain.sink.use_neural_search = False
    for q in QUERIES:
        server = search(cfg, q, k=len(DOCS), mode="hybrid")
        client = search(plain, q, k=len(DOCS), mode="hybrid")
        assert server and [h.id for h in server] == [h.id for h in client]
        for a, b in zip(server, client):
            assert a.score == pytest.approx(b.score, rel=1e-4, abs=1e-6)
            assert 0 < a.score <= 1
        assert "embedding" not in server[0].source and "sparse_embedding" not in server[0].source
    # weights move the result towards one side
    dense_top = search(cfg, QUERIES[0], k=1, mode="dense")[0].id
    sparse_top = search(cfg, QUERIES[0], k=1, mode="sparse")[0].id
    assert search(cfg, QUERIES[0], k=1, mode="hybrid", weights=(0.999, 0.001))[0].id == dense_top
    assert search(cfg, QUERIES[0], k=1, mode="hybrid", weights=(0.001, 0.999))[0].id == sparse_top


def test_parquet_hybrid_matches_opensearch(hybrid_run, mlm_dir, tmp_path):
    from neural_ingest.search import search

    os_cfg, _, _ = hybrid_run
    cfg = config(tmp_path, encoders(mlm_dir), {"type": "parquet", "path": str(tmp_path / "dataset")})
    summary = run_ingest(cfg)
    assert summary.read == len(DOCS) and summary.indexed == len(DOCS)
    for q in QUERIES:
        pq = search(cfg, q, k=len(DOCS), mode="hybrid")
        os_ = search(os_cfg, q, k=len(DOCS), mode="hybrid")
        assert [h.id for h in pq] == [h.id for h in os_]
        for a, b in zip(pq, os_):
            assert a.score == pytest.approx(b.score, rel=1e-3, abs=1e-4)


def test_cli_search_modes(mlm_dir, tmp_path):
    from neural_ingest.cli import main

    cfg_path = tmp_path / "hybrid.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "source": {"type": "jsonl", "path": str(corpus(tmp_path)), "text_fields": ["title", "body"]},
                "encoders": encoders(mlm_dir)[::-1],  # sparse first: the default --mode
                "sink": {"type": "parquet", "path": str(tmp_path / "ds")},
                "dead_letter": {"path": str(tmp_path / "dlq")},
            }
        )
    )
    runner = CliRunner()
    r = runner.invoke(main, ["run", str(cfg_path)])
    assert r.exit_code == 0, r.output
    out = {}
    for mode in (None, "sparse", "dense", "hybrid"):
        args = ["search", str(cfg_path), "sparse vector weights", "-k", "3", "--json"] + (["--mode", mode] if mode else [])
        r = runner.invoke(main, args)
        assert r.exit_code == 0, r.output
        out[mode] = json.loads(r.stdout.strip().splitlines()[-1])
        assert len(out[mode]) == 3
    assert out[None] == out["sparse"]
    assert out["sparse"][0]["score"] > 1.0 and out["hybrid"][0]["score"] <= 1.0  # dot product vs fused
    r = runner.invoke(main, ["search", str(cfg_path), "q", "--mode", "hybrid", "--weights", "1,2,3"])
    assert r.exit_code == 2 and "DENSE,SPARSE" in r.output
