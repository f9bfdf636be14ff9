#!/bin/sh
# Issue 15's QAT benchmark on one lent GPU (written for one H200 + 16 CPU cores, torch 2.11).
# Run from the repository root with MICROMIX_DATA=<folder with the 4 Fashion-MNIST .gz files>:
#   sh bench/qat_accuracy.gpu.sh 1     # old vs new: 3 float evaluations + 24 QAT jobs
#   sh bench/qat_accuracy.gpu.sh 2     # kd (new + distillation) and its 3 ablations: 48 QAT jobs
#   sh bench/qat_accuracy.gpu.sh 3     # kd with augmentation back: 12 QAT jobs
#   sh bench/qat_accuracy.gpu.sh all   # 1, 2, 3 in turn
# Each finished job is merged into results/qat_accuracy.json at once, so a run cut short keeps
# what it finished and the next call skips it (old/new of every cell are queued first).
set -e
export PYTHONPATH=src OMP_NUM_THREADS=1
run() {
    python -m bench.qat_accuracy --device cuda --jobs 16 --epochs 3 \
        --models mobilenet_v1,mobilenet_v2,mnasnet --policies w8a8,w4a4,w2a4,ilp_table_b \
        --recipes "$1" --out results/qat_accuracy.json
}
case "${1:-all}" in
1) run old,new ;;
2) run kd,kd_no_lsq,kd_old_schedule,kd_no_bn_reest ;;
3) run kd_augment ;;
all) run old,new && run kd,kd_no_lsq,kd_old_schedule,kd_no_bn_reest && run kd_augment ;;
*) echo "usage: $0 [1|2|3|all]" >&2; exit 2 ;;
esac
