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
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..checks import check_batches, check_classes, model_classes
from ..errors import MicromixError

if TYPE_CHECKING:
    from ..graph import WeightScales
    from ..ir import Graph

__all__ = ["check_batches", "check_classes", "model_classes"]  # re-exported for the commands

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
    from ..units import parse_bytes

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


def add_common(p: argparse.ArgumentParser, *, run_dir: bool = True) -> None:
    p.add_argument("--seed", type=seed_int, default=0, help="random seed (same seed, same result)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    if run_dir:
        p.add_argument("--run-dir", required=True, help="folder for settings, results, checkpoints")
        p.add_argument("--resume", action="store_true", help="continue an interrupted run")
        p.add_argument(
            "--force", action="store_true", help="start over in a non-empty run directory"
        )


# Zoo-only options: None means "not given", so a non-zoo model can refuse them.
_ZOO_FLAGS = {
    "width": ("--width", 0.25),
    "resolution": ("--resolution", 28),
    "in_channels": ("--in-channels", 1),
    "classes": ("--classes", 10),
    "stem_stride": ("--stem-stride", None),
}


def add_budget_args(p: argparse.ArgumentParser) -> None:
    """--flash / --ram / --target, read the same way by every command that takes a budget."""
    p.add_argument(
        "--flash",
        type=budget_arg,
        help="FLASH budget: 512kB, 512KiB, 524288, or 0.48x of the uniform 8-bit figure",
    )
    p.add_argument("--ram", type=budget_arg, help="RAM budget, same forms (e.g. 0.42x)")
    p.add_argument(
        "--target",
        help="MCU target: a name (see `micromix targets`) or a .toml / .json target file; "
        "--flash / --ram then apply within it",
    )


def add_batch_size(p: argparse.ArgumentParser, default: int, what: str = "training") -> None:
    p.add_argument(
        "--batch-size", type=positive_int, default=default, help=f"{what} batch size ({default})"
    )


def dense_scales_arg(text: str) -> str:
    """A dense (nn.Linear) weight scale layout of graph.WeightScales: channel or tensor."""
    from ..graph import DENSE_SCALES

    if text not in DENSE_SCALES:
        raise argparse.ArgumentTypeError(f"choose {', '.join(DENSE_SCALES)}, not {text!r}")
    return text


DENSE_SCALES_HELP = (
    "weight scales of dense (Linear) layers: channel (one per output row) or tensor "
    "(one for the layer, as TFLite's int8 fully connected layers: one multiplier and shift "
    "stored instead of one per row)"
)


def add_model_args(p: argparse.ArgumentParser, *, default: str | None = "mobilenet_v1") -> None:
    p.add_argument(
        "--model",
        default=None,
        help="a zoo name (see `micromix models`), path/to/net.py:NAME or package.module:NAME "
        "(NAME a class or factory), or an .onnx / .tflite file (int8 files are dequantized; "
        f"its input shape is read from it){'; default ' + default if default else ''}",
    )
    p.add_argument(
        "--model-args",
        default=None,
        help="JSON keyword arguments of NAME, e.g. '{\"num_classes\": 12}'",
    )
    p.add_argument(
        "--input-shape",
        default=None,
        help="model input CxHxW, e.g. 1x49x10 (needed outside the zoo)",
    )
    p.add_argument(
        "--width", type=positive_float, default=None, help="zoo: width multiplier (0.25)"
    )
    p.add_argument("--resolution", type=positive_int, default=None, help="zoo: input pixels (28)")
    p.add_argument("--in-channels", type=positive_int, default=None, help="zoo: input channels (1)")
    p.add_argument("--classes", type=positive_int, default=None, help="zoo: number of classes (10)")
    p.add_argument(
        "--stem-stride",
        type=positive_int,
        default=None,
        help="zoo: stride of the first conv (default: 1 below 64 px, else 2)",
    )
    p.add_argument(
        "--dense-scales",
        type=dense_scales_arg,
        default=None,
        metavar="{channel,tensor}",
        help=f"{DENSE_SCALES_HELP}; default: on --resume the run directory's, a stored graph's "
        "own (memory --run-dir / --checkpoint), else channel",
    )
    p.set_defaults(_model_default=default)


def add_data_args(p: argparse.ArgumentParser, *, default: str | None = "fashion_mnist") -> None:
    p.add_argument(
        "--dataset",
        default=default,
        help="fashion_mnist (default), a folder with one sub-folder per class (optional train/ "
        "and test/), or an .npz with x_train, y_train, x_test, y_test (NCHW or NHWC)",
    )
    p.add_argument(
        "--data-dir", default=None, help="folder with the four Fashion-MNIST IDX .gz files"
    )


def data_for(args: argparse.Namespace, model: Any):
    """The dataset of --dataset / --data-dir at the model's input (C, H, W); `model` is the
    model, a zoo config dict, or a shape."""
    from ..data import load_dataset
    from ..models import input_shape_of

    if isinstance(model, nn.Module):
        shape = input_shape_of(model)
    elif isinstance(model, dict):
        shape = (model["in_channels"], model["resolution"], model["resolution"])
    else:
        shape = model
    if shape is None:
        raise MicromixError("the model's input shape is unknown; give --input-shape CxHxW.")
    return load_dataset(args.dataset or "fashion_mnist", data_dir=args.data_dir, input_shape=shape)


def model_kwargs(args: argparse.Namespace) -> dict:
    """The zoo builder's keywords from --width/--resolution/--in-channels/--classes/--stem-stride
    (defaults for those not given), with --input-shape giving channels and resolution."""
    got = {k: getattr(args, k, None) for k in _ZOO_FLAGS}
    kw = {k: (v if v is not None else _ZOO_FLAGS[k][1]) for k, v in got.items()}
    shape = getattr(args, "input_shape", None)
    if shape:
        from ..models import parse_input_shape

        c, h, w = parse_input_shape(shape)
        kw["in_channels"], kw["resolution"] = c, max(h, w)
    return {
        "width": kw["width"],
        "resolution": kw["resolution"],
        "in_channels": kw["in_channels"],
        "num_classes": kw["classes"],
        "stem_stride": kw["stem_stride"],
    }


def model_spec(args: argparse.Namespace, *, ref: str | None = None):
    """The ModelSpec of --model / --model-args / --input-shape (and the zoo flags)."""
    from ..models import parse_model_args, spec_from_ref

    ref = ref or args.model or getattr(args, "_model_default", None)
    if ref is None:
        raise MicromixError(
            "give --model (a zoo name, path/to/net.py:NAME, package.module:NAME or a .onnx / "
            ".tflite file)."
        )
    extra = parse_model_args(getattr(args, "model_args", None))
    shape = getattr(args, "input_shape", None)
    spec = spec_from_ref(ref, extra, shape)
    if spec.is_zoo:
        kw = model_kwargs(args)
        flag_of = {"num_classes": "classes"}
        for k, v in extra.items():
            if getattr(args, flag_of.get(k, k), None) is not None:
                raise MicromixError(f"{k} is given twice: in --model-args and as a flag.")
            kw[k] = v
        spec = spec_from_ref(ref, kw, shape)
    else:
        flags = [_ZOO_FLAGS[k][0] for k in _ZOO_FLAGS if getattr(args, k, None) is not None]
        if flags:
            raise MicromixError(
                f"{', '.join(flags)} {'applies' if len(flags) == 1 else 'apply'} to zoo models "
                f"only; pass {spec.name}'s arguments with --model-args."
            )
        if spec.input_shape is None:
            raise MicromixError(f"give --input-shape CxHxW for {ref} (e.g. 1x28x28).")
    return spec


def load_model_for(args: argparse.Namespace, checkpoint: str | None = None) -> nn.Module:
    """The float model of a command: --checkpoint (a micromix model file, or plain weights for
    the --model architecture), else a fresh --model. --input-shape overrides a file's shape."""
    from ..models import parse_input_shape, record_input_shape
    from ..train import load_float

    checkpoint = checkpoint if checkpoint is not None else getattr(args, "checkpoint", None)
    spec = model_spec(args) if (getattr(args, "model", None) or not checkpoint) else None
    model = load_float(checkpoint or None, spec)
    if checkpoint and spec is None and getattr(args, "input_shape", None):
        record_input_shape(model, (1, *parse_input_shape(args.input_shape)))
    return model


def weight_scales(args: argparse.Namespace) -> WeightScales:
    """The WeightScales of a command: --dense-scales, else on --resume what its run directory
    recorded (a value read from a file is checked like the flag), else per channel. Written
    back to `args.dense_scales`, so the settings a command records name the value it used."""
    from ..graph import WeightScales

    value = getattr(args, "dense_scales", None)
    if value is None and getattr(args, "resume", False) and getattr(args, "run_dir", None):
        from ..stored import recorded_setting

        value = recorded_setting(args.run_dir, "dense_scales")
    scales = WeightScales(dense=value or "channel")
    args.dense_scales = scales.dense
    return scales


def traced(args: argparse.Namespace, model: nn.Module) -> Graph:
    """The Graph of a command's model: the one trace with the command's weight scales."""
    from ..graph import trace

    return trace(model, scales=weight_scales(args))


def model_from_run_dir(run_dir: str | Path) -> nn.Module:
    """The zoo model a run directory recorded (its float model file, else the spec of its QAT
    checkpoint or config.json; architecture only). A recorded spec that names code is refused
    (`models.spec.authorize`): the user names a model outside the zoo with --model."""
    from ..files import load_checkpoint
    from ..models import ModelSpec, authorize, build
    from ..stored import MODEL_FILES, QAT_FILES, first_file, recorded_setting
    from ..train import load_model

    d = Path(run_dir)
    p = first_file(d, MODEL_FILES)
    if p is not None:
        return load_model(p)[0]
    p = first_file(d, QAT_FILES)
    spec = load_checkpoint(p).get("model_spec") if p is not None else None
    spec = spec or recorded_setting(d, "model_spec")
    if not spec:
        raise MicromixError(
            f"{d} records no model (no model.pt, qat.pt or model spec in config.json)."
        )
    return build(authorize(ModelSpec.from_json(spec), None, f"{d}'s model spec"))


def spec_json(model: nn.Module) -> dict | None:
    from ..models import spec_of

    spec = spec_of(model)
    return None if spec is None else spec.to_json()


def resolve_device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MicromixError(
            f"--device {name} was asked for but no CUDA device is available; use --device cpu."
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise MicromixError(f"unknown device {name!r}; use cpu or cuda.") from None


def fraction_arg(text: str) -> float:
    """A finite fraction >= 0 (0.1 = 10 %)."""
    v = _float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be a fraction of 0 or more, got {text!r}")
    return v


def schedule_arg(text: str) -> str:
    """A schedule name of micromix.schedule."""
    from ..schedule import SCHEDULES

    if text not in SCHEDULES:
        raise argparse.ArgumentTypeError(f"choose {', '.join(SCHEDULES)}, not {text!r}")
    return text


def add_schedule_args(p: argparse.ArgumentParser, *, recorded: bool = False) -> None:
    """--schedule and --max-recompute (micromix.schedule), the same on every command.
    `recorded`: their default is what the run directory recorded (None here), else auto, 0.1."""
    from ..schedule import SCHEDULES, Scheduling

    default = Scheduling()
    where = "the run directory's, else " if recorded else ""
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=None if recorded else default.schedule,
        help="execution schedule whose RAM counts (the budget, the report, the C): layer by "
        "layer, in place, patch by patch, or auto, the smallest peak within --max-recompute; "
        "stream is auto with the input read row by row by the application's callback "
        f"(micromix_run_rows), never whole in RAM (default {where}{default.schedule})",
    )
    p.add_argument(
        "--max-recompute",
        type=fraction_arg,
        default=None if recorded else default.max_recompute,
        help="the most MACs a patch schedule may recompute, as a fraction of the layer-by-layer "
        f"MACs (default {where}{default.max_recompute:g})",
    )
