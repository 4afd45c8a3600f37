"""Bulk-load settings on a real OpenSearch: a new index loads with no replicas (and refresh_interval -1
where that helps), and gets its own settings back when the run ends (successful or not); an existing
index is left alone; lucene k-NN indexes keep their refreshes under `auto`;
a pipeline run into a new index ends searchable with the settings restored; requests overlapping the
encoder (bulk.in_flight) still report every document within the run."""
from __future__ import annotations

import json

import pytest
from support import synthetic_docs, write_jsonl

from neural_ingest.config import OpenSearchSinkConfig
from neural_ingest.encoders.base import ModelInfo
from neural_ingest.sinks.opensearch import OpenSearchSink

pytestmark = [pytest.mark.opensearch, pytest.mark.knn]

FIELDS = {"embedding": ModelInfo(name="m", kind="dense", dimension=4, similarity="cosine")}


def index_settings(client, index: str) -> dict:
    return client.indices.get_settings(index=index)[index]["settings"]["index"]


def sink_for(url: str, index: str, engine: str = "lucene", **kw) -> OpenSearchSink:
    s = OpenSearchSink(OpenSearchSinkConfig(hosts=[url], index=index, knn={"engine": engine}, **kw))
    s.chunking = None
    return s


@pytest.mark.parametrize("success", [True, False])
def test_new_index_loads_with_bulk_settings_and_gets_its_own_back(opensearch_url, os_client, index_name, success, knn_engine):
    sink = sink_for(opensearch_url, index_name, knn_engine, replicas=1, bulk_refresh="disable")
    sink.prepare(FIELDS, "run-1")
    s = index_settings(os_client, index_name)
    assert s["refresh_interval"] == "-1" and s["number_of_replicas"] == "0"
    sink.finalize("run-1", success=success)
    s = index_settings(os_client, index_name)
    assert "refresh_interval" not in s  # back to the default (1s)
    assert s["number_of_replicas"] == "1"


def test_another_sink_for_the_same_index_restores_them(opensearch_url, os_client, index_name):
    sink_for(opensearch_url, index_name, bulk_refresh="disable").prepare(FIELDS, "run-1")  # e.g. reindex creates it
    assert index_settings(os_client, index_name)["refresh_interval"] == "-1"
    second = sink_for(opensearch_url, index_name)
    second.prepare(FIELDS, "run-1")  # the index exists: nothing changed, nothing recorded
    second.finalize("run-1", success=True)
    assert "refresh_interval" not in index_settings(os_client, index_name)


def test_auto_keeps_refreshes_for_lucene_knn_only(opensearch_url, os_client, index_name):
    from neural_ingest.sinks.bulk_load import wants_refresh_off
    from neural_ingest.sinks.mapping import index_body

    lucene = index_body(OpenSearchSinkConfig(hosts=["x"], index="i", knn={"engine": "lucene"}), FIELDS)
    faiss = index_body(OpenSearchSinkConfig(hosts=["x"], index="i", knn={"engine": "faiss"}), FIELDS)
    sparse = {"mappings": {"properties": {"sparse_embedding": {"type": "rank_features"}, "text": {"type": "text"}}}}
    assert not wants_refresh_off("auto", lucene) and wants_refresh_off("auto", faiss) and wants_refresh_off("auto", sparse)
    assert wants_refresh_off("disable", lucene) and not wants_refresh_off("keep", sparse)
    sink = sink_for(opensearch_url, index_name, replicas=1)  # auto, lucene
    sink.prepare(FIELDS, "run-1")
    s = index_settings(os_client, index_name)
    assert "refresh_interval" not in s and s["number_of_replicas"] == "0"
    sink.finalize("run-1", success=True)
    assert index_settings(os_client, index_name)["number_of_replicas"] == "1"


def test_existing_index_and_the_flag_off_are_left_alone(opensearch_url, os_client, index_name):
    os_client.indices.create(
        index=index_name, body={"settings": {"index.knn": True, "refresh_interval": "5s", "number_of_replicas": 0}}
    )
    sink = sink_for(opensearch_url, index_name)
    sink.prepare(FIELDS, "run-1")
    assert index_settings(os_client, index_name)["refresh_interval"] == "5s"
    sink.finalize("run-1", success=True)
    assert index_settings(os_client, index_name)["refresh_interval"] == "5s"
    other = f"{index_name}-off"
    sink = sink_for(opensearch_url, other, bulk_load_settings=False, bulk_refresh="disable")
    sink.prepare(FIELDS, "run-1")
    assert "refresh_interval" not in index_settings(os_client, other)


@pytest.mark.parametrize("in_flight", [0, 2])
def test_pipeline_run_ends_searchable_with_settings_restored(os_client, index_name, make_config, tmp_path, in_flight, knn_engine):
    from neural_ingest.pipelines.ingest import run_ingest

    rows = [*synthetic_docs(40), {"id": "bad-year", "title": "T", "body": "B", "year": "nineteen-ninety"}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    # An index template (as a cluster may have): year is an integer, so one document fails at indexing
    # and its dead letter must still arrive; its refresh_interval is what the run must put back.
    template = f"{index_name}-tmpl"
    os_client.indices.put_index_template(
        name=template,
        body={
            "index_patterns": [f"{index_name}*"],
            "template": {"settings": {"refresh_interval": "2s"}, "mappings": {"properties": {"year": {"type": "integer"}}}},
        },
    )
    try:
        cfg = make_config(
            source_path=path,
            sink="opensearch",
            index=index_name,
            overrides={
                "sink.bulk.max_docs": 7,
                "sink.bulk.in_flight": in_flight,
                "sink.bulk_refresh": "disable",
                "run.max_failed_ratio": 0.5,
                "sink.knn.engine": knn_engine,
            },
        )
        s = run_ingest(cfg)
    finally:
        os_client.indices.delete_index_template(name=template, ignore=[404])
    assert s.read == 41 and s.indexed == 40 and s.failed_by_reason == {"index.mapper_parsing_exception": 1} and s.reconciles
    assert os_client.count(index=index_name)["count"] == 40  # searchable without an explicit refresh
    assert index_settings(os_client, index_name)["refresh_interval"] == "2s"
    letters = [
        json.loads(x) for f in (tmp_path / "dlq" / s.run_id).glob("dead-letters-*.jsonl") for x in f.read_text().splitlines()
    ]
    assert [d["doc_id"] for d in letters] == ["bad-year"]
