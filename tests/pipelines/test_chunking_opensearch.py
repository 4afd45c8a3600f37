"""Long documents against the real OpenSearch: why chunking exists (a query about the end of a long
document), chunk properties as stored, nested knn + inner_hits, reruns that shrink a document, separate
chunk documents, the CLI, and dense + sparse sharing one set of chunks; each index built with each HNSW
engine (lucene, faiss: the `knn_engine` fixture), nested chunks on faiss included.
"""
from __future__ import annotations

import itertools
import json
import math
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from long_docs import HEAD, LONG_DOC, LONG_ID, LONG_TEXT, TAIL_QUERY
from support import MINILM, hold_model, write_jsonl

from neural_ingest.chunking import ChunkTokenizer
from neural_ingest.cli import main
from neural_ingest.config import parse_config
from neural_ingest.pipelines.ingest import run_ingest
from neural_ingest.search import search

N_SAMPLE = 60


def make_cfg(tmp: Path, url: str, index: str, source: Path, chunking: dict[str, Any] | None = None, encoders=None, **sink):
    return parse_config(
        {
            "run": {"name": "chunking-test", "progress_every_seconds": 30},
            "source": {
                "type": "jsonl",
                "path": str(source),
                "text_fields": ["title", "body"],
                "metadata_fields": ["topic", "year"],
            },
            "encoders": encoders or [{"type": "sentence_transformers", "model": MINILM, "device": "cpu"}],
            "sink": {"type": "opensearch", "hosts": [url], "index": index, "knn": {"engine": "lucene"}, **sink},
            "dead_letter": {"path": str(tmp / "dlq")},
            "chunking": chunking or {},
        }
    )


def stored(client, index: str) -> dict[str, dict[str, Any]]:
    res = client.search(index=index, body={"size": 10000, "query": {"match_all": {}}})
    return {h["_id"]: h["_source"] for h in res["hits"]["hits"]}


@pytest.fixture(scope="module")
def tok() -> ChunkTokenizer:
    return ChunkTokenizer.from_model(MINILM)


pytestmark = pytest.mark.knn


@pytest.fixture(scope="module")
def runs(opensearch_url, tmp_path_factory, sample_docs, knn_engine):
    """The same corpus (60 sample documents + one long document) indexed twice: truncated and chunked."""
    from opensearchpy import OpenSearch

    tmp = tmp_path_factory.mktemp("chunking")
    source = write_jsonl(tmp / "docs.jsonl", [*sample_docs[:N_SAMPLE], LONG_DOC])
    tag = f"{knn_engine}-{uuid.uuid4().hex[:6]}"
    knn = {"engine": knn_engine}
    trunc = make_cfg(tmp, opensearch_url, f"t-trunc-{tag}", source, knn=knn)
    chunk = make_cfg(tmp, opensearch_url, f"t-chunk-{tag}", source, {"mode": "chunk", "overlap_rate": 0.2}, knn=knn)
    keep = hold_model(trunc)  # noqa: F841 - one model for both runs and the searches
    out = {"truncate": (trunc, run_ingest(trunc)), "chunk": (chunk, run_ingest(chunk))}
    client = OpenSearch(hosts=[opensearch_url], timeout=60)
    yield out, client, tmp, source
    for cfg, _ in out.values():
        client.indices.delete(index=cfg.sink.index, ignore=[404])


def test_query_about_the_end_finds_the_document_only_when_chunked(runs, tok):
    """Why chunking exists: with truncation the end of a long document is never embedded."""
    out, *_ = runs
    trunc_cfg, trunc_summary = out["truncate"]
    chunk_cfg, chunk_summary = out["chunk"]

    truncated_hits = search(trunc_cfg, TAIL_QUERY, k=10)
    assert LONG_ID not in [h.id for h in truncated_hits]

    chunk_hits = search(chunk_cfg, TAIL_QUERY, k=10)
    assert chunk_hits[0].id == LONG_ID
    best = chunk_hits[0].passage
    assert "Greenland shark" in best["text"]
    # the passage lies (mostly) past the point where the model cut the document off
    cut = tok.encode(LONG_TEXT).offsets[254][0]  # 256 positions less [CLS] and [SEP]
    assert best["end"] > cut and LONG_TEXT.index("Greenland") > cut
    assert best["text"] == LONG_TEXT[best["start"] : best["end"]]

    # the summary says how many documents truncation cut, and chunking cuts none
    texts = [f"{d['title']}\n\n{d['body']}" for d in json_lines(trunc_cfg.source.path)]
    n_long = sum(n > 256 for n in tok.count(texts, special=True))
    assert n_long >= 2
    assert trunc_summary.truncated == trunc_summary.truncated_by_field["embedding"] == n_long
    assert trunc_summary.chunks == 0
    assert chunk_summary.truncated == 0 and chunk_summary.chunks > chunk_summary.indexed
    for s in (trunc_summary, chunk_summary):
        assert s.read == s.indexed == N_SAMPLE + 1 and s.failed == 0 and s.reconciles


