"""Remote encoder building blocks without a server: limits, paths, redaction, parsing, config."""
from __future__ import annotations

import json

import pytest

from neural_ingest.config import ConfigError, parse_config
from neural_ingest.encoders.remote.adapters import HttpTemplateAdapter, OpenAIAdapter, OpenSearchMLAdapter, sparse_from_pairs
from neural_ingest.encoders.remote.client import _Wait, error_text, estimate_tokens, parse_retry_after
from neural_ingest.encoders.remote.jsonpath import PathError, evaluate
from neural_ingest.encoders.remote.ratelimit import RateLimiter, shared_limiter
from neural_ingest.encoders.remote.redact import Redactor, safe_url, scrub_auth_headers


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def enc_cfg(block):
    return parse_config({"source": {"type": "jsonl", "path": "x.jsonl"}, "encoder": block}).encoders[0]


# --------------------------------------------------------------------------- rate limits
def test_requests_per_minute_spaces_requests():
    clock = FakeClock()
    lim = RateLimiter(requests_per_minute=60, clock=clock, sleep=clock.sleep)
    waits = [lim.acquire() for _ in range(5)]
    assert waits[0] == 0
    assert sum(waits) == pytest.approx(4.0)  # one per second after the first


def test_tokens_per_minute_admits_big_request_then_repays_debt():
    clock = FakeClock()
    lim = RateLimiter(tokens_per_minute=600, clock=clock, sleep=clock.sleep)  # 10 tokens/s, burst 10
    assert lim.acquire(25) == 0  # larger than the bucket: admitted when full, leaves a debt of 15
    assert lim.acquire(5) == pytest.approx(2.0)  # (5 + 15) / 10


def test_pause_holds_every_caller():
    clock = FakeClock()
    lim = RateLimiter(clock=clock, sleep=clock.sleep)
    lim.pause(3.0)
    assert lim.acquire() == pytest.approx(3.0)
    assert lim.acquire() == 0


def test_shared_limiter_is_one_per_key_and_only_tightens():
    a = shared_limiter("issue5-test-key", 120, None)
    b = shared_limiter("issue5-test-key", 60, None)
    assert a is b and a.requests.rate == pytest.approx(1.0)
    shared_limiter("issue5-test-key", 600, None)
    assert a.requests.rate == pytest.approx(1.0)
    assert shared_limiter("issue5-other-key", None, None) is not a


# --------------------------------------------------------------------------- retries
def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None


def test_wait_uses_retry_after_capped_else_backoff():
    class State:
        def __init__(self, exc, n=1):
            self.attempt_number = n
            self.outcome = type("O", (), {"exception": lambda _s: exc})()

    w = _Wait(initial=0.5, maximum=4, jitter=0, max_retry_after=10)
    e = type("E", (Exception,), {})()
    e.retry_after = 3.0
    assert w(State(e)) == 3.0
    e.retry_after = 99.0
    assert w(State(e)) == 10.0
    plain = RuntimeError()
    assert w(State(plain, 1)) == pytest.approx(0.5) and w(State(plain, 3)) == pytest.approx(2.0)
    assert w(State(plain, 10)) == pytest.approx(4.0)


def test_error_text_from_common_shapes():
    assert error_text('{"error": {"message": "bad key", "type": "x"}}') == "bad key"
    assert error_text('{"error": "Input validation error", "error_type": "Validation"}') == "Input validation error"
    os_err = {"error": {"root_cause": [{"reason": "inner"}], "type": "status_exception", "reason": "outer"}, "status": 500}
    assert error_text(json.dumps(os_err)) == "outer (inner)"
    assert error_text("<html>gateway</html>") == "<html>gateway</html>"


def test_token_estimate():
    assert estimate_tokens("abcd" * 10, 4.0) == 10
    assert estimate_tokens("a b c d e f", 4.0) == 6  # at least the word count


# --------------------------------------------------------------------------- secrets
def test_redactor_masks_plain_quoted_and_basic_auth_forms():
    r = Redactor(["sk-live-abc/123"])
    r.add_basic_auth("admin", "pw-s3cret")
    msg = "key sk-live-abc/123 in url ?k=sk-live-abc%2F123 basic YWRtaW46cHctczNjcmV0 and pw-s3cret"
    out = r(msg)
    for leaked in ("sk-live-abc/123", "sk-live-abc%2F123", "YWRtaW46cHctczNjcmV0", "pw-s3cret"):
        assert leaked not in out
    assert safe_url("https://u:p@host:9200/x") == "https://u:***@host:9200/x"
    assert "tok123" not in scrub_auth_headers("{'Authorization': 'Bearer tok123'}")


