"""Chunked storage without a cluster: config, the plan, nested / separate mappings (lucene and faiss),
the conflict check, query bodies, result parsing and hybrid fusion with passages."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from neural_ingest.chunking import ChunkPlan, plan_chunking
from neural_ingest.config import ConfigError, OpenSearchSinkConfig, parse_config
from neural_ingest.encoders.base import ModelInfo
from neural_ingest.sinks.base import Hit
from neural_ingest.sinks.mapping import index_body, mapping_problems
from neural_ingest.sinks.opensearch_chunks import ChunkedOpenSearch, stale_chunks_query
from neural_ingest.sinks.scoring import fuse_with_passages

DENSE = ModelInfo(name="m", kind="dense", dimension=384, similarity="cosine", max_seq_length=256)
SPARSE = ModelInfo(name="s", kind="sparse", dimension=30522, similarity="dot", max_seq_length=512)
NESTED = ChunkPlan(mode="chunk", storage="nested", field="chunks", token_limit=254)
SEPARATE = ChunkPlan(mode="chunk", storage="separate", token_limit=254)


def base(**chunking) -> dict:
    return {
        "source": {"type": "jsonl", "path": "x.jsonl", "text_fields": ["body"], "metadata_fields": ["topic"]},
        "encoder": {"type": "sentence_transformers", "model": "all-MiniLM-L6-v2"},
        "chunking": chunking,
    }


def sink_cfg(engine: str) -> OpenSearchSinkConfig:
    return OpenSearchSinkConfig(index="docs", knn={"engine": engine})


# --------------------------------------------------------------------------- config
def test_config_defaults_to_truncate():
    c = parse_config(base()).chunking
    assert (c.mode, c.algorithm, c.token_limit, c.overlap_rate, c.delimiter, c.max_chunk_limit, c.storage, c.field) == (
        "truncate", "fixed_token_length", None, 0.0, "\n\n", 100, "nested", "chunks"
    )


@pytest.mark.parametrize(
    "chunking,needle",
    [
        ({"mode": "chunk", "overlap_rate": 0.6}, "overlap_rate"),
        ({"mode": "chunk", "max_chunk_limit": 0}, "max_chunk_limit"),
        ({"mode": "chunk", "max_chunk_limit": -2}, "max_chunk_limit"),
        ({"mode": "chunk", "token_limit": 0}, "token_limit"),
        ({"mode": "chunk", "field": "a.b"}, "field"),
        ({"mode": "chunk", "algorithm": "semantic"}, "algorithm"),
        ({"mode": "chunk", "field": "topic"}, "topic"),  # a metadata field
        ({"mode": "chunk", "field": "embedding"}, "embedding"),  # the encoder's field
        ({"mode": "sliced"}, "mode"),
    ],
)
def test_config_errors_name_the_field(chunking, needle):
    with pytest.raises(ConfigError, match=needle):
        parse_config(base(**chunking))


def test_separate_storage_reserves_parent_fields():
    data = base(mode="chunk", storage="separate")
    data["source"]["metadata_fields"] = ["parent_id"]
    with pytest.raises(ConfigError, match="parent_id"):
        parse_config(data)
    data["chunking"]["mode"] = "truncate"  # only chunk mode writes them
    parse_config(data)


# --------------------------------------------------------------------------- plan
class _Local:
    counts_tokens = True  # a local encoder (Encoder.counts_tokens)

    def token_lengths(self, loaded, texts):
        return []


class _Remote:
    counts_tokens = False


def test_plan_with_only_remote_encoders_needs_a_tokenizer():
    cfg = parse_config(base(mode="chunk"))
    remote = [("embedding", _Remote())]
    loaded = [SimpleNamespace(info=ModelInfo(name="r", kind="dense", dimension=8))]
    with pytest.raises(ConfigError, match=r"chunking.tokenizer"):
        plan_chunking(cfg, remote, loaded)
    assert plan_chunking(parse_config(base()), remote, loaded) is None  # truncate: nothing to count with
    cfg = parse_config(base(mode="chunk", algorithm="delimiter"))
    plan = plan_chunking(cfg, remote, loaded)  # delimiter needs no tokenizer
    assert plan.chunking and plan.algorithm == "delimiter" and plan.max_lengths == {}


def test_plan_defaults_the_limit_to_the_model_window_and_warns_above_it(caplog):
    from support import MINILM

    from neural_ingest.config import SentenceTransformersEncoderConfig
    from neural_ingest.encoders import make_encoder

    enc = make_encoder(SentenceTransformersEncoderConfig(model=MINILM, device="cpu"))
    loaded = enc.acquire()
    plan = plan_chunking(parse_config(base(mode="chunk", overlap_rate=0.2)), [("embedding", enc)], [loaded])
    assert plan.token_limit == 254 and plan.tokenizer_field == "embedding" and plan.max_lengths == {"embedding": 256}
    assert plan.overlap_rate == 0.2 and plan.storage == "nested"
    with caplog.at_level(logging.WARNING):
        plan = plan_chunking(parse_config(base(mode="chunk", token_limit=400)), [("embedding", enc)], [loaded])
    assert plan.token_limit == 400 and "above what the models take" in caplog.text
    plan = plan_chunking(parse_config(base()), [("embedding", enc)], [loaded])
    assert plan.mode == "truncate" and not plan.chunking and plan.max_lengths == {"embedding": 256}
    with pytest.raises(ConfigError, match=r"chunking.tokenizer"):
        plan_chunking(parse_config(base(mode="chunk", tokenizer="no-such-model-anywhere")), [("embedding", enc)], [loaded])


# --------------------------------------------------------------------------- mappings
@pytest.mark.parametrize("engine", ["lucene", "faiss"])
def test_nested_mapping(engine):
    body = index_body(sink_cfg(engine), {"embedding": DENSE, "sparse_embedding": SPARSE}, NESTED)
    props = body["mappings"]["properties"]
    assert set(props) == {"chunks", "text"}
    chunks = props["chunks"]
    assert chunks["type"] == "nested"
    inner = chunks["properties"]
    assert inner["text"] == {"type": "text"}
    assert inner["start"] == inner["end"] == inner["index"] == {"type": "integer"}
    assert inner["sparse_embedding"] == {"type": "rank_features"}
    knn = inner["embedding"]
    assert knn["type"] == "knn_vector" and knn["dimension"] == 384
    assert knn["method"]["engine"] == engine and knn["method"]["space_type"] == "cosinesimil"
    assert body["settings"]["index.knn"] is True
    # the index we would create raises no conflict against itself
    assert mapping_problems(body["mappings"], sink_cfg(engine), {"embedding": DENSE, "sparse_embedding": SPARSE}, NESTED) == []


def test_separate_mapping():
    props = index_body(sink_cfg("lucene"), {"embedding": DENSE}, SEPARATE)["mappings"]["properties"]
    assert props["embedding"]["type"] == "knn_vector"
    assert props["parent_id"] == {"type": "keyword"}
    assert props["chunk_index"] == props["chunk_start"] == props["chunk_end"] == {"type": "integer"}


# The mapping OpenSearch 2.19.6 returned for a faiss nested index created by this mapping (created on a
# dedicated node only: the test cluster's k-NN plugin has no native library, so nothing is indexed into it).
FAISS_NESTED_AS_RETURNED = {
    "properties": {
        "chunks": {
            "type": "nested",
            "properties": {
                "embedding": {
                    "type": "knn_vector",
                    "dimension": 384,
                    "method": {
                        "engine": "faiss",
                        "space_type": "cosinesimil",
                        "name": "hnsw",
                        "parameters": {"ef_construction": 128, "m": 16},
                    },
                },
                "end": {"type": "integer"},
                "index": {"type": "integer"},
                "start": {"type": "integer"},
                "text": {"type": "text"},
            },
        },
        "text": {"type": "text"},
    }
}


def test_conflict_check_inside_the_nested_field():
    cfg = sink_cfg("faiss")
    assert mapping_problems(FAISS_NESTED_AS_RETURNED, cfg, {"embedding": DENSE}, NESTED) == []
    small = ModelInfo(name="other", kind="dense", dimension=768, similarity="dot")
    problems = mapping_problems(FAISS_NESTED_AS_RETURNED, cfg, {"embedding": small}, NESTED)
    assert any("dimension 384" in p and "768" in p for p in problems)
    assert any("innerproduct" in p for p in problems)
    # an object (not nested) field of that name cannot hold chunks
    flat = {"properties": {"chunks": {"properties": {"text": {"type": "text"}}}}}
    assert any("needs a 'nested' field" in p for p in mapping_problems(flat, cfg, {"embedding": DENSE}, NESTED))
    # a nested index written with separate storage, and a non-keyword parent_id
    assert any(
        "storage is separate" in p for p in mapping_problems(FAISS_NESTED_AS_RETURNED, cfg, {"embedding": DENSE}, SEPARATE)
    )
    bad_parent = {"properties": {"parent_id": {"type": "text"}}}
    assert any("keyword" in p for p in mapping_problems(bad_parent, cfg, {"embedding": DENSE}, SEPARATE))
    # an unchunked index gets the nested field added (no conflict)
    plain = {"properties": {"embedding": FAISS_NESTED_AS_RETURNED["properties"]["chunks"]["properties"]["embedding"]}}
    assert mapping_problems(plain, cfg, {"embedding": DENSE}, NESTED) == []


# --------------------------------------------------------------------------- queries and results
def fake_sink(neural: bool = True, engine: str = "lucene"):
    return SimpleNamespace(cfg=sink_cfg(engine), neural_search_enabled=lambda: neural, describe=lambda: "fake")


@pytest.mark.parametrize("engine", ["lucene", "faiss"])
def test_nested_knn_body_with_inner_hits(engine):
    s = ChunkedOpenSearch(fake_sink(engine=engine), NESTED, ["embedding"])
    body = s.dense_body("embedding", [0.5, 0.25], 7)
    assert body == {
        "size": 7,
        "query": {
            "nested": {
                "path": "chunks",
                "score_mode": "max",
                "query": {"knn": {"chunks.embedding": {"vector": [0.5, 0.25], "k": 100}}},  # a search window >= k
                "inner_hits": {"size": 1, "_source": {"includes": ["chunks.text", "chunks.start", "chunks.end", "chunks.index"]}},
            }
        },
        "_source": {"excludes": ["chunks"]},
    }


def test_sparse_bodies():
    s = ChunkedOpenSearch(fake_sink(neural=True), NESTED, ["sparse_embedding"])
    q = s.sparse_body("sparse_embedding", {"tide": 1.5, "moon": 0.5, "zero": 0.0}, 3)["query"]["nested"]["query"]
    assert q == {"neural_sparse": {"chunks.sparse_embedding": {"query_tokens": {"tide": 1.5, "moon": 0.5}}}}
    s = ChunkedOpenSearch(fake_sink(neural=False), NESTED, ["sparse_embedding"])
    q = s.sparse_body("sparse_embedding", {"tide": 1.5, "e.g": 2.0}, 3)["query"]["nested"]["query"]
    assert q == {"bool": {"should": [{"rank_feature": {"field": "chunks.sparse_embedding.tide", "linear": {}, "boost": 1.5}}]}}


def test_separate_body_collapses_on_parent():
    s = ChunkedOpenSearch(fake_sink(), SEPARATE, ["embedding", "sparse_embedding"])
    body = s.dense_body("embedding", [1.0], 5)
    assert body["collapse"] == {"field": "parent_id"} and body["size"] == 5
    assert body["query"]["knn"]["embedding"]["k"] == 100  # oversampled: several chunks per document
    assert body["_source"] == {"excludes": ["embedding", "sparse_embedding"]}


def test_hits_from_a_nested_response():
    # the shape OpenSearch 2.19.6 answered with (lucene, nested knn + inner_hits)
    res = {
        "hits": {
            "hits": [
                {
                    "_id": "d3",
                    "_score": 0.95,
                    "_source": {"text": "doc 3", "topic": "x"},
                    "inner_hits": {
                        "chunks": {
                            "hits": {
                                "hits": [
                                    {
                                        "_id": "d3",
                                        "_nested": {"field": "chunks", "offset": 2},
                                        "_score": 0.95,
                                        "_source": {"start": 20, "index": 2, "end": 30, "text": "d3 c2"},
                                    }
                                ]
                            }
                        }
                    },
                }
            ]
        }
    }
    [hit] = ChunkedOpenSearch(fake_sink(), NESTED, ["embedding"]).hits(res)
    assert hit.id == "d3" and hit.score == 0.95 and hit.source == {"text": "doc 3", "topic": "x"}
    assert hit.passage == {"text": "d3 c2", "start": 20, "end": 30, "index": 2, "score": 0.95}


def test_hits_from_a_separate_response():
    res = {
        "hits": {
            "hits": [
                {
                    "_id": "d1#4",
                    "_score": 0.8,
                    "_source": {
                        "text": "chunk four",
                        "parent_id": "d1",
                        "chunk_index": 4,
                        "chunk_start": 100,
                        "chunk_end": 140,
                        "topic": "t",
                    },
                }
            ]
        }
    }
    [hit] = ChunkedOpenSearch(fake_sink(), SEPARATE, ["embedding"]).hits(res)
    assert hit.id == "d1" and hit.source == {"text": "chunk four", "topic": "t"}
    assert hit.passage == {"text": "chunk four", "start": 100, "end": 140, "index": 4, "score": 0.8}


def test_stale_chunks_query_groups_parents_by_new_count():
    q = stale_chunks_query({"a": 3, "b": 1, "c": 3})
    assert q == {
        "bool": {
            "minimum_should_match": 1,
            "should": [
                {"bool": {"filter": [{"terms": {"parent_id": ["b"]}}, {"range": {"chunk_index": {"gte": 1}}}]}},
                {"bool": {"filter": [{"terms": {"parent_id": ["a", "c"]}}, {"range": {"chunk_index": {"gte": 3}}}]}},
            ],
        }
    }


def test_hybrid_fusion_keeps_the_passage_that_weighs_most():
    p = lambda i: {"text": f"p{i}", "start": 0, "end": 1, "index": i, "score": 1.0}  # noqa: E731
    dense = [Hit("a", 0.9, {}, p(1)), Hit("b", 0.5, {}, p(2))]
    sparse = [Hit("b", 10.0, {}, p(7)), Hit("c", 2.0, {}, p(8))]
    fused = {h.id: h for h in fuse_with_passages([dense, sparse], (0.5, 0.5), 10)}
    assert fused["a"].passage["index"] == 1  # only the dense leg has it
    assert fused["b"].passage["index"] == 7  # sparse normalises to 1.0, dense to 0.001
    assert fused["c"].passage["index"] == 8


def test_separate_window_grows_with_k():
    s = ChunkedOpenSearch(fake_sink(), SEPARATE, ["embedding"])
    assert s.dense_body("embedding", [1.0], 20)["query"]["knn"]["embedding"]["k"] == 200
    assert s.dense_body("embedding", [1.0], 5000)["query"]["knn"]["embedding"]["k"] == 10_000  # OpenSearch's cap
