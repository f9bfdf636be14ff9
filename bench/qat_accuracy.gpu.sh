#!/bin/sh
# Issue 15's QAT benchmark on one lent GPU (written for one H200 + 16 CPU cores, torch 2.11).
# Run from the repository root with MICROMIX_DATA=<folder with the 4 Fashion-MNIST .gz files>.
# Each finished job is merged into results/qat_accuracy.json at once, so a run cut short keeps
# what it finished and a second call skips it; stage 1 (old vs new, every model and policy:
# 3 float evaluations + 24 QAT jobs) comes first, stage 2 (the 4 ablations: 48 jobs) after it.
set -e
export PYTHONPATH=src OMP_NUM_THREADS=1
python bench/qat_accuracy.py --device cuda --jobs 16 --epochs 3 \
    --models mobilenet_v1,mobilenet_v2,mnasnet --policies w8a8,w4a4,w2a4,ilp_table_b \
    --recipes old,new --out results/qat_accuracy.json
python bench/qat_accuracy.py --device cuda --jobs 16 --epochs 3 \
    --models mobilenet_v1,mobilenet_v2,mnasnet --policies w8a8,w4a4,w2a4,ilp_table_b \
    --recipes new_no_kd,new_no_lsq,new_old_schedule,new_no_bn_reest --out results/qat_accuracy.json
