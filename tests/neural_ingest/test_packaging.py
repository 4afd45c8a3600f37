"""The project ships to remote workers as a package: Beam's own stager builds it from --setup_file,
and the staged source distribution installs and imports the pipeline code (as a worker's boot does)."""
from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest
from support import ROOT


@pytest.fixture(scope="module")
def staged_sdist(tmp_path_factory):
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.stager import Stager

    out = tmp_path_factory.mktemp("staging")
    cwd = os.getcwd()
    try:
        resources = Stager.create_job_resources(PipelineOptions(["--setup_file", str(ROOT / "setup.py")]), str(out))
    finally:
        os.chdir(cwd)
    roles = [r.role_payload for r in resources]
    assert any(b"workflow.tar.gz" in p for p in roles), "the package is staged as workflow.tar.gz"
    (tarball,) = [p for p in out.iterdir() if p.name.endswith(".tar.gz")]
    return tarball


def test_setup_file_stages_the_pipeline_code(staged_sdist):
    with tarfile.open(staged_sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for f in ("pyproject.toml", "neural_ingest/distributed.py", "pipelines/ingest.py", "transforms/encode.py",
              "neural_ingest/encoders/dense.py", "neural_ingest/sinks/opensearch.py"):
        assert f in names, f


def test_staged_package_installs_and_imports_like_on_a_worker(staged_sdist, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(staged_sdist),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    code = (
        "import neural_ingest.pipelines.ingest as m, neural_ingest.transforms.encode as e; print(m.__file__); print(e.__file__)"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert all(line.startswith(str(target)) for line in r.stdout.split()), r.stdout
