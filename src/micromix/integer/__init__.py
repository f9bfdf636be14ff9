"""Integer-only inference: requantization arithmetic, packing, IntegerModel and its numpy
reference interpreter (the bit-exact specification of what the exported C computes)."""

from ..numerics.arith import (
    pack_bits,
    quantize_multiplier,
    requantize,
    round_half_up,
    unpack_bits,
)
from .convert import convert
from .model import IntegerModel, IntOp

__all__ = [
    "IntOp",
    "IntegerModel",
    "convert",
    "pack_bits",
    "quantize_multiplier",
    "requantize",
    "round_half_up",
    "unpack_bits",
]
