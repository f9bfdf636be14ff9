"""Table B's budgets under each schedule: the 8-bit RAM and what rule and ilp cut to meet it.

    python -m bench.search_scheduled --out results/search_scheduled.json

For the three study models (their float checkpoints, bench.common.FLOAT), the RAM of the 8-bit
network layer by layer and under `auto`, table_b's budget in bytes (FLASH 0.48x, RAM 0.42x of
the layer-by-layer 8-bit footprint: the same bytes as results/search_study.json's table_b), and
for rule and ilp the activations they cut below 8 bits and the RAM of the policy, under
`layer` and `auto`. No training and no evaluation: a constant evaluator stands in, so ilp's
sensitivities are all zero and it keeps the most bits that fit (its tie-break), like rule.

`--same-as-table-a` (Fashion-MNIST, a few minutes): whether rule and ilp, searched as
bench.search_study searches them (ilp with its measured sensitivities), return under
table_b_scheduled exactly the policy they return under table_a (FLASH alone). Where they do,
the study's final QAT of that policy is the same computation (same seed, same recipe), so the
RAM budget costs no accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.common import CELL_SCHEDULE, CELLS, FLOAT, load_float, ratio_budget
from micromix.data import load_dataset
from micromix.policy import Policy
from micromix.strategies import SearchConfig, create, search


def _cut(policy: Policy) -> int:
    return sum(b < 8 for b in policy.activations.values())


def measure(name: str) -> dict:
    _, graph = load_float(name)
    flash, ram, _ = CELLS["table_b"]
    budget = ratio_budget(graph, flash, ram)
    out: dict = {"budget": budget.to_json()}
    for schedule in ("layer", "auto"):
        config = SearchConfig(progress=False, plots=False, schedule=schedule)
        row = {"ram_8bit": config.scheduling.report(graph, Policy.uniform(graph, 8)).ram_bytes}
        for strategy in ("rule", "ilp"):
            res = search(None, None, budget, strategy, config, graph=graph, evaluator=_const)
            row[strategy] = {
                "activations_cut": _cut(res.policy),
                "activations": len(res.policy.activations),
                "ram": res.report.ram_bytes,
                "flash": res.report.flash_bytes,
                "schedule": None if res.report.schedule is None else res.report.schedule.kind,
            }
        out[schedule] = row
    return out


def same_as_table_a(name: str, data) -> dict:
    """{strategy: True when its table_b_scheduled policy is its table_a policy}."""
    model, graph = load_float(name)
    out = {}
    for strategy in ("rule", "ilp"):
        pols = []
        for cell in ("table_a", "table_b_scheduled"):
            flash, ram, weights_only = CELLS[cell]
            config = SearchConfig(
                progress=False, plots=False, schedule=CELL_SCHEDULE.get(cell, "layer")
            )
            strat = create(strategy, weights_only=weights_only)
            res = search(model, data, ratio_budget(graph, flash, ram), strat, config, graph=graph)
            pols.append(res.policy)
        out[strategy] = pols[0] == pols[1]
    return out


def _const(policy: Policy) -> float:
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="results/search_scheduled.json")
    ap.add_argument("--same-as-table-a", action="store_true")
    a = ap.parse_args()
    doc = {m: measure(m) for m in FLOAT}
    if a.same_as_table_a:
        data = load_dataset("fashion_mnist")
        for m in FLOAT:
            doc[m]["same_policy_as_table_a"] = same_as_table_a(m, data)
    doc["_command"] = "python -m bench.search_scheduled " + " ".join(sys.argv[1:])
    Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
