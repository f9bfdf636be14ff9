"""maxpool: max pooling (MaxPool2d, adaptive with an output that divides the input, padding,
ceil_mode), with a ReLU / ReLU6 fused.

Integer semantics: the max of the input codes over the window's taps inside the input (padding
never wins; the code map is monotone, so this is the max of the real values), requantized by
s_in / s_out. A pool that keeps its input's quantizer has multiplier exactly 1 (2^30 >> 30).
"""

from __future__ import annotations

import numpy as np
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..numerics.intop import IntOp
from .common import (
    finish,
    padded_windows,
    requant_params,
    rescale_op,
    same_real,
    unary_call,
)
from .registry import OpDef, register
from .tracing import Args, Fuser, chw, input_of, pair, pool_size, read_args, refuse

_LOW = -(2**40)  # below every code: padding never wins a max

MAXPOOL = Args(
    "max pooling",
    ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    dict(stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False),
)
ADAPTIVE_MAX = Args(
    "adaptive max pooling", ("output_size", "return_indices"), {"return_indices": False}
)


def adaptive_window(fz: Fuser, node, spec: Args, x: str, out: tuple[int, int, int]):
    """(kernel, stride) of an adaptive pool whose output size divides its input's."""
    _, h, w = fz.shapes[x]
    _, oh, ow = out
    if h % oh or w % ow:
        raise refuse(
            fz, node, spec, "output_size", (oh, ow), f"the input {h}x{w} is not a multiple of it"
        )
    return (h // oh, w // ow), (h // oh, w // ow)


def window_args(fz: Fuser, node, spec: Args, a: dict) -> tuple[tuple, tuple, tuple]:
    """(kernel, stride, padding) of a pooling call, checked."""
    kernel = pair(a["kernel_size"])
    stride = kernel if a["stride"] in (None, ()) else pair(a["stride"])
    padding = pair(a["padding"])
    for name, v in (("kernel_size", kernel), ("stride", stride)):
        if min(v) < 1:
            raise refuse(fz, node, spec, name, v, "it must be positive")
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise refuse(fz, node, spec, "padding", padding, "padding is at most half the kernel")
    return kernel, stride, padding


def check_size(node, out, h, w, kernel, stride, padding, ceil: bool) -> None:
    want = tuple(pool_size(n, k, s, p, ceil) for n, k, s, p in zip((h, w), kernel, stride, padding))
    if out[1:] != want:  # torch and our size rule must agree, or the arena plan is wrong
        raise ValueError(f"pooling {node.name}: torch gives {out[1:]}, the size rule {want}")


def _adaptive(fz: Fuser, node: torch.fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(fz.modules[node.target], nn.AdaptiveMaxPool2d)
    return node.target is F.adaptive_max_pool2d


def trace(fz: Fuser, node: torch.fx.Node) -> None:
    x = input_of(fz, node)
    c, h, w = fz.shapes[x]
    adaptive = _adaptive(fz, node)
    spec = ADAPTIVE_MAX if adaptive else MAXPOOL
    if node.target is F.max_pool2d_with_indices:
        raise refuse(fz, node, spec, "return_indices", True, "the indices are not computed")
    a = read_args(fz, node, spec)
    if a["return_indices"]:
        raise refuse(fz, node, spec, "return_indices", True, "the indices are not computed")
    ceil = False
    if adaptive:
        kernel, stride = adaptive_window(fz, node, spec, x, chw(node))
        padding = (0, 0)
    else:
        if pair(a["dilation"]) != (1, 1):
            raise refuse(fz, node, spec, "dilation", a["dilation"], "only dilation 1 is supported")
        kernel, stride, padding = window_args(fz, node, spec, a)
        ceil = bool(a["ceil_mode"])
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    out = chw(last)
    check_size(node, out, h, w, kernel, stride, padding, ceil)
    fz.signed[fz.name_for(node)] = act is None and fz.signed[x]
    fz.emit(
        node, nodes, last, kind="maxpool", inputs=(x,), in_shape=(c, h, w),
        macs=c * out[1] * out[2] * kernel[0] * kernel[1], act=act, kernel=kernel,
        stride=stride, padding=padding, ceil_mode=ceil,
    )  # fmt: skip


def run(iop: IntOp, x: np.ndarray) -> np.ndarray:
    return finish(iop, padded_windows(x, iop, _LOW).max(axis=(4, 5)))


register(
    OpDef(
        kind="maxpool",
        describe="max pooling",
        trace=trace,
        params=lambda op, in_bits=None: requant_params(op),
        kernel=lambda op, w_bits, in_bits: "mm_maxpool",
        convert=rescale_op,
        run=run,
        real=same_real,
        emit=unary_call("mm_maxpool"),
        keeps_grid=True,
        patch_fill=lambda op: _LOW,  # padding never wins
        modules=(nn.MaxPool2d, nn.AdaptiveMaxPool2d),
        functions=(F.max_pool2d, F.max_pool2d_with_indices, F.adaptive_max_pool2d),
    )
)
