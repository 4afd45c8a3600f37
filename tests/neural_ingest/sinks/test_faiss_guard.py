"""A node without the k-NN native libraries dies on its first faiss write, so neural-ingest refuses to write a
faiss field to a node that says it has none (node attribute knn_faiss: false, set by scripts/opensearch-local.sh
when the faiss sources are missing). The node here is a real one that only carries the attribute."""
from __future__ import annotations

import os

import pytest
from opensearchpy import OpenSearch

from neural_ingest.encoders.base import ModelInfo
from neural_ingest.pipelines.ingest import run_ingest
from neural_ingest.sinks.base import SinkError
from neural_ingest.sinks.opensearch import OpenSearchSink

pytestmark = pytest.mark.opensearch

PORT = int(os.environ.get("NEURAL_INGEST_TEST_PORT_NOFAISS", "9254"))
FIELDS = {"embedding": ModelInfo(name="m", kind="dense", dimension=4, similarity="cosine")}


@pytest.fixture(scope="module")
def no_faiss_node(node_factory):
    node = node_factory("nofaiss", PORT, ["node.attr.knn_faiss=false"])
    return node, OpenSearch(hosts=[node.url], timeout=60)


def test_faiss_run_is_refused_before_anything_is_written(no_faiss_node, make_config, tmp_path):
    node, client = no_faiss_node
    cfg = make_config(sink="opensearch", index="t-nofaiss", overrides={"sink.hosts": [node.url], "sink.knn.engine": "faiss"})
    with pytest.raises(
        SinkError, match=r"sink.knn.engine faiss: this cluster cannot run it \(node\(s\) nofaiss .*no faiss native libraries"
    ):
        run_ingest(cfg)
    assert not client.indices.exists(index="t-nofaiss") and not (tmp_path / "dlq").exists()
    assert client.cluster.health()["status"] in ("green", "yellow")
    lucene = make_config(sink="opensearch", index="t-nofaiss", overrides={"sink.hosts": [node.url]})
    assert OpenSearchSink(lucene.sink).check(FIELDS) == []


def test_an_existing_faiss_field_is_refused_whatever_the_config_says(no_faiss_node, make_config):
    node, client = no_faiss_node
    client.indices.create(
        index="t-nofaiss-old",
        body={"settings": {"index.knn": True}, "mappings": {"properties": {"embedding": {"type": "knn_vector", "dimension": 4}}}},
    )  # no method: the plugin's default engine, faiss
    try:
        cfg = make_config(sink="opensearch", index="t-nofaiss-old", overrides={"sink.hosts": [node.url]})  # lucene
        problems = OpenSearchSink(cfg.sink).check(FIELDS)
        assert any("no faiss native libraries" in p for p in problems), problems
    finally:
        client.indices.delete(index="t-nofaiss-old", ignore=[404])