# --------------------------------------------------------------------------- response paths
def test_jsonpath_subset():
    doc = {"data": [{"embedding": [1, 2]}, {"embedding": [3, 4]}], "m": {"k": [[5]]}}
    assert evaluate("$.data[*].embedding", doc) == [[1, 2], [3, 4]]
    assert evaluate("$.data[1].embedding", doc) == [3, 4]
    assert evaluate("$['m'].k", doc) == [[5]]
    assert evaluate("$", [[1.0]]) == [[1.0]]
    with pytest.raises(PathError, match=r"\$\.data\[\*\]\.vector: no such key"):
        evaluate("$.data[*].vector", doc)
    with pytest.raises(PathError, match="must start with"):
        evaluate("data", doc)


# --------------------------------------------------------------------------- adapters
def test_opensearch_ml_parses_local_remote_and_sparse_shapes():
    dense = enc_cfg({"type": "opensearch_ml", "model_id": "m1", "dimension": 2})
    a = OpenSearchMLAdapter(dense, Redactor())
    local = {"inference_results": [
        {"output": [{"name": "sentence_embedding", "data_type": "FLOAT32", "shape": [2], "data": [0.1, 0.2]}]},
        {"output": [{"name": "sentence_embedding", "data_type": "FLOAT32", "shape": [2], "data": [0.3, 0.4]}]},
    ]}
    assert a.parse(local, 2) == [[0.1, 0.2], [0.3, 0.4]]
    remote = {"inference_results": [{"output": [
        {"name": "sentence_embedding", "data": [0.1, 0.2]}, {"name": "sentence_embedding", "data": [0.3, 0.4]}],
        "status_code": 200}]}
    assert a.parse(remote, 2) == [[0.1, 0.2], [0.3, 0.4]]
    raw_openai = {"inference_results": [{"output": [{"name": "response", "dataAsMap": {
        "data": [{"embedding": [1, 2]}, {"embedding": [3, 4]}]}}]}]}
    assert a.parse(raw_openai, 2) == [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match="status_code 500"):
        a.parse({"inference_results": [{"output": [], "status_code": 500}]}, 1)

    sparse = OpenSearchMLAdapter(enc_cfg({"type": "opensearch_ml", "model_id": "m2", "output": "sparse"}), Redactor())
    resp = {"inference_results": [
        {"output": [{"name": "output", "dataAsMap": {"response": [{"hello": 1.5, "world": 0.5}]}}]},
        {"output": [{"name": "output", "dataAsMap": {"response": [{"bye": 2.0}]}}]},
    ]}
    assert sparse.parse(resp, 2) == [{"hello": 1.5, "world": 0.5}, {"bye": 2.0}]


def test_opensearch_ml_request_shape_by_algorithm():
    a = OpenSearchMLAdapter(enc_cfg({"type": "opensearch_ml", "url": "http://h:9200", "model_id": "m1"}), Redactor())
    a.algorithm = "REMOTE"
    url, body, _ = a.request(["x", "y"])
    assert url == "http://h:9200/_plugins/_ml/models/m1/_predict" and body == {"parameters": {"input": ["x", "y"]}}
    a.algorithm = "TEXT_EMBEDDING"
    _, body, _ = a.request(["x"])
    assert body["text_docs"] == ["x"] and body["target_response"] == ["sentence_embedding"]


def test_openai_orders_by_index_and_rejects_gaps():
    a = OpenAIAdapter(enc_cfg({"type": "openai", "model": "m", "dimension": 2}), Redactor())
    payload = {"data": [{"index": 1, "embedding": [3, 4]}, {"index": 0, "embedding": [1, 2]}]}
    assert a.parse(payload, 2) == [[1, 2], [3, 4]]
    with pytest.raises(ValueError, match=r"not 0..1"):
        a.parse({"data": [{"index": 0, "embedding": [1]}, {"index": 5, "embedding": [2]}]}, 2)


