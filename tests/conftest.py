"""Shared fixtures: the real OpenSearch, the real all-MiniLM-L6-v2, the sample corpus, configs.

OpenSearch comes from scripts/opensearch-local.sh (scripts/test.sh starts it and exports
NEURAL_INGEST_OPENSEARCH_URL). Without it, OpenSearch tests are skipped locally and fail under CI=true.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from support import MINILM, ROOT, SAMPLE, require_plugins


def _ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def opensearch_url() -> str:
    url = os.environ.get("NEURAL_INGEST_OPENSEARCH_URL")
    if not url:
        # A developer running plain `pytest`: use (or start) the test instance.
        port = os.environ.get("NEURAL_INGEST_TEST_PORT", "9250")
        r = subprocess.run(
            ["bash", str(ROOT / "scripts" / "opensearch-local.sh"), "start", "--name", "test", "--port", port],
            capture_output=True,
            text=True,
        )
        if r.returncode == 0:
            url = f"http://127.0.0.1:{port}"
            os.environ["NEURAL_INGEST_OPENSEARCH_URL"] = url
        else:
            msg = f"OpenSearch is not available: {r.stderr[-2000:] or r.stdout[-2000:]}"
            if _ci():
                pytest.fail(msg)
            pytest.skip(msg)
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[url], timeout=30)
    try:
        client.cluster.health(wait_for_status="yellow")
    except Exception as e:  # noqa: BLE001
        if _ci():
            pytest.fail(f"OpenSearch at {url} is not healthy: {e}")
        pytest.skip(f"OpenSearch at {url} is not healthy: {e}")
    return url


@pytest.fixture(scope="session")
def os_client(opensearch_url: str):
    from opensearchpy import OpenSearch

    return OpenSearch(hosts=[opensearch_url], timeout=120)


KNN_ENGINES = ["lucene", "faiss"]


@pytest.fixture(scope="session")
def node_features(os_client) -> dict[str, Any]:
    """What the test cluster offers: version, plugins (GET _cat/plugins), and whether its nodes have the
    faiss libraries (scripts/opensearch-local.sh sets the node attribute knn_faiss)."""
    plugins = {p["component"] for p in os_client.cat.plugins(format="json")}
    attrs = os_client.cat.nodeattrs(format="json", h="node,attr,value")
    faiss = [a.get("value") for a in attrs if a.get("attr") == "knn_faiss"]
    return {
        "version": os_client.info()["version"]["number"],
        "plugins": plugins,
        "faiss": bool(faiss) and all(v == "true" for v in faiss),
        "faiss_attr": faiss,
    }


def _unavailable(msg: str) -> None:
    """Skip locally; under CI=true what CI must provide is a failure."""
    if _ci():
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="module", params=KNN_ENGINES)
def knn_engine(request) -> str:
    """Each k-NN test runs once per HNSW engine; faiss needs the native libraries on every node."""
    if request.param == "faiss":
        feats = request.getfixturevalue("node_features")
        if not feats["faiss"]:
            why = "says knn_faiss=false" if feats["faiss_attr"] else "has no knn_faiss attribute (an older opensearch-local.sh)"
            _unavailable(
                f"faiss is unavailable: the test node {why}, i.e. no k-NN native libraries; they are built from "
                "../shared/knn-natives (or $NEURAL_INGEST_KNN_NATIVES) by scripts/opensearch-local.sh"
            )
    return request.param


@pytest.fixture(autouse=True)
def _needs_plugins(request) -> None:
    """``@pytest.mark.needs_plugins("opensearch-ml", ...)``: see require_plugins."""
    marker = request.node.get_closest_marker("needs_plugins")
    if marker is not None:
        require_plugins(request.getfixturevalue("os_client"), *marker.args)


@pytest.fixture
def index_name(os_client, request) -> str:
    """A fresh index name per test, deleted afterwards."""
    name = f"t-{request.node.name.lower()[:40].strip('_-')}-{uuid.uuid4().hex[:6]}".replace("[", "-").replace("]", "")
    yield name
    os_client.indices.delete(index=f"{name}*", ignore=[404])


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from neural_ingest.model_resolve import resolve_model_dir

    return resolve_model_dir(MINILM)


@pytest.fixture(scope="session")
def st_model(minilm_dir: Path):
    """The real all-MiniLM-L6-v2, loaded straight through sentence-transformers (the reference)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


