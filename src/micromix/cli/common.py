"""Arguments and helpers shared by several commands.

The argparse types below (`positive_int`, `positive_float`, `budget_arg`, ...) check a value
where it is parsed, so a bad setting stops before any stage runs with one sentence and exit
code 2; every command uses the same ones. `check_*` helpers validate what needs the model or
the data (class count, batch size) before a run directory is touched.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from ..errors import MicromixError

# ---- argparse types: a bad value is a usage error (one sentence, exit 2) -------------------


def _int(text: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _float(text: str) -> float:
    try:
        v = float(str(text).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def positive_int(text: str) -> int:
    """A whole number >= 1 (counts: epochs, images, episodes, batch size)."""
    v = _int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return v


def nonneg_int(text: str) -> int:
    """A whole number >= 0 (warm-up episodes, seeds)."""
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return v


def seed_int(text: str) -> int:
    """A seed numpy accepts: 0 <= seed < 2**63."""
    v = nonneg_int(text)
    if v >= 2**63:
        raise argparse.ArgumentTypeError(f"must be below 2**63, got {text!r}")
    return v


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, width multipliers)."""
    v = _float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def budget_arg(text: str) -> str:
    """A memory size (512kB, 512KiB, 524288) or a finite positive ratio (0.48x); kept as text
    because a ratio needs the model's 8-bit footprint, known only later."""
    from ..budget import parse_bytes

    s = str(text).strip()
    if s.lower().endswith("x"):
        try:
            r = float(s[:-1])
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"cannot read the ratio {text!r}; write e.g. 0.48x"
            ) from None
        if not (math.isfinite(r) and r > 0):
            raise argparse.ArgumentTypeError(
                f"a ratio must be a finite positive number, got {text!r}"
            )
        return s
    try:
        parse_bytes(s)
    except MicromixError as e:
        raise argparse.ArgumentTypeError(str(e).rstrip(".")) from None
    return s


def json_file(text: str) -> str:
    """A path that must be a readable file (not a folder); the content is read later."""
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if p.exists() and not p.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a regular file")
    return text


# ---- checks that need the model or the data -----------------------------------------------


def model_classes(graph) -> int:
    """Outputs of the model's last op: the number of classes its head tells apart."""
    n = 1
    for d in graph.ops[-1].out_shape:
        n *= int(d)
    return n


def check_classes(data, graph) -> None:
    """An image set with more classes than the model's head cannot be trained or scored."""
    k, n = len(data.classes), model_classes(graph)
    if k > n:
        raise MicromixError(
            f"the dataset has {k} classes but the model's head has {n} outputs; use a model "
            f"built for {k} classes (--classes {k})."
        )


def check_batches(n_images: int, batch_size: int, what: str = "training images") -> None:
    """Training drops the last partial batch: fewer images than a batch would train nothing."""
    if n_images < batch_size:
        raise MicromixError(
            f"--batch-size {batch_size} is larger than the {n_images} {what}, so no batch "
            "would be trained; lower --batch-size or use more images."
        )


def add_common(p: argparse.ArgumentParser, *, run_dir: bool = True) -> None:
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (same seed, same result)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    if run_dir:
        p.add_argument("--run-dir", required=True, help="folder for settings, results, checkpoints")
        p.add_argument("--resume", action="store_true", help="continue an interrupted run")
        p.add_argument(
            "--force", action="store_true", help="start over in a non-empty run directory"
        )


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mobilenet_v1", help="model name (see `micromix models`)")
    p.add_argument("--width", type=positive_float, default=0.25, help="width multiplier")
    p.add_argument("--resolution", type=positive_int, default=28, help="input resolution in pixels")
    p.add_argument("--in-channels", type=positive_int, default=1, help="input image channels")
    p.add_argument("--classes", type=positive_int, default=10, help="number of classes")
    p.add_argument(
        "--stem-stride",
        type=positive_int,
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
