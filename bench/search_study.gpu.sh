#!/usr/bin/env bash
# Issue 13's study on the lent GPU machine: 3 models x 4 cells x (haq 40 episodes, rule, ilp),
# one process per cell and strategy (36 at once on 16 cores + 1 GPU), each with the same final
# QAT (bench.search_study). Writes into $OUT (default ./study_out):
#   search_study.json  the merged results (results/search_study.json's schema) + _meta
#   search_study.md    the table (bench.search_study --render), ready for results/
#   logs.txt           exit codes and the tail of every process's log
# Run from the repository root; the Fashion-MNIST .gz files in $MICROMIX_DATA (default .devdata):
#   OUT=/tmp/out bash bench/search_study.gpu.sh
# Settings (environment): EPISODES (40), FINAL_EPOCHS (3), DEVICE (cuda), JOB_TIMEOUT (seconds,
# 700), MODELS, CELLS, STRATS (space-separated subsets), PARALLEL (processes at a time; all
# at once by default; the order is cell-major, table_b first), QUICK=1 (tiny image counts: a
# check of the script only, e.g. QUICK=1 DEVICE=cpu EPISODES=2 MODELS=mobilenet_v1 CELLS=table_b).
# On a 2-core machine: DEVICE=cpu PARALLEL=2 JOB_TIMEOUT=7200.
set -u
export MICROMIX_DATA=${MICROMIX_DATA:-$PWD/.devdata} PYTHONPATH=$PWD/src OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/study_out}
PY=${PY:-python3}
WORK=$(mktemp -d /tmp/search_study.XXXX)
mkdir -p "$OUT"
start=$(date +%s)
nproc --all; nvidia-smi -L 2>/dev/null || true
$PY -c "import torch, numpy, scipy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
jobs=()
for c in ${CELLS:-table_b table_a flash_0.36x flash_0.75x}; do
  for m in ${MODELS:-mobilenet_v1 mobilenet_v2 mnasnet}; do
    for s in ${STRATS:-haq rule ilp}; do jobs+=("$m $c $s"); done
  done
done
echo "${#jobs[@]} processes"
for j in "${jobs[@]}"; do
  set -- $j
  if [ -n "${PARALLEL:-}" ]; then
    while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do wait -n; done
  fi
  # rule and ilp finish early; haq is the critical path, so it gets the CPU first.
  nice_level=0; [ "$3" != haq ] && nice_level=5
  ( t0=$(date +%s)
    timeout "${JOB_TIMEOUT:-700}" nice -n $nice_level $PY -m bench.search_study --model "$1" --cell "$2" \
      --strategy "$3" --episodes "${EPISODES:-40}" --finetune-epochs "${FINAL_EPOCHS:-3}" \
      --device "${DEVICE:-cuda}" ${QUICK:+--quick} --out "$WORK/$1_$2_$3.json" > "$WORK/$1_$2_$3.log" 2>&1
    echo "$1 $2 $3 rc=$? $(( $(date +%s) - t0 ))s" >> "$WORK/rc.txt" ) &
done
wait
elapsed=$(( $(date +%s) - start ))
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
machine="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)"
machine="${machine:-$(lscpu | sed -n 's/^Model name: *//p' | head -1)}, $(nproc --all) cores"
PAR="${PARALLEL:-all}" DEV="${DEVICE:-cuda}" WORK="$WORK" OUT="$OUT" ELAPSED="$elapsed" COMMIT="$commit" MACHINE="$machine" N="${#jobs[@]}" $PY - <<'PY'
import glob, json, os
import torch
work, out = os.environ["WORK"], os.environ["OUT"]
doc = {}
for f in sorted(glob.glob(f"{work}/*.json")):
    for m, cells in json.load(open(f)).items():
        for c, strat in cells.items():
            doc.setdefault(m, {}).setdefault(c, {}).update(strat)
doc["_meta"] = {
    "machine": f"{os.environ['MACHINE']}, torch {torch.__version__}",
    "processes": int(os.environ["N"]),
    "wall_seconds": int(os.environ["ELAPSED"]),
    "commit": os.environ["COMMIT"],
    "parallel": os.environ["PAR"],
    "device": os.environ["DEV"],
    "command": f"OUT=<dir> DEVICE={os.environ['DEV']} PARALLEL={os.environ['PAR']} "
    "bash bench/search_study.gpu.sh",
}
json.dump(doc, open(f"{out}/search_study.json", "w"), indent=1)
with open(f"{out}/logs.txt", "w") as f:
    f.write(open(f"{work}/rc.txt").read())
    for g in sorted(glob.glob(f"{work}/*.log")):
        f.write(f"== {os.path.basename(g)}\n" + "".join(open(g).readlines()[-15:]))
with open(f"{work}/header.md", "w") as f:
    m = doc["_meta"]
    f.write(
        "# Issue 13 study: haq vs rule vs ilp after the same final QAT\n\n"
        "Produced by `OUT=<dir> bash bench/search_study.gpu.sh` (commit "
        f"{m['commit']}): {m['processes']} processes, {m['parallel']} at a time, on {m['machine']}, "
        f"{m['wall_seconds']} s in all. One process per model, cell and strategy runs\n\n"
        "    python -m bench.search_study --model M --cell C --strategy S \\\n"
        f"        --episodes 40 --finetune-epochs 3 --device {m['device']}\n\n"
        "(each entry of search_study.json holds its command). Seed 0; haq 40 episodes, seeded\n"
        "with rule and ilp; its choice re-scores its top-3 and both seeds on the held-out split\n"
        "(`heldout_rescore`; `search_score` is the search's short score). Every returned policy\n"
        "then gets the same final QAT (`micromix run`'s recipe), scored once on the 10k test set. Cells (ratios of the\n"
        "uniform 8-bit FLASH / RAM): table_a = FLASH 0.48x, weight-only; table_b = FLASH 0.48x\n"
        "+ RAM 0.42x; flash_0.36x / flash_0.75x = that FLASH + RAM 0.42x. The standard error\n"
        "of one test accuracy is about 0.3 points.\n\n"
    )
PY
$PY -m bench.search_study --render "$OUT/search_study.json" --md "$OUT/search_study.md" --header "$WORK/header.md"
cat "$WORK/rc.txt"
echo "wall ${elapsed}s"
