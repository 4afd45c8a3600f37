"""Recall measured on every build, against the real OpenSearch and the real all-MiniLM-L6-v2:

- an index built with the default k-NN settings from the real-text sample corpus answers a plain client
  ``k: 10`` query with recall@10 >= 0.98, and the summary reports the same figure as an exact search the
  test does itself (numpy over the stored vectors, the same held-out queries);
- a poor index is reported (and warned about) as such, and reindex refuses to swap it in (exit 4);
- compressed faiss fields (32x) are measured by the same check: without on_disk's rescoring recall drops.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from support import hold_model, write_jsonl

from neural_ingest.cli import main
from neural_ingest.pipelines.ingest import run_ingest
from neural_ingest.sinks import aliases, knn_support
from neural_ingest.sinks import recall as rc


def _stored(client, index: str) -> tuple[list[str], np.ndarray]:
    res = client.search(index=index, body={"size": 10000, "_source": ["embedding"], "query": {"match_all": {}}})
    hits = res["hits"]["hits"]
    return [h["_id"] for h in hits], np.asarray([h["_source"]["embedding"] for h in hits], dtype=np.float32)


def _exact_recall(client, index: str, st_model, texts: list[str], k: int = 10) -> float:
    """recall@k of the plain client query, against numpy's exact top k over the vectors read back."""
    ids, vecs = _stored(client, index)
    q = np.asarray(st_model.encode(texts, convert_to_numpy=True), dtype=np.float32)
    sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (vecs / np.linalg.norm(vecs, axis=1, keepdims=True)).T
    found = []
    for qv, row in zip(q, sims):
        exact = {ids[i] for i in np.argsort(-row)[:k]}
        hits = client.search(index=index, body={"size": k, "_source": False,
                                                "query": {"knn": {"embedding": {"vector": qv.tolist(), "k": k}}}})
        found.append(len(exact & {h["_id"] for h in hits["hits"]["hits"]}) / k)
    return float(np.mean(found))


def _require_faiss(os_client) -> None:
    ok, why = knn_support.faiss_available(os_client)
    if not ok:
        pytest.skip(f"faiss is unavailable on the test node: {why}; scripts/opensearch-local.sh installs the libraries")


def test_default_index_reaches_recall_and_the_summary_reports_it(os_client, make_config, index_name, st_model, tmp_path):
    cfg = make_config(sink="opensearch", index=index_name, overrides={"sink.knn.engine": None})  # the defaults
    hold_model(cfg)
    summary = run_ingest(cfg, summary_path=str(tmp_path / "s.json"))
    r = summary.recall
    assert summary.indexed == 300 and r is not None, r
    mapping = os_client.indices.get_mapping(index=index_name)[index_name]["mappings"]["properties"]["embedding"]
    has_faiss, _ = knn_support.faiss_available(os_client)
    assert r["engine"] == mapping["method"]["engine"] == ("faiss" if has_faiss else "lucene")
    assert r["k"] == 10 and r["queries"] == rc.sample_size(100, 300) == 30
    # the same held-out queries: first sentences of the same seeded sample
    texts = [t for t in (rc.first_sentence(x) for x in rc.sample_texts(os_client, index_name, "text", 30, 0)) if t]
    assert len(texts) == r["queries"]
    exact = _exact_recall(os_client, index_name, st_model, texts)
    assert r["recall_at_k"] == pytest.approx(exact, abs=0.01)
    assert r["recall_at_k"] >= 0.98
    written = json.loads((tmp_path / "s.json").read_text())["recall"]
    assert written["recall_at_k"] == r["recall_at_k"] and written["params"]["m"] == 16


def test_a_poor_index_is_reported_and_reindex_refuses_it(os_client, make_config, index_name, st_model, tmp_path):
    """A degenerate graph (m 2, ef_construction 2, lucene: the plain query searches only k candidates on 2.19)."""
    poor = {"sink.knn.engine": "lucene", "sink.knn.m": 2, "sink.knn.ef_construction": 2, "sink.knn.ef_search": 10,
            "sink.recall.sample_queries": 40, "reindex": {"lock_index": f"{index_name}-locks"}}
    cfg = make_config(sink="opensearch", index=index_name, overrides=poor)
    hold_model(cfg)
    conf = tmp_path / "c.json"
    conf.write_text(cfg.model_dump_json())
    r = CliRunner().invoke(main, ["reindex", str(conf), "--set", "reindex.validation.min_recall=0.999",
                                  "--summary", str(tmp_path / "s.json")])
    summary = json.loads((tmp_path / "s.json").read_text())
    measured = summary["recall"]["recall_at_k"]
    assert measured < 0.999, summary["recall"]  # else the degenerate graph happened to be perfect here
    assert r.exit_code == 4, r.output
    assert "validation recall: FAILED" in r.output and "reindex.validation.min_recall" in r.output
    assert aliases.alias_targets(os_client, index_name) == []  # the alias was never created
    new = summary["reindex"]["new_index"]
    texts = [t for t in (rc.first_sentence(x) for x in rc.sample_texts(os_client, new, "text", 30, 0)) if t]
    assert measured == pytest.approx(_exact_recall(os_client, new, st_model, texts), abs=0.1)  # 30 of the 40 queries


@pytest.mark.parametrize("mode,floor,ceiling", [("in_memory", 0.0, 0.9), ("on_disk", 0.95, 1.0)])
def test_compressed_faiss_fields_are_measured(os_client, make_config, index_name, tmp_path, mode, floor, ceiling):
    """32x binary quantisation: on_disk rescores with the full vectors by default, in_memory does not."""
    _require_faiss(os_client)
    with open(make_config().source.path, encoding="utf-8") as f:
        rows = [json.loads(x) for x in f.read().splitlines()[:150]]
    cfg = make_config(source_path=write_jsonl(tmp_path / "d.jsonl", rows), sink="opensearch", index=index_name,
                      overrides={"sink.knn.engine": "faiss", "sink.knn.mode": mode, "sink.knn.compression_level": "32x"})
    hold_model(cfg)
    s = run_ingest(cfg)
    assert s.recall["params"]["compression_level"] == "32x" and s.recall["params"]["mode"] == mode
    assert floor <= s.recall["recall_at_k"] <= ceiling, s.recall
    assert any("recall@10" in w for w in s.warnings) == (s.recall["recall_at_k"] < rc.LOW_RECALL)


def test_chunked_indexes_say_why_recall_is_not_measured(os_client, make_config, index_name, tmp_path):
    with open(make_config().source.path, encoding="utf-8") as f:
        rows = [json.loads(x) for x in f.read().splitlines()[:20]]
    cfg = make_config(source_path=write_jsonl(tmp_path / "d.jsonl", rows), sink="opensearch", index=index_name,
                      overrides={"chunking": {"mode": "chunk", "token_limit": 64, "overlap_rate": 0.1}})
    hold_model(cfg)
    s = run_ingest(cfg)
    assert s.indexed == 20 and s.recall["recall_at_k"] is None
    assert s.recall["skipped"] == "chunked index: vectors are per chunk, so recall per document is not measured"
