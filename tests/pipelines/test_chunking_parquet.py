"""Long documents into the local Parquet dataset: the schema is unchanged with chunking off, a chunk
column with it on, and exact search scores each document by its best chunk."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from long_docs import LONG_DOC, LONG_ID, TAIL_QUERY
from support import MINILM, hold_model, write_jsonl

from neural_ingest.config import parse_config
from neural_ingest.pipelines.ingest import run_ingest
from neural_ingest.search import search
from neural_ingest.sinks.base import SinkError


def cfg_for(tmp, source, dataset, chunking=None, encoders=None):
    return parse_config(
        {
            "run": {"name": "chunking-parquet", "progress_every_seconds": 30},
            "source": {
                "type": "jsonl",
                "path": str(source),
                "text_fields": ["title", "body"],
                "metadata_fields": ["topic", "year"],
            },
            "encoders": encoders or [{"type": "sentence_transformers", "model": MINILM, "device": "cpu"}],
            "sink": {"type": "parquet", "path": str(dataset)},
            "dead_letter": {"path": str(tmp / "dlq")},
            "chunking": chunking or {},
        }
    )


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, sample_docs):
    tmp = tmp_path_factory.mktemp("chunk-parquet")
    source = write_jsonl(tmp / "docs.jsonl", [*sample_docs[:40], LONG_DOC])
    trunc = cfg_for(tmp, source, tmp / "trunc")
    chunk = cfg_for(tmp, source, tmp / "chunk", {"mode": "chunk", "token_limit": 128, "overlap_rate": 0.1})
    keep = hold_model(trunc)  # noqa: F841
    return {"truncate": (trunc, run_ingest(trunc)), "chunk": (chunk, run_ingest(chunk))}, tmp, source


def test_schema_unchanged_without_chunking_and_a_chunk_column_with_it(datasets):
    runs, *_ = datasets
    trunc_cfg, trunc = runs["truncate"]
    chunk_cfg, chunk = runs["chunk"]
    t = ds.dataset(trunc_cfg.sink.path, format="parquet").to_table()
    assert t.column_names == ["id", "text", "metadata", "embedding"]
    assert trunc.truncated >= 1 and trunc.chunks == 0
    c = ds.dataset(chunk_cfg.sink.path, format="parquet").to_table()
    assert c.column_names == ["id", "text", "metadata", "chunks"]
    item = c.schema.field("chunks").type.value_type
    assert [item.field(i).name for i in range(item.num_fields)] == ["text", "start", "end", "index", "embedding"]
    rows = {r["id"]: r for r in c.to_pylist()}
    assert sum(len(r["chunks"]) for r in rows.values()) == chunk.chunks
    assert chunk.truncated == 0 and chunk.indexed == 41 and chunk.reconciles
    for r in rows.values():
        assert all(ch["text"] == r["text"][ch["start"] : ch["end"]] for ch in r["chunks"])
        assert r["chunks"][-1]["end"] == len(r["text"])


def test_chunked_exact_search_is_the_best_chunk(datasets):
    from neural_ingest.encoders import make_encoder

    runs, *_ = datasets
    trunc_cfg, _ = runs["truncate"]
    chunk_cfg, _ = runs["chunk"]
    assert LONG_ID not in [h.id for h in search(trunc_cfg, TAIL_QUERY, k=10)]
    hits = search(chunk_cfg, TAIL_QUERY, k=10)
    assert hits[0].id == LONG_ID and "Greenland shark" in hits[0].passage["text"]
    assert len({h.id for h in hits}) == len(hits) == 10

    rows = {r["id"]: r for r in ds.dataset(chunk_cfg.sink.path, format="parquet").to_table().to_pylist()}
    enc = make_encoder(chunk_cfg.encoders[0])
    q = np.asarray(enc.encode_queries(enc.acquire(), [TAIL_QUERY])[0], dtype=np.float64)
    for h in hits:
        vecs = np.asarray([ch["embedding"] for ch in rows[h.id]["chunks"]], dtype=np.float64)
        scores = (1 + vecs @ q / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(q))) / 2
        assert h.score == pytest.approx(scores.max(), abs=1e-5)
        assert h.passage["index"] == int(np.argmax(scores))
        assert h.source["text"] == rows[h.id]["text"] and "topic" in h.source


def test_chunk_config_on_an_unchunked_dataset_says_what_to_do(datasets):
    runs, tmp, source = datasets
    trunc_cfg, _ = runs["truncate"]
    wrong = cfg_for(tmp, source, trunc_cfg.sink.path, {"mode": "chunk"})
    with pytest.raises(SinkError, match="without chunking"):
        search(wrong, TAIL_QUERY, k=3)


def test_sparse_and_hybrid_over_chunks(tmp_path):
    from sparse_models import build_mlm

    mlm = build_mlm(tmp_path / "tiny", seed=4)
    source = write_jsonl(
        tmp_path / "docs.jsonl",
        [LONG_DOC, {"id": "short", "title": "Search", "body": "open search vector model", "topic": "t", "year": 1}],
    )
    cfg = cfg_for(
        tmp_path,
        source,
        tmp_path / "ds",
        {"mode": "chunk", "token_limit": 64},
        encoders=[
            {"type": "sentence_transformers", "model": MINILM, "device": "cpu"},
            {"type": "neural_sparse", "model": str(mlm), "device": "cpu", "batch_size": 4},
        ],
    )
    summary = run_ingest(cfg)
    assert summary.indexed == 2 and summary.encoded_by_field == {"embedding": 2, "sparse_embedding": 2}
    t = ds.dataset(str(tmp_path / "ds"), format="parquet").to_table()
    item = t.schema.field("chunks").type.value_type
    assert pa.types.is_map(item.field("sparse_embedding").type)
    hits = search(cfg, "open search vector model", k=2, mode="sparse")
    assert hits and all(h.passage and h.passage["text"] for h in hits)
    hybrid = search(cfg, "open search vector model", k=2, mode="hybrid")
    assert {h.id for h in hybrid} <= {LONG_ID, "short"} and all(h.passage for h in hybrid)
