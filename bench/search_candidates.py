"""What haq had in hand at the end of a search, each policy after the final QAT (issue 13).

haq ends by re-scoring its top-k distinct policies and the seeds' (rule, ilp) on the held-out
split and returning the best re-score. This script gives every one of those candidates the
study's final QAT (`search_study.final_qat`, the one of `micromix run`) and its test accuracy,
so a study cell can say whether a better choice among them existed: the best candidate's test
accuracy bounds what any selection rule could have returned from that search. The test set is
used only to measure, never to choose.

    MICROMIX_DATA=<fashion-mnist folder> python -m bench.search_candidates --model mnasnet --cell table_a \\
        --run-dir runs/search_study/mnasnet-table_a-haq --out results/search_candidates.json

The run directory is one `bench.search_study --strategy haq` wrote (its metrics.json and
episodes.jsonl). A candidate that is a seed's policy is marked with the seed's name; its final
QAT equals that strategy's study entry when seed, device and thread count are the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench.common import FLOAT, add_final_qat_args, final_qat, load_float
from micromix.data import load_dataset
from micromix.policy import Policy


def _key(policy: dict) -> str:
    return json.dumps(policy, sort_keys=True)


def candidates(run_dir: Path) -> list[dict]:
    """The re-scored policies of a haq run, each with its search score, its held-out re-score
    and the seed strategy it came from (None for the agent's own)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    seeds = {}
    for line in (run_dir / "episodes.jsonl").read_text().splitlines():
        h = json.loads(line)
        if h.get("seed"):
            seeds[_key(h["policy"])] = h["seed"]
    return [{**r, "seed": seeds.get(_key(r["policy"]))} for r in metrics["rescored"]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, choices=sorted(FLOAT))
    ap.add_argument("--cell", required=True)
    ap.add_argument("--run-dir", required=True, type=Path)
    add_final_qat_args(ap)
    ap.add_argument("--skip-seeds", action="store_true", help="seeds' tests are in the study")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--quick", action="store_true", help="a check of the script: 256 images")
    a = ap.parse_args()
    model, graph = load_float(a.model)
    data = load_dataset("fashion_mnist")
    train, test = data.train, data.test
    if a.quick:
        train, test = train.subset(256, seed=0), test.subset(256, seed=0)
    rows = []
    for c in candidates(a.run_dir):
        row = {k: c[k] for k in ("seed", "search_score", "heldout_acc")}
        if not (a.skip_seeds and c["seed"]):
            t0 = time.time()
            row["test"] = final_qat(
                model, graph, Policy.from_json(c["policy"]), train, test,
                a.qat_recipe, a.finetune_epochs, a.seed, a.device,
            )  # fmt: skip
            row["final_qat_seconds"] = round(time.time() - t0, 1)
        row["policy"] = c["policy"]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "policy"}), flush=True)
    doc = json.loads(a.out.read_text()) if a.out.exists() else {}
    doc.setdefault(a.model, {})[a.cell] = {
        "candidates": rows,
        "final_qat_epochs": a.finetune_epochs,
        "final_qat_recipe": a.qat_recipe,
        "quick": a.quick,
        "command": "PYTHONPATH=src python " + " ".join(sys.argv),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
