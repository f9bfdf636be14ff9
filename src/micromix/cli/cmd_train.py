"""`micromix train`: float training of a zoo model, with checkpoints and --resume."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from .. import distributed as dist
from ..files import write_json
from ..rundir import check_run_dir, open_run_dir
from ..train import FitRun, evaluate, fit, float_recipe, save_model
from .common import (
    add_batch_size,
    add_common,
    add_data_args,
    add_model_args,
    check_batches,
    check_classes,
    data_for,
    load_model_for,
    model_from_run_dir,
    positive_float,
    positive_int,
    resolve_device,
    spec_json,
    traced,
)

NAME = "train"
HELP = "train a float model (checkpoint each epoch, --resume continues)"
# what --force removes
TRAIN_FILES = ("config.json", "graph.json", "metrics.json", "model.pt", "checkpoint.pt")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--epochs", type=positive_int, default=15)
    add_batch_size(p, 128)
    p.add_argument(
        "--checkpoint",
        help="start from these weights: a micromix model file, a state_dict, or a dict with "
        "'state_dict' or 'model' (with --model for the architecture)",
    )
    p.add_argument(
        "--lr", type=positive_float, default=0.1, help="peak learning rate (SGD, cosine)"
    )
    p.add_argument(
        "--train-images",
        type=positive_int,
        default=None,
        help="train on a random subset of this size (quick checks)",
    )
    add_common(p)


def run(args: argparse.Namespace) -> int:
    from ..stored import write_graph

    device = dist.init_from_env(resolve_device(args.device))
    run_dir = Path(args.run_dir)
    # Every check first: a refused command leaves the run directory as it was.
    check_run_dir(run_dir, "train", resume=args.resume, force=args.force)
    if args.resume and args.model is None and (run_dir / "config.json").exists():
        # A resumed run rebuilds the model it recorded; the user need not repeat it.
        model = model_from_run_dir(run_dir)
    else:
        model = load_model_for(args)
    data = data_for(args, model)
    graph = traced(args, model)
    check_classes(data, graph)
    train = (
        data.train
        if args.train_images is None
        else data.train.subset(args.train_images, seed=args.seed)
    )
    check_batches(len(train), args.batch_size * dist.world()[1])
    cfg = replace(float_recipe(args.epochs, seed=args.seed, batch_size=args.batch_size), lr=args.lr)
    if dist.is_main():
        settings = {
            "model": getattr(model, "micromix_config", None),
            "model_spec": spec_json(model),
            "dense_scales": args.dense_scales,
            "dataset": args.dataset,
            "train_images": len(train),
            "train": cfg.to_json(),
            "device": str(device),
            "world_size": dist.world()[1],
        }
        open_run_dir(
            run_dir, "train", settings, resume=args.resume, force=args.force, owned=TRAIN_FILES
        )
        write_graph(run_dir, graph)
    dist.barrier()
    t0 = time.time()
    state = fit(
        model,
        train,
        cfg,
        FitRun(device=device, checkpoint=run_dir / "checkpoint.pt", resume=args.resume),
    )
    test_acc = evaluate(model, data.test, device=device)
    held_acc = evaluate(model, data.heldout, device=device)
    if dist.is_main():
        metrics = {
            "test_acc": test_acc,
            "heldout_acc": held_acc,
            "epochs": state.epoch,
            "train_seconds": sum(h["seconds"] for h in state.history),
            "wall_seconds_this_call": time.time() - t0,
            "history": state.history,
        }
        save_model(
            run_dir / "model.pt",
            model.cpu(),
            graph=graph,  # the one traced with --dense-scales, as graph.json holds
            metrics={"test_acc": test_acc, "heldout_acc": held_acc},
        )
        write_json(run_dir / "metrics.json", metrics)
        print(
            f"test accuracy {test_acc:.2f}% (held-out {held_acc:.2f}%); model saved to {run_dir / 'model.pt'}"
        )
    dist.shutdown()
    return 0
