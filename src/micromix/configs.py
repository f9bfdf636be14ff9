"""What every settings object (TrainConfig, FitRun, FinetuneConfig, SearchConfig, ...) shares.

Configuration is data: a frozen dataclass, checked when it is built (so a bad setting is
refused in one sentence before any stage runs), and a JSON round trip for the ones a run
directory or checkpoint stores. The checks and the JSON reader live here once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

from .errors import MicromixError

C = TypeVar("C")


def check_int(name: str, value: Any, least: int, *, optional: bool = False) -> None:
    """Refuse `value` unless it is an int >= `least` (or None when `optional`)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise MicromixError(f"{name} must be an integer of at least {least}, got {value!r}.")


def check_number(name: str, value: Any, low: float, high: float = math.inf) -> None:
    """Refuse `value` unless it is a finite real number in [low, high]."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value <= high:
        where = f"at least {low}" if high == math.inf else f"in [{low}, {high}]"
        raise MicromixError(f"{name} must be a number {where}, got {value!r}.")


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise MicromixError(f"{name} must be one of {', '.join(map(str, choices))}, not {value!r}.")


def to_json(config: Any) -> dict[str, Any]:
    """The fields of a config dataclass as JSON values (nested configs by their own to_json)."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        out[f.name] = v.to_json() if hasattr(v, "to_json") else v
    return out


def from_json(cls: type[C], data: Any, source: str, **nested: Any) -> C:
    """`cls` from a JSON object, refusing anything but its own fields; `nested` maps a field
    name to the reader of its value (e.g. a nested config's from_json)."""
    if not isinstance(data, dict):
        raise MicromixError(f"{source} must be a JSON object of settings.")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise MicromixError(f"{source} has an unknown setting {unknown[0]!r}.")
    values = {k: (nested[k](v) if k in nested and v is not None else v) for k, v in data.items()}
    return cls(**values)