def test_http_template_from_a_connector_blueprint():
    cfg = enc_cfg({
        "type": "http",
        "url": "http://127.0.0.1:1/v1/embeddings",
        "headers": {"Authorization": "Bearer ${credential.openAI_key}"},
        "credential": {"openAI_key": "sk-from-env-xyz"},
        "parameters": {"model": "text-embedding-3-small"},
        "request_body": '{ "input": ${parameters.input}, "model": "${parameters.model}" }',
        "pre_process_function": "connector.pre_process.openai.embedding",
        "post_process_function": "connector.post_process.openai.embedding",
        "dimension": 2,
    })
    a = HttpTemplateAdapter(cfg, Redactor())
    _url, body, headers = a.request(['say "hi"', "two"])
    assert body == {"input": ['say "hi"', "two"], "model": "text-embedding-3-small"}
    assert headers["Authorization"] == "Bearer sk-from-env-xyz"
    assert a.parse({"data": [{"embedding": [1, 2]}, {"embedding": [3, 4]}]}, 2) == [[1, 2], [3, 4]]
    assert "sk-from-env-xyz" not in repr(cfg)

    bedrock = HttpTemplateAdapter(enc_cfg({
        "type": "http", "url": "http://x", "request_body": '{"inputText": "${parameters.inputText}"}',
        "pre_process_function": "connector.pre_process.bedrock.embedding",
        "post_process_function": "connector.post_process.bedrock.embedding", "dimension": 2,
    }), Redactor())
    assert bedrock.max_batch() == 1
    assert bedrock.request(['a "quoted" text'])[1] == {"inputText": 'a "quoted" text'}
    assert bedrock.parse({"embedding": [1, 2]}, 1) == [[1, 2]]


def test_http_template_as_mapping_and_sparse_pairs():
    a = HttpTemplateAdapter(enc_cfg({
        "type": "http", "url": "http://x/embed_sparse", "output": "sparse",
        "request_body": {"inputs": "${parameters.input}", "truncate": True}, "response_path": "$",
    }), Redactor())
    assert a.request(["a", "b"])[1] == {"inputs": ["a", "b"], "truncate": True}
    assert a.parse([[{"index": 7, "value": 0.5}], [{"index": 9, "value": 1.0}]], 2) == [{"7": 0.5}, {"9": 1.0}]
    assert sparse_from_pairs([{"index": 1, "value": 2.0}], {1: "tok"}) == {"tok": 2.0}


# --------------------------------------------------------------------------- config
def test_config_rules():
    with pytest.raises(ConfigError, match="dimension is required when probe is false"):
        parse_config({"source": {"type": "jsonl", "path": "x"}, "encoder": {"type": "openai", "model": "m", "probe": False}})
    with pytest.raises(ConfigError, match="response_path"):
        parse_config(
            {"source": {"type": "jsonl", "path": "x"}, "encoder": {"type": "http", "url": "http://x", "request_body": "{}"}}
        )
    with pytest.raises(ConfigError, match="pre_process_function"):
        parse_config(
            {
                "source": {"type": "jsonl", "path": "x"},
                "encoder": {
                    "type": "http",
                    "url": "http://x",
                    "request_body": "{}",
                    "response_path": "$",
                    "pre_process_function": "nope",
                },
            }
        )
    sparse = enc_cfg({"type": "tei", "url": "http://x", "output": "sparse"})
    assert sparse.kind == "sparse"
    from neural_ingest.config import encoder_field

    assert encoder_field(sparse) == "sparse_embedding"
    with pytest.raises(ConfigError, match="output"):
        parse_config({"source": {"type": "jsonl", "path": "x"}, "encoder": {"type": "openai", "model": "m", "output": "sparse"}})


def test_api_key_from_env_is_secret(tmp_path, monkeypatch):
    from neural_ingest.config import load_config

    monkeypatch.setenv("ISSUE5_KEY", "sk-env-0123456789")
    p = tmp_path / "c.yaml"
    p.write_text("source: {type: jsonl, path: x.jsonl}\nencoder: {type: openai, model: m, api_key: '${ISSUE5_KEY}'}\n")
    cfg = load_config(p)
    assert cfg.encoders[0].api_key.get_secret_value() == "sk-env-0123456789"
    assert "sk-env-0123456789" not in repr(cfg) and "sk-env-0123456789" not in cfg.model_dump_json()


def test_keys_in_the_url_are_secrets_too():
    from neural_ingest.encoders.remote.encoder import redactor_for

    cfg = enc_cfg(
        {"type": "openai", "model": "m", "url": "https://u:pw-in-url-1@gw.example/v1?api-key=az-key-9876&deployment=d1"}
    )
    r = redactor_for(cfg)
    out = r(f"failed: {cfg.url}")
    assert "az-key-9876" not in out and "pw-in-url-1" not in out and "deployment=d1" in out
