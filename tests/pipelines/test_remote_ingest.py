"""Remote encoders end to end: a real embedding server on loopback (all-MiniLM-L6-v2), the real
OpenSearch (k-NN + ML Commons + neural-search), faults injected per record, and a CLI run with an
API key that must not show anywhere."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from opensearchpy import OpenSearch
from servers.embedding_server import EmbeddingServer, sentence_transformer_encoder
from servers.fixtures import FAST_RETRY, embedding_server, make_server  # noqa: F401 - fixtures
from support import cosine, require_plugins, synthetic_docs, write_jsonl

from neural_ingest.config import parse_config
from neural_ingest.ml_commons import MLCommons
from neural_ingest.pipelines.ingest import run_ingest


def pipeline_config(tmp: Path, docs: list[dict[str, Any]], encoder: dict[str, Any], sink: dict[str, Any]):
    src = write_jsonl(tmp / "docs.jsonl", docs)
    return parse_config({
        # Fault runs dead-letter by design: a budget of half the records keeps the run "succeeded".
        "run": {"name": "remote-test", "progress_every_seconds": 5, "max_failed_ratio": 0.5},
        "source": {"type": "jsonl", "path": str(src), "text_fields": ["title", "body"], "metadata_fields": ["topic", "year"]},
        "encoder": encoder,
        "sink": sink,
        "dead_letter": {"path": str(tmp / "dlq")},
    })


def os_sink(url: str, index: str) -> dict[str, Any]:
    return {"type": "opensearch", "hosts": [url], "index": index, "knn": {"engine": "lucene"}}


def stored(os_client, index: str) -> dict[str, dict[str, Any]]:
    os_client.indices.refresh(index=index)
    res = os_client.search(index=index, body={"size": 1000, "query": {"match_all": {}}})
    return {h["_id"]: h["_source"] for h in res["hits"]["hits"]}


def dead_letters(summary) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted(Path(summary.dead_letter_path).glob("dead-letters-*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- OpenAI-style server
def test_openai_encoder_into_opensearch_equals_local(embedding_server, os_client, index_name, st_model, tmp_path):
    docs = synthetic_docs(20, prefix="oa")
    cfg = pipeline_config(tmp_path, docs, {
        "type": "openai", "url": f"{embedding_server.url}/v1", "model": "all-MiniLM-L6-v2",
        "batch_size": 16, "request_batch_size": 5, "concurrency": 3,
    }, os_sink(os.environ["NEURAL_INGEST_OPENSEARCH_URL"], index_name))
    summary = run_ingest(cfg)
    assert summary.read == 20 and summary.indexed == 20 and summary.failed == 0 and summary.reconciles
    assert summary.models["embedding"]["dimension"] == 384  # from the probe; the mapping was made with it
    m = os_client.indices.get_mapping(index=index_name)[index_name]["mappings"]["properties"]["embedding"]
    assert m["type"] == "knn_vector" and m["dimension"] == 384 and m["method"]["space_type"] == "cosinesimil"
    got = stored(os_client, index_name)
    ids = [d["id"] for d in docs]
    want = st_model.encode([got[i]["text"] for i in ids], convert_to_numpy=True)
    worst = min(cosine(got[i]["embedding"], w) for i, w in zip(ids, want))
    assert worst >= 0.9999, worst


# --------------------------------------------------------------------------- faults
FAULTS = {  # doc index -> (marker, expected fate: None = indexed after retries, else (reason, status))
    2: ("<<429:2>>", None),
    4: ("<<500:1>>", None),
    6: ("<<truncate:1>>", None),
    8: ("<<500>>", ("http_500", 500)),
    10: ("<<slow>>", ("timeout", None)),
    12: ("<<truncate>>", ("bad_response", 200)),
    14: ("<<dim>>", ("invalid_vector", None)),
    16: ("<<nan>>", ("invalid_vector", None)),
    18: ("<<400>>", ("http_400", 400)),
    20: ("<<count>>", ("bad_response", 200)),
}


def test_faulty_service_every_record_indexed_or_dead_lettered(make_server, os_client, index_name, tmp_path):
    server = make_server(retry_after="0.05", slow_seconds=1.5)
    docs = synthetic_docs(24, prefix="ft")
    for i, (marker, _) in FAULTS.items():
        docs[i]["body"] += f" {marker}"
    cfg = pipeline_config(tmp_path, docs, {
        "type": "tei", "url": server.url, "batch_size": 24, "request_batch_size": 8, "concurrency": 2,
        "timeout": 0.5, "retry": {**FAST_RETRY, "attempts": 4},
    }, os_sink(os.environ["NEURAL_INGEST_OPENSEARCH_URL"], index_name))
    summary = run_ingest(cfg)

    dead_expected = {docs[i]["id"]: fate for i, (_, fate) in FAULTS.items() if fate}
    assert summary.read == 24
    assert summary.failed == len(dead_expected) and summary.indexed == 24 - len(dead_expected)
    assert summary.reconciles and summary.status == "succeeded"
    want_reasons: dict[str, int] = {}
    for reason, _ in dead_expected.values():
        want_reasons[f"encode.{reason}"] = want_reasons.get(f"encode.{reason}", 0) + 1
    assert summary.failed_by_reason == want_reasons

    letters = {d["doc_id"]: d for d in dead_letters(summary)}
    assert set(letters) == set(dead_expected)
    for doc_id, (reason, status) in dead_expected.items():
        d = letters[doc_id]
        assert d["stage"] == "encode" and d["error_type"] == reason and d["status"] == status, d
        assert d["message"] and d["record"]["id"] == doc_id
    assert letters[docs[8]["id"]]["attempts"] == 4
    assert "no response within 0.5s" in letters[docs[10]["id"]]["message"]
    assert "malformed JSON" in letters[docs[12]["id"]]["message"]
    assert "383 dimensions, expected 384" in letters[docs[14]["id"]]["message"]

    indexed = set(stored(os_client, index_name))
    assert indexed == {d["id"] for d in docs} - set(dead_expected)
    assert server.statuses[429] >= 2 and server.statuses[500] >= 1


# --------------------------------------------------------------------------- ML Commons
ML = "/_plugins/_ml"


def _os(method: str, url: str, body: Any = None, ok=(200, 201)) -> dict[str, Any]:
    r = requests.request(method, url, json=body, timeout=60)
    if r.status_code not in ok:
        raise AssertionError(f"{method} {url}: HTTP {r.status_code}: {r.text[:500]}")
    return r.json() if r.content else {}


@pytest.fixture(scope="module")
def ml_remote_model(opensearch_url, os_client, st_model):
    """A connector to an OpenAI-style loopback server (with an API key held by the connector), a remote
    model registered with it and deployed; everything removed afterwards."""
    require_plugins(os_client, "opensearch-ml")  # a module fixture: set up before the needs_plugins marker's check
    key = "sk-mlcommons-loopback-" + uuid.uuid4().hex[:8]
    server = EmbeddingServer(sentence_transformer_encoder(st_model), api_key=key).start()
    base = opensearch_url
    # What scripts/opensearch-local.sh sets; repeated so any test cluster lets ML Commons call loopback.
    _os("PUT", f"{base}/_cluster/settings", {"persistent": {
        "plugins.ml_commons.only_run_on_ml_node": False,
        "plugins.ml_commons.connector.private_ip_enabled": True,
        "plugins.ml_commons.trusted_connector_endpoints_regex": [
            r"^https?://127\.0\.0\.1.*", r"^https?://localhost.*", r"^https?://\[::1\].*"],
    }})
    connector = _os("POST", f"{base}{ML}/connectors/_create", {
        "name": f"issue5-loopback-{uuid.uuid4().hex[:6]}",
        "description": "OpenAI-style embeddings on loopback (all-MiniLM-L6-v2)",
        "version": 1,
        "protocol": "http",
        "parameters": {"model": "all-MiniLM-L6-v2"},
        "credential": {"openAI_key": key},
        "actions": [{
            "action_type": "predict",
            "method": "POST",
            "url": f"{server.url}/v1/embeddings",
            "headers": {"Authorization": "Bearer ${credential.openAI_key}", "content-type": "application/json"},
            "request_body": '{ "input": ${parameters.input}, "model": "${parameters.model}" }',
            "pre_process_function": "connector.pre_process.openai.embedding",
            "post_process_function": "connector.post_process.openai.embedding",
        }],
    })["connector_id"]
    reg = _os("POST", f"{base}{ML}/models/_register", {
        "name": f"issue5-minilm-{uuid.uuid4().hex[:6]}", "function_name": "remote",
        "description": "loopback all-MiniLM-L6-v2", "connector_id": connector,
    })
    # The product's waits (deadlines, not a number of polls): the deploy task completes before the model's
    # state says DEPLOYED, so deploy() waits for the state this test needs.
    ml = MLCommons(OpenSearch(hosts=[base], timeout=60), poll_interval=0.5, timeout=600)
    model_id = reg.get("model_id") or ml.wait_task(reg["task_id"], what="registering the loopback model")["model_id"]
    meta = ml.deploy(model_id, name="loopback model")
    assert meta["algorithm"] == "REMOTE" and meta["model_state"] == "DEPLOYED", meta
    try:
        yield {"model_id": model_id, "connector_id": connector, "server": server, "key": key}
    finally:
        _os("POST", f"{base}{ML}/models/{model_id}/_undeploy", ok=(200, 404))
        _os("DELETE", f"{base}{ML}/models/{model_id}", ok=(200, 404))
        if meta.get("model_group_id"):
            _os("DELETE", f"{base}{ML}/model_groups/{meta['model_group_id']}", ok=(200, 404))
        _os("DELETE", f"{base}{ML}/connectors/{connector}", ok=(200, 404))
        server.stop()


def test_ml_commons_remote_model_encodes_like_local(ml_remote_model, opensearch_url, os_client, index_name, st_model, tmp_path):
    mid = ml_remote_model["model_id"]
    docs = synthetic_docs(16, prefix="ml")
    cfg = pipeline_config(tmp_path, docs, {
        "type": "opensearch_ml", "url": opensearch_url, "model_id": mid, "batch_size": 16, "request_batch_size": 6,
    }, os_sink(opensearch_url, index_name))
    summary = run_ingest(cfg)
    assert summary.indexed == 16 and summary.failed == 0 and summary.reconciles
    info = summary.models["embedding"]
    assert info["dimension"] == 384 and info["extra"]["algorithm"] == "REMOTE" and info["extra"]["model_id"] == mid
    assert ml_remote_model["key"] not in json.dumps(summary.to_dict())
    # ML Commons was the one calling the loopback server, in batches (one _predict per request).
    assert max(ml_remote_model["server"].batch_sizes) == 6

    got = stored(os_client, index_name)
    ids = [d["id"] for d in docs]
    want = st_model.encode([got[i]["text"] for i in ids], convert_to_numpy=True)
    worst = min(cosine(got[i]["embedding"], w) for i, w in zip(ids, want))
    assert worst >= 0.9999, worst

    # The same model id serves neural queries on the index: a document's own text finds it first.
    d = docs[3]
    res = os_client.search(index=index_name, body={"size": 1, "_source": False, "query": {
        "neural": {"embedding": {"query_text": got[d["id"]]["text"], "model_id": mid, "k": 100}}}})  # k: HNSW window
    assert res["hits"]["hits"][0]["_id"] == d["id"]


@pytest.mark.needs_plugins("opensearch-ml")
def test_ml_commons_errors_name_the_fix(opensearch_url):
    from neural_ingest.encoders import make_encoder
    from neural_ingest.encoders.remote import RemoteSetupError

    cfg = parse_config({"source": {"type": "jsonl", "path": "x"}, "encoder": {
        "type": "opensearch_ml", "url": opensearch_url, "model_id": "no-such-model-issue5"}}).encoders[0]
    with pytest.raises(RemoteSetupError, match="no model 'no-such-model-issue5'"):
        make_encoder(cfg).load_model()


# --------------------------------------------------------------------------- secrets in a CLI run
def test_cli_run_with_api_key_never_shows_it(make_server, tmp_path):
    key = "sk-cli-" + uuid.uuid4().hex
    server = make_server(api_key=key)
    docs = synthetic_docs(10, prefix="key")
    docs[3]["body"] += " <<echo-auth>>"  # the service echoes the Authorization header in its error
    docs[6]["body"] += " <<500>>"
    write_jsonl(tmp_path / "docs.jsonl", docs)
    config = tmp_path / "remote.yaml"
    config.write_text(f"""
