"""Tracing of pooling, concat, table activations, multiply and softmax: arguments are read the
same way from modules and functional calls, and what the kernels cannot honour is refused with
one sentence naming the op, the argument and the module whose forward holds it."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from micromix.errors import UnsupportedOpError
from micromix.graph import trace


class Wrap(nn.Module):
    """conv -> `fn` (a callable on the conv's output), nested one module deep."""

    def __init__(self, fn, c: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.block = nn.Sequential(Lambda(fn))

    def forward(self, x):
        return self.block(self.conv(x))


class Lambda(nn.Module):
    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def one_op(fn, shape=(1, 1, 9, 9)):
    g = trace(Wrap(fn), shape)
    assert len(g.ops) == 2
    return g.ops[1]


def test_pool_arguments_are_read_the_same_from_module_and_functional_forms() -> None:
    forms = [
        nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        lambda x: F.max_pool2d(x, 3, 2, 1, 1, True),
        lambda x: F.max_pool2d(x, kernel_size=3, stride=2, padding=1, ceil_mode=True),
        lambda x: F.max_pool2d(x, (3, 3), stride=(2, 2), padding=(1, 1), ceil_mode=True),
    ]
    ops = [one_op(f) for f in forms]
    assert {(o.kind, o.kernel, o.stride, o.padding, o.ceil_mode) for o in ops} == {
        ("maxpool", (3, 3), (2, 2), (1, 1), True)
    }
    assert one_op(nn.MaxPool2d(2, ceil_mode=True)).out_shape == (4, 5, 5)  # 9 / 2 rounded up
    avg = [
        nn.AvgPool2d(3, 1, 1, count_include_pad=False),
        lambda x: F.avg_pool2d(x, 3, 1, 1, False, False),
        lambda x: F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False),
    ]
    assert {
        (o.kind, o.kernel, o.stride, o.padding, o.count_include_pad) for o in map(one_op, avg)
    } == {("avgpool", (3, 3), (1, 1), (1, 1), False)}


def test_avg_pool2d_arguments_are_honoured_not_inferred_from_shapes() -> None:
    """The bug of issue 10: a 3x3 stride-1 padded pool kept the shape and became a 1x1 pool."""
    op = one_op(lambda x: F.avg_pool2d(x, 3, stride=1, padding=1))
    assert (op.kernel, op.stride, op.padding, op.count_include_pad) == (
        (3, 3),
        (1, 1),
        (1, 1),
        True,
    )
    assert op.out_shape == op.in_shape


@pytest.mark.parametrize(
    "fn, needle",
    [
        (lambda x: F.max_pool2d(x, 2, dilation=2), "max pooling at `max_pool2d`.* has dilation=2"),
        (
            nn.MaxPool2d(2, dilation=2),
            "max pooling at module `block.0.fn` \\(MaxPool2d\\) has dilation=2",
        ),
        (lambda x: F.max_pool2d(x, 2, return_indices=True)[0], "return_indices=True"),
        (nn.MaxPool2d(2, return_indices=True), "return_indices=True"),
        (lambda x: F.avg_pool2d(x, 3, divisor_override=4), "divisor_override=4"),
        (lambda x: F.avg_pool2d(x, 2, ceil_mode=True), "average pooling.* ceil_mode=True"),
        (lambda x: torch.cat([x, x], dim=2), "torch.cat at `cat`.* has dim=2"),
        (lambda x: torch.cat([x, x], 3), "dim=3"),
        (lambda x: F.softmax(x, 1) + 1, "softmax at `softmax`.* is not the model's last"),
        (lambda x: F.adaptive_max_pool2d(x, 4), "adaptive max pooling.* output_size=\\(4, 4\\)"),
        (lambda x: F.leaky_relu(x, x.shape[2] * 0.01), "negative_slope=.* computed at run time"),
    ],
)
def test_arguments_the_kernels_cannot_honour_are_refused_in_one_sentence(fn, needle) -> None:
    with pytest.raises(UnsupportedOpError, match=needle) as e:
        trace(Wrap(fn), (1, 1, 9, 9))
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith(".")
    # Functional calls are placed in the forward of the module that holds them.
    if "fx node" in msg:
        assert "in the forward of module `block.0` (Lambda)" in msg


def test_multiply_of_maps_of_different_channels_is_refused() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 4, 1), nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.a(x) * self.b(x)

    with pytest.raises(
        UnsupportedOpError, match="multiply at `mul`.* has shapes=.*4, 5, 5.*1, 5, 5"
    ):
        trace(Net(), (1, 1, 5, 5))


