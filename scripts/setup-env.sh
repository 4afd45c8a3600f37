#!/usr/bin/env bash
# Create .venv and install neural-ingest with what the quickstart and the tests need (the test
# extra, and the fast extra so that the ONNX Runtime / OpenVINO backends are tested too).
# Installs the CPU build of torch from ../shared/wheels when that folder exists (a plain
# `pip install torch` would pull gigabytes of CUDA packages), from PyPI otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
WHEELS=${NEURAL_INGEST_WHEELS:-../shared/wheels}

[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
stamp=.venv/.neural-ingest-installed
want=$(cat pyproject.toml scripts/setup-env.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup-env: .venv is up to date"
  exit 0
fi
python -m pip install -q --upgrade pip
find_links=()
if [ -d "$WHEELS" ]; then
  find_links=(--find-links "$WHEELS")
  echo "setup-env: using local wheels from $WHEELS"
fi
python -m pip install -q "${find_links[@]}" "torch==${TORCH_VERSION}"
python -m pip install -q "${find_links[@]}" -e ".[test,fast,bench]"
echo "$want" > "$stamp"
echo "setup-env: ready ($(python -c 'import torch, apache_beam, sentence_transformers as st; print(f"torch {torch.__version__}, beam {apache_beam.__version__}, sentence-transformers {st.__version__}")'))"
