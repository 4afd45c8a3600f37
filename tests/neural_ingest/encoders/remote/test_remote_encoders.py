"""Remote encoders against a real embedding server on loopback (all-MiniLM-L6-v2 behind OpenAI and
TEI routes), with faults injected per text: retries, splits, isolation, validation, secrets."""
from __future__ import annotations

import numpy as np
import pytest
from servers.fixtures import FAST_RETRY, embedding_server, make_server  # noqa: F401 - fixtures
from support import cosine

from neural_ingest.config import parse_config
from neural_ingest.encoders import make_encoder
from neural_ingest.encoders.remote import RemoteError, RemoteSetupError
from neural_ingest.transforms.isolate import Failure, isolated

TEXTS = [
    "Volcanoes form where magma reaches the surface.",
    "Sourdough bread rises with wild yeast and lactobacilli.",
    "Binary search halves the interval at every step.",
    "Jazz harmony leans on extended chords.",
    "Tidal energy turns the rise and fall of the sea into power.",
    "Honeybees communicate with a waggle dance.",
    "Roman aqueducts carried water across valleys.",
    "Photosynthesis converts light into chemical energy.",
]


def remote(block: dict):
    cfg = parse_config({"source": {"type": "jsonl", "path": "x.jsonl"}, "encoder": block}).encoders[0]
    enc = make_encoder(cfg)
    return enc, enc.load_model()


def encode_each(enc, loaded, texts):
    """What the encode DoFn does (transforms/isolate.py): the batch, then one by one if the batch raised."""
    out, errors = [], {}
    for got in isolated(texts, lambda part: enc.encode(loaded, list(part))):
        if isinstance(got, Failure):
            out.append(None)
            errors[got.item] = got.error
        else:
            out.extend(got[1])
    return out, errors


# --------------------------------------------------------------------------- fidelity
@pytest.mark.parametrize("kind", ["openai", "tei", "http"])
def test_remote_vectors_equal_local_encoding(kind, embedding_server, st_model):
    s = embedding_server
    block = {
        "openai": {"type": "openai", "url": f"{s.url}/v1", "model": "all-MiniLM-L6-v2"},
        "tei": {"type": "tei", "url": s.url},
        "http": {
            "type": "http",
            "url": f"{s.url}/v1/embeddings",
            "request_body": '{ "input": ${parameters.input}, "model": "${parameters.model}" }',
            "parameters": {"model": "all-MiniLM-L6-v2"},
            "pre_process_function": "connector.pre_process.openai.embedding",
            "post_process_function": "connector.post_process.openai.embedding",
        },
    }[kind]
    enc, loaded = remote({**block, "request_batch_size": 3})
    assert loaded.info.kind == "dense" and loaded.info.dimension == 384  # learnt from the probe
    assert loaded.info.space_type == "cosinesimil"
    got = enc.encode(loaded, TEXTS)
    want = st_model.encode(TEXTS, convert_to_numpy=True)
    assert len(got) == len(TEXTS) and all(v.dtype == np.float32 and v.shape == (384,) for v in got)
    worst = min(cosine(g, w) for g, w in zip(got, want))
    assert worst >= 0.9999, worst
    assert enc.encode_queries(loaded, ["binary search"])[0].shape == (384,)


def test_tei_sparse_maps_tokens_through_the_vocab(embedding_server, minilm_dir):
    enc, loaded = remote({"type": "tei", "url": embedding_server.url, "output": "sparse", "vocab_path": str(minilm_dir)})
    assert loaded.info.kind == "sparse" and loaded.info.dimension is None
    [vec] = enc.encode(loaded, ["honey honey bees"])
    assert vec == {"honey": 1.5, "bees": 1.0}


def test_declared_dimension_must_match_the_service(embedding_server):
    with pytest.raises(RemoteSetupError, match="384 dimensions, expected 512"):
        remote({"type": "tei", "url": embedding_server.url, "dimension": 512})


