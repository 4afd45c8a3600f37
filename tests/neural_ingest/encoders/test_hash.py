"""The benchmark-only hash encoder: picked from config, deterministic unit float32 vectors, the documented contract."""
from __future__ import annotations

from hashlib import blake2b

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_ingest.config import ConfigError, HashEncoderConfig
from neural_ingest.encoders import make_encoder
from neural_ingest.encoders.hash import HashEncoder


def _contract(text: str, dim: int) -> np.ndarray:
    """The module docstring's recipe, one component at a time in plain Python integers."""
    seed = int.from_bytes(blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    mask = (1 << 64) - 1
    out = []
    for j in range(dim):
        z = (seed + (j + 1) * 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        out.append((z >> 40) / 2**23 - 1)
    v = np.array(out, dtype=np.float64)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_config_picks_the_hash_encoder(make_config):
    cfg = make_config(overrides={"encoder": {"type": "hash", "dimension": 16}})
    enc = make_encoder(cfg.encoders[0])
    assert isinstance(enc, HashEncoder)
    info = enc.acquire().info
    assert (info.name, info.kind, info.dimension, info.similarity, info.normalized) == ("hash-16", "dense", 16, "cosine", True)
    assert cfg.encoders[0].batching.mode == "fixed"


def test_dimension_is_checked(make_config):
    with pytest.raises(ConfigError, match="dimension"):
        make_config(overrides={"encoder": {"type": "hash", "dimension": 0}})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=5), st.integers(1, 40))
def test_vectors_follow_the_contract(texts, dim):
    enc = HashEncoder(HashEncoderConfig(dimension=dim))
    got = enc.encode(enc.load_model(), texts)
    assert len(got) == len(texts)
    for t, v in zip(texts, got):
        assert v.dtype == np.float32 and v.shape == (dim,)
        assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
        np.testing.assert_allclose(v, _contract(t, dim), atol=1e-6)


def test_equal_texts_equal_vectors_distinct_texts_differ():
    enc = HashEncoder(HashEncoderConfig(dimension=384))
    a, b, c = enc.encode(enc.load_model(), ["same", "same", "other"])
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert enc.encode(enc.load_model(), ["lone \udcff surrogate"])[0].shape == (384,)


def test_a_run_writes_hash_vectors(make_config, tmp_path, sample_docs):
    from neural_ingest.pipelines.ingest import run_ingest

    cfg = make_config(overrides={"encoder": {"type": "hash", "dimension": 24}})
    summary = run_ingest(cfg)
    assert summary.read == len(sample_docs) == summary.indexed
    table = pq.read_table(cfg.sink.path)
    assert table.schema.field("embedding").type.list_size == 24
    by_id = dict(zip(table.column("id").to_pylist(), table.column("embedding").to_pylist()))
    d = sample_docs[0]
    np.testing.assert_allclose(by_id[d["id"]], _contract(f"{d['title']}\n\n{d['body']}", 24), atol=1e-6)
