"""`micromix memory`: FLASH / RAM table of a model under uniform bits or a policy file."""

from __future__ import annotations

import argparse
import json

from ..budget import Budget
from ..cost import cost_rows, cost_table
from ..errors import MicromixError
from ..graph import with_scales
from ..memory import memory_report
from ..policy import Policy
from ..schedule import plan, report_of
from .common import (
    add_budget_args,
    add_model_args,
    add_schedule_args,
    json_file,
    load_model_for,
    positive_int,
    traced,
    weight_scales,
)

NAME = "memory"
HELP = "print the exact FLASH and RAM of a model under a policy"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    p.add_argument(
        "--checkpoint",
        help="a micromix model file (overrides the model options), or plain weights for --model",
    )
    p.add_argument(
        "--run-dir",
        help="the model (and policy.json, if any) recorded in a run directory",
    )
    p.add_argument(
        "--bits",
        type=positive_int,
        default=8,
        help="uniform weight bits (and activation bits unless --abits)",
    )
    p.add_argument("--abits", type=positive_int, default=None, help="uniform activation bits")
    p.add_argument("--policy", type=json_file, help="policy JSON file (overrides --bits)")
    add_budget_args(p)
    add_schedule_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--cost",
        action="store_true",
        help="also show per layer and in total the instructions and estimated cycles on a "
        "Cortex-M4 (measured table, micromix.cost)",
    )


def _graph(args: argparse.Namespace):
    """The Graph to measure. A run directory, or a micromix model file given without --model,
    is read as data (its stored graph, with the weight scales it was traced with unless
    --dense-scales names others): no model is built and no code imported."""
    graph = _stored_graph(args)
    if graph is None:
        return traced(args, load_model_for(args))
    return graph if args.dense_scales is None else with_scales(graph, weight_scales(args))


def _stored_graph(args: argparse.Namespace):
    from ..stored import graph_of_file, graph_of_run_dir, inside

    if args.run_dir and not (args.checkpoint or args.model):
        recorded = inside(args.run_dir, "policy.json")
        if args.policy is None and recorded.is_file():
            args.policy = str(recorded)
        return graph_of_run_dir(args.run_dir)
    if args.checkpoint and not args.model and not args.input_shape:
        return graph_of_file(args.checkpoint)
    return None


def run(args: argparse.Namespace) -> int:
    graph = _graph(args)
    policy = (
        Policy.load(args.policy).validate(graph)
        if args.policy
        else Policy.uniform(graph, args.bits, args.abits)
    )
    scheduled = _schedules(graph, policy, args)
    # the chosen schedule's arena: what `export --schedule` allocates
    report = report_of(graph, policy, scheduled["chosen"])
    budget = None
    if args.flash or args.ram or args.target:
        ref = memory_report(graph, Policy.uniform(graph, 8))
        budget = Budget.parse(args.flash, args.ram, target=args.target, reference=ref)
    if args.json:
        out = report.to_json()
        out["notes"] = list(graph.notes)
        if budget is not None:
            out["budget"] = budget.to_json()
            out["utilization"] = budget.utilization(report)
        if args.cost:
            rows = cost_rows(graph, policy)
            known = [r for r in rows if r["instructions"] is not None]
            out["cost"] = {
                "layers": rows,
                "instructions": sum(r["instructions"] for r in known),
                "est_cycles": sum(r["est_cycles"] for r in known),
                "layers_without_measurement": len(rows) - len(known),
            }
        out["schedule"] = _schedule_json(scheduled)
        print(json.dumps(out, indent=2))
    else:
        print(report.table(budget))
        if args.cost:
            print()
            print(cost_table(cost_rows(graph, policy)))
        print()
        print(_schedule_table(scheduled))
        for note in graph.notes:  # e.g. a trailing softmax left to the application
            print(f"note: {note}")
    return 0


EXPORT_NOTE = "`micromix export --schedule {}` allocates the chosen schedule's RAM ({:,} B)"


def _schedules(graph, policy: Policy, args: argparse.Namespace) -> dict:
    """{schedule: ScheduledMemory} for every schedule and "chosen" for --schedule."""
    cap = args.max_recompute
    out = {k: plan(graph, policy, k, cap) for k in ("layer", "inplace", "auto", "stream")}
    try:
        out["patch"] = plan(graph, policy, "patch", cap)
    except MicromixError:  # no split point within the cap: patch is not an option here
        if args.schedule == "patch":
            raise
    out["chosen"] = out[args.schedule]
    out["name"] = args.schedule
    return out


def _note(scheduled: dict) -> str:
    return EXPORT_NOTE.format(scheduled["name"], scheduled["chosen"].ram_bytes)


def _schedule_json(scheduled: dict) -> dict:
    return {
        "schedules": {
            k: {"ram": m.ram_bytes, "macs": m.macs, "mac_overhead": m.mac_overhead}
            for k, m in scheduled.items()
            if k not in ("chosen", "name")
        },
        "chosen": scheduled["chosen"].to_json(),
        "export_ram": scheduled["chosen"].ram_bytes,
        "note": _note(scheduled),
    }


def _schedule_table(scheduled: dict) -> str:
    rows = [f"{'schedule':<9} {'peak RAM B':>12} {'MACs':>14} {'recompute':>9}"]
    for k in ("layer", "inplace", "patch", "auto", "stream"):
        if k in scheduled:
            m = scheduled[k]
            rows.append(f"{k:<9} {m.ram_bytes:>12,} {m.macs:>14,} {100 * m.mac_overhead:>8.1f}%")
        else:
            rows.append(f"{k:<9} {'-':>12} (no split point within the recompute cap)")
    chosen = scheduled["chosen"]
    rows += ["", f"chosen: {chosen.describe()}"]
    if chosen.inplace:
        rows.append(f"in place: {', '.join(chosen.inplace)}")
    rows.append(f"{'step':>4} {'op':<40} {'live B':>10}  buffers (bytes)")
    for s in chosen.steps:
        live = sum(b for _, b in s.buffers)
        bufs = ", ".join(f"{n} {b:,}" for n, b in s.buffers)
        rows.append(f"{s.step:>4} {s.label[:40]:<40} {live:>10,}  {bufs}")
    rows.append(
        f"RAM {chosen.ram_bytes:,} B (arena {chosen.arena_bytes:,}, kernel scratch "
        f"{chosen.scratch_bytes:,})"
    )
    rows.append("note: " + _note(scheduled) + ".")
    return "\n".join(rows)
