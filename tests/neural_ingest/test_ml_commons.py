"""Registering the pipeline's models in ML Commons: request bodies, the task API, and the real cluster.

The cluster tests run against the real OpenSearch with ml-commons (scripts/opensearch-local.sh). Such a
cluster normally cannot download from artifacts.opensearch.org or publish.djl.ai; the tests assert what
the cluster actually does (and would check the success path where it can).
"""
from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from support import require_plugins

from neural_ingest.catalogue import get
from neural_ingest.ml_commons import (
    CHUNK_SIZE,
    MLCommons,
    MLCommonsError,
    ModelRegistry,
    RegisteredModel,
    explain,
    model_config,
    plan_models,
    register_body,
    register_meta_body,
    sha256_file,
)

MINILM = get("all-MiniLM-L6-v2")
DOC_V1 = get("opensearch-neural-sparse-encoding-doc-v1")
TOKENIZER = get("opensearch-neural-sparse-tokenizer-v1")
ML = "/_plugins/_ml"


# ============================================================================= request bodies (no cluster)
def test_dense_body_is_name_version_format_as_the_page_prescribes():
    assert register_body(MINILM) == {
        "name": "huggingface/sentence-transformers/all-MiniLM-L6-v2",
        "version": "1.0.1",
        "model_format": "TORCH_SCRIPT",
    }
    assert register_body(MINILM, "onnx")["model_format"] == "ONNX"


def test_sparse_body_is_the_full_body_with_the_models_own_url_and_hash():
    body = register_body(DOC_V1)
    assert body["function_name"] == "SPARSE_ENCODING"
    assert body["url"] == DOC_V1.format().model_url and "encoding-doc-v1" in body["url"]
    assert body["model_content_hash_value"] == "9a41adb6c13cf49a7e3eff91aef62ed5035487a6eca99c996156d25be2800a9a"
    assert {"name", "version", "description", "model_format"} <= set(body)
    # encoding-v1 gets its own url (not doc-v1's, as the page's example has it) and no borrowed hash.
    v1 = register_body(get("opensearch-neural-sparse-encoding-v1"))
    assert v1["url"].endswith("opensearch-neural-sparse-encoding-v1-1.0.0-torch_script.zip")
    assert "model_content_hash_value" not in v1
    assert register_body(TOKENIZER)["function_name"] == "SPARSE_TOKENIZE"
    with pytest.raises(ValueError, match="not ONNX"):
        register_body(DOC_V1, "ONNX")


def test_register_meta_body_counts_10mb_chunks_and_hashes(tmp_path):
    zip_path = tmp_path / "model.zip"
    zip_path.write_bytes(b"x" * (CHUNK_SIZE + 1))
    body = register_meta_body(MINILM, zip_path)
    assert body["total_chunks"] == 2 and body["model_content_size_in_bytes"] == CHUNK_SIZE + 1
    assert body["model_content_hash_value"] == sha256_file(zip_path)
    assert len(body["model_content_hash_value"]) == 64
    assert body["model_config"] == {
        "model_type": "bert",
        "embedding_dimension": 384,
        "framework_type": "sentence_transformers",
        "pooling_mode": "MEAN",
        "normalize_result": True,
        "model_max_length": 256,
    }
    assert model_config(get("multi-qa-mpnet-base-dot-v1"))["pooling_mode"] == "CLS"
    assert model_config(get("multi-qa-mpnet-base-dot-v1"))["normalize_result"] is False


def test_plan_adds_the_query_tokenizer_for_document_only_models():
    from neural_ingest.config import NeuralSparseEncoderConfig, SentenceTransformersEncoderConfig, encoder_field

    encs = [
        SentenceTransformersEncoderConfig(model="all-MiniLM-L6-v2"),
        NeuralSparseEncoderConfig(model="opensearch-neural-sparse-encoding-doc-v1"),
    ]
    planned = {p.entry.name: p for p in plan_models(encs, encoder_field)}
    assert list(planned) == [MINILM.name, DOC_V1.name, TOKENIZER.name]
    assert planned[MINILM.name].query_for == ["embedding"]
    assert planned[DOC_V1.name].fields == ["sparse_embedding"] and planned[DOC_V1.name].query_for == []
    assert planned[TOKENIZER.name].query_for == ["sparse_embedding"] and planned[TOKENIZER.name].fields == []
    with pytest.raises(MLCommonsError, match="not in the catalogue"):
        plan_models([SentenceTransformersEncoderConfig(model="/models/my-own")], encoder_field)


