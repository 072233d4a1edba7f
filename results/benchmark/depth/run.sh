#!/usr/bin/env bash
# Tier B's trained depth: MR ce, 3 epochs (a tuning trial's length), split 0, seed 0, constant schedule, train-layers 1 vs 2.
cd $GLOSS_TREE
export GLOSS_DATA=$GLOSS_DATA_ROOT GLOSS_CACHE=$GLOSS_CACHE_DIR OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH=$GLOSS_TREE
for layers in 2 1; do for lr in 3e-4 1e-3; do
  echo "$(date -Is) start layers $layers lr $lr load: $(cut -d' ' -f1-3 /proc/loadavg)"
  nice -n 19 gloss run --dataset mr --loss ce --train-layers $layers --lr $lr --head-lr 1e-3 --batch-size 128 \
    --max-length 128 --optimizer adamw --schedule constant --epochs 3 --patience 3 --seed 0 --split-seed 0 \
    --run-dir runs/depth/mr-ce-layers$layers-lr$lr > runs/depth/mr-ce-layers$layers-lr$lr.log 2>&1
  echo "$(date -Is) end rc=$? load: $(cut -d' ' -f1-3 /proc/loadavg)"
done; done