@pytest.fixture(scope="session")
def sample_docs() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (SAMPLE / "docs.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def sample_queries() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (SAMPLE / "queries.jsonl").read_text().splitlines() if line.strip()]


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Any]:
    """Build a validated PipelineConfig from a base dict plus dotted overrides.

    ``make_config(sink="parquet")`` writes to tmp_path; ``make_config(sink="opensearch", index=...)``
    to the test OpenSearch. Extra keyword ``overrides={"encoders.0.batch_size": 8}`` are applied last.
    """
    from neural_ingest.config import apply_overrides, parse_config

    def _make(
        *,
        source_path: str | Path | None = None,
        source_type: str = "jsonl",
        sink: str = "parquet",
        index: str | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        data: dict[str, Any] = {
            "run": {"name": "test", "progress_every_seconds": 5},
            "source": {
                "type": source_type,
                "path": str(source_path or SAMPLE / "docs.jsonl"),
                "id_field": "id",
                "text_fields": ["title", "body"],
                "metadata_fields": ["topic", "year"],
            },
            "encoder": {"type": "sentence_transformers", "model": MINILM, "device": "cpu", "batch_size": 32},
            "dead_letter": {"path": str(tmp_path / "dlq")},
        }
        if sink == "parquet":
            data["sink"] = {"type": "parquet", "path": str(tmp_path / "dataset")}
        else:
            data["sink"] = {
                "type": "opensearch",
                "hosts": [os.environ.get("NEURAL_INGEST_OPENSEARCH_URL", "http://127.0.0.1:9250")],
                "index": index,
                "knn": {"engine": "lucene"},
            }
        ov = [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in (overrides or {}).items()]
        return parse_config(apply_overrides(data, ov))

    return _make


class Node:
    """A dedicated OpenSearch instance a test may stop and start (scripts/opensearch-local.sh)."""

    def __init__(self, name: str, port: int, settings: list[str]):
        self.name, self.port, self.settings = name, port, settings
        self.url = f"http://127.0.0.1:{port}"

    def _script(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(ROOT / "scripts" / "opensearch-local.sh"), *args], capture_output=True, text=True)

    def start(self, clean: bool = False) -> None:
        extra = [a for s in self.settings for a in ("--setting", s)]
        extra += ["--clean"] if clean else []
        r = self._script("start", "--name", self.name, "--port", str(self.port), "--heap", "512m", "--plugins", "knn", *extra)
        if r.returncode != 0:
            raise RuntimeError(f"could not start OpenSearch node {self.name}: {r.stderr[-3000:]}")

    def stop(self) -> None:
        self._script("stop", "--name", self.name)


@pytest.fixture(scope="session")
def node_factory(opensearch_url):
    """Start extra OpenSearch nodes (tiny write queue, outage victims); all are deleted at the end."""
    nodes: list[Node] = []

    def _make(name: str, port: int, settings: list[str] | None = None) -> Node:
        node = Node(name, port, settings or [])
        try:
            node.start(clean=True)
        except RuntimeError as e:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(str(e))
            pytest.skip(str(e))
        nodes.append(node)
        return node

    yield _make
    for node in nodes:
        node._script("delete", "--name", node.name)


_CLUSTER_FIXTURES = {"opensearch_url", "os_client", "node_features", "index_name", "node_factory", "knn_engine"}


def pytest_collection_modifyitems(config, items) -> None:
    """Every test that reaches a real OpenSearch (through any of the cluster fixtures, directly or through
    another fixture) is marked `opensearch`, so `pytest -m "not opensearch"` is the fast lane of pure tests."""
    for item in items:
        if _CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.opensearch)
