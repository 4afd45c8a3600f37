#!/usr/bin/env bash
# One command for a newcomer: install, embed the sample corpus with all-MiniLM-L6-v2 on
# DirectRunner into the local Parquet dataset, then search it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
mkdir -p .neural-ingest
neural-ingest run configs/quickstart.yaml --summary .neural-ingest/quickstart-summary.json
echo
echo "Summary written to .neural-ingest/quickstart-summary.json. A sample search:"
neural-ingest search configs/quickstart.yaml "why does bread dough rise" -k 5
