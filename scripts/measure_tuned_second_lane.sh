#!/bin/bash
# Lane B of the issue-15 measurement: after the MR finals, R8's lcl+ce study, then R8's lcl+ce and gloss+ce finals.
cd /work/main
export PATH=$PWD/.venv/bin:$PATH GLOSS_DATA=/work/shared/data OMP_NUM_THREADS=1
while pgrep -f "sweep_tuned_mr.toml" > /dev/null; do sleep 10; done
RUN=results/tuned/runs/tune-R8-lcl+ce
LOG=results/tuned/logs/tune-R8-lcl+ce.log
step() { start=$(date +%s); echo "\$ $*" >> "$2"; "${@:3}" >> "$2" 2>&1; rc=$?; echo "$(date +%Y-%m-%dT%H:%M:%S) rc=$rc $(( $(date +%s) - start ))s ${*:3} (second lane)" >> results/tuned/progress.log; return $rc; }
[ -f $RUN/prepare/manifest.json ] || step prepare $LOG gloss prepare --dataset R8 --data-root $GLOSS_DATA --run-dir $RUN
step tune $LOG gloss tune --run-dir $RUN --loss lcl+ce --trials 6 --tune-epochs 2 --train-layers 1 --pruner-startup 2 --no-plots --lcl-weighting head
while [ ! -f results/tuned/runs/tune-R8-gloss+ce/tune/best.json ]; do sleep 20; done
step compare results/tuned/logs/compare-r8-second.log gloss compare --spec scripts/sweep_tuned_r8_second.toml --out results/tuned --data-root $GLOSS_DATA --pair gloss+ce:ce
