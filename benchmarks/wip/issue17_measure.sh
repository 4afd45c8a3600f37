#!/bin/bash
# Scratch for issue 17 (see WIP-issue17.md): to be folded into the growth benchmark (item 4).
# usage: measure.sh TREE N DEDUPE(true|false) LABEL  -> appends "label n dedupe peak_rss_kib seconds exit" to /tmp/wh/results.txt
set -u
TREE=$1 N=$2 DEDUP=$3 LABEL=$4
. /work/main/.venv/bin/activate
cd "$TREE"; export PYTHONPATH=$PWD HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
D=/tmp/wh/run-$LABEL-$N-$DEDUP; rm -rf "$D"; mkdir -p "$D"
cat > "$D/config.yaml" <<YAML
run: {name: mem-$N}
source: {type: jsonl, path: /tmp/wh/corpus-$N.jsonl, id_field: id, text_fields: [title, body], metadata_fields: [topic], deduplicate: $DEDUP}
encoder: {type: sentence_transformers, model: tiny, model_path: /tmp/wh/tiny, device: cpu, batch_size: 64}
sink: {type: parquet, path: $D/out}
dead_letter: {path: $D/dl}
YAML
/usr/bin/time -v neural-ingest run "$D/config.yaml" > "$D/log" 2> "$D/time"; rc=$?
rss=$(grep "Maximum resident" "$D/time" | awk '{print $NF}'); wall=$(grep "Elapsed (wall" "$D/time" | awk '{print $NF}')
echo "$LABEL n=$N dedupe=$DEDUP peak_rss_kib=$rss wall=$wall rc=$rc" | tee -a /tmp/wh/results.txt