def test_explain_names_the_cause_and_the_fix():
    url = MINILM.format().model_url
    assert "--artifact" in explain("artifacts.opensearch.org", url=url)
    assert "reindex" in explain("failed to find action [org.opensearch.index.reindex.DeleteByQueryAction@1] to execute", url=url)
    assert "PyTorch native library" in explain('{"n1":"publish.djl.ai"}')
    assert "allow_registering_model_via_local_file=true" in explain(
        "needs to enable allow_registering_model_via_local_file settings"
    )
    assert explain("something else") == "something else"


def test_registry_keys_by_cluster_and_name(tmp_path):
    reg = ModelRegistry(tmp_path / "s" / "models.json")
    rec = RegisteredModel(
        name=MINILM.name,
        model_id="abc",
        state="DEPLOYED",
        function_name="TEXT_EMBEDDING",
        version="1.0.1",
        model_format="TORCH_SCRIPT",
        source="url",
        cluster="http://localhost:9200/",
    )
    reg.put(rec)
    assert reg.model_id("http://localhost", MINILM.name) == "abc"  # same cluster, spelled differently
    assert reg.model_id("http://localhost:9201", MINILM.name) is None
    data = json.loads((tmp_path / "s" / "models.json").read_text())
    assert data["http://localhost:9200"][MINILM.name]["model_id"] == "abc"


def test_artifact_option_needs_a_name_when_several_models_are_registered():
    from neural_ingest.catalogue import lookup
    from neural_ingest.cli.models import _artifact_map

    names = [DOC_V1.name, TOKENIZER.name]
    with pytest.raises(ValueError, match="NAME=ZIP"):
        _artifact_map(("a.zip",), names, lookup)
    got = _artifact_map(("opensearch-neural-sparse-tokenizer-v1=t.zip",), names, lookup)
    assert got == {TOKENIZER.name: Path("t.zip")}
    with pytest.raises(ValueError, match="not one of the models"):
        _artifact_map(("all-MiniLM-L6-v2=m.zip",), names, lookup)


def test_task_polling_raises_with_the_explained_error_and_times_out():
    class FakeTransport:
        def __init__(self, states):
            self.states = list(states)

        def perform_request(self, method, path, body=None):
            return self.states.pop(0)

    class FakeClient:
        def __init__(self, states):
            self.transport = FakeTransport(states)

    ml = MLCommons(FakeClient([{"state": "RUNNING"}, {"state": "COMPLETED", "model_id": "m1"}]), sleep=lambda s: None)
    assert ml.wait_task("t1", what="x")["model_id"] == "m1"
    ml = MLCommons(FakeClient([{"state": "FAILED", "error": '{"node1":"publish.djl.ai"}'}]), sleep=lambda s: None)
    with pytest.raises(MLCommonsError, match=r"task t2 FAILED: node node1: publish.djl.ai -- the ML node"):
        ml.wait_task("t2", what="deploying")
    ml = MLCommons(FakeClient([{"state": "RUNNING"}] * 3), sleep=lambda s: None, timeout=0)
    with pytest.raises(MLCommonsError, match="still RUNNING"):
        ml.wait_task("t3", what="x")


class _Cluster:
    """ML Commons answers in order (deploy, task, model...): the order a loaded node gave them. The
    model's state lags its deploy task; no clock is involved, the waits are counted."""

    def __init__(self, answers):
        self.answers, self.sleeps = list(answers), 0
        self.transport = self

    def perform_request(self, method, path, body=None):
        return self.answers.pop(0)

    def sleep(self, seconds):
        self.sleeps += 1


