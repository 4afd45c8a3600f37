"""The example pipelines in examples/ run as a user runs them (their main() with command-line arguments) against
the real OpenSearch and the real all-MiniLM-L6-v2: the documents and vectors are in the index, and the bad
records are dead letters with their reasons."""
from __future__ import annotations

import glob
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from support import ROOT, SAMPLE, write_jsonl

pytestmark = pytest.mark.opensearch


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def letters(prefix: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(glob.glob(f"{prefix}*.jsonl")) for line in Path(f).read_text().splitlines()]


def sources(client, index: str) -> dict[str, dict]:
    client.indices.refresh(index=index)
    return {h["_id"]: h["_source"] for h in client.search(index=index, body={"size": 100})["hits"]["hits"]}


def test_write_dicts(opensearch_url, os_client, index_name, tmp_path):
    ex = example("write_dicts")
    assert ex.main(["--opensearch-url", opensearch_url, "--index", index_name, "--dead-letters", str(tmp_path / "dl")]) == 0
    got = sources(os_client, index_name)
    assert got == {p["id"]: p for p in ex.PRODUCTS if "id" in p}
    (dead,) = letters(tmp_path / "dl")
    assert (dead["stage"], dead["error_type"], dead["record"]) == ("index", "missing_id", ex.PRODUCTS[-1])


def test_run_inference_dense(opensearch_url, os_client, index_name, st_model):
    ex = example("run_inference_dense")
    assert ex.main(["--opensearch-url", opensearch_url, "--index", index_name]) == 0
    got = sources(os_client, index_name)
    assert set(got) == set(ex.PASSAGES)
    for doc_id, text in ex.PASSAGES.items():
        assert got[doc_id]["text"] == text
        np.testing.assert_allclose(got[doc_id]["embedding"], st_model.encode(text), atol=1e-5)
    query = st_model.encode("the moon pulls the ocean").tolist()
    hits = os_client.search(index=index_name, body={"size": 1, "query": {"knn": {"embedding": {"vector": query, "k": 4}}}})
    assert hits["hits"]["hits"][0]["_id"] == "tides"


def test_embed_and_index(opensearch_url, os_client, index_name, tmp_path, st_model):
    rows = [json.loads(line) for line in (SAMPLE / "docs.jsonl").read_text().splitlines()[:5]]
    src = write_jsonl(tmp_path / "in.jsonl", [*rows, {"title": "a record without an id"}, "{not json"])
    ex = example("embed_and_index")
    argv = [
        "--opensearch-url",
        opensearch_url,
        "--index",
        index_name,
        "--input",
        str(src),
        "--dead-letters",
        str(tmp_path / "dl"),
    ]
    assert ex.main(argv) == 0
    got = sources(os_client, index_name)
    assert set(got) == {r["id"] for r in rows}
    first = rows[0]
    want = st_model.encode(first["title"] + "\n\n" + first["body"])
    np.testing.assert_allclose(got[first["id"]]["embedding"], want, atol=1e-5)
    assert got[first["id"]]["topic"] == first["topic"]
    mapping = os_client.indices.get_mapping(index=index_name)[index_name]["mappings"]["properties"]["embedding"]
    assert (mapping["type"], mapping["dimension"]) == ("knn_vector", 384)
    assert sorted((d["stage"], d["error_type"]) for d in letters(tmp_path / "dl")) == [
        ("prepare", "missing_id"),
        ("prepare", "not_an_object"),
    ]
