"""What the benchmarks share: the float models they start from, loading and tracing, budgets
as ratios of the uniform 8-bit footprint, the final QAT, and Markdown tables."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn

from micromix.budget import Budget
from micromix.graph import Graph, trace
from micromix.memory import memory_report
from micromix.policy import Policy
from micromix.quant.finetune import FinetuneConfig, finetune
from micromix.quant.recipe import DEFAULT_RECIPE, RECIPES
from micromix.strategies.evaluate import threads
from micromix.train import evaluate, load_model

ROOT = Path(__file__).resolve().parents[1]
FLOAT = {  # float checkpoints made by `micromix train` (see results/float_training.md)
    "mobilenet_v1": "src/micromix/assets/mobilenet_v1_w025_fmnist28.pt",
    # the paper study's float models (bench/paper_study.py, results/paper_study/tables.md)
    "mobilenet_v2": "results/paper_study/float_models/mobilenet_v2_w035_fmnist28.pt",
    "mnasnet": "results/paper_study/float_models/mnasnet_w035_fmnist28.pt",
}
FLOAT_CMD = {
    "mobilenet_v1": "micromix train --model mobilenet_v1 --width 0.25 --epochs 20 --run-dir runs/float-mbv1-025 --seed 0",
    "mobilenet_v2": "micromix train --model mobilenet_v2 --width 0.35 --epochs 15 --run-dir runs/float-mbv2-035 --seed 0",
    "mnasnet": "micromix train --model mnasnet --width 0.35 --epochs 15 --run-dir runs/float-mnas-035 --seed 0",
}
# Budget cells as (FLASH ratio, RAM ratio, weights only) of the uniform 8-bit footprint:
# table_a = FLASH 0.48x, weight-only search; table_b = FLASH 0.48x + RAM 0.42x (the paper's).
CELLS = {
    "table_a": ("0.48x", None, True),
    "table_b": ("0.48x", "0.42x", False),
    "flash_0.36x": ("0.36x", "0.42x", False),
    "flash_0.75x": ("0.75x", "0.42x", False),
    # table_b's budgets in bytes, met under the auto schedule (issue 23)
    "table_b_scheduled": ("0.48x", "0.42x", False),
}
# The schedule whose RAM a cell's search holds to the budget; the earlier cells were measured
# layer by layer (before schedules), and keep that meaning.
CELL_SCHEDULE = {"table_b_scheduled": "auto"}


def float_path(name_or_path: str | Path) -> Path:
    """A FLOAT model's checkpoint (or a path as given), from the repository root."""
    return ROOT / FLOAT.get(str(name_or_path), str(name_or_path))


def load_float(name_or_path: str | Path) -> tuple[nn.Module, Graph]:
    """A float checkpoint (a FLOAT name or a path) in eval mode, and its Graph."""
    model = load_model(float_path(name_or_path))[0].eval()
    return model, trace(model)


def ratio_budget(graph: Graph, flash: str | None, ram: str | None) -> Budget:
    """A budget given as ratios ("0.48x") of the uniform 8-bit FLASH / RAM of `graph`."""
    return Budget.parse(flash, ram, reference=memory_report(graph, Policy.uniform(graph, 8)))


def add_qat_recipe_arg(ap: argparse.ArgumentParser, flag: str = "--qat-recipe") -> None:
    ap.add_argument(
        flag,
        default=DEFAULT_RECIPE,
        choices=sorted(RECIPES),
        help=f"the QAT recipe (default {DEFAULT_RECIPE}; the results cite the one they used)",
    )


def add_final_qat_args(ap: argparse.ArgumentParser) -> None:
    """The final QAT's flags, the same in every script that runs it."""
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    add_qat_recipe_arg(ap)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (search and final QAT)")


def final_qat(
    model, graph, policy: Policy, train, test, recipe_name: str, epochs: int, seed: int,
    device: str,
) -> float:  # fmt: skip
    """`micromix run`'s final QAT of `policy` (pipeline.Run.finetune), then its test accuracy.
    Deterministic for a given seed, device and thread count."""
    with threads(1):  # on a busy 2-core machine one thread is fastest (results/search.md)
        run = FinetuneConfig(epochs=epochs, seed=seed, device=device, progress=False)
        q = finetune(model, policy, train, recipe_name, run, graph=graph)
        return evaluate(q, test, device=device)


def md_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None
) -> list[str]:
    """A Markdown table's lines. `align` has one letter per column: l (left) or r (right,
    for numbers); None leaves every column to the renderer's default."""
    if align is not None and len(align) != len(header):
        raise ValueError(f"align {align!r} has {len(align)} letters for {len(header)} columns")
    rule = {"l": "---", "r": "---:"}
    seps = [rule[a] for a in align] if align else ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(seps) + "|"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells for {len(header)} columns: {row}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return lines
