"""ONNX files (.onnx) as torch modules, read through the `onnx` package.

micromix maps the ONNX nodes a CNN exported from torch or Keras uses onto plain torch layers
with its own code (`net.ImportedNet`), from the file's initializers and attributes: nothing
named inside the file is imported or run. ONNX is NCHW like torch, so weights keep their
layout; asymmetric padding is mapped exactly as for TFLite (`net.conv`). Nodes outside the
table below are refused with their op type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import MicromixError
from .net import INPUT, Add, ImportedNet, Steps, conv, linear


def _onnx() -> Any:
    try:
        import onnx
        import onnx.numpy_helper
    except ImportError:
        raise MicromixError(
            "reading .onnx files needs the onnx package: pip install onnx."
        ) from None
    return onnx


class _Reader:
    def __init__(self, path: Path) -> None:
        onnx = _onnx()
        self.source = str(path)
        try:
            self.model = onnx.load_model(str(path), load_external_data=False)
        except Exception as e:
            raise MicromixError(
                f"{path} is not a readable ONNX file ({type(e).__name__})."
            ) from None
        g = self.model.graph
        self.const = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
        inputs = [i for i in g.input if i.name not in self.const]
        if len(inputs) != 1 or len(g.output) != 1:
            raise MicromixError(f"{path}: micromix imports networks with one input and one output.")
        self.input = inputs[0]
        self.vals: dict[str, str] = {self.input.name: INPUT}

    def attrs(self, node: Any) -> dict[str, Any]:
        return {a.name: _onnx().helper.get_attribute_value(a) for a in node.attribute}

    def value(self, name: str, op: str) -> str:
        if name not in self.vals:
            raise MicromixError(
                f"{self.source}: {op} reads {name!r}, which is not a computed tensor."
            )
        return self.vals[name]

    def array(self, name: str, op: str) -> np.ndarray:
        if name not in self.const:
            raise MicromixError(f"{self.source}: {op} needs {name!r} to be a constant in the file.")
        return np.asarray(self.const[name], dtype=np.float32)


def input_shape(path: str | Path) -> tuple[int, int, int]:
    """(C, H, W) of the file's input (N x C x H x W, or N x F as F x 1 x 1); a symbolic batch
    dimension counts as 1."""
    return _shape(_Reader(Path(path)))


def _shape(r: _Reader) -> tuple[int, int, int]:
    dims = r.input.type.tensor_type.shape.dim
    s = [d.dim_value if d.HasField("dim_value") else None for d in dims][1:]
    if len(s) == 3 and all(s):
        return (s[0], s[1], s[2])
    if len(s) == 1 and s[0]:
        return (s[0], 1, 1)
    raise MicromixError(
        f"{r.source}: the input has shape {s}; micromix takes N x C x H x W with fixed C, H, W."
    )


def load(path: str | Path) -> ImportedNet:
    """The network of an .onnx file as an ImportedNet (float weights, eval mode)."""
    r = _Reader(Path(path))
    _shape(r)
    steps = Steps(r.source)
    for node in r.model.graph.node:
        handler = _HANDLERS.get(node.op_type)
        if handler is None:
            raise MicromixError(
                f"{r.source}: ONNX op {node.op_type} (node {node.name or '?'}) cannot be mapped "
                f"to micromix's layers; supported: {', '.join(sorted(_HANDLERS))}."
            )
        out = handler(r, steps, node)
        if out is not None:
            r.vals[node.output[0]] = out
    name = r.model.graph.output[0].name
    return steps.build(r.value(name, "the graph output"))


def _conv(r: _Reader, steps: Steps, node: Any) -> str:
    a = r.attrs(node)
    w = r.array(node.input[1], "Conv")
    bias = r.array(node.input[2], "Conv") if len(node.input) > 2 and node.input[2] else None
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or w.ndim != 4:
        raise MicromixError(f"{r.source}: Conv with auto_pad or not 2-D cannot be mapped.")
    p = list(a.get("pads", [0, 0, 0, 0]))
    m = conv(
        w,
        bias,
        ((p[0], p[2]), (p[1], p[3])),
        tuple(a.get("strides", [1, 1])),
        int(a.get("group", 1)),
        tuple(a.get("dilations", [1, 1])),
    )
    return steps.add("conv", m, r.value(node.input[0], "Conv"))


def _gemm(r: _Reader, steps: Steps, node: Any) -> str:
    a = r.attrs(node)
    if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0):
        raise MicromixError(f"{r.source}: Gemm with alpha, beta or transA cannot be mapped.")
    w = r.array(node.input[1], "Gemm")
    w = w if a.get("transB", 0) else w.T
    bias = r.array(node.input[2], "Gemm") if len(node.input) > 2 and node.input[2] else None
    return steps.add("fc", linear(w, bias), r.value(node.input[0], "Gemm"))


def _module(prefix: str, make) -> Any:
    def handler(r: _Reader, steps: Steps, node: Any) -> str:
        return steps.add(prefix, make(r, node), r.value(node.input[0], node.op_type))

    return handler


def _clip(r: _Reader, node: Any) -> nn.Module:
    a = r.attrs(node)
    lo = (
        float(r.array(node.input[1], "Clip"))
        if len(node.input) > 1 and node.input[1]
        else a.get("min")
    )
    hi = (
        float(r.array(node.input[2], "Clip"))
        if len(node.input) > 2 and node.input[2]
        else a.get("max")
    )
    if lo == 0.0 and hi == 6.0:
        return nn.ReLU6()
    if lo == 0.0 and hi is None:
        return nn.ReLU()
    raise MicromixError(f"{r.source}: Clip({lo}, {hi}) cannot be mapped (only ReLU and ReLU6).")


def _pool(r: _Reader, node: Any) -> nn.Module:
    a = r.attrs(node)
    p = list(a.get("pads", [0, 0, 0, 0]))
    if p[0] != p[2] or p[1] != p[3] or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise MicromixError(f"{r.source}: {node.op_type} with asymmetric padding cannot be mapped.")
    k, s, pad = tuple(a["kernel_shape"]), tuple(a.get("strides", [1, 1])), (p[0], p[1])
    ceil = bool(a.get("ceil_mode", 0))
    if node.op_type == "MaxPool":
        return nn.MaxPool2d(k, s, pad, ceil_mode=ceil)
    return nn.AvgPool2d(
        k, s, pad, ceil_mode=ceil, count_include_pad=bool(a.get("count_include_pad", 0))
    )


def _flatten(r: _Reader, node: Any) -> nn.Module:
    if r.attrs(node).get("axis", 1) != 1:
        raise MicromixError(f"{r.source}: Flatten with axis != 1 cannot be mapped.")
    return nn.Flatten(1)


def _reshape(r: _Reader, node: Any) -> nn.Module:
    shape = [int(v) for v in r.array(node.input[1], "Reshape").ravel()]
    if len(shape) == 2 and shape[0] in (1, -1, 0):
        return nn.Flatten(1)
    raise MicromixError(f"{r.source}: Reshape to {shape} cannot be mapped (only to N x F).")


def _softmax(r: _Reader, node: Any) -> nn.Module:
    if r.attrs(node).get("axis", -1) not in (1, -1):
        raise MicromixError(f"{r.source}: Softmax over an axis other than 1 cannot be mapped.")
    return nn.Softmax(dim=1)


def _batchnorm(r: _Reader, node: Any) -> nn.Module:
    g, b, mean, var = (r.array(n, "BatchNormalization") for n in node.input[1:5])
    m = nn.BatchNorm2d(g.size, eps=float(r.attrs(node).get("epsilon", 1e-5)))
    for t, v in ((m.weight, g), (m.bias, b), (m.running_mean, mean), (m.running_var, var)):
        t.data.copy_(torch.tensor(v))
    return m.eval()


def _add(r: _Reader, steps: Steps, node: Any) -> str:
    a, b = (r.value(n, "Add (of a constant)") for n in node.input[:2])
    return steps.add("add", Add(), a, b)


def _alias(r: _Reader, steps: Steps, node: Any) -> str | None:
    if node.input[0] in r.const:  # exporters pass shared weights through Identity
        r.const[node.output[0]] = r.const[node.input[0]]
        return None
    return r.value(node.input[0], node.op_type)


def _constant(r: _Reader, steps: Steps, node: Any) -> None:
    r.const[node.output[0]] = _onnx().numpy_helper.to_array(r.attrs(node)["value"])


_HANDLERS = {
    "Conv": _conv,
    "Gemm": _gemm,
    "Relu": _module("relu", lambda r, n: nn.ReLU()),
    "Clip": _module("clip", _clip),
    "MaxPool": _module("maxpool", _pool),
    "AveragePool": _module("avgpool", _pool),
    "GlobalAveragePool": _module("gap", lambda r, n: nn.AdaptiveAvgPool2d(1)),
    "Flatten": _module("flatten", _flatten),
    "Reshape": _module("flatten", _reshape),
    "Softmax": _module("softmax", _softmax),
    "BatchNormalization": _module("bn", _batchnorm),
    "Add": _add,
    "Identity": _alias,
    "Dropout": _alias,
    "Constant": _constant,
}
