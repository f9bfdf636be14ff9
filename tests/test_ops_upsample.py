"""The upsample op (micromix.ops.upsample): traced from nn.Upsample and F.interpolate, refused
in one sentence for what it cannot do, its numpy kernel against a slow oracle, and end to end
(QAT codes, C bit-identical) through tests/op_checks.py."""

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


class UpNet(nn.Module):
    """A small decoder: features at two scales, the coarse one upsampled and added."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, padding=1)
        self.down = nn.Conv2d(6, 6, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = nn.Conv2d(6, 5, 1)
        self.fc = nn.Linear(5 * 4 * 6, 10)

    def forward(self, x):
        a = F.relu(self.stem(x))  # 6 x 8 x 12
        b = F.interpolate(F.relu(self.down(a)), scale_factor=(1, 1))  # 6 x 4 x 6, factor 1
        y = self.up(b) + a
        y = F.interpolate(F.max_pool2d(self.head(y), 2), scale_factor=2)  # 5 x 8 x 12
        return self.fc(torch.flatten(F.avg_pool2d(y, 2), 1))


def test_traced_from_modules_and_functions() -> None:
    g = trace(UpNet().eval(), (1, 1, 8, 12))
    ups = [o for o in g.ops if o.kind == "upsample"]
    assert [(o.in_shape, o.out_shape) for o in ups] == [
        ((6, 4, 6), (6, 4, 6)),
        ((6, 4, 6), (6, 8, 12)),
        ((5, 4, 6), (5, 8, 12)),
    ]


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda x: F.interpolate(x, scale_factor=2, mode="bilinear"), ["mode", "bilinear"]),
        (lambda x: F.interpolate(x, size=(5, 5)), ["output size", "(5, 5)", "4x4"]),
    ],
)
def test_what_it_cannot_do_is_one_sentence(call, words) -> None:
    msg = refusal(call)
    assert all(w in msg for w in words), msg


@settings(max_examples=30, deadline=None)
@given(
    fh=st.integers(1, 3), fw=st.integers(1, 3), c=st.integers(1, 5),
    bits=st.sampled_from([(8, 8), (4, 8), (8, 2), (4, 4)]), signed=st.booleans(),
    ratio=st.floats(0.05, 2.0), seed=st.integers(0, 99),
)  # fmt: skip
def test_numpy_kernel_against_a_slow_oracle(fh, fw, c, bits, signed, ratio, seed) -> None:
    h, w = 3, 2
    tin = TensorQuant("x", bits[0], signed, 0.1)
    tout = TensorQuant("op", bits[1], signed, 0.1 / ratio)
    op = Op(
        name="op", kind="upsample", inputs=("x",), output="op", in_shape=(c, h, w),
        out_shape=(c, h * fh, w * fw), macs=0, in_shapes=((c, h, w),),
    )  # fmt: skip
    iop = get("upsample").convert(op, QuantParams({"x": tin, "op": tout}, {}))
    x = np.random.default_rng(seed).integers(tin.qmin, tin.qmax + 1, (2, h, w, c))
    got = get("upsample").run(iop, x)
    m, n = int(iop.arrays["mult"][0]), int(iop.arrays["shift"][0])
    for i in range(2):
        for y in range(h * fh):
            for xx in range(w * fw):
                for ch in range(c):
                    v = int(requantize(np.array([x[i, y // fh, xx // fw, ch]]), m, n)[0])
                    assert got[i, y, xx, ch] == min(max(v, tout.qmin), tout.qmax)


def test_same_bits_share_the_input_grid_exactly() -> None:
    tq = TensorQuant("x", 4, False, 0.25)
    op = Op(
        name="op", kind="upsample", inputs=("x",), output="op", in_shape=(2, 2, 2),
        out_shape=(2, 4, 4), macs=0, in_shapes=((2, 2, 2),),
    )  # fmt: skip
    iop = get("upsample").convert(op, QuantParams({"x": tq, "op": tq}, {}))
    x = np.arange(8).reshape(1, 2, 2, 2)
    assert np.array_equal(get("upsample").run(iop, x), x.repeat(2, 1).repeat(2, 2))


@pytest.mark.parametrize("name", ["8/8", "mixed"])
def test_end_to_end(tmp_path, name: str) -> None:
    torch.manual_seed(0)
    model = UpNet().eval()
    g = trace(model, (1, 1, 8, 12))
    end_to_end(model, (1, 8, 12), policies(g)[name], "upsample", tmp_path / "c")
