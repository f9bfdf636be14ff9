"""Distinct policy evaluations per hour with 1 and with N Ray workers (issue 13, item 5).

    python -m bench.search_workers --episodes 8 --workers 1 2 \\
        --out results/search_workers.json

The shipped float MobileNetV1-0.25 (Fashion-MNIST), FLASH 0.48x / RAM 0.42x, the `random`
strategy (no agent updates, no seeds: only evaluations are timed) with the default QAT
evaluator (2,000 train images, 2,000 held-out images, screening off so every evaluation costs
the same) and batch = 4. The figure is distinct evaluations / the episode loop's wall time;
Ray's start-up (actors loading the model) is reported separately. The selected policy must be
the same for every worker count (the result does not depend on N).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from bench.common import load_float, ratio_budget
from micromix.data import load_dataset
from micromix.strategies import QATSettings, SearchConfig, search


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", default="results/search_workers.json")
    args = ap.parse_args()
    model, graph = load_float("mobilenet_v1")
    budget = ratio_budget(graph, "0.48x", "0.42x")
    data = load_dataset("fashion_mnist")
    qat = QATSettings(screen_images=0, rescore_epochs=1, rescore_images=500)
    rows, policies = {}, {}
    for n in args.workers:
        t0 = time.time()
        r = search(
            model,
            data,
            budget,
            "random",
            SearchConfig(qat=qat, workers=n, progress=False, plots=False),
            graph=graph,
            episodes=args.episodes,
            batch=args.batch,
            top_k=1,
        )
        total = time.time() - t0
        rows[str(n)] = {
            "distinct_evaluations": r.episodes,
            "loop_seconds": round(r.wall_seconds, 1),
            "total_seconds": round(total, 1),
            "evaluations_per_hour": round(3600 * r.episodes / r.wall_seconds, 1),
        }
        policies[str(n)] = r.policy.key()
        print(n, rows[str(n)]["evaluations_per_hour"], "eval/h", rows[str(n)], flush=True)
    base = rows[str(args.workers[0])]
    for v in rows.values():
        v["speedup"] = round(v["evaluations_per_hour"] / base["evaluations_per_hour"], 2)
    for n, v in rows.items():
        v["same_policy_as_first"] = policies[n] == policies[str(args.workers[0])]
    out = {
        "command": "PYTHONPATH=src python " + " ".join(sys.argv),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores, shared with other jobs",
        "load_average_at_end": os.getloadavg(),
        "torch": torch.__version__,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
