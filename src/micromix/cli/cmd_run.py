"""`micromix run`: the whole job (float model, search, QAT, integer model, C export, report)."""

from __future__ import annotations

import argparse
from dataclasses import fields, replace
from pathlib import Path

from ..mcu import get_target
from ..pipeline import PRESETS, RunConfig, preset, resolve_checkpoint, run_pipeline
from .common import (
    DENSE_SCALES_HELP,
    budget_arg,
    dense_scales_arg,
    fraction_arg,
    positive_float,
    positive_int,
    resolve_device,
    schedule_arg,
    seed_int,
)

NAME = "run"
HELP = "run the whole job end to end (default: the quick Fashion-MNIST demo)"

# Options that override a preset field of the same name (None = keep the preset's value).
_OVERRIDES = {
    "model": str,
    "model_args": str,
    "input_shape": str,
    "width": positive_float,
    "resolution": positive_int,
    "in_channels": positive_int,
    "classes": positive_int,
    "dataset": str,
    "checkpoint": str,
    "flash": budget_arg,
    "ram": budget_arg,
    "target": str,
    "strategy": str,
    "episodes": positive_int,
    "top_k": positive_int,
    "finetune_epochs": positive_int,
    "qat_recipe": str,
    "float_epochs": positive_int,
    "eval_images": positive_int,
    "export_images": positive_int,
    "export_target": str,
    "search_train_images": positive_int,
    "search_eval_images": positive_int,
    "finetune_batches": positive_int,
    "batch_size": positive_int,
    "workers": positive_int,
    "schedule": schedule_arg,
    "max_recompute": fraction_arg,
    "dense_scales": dense_scales_arg,
}
_HELP = {"dense_scales": f"{DENSE_SCALES_HELP}; default channel, a resume keeps the recorded one"}


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
            metavar="{channel,tensor}" if name == "dense_scales" else None,
            help=_HELP.get(name, f"override the preset's {name}"),
        )
    p.add_argument(
        "--weight-only",
        dest="weight_only",
        action="store_const",
        const=True,
        default=None,
        help="search weight bits only; activations stay at 8 bits",
    )
    p.add_argument("--seed", type=seed_int, default=None)
    p.add_argument("--device", default=None, help="cpu (default) or cuda")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run (same settings; finished stages are kept)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="start over in a non-empty run directory (removes what an earlier run wrote)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _recorded(run_dir: Path, cfg: RunConfig, args: argparse.Namespace) -> RunConfig:
    """The settings config.json recorded, as defaults of a resume. A recorded value that names
    code or a path (a model outside the zoo, a checkpoint, a dataset file) is never taken from
    the file: the command line must give it again (the resume check then compares the two)."""
    from ..files import read_json
    from ..stored import inside, names_code_or_path, refuse_recorded

    path = inside(run_dir, "config.json")
    if not path.is_file():
        return cfg
    old = read_json(path)
    if old.get("command") != "run":
        return cfg
    names = {f.name for f in fields(cfg)}
    taken = {}
    for k, v in (old.get("settings") or {}).items():
        if k not in names or getattr(args, k, None) is not None:
            continue
        if names_code_or_path(k, v):
            raise refuse_recorded(k, v, path)
        taken[k] = v
    return replace(cfg, **taken)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The preset with the command line's overrides. --target gives the budget: the preset's
    ratios do not override it, and a --flash / --ram given with it applies within the target
    (a ratio capped by the target's memory; bytes above it refused; see Budget.parse). A
    resumed run starts from the settings it recorded (its model included)."""
    cfg = preset(args.preset)
    if args.resume and not args.force:
        cfg = _recorded(Path(args.run_dir or f"runs/{args.preset}"), cfg, args)
    changes = {
        f.name: getattr(args, f.name)
        for f in fields(cfg)
        if getattr(args, f.name, None) is not None
    }
    if args.target is not None:
        get_target(args.target)  # an unknown target or a bad target file: stop now
        changes.setdefault("flash", None)
        changes.setdefault("ram", None)
    explicit = {k for k, v in changes.items() if v is not None}
    return resolve_checkpoint(replace(cfg, **changes), explicit=explicit)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    resolve_device(cfg.device)
    run_dir = Path(args.run_dir or f"runs/{args.preset}")
    summary = run_pipeline(
        run_dir, cfg, resume=args.resume, force=args.force, progress=not args.quiet
    )
    print(summary)
    return 0