def test_softmax_on_the_classes_at_the_end_is_left_out() -> None:
    class Net(nn.Module):
        def __init__(self, fn) -> None:
            super().__init__()
            self.conv, self.fc, self.fn = nn.Conv2d(1, 4, 3), nn.Linear(4, 3), fn

        def forward(self, x):
            return self.fn(self.fc(torch.flatten(F.adaptive_avg_pool2d(self.conv(x), 1), 1)))

    for fn in (nn.Softmax(dim=1), nn.LogSoftmax(1), lambda y: y.softmax(-1), torch.log_softmax):
        kw = {}
        if fn is torch.log_softmax:
            fn = lambda y: torch.log_softmax(y, dim=1)  # noqa: E731
        g = trace(Net(fn, **kw), (1, 1, 6, 6))
        assert g.op(g.output).kind == "linear" and len(g.notes) == 1 and len(g.dropped) == 1
    with pytest.raises(UnsupportedOpError, match="dim=0"):
        trace(Net(lambda y: F.softmax(y, 0)), (1, 1, 6, 6))


def test_table_activations_and_their_signedness() -> None:
    cases = {
        nn.Hardswish(): ("hardswish", True),
        nn.Hardsigmoid(): ("hardsigmoid", False),
        torch.sigmoid: ("sigmoid", False),
        nn.SiLU(): ("silu", True),
        nn.LeakyReLU(0.2): ("leaky_relu", True),
        (lambda x: F.leaky_relu(x, negative_slope=0.3)): ("leaky_relu", True),
        (lambda x: x.tanh()): ("tanh", True),
    }
    for fn, (name, signed) in cases.items():
        g = trace(Wrap(fn), (1, 1, 5, 5))
        op = g.ops[1]
        assert (op.kind, op.fn, g.tensors[op.output].signed) == ("lut", name, signed)
        if name == "leaky_relu":
            assert op.alpha in (0.2, 0.3)


def test_concat_and_gate_multiply() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 3, 1), nn.Conv2d(1, 5, 3, padding=1)
            self.gate = nn.Linear(8, 8)

        def forward(self, x):
            y = torch.cat((F.relu(self.a(x)), self.b(x)), axis=1)
            s = torch.sigmoid(self.gate(y.mean((2, 3)))).view(-1, 8, 1, 1)
            return s * y

    g = trace(Net(), (1, 1, 6, 6))
    kinds = {o.kind: o for o in g.ops}
    assert kinds["cat"].inputs == ("a", "b") and kinds["cat"].out_shape == (8, 6, 6)
    assert g.tensors["cat"].signed and not g.tensors["a"].signed
    mul = kinds["mul"]
    assert mul.in_shapes == ((8, 6, 6), (8, 1, 1)) and mul.inputs == ("cat", "sigmoid")


@pytest.mark.parametrize(
    "conv, needle",
    [
        (nn.Conv2d(4, 2, 3, dilation=2), "dilation=\\(2, 2\\)"),
        (nn.Conv2d(4, 2, 3, padding="same"), "padding='same'"),
        (nn.Conv2d(4, 2, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
    ],
)
def test_conv_arguments_are_refused_by_name(conv, needle) -> None:
    with pytest.raises(
        UnsupportedOpError, match=f"Conv2d at module `block.0.fn` \\(Conv2d\\) has {needle}"
    ):
        trace(Wrap(conv), (1, 1, 9, 9))


def test_swish_written_by_hand_is_one_silu_table() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c, self.d = nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 1)

        def forward(self, x):
            y = self.c(x)
            y = y * torch.sigmoid(y)
            z = torch.sigmoid(y)  # read twice: stays a sigmoid, and the multiply stays
            return self.d(y * z) + z

    g = trace(Net(), (1, 1, 6, 6))
    assert [(o.kind, o.fn) for o in g.ops] == [
        ("conv", None), ("lut", "silu"), ("lut", "sigmoid"), ("mul", None), ("conv", None),
        ("add", None),
    ]  # fmt: skip
    assert g.ops[1].inputs == ("c",) and g.ops[3].inputs == ("mul", "sigmoid_1")