run: {{name: secret-check, progress_every_seconds: 1, max_failed_ratio: 0.5}}
source: {{type: jsonl, path: {tmp_path / 'docs.jsonl'}, text_fields: [title, body], metadata_fields: [topic]}}
encoder:
  type: openai
  url: {server.url}/v1
  model: all-MiniLM-L6-v2
  api_key: ${{ISSUE5_TEST_API_KEY}}
  headers: {{X-Api-Key: "${{ISSUE5_TEST_API_KEY}}"}}
  retry: {{attempts: 2, initial_backoff: 0.02, max_backoff: 0.05, jitter: 0.01}}
sink: {{type: parquet, path: {tmp_path / 'dataset'}}}
dead_letter: {{path: {tmp_path / 'dlq'}}}
""")
    exe = Path(sys.executable).parent / "neural-ingest"
    env = {**os.environ, "ISSUE5_TEST_API_KEY": key, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([str(exe), "-v", "run", str(config), "--summary", str(tmp_path / "summary.json")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["read"] == 10 and summary["indexed"] == 8 and summary["failed"] == 2 and summary["reconciles"]
    letters = [json.loads(x) for p in (tmp_path / "dlq").rglob("*.jsonl") for x in p.read_text().splitlines() if x]
    assert {d["error_type"] for d in letters} == {"http_400", "http_500"}
    assert any("you sent Authorization" in d["message"] for d in letters)  # the echo happened, masked

    outputs = {"stdout": r.stdout, "stderr": r.stderr}
    for p in tmp_path.rglob("*"):
        if p.is_file() and p.name != "remote.yaml":
            outputs[str(p)] = p.read_bytes().decode("utf-8", errors="replace")
    assert len(outputs) > 4
    leaks = [name for name, text in outputs.items() if key in text or key[3:] in text]
    assert not leaks, leaks