def test_deploy_returns_only_once_the_model_is_deployed():
    """test_ml_commons_remote_model_encodes_like_local saw DEPLOYING right after the deploy task completed."""
    cluster = _Cluster(
        [
            {"task_id": "t"},
            {"state": "COMPLETED"},
            {"model_state": "DEPLOYING"},
            {"model_state": "DEPLOYING"},
            {"model_state": "DEPLOYED", "model_id": "m"},
        ]
    )
    assert MLCommons(cluster, sleep=cluster.sleep).deploy("m")["model_state"] == "DEPLOYED"
    assert cluster.answers == [] and cluster.sleeps == 2


def test_deploy_that_fails_or_never_finishes_says_so():
    cluster = _Cluster([{"task_id": "t"}, {"state": "COMPLETED"}, {"model_state": "DEPLOY_FAILED"}])
    with pytest.raises(MLCommonsError, match=r"deploying m .model m.: model m is DEPLOY_FAILED"):
        MLCommons(cluster, sleep=cluster.sleep).deploy("m")
    cluster = _Cluster([{"task_id": "t"}, {"state": "COMPLETED"}, {"model_state": "DEPLOYING"}])
    with pytest.raises(MLCommonsError, match="model m is still DEPLOYING after 0s"):
        MLCommons(cluster, sleep=cluster.sleep, timeout=0).deploy("m")


# ============================================================================= the real cluster
@pytest.fixture
def requests_seen(monkeypatch) -> list[dict[str, Any]]:
    """Every request the opensearch-py transport sends (method, url, body, answer), passed through for real."""
    from opensearchpy.transport import Transport

    seen: list[dict[str, Any]] = []
    original = Transport.perform_request

    def recording(self, method, url, headers=None, params=None, body=None):
        entry = {"method": method, "url": url, "body": body}
        seen.append(entry)
        try:
            entry["answer"] = original(self, method, url, headers=headers, params=params, body=body)
        except Exception as e:
            entry["error"] = e
            raise
        return entry["answer"]

    monkeypatch.setattr(Transport, "perform_request", recording)
    return seen


@pytest.fixture
def ml_cluster(os_client) -> Iterator[str]:
    """The node's ML plugin, and afterwards the models this test registered undeployed and deleted: a node
    holds only `plugins.ml_commons.max_model_on_node` deployed models, so a test that leaves its models
    deployed makes a later one fail with "Exceed max local model per node limit"."""
    require_plugins(os_client, "opensearch-ml")
    before = _model_ids(os_client)
    yield "ok"
    for model_id in sorted(_model_ids(os_client) - before):
        for method, path in (("POST", f"{ML}/models/{model_id}/_undeploy"), ("DELETE", f"{ML}/models/{model_id}")):
            with contextlib.suppress(Exception):  # cleanup: a model already gone is fine
                os_client.transport.perform_request(method, path)


def _model_ids(os_client) -> set[str]:
    """Ids of the models (not their chunks) the cluster holds."""
    body = {"query": {"bool": {"must_not": {"exists": {"field": "chunk_number"}}}}, "size": 1000, "_source": False}
    try:
        got = os_client.transport.perform_request("POST", f"{ML}/models/_search", body=body)
    except Exception:  # noqa: BLE001 - no model index yet
        return set()
    return {h["_id"] for h in got["hits"]["hits"]}


