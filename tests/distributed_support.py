"""Helpers shared by the distributed-runner tests (Flink, multi-process DirectRunner).

Both compare an index written by another runner with one written by the in-process DirectRunner
from the same config: the reference run is done once per test session.
"""
from __future__ import annotations

import atexit
import json
import os
import uuid
from pathlib import Path
from typing import Any

from support import ROOT, cosine

# The quickstart corpus into OpenSearch: configs/opensearch.yaml is configs/quickstart.yaml with the
# OpenSearch sink (hosts from $OPENSEARCH_URL).
CONFIG = ROOT / "configs" / "opensearch.yaml"
_REFERENCE: dict[str, Any] = {}


def overrides(index: str, tmp: Path) -> list[str]:
    return [f"sink.index={index}", f"dead_letter.path={tmp / 'dlq'}"]


def load_config_for(opensearch_url: str, index: str, tmp: Path):
    """CONFIG as `neural-ingest run` loads it, with OPENSEARCH_URL pointing at the test server."""
    from neural_ingest.config import load_config

    before = os.environ.get("OPENSEARCH_URL")
    os.environ["OPENSEARCH_URL"] = opensearch_url
    try:
        return load_config(CONFIG, overrides(index, tmp))
    finally:
        if before is None:
            os.environ.pop("OPENSEARCH_URL", None)
        else:
            os.environ["OPENSEARCH_URL"] = before


def index_contents(client, index: str) -> dict[str, dict[str, Any]]:
    client.indices.refresh(index=index)
    res = client.search(index=index, body={"size": 10000, "query": {"match_all": {}}})
    return {h["_id"]: h["_source"] for h in res["hits"]["hits"]}


def reference(opensearch_url: str, tmp: Path) -> dict[str, Any]:
    """One in-process DirectRunner run of CONFIG into a fresh index: {"index", "docs", "summary"}."""
    if "docs" in _REFERENCE:
        return _REFERENCE
    from opensearchpy import OpenSearch

    from neural_ingest.pipelines.ingest import run_ingest

    index = f"t-reference-direct-{uuid.uuid4().hex[:6]}"
    client = OpenSearch(hosts=[opensearch_url], timeout=120)
    atexit.register(lambda: client.indices.delete(index=index, ignore=[404]))
    summary = run_ingest(load_config_for(opensearch_url, index, tmp), ["--runner", "DirectRunner"])
    assert summary.reconciles and summary.failed == 0, summary.to_dict()
    _REFERENCE.update(index=index, docs=index_contents(client, index), summary=summary)
    return _REFERENCE


def assert_same_index(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> None:
    """Exactly the same ids, every vector at cosine >= 0.9999, the same metadata."""
    assert set(got) == set(want), f"ids differ: {len(set(got) - set(want))} extra, {len(set(want) - set(got))} missing"
    worst = min(((cosine(got[i]["embedding"], want[i]["embedding"]), i) for i in want), default=(1.0, None))
    assert worst[0] >= 0.9999, f"vector of {worst[1]} differs: cosine {worst[0]:.6f}"
    for i, src in want.items():
        for key in ("topic", "year", "source"):
            assert got[i].get(key) == src.get(key), (i, key)


def model_loads(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_once_per_process(loads: list[dict[str, Any]], driver_pid: int) -> set[int]:
    """Every process loaded each model at most once; returns the worker (non-driver) pids."""
    seen: dict[tuple[int, str], int] = {}
    for rec in loads:
        seen[(rec["pid"], rec["key"])] = seen.get((rec["pid"], rec["key"]), 0) + 1
    again = {k: n for k, n in seen.items() if n > 1}
    assert not again, f"a process loaded the same model more than once: {again}"
    return {pid for pid, _ in seen if pid != driver_pid}
