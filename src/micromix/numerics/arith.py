"""Integer arithmetic shared by the numpy reference and the C kernels, bit for bit.

One rounding rule everywhere: round half up, floor(x + 1/2). A real multiplier M is stored as
an int32 mantissa m0 and a right shift n with M ~= m0 * 2^-n, and applied to an integer
accumulator as (acc * m0 + 2^(n-1)) >> n with an arithmetic (flooring) shift, which is
exactly floor(acc * m0 / 2^n + 1/2). Products are 64-bit; the reference raises instead of
wrapping when a value leaves int32 (accumulators) or int64 (products).

Packing follows DESIGN.md: little-endian within a byte, first element in the lowest bits,
each row padded to a whole byte, signed values in two's complement within their bits.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import OverflowError32
from .params import qrange, round_half_up

__all__ = [
    "INT32_MAX",
    "accumulator_bound",
    "INT32_MIN",
    "MAX_SHIFT",
    "check_int32",
    "clamp",
    "pack_bits",
    "qrange",
    "quantize_multiplier",
    "quantize_multiplier_pair",
    "requantize",
    "requantize_hi32",
    "round_half_up",
    "unpack_bits",
]

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def packed_bytes(elems: int, bits: int) -> int:
    """Bytes of `elems` values of `bits` bits, padded to a whole byte."""
    return (elems * bits + 7) // 8


def accumulator_bound(
    weight_abs_sum: np.ndarray | float, in_bits: int, in_signed: bool
) -> np.ndarray:
    """Worst |sum(w_int * q_in)| of a conv / linear row whose |w_int| sum to `weight_abs_sum`,
    over every input code of a `in_bits` tensor: the int32 accumulator before its bias. The
    conversion adds the trained bias to it; before training, the search bounds the row by
    fan-in x 2^(w_bits - 1) (any weights)."""
    lo, hi = qrange(in_bits, in_signed)
    return np.asarray(weight_abs_sum, dtype=np.float64) * max(abs(lo), abs(hi))


# |acc| < 2^31 and |m0| < 2^31 keep acc * m0 below 2^62; with the rounding term 2^(n-1) <= 2^61
# the sum stays below 2^63. A shift of 62 also fits the int8 the export stores it in.
MAX_SHIFT = 62
MIN_SHIFT = 1  # the rounding term 2^(n-1) needs n >= 1


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(m0, shift) with real ~= m0 * 2^-shift, m0 a signed int32 and 1 <= shift <= 62.

    |m0| lies in [2^30, 2^31) (31 significant bits) unless `real` is 0 (m0 = 0) or smaller than
    about 2^-32, where the shift is capped at 62 and m0 keeps what precision is left.
    Raises OverflowError32 when |real| >= 2^30, which no requantization should ever need.
    """
    real = float(real)
    if not math.isfinite(real):
        raise OverflowError32(f"requantization multiplier {real} is not finite.")
    if real == 0.0:
        return 0, 31
    sign = -1 if real < 0 else 1
    mant, exp = math.frexp(abs(real))  # abs(real) = mant * 2^exp, mant in [0.5, 1)
    m0 = math.floor(mant * 2**31 + 0.5)  # exact: mant * 2^31 is a float with no rounding
    if m0 == 2**31:
        m0, exp = 2**30, exp + 1
    shift = 31 - exp
    if shift > MAX_SHIFT:
        m0 = math.floor(math.ldexp(abs(real), MAX_SHIFT) + 0.5)
        shift = MAX_SHIFT
    if shift < MIN_SHIFT:
        raise OverflowError32(f"requantization multiplier {real:g} is too large (>= 2^30).")
    return sign * m0, shift


def quantize_multiplier_pair(a: float, b: float) -> tuple[int, int, int]:
    """(m_a, m_b, shift): two multipliers sharing one shift, set by the larger of the two.

    Used by add, whose two inputs are rescaled into one accumulator before a single shift.
    """
    _, shift = quantize_multiplier(a if abs(a) >= abs(b) else b)

    def at(x: float) -> int:
        m = math.floor(math.ldexp(abs(float(x)), shift) + 0.5)
        return -m if x < 0 else m

    return at(a), at(b), shift


def check_int32(values: np.ndarray, where: str) -> None:
    """Raise OverflowError32 naming `where` if any value leaves the int32 range."""
    v = np.asarray(values)
    if v.size and (v.min() < INT32_MIN or v.max() > INT32_MAX):
        bad = int(v.max()) if v.max() > INT32_MAX else int(v.min())
        raise OverflowError32(
            f"{where}: an int32 accumulator would overflow (value {bad}); "
            "lower the weight or activation bits or rescale the layer."
        )


