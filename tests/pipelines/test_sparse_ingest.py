"""Neural sparse ingest into the real OpenSearch (rank_features) and the Parquet sink, and sparse search.

Tiny random masked-LM models are built at test time; the stored maps are compared with the formula
computed here from the raw logits of transformers' BertForMaskedLM, and the scores OpenSearch returns
with the dot product of query and document maps computed locally.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from sparse_models import DOCS, QUERIES, assert_maps_close, build_mlm, config, corpus, os_sink, reference_maps, stored

from neural_ingest.encoders.sparse_weights import sparse_dot
from neural_ingest.pipelines.ingest import run_ingest

NEURAL = "opensearch-neural-search"


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory) -> Path:
    return build_mlm(tmp_path_factory.mktemp("sparse-models") / "tiny-bi", seed=3)


@pytest.fixture(scope="module")
def sparse_run(mlm_dir, opensearch_url, tmp_path_factory):
    """One sparse-only run of the corpus into a fresh rank_features index."""
    from opensearchpy import OpenSearch

    tmp = tmp_path_factory.mktemp("sparse-run")
    index = f"t-sparse-{uuid.uuid4().hex[:6]}"
    cfg = config(
        tmp, [{"type": "neural_sparse", "model": str(mlm_dir), "device": "cpu", "batch_size": 4}], os_sink(opensearch_url, index)
    )
    summary = run_ingest(cfg)
    client = OpenSearch(hosts=[opensearch_url], timeout=60)
    yield cfg, summary, client
    client.indices.delete(index=index, ignore=[404])


def test_sparse_run_indexes_every_document_into_rank_features(sparse_run):
    cfg, summary, client = sparse_run
    assert summary.read == len(DOCS) and summary.indexed == len(DOCS) and summary.failed == 0 and summary.reconciles
    props = client.indices.get_mapping(index=cfg.sink.index)[cfg.sink.index]["mappings"]["properties"]
    assert props["sparse_embedding"] == {"type": "rank_features"}
    assert summary.models["sparse_embedding"]["kind"] == "sparse"


def test_stored_maps_equal_the_formula_on_raw_logits(sparse_run, mlm_dir):
    cfg, _, client = sparse_run
    docs = stored(client, cfg.sink.index)
    ids = sorted(docs)
    want = reference_maps(mlm_dir, [docs[i]["text"] for i in ids])
    for i, w in zip(ids, want):
        assert_maps_close(docs[i]["sparse_embedding"], w)
    assert any("." in t for d in docs.values() for t in d["sparse_embedding"])  # dotted tokens are stored as-is


@pytest.mark.parametrize(
    "use_neural_search",
    [pytest.param(True, id="neural_sparse", marks=pytest.mark.needs_plugins(NEURAL)), pytest.param(False, id="rank_feature")],
)
def test_opensearch_scores_equal_the_local_dot_product(sparse_run, use_neural_search):
    from neural_ingest.search import encode_query, search

    cfg, _, client = sparse_run
    cfg = cfg.model_copy(deep=True)
    cfg.sink.use_neural_search = use_neural_search
    docs = stored(client, cfg.sink.index)
    checked = 0
    for q in QUERIES:
        _, _, qmap = encode_query(cfg.encoders[0], q)
        assert any("." in t for t in qmap)  # a dotted query token: the rank_feature path must complete it
        hits = search(cfg, q, k=len(DOCS), mode="sparse")
        local = {i: sparse_dot(qmap, d["sparse_embedding"]) for i, d in docs.items()}
        assert {h.id for h in hits} == {i for i, s in local.items() if s > 0}
        for h in hits:
            assert abs(h.score - local[h.id]) / local[h.id] < 1e-3, (q, h.id, h.score, local[h.id])
            assert "sparse_embedding" not in h.source and "text" in h.source
            checked += 1
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert checked >= len(QUERIES) * 2


@pytest.mark.needs_plugins(NEURAL)
def test_plain_rank_feature_silently_drops_dotted_tokens(sparse_run):
    """The fact the fallback handles: rank_feature on `field.` + token with a dot matches nothing."""
    cfg, _, client = sparse_run
    docs = stored(client, cfg.sink.index)
    doc_id, src = next((i, d) for i, d in docs.items() if "." in d["sparse_embedding"])
    body = {
        "query": {
            "bool": {
                "filter": [{"ids": {"values": [doc_id]}}],
                "should": [{"rank_feature": {"field": "sparse_embedding..", "linear": {}}}],
            }
        }
    }
    res = client.search(index=cfg.sink.index, body=body)
    assert res["hits"]["hits"][0]["_score"] == 0.0  # the "." feature is there, but the query cannot address it
    body = {"query": {"neural_sparse": {"sparse_embedding": {"query_tokens": {".": 1.0}}}}}
    res = {h["_id"]: h["_score"] for h in client.search(index=cfg.sink.index, body=body)["hits"]["hits"]}
    assert res[doc_id] == pytest.approx(sparse_dot({".": 1.0}, src["sparse_embedding"]), rel=1e-6)


def test_query_weights_above_64_are_scaled_into_range_with_the_same_score(sparse_run):
    from neural_ingest.sinks import make_sink

    cfg, _summary, client = sparse_run
    docs = stored(client, cfg.sink.index)
    some = next(iter(docs.values()))["sparse_embedding"]
    toks = sorted(some, key=some.get, reverse=True)[:3]
    query = {toks[0]: 150.0, toks[1]: 0.5, toks[2]: 64.0}
    sink = make_sink(cfg.sink)
    info = None
    hits = sink.search_sparse("sparse_embedding", info, query, k=len(DOCS))
    assert hits
    for h in hits:
        local = sparse_dot(query, docs[h.id]["sparse_embedding"])
        assert abs(h.score - local) / local < 1e-3


def test_doc_only_model_queries_by_tokenizer_and_idf(opensearch_url, os_client, index_name, tmp_path):
    from neural_ingest.search import encode_query, search

    idf = {"search": 3.0, "engines": 2.5, "open": 0.0}
    d = build_mlm(tmp_path / "tiny-doc-only", seed=4, idf=idf)
    cfg = config(tmp_path, [{"type": "neural_sparse", "model": str(d), "device": "cpu"}], os_sink(opensearch_url, index_name))
    summary = run_ingest(cfg)
    assert summary.indexed == len(DOCS) and summary.models["sparse_embedding"]["extra"]["query_mode"] == "tokenizer"
    _, _, qmap = encode_query(cfg.encoders[0], "Open search engines, open!")
    assert qmap == {"search": 3.0, "engines": 2.5, ",": 1.0, "!": 1.0}  # "open" weighs 0 in the table: absent
    docs = stored(os_client, index_name)
    hits = search(cfg, "Open search engines, open!", k=len(DOCS), mode="sparse")
    assert hits
    for h in hits:
        local = sparse_dot(qmap, docs[h.id]["sparse_embedding"])
        assert abs(h.score - local) / local < 1e-3


def test_rejected_weights_never_reach_the_bulk_request(opensearch_url, os_client, index_name, tmp_path, mlm_dir, monkeypatch):
    from neural_ingest import encoders

    monkeypatch.setitem(encoders.ENCODERS, "neural_sparse", "sparse_models:PoisonedSparseEncoder")
    extra = [("p-nan", "bad", "POISON-NAN here."), ("p-neg", "bad", "POISON-NEG here."), ("p-zero", "ok", "POISON-ZERO here.")]
    cfg = config(
        tmp_path,
        [{"type": "neural_sparse", "model": str(mlm_dir), "device": "cpu", "batch_size": 4}],
        os_sink(opensearch_url, index_name),
        source=corpus(tmp_path, extra),
    )
    summary = run_ingest(cfg)
    assert summary.read == len(DOCS) + 3 and summary.reconciles
    assert summary.indexed == len(DOCS) + 1
    assert summary.failed_by_reason == {"encode.invalid_vector": 2}  # nothing failed at the index stage
    docs = stored(os_client, index_name)
    assert "p-zero" in docs and "zeroed" not in docs["p-zero"]["sparse_embedding"]
    assert "p-nan" not in docs and "p-neg" not in docs
    letters = [json.loads(line) for f in Path(summary.dead_letter_path).glob("*.jsonl") for line in f.read_text().splitlines()]
    by_id = {d["doc_id"]: d for d in letters}
    assert set(by_id) == {"p-nan", "p-neg"}
    assert "not finite" in by_id["p-nan"]["message"] and "not positive" in by_id["p-neg"]["message"]
    assert all(d["stage"] == "encode" for d in letters)


def test_parquet_stores_sparse_maps_and_scores_like_opensearch(sparse_run, mlm_dir, tmp_path):
    import pyarrow as pa
    import pyarrow.dataset as ds

    from neural_ingest.search import search

    os_cfg, _, _ = sparse_run
    cfg = config(
        tmp_path,
        [{"type": "neural_sparse", "model": str(mlm_dir), "device": "cpu", "batch_size": 4}],
        {"type": "parquet", "path": str(tmp_path / "dataset")},
    )
    summary = run_ingest(cfg)
    assert summary.indexed == len(DOCS)
    table = ds.dataset(str(tmp_path / "dataset"), format="parquet").to_table()
    col_type = table.schema.field("sparse_embedding").type
    assert pa.types.is_map(col_type) and col_type.key_type == pa.string() and col_type.item_type == pa.float32()
    rows = {r["id"]: (r["text"], dict(r["sparse_embedding"])) for r in table.to_pylist()}
    ids = sorted(rows)
    for i, w in zip(ids, reference_maps(mlm_dir, [rows[i][0] for i in ids])):
        assert_maps_close(rows[i][1], w, rtol=1e-6)  # float32 column
    for q in QUERIES:
        pq_hits = search(cfg, q, k=5, mode="sparse")
        os_hits = search(os_cfg, q, k=5, mode="sparse")
        assert [h.id for h in pq_hits] == [h.id for h in os_hits]
        for a, b in zip(pq_hits, os_hits):
            assert abs(a.score - b.score) / b.score < 1e-3
        assert pq_hits[0].source["text"]
