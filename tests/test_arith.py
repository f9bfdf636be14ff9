"""Integer arithmetic: rounding, fixed-point multipliers, requantization, bit packing; the C
helpers of the export (compiled with gcc) against the numpy versions."""

from __future__ import annotations

import math
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tool
from hypothesis import given, settings
from hypothesis import strategies as st

from micromix.errors import OverflowError32
from micromix.export.cgen import kernel_sources
from micromix.numerics.arith import (
    INT32_MAX,
    INT32_MIN,
    MAX_SHIFT,
    check_int32,
    pack_bits,
    quantize_multiplier,
    quantize_multiplier_pair,
    requantize,
    requantize_hi32,
    round_half_up,
    unpack_bits,
)

int32s = st.integers(INT32_MIN + 1, INT32_MAX)
shifts = st.integers(1, MAX_SHIFT)
reals = st.floats(min_value=1e-12, max_value=1e6, allow_nan=False, allow_infinity=False)


def oracle(acc: int, m0: int, shift: int) -> int:
    """floor(acc * m0 / 2^shift + 1/2), exactly."""
    return math.floor(Fraction(acc * m0, 2**shift) + Fraction(1, 2))


@given(st.fractions(min_value=-1000, max_value=1000))
def test_round_half_up_is_floor_plus_half(x: Fraction) -> None:
    # Only dyadic values are exact in float; use those so the oracle is the true answer.
    x = Fraction(round(x * 1024), 1024)
    assert round_half_up(float(x)) == math.floor(x + Fraction(1, 2))


def test_round_half_up_ties_go_up() -> None:
    assert list(round_half_up(np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]))) == [-2, -1, 0, 1, 2, 3]


@given(reals, st.booleans())
def test_quantize_multiplier_accuracy(real: float, negative: bool) -> None:
    real = -real if negative else real
    m0, shift = quantize_multiplier(real)
    assert 1 <= shift <= MAX_SHIFT and abs(m0) < 2**31
    # m0 is real * 2^shift rounded to the nearest integer ...
    assert abs(Fraction(m0) - Fraction(real) * 2**shift) <= Fraction(1, 2)
    # ... with 31 significant bits unless the shift hit its cap (tiny multipliers).
    if shift < MAX_SHIFT:
        assert 2**30 <= abs(m0) < 2**31
        assert abs(m0 * 2.0**-shift - real) <= abs(real) * 2.0**-30
    assert (m0 < 0) == negative or m0 == 0


def test_quantize_multiplier_edges() -> None:
    assert quantize_multiplier(0.0)[0] == 0
    assert quantize_multiplier(1.0) == (2**30, 30)
    assert quantize_multiplier(-0.5) == (-(2**30), 31)
    # Rounding up to 2^31 renormalises instead of overflowing int32.
    m0, shift = quantize_multiplier(1.0 - 2.0**-40)
    assert (m0, shift) == (2**30, 30)
    assert quantize_multiplier(1e-30)[1] == MAX_SHIFT
    with pytest.raises(OverflowError32):
        quantize_multiplier(2.0**31)
    with pytest.raises(OverflowError32):
        quantize_multiplier(float("nan"))


@given(reals, reals, st.booleans())
def test_quantize_multiplier_pair_shares_a_shift(a: float, b: float, neg: bool) -> None:
    a = -a if neg else a
    ma, mb, n = quantize_multiplier_pair(a, b)
    assert abs(Fraction(ma) - Fraction(a) * 2**n) <= Fraction(1, 2)
    assert abs(Fraction(mb) - Fraction(b) * 2**n) <= Fraction(1, 2)
    assert max(abs(ma), abs(mb)) < 2**31


@given(int32s, int32s, shifts)
def test_requantize_matches_exact_rational(acc: int, m0: int, shift: int) -> None:
    assert int(requantize(acc, m0, shift)) == oracle(acc, m0, shift)


@settings(max_examples=500)
@given(int32s, int32s, shifts)
def test_32_bit_requantization_equals_the_exact_oracle(acc: int, m0: int, shift: int) -> None:
    """The 32-bit form the C kernels use (high word, then the rest of the shift) is exact."""
    assert int(requantize_hi32(acc, m0, shift)) == oracle(acc, m0, shift)


def test_32_bit_requantization_at_the_extremes() -> None:
    for acc in (INT32_MIN + 1, -1, 0, 1, INT32_MAX):
        for m0 in (-(2**31) + 1, -(2**30), 1, 2**30, 2**31 - 1):
            for shift in (31, 32, 33, 34, 47, 61, 62):
                assert int(requantize_hi32(acc, m0, shift)) == oracle(acc, m0, shift)


@settings(max_examples=50)
@given(st.lists(st.tuples(int32s, int32s, shifts), min_size=1, max_size=20))
def test_requantize_vectorised_per_channel(rows: list[tuple[int, int, int]]) -> None:
    acc, m0, sh = (np.array(c, dtype=np.int64) for c in zip(*rows))
    got = requantize(acc, m0, sh)
    assert [int(v) for v in got] == [oracle(a, m, s) for a, m, s in rows]


def test_requantize_refuses_a_64_bit_overflow() -> None:
    with pytest.raises(OverflowError32):
        requantize(np.int64(2**40), 2**30, 10, where="layer x")
    with pytest.raises(OverflowError32):
        requantize(5, 2**30, 0)


def test_check_int32_names_the_layer() -> None:
    check_int32(np.array([INT32_MIN, INT32_MAX]), "fine")
    with pytest.raises(OverflowError32, match="layer conv7"):
        check_int32(np.array([INT32_MAX + 1]), "layer conv7")


