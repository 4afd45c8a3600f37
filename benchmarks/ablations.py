"""Variants of the pipeline, one setting changed at a time, at the reference batch size.

Fixed-size batches, batches sorted by characters (not tokens), bulk requests in line (no overlap) or one
in flight, refreshes disabled while loading (``bulk_refresh: disable``), and one torch thread for the
raw model.
"""
from __future__ import annotations

from typing import Any

from benchmarks.baselines import raw_encode
from benchmarks.harness import Bench
from benchmarks.opensearch_runs import indexing_stage
from benchmarks.pipeline_runs import pipeline


def ablations(bench: Bench, ref: Any) -> None:
    """Each ablation as a run of its own (``ref``: the raw vectors the indexing-stage ablations index)."""
    import torch

    b = bench.b0
    pipeline(bench, "parquet", b, "ablation_fixed_batches", encoder={"batching": {"mode": "fixed"}}, batching="fixed")
    pipeline(
        bench, "parquet", b, "ablation_sorted_by_chars", encoder={"batching": {"length": "chars"}}, batching="sorted/chars"
    )
    if bench.os_url:
        pipeline(bench, "opensearch", b, "ablation_os_no_overlap", sink_extra={"bulk": {"in_flight": 0}}, in_flight=0)
        pipeline(bench, "opensearch", b, "ablation_os_in_flight_1", sink_extra={"bulk": {"in_flight": 1}}, in_flight=1)
        indexing_stage(bench, ref, name="ablation_stage_no_overlap", bulk={"in_flight": 0})
        pipeline(
            bench,
            "opensearch",
            b,
            "ablation_os_refresh_disabled",
            sink_extra={"bulk_refresh": "disable"},
            bulk_refresh="disable",
        )
        indexing_stage(bench, ref, name="ablation_stage_refresh_disabled", bulk_refresh="disable")
    if bench.threads > 1 and "threads" not in bench.skip:
        torch.set_num_threads(1)
        try:
            raw_encode(bench, b, name="ablation_raw_encode_1_thread", threads=1)
        finally:
            torch.set_num_threads(bench.threads)
