"""One cell of issue 13's study: haq vs rule vs ilp, each policy after the same final QAT.

    PYTHONPATH=src .venv/bin/python bench/search_study.py --cell table_b --strategy rule \\
        --episodes 40 --finetune-epochs 1 --out results/search_study.json

Cells (ratios of the uniform 8-bit FLASH / RAM): table_a = FLASH 0.48x, weight-only search;
table_b = FLASH 0.48x + RAM 0.42x; flash_0.36x / flash_0.75x = that FLASH + RAM 0.42x. One
strategy per call (each call is short enough for a shared machine; the search runs resume in
OUT_DIR/runs). The result is merged into --out in the issue's schema:
{"<model>": {"<cell>": {"<strategy>": {"test", "heldout_rescore", "search_score",
"flash_used", "ram_used", ...}}}}, with the command of every entry.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from micromix.budget import Budget
from micromix.data import load_dataset
from micromix.graph import trace
from micromix.memory import memory_report
from micromix.policy import Policy
from micromix.quant.finetune import finetune, qat_recipe
from micromix.strategies import DDPGConfig, create, search
from micromix.strategies.evaluate import threads
from micromix.train import evaluate, load_model

FLOAT = {
    "mobilenet_v1": "src/micromix/assets/mobilenet_v1_w025_fmnist28.pt",
    # the paper study's float models (bench/paper_study.py, results/paper_study/tables.md)
    "mobilenet_v2": "results/paper_study/float_models/mobilenet_v2_w035_fmnist28.pt",
    "mnasnet": "results/paper_study/float_models/mnasnet_w035_fmnist28.pt",
}
CELLS = {
    "table_a": ("0.48x", None, True),
    "table_b": ("0.48x", "0.42x", False),
    "flash_0.36x": ("0.36x", "0.42x", False),
    "flash_0.75x": ("0.75x", "0.42x", False),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="mobilenet_v1", choices=sorted(FLOAT))
    ap.add_argument("--cell", default="table_b", choices=sorted(CELLS))
    ap.add_argument("--strategy", required=True, choices=["haq", "rule", "ilp"])
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/search_study.json")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (search and final QAT)")
    a = ap.parse_args()
    model, _ = load_model(FLOAT[a.model])
    graph = trace(model)
    ref = memory_report(graph, Policy.uniform(graph, 8))
    flash, ram, weights_only = CELLS[a.cell]
    budget = Budget.parse(flash, ram, reference=ref)
    data = load_dataset("fashion_mnist")
    kw: dict = {"weights_only": weights_only}
    if a.strategy == "haq":
        kw.update(episodes=a.episodes, agent=DDPGConfig(warmup=a.warmup))
    t0 = time.time()
    res = search(
        model,
        data,
        budget,
        create(a.strategy, **kw),
        graph=graph,
        seed=a.seed,
        run_dir=Path("runs/search_study") / f"{a.model}-{a.cell}-{a.strategy}",
        resume=True,
        force=True,
        progress=False,
        plots=False,
        device=a.device,
    )
    search_s = time.time() - t0
    t1 = time.time()
    recipe = qat_recipe(a.finetune_epochs, seed=a.seed)
    with threads(1):  # on a busy 2-core machine one thread is fastest (results/search.md)
        q = finetune(
            model, res.policy, data.train, recipe, graph=graph, progress=False, device=a.device
        )
        test = evaluate(q, data.test, device=a.device)
    u = budget.utilization(res.report)
    row = {
        "test": test,
        "heldout_rescore": res.heldout_acc,
        "search_score": res.search_score,
        "flash_used": u["flash"],
        "ram_used": u["ram"],
        "episodes": res.episodes,
        "evaluations": res.evaluations,
        "search_seconds": round(search_s, 1),
        "final_qat_epochs": a.finetune_epochs,
        "final_qat_seconds": round(time.time() - t1, 1),
        "device": a.device,
        "command": "PYTHONPATH=src python " + " ".join(sys.argv),
    }
    out = Path(a.out)
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc.setdefault(a.model, {}).setdefault(a.cell, {})[a.strategy] = row
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
