"""avgpool: average pooling (AvgPool2d with padding and count_include_pad, adaptive with an
output that divides the input, `x.mean((2, 3))`), with a ReLU / ReLU6 fused.

Integer semantics: the sum over the window (padded taps are zeros) times s_in / (d * s_out),
with d the window size, or, without count_include_pad, the number of taps inside the input
(one multiplier per possible d). Windows that tile the input run in mm_avgpool, the others in
mm_avgpool_pad.
"""

from __future__ import annotations

import numpy as np
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..ir import Op
from ..numerics.intop import IntOp
from ..numerics.params import QuantParams
from .common import (
    dims_of,
    finish,
    padded_windows,
    quant_of,
    requant_op,
    requant_params,
    same_real,
    struct_call,
)
from .maxpool import adaptive_window, check_size, window_args
from .registry import CallSite, OpDef, register
from .tracing import Args, Fuser, chw, input_of, pool_size, read_args, refuse

AVGPOOL = Args(
    "average pooling",
    ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    dict(stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None),
)
ADAPTIVE_AVG = Args("adaptive average pooling", ("output_size",))


def _is_global_mean(fz: Fuser, node: torch.fx.Node) -> bool:
    if node.op != "call_method":
        return True
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return tuple(sorted(dims)) in ((2, 3), (-2, -1)) if isinstance(dims, (tuple, list)) else False


def _adaptive(fz: Fuser, node: torch.fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(fz.modules[node.target], nn.AdaptiveAvgPool2d)
    return node.target is F.adaptive_avg_pool2d


def _windowed(fz: Fuser, node, x: str, h: int, w: int):
    a = read_args(fz, node, AVGPOOL)
    if a["divisor_override"] is not None:
        raise refuse(fz, node, AVGPOOL, "divisor_override", a["divisor_override"], "not supported")
    kernel, stride, padding = window_args(fz, node, AVGPOOL, a)
    sizes = zip((h, w), kernel, stride, padding)
    if a["ceil_mode"] and any(
        pool_size(*t, True) != pool_size(*t, False) for t in sizes
    ):  # windows clipped at the edge would need their own divisors
        raise refuse(
            fz, node, AVGPOOL, "ceil_mode", True, "it adds windows that end past the padding"
        )
    include_pad = bool(a["count_include_pad"]) or padding == (0, 0)
    return kernel, stride, padding, include_pad


def trace(fz: Fuser, node: torch.fx.Node) -> None:
    x = input_of(fz, node)
    c, h, w = fz.shapes[x]
    padding, include_pad = (0, 0), True
    if node.op == "call_method":  # x.mean((2, 3)): global
        kernel = stride = (h, w)
    elif _adaptive(fz, node):
        read_args(fz, node, ADAPTIVE_AVG)
        kernel, stride = adaptive_window(fz, node, ADAPTIVE_AVG, x, chw(node))
    else:
        kernel, stride, padding, include_pad = _windowed(fz, node, x, h, w)
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    check_size(node, chw(last), h, w, kernel, stride, padding, False)
    fz.signed[fz.name_for(node)] = act is None and fz.signed[x]
    fz.emit(
        node, nodes, last, kind="avgpool", inputs=(x,), in_shape=(c, h, w), macs=c * h * w,
        act=act, kernel=kernel, stride=stride, padding=padding, count_include_pad=include_pad,
    )  # fmt: skip


def _divisors(op: Op) -> list[int]:
    k = op.kernel[0] * op.kernel[1]
    return [k] if op.count_include_pad else list(range(1, k + 1))


def patch_fill(op: Op) -> int | None:
    """Zeros, unless the divisor counts only the taps inside the input (then a patch's border
    is not a value it could be filled with)."""
    clipped = not op.count_include_pad and (any(op.padding) or op.ceil_mode)
    return None if clipped else 0


def params(op: Op, in_bits: int | None = None) -> list[tuple[str, str, int]]:
    return requant_params(op, len(_divisors(op)))


def kernel_of(op: Op, w_bits: int | None, in_bits: int | None) -> str:
    tiles = tuple(op.padding) == (0, 0) and tuple(op.stride) == tuple(op.kernel)
    return "mm_avgpool" if tiles else "mm_avgpool_pad"


def convert(op: Op, qp: QuantParams) -> IntOp:
    s_in, s_out = qp.tensors[op.inputs[0]].scale, qp.tensors[op.output].scale
    return requant_op(op, qp, [s_in / (d * s_out) for d in _divisors(op)])


def run(iop: IntOp, x: np.ndarray) -> np.ndarray:
    s = padded_windows(x, iop, 0).sum(axis=(4, 5))
    if iop.op.count_include_pad:
        return finish(iop, s)
    ones = np.ones((1, *x.shape[1:3], 1), dtype=np.int64)
    count = padded_windows(ones, iop, 0).sum(axis=(4, 5))  # taps inside the input
    return finish(iop, s, np.broadcast_to(count - 1, s.shape))


# mm_avgpool's paths, compiled only where a layer takes one (mm_kernels.h MM_AVG_PATH);
# mm_avgpool_pad has none.
C_PATHS = ("AVG8", "AVG_ANY")


def c_rules(site: CallSite) -> tuple[str, ...]:
    """The path this call takes: MM_AVG_PATH on the numbers the call passes."""
    iop = site.iop
    if site.kernel != "mm_avgpool":
        return ()
    return (f"MM_AVG_PATH({iop.in_bits[0]}, {iop.out_bits}, {iop.op.in_shape[0]})",)


def emit(site: CallSite) -> str:
    iop = site.iop
    args = ([site.inputs[0], site.output], dims_of(site), quant_of(iop, site.arrays))
    if site.kernel == "mm_avgpool":
        return struct_call("mm_avgpool", *args)
    return struct_call("mm_avgpool_pad", *args, (int(not iop.op.count_include_pad),))


register(
    OpDef(
        kind="avgpool",
        describe="average pooling (and x.mean((2, 3)))",
        trace=trace,
        params=params,
        kernel=kernel_of,
        convert=convert,
        run=run,
        real=same_real,
        emit=emit,
        modules=(nn.AdaptiveAvgPool2d, nn.AvgPool2d),
        functions=(F.adaptive_avg_pool2d, F.avg_pool2d),
        methods=("mean",),
        accepts=_is_global_mean,
        patch_fill=patch_fill,
        c_paths=C_PATHS,
        c_rules=c_rules,
    )
)
