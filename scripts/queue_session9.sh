#!/usr/bin/env bash
# The measurement queue of 2026-11-25 (session 9), run in the background on the 2-core development machine:
#   nohup bash scripts/queue_session9.sh > results/queue_session9.log 2>&1 &
set -u
export GLOSS_DATA=${GLOSS_DATA:-../shared/data}
G=.venv/bin/gloss
$G compare --spec scripts/sweep_finetune.toml --out results/compare
$G compare --spec scripts/sweep_bertgcn.toml --out results/compare
$G compare --spec scripts/sweep_textgcn.toml --out results/sweeps/textgcn
