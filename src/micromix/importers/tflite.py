"""TensorFlow Lite files (.tflite) as torch modules, read through the `tflite` flatbuffer reader.

Float files import as they are; int8 (and hybrid) files import with their weights and biases
dequantized (`(q - zero_point) * scale`, per channel where the file says so), so micromix
quantizes the float network again under its own policy. Layouts are converted from TFLite's
NHWC / OHWI to torch's NCHW / OIHW; 'SAME' padding is computed as TensorFlow does and mapped
exactly (`net.conv`). Operators outside the table below are refused with their name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..errors import MicromixError
from .net import INPUT, Add, ImportedNet, Steps, conv, linear, same_padding

# TFLite's tensor type codes (schema.fbs TensorType) and the numpy type of their bytes.
_DTYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}
_SAME, _VALID = 0, 1  # schema.fbs Padding
_ACTS = {0: None, 1: nn.ReLU, 3: nn.ReLU6}  # schema.fbs ActivationFunctionType


def _tfl() -> Any:
    try:
        import tflite
    except ImportError:
        raise MicromixError(
            "reading .tflite files needs the tflite package: pip install tflite."
        ) from None
    return tflite


@dataclass(frozen=True)
class _Val:
    """A tensor of the file as torch sees it: the step that makes it, whether it is 4-D in
    torch (N, C, H, W), and for a flattened feature map with H x W > 1 its (h, w, c)."""

    name: str
    four_d: bool
    hwc: tuple[int, int, int] | None = None


class _Reader:
    def __init__(self, path: Path) -> None:
        self.tfl = _tfl()
        self.source = str(path)
        data = path.read_bytes()
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise MicromixError(f"{path} is not a TensorFlow Lite file (no TFL3 identifier).")
        try:
            self.model = self.tfl.Model.GetRootAsModel(data, 0)
            if self.model.SubgraphsLength() < 1:
                raise ValueError("no subgraph")
            self.graph = self.model.Subgraphs(0)
            names = {v: k for k, v in vars(self.tfl.BuiltinOperator).items() if k.isupper()}
            self.op_names = names
        except MicromixError:
            raise
        except Exception as e:
            raise MicromixError(f"{path} is a damaged TensorFlow Lite file ({e}).") from None

    def shape(self, i: int) -> tuple[int, ...]:
        return tuple(int(d) for d in self.graph.Tensors(i).ShapeAsNumpy())

    def array(self, i: int) -> np.ndarray:
        """The constant tensor i as float32, dequantized when the file stores integers."""
        t = self.graph.Tensors(i)
        dtype = _DTYPES.get(t.Type())
        raw = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if dtype is None or isinstance(raw, int):
            raise MicromixError(
                f"{self.source}: tensor {t.Name().decode(errors='replace')} is not a constant "
                "of a supported type; weights must be stored in the file."
            )
        a = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(self.shape(i))
        if dtype is np.float32:
            return a.astype(np.float32)
        q = t.Quantization()
        if q is None or q.ScaleLength() == 0:
            raise MicromixError(f"{self.source}: integer weights without a scale.")
        scale, zp = q.ScaleAsNumpy().astype(np.float64), q.ZeroPointAsNumpy()
        zp = np.zeros_like(scale) if isinstance(zp, int) else zp.astype(np.float64)
        bshape = [1] * a.ndim
        if scale.size > 1:
            bshape[q.QuantizedDimension()] = scale.size
        out = (a.astype(np.float64) - zp.reshape(bshape)) * scale.reshape(bshape)
        return out.astype(np.float32)

    def op_name(self, op: Any) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        b = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        return self.op_names.get(b, f"operator code {b}")

    def options(self, op: Any, cls: str) -> Any:
        opts = getattr(self.tfl, cls)()
        table = op.BuiltinOptions()
        if table is None:
            raise MicromixError(f"{self.source}: an operator lacks its options.")
        opts.Init(table.Bytes, table.Pos)
        return opts


def input_shape(path: str | Path) -> tuple[int, int, int]:
    """(C, H, W) of the file's input: NHWC images, or (N, 1, 1) for a (1, N) vector."""
    r = _Reader(Path(path))
    return _chw(r, r.graph.Inputs(0))


