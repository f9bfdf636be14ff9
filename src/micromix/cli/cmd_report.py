"""`micromix report D`: render a run directory's report.md and plots again."""

from __future__ import annotations

import argparse

from ..errors import MicromixError
from ..report import render

NAME = "report"
HELP = "render report.md and plots of a run directory again"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory written by `micromix run`")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..rundir import lock_dir

    if not Path(args.run_dir).is_dir():
        raise MicromixError(f"{args.run_dir} is not a folder (a run directory of `micromix run`).")
    lock = lock_dir(args.run_dir)  # no rendering while a run writes there
    try:
        print(render(args.run_dir))
    finally:
        lock.release()
    return 0