@given(
    st.sampled_from([2, 4, 8]),
    st.booleans(),
    st.integers(1, 5),
    st.integers(1, 37),
    st.randoms(use_true_random=False),
)
def test_pack_unpack_round_trip(bits: int, signed: bool, rows: int, n: int, rnd) -> None:
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    v = np.array(
        [[rnd.choice([lo, hi, rnd.randint(lo, hi)]) for _ in range(n)] for _ in range(rows)]
    )
    p = pack_bits(v, bits, signed=signed)
    assert p.dtype == np.uint8 and p.shape == (rows, (n * bits + 7) // 8)
    np.testing.assert_array_equal(unpack_bits(p, bits, n, signed=signed), v)


def test_pack_layout_is_little_endian_first_element_lowest() -> None:
    assert list(pack_bits(np.array([1, 2, 3]), 4, signed=False)) == [0x21, 0x03]
    assert list(pack_bits(np.array([-1, 0, 1, -2]), 2, signed=True)) == [0b10_01_00_11]
    assert list(pack_bits(np.array([-128, 127]), 8, signed=True)) == [0x80, 0x7F]
    # Each row starts on a fresh byte; the padding bits are zero.
    np.testing.assert_array_equal(
        pack_bits(np.array([[1, 1, 1], [3, 3, 3]]), 2, signed=False), [[0b010101], [0b111111]]
    )


def test_pack_rejects_values_outside_the_range() -> None:
    with pytest.raises(ValueError):
        pack_bits(np.array([8]), 4, signed=True)
    with pytest.raises(ValueError):
        pack_bits(np.array([-1]), 2, signed=False)
    with pytest.raises(ValueError):
        pack_bits(np.array([1]), 3, signed=False)


# ---- the C helpers of the export, compiled, against the numpy versions -------------------

HARNESS = r"""
#include <stdio.h>
#include "mm_kernels.h"
int main(void)
{
    char op;
    while (scanf(" %c", &op) == 1) {
        if (op == 'R') { /* requantize + clamp */
            long acc, m0, qmin, qmax; int s;
            if (scanf("%ld %ld %d %ld %ld", &acc, &m0, &s, &qmin, &qmax) != 5) return 2;
            printf("%ld\n", (long)mm_requant((int32_t)acc, (int32_t)m0, s, (int32_t)qmin, (int32_t)qmax));
        } else if (op == 'P') { /* pack n values with the writer, then read them back */
            int bits, sg, n, i; int32_t v[64]; int16_t u[64]; uint8_t buf[64] = {0};
            mm_writer w;
            if (scanf("%d %d %d", &bits, &sg, &n) != 3) return 2;
            for (i = 0; i < n; i++) { long t; if (scanf("%ld", &t) != 1) return 2; v[i] = (int32_t)t; }
            w.p = buf; w.cur = 0; w.pos = 0; w.bits = bits;
            for (i = 0; i < n; i++) mm_put(&w, v[i]);
            mm_flush(&w);
            mm_unpack(u, buf, n, bits, sg);
            for (i = 0; i < mm_bytes(n, bits); i++) printf("%d ", buf[i]);
            printf("|");
            for (i = 0; i < n; i++) printf(" %d/%d", (int)mm_get(buf, i, bits, sg), (int)u[i]);
            printf("\n");
        }
    }
    return 0;
}
"""


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Path:
    require_tool("gcc")
    d = tmp_path_factory.mktemp("harness")
    (d / "t.c").write_text(HARNESS)
    for name, text in kernel_sources().items():
        (d / name).write_text(text)
    cmd = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-o", "t", "t.c"]
    subprocess.run(cmd, cwd=d, check=True, capture_output=True)
    return d / "t"


def test_c_requantization_matches_numpy(harness: Path) -> None:
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(400):
        acc = int(rng.integers(INT32_MIN + 1, INT32_MAX, dtype=np.int64))
        m0 = int(rng.integers(-(2**31) + 1, 2**31, dtype=np.int64))
        s = (
            int(rng.integers(20, MAX_SHIFT + 1))
            if rng.random() < 0.7
            else int(rng.integers(30, 35))
        )
        cases.append((acc, m0, s, -127, 127) if rng.random() < 0.5 else (acc, m0, s, 0, 15))
    cases += [(INT32_MAX, 2**31 - 1, 62, -(2**31) + 1, 2**31 - 1), (-3, 2**30, 31, -8, 7)]
    text = "".join(f"R {a} {m} {s} {lo} {hi}\n" for a, m, s, lo, hi in cases)
    out = subprocess.run([str(harness)], input=text, capture_output=True, text=True, check=True)
    got = [int(v) for v in out.stdout.split()]
    want = [int(np.clip(oracle(a, m, s), lo, hi)) for a, m, s, lo, hi in cases]
    assert got == want


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("signed", [False, True])
def test_c_packing_matches_numpy(harness: Path, bits: int, signed: bool) -> None:
    rng = np.random.default_rng(bits)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    rows = [rng.integers(lo, hi + 1, n) for n in (1, 3, 5, 8, 13, 31, 64)]
    text = "".join(f"P {bits} {int(signed)} {len(r)} {' '.join(map(str, r))}\n" for r in rows)
    out = subprocess.run([str(harness)], input=text, capture_output=True, text=True, check=True)
    for r, line in zip(rows, out.stdout.splitlines()):
        packed, values = line.split("|")
        assert [int(b) for b in packed.split()] == list(pack_bits(r, bits, signed=signed))
        assert [tuple(map(int, v.split("/"))) for v in values.split()] == [(x, x) for x in r]
