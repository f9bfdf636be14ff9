"""report.md and PNG plots of a `micromix run` directory, rendered from the files in it.

Everything shown is read back from the run directory (stages.json, budget.json, policy.json,
search/episodes.jsonl, graph.json), so `micromix report D` renders the same report again
at any time, also for a run that stopped half way, and for a received run directory without
the model's source: it builds no model and imports no code.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from .budget import Budget
from .errors import MicromixError
from .files import read_json, write_text
from .memory import memory_report
from .policy import Policy
from .stored import graph_of_run_dir, inside, recorded_scheduling


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a crash ends the usable history
    return rows


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} %"


def _bytes(v: int | None) -> str:
    return "-" if v is None else f"{v:,} B"


def export_rows(info: dict[str, Any]) -> dict[str, Any]:
    """The C export's table rows, from its export.json (the folder's own record, so a report
    never shows the results of an export that `micromix export --force` has replaced)."""
    chip = info.get("chip")
    row: dict[str, Any] = {"target": chip["name"] if isinstance(chip, dict) else info["target"]}
    if "built" not in info:
        row["built and checked"] = "no (--no-check)"
        return row
    row.update(
        {
            "self-test images bit-identical": f"{info['selftest_identical']} / {info['selftest_images']}",
            "const data in the object file (B)": info["built"]["const_bytes"],
            "arena + scratch in the object file (B)": info["built"]["ram_bytes"],
            "memory model FLASH (B)": info["memory_model"]["flash_bytes"],
            "memory model RAM (B)": info["memory_model"]["ram_bytes"],
        }
    )
    if "fit" in info:
        f = info["fit"]
        for k in ("flash", "ram"):
            row[f"fit: {f[k]['region']} needed / available (B)"] = (
                f"{f[k]['needed']:,} / {f[k]['available']:,}"
            )
        row[f"fit: chip-sized image on qemu {f['board']}"] = (
            f"{f['qemu_images']} images = reference"
        )
    if "cortex_m4" in info:
        m4 = info["cortex_m4"]
        row["Cortex-M4 image FLASH, text+rodata (B)"] = m4["flash_bytes"]
        row["Cortex-M4 image RAM, data+bss+stack (B)"] = m4["ram_bytes"]
        row["Cortex-M4 call stack used, measured (B)"] = m4["stack_used"]
        row["Cortex-M4 logits = reference (qemu)"] = f"{m4['images']} images"
    return row


def render(run_dir: str | Path) -> str:
    """Write run_dir/report.md (+ PNGs) and return the short summary printed by `micromix run`."""
    try:
        return _render(run_dir)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as e:
        # The files were edited or damaged by hand: say so in one sentence, not a traceback.
        raise MicromixError(
            f"the files of run directory {run_dir} are damaged ({type(e).__name__}: "
            f"{str(e)[:80]}); rerun `micromix run` with --force to rebuild them."
        ) from None


def _render(run_dir: str | Path) -> str:
    d = Path(run_dir)
    if not inside(d, "config.json").exists():
        raise MicromixError(f"{d} is not a micromix run directory (no config.json).")
    stages: dict[str, Any] = (
        read_json(d / "stages.json", expect=dict) if inside(d, "stages.json").exists() else {}
    )
    cfg = read_json(d / "config.json", expect=dict)
    has_budget = inside(d, "budget.json").exists()
    recorded = read_json(d / "budget.json", expect=dict) if has_budget else {}
    budget = Budget.from_json(recorded) if has_budget else Budget()
    acc = {k: stages.get(k, {}).get("test_acc") for k in ("float", "finetune", "integer")}
    memory, summary_mem = _memory_section(d, budget, recorded.get("reference_8bit", {}))
    export_json = inside(d, "c/export.json")
    e = export_rows(read_json(export_json, expect=dict)) if export_json.is_file() else None
    lines = [
        f"# micromix run: {d.name}",
        "",
        *_accuracy_section(acc, stages),
        *memory,
        *_search_section(d),
        *_export_section(d, e),
        *_settings_section(cfg, stages),
    ]
    write_text(d / "report.md", "\n".join(lines) + "\n")
    summary = [
        f"float {_pct(acc['float'])} | fake-quant {_pct(acc['finetune'])} | integer {_pct(acc['integer'])}",
    ]
    if summary_mem:
        summary.append(summary_mem)
    if e is not None:
        summary.append(
            "C build: "
            + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in e.items())
        )
    summary.append(f"report: {d / 'report.md'}")
    return "\n".join(summary)


def _accuracy_section(acc: dict[str, float | None], stages: dict[str, Any]) -> list[str]:
    lines = [
        "## Accuracy (test set)",
        "",
        "| model | top-1 |",
        "|---|---|",
        f"| float | {_pct(acc['float'])} |",
        f"| fake-quant (QAT) | {_pct(acc['finetune'])} |",
        f"| integer (numpy reference = C) | {_pct(acc['integer'])} |",
    ]
    if "integer" in stages:
        s = stages["integer"]
        lines.append(
            f"\nInteger and fake-quant predictions agree on {s['agreement']:.2f} % of {s['images']:,} test images."
        )
    if "search" in stages:
        lines.append(
            f"\nBest held-out accuracy during the search: {_pct(stages['search'].get('heldout_acc'))}."
        )
    return lines


def _memory_section(d: Path, budget: Budget, ref: dict[str, Any]) -> tuple[list[str], str]:
    """The memory tables and policy plot of the run's policy (from the stored graph: no model
    is built, no code imported), and the one-line summary; nothing without a policy."""
    if not inside(d, "policy.json").exists():
        return [], ""
    from .strategies.plots import plot_policy

    graph = graph_of_run_dir(d)
    policy = Policy.load(inside(d, "policy.json")).validate(graph)
    # the schedule the run recorded (a run directory from before schedules: layer by layer)
    sched = recorded_scheduling(d)
    rep = memory_report(graph, policy) if sched is None else sched.report(graph, policy)
    plot_policy(graph, policy, rep, budget, d / "policy.png")
    util = {k: None if v is None else 100 * v for k, v in budget.utilization(rep).items()}
    target = [
        f"Target: {budget.target} (budget = its largest regions less the reserves for "
        "code, startup and stack, or the limits given within it).",
        "",
    ]
    lines = [
        "",
        "## Memory (exact; the C build allocates the same bytes)",
        "",
        *[f"Note: {note}" for note in graph.notes],
        *([""] if graph.notes else []),
        *(target if budget.target else []),
        "| | used | budget | utilization | uniform 8-bit |",
        "|---|---|---|---|---|",
        f"| FLASH | {_bytes(rep.flash_bytes)} | {_bytes(budget.flash)} | {_pct(util['flash'])} | {_bytes(ref.get('flash'))} |",
        f"| RAM (arena + scratch) | {_bytes(rep.ram_bytes)} | {_bytes(budget.ram)} | {_pct(util['ram'])} | {_bytes(ref.get('ram'))} |",
        "",
        f"RAM = activation arena {rep.arena_bytes:,} B (liveness lower bound "
        f"{rep.ram_lower_bound:,} B) + the kernels' shared scratch {rep.scratch_bytes:,} B. "
        "The call stack (small fixed locals) is extra: the C build section gives it as measured under qemu.",
        "",
        "![bits and memory per layer](policy.png)",
        "",
        "### Bits and bytes per layer",
        "",
        "```",
        rep.table(budget),
        "```",
    ]
    return lines, budget.describe(rep)


def _search_section(d: Path) -> list[str]:
    episodes = _load_jsonl(inside(d, "search/episodes.jsonl"))
    if not episodes:
        return []
    from .strategies.plots import plot_rewards

    plot_rewards(episodes, d / "search_curve.png")
    return [
        "",
        f"## Search ({len(episodes)} episodes)",
        "",
        "![reward per episode](search_curve.png)",
    ]


def _export_section(d: Path, e: dict[str, Any] | None) -> list[str]:
    if e is None:
        return []
    lines = ["", "## C export", "", "| | value |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" if isinstance(v, int) else f"| {k} | {v} |" for k, v in e.items()]
    # Quoted: a path with spaces or `$(...)` pasted into a shell must stay one argument.
    make = f"make -C {shlex.quote(str(d / 'c'))}"
    return [*lines, "", f"Sources in `{d / 'c'}`; build with `{make}`."]


def _settings_section(cfg: dict[str, Any], stages: dict[str, Any]) -> list[str]:
    lines = ["", "## Settings", "", "```json", json.dumps(cfg.get("settings", {}), indent=2), "```"]
    lines += ["", "## Stage times", "", "| stage | seconds |", "|---|---|"]
    return lines + [f"| {k} | {v.get('seconds') or 0:.1f} |" for k, v in stages.items()]