def _write_config(tmp_path: Path, url: str, index: str, encoders: list[dict]) -> Path:
    cfg = {
        "source": {"type": "jsonl", "path": str(tmp_path / "docs.jsonl")},
        "encoders": encoders,
        "sink": {"type": "opensearch", "hosts": [url], "index": index},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _cli(*args: str):
    from neural_ingest.cli import main

    return CliRunner().invoke(main, ["models", "register", *args])


def _tasks(seen) -> list[dict]:
    return [s["answer"] for s in seen if s["method"] == "GET" and s["url"].startswith(f"{ML}/tasks/") and "answer" in s]


def test_register_by_url_sends_the_page_body_and_polls_the_task(ml_cluster, opensearch_url, index_name, tmp_path, requests_seen):
    cfg = _write_config(tmp_path, opensearch_url, index_name, [{"type": "sentence_transformers", "model": MINILM.name}])
    state = tmp_path / "models.json"
    result = _cli(str(cfg), "--state", str(state), "--timeout", "120", "--no-deploy")

    posts = [s for s in requests_seen if s["method"] == "POST" and s["url"] == f"{ML}/models/_register"]
    assert [p["body"] for p in posts] == [register_body(MINILM)]
    task_id = posts[0]["answer"]["task_id"]
    tasks = _tasks(requests_seen)
    assert tasks and all(t["task_type"] == "REGISTER_MODEL" for t in tasks)
    assert any(s["method"] == "GET" and s["url"] == f"{ML}/tasks/{task_id}" for s in requests_seen)
    final = tasks[-1]
    if final["state"] == "COMPLETED":  # a cluster that can reach artifacts.opensearch.org
        assert result.exit_code == 0, result.output
        assert ModelRegistry(state).model_id(opensearch_url, MINILM.name) == final["model_id"]
    else:  # the usual case here: no internet from the cluster
        assert final["state"] == "FAILED"
        assert result.exit_code == 2, result.output
        assert f"task {task_id} FAILED" in result.output
        assert "artifacts.opensearch.org" in result.output and "--artifact" in result.output
        assert "Traceback" not in result.output
        assert ModelRegistry(state).model_id(opensearch_url, MINILM.name) is None


def test_sparse_document_only_model_by_url_sends_the_full_body(ml_cluster, opensearch_url, index_name, tmp_path, requests_seen):
    cfg = _write_config(
        tmp_path,
        opensearch_url,
        index_name,
        [{"type": "neural_sparse", "model": "opensearch-neural-sparse-encoding-doc-v1"}],
    )
    result = _cli(str(cfg), "--state", str(tmp_path / "models.json"), "--timeout", "120", "--no-deploy")
    posts = [s for s in requests_seen if s["method"] == "POST" and s["url"] == f"{ML}/models/_register"]
    assert posts[0]["body"] == register_body(DOC_V1)
    assert posts[0]["body"]["model_content_hash_value"] == DOC_V1.model_content_hash_value
    if _tasks(requests_seen)[-1]["state"] != "COMPLETED":
        assert result.exit_code == 2, result.output
        assert "FAILED" in result.output and DOC_V1.format().model_url in result.output
    else:  # then the tokenizer is registered next, with its own full body
        assert posts[1]["body"] == register_body(TOKENIZER)


@pytest.fixture(scope="session")
def minilm_artifact(tmp_path_factory, minilm_dir) -> Path:
    """all-MiniLM-L6-v2 traced into an ML Commons TorchScript zip by `neural-ingest models export`."""
    from neural_ingest.cli import main

    out = tmp_path_factory.mktemp("artifact") / "minilm.zip"
    result = CliRunner().invoke(main, ["models", "export", "all-MiniLM-L6-v2", str(out), "--model-path", str(minilm_dir)])
    assert result.exit_code == 0, result.output
    return out


def test_export_builds_a_truncating_torchscript_zip(minilm_artifact, st_model):
    import zipfile

    import torch

    with zipfile.ZipFile(minilm_artifact) as z:
        assert sorted(z.namelist()) == ["all-MiniLM-L6-v2.pt", "tokenizer.json"]
        tok = json.loads(z.read("tokenizer.json"))
        assert tok["truncation"]["max_length"] == 256 and tok["padding"] is None
        traced = torch.jit.load(__import__("io").BytesIO(z.read("all-MiniLM-L6-v2.pt")))
    feats = st_model.tokenizer(["query time and ingest time agree"], return_tensors="pt")
    out = traced({"input_ids": feats["input_ids"], "attention_mask": feats["attention_mask"]})["sentence_embedding"][0]
    ref = st_model.encode(["query time and ingest time agree"], convert_to_tensor=True)[0]
    assert torch.allclose(out, ref, atol=1e-5)


def test_register_from_local_artifact_uploads_chunks_then_deploys(
    ml_cluster, opensearch_url, index_name, tmp_path, requests_seen, minilm_artifact, os_client, st_model
):
    cfg = _write_config(tmp_path, opensearch_url, index_name, [{"type": "sentence_transformers", "model": MINILM.name}])
    state = tmp_path / "models.json"
    result = _cli(str(cfg), "--artifact", str(minilm_artifact), "--allow-local-upload", "--state", str(state), "--timeout", "180")

    meta = [s for s in requests_seen if s["url"] == f"{ML}/models/_register_meta"]
    assert len(meta) == 1
    body = meta[0]["body"]
    size = minilm_artifact.stat().st_size
    assert body["model_content_size_in_bytes"] == size
    assert body["total_chunks"] == math.ceil(size / CHUNK_SIZE)
    assert body["model_content_hash_value"] == sha256_file(minilm_artifact)
    model_id = meta[0]["answer"]["model_id"]
    chunks = [s for s in requests_seen if s["url"].startswith(f"{ML}/models/{model_id}/upload_chunk/")]
    assert [c["url"].rsplit("/", 1)[1] for c in chunks] == [str(n) for n in range(body["total_chunks"])]
    assert all(len(c["body"]) <= CHUNK_SIZE for c in chunks)
    assert not any(s["url"] == f"{ML}/models/_register" for s in requests_seen)  # no URL download attempted

    model = os_client.transport.perform_request("GET", f"{ML}/models/{model_id}")
    assert model["model_content_hash_value"] == body["model_content_hash_value"]
    assert model["model_config"]["embedding_dimension"] == 384
    deploy = [t for t in _tasks(requests_seen) if t["task_type"] == "DEPLOY_MODEL"][-1]
    rec = ModelRegistry(state).get(opensearch_url, MINILM.name)
    assert rec.model_id == model_id and rec.source == f"artifact:{minilm_artifact}"
    if deploy["state"] == "COMPLETED":  # a node with its PyTorch runtime available
        assert result.exit_code == 0, result.output
        assert rec.state == "DEPLOYED"
        got = os_client.transport.perform_request(
            "POST", f"{ML}/_predict/text_embedding/{model_id}", body={"text_docs": ["query time and ingest time agree"]}
        )
        vec = got["inference_results"][0]["output"][0]["data"]
        from support import cosine

        assert cosine(vec, st_model.encode("query time and ingest time agree")) > 0.999
    else:  # what this offline cluster does: DJL cannot fetch its PyTorch library
        assert deploy["state"] == "FAILED"
        assert result.exit_code == 2, result.output
        assert f"registered as {model_id} but was not deployed" in result.output
        assert "Traceback" not in result.output
        if "publish.djl.ai" in deploy["error"]:
            assert "PyTorch native library" in result.output
        assert rec.state == "REGISTERED" and rec.error

    # Running again reuses the recorded model instead of uploading it again.
    requests_seen.clear()
    again = _cli(str(cfg), "--artifact", str(minilm_artifact), "--state", str(state), "--timeout", "180", "--no-deploy")
    assert again.exit_code == 0, again.output
    assert f"already registered as {model_id}" in again.output
    assert not any("_register" in s["url"] for s in requests_seen)


def test_local_upload_refused_is_explained(ml_cluster, opensearch_url, index_name, tmp_path, os_client):
    from neural_ingest.ml_commons import LOCAL_UPLOAD_SETTING

    os_client.cluster.put_settings(body={"persistent": {LOCAL_UPLOAD_SETTING: False}})
    zip_path = tmp_path / "x.zip"
    zip_path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    cfg = _write_config(tmp_path, opensearch_url, index_name, [{"type": "sentence_transformers", "model": MINILM.name}])
    result = _cli(str(cfg), "--artifact", str(zip_path), "--state", str(tmp_path / "m.json"))
    assert result.exit_code == 2, result.output
    assert "--allow-local-upload" in result.output and "(400)" in result.output


# ----------------------------------------------------------------------------- doc-only sparse: the query tokenizer end to end
@pytest.fixture
def tiny_doc_model(tmp_path, minilm_dir) -> Path:
    """A tiny random BERT masked-LM with the bert-base-uncased vocabulary and an idf.json, standing in for doc-v1's weights."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    out = tmp_path / "doc-v1"
    tok = AutoTokenizer.from_pretrained(str(minilm_dir))
    torch.manual_seed(0)
    BertForMaskedLM(
        BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(out)
    tok.save_pretrained(out)
    (out / "idf.json").write_text(json.dumps({"hello": 2.5, "world": 1.25, "search": 4.0, "##ing": 0.5, "engines": 3.0}))
    return out


def test_tokenizer_model_from_local_files_deploys_and_queries_like_the_pipeline(
    ml_cluster, opensearch_url, index_name, tmp_path, tiny_doc_model, os_client
):
    from neural_ingest.config import NeuralSparseEncoderConfig
    from neural_ingest.encoders.sparse import NeuralSparseEncoder

    enc_cfg = {
        "type": "neural_sparse",
        "model": "opensearch-neural-sparse-encoding-doc-v1",
        "model_path": str(tiny_doc_model),
        "device": "cpu",
        "query_mode": "tokenizer",
    }
    cfg = _write_config(tmp_path, opensearch_url, index_name, [enc_cfg])
    os_client.indices.create(
        index=index_name,
        body={"mappings": {"properties": {"text": {"type": "text"}, "sparse_embedding": {"type": "rank_features"}}}},
    )
    os_client.index(
        index=index_name, id="1", body={"text": "a", "sparse_embedding": {"search": 1.0, "engines": 2.0}}, refresh=True
    )
    os_client.index(index=index_name, id="2", body={"text": "b", "sparse_embedding": {"hello": 0.5}}, refresh=True)
    # doc-v1 itself cannot be built locally: give a placeholder zip for it (its deploy is expected to fail).
    placeholder = tmp_path / "doc.zip"
    import zipfile

    with zipfile.ZipFile(placeholder, "w") as z:
        z.writestr("tokenizer.json", (tiny_doc_model / "tokenizer.json").read_text())
    state = tmp_path / "models.json"
    pipeline = f"{index_name}-pipeline"
    result = _cli(
        str(cfg),
        "--from-local",
        "--artifact",
        f"{DOC_V1.short_name}={placeholder}",
        "--allow-local-upload",
        "--search-pipeline",
        pipeline,
        "--state",
        str(state),
        "--timeout",
        "180",
    )
    try:
        reg = ModelRegistry(state)
        tok_rec = reg.get(opensearch_url, TOKENIZER.name)
        assert tok_rec is not None and tok_rec.source.startswith("artifact:"), result.output
        # The SPARSE_TOKENIZE model needs no PyTorch runtime: it deploys even on an offline cluster.
        assert tok_rec.state == "DEPLOYED", result.output
        doc_rec = reg.get(opensearch_url, DOC_V1.name)
        assert doc_rec.model_id and doc_rec.model_id != tok_rec.model_id
        if doc_rec.state != "DEPLOYED":
            assert result.exit_code == 2 and f"{DOC_V1.name} is registered as {doc_rec.model_id}" in result.output

        # ML Commons' query encoding equals the pipeline's own (tokenizer mode, same tokenizer and IDF).
        query = "Hello hello world searching engines"
        got = os_client.transport.perform_request(
            "POST", f"{ML}/_predict/sparse_tokenize/{tok_rec.model_id}", body={"text_docs": [query]}
        )
        remote = got["inference_results"][0]["output"][0]["dataAsMap"]["response"][0]
        encoder = NeuralSparseEncoder(NeuralSparseEncoderConfig(**{k: v for k, v in enc_cfg.items() if k != "type"}))
        local = encoder.encode_queries(encoder.load_model(), [query])[0]
        assert remote == pytest.approx(local)
        assert remote["hello"] == 2.5 and remote["engines"] == 3.0

        # The search pipeline fills in the tokenizer model id: a neural_sparse query without model_id works.
        body = os_client.transport.perform_request("GET", f"/_search/pipeline/{pipeline}")[pipeline]
        enricher = body["request_processors"][0]["neural_query_enricher"]
        assert enricher["neural_field_default_id"] == {"sparse_embedding": tok_rec.model_id}
        settings = os_client.indices.get_settings(index=index_name)[index_name]["settings"]
        assert settings["index"]["search"]["default_pipeline"] == pipeline
        hits = os_client.search(index=index_name, body={"query": {"neural_sparse": {"sparse_embedding": {"query_text": query}}}})
        ids = [h["_id"] for h in hits["hits"]["hits"]]
        assert ids[0] == "1" and set(ids) == {"1", "2"}
    finally:
        os_client.transport.perform_request("DELETE", f"/_search/pipeline/{pipeline}")
