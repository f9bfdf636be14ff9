"""The `micromix` command. Each sub-command lives in its own module in this package.

A command module defines `NAME`, `HELP`, `add_arguments(parser)` and `run(args) -> int`.
User mistakes raise MicromixError and are printed as one sentence with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
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
        self.exit(2, f"micromix: error: {' '.join(message.split())} (see `{self.prog} --help`).\n")


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
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage errors (one sentence, code 2) and --help (code 0)
        return e.code if isinstance(e.code, int) else 0
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    ok = False
    try:
        code = int(args._run(args) or 0)
        ok = code == 0
        return code
    except MicromixError as e:
        return _fail(str(e))
    except OSError as e:  # a full or read-only disk, permissions: path and cause
        from ..files import os_error_message

        return _fail(os_error_message(e, action="access"))
    except RecursionError:
        return _fail("an input is nested too deeply to be read.")
    except MemoryError:
        return _fail("out of memory: the model or data asked for is too large for this machine.")
    except KeyboardInterrupt:
        print(
            "micromix: interrupted; rerun the same command with --resume to continue.",
            file=sys.stderr,
        )
        return 130
    except Exception as e:  # a bug, not a user mistake: still one sentence, not a traceback
        if os.environ.get("MICROMIX_TRACEBACK"):
            raise
        if "can't allocate memory" in str(e) or "out of memory" in str(e).lower():
            need = re.search(r"allocate (\d+) bytes", str(e))
            size = f" (one allocation of {int(need.group(1)):,} B)" if need else ""
            return _fail(
                f"out of memory: the model or data asked for is too large for this machine{size}."
            )
        first = (str(e).splitlines() or [""])[0][:200]
        return _fail(
            f"internal error ({type(e).__name__}: {first}); please report it as a micromix bug "
            "(MICROMIX_TRACEBACK=1 shows the traceback).",
            code=1,
        )
    finally:
        from ..rundir import release_all, settle_all

        settle_all(failed=not ok)  # a failed --force puts the earlier results back
        release_all()  # locks of run directories end with the command, also in-process


def _fail(message: str, code: int = 2) -> int:
    """One line on stderr: every message is one sentence, so only its first line is kept."""
    line = " ".join(message.split())
    print(f"micromix: error: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
