"""The ingest pipeline on a real Flink cluster through Beam's portable FlinkRunner.

scripts/flink-local.sh starts, on 127.0.0.1, a standalone Flink (jobmanager and taskmanager as
separate JVMs, from the pinned apache-flink distribution), the Beam Flink job server and a Python
SDK worker pool (the EXTERNAL environment). `neural-ingest run` submits the quickstart corpus config
to it; the index must hold the same ids and vectors as an in-process DirectRunner run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from distributed_support import (
    CONFIG,
    assert_once_per_process,
    assert_same_index,
    index_contents,
    model_loads,
    overrides,
    reference,
)
from support import ROOT

from neural_ingest.encoders.base import MODEL_LOAD_LOG_ENV

pytestmark = [pytest.mark.slow, pytest.mark.opensearch]

SCRIPT = ROOT / "scripts" / "flink-local.sh"
INSTALL_TIMEOUT = 900  # first run only: Flink from PyPI, the job server from Maven Central (cached after)
START_TIMEOUT = 240
RUN_TIMEOUT = 600


def _ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@dataclass
class Cluster:
    name: str
    beam_args: list[str]
    loads: Path

    def logs(self) -> str:
        r = subprocess.run(["bash", str(SCRIPT), "logs", "--name", self.name, "--lines", "40"],
                           capture_output=True, text=True, timeout=60)
        return r.stdout[-12000:]


@pytest.fixture(scope="module")
def flink(tmp_path_factory):
    missing = [tool for tool in ("java", "mvn", "unzip", "curl") if not shutil.which(tool)]
    if missing:
        msg = f"the Flink test needs {', '.join(missing)} on PATH"
        pytest.fail(msg) if _ci() else pytest.skip(msg)
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(SCRIPT), "install"], capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if r.returncode != 0:
        pytest.fail(f"flink-local.sh install failed:\n{r.stderr[-6000:]}")
    installed = time.monotonic() - t0

    tmp = tmp_path_factory.mktemp("flink")
    loads = tmp / "model-loads.jsonl"
    name = f"pytest-{os.getpid()}"
    env = {**os.environ, MODEL_LOAD_LOG_ENV: str(loads), "HF_HUB_OFFLINE": "1", "FLINK_START_TIMEOUT": str(START_TIMEOUT)}
    cmd = [
        "bash",
        str(SCRIPT),
        "start",
        "--name",
        name,
        "--python",
        sys.executable,
        "--free-ports",
        "--slots",
        "2",
        "--parallelism",
        "2",
    ]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=START_TIMEOUT + 60)
    if r.returncode != 0:  # the script prints every log's tail and stops what it started
        subprocess.run(["bash", str(SCRIPT), "delete", "--name", name], capture_output=True, timeout=120)
        pytest.fail(f"the Flink cluster did not start:\n{r.stderr[-12000:]}")
    print(f"\nflink: install {installed:.1f}s, start {time.monotonic() - t0:.1f}s: {r.stdout.strip()}")
    cluster = Cluster(name, r.stdout.split(), loads)
    try:
        yield cluster
    finally:
        subprocess.run(["bash", str(SCRIPT), "delete", "--name", name], capture_output=True, timeout=120)


def _run_on_flink(flink: Cluster, index: str, tmp_path: Path, beam_args: list[str], sets: list[str] = ()) -> dict:
    """`neural-ingest run configs/opensearch.yaml ... -- BEAM_ARGS` from the checkout, as a user types it
    (the config's relative source path must reach the workers resolved); returns the summary."""
    summary_path = tmp_path / "summary.json"
    sets = [*overrides(index, tmp_path), *sets]
    args = [
        "run",
        os.path.relpath(CONFIG, ROOT),
        *[a for o in sets for a in ("--set", o)],
        "--summary",
        str(summary_path),
        "--",
        *beam_args,
    ]
    exe = shutil.which("neural-ingest", path=str(Path(sys.executable).parent)) or "neural-ingest"
    t0 = time.monotonic()
    try:
        r = subprocess.run(
            [exe, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            env={**os.environ, "OPENSEARCH_URL": os.environ["NEURAL_INGEST_OPENSEARCH_URL"], "HF_HUB_OFFLINE": "1"},
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the Flink run took over {RUN_TIMEOUT}s:\n{(e.stderr or b'')[-4000:]!r}\n{flink.logs()}")
    if r.returncode != 0:
        pytest.fail(f"neural-ingest run on Flink failed (exit {r.returncode}):\n{r.stderr[-6000:]}\n{flink.logs()}")
    print(f"flink run ({' '.join(beam_args[-4:])}): {time.monotonic() - t0:.1f}s")
    return json.loads(summary_path.read_text())


def test_flink_runner_indexes_what_direct_runner_does(flink, opensearch_url, os_client, tmp_path):
    """The worker-pool (EXTERNAL) environment, as with a Kubernetes sidecar: the whole sample corpus."""
    want = reference(opensearch_url, tmp_path / "reference")
    index = f"t-flink-{uuid.uuid4().hex[:6]}"
    assert flink.beam_args[:2] == ["--runner", "FlinkRunner"] and "--flink_master" in flink.beam_args
    assert "EXTERNAL" in flink.beam_args
    try:
        summary = _run_on_flink(flink, index, tmp_path, flink.beam_args)
        got = index_contents(os_client, index)
    finally:
        os_client.indices.delete(index=index, ignore=[404])

    assert summary["runner"] == "FlinkRunner"
    # Counters come back from the Flink job through the job service's metrics.
    assert summary["read"] == want["summary"].read == 300, summary
    assert summary["indexed"] == want["summary"].indexed and summary["failed"] == 0 and summary["reconciles"], summary
    assert summary["encoded"] == 300
    assert_same_index(got, want["docs"])
    # The model was loaded by SDK worker processes of the pool, once per process.
    workers = assert_once_per_process(model_loads(flink.loads), driver_pid=-1)
    assert workers, f"no SDK worker loaded the model: {model_loads(flink.loads)}"


def test_flink_process_environment(flink, opensearch_url, os_client, tmp_path):
    """The PROCESS environment: the taskmanager starts SDK workers through scripts/beam-worker-boot.
    A slice of the corpus keeps it short: what is tested is how workers start, not throughput."""
    want = reference(opensearch_url, tmp_path / "reference")
    lines = (ROOT / "data" / "sample" / "docs.jsonl").read_text().splitlines()[:24]
    subset = tmp_path / "subset.jsonl"
    subset.write_text("\n".join(lines) + "\n")
    ids = {json.loads(line)["id"] for line in lines}
    i = flink.beam_args.index("--environment_type")
    boot = {"command": str(ROOT / "scripts" / "beam-worker-boot"), "env": {"NEURAL_INGEST_WORKER_PYTHON": sys.executable}}
    args = [
        *flink.beam_args[:i],
        *flink.beam_args[i + 4 :],
        "--environment_type",
        "PROCESS",
        "--environment_config",
        json.dumps(boot),
    ]
    index = f"t-flink-process-{uuid.uuid4().hex[:6]}"
    try:
        summary = _run_on_flink(flink, index, tmp_path, args, [f"source.path={subset}"])
        got = index_contents(os_client, index)
    finally:
        os_client.indices.delete(index=index, ignore=[404])
    assert summary["read"] == summary["indexed"] == len(ids) and summary["reconciles"], summary
    assert_same_index(got, {k: v for k, v in want["docs"].items() if k in ids})