def json_lines(path: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def test_stored_chunks_cover_every_token_fit_the_model_and_overlap(runs, tok, knn_engine):
    out, client, *_ = runs
    cfg, summary = out["chunk"]
    docs = stored(client, cfg.sink.index)
    assert len(docs) == N_SAMPLE + 1
    assert sum(len(d["chunks"]) for d in docs.values()) == summary.chunks
    overlap = math.floor(254 * 0.2)  # 20% of the 254 content tokens a chunk holds
    for doc_id, src in docs.items():
        text, chunks = src["text"], src["chunks"]
        assert [c["index"] for c in chunks] == list(range(len(chunks)))
        assert chunks[0]["start"] == 0 and chunks[-1]["end"] == len(text)
        for c in chunks:
            assert c["text"] == text[c["start"] : c["end"]]
            assert len(c["embedding"]) == 384
        spans = tok.encode(text).offsets
        for a, b in spans:  # every token of the document is in some chunk
            assert any(c["start"] <= a and b <= c["end"] for c in chunks), (doc_id, text[a:b])
        counts = tok.count([c["text"] for c in chunks], special=True)
        assert max(counts) <= 256  # each chunk fits the model's window, special tokens included
        for cur, nxt in itertools.pairwise(chunks):  # at least the configured overlap, under a word more
            shared = sum(1 for s in spans if s[0] >= nxt["start"] and s[1] <= cur["end"])
            assert overlap <= shared < overlap + 8
    assert len(docs[LONG_ID]["chunks"]) >= 2
    mapping = client.indices.get_mapping(index=cfg.sink.index)[cfg.sink.index]["mappings"]["properties"]
    assert mapping["chunks"]["type"] == "nested"
    assert mapping["chunks"]["properties"]["embedding"]["method"]["engine"] == knn_engine


def test_nested_knn_scores_are_the_best_chunk_and_inner_hits_name_it(runs):
    """score_mode max: the document's score is its best chunk's k-NN score, and inner_hits returns that chunk."""
    from neural_ingest.encoders import make_encoder

    out, client, *_ = runs
    cfg, _ = out["chunk"]
    docs = stored(client, cfg.sink.index)
    enc = make_encoder(cfg.encoders[0])
    for q in (TAIL_QUERY, "how does a harpsichord pluck its strings", "volcanic eruptions"):
        qv = np.asarray(enc.encode_queries(enc.acquire(), [q])[0], dtype=np.float64)
        hits = search(cfg, q, k=5)
        assert len(hits) == 5 and len({h.id for h in hits}) == 5  # documents, not chunks
        for h in hits:
            vecs = np.asarray([c["embedding"] for c in docs[h.id]["chunks"]], dtype=np.float64)
            cos = vecs @ qv / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(qv))
            scores = (1 + cos) / 2  # cosinesimil, lucene and faiss alike
            assert h.score == pytest.approx(scores.max(), abs=2e-4)
            assert h.passage["index"] == int(np.argmax(scores))
            assert h.passage["score"] == pytest.approx(h.score)
            assert "chunks" not in h.source and h.source["text"] == docs[h.id]["text"]


