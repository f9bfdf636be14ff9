"""The `micromix` command. Each sub-command lives in its own module in this package.

A command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`.
User mistakes raise MicromixError and are printed as one sentence with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import MicromixError

# Order is the order of `micromix --help`. A module that is not there yet is skipped.
COMMAND_MODULES = [
    "run",
    "train",
    "memory",
    "search",
    "finetune",
    "export",
    "report",
    "targets",
    "models",
    "baseline",
]


class _Parser(argparse.ArgumentParser):
    """Usage mistakes get one sentence and exit code 2, like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help).\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="micromix",
        description="Mixed 2/4/8-bit quantization of CNNs for microcontroller memory budgets.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"{__name__}.cmd_{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.cmd_{name}":
                continue
            raise
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        argv = ["run"]  # the default demo
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except MicromixError as e:
        print(f"micromix: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "micromix: interrupted; rerun the same command with --resume to continue.",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
