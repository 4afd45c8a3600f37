"""The neural_sparse encoder block and the hybrid example config."""
from __future__ import annotations

import pytest
from support import ROOT

from neural_ingest.config import ConfigError, encoder_field, load_config, parse_config

BASE = {"source": {"type": "jsonl", "path": "docs.jsonl"}}


def test_configs_hybrid_yaml_has_a_dense_and_a_sparse_encoder():
    cfg = load_config(ROOT / "configs" / "hybrid.yaml")
    kinds = [(e.type, e.kind, encoder_field(e)) for e in cfg.encoders]
    assert kinds == [("sentence_transformers", "dense", "embedding"), ("neural_sparse", "sparse", "sparse_embedding")]
    sparse = cfg.encoders[1]
    assert sparse.model.endswith("opensearch-neural-sparse-encoding-doc-v1")
    assert (sparse.prune.type, sparse.prune.ratio) == ("max_ratio", 0.1)
    assert sparse.activation is None and sparse.query_mode is None
    assert cfg.sink.type == "opensearch" and cfg.sink.use_neural_search is None


def test_sparse_defaults_and_validation():
    cfg = parse_config({**BASE, "encoder": {"type": "neural_sparse", "model": "m"}})
    e = cfg.encoders[0]
    assert e.batch_size == 8 and e.prune.type == "none" and encoder_field(e) == "sparse_embedding"
    with pytest.raises(ConfigError, match="activation"):
        parse_config({**BASE, "encoder": {"type": "neural_sparse", "model": "m", "activation": "relu"}})
    with pytest.raises(ConfigError, match="query_mode"):
        parse_config({**BASE, "encoder": {"type": "neural_sparse", "model": "m", "query_mode": "idf"}})
    with pytest.raises(ConfigError, match="same field"):
        parse_config({**BASE, "encoders": [{"type": "neural_sparse", "model": "a"}, {"type": "neural_sparse", "model": "b"}]})
    two = parse_config(
        {
            **BASE,
            "encoders": [{"type": "neural_sparse", "model": "a"}, {"type": "neural_sparse", "model": "b", "field": "sparse_b"}],
        }
    )
    assert [encoder_field(e) for e in two.encoders] == ["sparse_embedding", "sparse_b"]
