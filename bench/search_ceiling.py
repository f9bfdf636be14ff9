"""The most a weight-bit search could reach at a RAM budget (issue 13's study).

Every weight tensor at 8 bits (FLASH ignored), the activations of a policy that fits the RAM
budget (e.g. a study cell's ilp policy, RAM 0.42x), then the study's final QAT
(`search_study.final_qat`) and the test accuracy. In a RAM-bound cell every strategy fills RAM
with the same number of 4- and 2-bit activations, so this is the accuracy any choice of weight
bits is measured against; the uniform W8/A8 QAT is not reachable there.

    MICROMIX_DATA=<fashion-mnist folder> python -m bench.search_ceiling --model mnasnet \\
        --activations-from runs/search_study/mnasnet-flash_0.75x-ilp/policy.json --out x.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.common import FLOAT, add_final_qat_args, final_qat, load_float
from micromix.budget import Budget
from micromix.data import load_dataset
from micromix.memory import memory_report
from micromix.policy import Policy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, choices=sorted(FLOAT))
    ap.add_argument("--activations-from", required=True, type=Path, help="a policy JSON")
    ap.add_argument("--ram", default="0.42x", help="the RAM budget the activations must fit")
    add_final_qat_args(ap)
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args()
    model, graph = load_float(a.model)
    src = json.loads(a.activations_from.read_text())
    policy = Policy.from_json({**src, "weights": {k: 8 for k in src["weights"]}})
    ref = memory_report(graph, Policy.uniform(graph, 8))
    rep = memory_report(graph, policy)
    ram = Budget.parse(None, a.ram, reference=ref).ram
    if rep.ram_bytes > ram:
        sys.exit(f"the activations of {a.activations_from} need {rep.ram_bytes} B, over {ram} B.")
    data = load_dataset("fashion_mnist")
    t0 = time.time()
    test = final_qat(
        model, graph, policy, data.train, data.test, a.qat_recipe, a.finetune_epochs, a.seed,
        a.device,
    )  # fmt: skip
    row = {
        "test": test,
        "ram_bytes": rep.ram_bytes,
        "ram_budget": ram,
        "activation_bits": {b: list(policy.activations.values()).count(b) for b in (2, 4, 8)},
        "final_qat_recipe": a.qat_recipe,
        "final_qat_epochs": a.finetune_epochs,
        "final_qat_seconds": round(time.time() - t0, 1),
        "command": "PYTHONPATH=src python " + " ".join(sys.argv),
    }
    print(json.dumps(row))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(row, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
