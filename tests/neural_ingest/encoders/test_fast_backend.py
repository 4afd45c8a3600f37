"""The optional fast backends (ONNX Runtime, OpenVINO; fp32 and int8) against the torch model: same
dimension and model info, cosine >= 0.99 to the fp32 vectors on every sample document (>= 0.9999 for
fp32 graphs), exported graphs cached and reused, and a pipeline run on the fast backend. Skipped where
the `fast` extra is not installed."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from support import MINILM

from neural_ingest.config import ConfigError, SentenceTransformersEncoderConfig, parse_config
from neural_ingest.encoders.dense import SentenceTransformerEncoder

RUNTIMES = {"onnx": ["onnxruntime", "onnx"], "openvino": ["openvino", "nncf", "onnx"]}


def needs(backend: str):
    missing = [m for m in RUNTIMES[backend] if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"backend {backend} needs {missing} (pip install '.[fast]')")


@pytest.fixture(scope="module")
def texts(sample_docs):
    return [f"{d['title']}\n\n{d['body']}" for d in sample_docs]


@pytest.fixture(scope="module")
def reference(st_model, texts):
    return np.asarray(st_model.encode(texts, batch_size=32), dtype=np.float32)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("backends"))


def min_cosine(a, b) -> float:
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


@pytest.mark.parametrize(
    "backend,quantize,floor",
    [
        pytest.param("onnx", None, 0.9999, marks=needs("onnx")),
        pytest.param("onnx", "int8", 0.99, marks=needs("onnx")),
        pytest.param("openvino", None, 0.999, marks=needs("openvino")),
        pytest.param("openvino", "int8", 0.99, marks=needs("openvino")),
    ],
)
def test_fast_backend_vectors_match_torch(texts, reference, cache_dir, backend, quantize, floor):
    enc = SentenceTransformerEncoder(
        SentenceTransformersEncoderConfig(
            model=MINILM, device="cpu", backend=backend, quantize=quantize, backend_cache_dir=cache_dir
        )
    )
    loaded = enc.load_model()
    assert loaded.info.dimension == 384 and loaded.info.similarity == "cosine" and loaded.info.normalized
    assert loaded.info.extra["backend"] == backend and loaded.info.extra["quantize"] == quantize
    vecs = np.stack(enc.encode(loaded, texts))
    assert vecs.dtype == np.float32 and vecs.shape == reference.shape
    assert min_cosine(vecs, reference) >= floor
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-3)  # the graph keeps the Normalize module
    # one text, and a second load reusing the cached graph
    again = enc.load_model()
    assert again.info.extra["graph"] == loaded.info.extra["graph"]
    assert min_cosine(np.stack(enc.encode(again, texts[:1])), reference[:1]) >= floor


@needs("onnx")
def test_pipeline_on_the_onnx_int8_backend(make_config, cache_dir, sample_docs, reference):
    import pyarrow.parquet as pq

    from neural_ingest.pipelines.ingest import run_ingest

    cfg = make_config(
        overrides={"encoders.0.backend": "onnx", "encoders.0.quantize": "int8", "encoders.0.backend_cache_dir": cache_dir}
    )
    s = run_ingest(cfg)
    assert s.indexed == len(sample_docs) and s.reconciles
    assert s.models["embedding"]["extra"]["backend"] == "onnx"
    rows = pq.read_table(cfg.sink.path).to_pylist()
    got = {r["id"]: np.asarray(r["embedding"], dtype=np.float32) for r in rows}
    want = {d["id"]: v for d, v in zip(sample_docs, reference)}
    assert min_cosine(np.stack([got[i] for i in want]), np.stack(list(want.values()))) >= 0.99


def test_quantize_needs_a_fast_backend():
    base = {"source": {"type": "jsonl", "path": "x.jsonl"}}
    with pytest.raises(ConfigError, match="quantize needs backend onnx or openvino"):
        parse_config({**base, "encoder": {"type": "sentence_transformers", "model": MINILM, "quantize": "int8"}})
    with pytest.raises(ConfigError, match="runs on CPU"):
        parse_config({**base, "encoder": {"type": "sentence_transformers", "model": MINILM, "backend": "onnx", "device": "cuda"}})