def test_cli_search_shows_documents_with_their_best_passage(runs, tmp_path):
    out, *_ = runs
    cfg, _ = out["chunk"]
    path = tmp_path / "chunk.yaml"
    path.write_text(json.dumps(cfg.model_dump(mode="json")))  # JSON is YAML
    r = CliRunner().invoke(main, ["search", str(path), TAIL_QUERY, "-k", "3", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)  # results on stdout; logs (now shown) on stderr
    assert rows[0]["id"] == LONG_ID and set(rows[0]) == {"id", "score", "passage"}
    assert "Greenland shark" in rows[0]["passage"]["text"] and rows[0]["passage"]["index"] >= 1
    r = CliRunner(env={"COLUMNS": "250"}).invoke(main, ["search", str(path), TAIL_QUERY, "-k", "3"])
    assert r.exit_code == 0, r.output
    assert LONG_ID in r.output and "(chunk " in r.output


def test_conflicting_index_is_refused_before_encoding(runs, tmp_path):
    """Nested chunks cannot go into an index whose `chunks` field is a plain object: the pre-flight
    mapping check refuses the run before anything is encoded."""
    from neural_ingest.sinks.base import SinkError

    out, client, _tmp, source = runs
    index = f"t-conflict-{uuid.uuid4().hex[:6]}"
    client.indices.create(index=index, body={"mappings": {"properties": {"chunks": {"properties": {"text": {"type": "text"}}}}}})
    try:
        cfg = make_cfg(tmp_path, out["chunk"][0].sink.hosts[0], index, source, {"mode": "chunk"})
        with pytest.raises(SinkError, match="nested"):
            run_ingest(cfg)
    finally:
        client.indices.delete(index=index, ignore=[404])


# --------------------------------------------------------------------------- reruns and separate storage
@pytest.mark.parametrize("storage", ["nested", "separate"])
def test_rerun_with_a_shorter_document_drops_its_stale_chunks(
    storage, opensearch_url, os_client, index_name, tmp_path, tok, knn_engine
):
    long_src = write_jsonl(
        tmp_path / "long.jsonl",
        [LONG_DOC, {"id": "short", "title": "Tides", "body": "The moon pulls the sea.", "topic": "t", "year": 1}],
    )
    chunking = {"mode": "chunk", "token_limit": 40, "overlap_rate": 0.1, "storage": storage}
    knn = {"engine": knn_engine}
    cfg = make_cfg(tmp_path, opensearch_url, index_name, long_src, chunking, knn=knn)
    keep = hold_model(cfg)  # noqa: F841
    first = run_ingest(cfg)
    before = [{k: c[k] for k in ("text", "start", "end", "index")} for c in first_chunks(os_client, index_name, storage, LONG_ID)]
    n_long = len(before)
    assert n_long >= 10 and first.indexed == 2 and first.reconciles

    # the same run again overwrites the same chunks in place (deterministic ids and order)
    again = run_ingest(cfg)
    after = [{k: c[k] for k in ("text", "start", "end", "index")} for c in first_chunks(os_client, index_name, storage, LONG_ID)]
    assert after == before and again.chunks == first.chunks
    if storage == "separate":
        assert os_client.count(index=index_name)["count"] == n_long + 1

    shorter = dict(LONG_DOC, body=HEAD[:600])
    short_src = write_jsonl(
        tmp_path / "short.jsonl",
        [shorter, {"id": "short", "title": "Tides", "body": "The moon pulls the sea.", "topic": "t", "year": 1}],
    )
    second = run_ingest(make_cfg(tmp_path, opensearch_url, index_name, short_src, chunking, knn=knn))
    assert second.indexed == 2 and second.failed == 0
    chunks = first_chunks(os_client, index_name, storage, LONG_ID)
    text = f"{shorter['title']}\n\n{shorter['body']}"
    assert 2 <= len(chunks) < n_long
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    assert chunks[-1]["end"] == len(text) and all(c["text"] == text[c["start"] : c["end"]] for c in chunks)
    hits = search(make_cfg(tmp_path, opensearch_url, index_name, short_src, chunking, knn=knn), TAIL_QUERY, k=5)
    assert all("Greenland" not in (h.passage or {}).get("text", "") for h in hits)  # the old tail is gone
    if storage == "separate":
        total = os_client.count(index=index_name)["count"]
        assert total == len(chunks) + 1  # the long document's chunks + the short one's single chunk
        ids = {h["_id"] for h in os_client.search(index=index_name, body={"size": 100, "_source": False})["hits"]["hits"]}
        assert ids == {f"{LONG_ID}#{i}" for i in range(len(chunks))} | {"short#0"}


def first_chunks(client, index: str, storage: str, doc_id: str) -> list[dict[str, Any]]:
    client.indices.refresh(index=index)
    if storage == "nested":
        return client.get(index=index, id=doc_id)["_source"]["chunks"]
    res = client.search(
        index=index, body={"size": 1000, "query": {"term": {"parent_id": doc_id}}, "sort": [{"chunk_index": "asc"}]}
    )
    return [
        {
            "text": s["text"],
            "start": s["chunk_start"],
            "end": s["chunk_end"],
            "index": s["chunk_index"],
            "embedding": s["embedding"],
        }
        for s in (h["_source"] for h in res["hits"]["hits"])
    ]


def test_separate_storage_search_returns_parents_with_passages(runs, opensearch_url, os_client, index_name, tmp_path, knn_engine):
    out, _client, _tmp, source = runs
    chunking = {"mode": "chunk", "overlap_rate": 0.2, "storage": "separate"}
    cfg = make_cfg(tmp_path, opensearch_url, index_name, source, chunking, knn={"engine": knn_engine})
    summary = run_ingest(cfg)
    assert summary.indexed == N_SAMPLE + 1 and summary.reconciles
    assert os_client.count(index=index_name)["count"] == summary.chunks == out["chunk"][1].chunks
    hits = search(cfg, TAIL_QUERY, k=5)
    assert hits[0].id == LONG_ID and "Greenland shark" in hits[0].passage["text"]
    assert len({h.id for h in hits}) == 5  # collapsed on parent_id
    nested = search(out["chunk"][0], TAIL_QUERY, k=5)
    assert [h.id for h in hits] == [h.id for h in nested]  # the same chunks and vectors, stored differently
    for a, b in zip(hits, nested):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        assert a.passage["index"] == b.passage["index"] and a.passage["text"] == b.passage["text"]
    mapping = os_client.indices.get_mapping(index=index_name)[index_name]["mappings"]["properties"]
    assert mapping["parent_id"]["type"] == "keyword" and mapping["embedding"]["method"]["engine"] == knn_engine


# --------------------------------------------------------------------------- dense + sparse share the chunks
def test_dense_and_sparse_encode_the_same_chunks(opensearch_url, os_client, index_name, tmp_path, knn_engine):
    from sparse_models import build_mlm

    mlm = build_mlm(tmp_path / "tiny-mlm", seed=3)
    src = write_jsonl(
        tmp_path / "docs.jsonl",
        [LONG_DOC, {"id": "short", "title": "Tides", "body": "The moon pulls the sea.", "topic": "t", "year": 1}],
    )
    encoders = [
        {"type": "sentence_transformers", "model": MINILM, "device": "cpu"},
        {"type": "neural_sparse", "model": str(mlm), "device": "cpu", "batch_size": 4},
    ]
    cfg = make_cfg(
        tmp_path,
        opensearch_url,
        index_name,
        src,
        {"mode": "chunk", "token_limit": 100},
        encoders=encoders,
        knn={"engine": knn_engine},
    )
    summary = run_ingest(cfg)
    assert summary.indexed == 2 and summary.reconciles and summary.truncated == 0
    assert summary.encoded_by_field == {"embedding": 2, "sparse_embedding": 2}
    props = os_client.indices.get_mapping(index=index_name)[index_name]["mappings"]["properties"]["chunks"]["properties"]
    assert props["embedding"]["type"] == "knn_vector" and props["sparse_embedding"] == {"type": "rank_features"}
    src_doc = os_client.get(index=index_name, id=LONG_ID)["_source"]
    assert len(src_doc["chunks"]) >= 5
    for c in src_doc["chunks"]:
        assert len(c["embedding"]) == 384 and c["sparse_embedding"] and all(w > 0 for w in c["sparse_embedding"].values())
    # sparse and hybrid search return documents with a passage
    for mode in ("sparse", "hybrid"):
        hits = search(cfg, "open search vector model", k=2, mode=mode)
        assert {h.id for h in hits} <= {LONG_ID, "short"} and hits
        assert all(h.passage is not None and h.passage["text"] for h in hits)
