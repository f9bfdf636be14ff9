"""The tests/user_models networks (max pooling, concat, hardswish + squeeze-excitation, sigmoid /
silu / leaky_relu gates) on Fashion-MNIST: short float training, a mixed 4/8-bit QAT, then the
agreement of the integer model with the fake-quant model and of the C with the integer model.

    PYTHONPATH=src:tests python bench/user_models_ops.py [--out results/user_models_ops.md]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from micromix.data import load_dataset
from micromix.export import export_c
from micromix.graph import trace
from micromix.integer import convert
from micromix.policy import Policy
from micromix.quant import finetune, qat_recipe
from micromix.train import fit, float_recipe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from user_models import MODELS  # noqa: E402


def mixed(g, seed: int) -> Policy:
    rng = np.random.default_rng(seed)
    acts = {t: int(rng.choice([4, 8])) for t in g.tensors if t not in (g.input, g.output)}
    return Policy.uniform(g, 8).replace(
        weights={o.name: int(rng.choice([4, 8])) for o in g.weight_ops}, activations=acts
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/user_models_ops.md")
    ap.add_argument("--float-batches", type=int, default=150)
    ap.add_argument("--qat-batches", type=int, default=60)
    ap.add_argument("--test", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("fashion_mnist", heldout=1000)
    test = data.test.take(range(args.test))
    rows = []
    for mod, cls in MODELS.items():
        t0 = time.time()
        torch.manual_seed(0)
        model = getattr(importlib.import_module(f"user_models.{mod}"), cls)()
        fit(
            model,
            data.train,
            replace(float_recipe(1), max_batches=args.float_batches),
            progress=False,
        )
        model.eval()
        g = trace(model, (1, 1, 28, 28))
        pol = mixed(g, 1)
        cfg = qat_recipe(1, max_batches=args.qat_batches)
        q = finetune(model, pol, data.train, cfg, graph=g, progress=False)
        im = convert(q)
        with torch.no_grad():
            fq = torch.cat([q(x.float() / 255) for x in test.images.split(250)]).argmax(1).numpy()
            fl = (
                torch.cat([model(x.float() / 255) for x in test.images.split(250)])
                .argmax(1)
                .numpy()
            )
        yi = im.run(test.images.numpy()).astype(np.int64).argmax(1)
        labels = test.labels.numpy()
        with tempfile.TemporaryDirectory() as d:
            out = export_c(im, Path(d) / "c", test_images=test.images[:200].numpy())
            s = json.loads((out / "export.json").read_text())
        rows.append(
            f"| {cls} | {', '.join(sorted({o.kind for o in g.ops}))} | {(fl == labels).mean():.3f} "
            f"| {(fq == labels).mean():.3f} | {(yi == labels).mean():.3f} | {(fq == yi).mean():.4f} "
            f"| {s['selftest_identical']}/{s['selftest_images']} | {im.report.flash_bytes:,} "
            f"| {s['built']['const_bytes']:,} | {im.report.ram_bytes:,} | {s['built']['ram_bytes']:,} "
            f"| {time.time() - t0:.0f} s |"
        )
        print(rows[-1], flush=True)
    head = (
        "| model | op kinds | float top-1 | fake-quant top-1 | integer top-1 | integer = fake-quant "
        "arg-max | C bit-identical | FLASH model | FLASH built | RAM model | RAM built | time |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    text = (
        "# User models with the new ops on Fashion-MNIST\n\n"
        f"Command: `PYTHONPATH=src:tests python bench/user_models_ops.py --float-batches "
        f"{args.float_batches} --qat-batches {args.qat_batches} --test {args.test}` (2 CPU cores, "
        "torch CPU, 1 thread). Float: 1 epoch capped at the given batches of 128; QAT: a mixed "
        "4/8-bit policy (seed 1), 1 epoch capped likewise. Top-1 on the first "
        f"{args.test} test images; C: gcc -O2 self-test on 200 of them.\n\n"
        + head
        + "\n"
        + "\n".join(rows)
        + "\n"
    )
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
