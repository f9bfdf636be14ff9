"""Float training recipes on nets outside the zoo and in it (issue 25, part 2).

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python bench/float_recipe.py \\
        --train-images 20000 --epochs 3 --test-images 2000 --out results/float_recipe.json

Each row trains one model from the same initialisation (seed 0) on the first `--train-images`
of a fixed shuffle of Fashion-MNIST's training set with one TrainConfig and reports the
per-epoch loss and the test accuracy on `--test-images` images. Models: the BN-free SqueezeNet
1.1-style net of examples/squeezenet_fmnist.py (a ReLU before global pooling) and the zoo's
MobileNetV1-0.25. Recipes: micromix's old default (SGD, peak lr 0.1, cosine), Adam 1e-3 (the
reference the issue compares with), candidate defaults, and what `micromix run` does now
(`train.probe_recipe` chooses between `float_recipe()` and Adam 1e-3 on 40 batches each; its
seconds include the probe).
Writes the JSON and a markdown table next to it (same name, .md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from micromix.data import load_dataset
from micromix.files import write_json, write_text
from micromix.models import create
from micromix.train import FitRun, evaluate, fit, fit_checked, float_recipe, probe_recipe

ROOT = Path(__file__).resolve().parents[1]
PROBED = "micromix run now (probe: sgd 0.1 or adam 1e-3)"
OLD_DEFAULT: dict = dict(optimizer="sgd", lr=0.1, warmup_epochs=0.0, grad_clip=None)
RECIPES: dict[str, dict] = {
    "old default (sgd 0.1)": OLD_DEFAULT,
    "adam 1e-3": dict(optimizer="adam", lr=1e-3, warmup_epochs=0.0, grad_clip=None),
    "sgd 0.1 + clip 1": {**OLD_DEFAULT, "grad_clip": 1.0},
    "sgd 0.1 + clip 5": {**OLD_DEFAULT, "grad_clip": 5.0},
    "sgd 0.1 + warmup 0.5": {**OLD_DEFAULT, "warmup_epochs": 0.5},
    "sgd 0.1 + warmup 0.5 + clip 1": {**OLD_DEFAULT, "warmup_epochs": 0.5, "grad_clip": 1.0},
    "sgd 0.05": {**OLD_DEFAULT, "lr": 0.05},
    "sgd 0.01": {**OLD_DEFAULT, "lr": 0.01},
    # what `micromix run` does now: float_recipe() or Adam 1e-3, as train.probe_recipe chooses
    PROBED: {},
}


def squeezenet() -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("sq", ROOT / "examples/squeezenet_fmnist.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.SqueezeNet()


MODELS = {
    "squeezenet-1.1-style (no BN, width 0.5)": squeezenet,
    "mobilenet_v1 0.25 (zoo)": lambda: create(
        "mobilenet_v1", width=0.25, num_classes=10, in_channels=1, resolution=28
    ),
}


def run(model_fn, recipe: dict, train, test, epochs: int) -> dict:
    torch.manual_seed(0)
    model = model_fn()
    cfg = replace(float_recipe(epochs, seed=0), **recipe)
    t0 = time.time()
    if recipe is RECIPES[PROBED]:
        with tempfile.TemporaryDirectory() as d:
            cfg, _ = probe_recipe(model, train, cfg)
            run = FitRun(checkpoint=Path(d) / "ck.pt", progress=False)
            state = fit_checked(model, train, cfg, run)
    else:
        state = fit(model, train, cfg, FitRun(progress=False))
    acc = evaluate(model, test)
    return {
        "config": cfg.to_json(),
        "history": state.history,
        "test_acc": acc,
        "seconds": time.time() - t0,
    }


def render(res: dict) -> str:
    a = res["args"]
    lines = [
        "# Float training recipes (issue 25, part 2)",
        "",
        "Commands (PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python ...), one per group of rows:",
        "",
        *sorted({f"    {r['command']}" for r in res["rows"]}),
        "",
        f"{a['train_images']} training images (a fixed subset of the training split: Fashion-MNIST's 60k less the search's held-out images), "
        f"{a['epochs']} epochs, batch 128, test accuracy on {a['test_images']} test images; "
        f"{res['machine']}, 1 torch thread, the 2-core machine shared with other jobs.",
        "",
        "| model | recipe | loss per epoch | test acc % | s |",
        "|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        losses = ", ".join(f"{h['loss']:.3f}" for h in r["history"])
        lines.append(
            f"| {r['model']} | {r['recipe']} | {losses} | {r['test_acc']:.2f} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-images", type=int, default=20000)
    ap.add_argument("--test-images", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--out", default="results/float_recipe.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("fashion_mnist")
    train = data.train.subset(a.train_images, seed=0)
    test = data.test.subset(a.test_images, seed=0)
    out = Path(a.out)
    res = {
        "command": "bench/float_recipe.py " + " ".join(sys.argv[1:]),
        "args": vars(a),
        "machine": f"{platform.node() and platform.platform()}, torch {torch.__version__}",
        "rows": [],
    }
    if out.exists():  # rows of other models / recipes measured before stay
        old = json.loads(out.read_text())
        keep = {(r["model"], r["recipe"]) for r in old["rows"]} - {
            (m, r) for m in a.models for r in a.recipes
        }
        res["rows"] = [r for r in old["rows"] if (r["model"], r["recipe"]) in keep]
    for m in a.models:
        for name in a.recipes:
            row = {
                "model": m,
                "recipe": name,
                **run(MODELS[m], RECIPES[name], train, test, a.epochs),
            }
            print(f"{m} | {name}: {row['test_acc']:.2f} % ({row['seconds']:.0f} s)", flush=True)
            res["rows"].append(row)
            write_json(out, res)
            write_text(out.with_suffix(".md"), render(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
