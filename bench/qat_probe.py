"""Short CPU probes of QAT recipe settings (issue 15): pick the candidate `new` recipe.

    python -m bench.qat_probe --policy w4a4 --recipe new \\
        --set kd_temperature=4 --set lr=3e-4 --out results/qat_probes.json

MobileNetV1-0.25 (the shipped float model), 2 epochs of 75 batches of 128 (150 batches, so BN
freezes once, after the first, with re-estimation where the recipe has it), seed 0, one thread;
scored on the first 2,000 held-out images (training images the float model never saw), never on
the test set. Each probe is appended to --out with its command and CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import load_float
from micromix.data import load_dataset
from micromix.policy import Policy
from micromix.quant.finetune import FinetuneConfig, finetune
from micromix.quant.recipe import RECIPES, QATRecipe
from micromix.train import evaluate

UNIFORM = {"w8a8": (8, 8), "w4a4": (4, 4), "w2a4": (2, 4)}


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = json.loads(v) if v not in ("mse", "lsq", "step", "cosine") else v
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="w4a4", choices=[*UNIFORM, "ilp_table_b"])
    ap.add_argument("--recipe", default="new", choices=sorted(RECIPES))
    ap.add_argument("--set", action="append", default=[], help="recipe setting=value")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batches", type=int, default=75, help="batches per epoch")
    ap.add_argument("--heldout", type=int, default=2000)
    ap.add_argument("--out", default="results/qat_probes.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    recipe: QATRecipe = replace(RECIPES[a.recipe], **parse_set(a.set))
    model, graph = load_float("mobilenet_v1")
    if a.policy in UNIFORM:
        policy = Policy.uniform(graph, *UNIFORM[a.policy])
    else:
        policy = Policy.load("results/qat_policies/mobilenet_v1_ilp_table_b.json")
    data = load_dataset("fashion_mnist")
    held = data.heldout.take(range(a.heldout))
    c0, t0 = time.process_time(), time.time()
    run = FinetuneConfig(epochs=a.epochs, max_batches=a.batches, progress=False)
    q = finetune(model, policy, data.train, recipe, run, graph=graph)
    cpu = time.process_time() - c0
    acc = evaluate(q, held)
    row = {
        "policy": a.policy,
        "recipe": a.recipe,
        "set": parse_set(a.set),
        "heldout_acc": round(acc, 2),
        "train_cpu_seconds": round(cpu, 1),
        "wall_seconds": round(time.time() - t0, 1),
        "settings": recipe.to_json(),
        "lsq_adam_lr_scaled": True,  # since the LSQ step sizes' Adam lr carries 1/sqrt(N Q_p)
        "command": "PYTHONPATH=src python " + " ".join(sys.argv),
    }
    out = Path(a.out)
    rows = json.loads(out.read_text()) if out.exists() else []
    rows.append(row)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(json.dumps({k: row[k] for k in ("policy", "recipe", "set", "heldout_acc")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
