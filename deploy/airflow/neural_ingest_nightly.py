"""Airflow DAG: the nightly `neural-ingest reindex` (docs/scheduling.md).

Copy this file into the DAGs folder of an Airflow (2.4+ or 3) whose workers have neural-ingest
installed (`pip install neural-ingest` into the worker image, or the image from deploy/Dockerfile).
Settings, read when a task runs (Jinja, so parsing the DAG never touches the metadata database):
the Airflow Variables `neural_ingest_config` (the config path) and `neural_ingest_summary_dir` (one
run summary per logical date); without a Variable, the environment variable NEURAL_INGEST_CONFIG /
NEURAL_INGEST_SUMMARY_DIR of the DAG processor, else the default below. Tasks:

    plan (reindex --dry-run: config, models, cluster, alias, lock) >> reindex >> report

Retries follow the CLI's exit codes (neural_ingest/exit_codes.py): 2 (config, model or cluster
problem), 4 (validation failed: alias untouched, the new index kept for inspection) and 5 (another run
held the lock past `--wait`) fail the task at once (AirflowFailException: retrying cannot fix them);
any other failure (1, a kill) is retried. `max_active_runs=1` keeps this DAG from overlapping itself;
the OpenSearch lock also covers runs started elsewhere (a manual run, a Kubernetes CronJob).

To run it as a Kubernetes pod instead, use the cncf.kubernetes provider's KubernetesPodOperator with
image="neural-ingest:0.1.0-minilm" and the same arguments (deploy/k8s/cronjob.yaml has the pod spec).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess

from airflow import DAG

try:  # Airflow 3: operators live in the standard provider, exceptions in the task SDK
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk.exceptions import AirflowException, AirflowFailException
except ImportError:  # Airflow 2
    from airflow.exceptions import AirflowException, AirflowFailException
    from airflow.operators.python import PythonOperator

log = logging.getLogger(__name__)

DEFAULT_CONFIG = os.environ.get("NEURAL_INGEST_CONFIG", "/opt/neural-ingest/configs/reindex.yaml")
DEFAULT_SUMMARY_DIR = os.environ.get("NEURAL_INGEST_SUMMARY_DIR", "/opt/neural-ingest/summaries")
CONFIG = f"{{{{ var.value.get('neural_ingest_config', {DEFAULT_CONFIG!r}) }}}}"
SUMMARY = f"{{{{ var.value.get('neural_ingest_summary_dir', {DEFAULT_SUMMARY_DIR!r}) }}}}/{{{{ ds_nodash }}}}.json"
LOCK_WAIT_SECONDS = 900
SCHEDULE = "30 2 * * *"  # 02:30 UTC every night
# Exit codes a retry cannot fix (the README's table): the task fails without its retries.
NO_RETRY_EXIT_CODES = {
    2: "a config, model or cluster problem to fix (the line above says which)",
    4: "validation failed: the alias was not touched, the new index is kept for inspection",
    5: "another run holds the alias's lock",
}


def neural_ingest(args: list[str]) -> None:
    """Run `neural-ingest ARGS`, its output streamed to the task log; a failure fails the task, without
    retries for the exit codes in NO_RETRY_EXIT_CODES."""
    with subprocess.Popen(["neural-ingest", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.info("%s", line.rstrip())
    rc = proc.returncode
    if rc in NO_RETRY_EXIT_CODES:
        raise AirflowFailException(f"neural-ingest {args[0]} exited {rc}: {NO_RETRY_EXIT_CODES[rc]}; not retried")
    if rc != 0:
        raise AirflowException(f"neural-ingest {args[0]} exited {rc}")


def report(summary_path: str) -> None:
    """One line from the run summary: alias -> new index, and what was encoded, reused, deleted."""
    with open(summary_path) as f:
        s = json.load(f)
    log.info("%s -> %s encoded %s reused %s deleted %s", s["reindex"]["alias"], s["reindex"]["new_index"],
             s["encoded"], s["reused"], s["deleted"])


with DAG(
    dag_id="neural_ingest_nightly_reindex",
    description="Blue/green re-embedding behind an OpenSearch alias (neural-ingest reindex)",
    schedule=SCHEDULE,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "search", "retries": 1, "retry_delay": dt.timedelta(minutes=15)},
    tags=["neural-ingest", "opensearch", "embeddings"],
) as dag:
    plan = PythonOperator(
        task_id="plan",
        python_callable=neural_ingest,
        op_kwargs={"args": ["reindex", CONFIG, "--dry-run"]},
        retries=0,
    )
    reindex = PythonOperator(
        task_id="reindex",
        python_callable=neural_ingest,
        op_kwargs={"args": ["reindex", CONFIG, "--wait", str(LOCK_WAIT_SECONDS), "--summary", SUMMARY]},
        execution_timeout=dt.timedelta(hours=6),
    )
    summary = PythonOperator(task_id="report", python_callable=report, op_kwargs={"summary_path": SUMMARY}, retries=0)
    plan >> reindex >> summary
