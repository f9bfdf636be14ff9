"""Compute the ilp Table B policy (FLASH 0.48x + RAM 0.42x of the uniform 8-bit sizes) of each
float model once and commit it, so that bench/qat_accuracy.py never reruns the search.

    python -m bench.qat_policies --models mobilenet_v1,mobilenet_v2,mnasnet

Same call as bench/search_study.py --cell table_b --strategy ilp (seed 0); writes
results/qat_policies/<model>_ilp_table_b.json (a policy file `micromix finetune --policy` reads).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.common import CELLS, FLOAT, load_float
from micromix.budget import Budget
from micromix.data import load_dataset
from micromix.memory import memory_report
from micromix.policy import Policy
from micromix.strategies import SearchConfig, create, search

OUT = Path("results/qat_policies")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v1,mobilenet_v2,mnasnet")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    data = load_dataset("fashion_mnist")
    flash, ram, weights_only = CELLS["table_b"]
    for name in a.models.split(","):
        model, graph = load_float(name)
        budget = Budget.parse(flash, ram, reference=memory_report(graph, Policy.uniform(graph, 8)))
        t0 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            res = search(
                model,
                data,
                budget,
                create("ilp", weights_only=weights_only),
                SearchConfig(
                    run_dir=Path(tmp) / "run", device=a.device, progress=False, plots=False
                ),
                graph=graph,
            )
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / f"{name}_ilp_table_b.json"
        res.policy.save(path)
        rep = memory_report(graph, res.policy)
        meta = {
            "model": name,
            "float_checkpoint": FLOAT[name],
            "budget": budget.to_json(),
            "flash_bytes": rep.flash_bytes,
            "ram_bytes": rep.ram_bytes,
            "search_score": res.search_score,
            "search_seconds": round(time.time() - t0, 1),
            "command": "PYTHONPATH=src python " + " ".join(sys.argv),
        }
        (OUT / f"{name}_ilp_table_b.meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        print(json.dumps(meta), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
