"""`micromix finetune`: quantization-aware fine-tuning of a float model under a policy."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import distributed as dist
from ..errors import MicromixError
from ..files import write_json
from ..memory import memory_report
from ..policy import Policy
from ..quant.fakequant import DEFAULT_WEIGHT_RANGE, WEIGHT_QUANTS, WEIGHT_RANGES
from ..quant.finetune import FinetuneConfig, finetune, save_qat
from ..quant.recipe import (
    DEFAULT_RECIPE,
    QAT_BATCH_SIZE,
    QAT_EPOCHS,
    RECIPES,
    SCHEDULES,
    QATRecipe,
    recipe,
)
from ..rundir import check_run_dir, open_run_dir
from ..train import evaluate
from .common import (
    add_batch_size,
    add_common,
    add_data_args,
    add_model_args,
    check_batches,
    check_classes,
    data_for,
    json_file,
    load_model_for,
    positive_float,
    positive_int,
    resolve_device,
    spec_json,
    traced,
)

NAME = "finetune"
HELP = "quantization-aware fine-tuning under a policy (checkpoint each epoch, --resume continues)"
# Settings a resumed fine-tune must share (the policy by content, not by file name).
FINETUNE_RESULT_KEYS = (
    "checkpoint",
    "model",
    "dense_scales",
    "bits",
    "weight_range",
    "qat_recipe",
    "dataset",
    "train",
    "device",
    "world_size",
)
# What finetune writes (`--force` removes these first).
FINETUNE_FILES = (
    "config.json",
    "policy.json",
    "memory.json",
    "graph.json",
    "metrics.json",
    "qat.pt",
    "checkpoint.pt",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        required=True,
        help="float model: a micromix model file, or plain weights for --model (state_dict, "
        "{'state_dict': ...} or {'model': ...})",
    )
    add_model_args(p, default=None)
    add_policy_args(p)
    add_data_args(p)
    add_qat_args(p)
    add_recipe_args(p)
    add_common(p)


def add_policy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--policy", type=json_file, help="policy JSON file (e.g. from `micromix search`)"
    )
    p.add_argument("--bits", type=int, help="uniform weight bits instead of a policy file")
    p.add_argument("--abits", type=int, help="uniform activation bits (default: --bits)")


def add_qat_args(p: argparse.ArgumentParser, *, weight_range: bool = True) -> None:
    p.add_argument("--epochs", type=positive_int, default=QAT_EPOCHS)
    add_batch_size(p, QAT_BATCH_SIZE)
    p.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help=f"Adam learning rate (default: the recipe's; {RECIPES[DEFAULT_RECIPE].lr:g} in {DEFAULT_RECIPE})",
    )
    if weight_range:
        p.add_argument(
            "--weight-range",
            choices=WEIGHT_RANGES,
            default=DEFAULT_WEIGHT_RANGE,
            help="narrow: symmetric codes (2 bits = ternary); full: all 2^b codes",
        )
    p.add_argument(
        "--max-batches",
        type=positive_int,
        default=None,
        help="cap on batches per epoch (quick runs)",
    )


def add_recipe_args(p: argparse.ArgumentParser) -> None:
    """--recipe and one flag per recipe setting (None: the named recipe's value)."""
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        default=DEFAULT_RECIPE,
        help=f"named QAT recipe (default {DEFAULT_RECIPE}); the flags below change one setting",
    )
    p.add_argument("--schedule", choices=SCHEDULES, default=None, help="learning-rate schedule")
    p.add_argument("--warmup-epochs", type=float, default=None, help="linear warm-up length")
    p.add_argument(
        "--weight-quant",
        choices=WEIGHT_QUANTS,
        default=None,
        help="mse: fixed per-channel MSE clips; lsq: learned step sizes (LSQ)",
    )
    p.add_argument(
        "--kd-weight",
        type=float,
        default=None,
        help="weight of distillation from the float model in [0, 1] (0: off)",
    )
    p.add_argument("--kd-temperature", type=positive_float, default=None)
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random crop + flip (off: the teacher's logits are computed once per image)",
    )
    p.add_argument(
        "--bn-reestimate-batches",
        type=int,
        default=None,
        help="batches of BN re-estimation with the quantizers on, before BN freezes (0: off)",
    )


