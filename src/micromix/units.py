"""Byte sizes as people write them (512kB, 512KiB, 524288) and as micromix prints them."""

from __future__ import annotations

import re

from .errors import MicromixError

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


def parse_bytes(text: str | int) -> int:
    """`512kB` = 512,000; `512KiB` = 524,288; `2MB`; plain integers are bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text <= 0:
            raise MicromixError(f"a memory size must be positive, got {text}.")
        return text
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS:
        raise MicromixError(
            f"cannot read memory size {text!r}; write e.g. 512kB (x1000), 512KiB (x1024) or 524288."
        )
    value = float(m.group(1)) * _UNITS[unit]
    if value != int(value) or value <= 0:
        raise MicromixError(f"memory size {text!r} is not a positive whole number of bytes.")
    return int(value)


def format_bytes(n: int) -> str:
    if n >= 1000**2:
        return f"{n / 1000**2:.2f} MB"
    if n >= 1000:
        return f"{n / 1000:.1f} kB"
    return f"{n} B"
