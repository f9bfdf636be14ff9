"""Markdown tables and the Pareto plot of bench/paper_study.py, rendered from raw.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .common import md_table  # noqa: E402

ROWS_A = [
    ("haq", "haq: mixed 2/4/8 uniform (searched)"),
    ("kmeans", "k-means non-uniform, haq's per-layer bits"),
    ("uniform_w4a8", "uniform 4-bit weights"),
]
ROWS_B = [
    ("haq", "haq (DDPG + action wall)"),
    ("rule", "rule (MLSys 2020 procedure)"),
    ("ilp", "ilp (sensitivity + MILP)"),
    ("best_8bit_fit", "best 8-bit network that fits"),
    ("uniform_w4a4", "uniform 4/4"),
]


def _fmt(v: Any, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "acc":
        return f"{v:.2f}"
    return f"{int(v):,}"


def _table(
    raw: dict, name: str, table: str, rows: list[tuple[str, str]], budget: dict
) -> list[str]:
    out = []
    for key, label in rows:
        c = raw.get(f"{name}/{table}/{key}")
        if c is None:
            out.append([label, "not run", "", "", "", ""])
            continue
        fits = all(
            budget.get(k) is None or c.get(k) is None or c[k] <= budget[k] for k in ("flash", "ram")
        )
        out.append(
            [label, _fmt(c.get("test_acc"), "acc"), _fmt(c.get("flash"), "b"),
             _fmt(c.get("ram"), "b"), "yes" if fits else "NO", f"{c.get('seconds', 0) / 60:.1f}"]
        )  # fmt: skip
    return md_table(("policy", "test top-1 %", "FLASH B", "RAM B", "fits", "minutes"), out)


def write_markdown(
    raw: dict, out: Path, args: Any, float_cmd: dict[str, str], ram_model: str
) -> None:
    """tables.md (+ Pareto plots) of a study; `ram_model` is what the current code measures."""
    lines = ["# The paper's study on Fashion-MNIST (scaled down)", ""]
    meta = raw.get("_meta", {})
    lines += [
        "Command:",
        "",
        f"    python {' '.join(a for a in meta.get('argv', ['bench/paper_study.py']) if a != '--tables-only')}",
        "",
        f"Machine: {meta.get('machine', '?')}, torch {meta.get('torch', '?')}, {meta.get('cores', '?')} threads. "
        f"Settings: {args.episodes} search episodes ({args.warmup} warm-up), final QAT fine-tune "
        f"{args.finetune_epochs} epochs for every policy, budgets FLASH {args.flash}x / RAM {args.ram}x of the "
        "uniform 8-bit figures. Raw numbers (with policies) in raw.json. Minutes are wall time on a "
        "machine shared with other jobs (up to load 6), so they compare poorly across rows.",
        "",
    ]
    if meta.get("ram_model") != ram_model:
        lines += [
            "RAM figures and RAM budgets here are the activation arena only: these cells were "
            "measured (commit 343e2a3) before micromix counted the C kernels' shared scratch "
            "buffer in RAM. With it, each RAM figure grows by 512-580 B and the 0.42x budget is "
            "taken of the 8-bit arena + scratch.",
            "",
        ]
    for name in args.models:
        fl = raw.get(f"{name}/float")
        if fl is None:
            continue
        bud_a = {"flash": int(args.flash * fl["flash"]), "ram": None}
        bud_b = {"flash": int(args.flash * fl["flash"]), "ram": int(args.ram * fl["ram"])}
        lines += [
            f"## {name}",
            "",
            f"Float: {fl['test_acc']:.2f} % test; uniform 8-bit needs FLASH {fl['flash']:,} B and RAM {fl['ram']:,} B. "
            f"Float model: `{float_cmd.get(name, '?')}`.",
            "",
            f"### Table A: FLASH only ({bud_a['flash']:,} B)",
            "",
            *_table(raw, name, "A", ROWS_A, bud_a),
            "",
            f"### Table B: FLASH {bud_b['flash']:,} B + RAM {bud_b['ram']:,} B",
            "",
            *_table(raw, name, "B", ROWS_B, bud_b),
            "",
        ]
        fit8 = raw.get(f"{name}/B/best_8bit_fit")
        if fit8:
            cfg = fit8["model_config"]
            lines += [
                f"Best fitting 8-bit network: width {cfg['width']}, resolution {cfg['resolution']} "
                f"(trained {fit8['float_epochs']} float epochs + the same QAT).",
                "",
            ]
        pareto = _pareto(raw, name, out)
        if pareto:
            lines += [
                f"### Pareto sweep: FLASH budgets, RAM {args.ram}x",
                "",
                *_pareto_table(raw, name),
                "",
                f"![Pareto {name}]({pareto})",
                "",
            ]
    (out / "tables.md").write_text("\n".join(lines) + "\n")


def _pareto_table(raw: dict, name: str) -> list[str]:
    cells: dict[tuple[float, str], dict] = {}
    for key, c in raw.items():
        parts = key.split("/")
        if len(parts) == 4 and parts[0] == name and parts[1] == "pareto":
            cells[float(parts[3]), parts[2]] = c
    rows = [
        [f"{ratio}x", strategy, f"{c['test_acc']:.2f}", f"{c['flash']:,}", f"{c['ram']:,}",
         f"{c['seconds'] / 60:.1f}"]
        for (ratio, strategy), c in sorted(cells.items())
    ]  # fmt: skip
    header = ("FLASH budget", "strategy", "test top-1 %", "FLASH B", "RAM B", "minutes")
    return md_table(header, rows)


def _pareto(raw: dict, name: str, out: Path) -> str | None:
    series: dict[str, list[tuple[float, float]]] = {}
    for key, c in raw.items():
        parts = key.split("/")
        if len(parts) == 4 and parts[0] == name and parts[1] == "pareto":
            series.setdefault(parts[2], []).append((c["flash"], c["test_acc"]))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for strategy, pts in sorted(series.items()):
        pts.sort()
        ax.plot([p[0] / 1000 for p in pts], [p[1] for p in pts], marker="o", label=strategy)
    fl = raw.get(f"{name}/float")
    if fl:
        ax.axhline(fl["test_acc"], color="gray", ls=":", label="float")
    ax.set_xlabel("FLASH used (kB)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"{name}: accuracy vs FLASH (RAM 0.42x)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = f"pareto_{name}.png"
    fig.savefig(out / path, dpi=110)
    plt.close(fig)
    return path
