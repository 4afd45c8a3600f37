"""The pipeline end to end (``run_ingest``: read JSONL, prepare, encode, write) into Parquet or OpenSearch.

Every run starts with the model already loaded (the workload's, as a long-lived worker has it) and must
index every document; what it wrote is checked (OpenSearch: count, refresh interval after) and deleted.
"""
from __future__ import annotations

import shutil
import uuid
from typing import Any

from benchmarks import opensearch_node
from benchmarks.common import timed
from benchmarks.harness import MODEL, Bench


def pipeline_config(
    bench: Bench, sink: str, b: int, tag: str, encoder: dict[str, Any] | None = None, sink_extra: dict[str, Any] | None = None
) -> Any:
    """The run configuration: the corpus, the benchmark's model at batch size ``b`` (``encoder`` overrides), the sink."""
    from neural_ingest.config import parse_config

    enc = {"type": "sentence_transformers", "model": MODEL, "device": "cpu", "batch_size": b, "threads": bench.threads}
    enc.update(encoder or {})
    data: dict[str, Any] = {
        "run": {"name": f"bench-{tag}", "progress_every_seconds": 3600},
        "source": {
            "type": "jsonl",
            "path": bench.w.corpus.path,
            "id_field": "id",
            "text_fields": ["text"],
            "metadata_fields": ["source"],
        },
        "encoder": enc,
        "dead_letter": {"path": str(bench.work / "dlq")},
    }
    if sink == "parquet":
        data["sink"] = {"type": "parquet", "path": str(bench.work / f"ds-{tag}")}
    else:
        data["sink"] = {
            "type": "opensearch",
            "hosts": [bench.os_url],
            "index": f"bench-{tag}-{uuid.uuid4().hex[:6]}",
            "knn": {"engine": "lucene"},
        }
        data["sink"].update(sink_extra or {})
    return parse_config(data)


def pipeline(
    bench: Bench,
    sink: str,
    b: int,
    name: str,
    encoder: dict[str, Any] | None = None,
    sink_extra: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One timed ``run_ingest`` into ``sink`` ("parquet" or "opensearch"), recorded as ``name``; ``extra`` goes in the row."""
    from neural_ingest.pipelines.ingest import run_ingest

    n = len(bench.w.texts)
    cfg = pipeline_config(bench, sink, b, f"{name}-{b}", encoder, sink_extra)
    secs, summary = timed(lambda: run_ingest(cfg))
    if summary.indexed != n or summary.failed:
        raise RuntimeError(f"{name}: indexed {summary.indexed} of {n}, failed {summary.failed_by_reason}")
    info: dict[str, Any] = {}
    if sink == "opensearch":
        client = opensearch_node.client(bench.os_url)
        index = cfg.sink.index
        count = client.count(index=index)["count"]
        settings = client.indices.get_settings(index=index)[index]["settings"]["index"]
        info = {"count_in_index": count, "refresh_interval_after": settings.get("refresh_interval", "default")}
        client.indices.delete(index=index, ignore=[404])
    else:
        shutil.rmtree(cfg.sink.path, ignore_errors=True)
    return bench.record(name, b, secs, n, **info, **extra)