def dense_scales(path: str | Path) -> str | None:
    """How the file's fully connected layers scale their integer weights: "tensor" (one scale
    each, TFLite's int8 default), "channel" (one per output row, if any layer has several),
    None for a file without integer fully connected weights (a float file)."""
    r = _Reader(Path(path))
    counts = []
    for k in range(r.graph.OperatorsLength()):
        op = r.graph.Operators(k)
        if r.op_name(op) != "FULLY_CONNECTED":
            continue
        q = r.graph.Tensors(int(op.Inputs(1))).Quantization()
        if q is not None and q.ScaleLength() > 0:
            counts.append(q.ScaleLength())
    if not counts:
        return None
    return "tensor" if max(counts) == 1 else "channel"


def _chw(r: _Reader, i: int) -> tuple[int, int, int]:
    s = r.shape(i)
    if len(s) == 4 and s[0] == 1:
        return (s[3], s[1], s[2])
    if len(s) == 2 and s[0] == 1:
        return (s[1], 1, 1)
    raise MicromixError(
        f"{r.source}: the input has shape {list(s)}; micromix takes 1xHxWxC images or 1xN vectors."
    )


def load(path: str | Path) -> ImportedNet:
    """The network of a .tflite file as an ImportedNet (float weights, eval mode)."""
    r = _Reader(Path(path))
    g = r.graph
    if g.InputsLength() != 1 or g.OutputsLength() != 1:
        raise MicromixError(f"{r.source}: micromix imports networks with one input and one output.")
    _chw(r, g.Inputs(0))
    vals = {g.Inputs(0): _Val(INPUT, True)}
    steps = Steps(r.source)
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        name = r.op_name(op)
        handler = _HANDLERS.get(name)
        if handler is None:
            raise MicromixError(
                f"{r.source}: operator {name} (operator {k}) cannot be mapped to micromix's "
                f"layers; supported: {', '.join(sorted(_HANDLERS))}."
            )
        ins = [int(i) for i in op.InputsAsNumpy()]
        vals[int(op.Outputs(0))] = handler(r, steps, op, ins, vals)
    out = vals.get(g.Outputs(0))
    if out is None:
        raise MicromixError(f"{r.source}: the output is not computed by any operator.")
    return steps.build(out.name)


def _act(r: _Reader, steps: Steps, code: int, val: _Val, op: str) -> _Val:
    if code not in _ACTS:
        raise MicromixError(f"{r.source}: {op} with fused activation {code} cannot be mapped.")
    cls = _ACTS[code]
    if cls is None:
        return val
    return _Val(steps.add(cls.__name__.lower(), cls(), val.name), val.four_d, val.hwc)


def _value(r: _Reader, vals: dict[int, _Val], i: int, op: str) -> _Val:
    if i not in vals:
        raise MicromixError(f"{r.source}: {op} reads a tensor no operator computed.")
    return vals[i]


def _conv_pads(r: _Reader, o: Any, x: int, kh: int, kw: int) -> tuple:
    if o.Padding() == _VALID:
        return ((0, 0), (0, 0))
    _, h, w, _ = r.shape(x)
    return (
        same_padding(h, kh, o.StrideH(), o.DilationHFactor()),
        same_padding(w, kw, o.StrideW(), o.DilationWFactor()),
    )


