"""`micromix run`: the whole job (float model, search, QAT, integer model, C export, report)."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

from ..pipeline import PRESETS, clean_run_dir, preset, run_pipeline
from ..rundir import prepare_run_dir
from .common import resolve_device

NAME = "run"
HELP = "run the whole job end to end (default: the quick Fashion-MNIST demo)"

# Options that override a preset field of the same name (None = keep the preset's value).
_OVERRIDES = {
    "model": str,
    "width": float,
    "resolution": int,
    "in_channels": int,
    "classes": int,
    "dataset": str,
    "checkpoint": str,
    "flash": str,
    "ram": str,
    "target": str,
    "strategy": str,
    "episodes": int,
    "finetune_epochs": int,
    "float_epochs": int,
    "eval_images": int,
    "export_images": int,
    "workers": int,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        default="quick",
        help=f"settings to start from: {', '.join(PRESETS)} (default quick)",
    )
    p.add_argument("--run-dir", default=None, help="run directory (default runs/<preset>)")
    for name, typ in _OVERRIDES.items():
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=typ,
            default=None,
            help=f"override the preset's {name}",
        )
    p.add_argument(
        "--weight-only",
        dest="weight_only",
        action="store_const",
        const=True,
        default=None,
        help="search weight bits only; activations stay at 8 bits",
    )
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--force", action="store_true", help="start over in a non-empty run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    cfg = preset(args.preset)
    changes = {
        f.name: getattr(args, f.name)
        for f in fields(cfg)
        if getattr(args, f.name, None) is not None
    }
    cfg = replace(cfg, **changes)
    resolve_device(cfg.device)
    run_dir = Path(args.run_dir or f"runs/{args.preset}")
    resume = args.resume
    if not args.force and not resume and (run_dir / "stages.json").exists():
        resume = True  # the default demo simply continues when rerun; say so
        print(f"[micromix] continuing the run in {run_dir} (pass --force to start over)")
    if args.force and run_dir.exists():
        clean_run_dir(run_dir)  # only what micromix wrote; the user's other files stay
    prepare_run_dir(run_dir, force=args.force, resume=resume)
    summary = run_pipeline(run_dir, cfg, resume=resume, progress=not args.quiet)
    print(summary)
    return 0
