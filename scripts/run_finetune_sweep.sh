#!/usr/bin/env bash
# Fine-tuning results of issue 4: the same seed, epochs and batch size for ce, scl+ce and gloss+ce.
# Usage: scripts/run_finetune_sweep.sh [OUT_DIR]   (runs go to runs/, logs and metrics to OUT_DIR)
# Each run is `gloss run`, so finished stages are skipped when the sweep is started again.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/finetune}
GLOSS=${GLOSS:-.venv/bin/gloss}
mkdir -p "$OUT/logs"
SEED=0 EPOCHS=3 BATCH=32
run() {  # dataset limit max_length loss
  local name="$1-limit$2-len$3-$(echo "$4" | tr + -)-seed$SEED"
  local cmd=("$GLOSS" run --dataset "$1" --limit "$2" --max-length "$3" --loss "$4" --epochs $EPOCHS
             --batch-size $BATCH --seed $SEED --run-dir "runs/$name")
  echo "$(date -u +%FT%TZ) start $name: ${cmd[*]}" | tee -a "$OUT/logs/sweep.log"
  if "${cmd[@]}" > "$OUT/logs/$name.log" 2>&1; then
    echo "$(date -u +%FT%TZ) done $name" | tee -a "$OUT/logs/sweep.log"
  else
    echo "$(date -u +%FT%TZ) FAILED $name (see $OUT/logs/$name.log)" | tee -a "$OUT/logs/sweep.log"
  fi
}
for loss in ${LOSSES:-ce scl+ce gloss+ce}; do run R8 2000 128 "$loss"; done
for loss in ${LOSSES:-ce scl+ce gloss+ce}; do run mr 3000 64 "$loss"; done
