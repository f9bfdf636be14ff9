"""`micromix targets`: the MCU target registry."""

from __future__ import annotations

import argparse
import json

from ..budget import list_targets

NAME = "targets"
HELP = "list the known MCU targets and their FLASH / RAM"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    ts = list_targets()
    if args.json:
        print(json.dumps([t.__dict__ for t in ts], indent=2))
        return 0
    print(f"{'target':<12} {'FLASH':>12} {'RAM':>10}  note")
    for t in ts:
        flash = "external" if t.flash is None else f"{t.flash:,}"
        print(f"{t.name:<12} {flash:>12} {t.ram:>10,}  {t.note}")
    return 0
