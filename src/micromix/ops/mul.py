"""mul: a C x H x W map times a C x 1 x 1 gate (squeeze-excitation) or times a map of its own
shape, with a ReLU / ReLU6 fused. `x * sigmoid(x)` written by hand is traced as one silu table
(ops.lut).

Integer semantics: q_x * q_g times s_x * s_g / s_out (the gate is per channel or per element)."""

from __future__ import annotations

import operator

import numpy as np
import torch
import torch.fx

from ..ir import Op
from ..numerics.intop import IntOp
from ..numerics.params import QuantParams, TensorQuant
from .common import (
    dims_of,
    finish,
    quant_of,
    requant_op,
    requant_params,
    same_pixel_in_place,
    struct_call,
)
from .lut import fuse_swish
from .registry import CallSite, OpDef, register
from .tracing import Args, Fuser, chw, is_tensor, refuse

MUL = Args("multiply", ("other",))


def _takes(fz: Fuser, node: torch.fx.Node) -> bool:
    return is_tensor(node)  # a product of sizes is left to the tracer's rule for numbers


def trace(fz: Fuser, node: torch.fx.Node) -> None:
    if len(node.args) != 2 or node.kwargs:
        raise refuse(fz, node, MUL, "arguments", node.args, "it multiplies exactly two tensors")
    a, b = (fz.src(node, t) for t in node.args)
    if fuse_swish(fz, node):
        return
    sa, sb = fz.shapes[a], fz.shapes[b]
    if sa[1:] == (1, 1) and sb[1:] != (1, 1):
        a, b, sa, sb = b, a, sb, sa  # the feature map first, the gate second
    if sa[0] != sb[0] or sb[1:] not in ((1, 1), sa[1:]):
        raise refuse(
            fz, node, MUL, "shapes", (sa, sb),
            "only a C x H x W map times a C x 1 x 1 gate or a map of its own shape is supported",
        )  # fmt: skip
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    c, h, w = chw(last)
    fz.signed[fz.name_for(node)] = act is None and (fz.signed[a] or fz.signed[b])
    fz.emit(node, nodes, last, kind="mul", inputs=(a, b), in_shape=sa, macs=c * h * w, act=act)


def convert(op: Op, qp: QuantParams) -> IntOp:
    x, g, out = (qp.tensors[t] for t in (*op.inputs, op.output))
    return requant_op(op, qp, [x.scale * g.scale / out.scale])


def run(iop: IntOp, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return finish(iop, x * g)  # |q| <= 255: the product is far inside int32


def real(op: Op, ins: list[TensorQuant], xs: list[np.ndarray]) -> np.ndarray:
    return (xs[0] * ins[0].scale) * (xs[1] * ins[1].scale)


def emit(site: CallSite) -> str:
    iop = site.iop
    q = quant_of(iop, site.arrays, second=True)
    per_pixel = int(iop.op.in_shapes[1][1:] != (1, 1))
    before = [*site.inputs, site.output]
    return struct_call("mm_mul", before, dims_of(site), q, (per_pixel,))


register(
    OpDef(
        kind="mul",
        describe="a channel-wise multiply by an N x C x 1 x 1 gate",
        trace=trace,
        params=lambda op, in_bits=None: requant_params(op),
        kernel=lambda op, w_bits, in_bits: "mm_mul",
        convert=convert,
        run=run,
        real=real,
        emit=emit,
        in_place=same_pixel_in_place,
        functions=(operator.mul, torch.mul, operator.imul),
        methods=("mul", "mul_", "__mul__"),
        accepts=_takes,
    )
)
