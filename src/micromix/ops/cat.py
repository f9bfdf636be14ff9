"""cat: torch.cat of tensors along the channels, with a ReLU / ReLU6 fused.

Integer semantics: each input requantized by s_i / s_out, written at its channel offset."""

from __future__ import annotations

import numpy as np
import torch
import torch.fx

from ..ir import Op
from ..numerics.intop import IntOp
from ..numerics.params import QuantParams, TensorQuant
from .common import dims_of, finish, quant_of, requant_op, requant_params, struct_call
from .registry import CallSite, OpDef, register
from .tracing import Args, Fuser, chw, read_args, refuse

CAT = Args("torch.cat", ("tensors", "dim", "axis"), {"dim": 0, "axis": None}, first=0)


def trace(fz: Fuser, node: torch.fx.Node) -> None:
    a = read_args(fz, node, CAT)
    if a["axis"] is not None:  # numpy's spelling, which torch.cat accepts too
        a["dim"] = a["axis"]
    rank = len(node.meta["tensor_meta"].shape)
    if not isinstance(a["dim"], int) or a["dim"] % rank != 1:
        raise refuse(fz, node, CAT, "dim", a["dim"], "only dim=1, the channels, is supported")
    if not isinstance(a["tensors"], (list, tuple)):
        raise refuse(fz, node, CAT, "tensors", a["tensors"], "it must be a list of tensors")
    xs = tuple(fz.src(node, t) for t in a["tensors"])
    if len(xs) == 1:
        fz.value[node.name] = xs[0]
        return
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    out = chw(last)
    fz.signed[fz.name_for(node)] = act is None and any(fz.signed[t] for t in xs)
    fz.emit(
        node, nodes, last, kind="cat", inputs=xs, in_shape=fz.shapes[xs[0]],
        macs=out[0] * out[1] * out[2], act=act,
    )  # fmt: skip


def convert(op: Op, qp: QuantParams) -> IntOp:
    s_out = qp.tensors[op.output].scale
    return requant_op(op, qp, [qp.tensors[t].scale / s_out for t in op.inputs])


def run(iop: IntOp, *xs: np.ndarray) -> np.ndarray:
    return np.concatenate([finish(iop, x, i) for i, x in enumerate(xs)], axis=3)


def real(op: Op, ins: list[TensorQuant], xs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([x * t.scale for x, t in zip(xs, ins)], axis=3)


def emit(site: CallSite) -> str:
    """One mm_concat per input, each writing its channels at their offset."""
    iop, calls, off = site.iop, [], 0
    for i, x in enumerate(site.inputs):
        ci = iop.op.in_shapes[i][0]
        q = quant_of(iop, site.arrays, i)
        calls.append(struct_call("mm_concat", [x, site.output], dims_of(site, ci), q, (off,)))
        off += ci
    return "\n    ".join(calls)


register(
    OpDef(
        kind="cat",
        describe="torch.cat on channels",
        trace=trace,
        params=lambda op, in_bits=None: requant_params(op, len(op.inputs)),
        kernel=lambda op, w_bits, in_bits: "mm_concat",
        convert=convert,
        run=run,
        real=real,
        emit=emit,
        functions=(torch.cat, torch.concat, torch.concatenate),
    )
)
