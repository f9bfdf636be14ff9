"""User networks (by default the tests/user_models files) (max pooling, concat, hardswish + squeeze-excitation, sigmoid /
silu / leaky_relu gates) on Fashion-MNIST: short float training, a mixed 4/8-bit QAT, then the
agreement of the integer model with the fake-quant model and of the C with the integer model.

    python -m bench.user_models_ops [--out results/user_models_ops.md] [--models FILE.py:CLASS ...]

Each model is built from its file the way `micromix --model FILE.py:CLASS` builds one.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench.common import add_qat_recipe_arg, md_table
from micromix.data import load_dataset
from micromix.export import export_c
from micromix.graph import trace
from micromix.integer import convert
from micromix.models import from_source
from micromix.policy import Policy
from micromix.quant import FinetuneConfig, finetune
from micromix.train import FitRun, fit, float_recipe

USER_MODELS = [  # what results/user_models_ops.md measured
    "tests/user_models/maxpool_cnn.py:MaxPoolCNN",
    "tests/user_models/concat_net.py:ConcatNet",
    "tests/user_models/mbv3_block.py:MobileNetV3Block",
    "tests/user_models/gated_net.py:GatedNet",
]


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
    ap.add_argument("--models", nargs="+", default=USER_MODELS, help="FILE.py:CLASS each")
    add_qat_recipe_arg(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("fashion_mnist", heldout=1000)
    test = data.test.take(range(args.test))
    rows = []
    for ref in args.models:
        t0 = time.time()
        torch.manual_seed(0)
        model, cls = from_source(ref), ref.rsplit(":", 1)[-1]
        fit(
            model,
            data.train,
            replace(float_recipe(1), max_batches=args.float_batches),
            FitRun(progress=False),
        )
        model.eval()
        g = trace(model, (1, 1, 28, 28))
        pol = mixed(g, 1)
        run = FinetuneConfig(epochs=1, max_batches=args.qat_batches, progress=False)
        q = finetune(model, pol, data.train, args.qat_recipe, run, graph=g)
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
            [cls, ", ".join(sorted({o.kind for o in g.ops})), f"{(fl == labels).mean():.3f}",
             f"{(fq == labels).mean():.3f}", f"{(yi == labels).mean():.3f}",
             f"{(fq == yi).mean():.4f}", f"{s['selftest_identical']}/{s['selftest_images']}",
             f"{im.report.flash_bytes:,}", f"{s['built']['const_bytes']:,}",
             f"{im.report.ram_bytes:,}", f"{s['built']['ram_bytes']:,}",
             f"{time.time() - t0:.0f} s"]
        )  # fmt: skip
        print(rows[-1], flush=True)
    table = md_table(
        ["model", "op kinds", "float top-1", "fake-quant top-1", "integer top-1",
         "integer = fake-quant arg-max", "C bit-identical", "FLASH model", "FLASH built",
         "RAM model", "RAM built", "time"],
        rows,
    )  # fmt: skip
    text = (
        "# User models with the new ops on Fashion-MNIST\n\n"
        f"Command: `python -m bench.user_models_ops --float-batches "
        f"{args.float_batches} --qat-batches {args.qat_batches} --test {args.test} "
        f"--qat-recipe {args.qat_recipe}` (2 CPU cores, "
        "torch CPU, 1 thread). Float: 1 epoch capped at the given batches of 128; QAT: a mixed "
        "4/8-bit policy (seed 1), 1 epoch capped likewise. Top-1 on the first "
        f"{args.test} test images; C: gcc -O2 self-test on 200 of them.\n\n"
        + "\n".join(table)
        + "\n"
    )
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
