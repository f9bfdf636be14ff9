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


def _simulated_overlap(op: Op, pix: int) -> int:
    """The least D for which a kernel that computes output pixels in raster order, reading each
    one's window and then writing it D bytes before its input's place, never reads an input
    byte it has already overwritten (slow: tries D = 0, 1, ...)."""
    (_, h, w), (_, oh, ow) = op.in_shape, op.out_shape
    (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
    for d in range(0, (h * w + 1) * pix):
        dirty = np.zeros(h * w * pix + d, dtype=bool)  # arena bytes, input at offset d
        ok = True
        for oy in range(oh):
            for ox in range(ow):
                for ky in range(kh):
                    for kx in range(kw):
                        iy, ix = oy * sh - ph + ky, ox * sw - pw + kx
                        if 0 <= iy < h and 0 <= ix < w:
                            q = d + (iy * w + ix) * pix
                            ok = ok and not dirty[q : q + pix].any()
                p = oy * ow + ox
                dirty[p * pix : (p + 1) * pix] = True
        if ok:
            return d
    raise AssertionError("no overlap works")


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 7), w=st.integers(1, 7), k=st.sampled_from([1, 3, 5]),
    s=st.integers(1, 2), p=st.integers(0, 2), pix=st.integers(1, 3),
)  # fmt: skip
def test_window_overlap_is_the_least_safe_overlap(h, w, k, s, p, pix) -> None:
    p = min(p, k // 2)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    if oh < 1 or ow < 1:
        return
    op = Op(
        name="dw", kind="conv", inputs=("x",), output="dw", in_shape=(4, h, w),
        out_shape=(4, oh, ow), macs=0, kernel=(k, k), stride=(s, s), padding=(p, p), groups=4,
    )  # fmt: skip
    assert window_overlap(op, pix, pix) == _simulated_overlap(op, pix)
