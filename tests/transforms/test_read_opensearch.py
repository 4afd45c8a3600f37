"""ReadFromOpenSearch against the real OpenSearch: every document exactly once across shards and
indices (point in time + slices + search_after), query and _source selection, PITs closed; and an
index re-embedded through `neural-ingest run` with an opensearch source."""
from __future__ import annotations

import apache_beam as beam
import pytest
from opensearchpy import helpers
from support import collect, collected, synthetic_docs

from neural_ingest.config import OpenSearchSourceConfig
from neural_ingest.transforms.read_opensearch import ReadFromOpenSearch, plan_slices


def _source(url: str, index: str, **kw) -> OpenSearchSourceConfig:
    return OpenSearchSourceConfig(type="opensearch", hosts=[url], index=index, **kw)


def _fill(client, index: str, n: int, shards: int, prefix: str) -> list[str]:
    client.indices.create(index=index, body={"settings": {"number_of_shards": shards, "number_of_replicas": 0}})
    helpers.bulk(client, (
        {"_index": index, "_id": f"{prefix}{i}", "title": f"t{i}", "meta": {"lang": "en" if i % 2 else "de"}, "n": i,
         "big": "x" * 50}
        for i in range(n)
    ), refresh=True)
    return [f"{prefix}{i}" for i in range(n)]


def _read(cfg: OpenSearchSourceConfig, key: str, **kw) -> list[dict]:
    with beam.Pipeline() as p:
        out = p | ReadFromOpenSearch(cfg, **kw)
        _ = out["records"] | collect(key)
    return collected(key)


def test_slices_never_fewer_than_shards():
    assert plan_slices({"a": 3, "b": 1}, None) == {"a": 3, "b": 1}
    assert plan_slices({"a": 3, "b": 1}, 2) == {"a": 3, "b": 2}
    assert plan_slices({"a": 3}, 8) == {"a": 8}


@pytest.mark.parametrize("slices", [None, 1, 5])
def test_every_document_once_across_shards_and_indices(os_client, opensearch_url, index_name, slices):
    # 3 + 2 shards behind one pattern: with fewer slices than shards, _doc order repeats across shards
    ids = _fill(os_client, f"{index_name}-a", 700, 3, "a") + _fill(os_client, f"{index_name}-b", 300, 2, "b")
    cfg = _source(opensearch_url, f"{index_name}-*", text_fields=["title"], metadata_fields=["meta.lang"],
                  page_size=37, slices=slices)
    records = _read(cfg, f"all-{slices}")
    got = [r["_id"] for r in records]
    assert len(got) == len(ids) and sorted(got) == sorted(ids)
    r0 = next(r for r in records if r["_id"] == "a3")
    assert r0["title"] == "t3" and r0["meta.lang"] == "en" and "big" not in r0 and "n" not in r0  # only what is needed
    assert os_client.get_all_pits().get("pits", []) == []  # every point in time was closed


def test_query_and_id_field(os_client, opensearch_url, index_name):
    _fill(os_client, index_name, 120, 2, "d")
    cfg = _source(opensearch_url, index_name, text_fields=["title"], query={"range": {"n": {"lt": 30}}}, id_field="n")
    records = _read(cfg, "query", )
    assert sorted(r["n"] for r in records) == list(range(30))
    ids_only = _read(_source(opensearch_url, index_name), "ids", includes=[])
    assert len(ids_only) == 120 and all(set(r) == {"_id"} for r in ids_only)


def test_missing_index_fails_clearly(opensearch_url):
    cfg = _source(opensearch_url, "no-such-index-anywhere")
    with pytest.raises(Exception, match=r"does not exist: check source\.index"):
        _read(cfg, "missing")


def test_reembed_an_index_with_the_run_command(os_client, opensearch_url, index_name, make_config):
    """An index holding only text becomes the source of a new index with vectors (same ids, metadata)."""
    from neural_ingest.pipelines.ingest import run_ingest

    old = f"{index_name}-old"
    docs = synthetic_docs(40, prefix="r")
    os_client.indices.create(index=old, body={"settings": {"number_of_shards": 2, "number_of_replicas": 0}})
    helpers.bulk(os_client, ({"_index": old, "_id": d["id"], **{k: v for k, v in d.items() if k != "id"}} for d in docs),
                 refresh=True)
    new = f"{index_name}-new"
    cfg = make_config(sink="opensearch", index=new, overrides={
        "source": {"type": "opensearch", "hosts": [opensearch_url], "index": old, "text_fields": ["title", "body"],
                   "metadata_fields": ["topic", "year"], "page_size": 7}})
    s = run_ingest(cfg)
    assert s.read == 40 and s.indexed == 40 and s.encoded == 40 and s.reconciles
    os_client.indices.refresh(index=new)
    got = os_client.get(index=new, id="r-0007")["_source"]
    assert got["topic"] == docs[7]["topic"] and got["text"] == f"{docs[7]['title']}\n\n{docs[7]['body']}"
    assert len(got["embedding"]) == 384


# ------------------------------------------------------------------ pre-flight (validate and run)
def test_source_problems_are_one_line_without_the_password(opensearch_url, index_name, os_client):
    import socket

    from neural_ingest.transforms.read_opensearch import source_problems

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = _source(f"http://reader:pw-src-42@127.0.0.1:{port}", index_name)
    assert source_problems(down) == [
        f"cannot reach OpenSearch at http://reader:***@127.0.0.1:{port}: check source.hosts and that the cluster is up"]
    tls = _source(opensearch_url.replace("http://", "https://reader:pw-src-42@"), index_name)
    [msg] = source_problems(tls)
    assert msg.startswith("source.hosts: https://reader:***@") and "speaks plain HTTP, not TLS" in msg
    assert source_problems(_source(opensearch_url, index_name)) == [
        f"source index {index_name!r} does not exist: check source.index"]
    os_client.indices.create(index=index_name)
    assert source_problems(_source(opensearch_url, index_name)) == []
