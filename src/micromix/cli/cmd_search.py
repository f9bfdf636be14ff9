"""`micromix search`: find a mixed 2/4/8-bit policy that fits a FLASH and RAM budget."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..budget import Budget, check_feasible, format_bytes
from ..errors import MicromixError
from ..memory import memory_report
from ..policy import Policy
from ..rundir import check_run_dir
from .common import (
    add_batch_size,
    add_budget_args,
    add_common,
    add_data_args,
    add_model_args,
    add_schedule_args,
    check_classes,
    data_for,
    load_model_for,
    nonneg_int,
    positive_int,
    resolve_device,
    traced,
)

NAME = "search"
HELP = "search a mixed-precision policy under FLASH and RAM budgets (haq, rule, ilp, ...)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", default="haq", help="haq (default), rule, ilp, uniform or random")
    p.add_argument(
        "--checkpoint",
        help="float model: a micromix model file, or plain weights for --model (state_dict, "
        "{'state_dict': ...} or {'model': ...})",
    )
    add_model_args(p, default=None)
    add_budget_args(p)
    add_schedule_args(p)
    p.add_argument(
        "--episodes", type=positive_int, default=None, help="episodes for haq/random (600)"
    )
    p.add_argument("--warmup", type=nonneg_int, default=None, help="random warm-up episodes (20)")
    p.add_argument(
        "--train-images",
        type=positive_int,
        default=None,
        help="fine-tune images per episode (2000)",
    )
    p.add_argument(
        "--eval-images", type=positive_int, default=None, help="held-out images per episode (2000)"
    )
    add_batch_size(p, 64, "per-episode fine-tune")
    p.add_argument(
        "--weight-only",
        action="store_true",
        help="search weight bits only; activations stay at 8 bits (any strategy)",
    )
    p.add_argument(
        "--workers", type=positive_int, default=1, help="policies evaluated at a time (Ray above 1)"
    )
    p.add_argument(
        "--ray-address", default=None, help="join this Ray cluster instead of a local one"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_data_args(p)
    add_common(p)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..files import read_json, write_json
    from ..stored import write_graph
    from ..strategies import QATSettings, SearchConfig, get, search, strategy_config

    get(args.strategy)  # an unknown strategy fails here, naming the known ones
    if not args.checkpoint:
        raise MicromixError(
            "--checkpoint is required: a float model file, or plain weights with --model."
        )
    if not (args.flash or args.ram or args.target):
        raise MicromixError("give a budget: --flash and/or --ram (e.g. 0.48x, 512kB) or --target.")
    cfg = strategy_config(
        args.strategy, episodes=args.episodes, warmup=args.warmup, weights_only=args.weight_only
    )
    qat = QATSettings(batch_size=args.batch_size)
    if args.train_images is not None:
        qat = replace(qat, train_images=args.train_images)
    if args.eval_images is not None:
        qat = replace(qat, eval_images=args.eval_images)
    config = SearchConfig(  # every setting checked here, before anything loads or trains
        run_dir=args.run_dir,
        seed=args.seed,
        qat=qat,
        resume=args.resume,
        force=args.force,
        device=resolve_device(args.device),
        progress=not args.no_progress,
        workers=args.workers,
        ray_address=args.ray_address,
        schedule=args.schedule,
        max_recompute=args.max_recompute,
    )
    qat.check_trains()  # the QAT evaluator's: refused before the data loads
    check_run_dir(args.run_dir, "search", resume=args.resume, force=args.force)
    model = load_model_for(args)
    graph = traced(args, model)
    ref = memory_report(graph, Policy.uniform(graph, 8))
    budget = Budget.parse(args.flash, args.ram, target=args.target, reference=ref)
    # fail before loading data or training anything (RAM under the schedule)
    check_feasible(graph, budget, config.scheduling)
    if args.weight_only:
        from ..strategies.engine import check_weight_only

        check_weight_only(graph, budget, config.scheduling)
    data = data_for(args, model)
    check_classes(data, graph)
    result = search(model, data, budget, cfg, config, graph=graph)
    # The run directory names its data (search() recorded the model's spec).
    cfg_path = Path(args.run_dir) / "config.json"
    recorded = read_json(cfg_path)
    recorded.setdefault("settings", {})["dataset"] = args.dataset
    write_json(cfg_path, recorded)
    write_graph(args.run_dir, graph)
    u = result.utilization
    used = ", ".join(
        f"{k.upper()} {format_bytes(getattr(result.report, f'{k}_bytes'))} ({100 * v:.1f}% of budget)"
        for k, v in u.items()
        if v is not None
    )
    fa = "" if result.float_accuracy is None else f" (float {result.float_accuracy:.2f}%)"
    rescore = "" if result.heldout_acc is None else f", re-scored {result.heldout_acc:.2f}%"
    print(
        f"{args.strategy}: held-out accuracy {result.search_score:.2f}% (search score)"
        f"{rescore}{fa}; {used}"
    )
    if result.report.schedule is not None:
        print(f"schedule {result.report.schedule.describe()}")
    print(f"policy written to {Path(args.run_dir) / 'policy.json'}")
    return 0
