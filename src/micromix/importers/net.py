"""The torch module an imported file becomes: plain nn layers run in the file's order.

`ImportedNet` holds one submodule per step and a plan (step name, input names); its forward
runs the plan, so torch.fx traces it into the plain Conv2d / Linear / ReLU / pooling / add
nodes micromix's tracer knows. Both importers (TFLite, ONNX) build it with `Steps`, from the
file's numbers only: nothing named inside a file is imported or called.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import MicromixError

INPUT = "input"


class Add(nn.Module):
    """Elementwise sum of two tensors of one shape (a residual)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class ImportedNet(nn.Module):
    """A network read from a file: `plan` lists (step, inputs) in execution order."""

    def __init__(
        self, steps: list[tuple[str, nn.Module, tuple[str, ...]]], output: str, source: str
    ) -> None:
        super().__init__()
        self.plan: list[tuple[str, tuple[str, ...]]] = []
        for name, module, inputs in steps:
            self.add_module(name, module)
            self.plan.append((name, inputs))
        self.output_name = output
        self.source = source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = {INPUT: x}
        for name, inputs in self.plan:
            t[name] = getattr(self, name)(*(t[i] for i in inputs))
        return t[self.output_name]


class Steps:
    """Collects the steps of an ImportedNet; names are `<kind><index>`, unique and stable."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.steps: list[tuple[str, nn.Module, tuple[str, ...]]] = []

    def add(self, prefix: str, module: nn.Module, *inputs: str) -> str:
        name = f"{prefix}{len(self.steps)}"
        self.steps.append((name, module, tuple(inputs)))
        return name

    def build(self, output: str) -> ImportedNet:
        if not self.steps:
            raise MicromixError(f"{self.source} has no operator micromix can run.")
        return ImportedNet(self.steps, output, self.source).eval()


def same_padding(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's 'SAME' padding (before, after) of one dimension: the extra row, if any,
    goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def conv(
    weight: np.ndarray,
    bias: np.ndarray | None,
    pads: tuple[tuple[int, int], tuple[int, int]],
    stride: tuple[int, int],
    groups: int,
    dilation: tuple[int, int] = (1, 1),
) -> nn.Conv2d:
    """An nn.Conv2d with `weight` (C_out, C_in/groups, kh, kw) and per-dimension (before, after)
    padding. torch pads both sides alike, so a dimension padded one more after than before gets
    a kernel one larger with a leading zero row (or column) and the larger padding on both
    sides: every window then covers exactly the inputs of the file's window, so the outputs
    are equal, and the output size is unchanged."""
    w = np.asarray(weight, dtype=np.float32)
    sym = []
    for axis, ((before, after), d) in enumerate(zip(pads, dilation)):
        if before == after:
            sym.append(before)
            continue
        if after - before != 1 or d != 1:
            raise MicromixError(
                f"a convolution padded ({before}, {after}) cannot be mapped exactly."
            )
        zero = np.zeros_like(w.take([0], axis=2 + axis))
        w = np.concatenate([zero, w], axis=2 + axis)
        sym.append(after)
    c_out, c_in_g, kh, kw = w.shape
    m = nn.Conv2d(
        c_in_g * groups,
        c_out,
        (kh, kw),
        stride=stride,
        padding=tuple(sym),
        dilation=dilation,
        groups=groups,
        bias=bias is not None,
    )
    with torch.no_grad():
        m.weight.copy_(torch.tensor(w))
        if bias is not None:
            m.bias.copy_(torch.tensor(np.asarray(bias, dtype=np.float32)))
    return m


def linear(weight: np.ndarray, bias: np.ndarray | None) -> nn.Linear:
    """An nn.Linear with `weight` (out, in)."""
    out_f, in_f = weight.shape
    m = nn.Linear(in_f, out_f, bias=bias is not None)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(np.asarray(weight, dtype=np.float32)))
        if bias is not None:
            m.bias.copy_(torch.tensor(np.asarray(bias, dtype=np.float32)))
    return m
