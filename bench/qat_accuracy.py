"""Issue 15's QAT benchmark: old recipe vs new (and its ablations), same epochs, per model and policy.

    python -m bench.qat_accuracy \\
        --device cuda --jobs 16 --epochs 3 --out results/qat_accuracy.json

Every (model, policy, recipe) QAT run is an independent job, run as its own subprocess with one
torch thread, `--jobs` at a time; each finished job is merged into --out at once (partial and
repeated runs add up; a job already in --out is skipped unless --redo). Schema:
{"<model>": {"float": acc, "<policy>": {"<recipe>": acc}}, "_meta": {...}} with test top-1 in
percent; `_meta` holds the commands, device, torch version and per-job seconds and histories.
Policies: w8a8, w4a4, w2a4 (uniform) and ilp_table_b (results/qat_policies/, bench/qat_policies.py).
Recipes: micromix.quant.recipe.RECIPES (old, new, kd = new + distillation, and kd's ablations
kd_no_lsq, kd_old_schedule, kd_no_bn_reest, kd_augment).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import FLOAT, ROOT, float_path

UNIFORM = {"w8a8": (8, 8), "w4a4": (4, 4), "w2a4": (2, 4)}
POLICY_DIR = "results/qat_policies"
ABLATION_ORDER = ("old", "new")  # first in the queue: a cut-short run still has the comparison


def policy_for(name: str, model_name: str, graph):
    from micromix.policy import Policy

    if name in UNIFORM:
        return Policy.uniform(graph, *UNIFORM[name])
    if name == "ilp_table_b":
        return Policy.load(ROOT / POLICY_DIR / f"{model_name}_ilp_table_b.json").validate(graph)
    raise SystemExit(f"unknown policy {name!r}; choose from {', '.join([*UNIFORM, 'ilp_table_b'])}")


def worker(job: dict) -> dict:
    """One job in this process (one thread): float evaluation or one QAT run."""
    import torch

    torch.set_num_threads(1)
    from micromix.data import load_dataset
    from micromix.graph import trace
    from micromix.quant.finetune import FinetuneConfig, finetune
    from micromix.quant.recipe import RECIPES
    from micromix.train import evaluate, load_model

    t0 = time.time()
    device = job["device"]
    model, _ = load_model(float_path(job["model"]))
    data = load_dataset("fashion_mnist")
    test = data.test
    if job.get("test_limit"):
        from micromix.data import ImageSet

        n = job["test_limit"]
        test = ImageSet(test.images[:n], test.labels[:n], test.classes)
    out = {"job": job}
    if job["policy"] == "float":
        out["acc"] = evaluate(model.to(device), test, device=device)
    else:
        graph = trace(model)
        policy = policy_for(job["policy"], job["model"], graph)
        q = finetune(
            model,
            policy,
            data.train,
            RECIPES[job["recipe"]],
            FinetuneConfig(
                epochs=job["epochs"],
                seed=job["seed"],
                max_batches=job["max_batches"],
                device=device,
                progress=False,
            ),
            graph=graph,
        )
        out["acc"] = evaluate(q, test, device=device)
        out["history"] = q.history
    out["seconds"] = round(time.time() - t0, 1)
    return out


def jobs_for(a: argparse.Namespace) -> list[dict]:
    base = {
        "device": a.device,
        "epochs": a.epochs,
        "seed": a.seed,
        "max_batches": a.max_batches,
        "test_limit": a.test_limit,
    }
    recipes = a.recipes.split(",")
    # old and new of every cell first, the ablations after them.
    order = [r for r in ABLATION_ORDER if r in recipes] + [
        r for r in recipes if r not in ABLATION_ORDER
    ]
    jobs = [{**base, "model": m, "policy": "float", "recipe": None} for m in a.models.split(",")]
    for r in order:
        for m in a.models.split(","):
            for p in a.policies.split(","):
                jobs.append({**base, "model": m, "policy": p, "recipe": r})
    return jobs


def key(job: dict) -> str:
    return "/".join(str(job[k]) for k in ("model", "policy", "recipe") if job[k] is not None)


def done(doc: dict, job: dict) -> bool:
    cell = doc.get(job["model"], {})
    if job["policy"] == "float":
        return "float" in cell
    return job["recipe"] in cell.get(job["policy"], {})


def merge(path: Path, res: dict, lock: threading.Lock, meta: dict) -> None:
    job = res["job"]
    with lock:
        doc = json.loads(path.read_text()) if path.exists() else {}
        cell = doc.setdefault(job["model"], {})
        if job["policy"] == "float":
            cell["float"] = round(res["acc"], 2)
        else:
            cell.setdefault(job["policy"], {})[job["recipe"]] = round(res["acc"], 2)
        m = doc.setdefault("_meta", {})
        cmds = m.setdefault("commands", [])
        if meta["command"] not in cmds:
            cmds.append(meta["command"])
        m.setdefault("runs", {})[key(job)] = {
            "seconds": res["seconds"],
            "epochs": job["epochs"],
            "max_batches": job["max_batches"],
            "test_limit": job["test_limit"],
            "device": meta["device"],
            "torch": meta["torch"],
            "history": res.get("history"),
        }
        m["device"], m["torch"] = meta["device"], meta["torch"]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1, help="parallel subprocesses, one thread each")
    ap.add_argument("--models", default=",".join(FLOAT))
    ap.add_argument("--policies", default="w8a8,w4a4,w2a4,ilp_table_b")
    ap.add_argument("--recipes", default="old,new")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-batches", type=int, default=None, help="cap per epoch (smoke tests)")
    ap.add_argument("--test-limit", type=int, default=None, help="score on the first N test images")
    ap.add_argument("--out", default="results/qat_accuracy.json")
    ap.add_argument("--redo", action="store_true", help="rerun jobs already in --out")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(worker(json.loads(a.worker))), flush=True)
        return 0
    import torch

    from micromix.quant.recipe import RECIPES

    for m in a.models.split(","):
        if m not in FLOAT:
            raise SystemExit(f"unknown model {m!r}; choose from {', '.join(FLOAT)}")
    for p in a.policies.split(","):
        if p not in UNIFORM and p != "ilp_table_b":
            raise SystemExit(f"unknown policy {p!r}")
    for r in a.recipes.split(","):
        if r not in RECIPES:
            raise SystemExit(f"unknown recipe {r!r}; choose from {', '.join(RECIPES)}")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no GPU")
    device_name = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu"
    meta = {
        "command": "PYTHONPATH=src python " + " ".join(sys.argv),
        "device": f"{device_name}, {a.jobs} jobs at once, 1 thread each",
        "torch": torch.__version__,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(out.read_text()) if out.exists() else {}
    todo = [j for j in jobs_for(a) if a.redo or not done(doc, j)]
    print(f"{len(todo)} jobs, {a.jobs} at a time on {meta['device']}", flush=True)
    lock = threading.Lock()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }
    failures = []
    t_start = time.time()

    def run(job: dict) -> None:
        p = subprocess.run(
            [sys.executable, "-m", "bench.qat_accuracy", "--worker", json.dumps(job)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        lines = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
        if p.returncode != 0 or not lines:
            failures.append(key(job))
            print(f"FAILED {key(job)}: {p.stderr.strip()[-2000:]}", flush=True)
            return
        res = json.loads(lines[-1][len("RESULT ") :])
        merge(out, res, lock, meta)
        print(
            f"{key(job)}: {res['acc']:.2f}% ({res['seconds']:.0f} s; "
            f"{time.time() - t_start:.0f} s since start)",
            flush=True,
        )

    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        list(ex.map(run, todo))
    print(f"done in {time.time() - t_start:.0f} s; {len(failures)} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
