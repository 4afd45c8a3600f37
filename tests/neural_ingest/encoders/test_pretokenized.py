"""One tokenization per text (encoders/pretokenized.py): the length-sorted window's tokens go to the model as
the features ``SentenceTransformer.encode`` builds itself, so the vectors are exactly the ones it gives, for
the real all-MiniLM-L6-v2 and a random tiny BERT, at and past max_seq_length, for empty and non-ASCII texts;
each text meets a tokenizer once; models where the features would differ encode from texts as before."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import MINILM

from neural_ingest.config import SentenceTransformersEncoderConfig
from neural_ingest.encoders.dense import SentenceTransformerEncoder
from neural_ingest.encoders.pretokenized import TokenPath, token_path
from neural_ingest.records import Document
from neural_ingest.transforms.batching import EncodeWindowFn, plan_for

EDGE = [
    "",
    " ",
    "\n\t",
    "x",
    "naïve café, Straße, Ελληνικά, 東京タワー, ☃ 👍🏽 \u200b",
    "word " * 300,  # past MiniLM's 256 tokens and the tiny model's 256
    "日本語のテキスト。" * 120,
    "a" * 3000,  # one long "word"
]


def corpus(n: int = 150, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    words = ["alpha", "beta", "über", "東京", "γάμμα", "zzz", "token", "naïve", "👍", "end."]
    return EDGE + [" ".join(rnd.choice(words) for _ in range(rnd.randint(1, 350))) for _ in range(n)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from benchmarks.growth import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def encoder(model: str, tiny_dir: Path | None = None, **cfg: Any) -> SentenceTransformerEncoder:
    path = {"model_path": str(tiny_dir)} if model == "tiny" else {}
    return SentenceTransformerEncoder(SentenceTransformersEncoderConfig(model=model, device="cpu", **path, **cfg))


class CountingBackend:
    """A Rust tokenizer that counts the texts it encodes (everything else passes through)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.texts = 0

    def encode_batch(self, texts, *a, **kw):
        self.texts += len(texts)
        return self.inner.encode_batch(texts, *a, **kw)

    def encode(self, *a, **kw):
        self.texts += 1
        return self.inner.encode(*a, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def window_vectors(fn: EncodeWindowFn, texts: list[str]) -> np.ndarray:
    docs = [Document(id=f"d{i}", text=t) for i, t in enumerate(texts)]
    out = list(fn.process(docs))
    assert [d.id for d in out] == [d.id for d in docs]  # all encoded, in arrival order
    return np.stack([d.embeddings["embedding"] for d in out])


@pytest.mark.parametrize(
    "model,cfg",
    [(MINILM, {}), ("tiny", {}), (MINILM, {"normalize": False, "max_seq_length": 48, "batch_size": 5})],
    ids=["minilm", "tiny-bert", "minilm-raw-48"],
)
def test_window_vectors_are_exactly_model_encode_and_each_text_is_tokenized_once(model, cfg, tiny_dir):
    enc = encoder(model, tiny_dir, **{"batch_size": 16, **cfg})
    fn = EncodeWindowFn(enc, "embedding", 3600, plan_for(enc), truncation_limit=None)
    fn.setup()
    loaded = fn._loaded
    assert loaded.tokens is not None  # the pre-tokenized path is on for plain torch models
    texts = corpus()
    st_model = loaded.model
    # every tokenizer the run could use counts its texts: the window's own copy and the model's (encode's)
    loaded.tokens.backend = ours = CountingBackend(loaded.tokens.backend)
    hf = st_model.tokenizer
    hf._tokenizer = theirs = CountingBackend(hf._tokenizer)
    calls: list[list[str]] = []
    real = enc.encode_tokenized

    def spy(loaded_, tokens):
        calls.append(len(tokens))
        return real(loaded_, tokens)

    enc.encode_tokenized = spy
    try:
        got = window_vectors(fn, texts)
    finally:
        hf._tokenizer = theirs.inner
        loaded.tokens.backend = ours.inner
    assert ours.texts == len(texts) and theirs.texts == 0  # once per text, not once more in model.encode
    assert sum(calls) == len(texts) and max(calls) <= enc.batch_size()
    assert got.dtype == np.float32 and got.shape == (len(texts), loaded.info.dimension)

    # the same batches through sentence-transformers' own encode (the path before): bit for bit
    path, loaded.tokens = loaded.tokens, None
    try:
        before = window_vectors(fn, texts)
    finally:
        loaded.tokens = path
    assert np.array_equal(got, before)
    # and model.encode of all the texts in one call (its own batches, so other padding: float noise only,
    # 1e-6 of a vector's length)
    direct = st_model.encode(texts, batch_size=16, normalize_embeddings=bool(enc.cfg.normalize), convert_to_numpy=True)
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-6 * max(1.0, float(np.linalg.norm(direct, axis=1).max())))


def test_truncation_flags_and_lengths_match_the_tokenizer(tiny_dir):
    """Counts after the model's truncation and 'lost tokens to it' from one pass: 256 fits, 257 does not."""
    enc = encoder(MINILM)
    loaded = enc.acquire()
    texts = [" ".join(["word"] * n) for n in (0, 1, 253, 254, 255, 600)] + EDGE
    full = loaded.model.tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    tok = enc.tokenize(loaded, texts)
    assert tok.lengths == [min(len(x), 256) for x in full]
    assert tok.truncated == [len(x) > 256 for x in full]
    assert {255, 256, 257} <= {len(x) for x in full}


@pytest.fixture(scope="module")
def minilm_path():
    loaded = encoder(MINILM).acquire()
    return loaded.model, loaded.tokens


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=400), min_size=1, max_size=6))
def test_features_are_what_the_models_preprocess_builds(minilm_path, texts):
    model, path = minilm_path
    ours = path.features(path.tokenize(texts).tokens)
    theirs = model.preprocess(texts)
    assert set(ours) == set(theirs)
    for k, v in theirs.items():
        assert (ours[k] == v) if isinstance(v, str) else (ours[k].dtype == v.dtype and ours[k].equal(v)), k


def test_models_whose_encode_differs_from_the_tokens_encode_from_texts(tiny_dir):
    """A default prompt or truncate_dim changes what encode does: no token path, encode(texts) as before."""
    loaded = encoder("tiny", tiny_dir).load_model()
    model = loaded.model
    assert isinstance(token_path(model), TokenPath)
    model.prompts, model.default_prompt_name = {"document": "passage: "}, "document"
    assert token_path(model) is None
    model.default_prompt_name = None
    model.truncate_dim = 8
    assert token_path(model) is None


def test_encoder_without_tokens_keeps_encoding_from_texts(tiny_dir):
    enc = encoder("tiny", tiny_dir, batch_size=8)
    fn = EncodeWindowFn(enc, "embedding", 3600, plan_for(enc))
    fn.setup()
    path, fn._loaded.tokens = fn._loaded.tokens, None  # as a fast backend (ONNX / OpenVINO) loads
    seen: list[int] = []
    real = enc.encode
    enc.encode = lambda loaded, texts: seen.append(len(texts)) or real(loaded, texts)
    enc.encode_tokenized = lambda *a: pytest.fail("no tokens to encode from")
    try:
        assert enc.tokenize(fn._loaded, ["x"]) is None
        vecs = window_vectors(fn, corpus(20))
    finally:
        fn._loaded.tokens = path
    assert sum(seen) == len(vecs) == len(corpus(20))
