"""Airflow DAG: the nightly `neural-ingest reindex` (docs/scheduling.md).

Copy this file into the DAGs folder of an Airflow (2.4+ or 3) whose workers have neural-ingest
installed (`pip install neural-ingest` into the worker image, or the image from deploy/Dockerfile),
and set the Airflow Variables (or environment) below. Tasks:

    plan (reindex --dry-run: config, models, cluster, alias, lock) >> reindex >> report

`reindex` exits 4 when validation fails (the alias is untouched, the new index kept for
inspection) and 5 when another run holds the lock (`--wait` makes it queue first); both fail the
task. Airflow's own `max_active_runs=1` keeps this DAG from overlapping itself; the OpenSearch lock
also covers runs started elsewhere (a manual run, a Kubernetes CronJob).

To run it as a Kubernetes pod instead, replace the BashOperators with the cncf.kubernetes
provider's KubernetesPodOperator(image="neural-ingest:0.1.0", arguments=[...the same arguments...]).
"""
from __future__ import annotations

import datetime as dt
import os
import shlex

from airflow import DAG

try:  # Airflow 3: operators live in the standard provider
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

CONFIG = os.environ.get("NEURAL_INGEST_CONFIG", "/opt/neural-ingest/configs/reindex.yaml")
SUMMARY_DIR = os.environ.get("NEURAL_INGEST_SUMMARY_DIR", "/opt/neural-ingest/summaries")
LOCK_WAIT_SECONDS = 900
SCHEDULE = "30 2 * * *"  # 02:30 UTC every night

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
    plan = BashOperator(
        task_id="plan",
        bash_command=f"neural-ingest reindex {shlex.quote(CONFIG)} --dry-run",
        retries=0,
    )
    summary = f"{SUMMARY_DIR}/{{{{ ds_nodash }}}}.json"  # Jinja: one summary per logical date
    reindex = BashOperator(
        task_id="reindex",
        bash_command=(
            f"neural-ingest reindex {shlex.quote(CONFIG)} --wait {LOCK_WAIT_SECONDS} --summary {summary}"
        ),
        execution_timeout=dt.timedelta(hours=6),
    )
    report = BashOperator(
        task_id="report",
        bash_command=(
            f"python -c \"import json,sys; s=json.load(open('{summary}')); "
            "print(s['reindex']['alias'], '->', s['reindex']['new_index'], "
            "'encoded', s['encoded'], 'reused', s['reused'], 'deleted', s['deleted'])\""
        ),
        retries=0,
    )
    plan >> reindex >> report
