"""`micromix targets`: the MCU target registry (core, memory map, budgets, sources)."""

from __future__ import annotations

import argparse
import json

from ..mcu import get_target, list_targets

NAME = "targets"
HELP = "list the known MCU targets: core, FLASH / RAM regions and the search budget"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--target", action="append", default=None, help="show this target (name or .toml/.json)"
    )


def run(args: argparse.Namespace) -> int:
    ts = [get_target(t) for t in args.target] if args.target else list_targets()
    if args.json:
        print(json.dumps([t.to_json() for t in ts], indent=2))
        return 0
    print(f"{'target':<12} {'core':<14} {'FLASH':>10} {'RAM':>9}  budget FLASH / RAM")
    for t in ts:
        flash = "external" if t.flash is None else f"{t.flash:,}"
        fb = "none" if t.flash_budget is None else f"{t.flash_budget:,}"
        print(f"{t.name:<12} {t.core:<14} {flash:>10} {t.ram:>9,}  {fb} / {t.ram_budget:,}")
        for kind, regions in (("FLASH", t.flash_regions), ("RAM", t.ram_regions)):
            for r in regions:
                print(f"    {kind:<5} {r.name:<18} {r.origin:#010x} {r.length:>10,} B")
        if t.note:
            print(f"    note: {t.note}")
        print(f"    source: {t.source}")
    print(
        "budget = the largest FLASH / RAM region less a reserve for code, startup and stack "
        "(reserve_flash / reserve_ram)."
    )
    return 0
