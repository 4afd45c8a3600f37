#!/usr/bin/env bash
# The whole test suite against a real OpenSearch 2.19.6 on 127.0.0.1, then the k-NN tests (-m knn, each on
# the lucene and the faiss engine) against OpenSearch 3.5.0 with the k-NN plugin only. Both nodes are
# assembled from Maven Central by scripts/opensearch-local.sh, which builds the faiss libraries once from
# ../shared/knn-natives and caches them. `ruff check .` and `mypy` run first and fail the run fast.
# Extra arguments go to both pytest runs.
#   NEURAL_INGEST_TEST_3X=0           skip the 3.x run
#   NEURAL_INGEST_TEST_3X_VERSION     3.5.0; NEURAL_INGEST_TEST_PORT_3X (9255); NEURAL_INGEST_OPENSEARCH_URL_3X: use that node
# Under CI=true a node that does not start, or one without the faiss libraries, is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Lint and types gate the run, before any node starts (configuration: pyproject.toml [tool.ruff], [tool.mypy]).
ruff check . || { echo "test: ruff check failed (ruff check --fix fixes the [*] ones)" >&2; exit 1; }
mypy || { echo "test: mypy failed (strict on neural_ingest; see [tool.mypy] in pyproject.toml)" >&2; exit 1; }
ci() { [ "${CI:-}" = "true" ]; }
STARTED=()
trap 'for n in "${STARTED[@]}"; do bash scripts/opensearch-local.sh stop --name "$n" || true; done' EXIT

node() {   # NAME PORT VERSION PLUGINS: start it and set NODE_URL; under CI=true it must have faiss
  local state; NODE_URL=""
  if ! NODE_URL=$(OPENSEARCH_VERSION=$3 bash scripts/opensearch-local.sh start --name "$1" --port "$2" --plugins "$4"); then
    ci && { echo "test: OpenSearch $3 did not start, and under CI=true that is a failure" >&2; exit 1; }
    echo "test: OpenSearch $3 did not start: tests that need it will be skipped" >&2; return 1
  fi
  STARTED+=("$1")
  state=$(bash scripts/opensearch-local.sh status --name "$1" | grep 'faiss:' || true)
  echo "test: node $1 (OpenSearch $3, $4):$state" >&2
  if [[ $state != *"faiss: available"* ]] && ci; then
    echo "test: under CI=true the faiss engine is tested: the k-NN native sources (../shared/knn-natives) are required" >&2
    exit 1
  fi
}

rc=0
if [ -z "${NEURAL_INGEST_OPENSEARCH_URL:-}" ]; then
  if node test "${NEURAL_INGEST_TEST_PORT:-9250}" 2.19.6 all; then export NEURAL_INGEST_OPENSEARCH_URL=$NODE_URL; fi
fi
python -m pytest "$@" || rc=$?

if [ "${NEURAL_INGEST_TEST_3X:-1}" != 0 ]; then
  v3=${NEURAL_INGEST_TEST_3X_VERSION:-3.5.0}
  url3=${NEURAL_INGEST_OPENSEARCH_URL_3X:-}
  if [ -z "$url3" ] && node test-3x "${NEURAL_INGEST_TEST_PORT_3X:-9255}" "$v3" knn; then url3=$NODE_URL; fi
  if [ -n "$url3" ]; then
    echo "test: the k-NN tests (lucene and faiss) on OpenSearch $v3 at $url3" >&2
    r=0; NEURAL_INGEST_OPENSEARCH_URL=$url3 python -m pytest -m knn "$@" || r=$?
    [ "$r" = 5 ] || [ "$r" = 0 ] || rc=$r   # 5: the arguments selected no k-NN test
  fi
fi
exit "$rc"