def finetune_config_from_args(args: argparse.Namespace, device, checkpoint) -> FinetuneConfig:
    """The fine-tune's settings from the options `add_qat_args` adds (finetune, baseline)."""
    return FinetuneConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_batches=args.max_batches,
        seed=args.seed,
        weight_range=args.weight_range,
        device=device,
        checkpoint=checkpoint,
        resume=args.resume,
    )


def recipe_from_args(args: argparse.Namespace) -> QATRecipe:
    """The recipe the flags ask for; a bad value is refused before anything runs."""
    return recipe(
        args.recipe,
        lr=args.lr,
        schedule=args.schedule,
        warmup_epochs=args.warmup_epochs,
        weight_quant=args.weight_quant,
        kd_weight=args.kd_weight,
        kd_temperature=args.kd_temperature,
        augment=args.augment,
        bn_reestimate_batches=args.bn_reestimate_batches,
    )


def resolve_policy(args: argparse.Namespace, graph) -> Policy:
    if args.policy and (args.bits is not None or args.abits is not None):
        raise MicromixError("give either --policy or --bits/--abits, not both.")
    if args.policy:
        return Policy.load(args.policy).validate(graph)
    bits = 8 if args.bits is None else args.bits
    return Policy.uniform(graph, bits, args.abits).validate(graph)


def run(args: argparse.Namespace) -> int:
    from ..stored import write_graph

    device = dist.init_from_env(resolve_device(args.device))
    run_dir = Path(args.run_dir)
    # Every check first: a refused command leaves the run directory as it was.
    check_run_dir(run_dir, "finetune", resume=args.resume, force=args.force)
    qat = recipe_from_args(args)
    config = finetune_config_from_args(args, device, run_dir / "checkpoint.pt")
    cfg = config.train_config(qat)  # recorded; finetune trains with the same
    model = load_model_for(args)
    graph = traced(args, model)
    policy = resolve_policy(args, graph)
    data = data_for(args, model)
    check_classes(data, graph)
    check_batches(len(data.train), args.batch_size * dist.world()[1])
    report = memory_report(graph, policy)
    if dist.is_main():
        settings = {
            "checkpoint": str(args.checkpoint),
            "model": getattr(model, "micromix_config", None),
            "model_spec": spec_json(model),
            "dense_scales": args.dense_scales,
            "policy": args.policy or f"uniform W{policy_bits(args)[0]}/A{policy_bits(args)[1]}",
            "bits": policy.to_json(),
            "weight_range": args.weight_range,
            "qat_recipe": {"name": args.recipe, **qat.to_json()},
            "dataset": args.dataset,
            "train": cfg.to_json(),
            "device": str(device),
            "world_size": dist.world()[1],
        }
        rd = open_run_dir(
            run_dir,
            "finetune",
            settings,
            resume=args.resume,
            force=args.force,
            result_keys=FINETUNE_RESULT_KEYS,
            owned=FINETUNE_FILES,
        )
        if not rd.resumed:  # only once the run directory is ours; a resume has them already
            policy.save(run_dir / "policy.json")
            write_json(run_dir / "memory.json", report.to_json())
            write_graph(run_dir, graph)
    dist.barrier()
    t0 = time.time()
    float_acc = evaluate(model.to(device), data.test, device=device)
    qmodel = finetune(model, policy, data.train, qat, config, graph=graph)
    test_acc = evaluate(qmodel, data.test, device=device)
    held_acc = evaluate(qmodel, data.heldout, device=device)
    if dist.is_main():
        metrics = {
            "float_test_acc": float_acc,
            "test_acc": test_acc,
            "heldout_acc": held_acc,
            "flash_bytes": report.flash_bytes,
            "ram_bytes": report.ram_bytes,
            "epochs": cfg.epochs,
            "train_seconds": sum(h["seconds"] for h in qmodel.history),
            "wall_seconds_this_call": time.time() - t0,
            "history": qmodel.history,
        }
        save_qat(run_dir / "qat.pt", qmodel, metrics=metrics)
        write_json(run_dir / "metrics.json", metrics)
        print(
            f"QAT test accuracy {test_acc:.2f}% (float {float_acc:.2f}%, held-out {held_acc:.2f}%); "
            f"FLASH {report.flash_bytes:,} B, RAM {report.ram_bytes:,} B; saved {run_dir / 'qat.pt'}"
        )
    dist.shutdown()
    return 0


def policy_bits(args: argparse.Namespace) -> tuple[int, int]:
    w = 8 if args.bits is None else args.bits
    return w, w if args.abits is None else args.abits
