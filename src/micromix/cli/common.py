"""Arguments and helpers shared by several commands."""

from __future__ import annotations

import argparse

import torch

from ..errors import MicromixError


def add_common(p: argparse.ArgumentParser, *, run_dir: bool = True) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    if run_dir:
        p.add_argument("--run-dir", required=True, help="folder for settings, results, checkpoints")
        p.add_argument("--resume", action="store_true", help="continue an interrupted run")
        p.add_argument(
            "--force", action="store_true", help="allow writing into a non-empty run dir"
        )


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mobilenet_v1", help="model name (see `micromix models`)")
    p.add_argument("--width", type=float, default=0.25, help="width multiplier")
    p.add_argument("--resolution", type=int, default=28, help="input resolution in pixels")
    p.add_argument("--in-channels", type=int, default=1, help="input image channels")
    p.add_argument("--classes", type=int, default=10, help="number of classes")
    p.add_argument(
        "--stem-stride",
        type=int,
        default=None,
        help="stride of the first conv (default: 1 below 64 px, else 2)",
    )


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", default="fashion_mnist", help="fashion_mnist, or a folder of class sub-folders"
    )
    p.add_argument(
        "--data-dir", default=None, help="folder with the four Fashion-MNIST IDX .gz files"
    )


def data_for(args: argparse.Namespace, model_config: dict):
    """The dataset of --dataset / --data-dir at the resolution and channels the model expects."""
    from ..data import load_dataset

    return load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        resolution=model_config["resolution"],
        in_channels=model_config["in_channels"],
    )


def model_kwargs(args: argparse.Namespace) -> dict:
    return {
        "width": args.width,
        "resolution": args.resolution,
        "in_channels": args.in_channels,
        "num_classes": args.classes,
        "stem_stride": args.stem_stride,
    }


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MicromixError(
            f"--device {name} was asked for but no CUDA device is available; use --device cpu."
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise MicromixError(f"unknown device {name!r}; use cpu or cuda.") from None