# --------------------------------------------------------------------------- batching
def test_requests_split_by_count_and_characters(make_server):
    s = make_server()
    enc, loaded = remote({"type": "tei", "url": s.url, "request_batch_size": 3, "max_request_chars": 120, "concurrency": 2})
    s.batch_sizes.clear()
    texts = [f"text {i} " + "x" * 50 for i in range(8)]  # 57-58 chars: two fit under 120
    out = enc.encode(loaded, texts)
    assert len(out) == 8
    assert max(s.batch_sizes) == 2 and sum(s.batch_sizes) == 8
    assert s.max_inflight <= 2 and loaded.model.stats["max_inflight"] <= 2


def test_token_limit_splits_requests(make_server):
    s = make_server()
    enc, loaded = remote({"type": "tei", "url": s.url, "max_request_tokens": 10, "chars_per_token": 4})
    s.batch_sizes.clear()
    enc.encode(loaded, ["a" * 20] * 6)  # 5 tokens each: two per request
    assert s.batch_sizes == [2, 2, 2]


def test_batch_too_large_is_split_and_remembered(make_server):
    s = make_server(max_batch=3)
    enc, loaded = remote({"type": "openai", "url": f"{s.url}/v1", "model": "m", "request_batch_size": 8, "retry": FAST_RETRY})
    out = enc.encode(loaded, TEXTS)
    assert len(out) == 8 and all(v.shape == (384,) for v in out)
    assert s.statuses[413] >= 1 and loaded.model.stats["split_too_large"] >= 1
    s.batch_sizes.clear()
    s.statuses.clear()
    enc.encode(loaded, TEXTS)  # planned under the refused size now
    assert s.statuses[413] == 0 and max(s.batch_sizes) <= 3


# --------------------------------------------------------------------------- retries and isolation
def test_429_with_retry_after_and_transient_500_are_retried(make_server, st_model):
    s = make_server(retry_after="0.05")
    enc, loaded = remote({"type": "tei", "url": s.url, "retry": {**FAST_RETRY, "attempts": 5}})
    texts = ["first <<429:2>>", "second <<500:1>>", "third"]
    out = enc.encode(loaded, texts)
    assert s.statuses[429] == 2 and s.statuses[500] == 1
    assert loaded.model.stats["retries"] == 3 and loaded.model.stats["bisected"] == 0
    worst = min(cosine(g, w) for g, w in zip(out, st_model.encode(texts)))
    assert worst >= 0.9999


def test_permanent_failures_fail_alone_with_status_and_reason(make_server):
    s = make_server(slow_seconds=1.5)
    enc, loaded = remote({"type": "openai", "url": f"{s.url}/v1", "model": "m", "timeout": 0.5, "retry": FAST_RETRY})
    bad = {
        "b500 <<500>>": ("http_500", 500, "internal error while embedding"),
        "b400 <<400>>": ("http_400", 400, "rejected by the test server"),
        "bslow <<slow>>": ("timeout", None, "no response within 0.5s"),
        "btrunc <<truncate>>": ("bad_response", 200, "malformed JSON"),
        "bdim <<dim>>": ("invalid_vector", None, "383 dimensions, expected 384"),
        "bnan <<nan>>": ("invalid_vector", None, "NaN"),
    }
    texts = TEXTS[:4] + list(bad) + TEXTS[4:]
    requests_before = s.requests
    out, errors = encode_each(enc, loaded, texts)
    assert set(errors) == set(bad)
    for text, (reason, status, words) in bad.items():
        e = errors[text]
        assert isinstance(e, RemoteError) and e.reason == reason and e.status == status, (text, e.reason, e.status, e)
        assert words in str(e)
    assert errors["b500 <<500>>"].attempts == FAST_RETRY["attempts"]
    good = [v for t, v in zip(texts, out) if t not in bad]
    assert len(good) == len(TEXTS) and all(v.shape == (384,) for v in good)
    # The one-by-one pass was answered from the kept results: no request per text after the batch.
    assert len(loaded.model.memo) == 0
    assert s.requests - requests_before < 80


