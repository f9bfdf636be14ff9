"""The pad op (micromix.ops.pad): traced from nn.ZeroPad2d, nn.ConstantPad2d(0) and F.pad
(asymmetric amounts too), refused in one sentence for what it cannot do, its numpy kernel
against a slow oracle, and end to end (QAT codes, C bit-identical) through tests/op_checks.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from op_checks import end_to_end, policies, refusal

from micromix.graph import trace
from micromix.ir import Op
from micromix.numerics.arith import requantize
from micromix.numerics.params import QuantParams, TensorQuant
from micromix.ops import get
from micromix.ops.pad import amounts


class SamePadNet(nn.Module):
    """TensorFlow's "same" padding of a stride-2 conv, as converters write it: zeros on the
    bottom and right only, then an unpadded conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, padding=1)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.down = nn.Conv2d(6, 7, 3, stride=2)
        self.pad2 = nn.ConstantPad2d((2, 0, 1, 3), 0.0)
        self.fc = nn.Linear(7 * 8 * 8, 10)

    def forward(self, x):
        y = F.relu(self.down(self.pad(F.relu(self.stem(x)))))  # 7 x 4 x 6
        y = F.pad(self.pad2(y), (0, 0, 0, 0))  # 7 x 8 x 8, then a pad of nothing
        return self.fc(torch.flatten(y, 1))


def test_traced_with_its_amounts() -> None:
    g = trace(SamePadNet().eval(), (1, 1, 8, 12))
    pads = [o for o in g.ops if o.kind == "pad"]
    assert [amounts(o) for o in pads] == [(0, 1, 0, 1), (1, 3, 2, 0), (0, 0, 0, 0)]
    assert [o.out_shape for o in pads] == [(6, 9, 13), (7, 8, 8), (7, 8, 8)]


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda x: F.pad(x, (1, 1, 1, 1), mode="reflect"), ["mode", "reflect"]),
        (lambda x: F.pad(x, (1, 1), value=1.0), ["value", "1.0"]),
        (lambda x: F.pad(x, (-1, 0)), ["pad", "(-1, 0)"]),
        (lambda x: F.pad(x, (0, 0, 0, 0, 1, 1)), ["pad", "height and width only"]),
    ],
)
def test_what_it_cannot_do_is_one_sentence(call, words) -> None:
    msg = refusal(call)
    assert all(w in msg for w in words), msg


@settings(max_examples=30, deadline=None)
@given(
    pads=st.tuples(*[st.integers(0, 2)] * 4), c=st.integers(1, 5),
    bits=st.sampled_from([(8, 8), (4, 8), (8, 2), (2, 2)]), signed=st.booleans(),
    ratio=st.floats(0.05, 2.0), seed=st.integers(0, 99),
)  # fmt: skip
def test_numpy_kernel_against_a_slow_oracle(pads, c, bits, signed, ratio, seed) -> None:
    top, bottom, left, right = pads
    h, w = 3, 2
    tin = TensorQuant("x", bits[0], signed, 0.1)
    tout = TensorQuant("op", bits[1], signed, 0.1 / ratio)
    op = Op(
        name="op", kind="pad", inputs=("x",), output="op", in_shape=(c, h, w),
        out_shape=(c, h + top + bottom, w + left + right), macs=0, in_shapes=((c, h, w),),
        padding=(top, left),
    )  # fmt: skip
    assert amounts(op) == pads
    iop = get("pad").convert(op, QuantParams({"x": tin, "op": tout}, {}))
    x = np.random.default_rng(seed).integers(tin.qmin, tin.qmax + 1, (2, h, w, c))
    got = get("pad").run(iop, x)
    m, n = int(iop.arrays["mult"][0]), int(iop.arrays["shift"][0])
    for i in range(2):
        for y in range(h + top + bottom):
            for xx in range(w + left + right):
                inside = 0 <= y - top < h and 0 <= xx - left < w
                for ch in range(c):
                    q = x[i, y - top, xx - left, ch] if inside else 0
                    v = int(requantize(np.array([q]), m, n)[0])
                    assert got[i, y, xx, ch] == min(max(v, tout.qmin), tout.qmax)


@pytest.mark.parametrize("name", ["4/4", "mixed"])
def test_end_to_end(tmp_path, name: str) -> None:
    torch.manual_seed(0)
    model = SamePadNet().eval()
    g = trace(model, (1, 1, 8, 12))
    end_to_end(model, (1, 8, 12), policies(g)[name], "pad", tmp_path / "c")