def _conv2d(r, steps, op, ins, vals, depthwise: bool = False) -> _Val:
    kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    x = _value(r, vals, ins[0], kind)
    o = r.options(op, "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
    w = r.array(ins[1])  # OHWI, or 1HWO for depthwise
    c_in = r.shape(ins[0])[3]
    weight = w[0].transpose(2, 0, 1)[:, None] if depthwise else w.transpose(0, 3, 1, 2)
    bias = r.array(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
    pads = _conv_pads(r, o, ins[0], weight.shape[2], weight.shape[3])
    dil = (o.DilationHFactor(), o.DilationWFactor())
    m = conv(weight, bias, pads, (o.StrideH(), o.StrideW()), c_in if depthwise else 1, dil)
    y = _Val(steps.add("dwconv" if depthwise else "conv", m, x.name), True)
    return _act(r, steps, o.FusedActivationFunction(), y, kind)


def _depthwise(r, steps, op, ins, vals) -> _Val:
    return _conv2d(r, steps, op, ins, vals, depthwise=True)


def _flat(r: _Reader, steps: Steps, x: _Val, i: int) -> _Val:
    if not x.four_d:
        return x
    s = r.shape(i)
    hwc = (s[1], s[2], s[3]) if len(s) == 4 and s[1] * s[2] > 1 else None
    return _Val(steps.add("flatten", nn.Flatten(1), x.name), False, hwc)


def _fully_connected(r, steps, op, ins, vals) -> _Val:
    x = _flat(r, steps, _value(r, vals, ins[0], "FULLY_CONNECTED"), ins[0])
    o = r.options(op, "FullyConnectedOptions")
    w = r.array(ins[1])
    if x.hwc is not None:  # the file flattens (h, w, c); torch flattens (c, h, w)
        h, wd, c = x.hwc
        w = w.reshape(-1, h, wd, c).transpose(0, 3, 1, 2).reshape(w.shape[0], -1)
    bias = r.array(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
    y = _Val(steps.add("fc", linear(w, bias), x.name), False)
    return _act(r, steps, o.FusedActivationFunction(), y, "FULLY_CONNECTED")


def _pool(r, steps, op, ins, vals, avg: bool = True) -> _Val:
    kind = "AVERAGE_POOL_2D" if avg else "MAX_POOL_2D"
    x = _value(r, vals, ins[0], kind)
    o = r.options(op, "Pool2DOptions")
    k, s = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
    _, h, w, _ = r.shape(ins[0])
    pads = ((0, 0), (0, 0))
    if o.Padding() == _SAME:
        pads = (same_padding(h, k[0], s[0]), same_padding(w, k[1], s[1]))
    if any(a != b for a, b in pads):
        raise MicromixError(f"{r.source}: {kind} with asymmetric 'SAME' padding cannot be mapped.")
    p = (pads[0][0], pads[1][0])
    # TFLite averages over the inputs inside the window only (padding not counted).
    m = nn.AvgPool2d(k, s, p, count_include_pad=False) if avg else nn.MaxPool2d(k, s, p)
    y = _Val(steps.add("avgpool" if avg else "maxpool", m, x.name), True)
    return _act(r, steps, o.FusedActivationFunction(), y, kind)


def _maxpool(r, steps, op, ins, vals) -> _Val:
    return _pool(r, steps, op, ins, vals, avg=False)


def _add(r, steps, op, ins, vals) -> _Val:
    a, b = (_value(r, vals, i, "ADD (of a constant)") for i in ins[:2])
    if r.shape(ins[0]) != r.shape(ins[1]):
        raise MicromixError(f"{r.source}: ADD with broadcasting cannot be mapped.")
    o = r.options(op, "AddOptions")
    y = _Val(steps.add("add", Add(), a.name, b.name), a.four_d, a.hwc)
    return _act(r, steps, o.FusedActivationFunction(), y, "ADD")


def _reshape(r, steps, op, ins, vals) -> _Val:
    x = _value(r, vals, ins[0], "RESHAPE")
    src, dst = r.shape(ins[0]), r.shape(int(op.Outputs(0)))
    if len(dst) == 2 and dst[0] == 1 and int(np.prod(src)) == dst[1]:
        return _flat(r, steps, x, ins[0])
    if src == dst:
        return x
    raise MicromixError(f"{r.source}: RESHAPE from {list(src)} to {list(dst)} cannot be mapped.")


def _softmax(r, steps, op, ins, vals) -> _Val:
    x = _flat(r, steps, _value(r, vals, ins[0], "SOFTMAX"), ins[0])
    if r.options(op, "SoftmaxOptions").Beta() != 1.0:
        raise MicromixError(f"{r.source}: SOFTMAX with beta != 1 cannot be mapped.")
    return _Val(steps.add("softmax", nn.Softmax(dim=1), x.name), False)


_HANDLERS = {
    "CONV_2D": _conv2d,
    "DEPTHWISE_CONV_2D": _depthwise,
    "FULLY_CONNECTED": _fully_connected,
    "AVERAGE_POOL_2D": _pool,
    "MAX_POOL_2D": _maxpool,
    "ADD": _add,
    "RESHAPE": _reshape,
    "SOFTMAX": _softmax,
}