def test_wrong_count_is_an_error_not_a_shifted_vector(make_server):
    s = make_server()
    enc, loaded = remote({"type": "tei", "url": s.url, "retry": FAST_RETRY})
    out, errors = encode_each(enc, loaded, ["one", "two <<count>>", "three"])
    assert list(errors) == ["two <<count>>"]
    assert errors["two <<count>>"].reason == "bad_response"
    assert "returned 0 embeddings for 1 texts" in str(errors["two <<count>>"])
    assert out[0] is not None and out[2] is not None


def test_exhausted_429_is_not_bisected(make_server):
    s = make_server(retry_after="0.01")
    _enc, loaded = remote({"type": "tei", "url": s.url, "retry": {**FAST_RETRY, "attempts": 2}})
    s.requests = 0
    results = loaded.model.encode_all(["a <<429:100>>", "b", "c"])
    assert all(isinstance(r, RemoteError) and r.reason == "http_429" and r.status == 429 for r in results)
    assert s.requests == 2  # retried, then given up for the batch; a rate limit is no bad input to isolate


def test_unreachable_service_fails_the_probe_clearly():
    with pytest.raises(RemoteSetupError, match="connection failed"):
        remote({"type": "tei", "url": "http://127.0.0.1:9", "retry": {**FAST_RETRY, "attempts": 1}})


def test_https_to_a_plain_http_service_says_so(make_server):
    s = make_server()
    url = s.url.replace("http://", "https://u:pw-77@")
    with pytest.raises(RemoteSetupError) as e:
        remote({"type": "tei", "url": url, "retry": {**FAST_RETRY, "attempts": 1}})
    msg = str(e.value)
    assert msg.startswith(f"tei encoder url: https://u:***@{s.url[len('http://') :]} speaks plain HTTP, not TLS"), msg
    assert "pw-77" not in msg


def test_missing_ca_certs_is_named(tmp_path):
    with pytest.raises(RemoteSetupError, match=f"^tei encoder ca_certs: {tmp_path}/ca.pem does not exist"):
        remote({"type": "tei", "url": "https://127.0.0.1:9", "ca_certs": str(tmp_path / "ca.pem")})


# --------------------------------------------------------------------------- rate limit
def test_rate_limit_is_shared_and_enforced(make_server):
    s = make_server()
    enc, loaded = remote(
        {
            "type": "tei",
            "url": s.url,
            "request_batch_size": 1,
            "concurrency": 4,
            "rate_limit": {"requests_per_minute": 120, "key": "issue5-rl-test"},
        }
    )
    lim = loaded.model.limiter
    assert lim.requests.rate == 2.0 and lim.requests.capacity == 2.0  # 2 per second, burst of 2
    before = lim.waited
    enc.encode(loaded, TEXTS[:5])  # 5 one-text requests from 4 threads, right after the probe
    assert lim.waited > before


# --------------------------------------------------------------------------- secrets
def test_api_key_is_sent_and_never_shown(make_server):
    key = "sk-issue5-DO-NOT-LEAK-42"
    s = make_server(api_key=key)
    enc, loaded = remote({"type": "openai", "url": f"{s.url}/v1", "model": "m", "api_key": key, "retry": FAST_RETRY})
    out, errors = encode_each(enc, loaded, ["fine", "leaky <<echo-auth>>"])
    assert out[0] is not None
    msg = str(errors["leaky <<echo-auth>>"])
    assert "you sent Authorization" in msg and key not in msg
    assert key not in repr(loaded.info) and key not in str(loaded.info.as_dict())
    assert key not in enc.share_key()

    with pytest.raises(RemoteSetupError) as e:
        remote({"type": "openai", "url": f"{s.url}/v1", "model": "m", "api_key": "sk-wrong-key-777", "retry": FAST_RETRY})
    assert "HTTP 401" in str(e.value) and "sk-wrong-key-777" not in str(e.value)
