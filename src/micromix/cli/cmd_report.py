"""`micromix report D`: render a run directory's report.md and plots again."""

from __future__ import annotations

import argparse

from ..report import render

NAME = "report"
HELP = "render report.md and plots of a run directory again"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `micromix run`")


def run(args: argparse.Namespace) -> int:
    print(render(args.run_dir))
    return 0