def requantize(
    acc: np.ndarray | int,
    m0: np.ndarray | int,
    shift: np.ndarray | int,
    *,
    where: str = "requantize",
) -> np.ndarray:
    """(acc * m0 + 2^(shift-1)) >> shift in int64, i.e. round_half_up(acc * m0 / 2^shift).

    `m0` and `shift` broadcast against `acc` (per-channel multipliers on the last axis).
    Raises OverflowError32 if the 64-bit product could wrap.
    """
    acc = np.asarray(acc, dtype=np.int64)
    m0 = np.asarray(m0, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    if np.any(shift < MIN_SHIFT) or np.any(shift > MAX_SHIFT):
        raise OverflowError32(f"{where}: shift outside [{MIN_SHIFT}, {MAX_SHIFT}].")
    half = np.left_shift(np.int64(1), shift - 1)
    # Largest |acc| for which |acc * m0| + half still fits int64, per channel.
    limit = (np.int64(INT64_MAX) - half) // np.maximum(np.abs(m0), 1)
    if np.any(np.abs(acc) > limit):
        raise OverflowError32(f"{where}: a 64-bit requantization product would overflow.")
    return np.right_shift(acc * m0 + half, shift)


def requantize_hi32(
    acc: np.ndarray | int, m0: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """The C kernels' 32-bit form of `requantize` for shifts above 32, bit for bit the same.

    hi = (acc * m0) >> 32 (the high word of the 64-bit product, as SMULL leaves it), then
    (hi + 2^(shift-33)) >> (shift-32). Exact: the rounding term lies wholly in the high word and
    the dropped low word adds less than one unit before the flooring shift. |hi| <= 2^30 and
    2^(shift-33) <= 2^29, so the sum never leaves int32. Shifts of 32 or less keep the 64-bit
    form (returned unchanged here).
    """
    acc = np.asarray(acc, dtype=np.int64)
    m0 = np.asarray(m0, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    big = shift > 32
    s = np.where(big, shift, 33)
    hi = np.right_shift(acc * m0, 32)
    fast = np.right_shift(hi + np.left_shift(np.int64(1), s - 33), s - 32)
    check_int32(np.where(big, hi + np.left_shift(np.int64(1), s - 33), 0), "requantize_hi32")
    return np.where(big, fast, requantize(acc, m0, shift))


def clamp(values: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return np.clip(values, lo, hi)


def _check_bits(bits: int) -> int:
    if bits not in (1, 2, 4, 8):
        raise ValueError(f"packing supports 1, 2, 4 or 8 bits, got {bits}")
    return bits


def pack_bits(values: np.ndarray, bits: int, *, signed: bool) -> np.ndarray:
    """Pack the rows of a 2-D integer array into bytes (uint8, rows x ceil(n * bits / 8)).

    A 1-D array is one row. Element 0 goes to the lowest bits of byte 0; every row starts on
    a fresh byte (the padding bits are zero). Values must fit `bits` (two's complement when
    `signed`), otherwise ValueError.
    """
    _check_bits(bits)
    v = np.asarray(values, dtype=np.int64)
    one_row = v.ndim == 1
    v = v.reshape(1, -1) if one_row else v
    if v.ndim != 2:
        raise ValueError(f"pack_bits takes a 1-D or 2-D array, got shape {v.shape}")
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"values outside [{lo}, {hi}] cannot be packed in {bits} bits")
    per = 8 // bits
    rows, n = v.shape
    nbytes = (n * bits + 7) // 8
    u = np.zeros((rows, nbytes * per), dtype=np.uint16)
    u[:, :n] = v & (2**bits - 1)
    u = u.reshape(rows, nbytes, per) << (np.arange(per, dtype=np.uint16) * bits)
    out = u.sum(axis=2).astype(np.uint8)  # disjoint bit fields: the sum is their OR
    return out[0] if one_row else out


def unpack_bits(packed: np.ndarray, bits: int, n: int, *, signed: bool) -> np.ndarray:
    """Inverse of pack_bits: int64 rows of `n` elements from packed uint8 rows."""
    _check_bits(bits)
    p = np.asarray(packed, dtype=np.uint8)
    one_row = p.ndim == 1
    p = p.reshape(1, -1) if one_row else p
    per = 8 // bits
    if p.shape[1] != (n * bits + 7) // 8:
        raise ValueError(f"{p.shape[1]} bytes per row do not hold {n} values of {bits} bits")
    shifts = np.arange(per, dtype=np.int64) * bits
    u = (p.astype(np.int64)[:, :, None] >> shifts) & (2**bits - 1)
    u = u.reshape(p.shape[0], -1)[:, :n]
    if signed:
        u = u - ((u >> (bits - 1)) << bits)  # two's complement sign extension
    return u[0] if one_row else u
