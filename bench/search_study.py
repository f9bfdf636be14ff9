"""haq vs rule vs ilp at one budget cell, each policy after the same final QAT.

    python -m bench.search_study --cell table_b --strategy rule \\
        --episodes 40 --finetune-epochs 1 --out results/search_study.json

Cells (ratios of the uniform 8-bit FLASH / RAM): table_a = FLASH 0.48x, weight-only search;
table_b = FLASH 0.48x + RAM 0.42x; flash_0.36x / flash_0.75x = that FLASH + RAM 0.42x, all
with RAM counted layer by layer; table_b_scheduled = table_b's budgets in bytes with RAM
counted under `--schedule auto` (bench.common.CELL_SCHEDULE). One
strategy per call (each call is short enough for a shared machine; the search runs resume in
OUT_DIR/runs). The result is merged into --out as:
{"<model>": {"<cell>": {"<strategy>": {"test", "heldout_rescore", "search_score",
"flash_used", "ram_used", ...}}}}, with the command of every entry.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from bench.common import (
    CELL_SCHEDULE,
    CELLS,
    FLOAT,
    add_final_qat_args,
    final_qat,
    load_float,
    md_table,
    ratio_budget,
)
from micromix.data import load_dataset
from micromix.strategies import DDPGConfig, QATSettings, SearchConfig, create, search

STRATEGIES = ("rule", "ilp", "haq")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _trio(rows: tuple[dict, ...]):
    def fmt(key: str, f=lambda x: f"{x:.2f}") -> str:
        return "/".join("-" if x.get(key) is None else f(x[key]) for x in rows)

    return fmt


def _secs(x: float) -> str:
    return f"{x:.0f}"


def _pct1(x: float) -> str:
    return f"{100 * x:.1f}"


def render(doc: dict, header: str = "") -> str:
    """The results/search_study.md table from the merged JSON: test accuracy per strategy,
    haq - max(rule, ilp), the held-out re-scores (the choice haq made) and the budget used."""
    lines = [header] if header else []
    header = ("model", "cell", "rule", "ilp", "haq", "haq - max(rule, ilp)",
              "re-score r/i/h (held-out)", "search score r/i/h", "FLASH used % r/i/h",
              "RAM used % r/i/h", "search s r/i/h", "final QAT s r/i/h")  # fmt: skip
    rows: list[list[str]] = []
    diffs, missing = [], []
    for model in sorted(k for k in doc if not k.startswith("_")):
        for cell in sorted(doc[model]):
            row = doc[model][cell]
            if any(s not in row for s in STRATEGIES):
                missing.append(
                    f"{model}/{cell}: " + ", ".join(s for s in STRATEGIES if s not in row)
                )
                continue
            r, i, h = (row[s] for s in STRATEGIES)
            d = round(h["test"] - max(r["test"], i["test"]), 2)  # accuracies have 2 decimals
            diffs.append(d)

            trio = _trio((r, i, h))
            rows.append(
                [model, cell, f"{r['test']:.2f}", f"{i['test']:.2f}", f"{h['test']:.2f}",
                 f"{d:+.2f}", trio("heldout_rescore"), trio("search_score"),
                 trio("flash_used", _pct1), trio("ram_used", _pct1),
                 trio("search_seconds", _secs), trio("final_qat_seconds", _secs)]
            )  # fmt: skip
    lines += md_table(header, rows, "llrrrrllllll")
    lines.append("")
    if diffs:
        worst = min(diffs)
        lines.append(
            f"mean of haq - max(rule, ilp) over the {len(diffs)} cells: {sum(diffs) / len(diffs):+.2f} "
            f"points (goal >= +0.30); worst cell {worst:+.2f} (goal >= -0.10); "
            f"cells within 0.1: {sum(x >= -0.1 for x in diffs)} of {len(diffs)}"
        )
    agree = {k: [0, 0] for k in ("search_score", "heldout_rescore")}
    for model in (k for k in doc if not k.startswith("_")):
        for row in doc[model].values():
            names = [s for s in STRATEGIES if s in row]
            for j, a in enumerate(names):
                for b in names[j + 1 :]:
                    dt = row[a]["test"] - row[b]["test"]
                    for k, n in agree.items():
                        dk = (row[a].get(k) or 0) - (row[b].get(k) or 0)
                        if dt and dk:
                            n[0] += (dt > 0) == (dk > 0)
                            n[1] += 1
    lines.append(
        "pairs of strategies in a cell ordered as by the test set (ties left out): "
        + "; ".join(f"{k} {a} of {n}" for k, (a, n) in agree.items())
    )
    used = [
        (m, c, s, x)
        for m in doc
        if not m.startswith("_")
        for c in doc[m]
        for s, x in doc[m][c].items()
        if isinstance(x, dict)
    ]
    low = [
        f"{m}/{c}/{s} {_pct(max(v for v in (x.get('flash_used'), x.get('ram_used')) if v is not None))}"
        for m, c, s, x in used
        if max((v for v in (x.get("flash_used"), x.get("ram_used")) if v is not None), default=1)
        < 0.98
    ]
    lines.append(
        "binding budget >= 98 % used by every returned policy"
        if not low
        else "binding budget under 98 %: " + ", ".join(low)
    )
    if missing:
        lines.append("missing (a process failed or timed out): " + "; ".join(missing))
    return "\n".join(lines) + "\n"


def render_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="render results/search_study.md from the JSON")
    ap.add_argument("--render", required=True, help="merged study JSON")
    ap.add_argument("--md", required=True, help="markdown file to write")
    ap.add_argument("--header", default="", help="a file whose text goes above the table")
    a = ap.parse_args(argv)
    doc = json.loads(Path(a.render).read_text())
    header = Path(a.header).read_text() if a.header else ""
    Path(a.md).write_text(render(doc, header))
    print(Path(a.md).read_text())
    return 0


def main() -> int:
    if "--render" in sys.argv:
        return render_main(sys.argv[1:])
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="mobilenet_v1", choices=sorted(FLOAT))
    ap.add_argument("--cell", default="table_b", choices=sorted(CELLS))
    ap.add_argument("--strategy", required=True, choices=["haq", "rule", "ilp"])
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=10)
    add_final_qat_args(ap)
    ap.add_argument("--out", default="results/search_study.json")
    ap.add_argument(
        "--quick", action="store_true", help="a check of the script only: tiny image counts"
    )
    a = ap.parse_args()
    model, graph = load_float(a.model)
    flash, ram, weights_only = CELLS[a.cell]
    budget = ratio_budget(graph, flash, ram)
    data = load_dataset("fashion_mnist")
    kw: dict = {"weights_only": weights_only}
    if a.strategy == "haq":
        kw.update(episodes=a.episodes, agent=DDPGConfig(warmup=a.warmup))
    qat = QATSettings(final_recipe=a.qat_recipe)
    train = data.train
    if a.quick:
        qat = replace(qat, train_images=128, eval_images=128, rescore_train_images=128,
                      rescore_images=128, rescore_epochs=1)  # fmt: skip
        train = data.train.subset(256, seed=0)
        data = replace(data, test=data.test.subset(256, seed=0))
    t0 = time.time()
    res = search(
        model,
        data,
        budget,
        create(a.strategy, **kw),
        SearchConfig(
            run_dir=Path("runs/search_study") / f"{a.model}-{a.cell}-{a.strategy}",
            seed=a.seed,
            qat=qat,
            resume=True,
            force=True,
            device=a.device,
            progress=False,
            plots=False,
            schedule=CELL_SCHEDULE.get(a.cell, "layer"),
        ),
        graph=graph,
    )
    search_s = time.time() - t0
    t1 = time.time()
    test = final_qat(
        model, graph, res.policy, train, data.test, a.qat_recipe, a.finetune_epochs, a.seed,
        a.device,
    )  # fmt: skip
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
        "final_qat_recipe": a.qat_recipe,
        "final_qat_seconds": round(time.time() - t1, 1),
        "device": a.device,
        "schedule": CELL_SCHEDULE.get(a.cell, "layer"),
        "ram_bytes": res.report.ram_bytes,
        "quick": a.quick,
        "command": "python -m bench.search_study " + " ".join(sys.argv[1:]),
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
