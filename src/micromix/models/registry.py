"""The zoo's registry (timm-style `register`, `create`, `list_models`): a builder registered
under a name validates its options and attaches ``micromix_config``, a plain JSON-serialisable
dict, so a checkpoint can rebuild the exact model with ``create_from_config(cfg)``."""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable

from torch import nn

from micromix.errors import MicromixError

Builder = Callable[..., nn.Module]

# The only keyword arguments a builder may take; also the keys of micromix_config (plus "name").
CONFIG_KEYS = ("width", "resolution", "in_channels", "num_classes", "stem_stride", "dropout")

_REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Register a builder under ``name``; the wrapped builder validates its arguments and
    attaches ``micromix_config``, so direct calls and ``create`` behave the same."""

    def decorator(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        defaults = {k: p.default for k, p in inspect.signature(fn).parameters.items()}
        if tuple(sorted(defaults)) != tuple(sorted(CONFIG_KEYS)):
            raise TypeError(f"builder {name!r} must take exactly the keywords {CONFIG_KEYS}")

        @functools.wraps(fn)
        def build(**kwargs: object) -> nn.Module:
            unknown = sorted(set(kwargs) - set(CONFIG_KEYS))
            if unknown:
                raise MicromixError(
                    f"unknown option(s) {', '.join(unknown)} for model '{name}'; "
                    f"allowed: {', '.join(CONFIG_KEYS)}."
                )
            args = _validate(name, {**defaults, **kwargs})
            model = fn(**args)
            model.micromix_config = {"name": name, **args}
            return model

        _REGISTRY[name] = build
        return build

    return decorator


def _positive_int(name: str, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise MicromixError(f"{key} must be a positive integer, got {value!r} for model '{name}'.")
    return int(value)


def _validate(name: str, args: dict[str, object]) -> dict[str, object]:
    """Check user-supplied options and return them as plain Python numbers (JSON-safe)."""
    width = args["width"]
    if (
        isinstance(width, bool)
        or not isinstance(width, numbers.Real)
        or not math.isfinite(width)
        or width <= 0
    ):
        raise MicromixError(f"width must be a positive number, got {width!r} for model '{name}'.")
    # Every conv uses padding=k//2, so each stride maps a size n to ceil(n/stride) >= 1: any
    # resolution >= 1 still yields at least a 1x1 map before the global pool.
    resolution = _positive_int(name, "resolution", args["resolution"])
    in_channels = _positive_int(name, "in_channels", args["in_channels"])
    num_classes = _positive_int(name, "num_classes", args["num_classes"])
    stem_stride = args["stem_stride"]
    if stem_stride is None:
        # Small inputs (e.g. 28x28 Fashion-MNIST) would lose too much detail in a stride-2 stem.
        stem_stride = 1 if resolution <= 64 else 2
    stem_stride = _positive_int(name, "stem_stride", stem_stride)
    dropout = args["dropout"]
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise MicromixError(f"dropout must be in [0, 1), got {dropout!r} for model '{name}'.")
    return {
        "width": float(width),
        "resolution": resolution,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "stem_stride": stem_stride,
        "dropout": float(dropout),
    }


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def create(name: str, **kwargs: object) -> nn.Module:
    """Build the model ``name`` with the options in ``CONFIG_KEYS``; ``create(**cfg)`` works."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise MicromixError(f"unknown model {name!r}; available: {', '.join(list_models())}.")
    return _REGISTRY[name](**kwargs)


def create_from_config(cfg: dict) -> nn.Module:
    """Rebuild a model from its ``micromix_config`` (e.g. as stored in a checkpoint)."""
    if not isinstance(cfg, dict) or "name" not in cfg or not all(isinstance(k, str) for k in cfg):
        raise MicromixError("model config must be a dict with a 'name' key and string keys.")
    return create(**cfg)
