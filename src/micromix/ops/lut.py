"""lut: an activation function as an integer lookup table (Hardswish, Hardsigmoid, Sigmoid,
SiLU, LeakyReLU, Tanh; `x * sigmoid(x)` written by hand is one SiLU table), with a ReLU / ReLU6
fused.

The table is the specification: entry r (the raw bit pattern of an input code, 2^bits entries)
is clamp(round_half_up(f(s_in * code(r)) / s_out)) over the output's range, computed in float64
once. The integer reference and the C index it; the fake-quant model indexes the very same
table in evaluation (LutAct, this op's QAT hook), so QAT, integer and C agree exactly. Training
runs f in float (its gradient), followed by the output's quantizer as everywhere else.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..ir import Op
from ..numerics.intop import IntOp
from ..numerics.params import QuantParams, TensorQuant, qrange, round_half_up
from .common import (
    dims_of,
    int_op,
    module_name,
    quant_of,
    same_pixel_in_place,
    struct_call,
    typed_arrays,
)
from .registry import CallSite, OpDef, register
from .tracing import Args, Fuser, chw, input_of, read_args


def _np_sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def numpy_fn(fn: str, alpha: float = 0.0) -> Callable[[np.ndarray], np.ndarray]:
    """The float64 function the table samples (PyTorch's definitions)."""
    table = {
        "hardswish": lambda x: x * np.clip(x + 3.0, 0.0, 6.0) / 6.0,
        "hardsigmoid": lambda x: np.clip(x + 3.0, 0.0, 6.0) / 6.0,
        "sigmoid": _np_sigmoid,
        "silu": lambda x: x * _np_sigmoid(x),
        "leaky_relu": lambda x: np.where(x >= 0, x, alpha * x),
        "tanh": np.tanh,
    }
    return table[fn]


def torch_fn(fn: str, alpha: float = 0.0) -> Callable[[torch.Tensor], torch.Tensor]:
    table = {
        "hardswish": F.hardswish,
        "hardsigmoid": F.hardsigmoid,
        "sigmoid": torch.sigmoid,
        "silu": F.silu,
        "leaky_relu": lambda x: F.leaky_relu(x, alpha),
        "tanh": torch.tanh,
    }
    return table[fn]


def codes_of_raw(bits: int, signed: bool) -> np.ndarray:
    """The integer code of every raw bit pattern 0 .. 2^bits - 1 (two's complement if signed)."""
    raw = np.arange(2**bits, dtype=np.int64)
    return raw - ((raw >> (bits - 1)) << bits) if signed else raw


def lut_table(
    fn: str,
    alpha: float,
    s_in: float,
    in_bits: int,
    in_signed: bool,
    s_out: float,
    out_bits: int,
    out_signed: bool,
) -> np.ndarray:
    """Output codes (int64) indexed by the input's raw bit pattern."""
    y = numpy_fn(fn, alpha)(float(s_in) * codes_of_raw(in_bits, in_signed).astype(np.float64))
    lo, hi = qrange(out_bits, out_signed)
    return np.clip(round_half_up(y / float(s_out)), lo, hi).astype(np.int64)


class LutAct(nn.Module):
    """The fake-quant form of a table activation.

    `bind(in_q, out_q)` gives it the quantizers of its input and output tensors (kept outside
    the module tree: they belong to the activation quantizers). Unbound, while calibrating, or
    with gradients on, it applies the float function; otherwise it looks the input's code up in
    `lut_table` and returns the output code times the output scale.
    """

    def __init__(self, fn: str, alpha: float = 0.0) -> None:
        super().__init__()
        self.fn, self.alpha = fn, float(alpha)
        self._tables: dict[tuple, torch.Tensor] = {}

    def bind(self, in_q: nn.Module, out_q: nn.Module) -> None:
        self.__dict__["_quant"] = (in_q, out_q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.__dict__.get("_quant")
        if (
            q is None
            or torch.is_grad_enabled()
            or q[0].observer is not None
            or q[1].observer is not None
        ):
            return torch_fn(self.fn, self.alpha)(x)
        in_q, out_q = q
        s_in, s_out = in_q.scale(), out_q.scale()
        key = (
            float(s_in),
            float(s_out),
            in_q.bits,
            in_q.signed,
            out_q.bits,
            out_q.signed,
            x.device,
        )
        table = self._tables.get(key)
        if table is None:
            codes = lut_table(
                self.fn,
                self.alpha,
                key[0],
                in_q.bits,
                in_q.signed,
                key[1],
                out_q.bits,
                out_q.signed,
            )
            table = torch.tensor(codes, dtype=x.dtype, device=x.device)
            self._tables = {key: table}  # scales change while training: keep the latest only
        raw = torch.floor(x / s_in + 0.5).long() & (2**in_q.bits - 1)
        return table[raw] * s_out

    def extra_repr(self) -> str:
        return self.fn + (f", negative_slope={self.alpha}" if self.fn == "leaky_relu" else "")


# ---- trace ---------------------------------------------------------------------------------

LUT_FNS = ("hardswish", "hardsigmoid", "sigmoid", "silu", "leaky_relu", "tanh")
_NONNEG_FNS = ("hardsigmoid", "sigmoid")  # never negative, whatever the input's sign

_MODULES: dict[type, str] = {
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.Sigmoid: "sigmoid",
    nn.SiLU: "silu",
    nn.LeakyReLU: "leaky_relu",
    nn.Tanh: "tanh",
}
_FUNCS: dict[Callable, str] = {
    F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    F.silu: "silu",
    F.leaky_relu: "leaky_relu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
}
_METHODS = {"sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh", "tanh_": "tanh"}

LUT_ARGS = {
    "leaky_relu": Args(
        "LeakyReLU", ("negative_slope", "inplace"), dict(negative_slope=0.01, inplace=False)
    ),
    "sigmoid": Args("Sigmoid", ()),
    "tanh": Args("Tanh", ()),
}


def lut_fn(fz: Fuser, node: torch.fx.Node) -> str:
    if node.op == "call_module":
        return _MODULES[type(fz.modules[node.target])]
    if node.op == "call_method":
        return _METHODS[node.target]
    return _FUNCS[node.target]


def trace(fz: Fuser, node: torch.fx.Node) -> None:
    fn = lut_fn(fz, node)
    x = input_of(fz, node)
    spec = LUT_ARGS.get(fn, Args(fn, ("inplace",), {"inplace": False}))
    a = read_args(fz, node, spec)
    alpha = float(a.get("negative_slope", 0.0))
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    c, h, w = chw(last)
    fz.signed[fz.name_for(node)] = act is None and fn not in _NONNEG_FNS and fz.signed[x]
    fz.emit(
        node, nodes, last, kind="lut", inputs=(x,), in_shape=fz.shapes[x], macs=c * h * w,
        act=act, fn=fn, alpha=alpha,
    )  # fmt: skip


def fuse_swish(fz: Fuser, node: torch.fx.Node) -> bool:
    """x * sigmoid(x) written by hand is one silu table: the sigmoid table already emitted for
    it (read by nothing else) is taken back, and the multiply becomes the table."""
    for x_node, s_node in (node.args, node.args[::-1]):
        name = fz.value[s_node.name]
        op = next((o for o in fz.ops if o["name"] == name), None)
        if (
            op is None
            or op.get("fn") != "sigmoid"  # only a table op has a function
            or op["act"] is not None
            or op["inputs"] != (fz.value[x_node.name],)
            or len(s_node.users) != 1
        ):
            continue
        fz.ops.remove(op)
        fz.done.discard(s_node.name)
        nodes = [s_node, node]
        last, act = fz.absorb_act(node, nodes)
        c, h, w = chw(last)
        x = op["inputs"][0]
        fz.signed[fz.name_for(node)] = act is None and fz.signed[x]
        fz.emit(
            node, nodes, last, kind="lut", inputs=(x,), in_shape=fz.shapes[x],
            macs=c * h * w, act=act, fn="silu",
        )  # fmt: skip
        return True
    return False


# ---- QAT: the fx nodes of the table become a LutAct ----------------------------------------


def _is_mul(node: torch.fx.Node) -> bool:
    return node.target in (operator.mul, torch.mul, "mul", "__mul__")


def qat(gm: torch.fx.GraphModule, op: Op, nodes: dict) -> LutAct:
    """Turn the op's fx node into a call of a LutAct module (in place, same name)."""
    if not hasattr(gm, "mm_lut"):
        gm.add_module("mm_lut", nn.Module())
    node = nodes[op.fx_nodes[0]]
    x = node.args[0] if node.args else node.kwargs["input"]
    table_node = node
    if len(op.fx_nodes) > 1 and _is_mul(nodes[op.fx_nodes[1]]):
        table_node = nodes[op.fx_nodes[1]]  # x * sigmoid(x) traced as one silu table
    mod = module_name(op.name)
    lut = LutAct(op.fn, op.alpha)
    gm.get_submodule("mm_lut").add_module(mod, lut)
    table_node.op, table_node.target = "call_module", f"mm_lut.{mod}"
    table_node.args, table_node.kwargs = (x,), {}
    if table_node is not node:
        gm.graph.erase_node(node)  # the sigmoid, now read by nothing
    return lut


# ---- memory, integer, C --------------------------------------------------------------------


def params(op: Op, in_bits: int | None = None) -> list[tuple[str, str, int]]:
    """A table of one byte per input code: 2^in_bits entries (None: the 8-bit upper bound)."""
    return [("table", "uint8", 2 ** (8 if in_bits is None else in_bits))]


def convert(op: Op, qp: QuantParams) -> IntOp:
    out, ins = qp.tensors[op.output], [qp.tensors[t] for t in op.inputs]
    t = lut_table(
        op.fn, op.alpha, ins[0].scale, ins[0].bits, ins[0].signed, out.scale, out.bits, out.signed
    )
    arrays = typed_arrays(op, ins[0].bits, table=t & 0xFF)
    return int_op(op, out, ins, arrays, kernel=op.kernel, stride=op.stride, padding=op.padding)


def run(iop: IntOp, x: np.ndarray) -> np.ndarray:
    table = iop.arrays["table"]
    if iop.out_signed:
        table = table.view(np.int8)
    return table.astype(np.int64)[x & (2 ** iop.in_bits[0] - 1)]


def real(op: Op, ins: list[TensorQuant], xs: list[np.ndarray]) -> np.ndarray:
    return numpy_fn(op.fn, op.alpha)(xs[0] * ins[0].scale)


def emit(site: CallSite) -> str:
    iop = site.iop
    before = [site.inputs[0], site.output, site.arrays["table"]]
    return struct_call("mm_lut", before, dims_of(site), quant_of(iop, {}))


register(
    OpDef(
        kind="lut",
        describe="Hardswish, Hardsigmoid, Sigmoid, SiLU, LeakyReLU, Tanh",
        trace=trace,
        params=params,
        kernel=lambda op, w_bits, in_bits: "mm_lut",
        convert=convert,
        run=run,
        real=real,
        emit=emit,
        in_place=same_pixel_in_place,
        qat=qat,
        modules=tuple(_MODULES),
        functions=tuple(_FUNCS),
        methods=tuple(_METHODS),
    )
)
