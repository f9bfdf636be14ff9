"""add: the elementwise sum of two tensors of one shape (a residual connection), with a ReLU /
ReLU6 fused.

Integer semantics: out = clamp((q_a * m_a + q_b * m_b + 2^(n-1)) >> n), one int32 multiplier
per input and one shift n shared by both (`quantize_multiplier_pair`)."""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.fx

from ..ir import Op
from ..numerics.arith import quantize_multiplier_pair, requantize
from ..numerics.intop import IntOp
from ..numerics.params import QuantParams, TensorQuant
from .common import dims_of, int_op, quant_of, same_pixel_in_place, struct_call, typed_arrays
from .registry import CallSite, OpDef, register
from .tracing import Fuser


def trace(fz: Fuser, node: torch.fx.Node) -> None:
    args = [a for a in node.args if isinstance(a, torch.fx.Node)]
    if len(args) != 2 or len(node.args) != 2 or node.kwargs:
        raise fz.unsupported(node, "add of anything but two tensors")
    a, b = (fz.src(node, x) for x in args)
    if fz.shapes[a] != fz.shapes[b]:
        raise fz.unsupported(node, f"add of tensors with shapes {fz.shapes[a]} and {fz.shapes[b]}")
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    fz.signed[fz.name_for(node)] = act is None and (fz.signed[a] or fz.signed[b])
    c, h, w = fz.shapes[a]
    fz.emit(
        node, nodes, last, kind="add", inputs=(a, b), in_shape=fz.shapes[a], macs=c * h * w,
        act=act,
    )  # fmt: skip


def params(op: Op, in_bits: int | None = None) -> list[tuple[str, str, int]]:
    return [("mult", "int32", 2), ("shift", "int8", 1)]


def convert(op: Op, qp: QuantParams) -> IntOp:
    out, ins = qp.tensors[op.output], [qp.tensors[t] for t in op.inputs]
    ma, mb, n = quantize_multiplier_pair(ins[0].scale / out.scale, ins[1].scale / out.scale)
    return int_op(op, out, ins, typed_arrays(op, ins[0].bits, mult=[ma, mb], shift=[n]))


def run(iop: IntOp, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m = iop.arrays["mult"].astype(np.int64)
    s = int(iop.arrays["shift"][0])
    acc = a * m[0] + b * m[1]  # |q| <= 255, |m| < 2^31: far inside int64
    y = requantize(acc, 1, s, where=f"add {iop.name}")
    return np.clip(y, iop.qmin, iop.qmax)


def real(op: Op, ins: list[TensorQuant], xs: list[np.ndarray]) -> np.ndarray:
    return xs[0] * ins[0].scale + xs[1] * ins[1].scale


# mm_add's loops that an export compiles only where one of its adds takes them (mm_kernels.h
# MM_ADD_PATH: whole bytes, n <= 32, a [0, 255] clamp, by the inputs' signs; other whole bytes;
# packed values).
C_PATHS = ("ADD8_UU", "ADD8_US", "ADD8_SU", "ADD8_SS", "ADD8_ANY", "ADD_ANY")


def c_rules(site: CallSite) -> tuple[str, ...]:
    """The path this call takes: MM_ADD_PATH on the numbers the call passes."""
    iop = site.iop
    (ab, bb), (sa, sb) = iop.in_bits, (int(s) for s in iop.in_signed)
    n = int(iop.arrays["shift"][0])
    return (f"MM_ADD_PATH({ab}, {sa}, {bb}, {sb}, {iop.out_bits}, {n}, {iop.qmin}, {iop.qmax})",)


def emit(site: CallSite) -> str:
    iop = site.iop
    q = quant_of(iop, site.arrays, second=True)
    return struct_call("mm_add", [*site.inputs, site.output], dims_of(site), q)


register(
    OpDef(
        kind="add",
        describe="residual add",
        trace=trace,
        params=params,
        kernel=lambda op, w_bits, in_bits: "mm_add",
        convert=convert,
        run=run,
        real=real,
        emit=emit,
        in_place=same_pixel_in_place,
        functions=(operator.add, torch.add, operator.iadd),
        methods=("add", "add_", "__add__"),
        c_paths=C_PATHS,
        c_rules=c_rules,
    )
)
