"""PNG plots of a search: reward per episode, and the chosen bits with memory per layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..budget import Budget  # noqa: E402
from ..files import atomic_path  # noqa: E402
from ..graph import Graph  # noqa: E402
from ..memory import MemoryReport  # noqa: E402
from ..policy import Policy  # noqa: E402


def plot_rewards(history: list[dict[str, Any]], path: str | Path) -> None:
    ep = np.array([h["episode"] for h in history])
    rew = np.array([h["reward"] for h in history])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.scatter(ep, rew, s=8, alpha=0.6, label="episode reward")
    ax.plot(ep, np.maximum.accumulate(rew), color="C3", label="best so far")
    ax.set_xlabel("episode")
    ax.set_ylabel("reward = 0.1 x (acc_q - acc_float)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:  # never a half-written PNG
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_policy(
    graph: Graph, policy: Policy, report: MemoryReport, budget: Budget, path: str | Path
) -> None:
    """Top: bits per layer (weights, output activation). Bottom: FLASH and RAM per step."""
    names = [x.name for x in report.layers]
    x = np.arange(len(names))
    wbits = [policy.weights.get(n, 0) for n in names]
    abits = [policy.activations[graph.op(n).output] for n in names]
    fig, (a1, a2, a3) = plt.subplots(3, 1, figsize=(max(8, 0.32 * len(names)), 9), sharex=True)
    a1.bar(x - 0.2, wbits, 0.4, label="weight bits")
    a1.bar(x + 0.2, abits, 0.4, label="output activation bits")
    a1.set_yticks([2, 4, 8])
    a1.set_ylabel("bits")
    a1.legend(loc="upper right", fontsize=8)
    flash = np.cumsum([lay.flash_bytes for lay in report.layers])
    a2.bar(x, [lay.flash_bytes for lay in report.layers], color="C2", label="FLASH per layer")
    a2.plot(x, flash, color="C2", marker=".", label="cumulative FLASH")
    if budget.flash is not None:
        a2.axhline(budget.flash, color="C3", ls="--", label=f"FLASH budget {budget.flash:,} B")
    a2.set_ylabel("bytes")
    a2.legend(loc="upper left", fontsize=8)
    a3.bar(x, [lay.live_bytes for lay in report.layers], color="C1", label="live bytes per step")
    a3.axhline(
        report.ram_bytes,
        color="C1",
        ls=":",
        label=f"arena {report.arena_bytes:,} + scratch {report.scratch_bytes:,} B",
    )
    if budget.ram is not None:
        a3.axhline(budget.ram, color="C3", ls="--", label=f"RAM budget {budget.ram:,} B")
    a3.set_ylabel("bytes")
    a3.legend(loc="upper right", fontsize=8)
    a3.set_xticks(x)
    a3.set_xticklabels(names, rotation=90, fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:  # never a half-written PNG
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
