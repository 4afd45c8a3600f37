"""DirectRunner in multi-process mode: the same index as an in-process run, one model load per process."""
from __future__ import annotations

import os
import uuid

import pytest
from distributed_support import (
    assert_once_per_process,
    assert_same_index,
    index_contents,
    load_config_for,
    model_loads,
    reference,
)

from neural_ingest.encoders.base import MODEL_LOAD_LOG_ENV

pytestmark = pytest.mark.opensearch


def test_multi_process_direct_runner_matches_in_process(opensearch_url, os_client, tmp_path, monkeypatch):
    from neural_ingest.pipelines.ingest import run_ingest

    want = reference(opensearch_url, tmp_path / "reference")
    loads = tmp_path / "model-loads.jsonl"
    monkeypatch.setenv(MODEL_LOAD_LOG_ENV, str(loads))  # SDK worker processes inherit the environment
    index = f"t-multiprocess-{uuid.uuid4().hex[:6]}"
    try:
        summary = run_ingest(
            load_config_for(opensearch_url, index, tmp_path),
            ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"],
        )
        got = index_contents(os_client, index)
    finally:
        os_client.indices.delete(index=index, ignore=[404])

    assert summary.read == want["summary"].read == 300
    assert summary.indexed == want["summary"].indexed and summary.failed == 0 and summary.reconciles
    assert_same_index(got, want["docs"])
    workers = assert_once_per_process(model_loads(loads), driver_pid=os.getpid())
    # The encoding ran in the worker processes (at most the 2 asked for), each loading the model once.
    assert 1 <= len(workers) <= 2, model_loads(loads)
