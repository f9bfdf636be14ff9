"""ops.common: the facts a kernel call carries."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from micromix.ops.common import quant_of


def _iop(shift: list[int]) -> SimpleNamespace:
    n = len(shift)
    return SimpleNamespace(
        arrays={"shift": np.asarray(shift, np.int8), "mult": np.ones(n, np.int32)},
        qmin=0, qmax=255, in_bits=(8,) * 4, in_signed=(False,) * 4, w_bits=8, out_bits=8,
        bias_shift=0,
    )  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(31, 35), min_size=1, max_size=8), st.integers(0, 3))
def test_the_call_says_whether_every_shift_from_its_channel_on_is_above_32(shift, index) -> None:
    """mm_quant_params.above32 (the last field) is 1 exactly where no channel the call's shift
    pointer reaches (from `index` on) has a shift of 32 or less: the kernels no longer look."""
    names = {"bias": "b", "mult": "m", "shift": "s"}
    q = quant_of(_iop(shift), names, min(index, len(shift) - 1))
    start = min(index, len(shift) - 1)
    assert q[-1] == (0 if any(v <= 32 for v in shift[start:]) else 1)
    assert q[2] == ("s" if start == 0 else f"s + {start}")
