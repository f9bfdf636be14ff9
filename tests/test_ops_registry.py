"""The op registry (micromix.ops): one OpDef per kind, refusals of clashing registrations, and
the shared rule for running an op in place (`ops.common.window_overlap`) against a slow
byte-level simulation of a raster-order kernel writing over its input."""

from __future__ import annotations

import numpy as np
import pytest
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from micromix import ops
from micromix.ir import Op
from micromix.ops.common import window_overlap
from micromix.ops.registry import OpDef, register


def test_every_kind_that_reaches_a_graph_has_every_stage() -> None:
    for kind in ops.list_ops():
        d = ops.get(kind)
        if d.in_graph:  # the defaults raise: a missing stage would fail late otherwise
            hooks = [d.params, d.kernel, d.convert, d.run, d.emit]
            if d.weight_layout is None:  # weighted ops get synthetic weights, not a real()
                hooks.append(d.real)
            assert all(h.__name__ != "_absent" for h in hooks), kind


def test_unknown_kinds_and_clashes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown op kind 'nope'.*conv"):
        ops.get("nope")
    with pytest.raises(ValueError, match="registered twice"):
        register(OpDef(kind="conv", describe="", trace=lambda fz, n: None))
    with pytest.raises(ValueError, match="both take"):
        register(OpDef(kind="conv2", describe="", trace=lambda fz, n: None, modules=(nn.Conv2d,)))
    assert "conv2" not in ops.list_ops()


def _simulated_overlap(op: Op, in_pix: int, out_pix: int, lag: int) -> int:
    """The least D for which a kernel that writes output pixels in raster order D bytes before
    its input's place never reads an input byte it has already overwritten, when it may still
    read the windows of outputs P + 1 - lag onward while it writes pixel P (slow: tries
    D = 0, 1, ...; each write is followed by every read it may still precede)."""
    (_, h, w), (_, oh, ow) = op.in_shape, op.out_shape
    (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding

    def window(q: int) -> list[int]:
        oy, ox = divmod(q, ow)
        taps = [(oy * sh - ph + ky, ox * sw - pw + kx) for ky in range(kh) for kx in range(kw)]
        return [iy * w + ix for iy, ix in taps if 0 <= iy < h and 0 <= ix < w]

    n = oh * ow
    for d in range(0, h * w * in_pix + n * out_pix + 1):
        dirty = np.zeros(h * w * in_pix + d + n * out_pix, dtype=bool)  # input at offset d
        ok = True
        for p in range(n):
            if lag == 0:  # the window is read, then the pixel written
                ok = ok and not any(
                    dirty[d + i * in_pix : d + (i + 1) * in_pix].any() for i in window(p)
                )
            dirty[p * out_pix : (p + 1) * out_pix] = True
            for q in range(max(0, p + 1 - lag), p + 1):
                ok = ok and not any(
                    dirty[d + i * in_pix : d + (i + 1) * in_pix].any() for i in window(q)
                )
        if ok:
            return d
    raise AssertionError("no overlap works")


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 6), w=st.integers(1, 6), k=st.sampled_from([1, 3, 5]),
    s=st.integers(1, 2), p=st.integers(0, 2), in_pix=st.integers(1, 3),
    out_pix=st.integers(1, 4), lag=st.integers(0, 2),
)  # fmt: skip
def test_window_overlap_is_the_least_safe_overlap(h, w, k, s, p, in_pix, out_pix, lag) -> None:
    p = min(p, k // 2)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    if oh < 1 or ow < 1:
        return
    op = Op(
        name="c", kind="conv", inputs=("x",), output="c", in_shape=(4, h, w),
        out_shape=(4, oh, ow), macs=0, kernel=(k, k), stride=(s, s), padding=(p, p), groups=1,
    )  # fmt: skip
    assert window_overlap(op, in_pix, out_pix, lag) == _simulated_overlap(op, in_pix, out_pix, lag)
