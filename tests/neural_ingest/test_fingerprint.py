"""Content hash and model identity (what decides whether a stored vector may be reused), and the
config blocks reindex adds (reindex:, source type opensearch)."""
from __future__ import annotations

import pytest

from neural_ingest.config import ConfigError, parse_config
from neural_ingest.encoders.base import ModelInfo
from neural_ingest.fingerprint import content_hash, identity_hash, model_identity, weights_fingerprint

INFO = ModelInfo(name="m", kind="dense", dimension=384, similarity="cosine", normalized=True, max_seq_length=256)


def _cfg(**encoder):
    return parse_config({"source": {"type": "jsonl", "path": "x.jsonl"},
                         "encoder": {"type": "sentence_transformers", "model": "m", **encoder}})


def _hash(cfg, info=INFO) -> str:
    return identity_hash(model_identity(cfg, {"embedding": info}))


def test_content_hash_is_of_the_embedded_text():
    assert content_hash("a b") == content_hash("a b") != content_hash("a  b")
    assert len(content_hash("")) == 64


def test_identity_follows_what_changes_vectors_only():
    base = _hash(_cfg())
    assert _hash(_cfg(batch_size=7, device="cpu", threads=2, models_dir="/elsewhere")) == base
    assert _hash(_cfg(normalize=False)) != base
    assert _hash(_cfg(max_seq_length=128)) != base
    assert _hash(_cfg(model="other")) != base
    assert _hash(_cfg(), ModelInfo(**{**INFO.__dict__, "dimension": 768})) != base
    assert _hash(_cfg(), ModelInfo(**{**INFO.__dict__, "max_seq_length": 128})) != base


def test_weights_fingerprint_changes_with_the_files(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 100)
    (tmp_path / "README.md").write_text("docs")
    fp = weights_fingerprint(tmp_path)
    (tmp_path / "README.md").write_text("other docs")  # not part of the model
    assert weights_fingerprint(tmp_path) == fp
    (tmp_path / "model.safetensors").write_bytes(b"\x01" * 100)  # same size, new weights
    assert weights_fingerprint(tmp_path) != fp
    assert weights_fingerprint(None) is None and weights_fingerprint(tmp_path / "missing") is None
    info = ModelInfo(**{**INFO.__dict__, "extra": {"path": str(tmp_path)}})
    assert model_identity(_cfg(), {"embedding": info})["fields"]["embedding"]["weights"] == weights_fingerprint(tmp_path)


def test_opensearch_source_and_reindex_blocks():
    cfg = parse_config({
        "source": {"type": "opensearch", "hosts": ["https://os:9200"], "index": "old-docs", "text_fields": ["body"],
                   "username": "u", "password": "p", "slices": 4},
        "encoder": {"type": "sentence_transformers", "model": "m"},
        "sink": {"type": "opensearch", "index": "docs"},
        "reindex": {"keep_last": 5, "validation": {"count_tolerance": 0.05, "sample_queries": 0}},
    })
    assert cfg.source.type == "opensearch" and cfg.source.id_field == "_id" and cfg.source.slices == 4
    assert cfg.reindex.keep_last == 5 and cfg.reindex.incremental and cfg.reindex.alias is None
    # existing file sources are unchanged; errors still name the field, never the password
    with pytest.raises(ConfigError, match=r"source.path: unknown field"):
        parse_config(
            {
                "source": {"type": "opensearch", "index": "x", "path": "y"},
                "encoder": {"type": "sentence_transformers", "model": "m"},
            }
        )
    with pytest.raises(ConfigError) as err:
        parse_config(
            {"source": {"type": "elastic", "password": "hunter2"}, "encoder": {"type": "sentence_transformers", "model": "m"}}
        )
    assert "unknown type 'elastic'" in str(err.value) and "opensearch" in str(err.value) and "hunter2" not in str(err.value)
    with pytest.raises(ConfigError, match=r"reindex.alias"):
        parse_config(
            {
                "source": {"type": "jsonl", "path": "x"},
                "encoder": {"type": "sentence_transformers", "model": "m"},
                "reindex": {"alias": "Docs"},
            }
        )
