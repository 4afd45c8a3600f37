#!/usr/bin/env bash
# A throwaway Airflow for tests/deploy/test_airflow_dag.py: apache-airflow (and the standard provider,
# where BashOperator lives in Airflow 3) in its own venv, never in the project's .venv (Airflow pins
# half of PyPI). Cached: a second call with the same version returns at once. Prints the venv's python.
#   AIRFLOW_VERSION (default 3.3.2)   NEURAL_INGEST_AIRFLOW_VENV (default ~/.cache/neural-ingest/airflow-venv)
# Constraints: Airflow's own file for this Airflow and Python version (its documented way to install),
# from the URL Airflow publishes; where that cannot be reached (only package registries), the copy of it
# kept next to this script (scripts/airflow-constraints-<airflow>-py<python>.txt), else none.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON:-python3}
AIRFLOW_VERSION=${AIRFLOW_VERSION:-3.3.2}
VENV=${NEURAL_INGEST_AIRFLOW_VENV:-${NEURAL_INGEST_CACHE:-$HOME/.cache/neural-ingest}/airflow-venv}
pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
stamp="$VENV/.airflow-$AIRFLOW_VERSION-py$pyver"
if [ -f "$stamp" ]; then echo "$VENV/bin/python"; exit 0; fi
rm -rf "$VENV"
"$PY" -m venv "$VENV"
url="https://raw.githubusercontent.com/apache/airflow/constraints-$AIRFLOW_VERSION/constraints-$pyver.txt"
local_copy="$here/airflow-constraints-$AIRFLOW_VERSION-py$pyver.txt"
constraints=()
if curl -fsSL --max-time 20 "$url" -o "$VENV/constraints.txt" 2>/dev/null; then
  constraints=(--constraint "$VENV/constraints.txt"); echo "airflow-venv: constraints from $url" >&2
elif [ -f "$local_copy" ]; then
  constraints=(--constraint "$local_copy"); echo "airflow-venv: constraints from $local_copy" >&2
else
  echo "airflow-venv: no constraints file for Airflow $AIRFLOW_VERSION on Python $pyver: resolving freely" >&2
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >&2
"$VENV/bin/python" -m pip install -q "${constraints[@]}" "apache-airflow==$AIRFLOW_VERSION" apache-airflow-providers-standard >&2
touch "$stamp"
echo "$VENV/bin/python"
