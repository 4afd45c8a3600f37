"""deploy/airflow: the DAG as Airflow itself loads it (DagBag in a throwaway Airflow venv made by
scripts/airflow-venv.sh): no import errors, the task order, the Variables it promises rendered by
Airflow's Jinja, and the retry policy per exit code of the CLI it runs."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from support import ROOT

DAG_FILE = ROOT / "deploy" / "airflow" / "neural_ingest_nightly.py"
SCRIPT = ROOT / "scripts" / "airflow-venv.sh"


def _venv_python() -> Path:
    cache = Path(os.environ.get("NEURAL_INGEST_CACHE", Path.home() / ".cache" / "neural-ingest"))
    return Path(os.environ.get("NEURAL_INGEST_AIRFLOW_VENV", cache / "airflow-venv")) / "bin" / "python"


@pytest.fixture(scope="module")
def airflow_python() -> Path:
    """The Airflow venv's python; CI (CI=true) creates the venv when it is missing, elsewhere the test skips."""
    python = _venv_python()
    if not python.exists():
        if os.environ.get("CI") != "true":
            pytest.skip(f"no Airflow venv at {python.parent.parent}: bash scripts/airflow-venv.sh makes one (CI=true does)")
        r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, check=False)
        assert r.returncode == 0, r.stderr[-3000:]
        python = Path(r.stdout.strip().splitlines()[-1])
    return python


PROBE = r"""
import json, os, sys
from airflow.dag_processing.dagbag import DagBag  # Airflow 3
bag = DagBag(dag_folder=sys.argv[1])
out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}
dag = bag.dags.get("neural_ingest_nightly_reindex")
if dag is not None:
    timetable = dag.timetable
    out["schedule"] = getattr(timetable, "_expression", None) or getattr(timetable, "expression", None) or str(timetable)
    out["max_active_runs"], out["catchup"] = dag.max_active_runs, dag.catchup
    out["order"] = {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks}
    out["retries"] = {t.task_id: t.retries for t in dag.tasks}

    class Var:  # the Airflow Variables a user set (var.value.get in the templates)
        @staticmethod
        def get(name, default=None):
            return {"neural_ingest_config": "/cfg/reindex.yaml", "neural_ingest_summary_dir": "/runs"}.get(name, default)

    ctx = {"var": {"value": Var}, "ds_nodash": "20260101"}
    def kwargs(t):  # what a task runs with, rendered by Airflow's Jinja
        return t.render_template(getattr(t, "op_kwargs", None) or {"bash_command": getattr(t, "bash_command", None)}, ctx)

    out["rendered"] = {t.task_id: kwargs(t) for t in dag.tasks}
    # the retry policy per exit code: the reindex task against a `neural-ingest` that exits with CODE
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
    task = dag.get_task("reindex")

    def attempt():
        if hasattr(task, "python_callable"):
            return task.python_callable(**kwargs(task))
        import subprocess  # a BashOperator: any non-zero exit is an AirflowException (retried)
        rc = subprocess.run(["bash", "-c", kwargs(task)["bash_command"]]).returncode
        if rc:
            raise AirflowException(f"exit {rc}")

    policy = {}
    for code in (0, 1, 2, 3, 4, 5, 130, 137):
        os.environ["FAKE_EXIT"] = str(code)
        try:
            attempt()
            policy[code] = "ok"
        except AirflowFailException:
            policy[code] = "fail, no retry"
        except AirflowException:
            policy[code] = "retry"
    out["policy"] = policy
print("RESULT " + json.dumps(out))
"""


def test_dag_loads_in_airflow(airflow_python, tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / DAG_FILE.name).write_text(DAG_FILE.read_text())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "neural-ingest"
    fake.write_text('#!/bin/sh\necho "neural-ingest $*"\nexit "$FAKE_EXIT"\n')
    fake.chmod(0o755)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("PYTHONPATH", None)  # Airflow's own environment, not the project's
    r = subprocess.run(
        [str(airflow_python), "-c", PROBE, str(dags)], capture_output=True, text=True, env=env, cwd=tmp_path, check=False
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert out["import_errors"] == {} and out["dags"] == ["neural_ingest_nightly_reindex"]
    assert out["schedule"] == "30 2 * * *" and out["max_active_runs"] == 1 and out["catchup"] is False
    assert out["order"] == {"plan": ["reindex"], "reindex": ["report"], "report": []}
    assert out["retries"] == {"plan": 0, "reindex": 1, "report": 0}
    # exit codes (neural_ingest/exit_codes.py): 2 config, 4 validation failed, 5 locked are not retried
    assert out["policy"] == {
        "0": "ok",
        "1": "retry",
        "2": "fail, no retry",
        "3": "retry",
        "4": "fail, no retry",
        "5": "fail, no retry",
        "130": "retry",
        "137": "retry",
    }
    # the Airflow Variables the docstring promises are what the tasks run with
    assert out["rendered"]["plan"]["args"] == ["reindex", "/cfg/reindex.yaml", "--dry-run"]
    assert out["rendered"]["reindex"]["args"] == [
        "reindex",
        "/cfg/reindex.yaml",
        "--wait",
        "900",
        "--summary",
        "/runs/20260101.json",
    ]
    assert out["rendered"]["report"]["summary_path"] == "/runs/20260101.json"
    assert "neural-ingest reindex /cfg/reindex.yaml" in r.stdout + r.stderr  # the CLI's output reaches the task log


def test_no_retry_codes_are_the_cli_exit_codes():
    """The DAG's list names the CLI's real codes (read from its source: the project's venv has no Airflow)."""
    from neural_ingest import exit_codes

    text = DAG_FILE.read_text()
    for code in (exit_codes.USER, exit_codes.VALIDATION, exit_codes.LOCKED):
        assert f"    {code}: " in text
