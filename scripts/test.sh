#!/usr/bin/env bash
# The whole test suite against a real OpenSearch on 127.0.0.1 (assembled from Maven Central and
# cached by scripts/opensearch-local.sh). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PORT=${NEURAL_INGEST_TEST_PORT:-9250}
if [ -z "${NEURAL_INGEST_OPENSEARCH_URL:-}" ]; then
  if bash scripts/opensearch-local.sh start --name test --port "$PORT"; then
    export NEURAL_INGEST_OPENSEARCH_URL="http://127.0.0.1:$PORT"
    trap 'bash scripts/opensearch-local.sh stop --name test || true' EXIT
  elif [ "${CI:-}" = "true" ]; then
    echo "test: OpenSearch did not start, and under CI=true that is a failure" >&2
    exit 1
  else
    echo "test: OpenSearch did not start: tests that need it will be skipped" >&2
  fi
fi
python -m pytest "$@"
