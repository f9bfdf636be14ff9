"""conv: a Conv2d (any groups) with its BatchNorm and ReLU / ReLU6 fused, and the machinery the
linear op shares with it (a linear on a C x H x W input runs as an H x W convolution).

Integer semantics, channel c: acc = sum(w_int * q_in) * 2^k + B_c with B_c = round_half_up(
bias_c / (w_scale_c * s_in) * 2^k); out = clamp(round_half_up(M_c * 2^-k * acc)) with
M_c = w_scale_c * s_in / s_out as an int32 mantissa and a shift (M_c < 0 is fine: BN can flip
a channel's sign). k (per layer, `IntOp.bias_shift`) is the largest for which acc provably fits
int32; k = 0 is the classic bias in accumulator units, whose rounding costs up to M_c / 2
output steps, a lot where BN makes M_c large. A channel whose output is one code for every input
is stored as that constant (zero weights, multiplier 1, bias = the code).

The C kernel is chosen here once per layer (`kernel_of`); the export calls it directly and the
C checks the choice only in debug builds. Its weight bytes are laid out at export time in the
order that kernel reads them (`weight_layout`).
"""

from __future__ import annotations

import functools

import numpy as np
import torch.fx
import torch.nn as nn
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import MicromixError, OverflowError32
from ..ir import Op, WeightInfo
from ..numerics.arith import (
    INT32_MAX,
    MAX_SHIFT,
    accumulator_bound,
    check_int32,
    pack_bits,
    packed_bytes,
    quantize_multiplier,
    requantize,
)
from ..numerics.intop import IntOp
from ..numerics.params import QuantParams, round_half_up
from .common import (
    int_op,
    kernel_constant,
    quant_of,
    shifts_above32,
    struct_call,
    tiled,
    typed_arrays,
    window_overlap,
)
from .registry import CallSite, OpDef, register
from .tracing import Args, Fuser, chw, pair, read_args, refuse

MAX_BIAS_SHIFT = 24  # fractional bits of a conv bias (2^-24 accumulator steps is plenty)
DIM_MAX = 2**15 - 1  # the kernels' mm_conv_dims holds int16 sizes

# The C functions that run a conv or linear layer (kernel_of picks one per layer).
CONV_KERNELS = (
    "mm_pointwise8",
    "mm_pointwise8_widen",
    "mm_pointwise_sub",
    "mm_conv_small",
    "mm_depthwise",
    "mm_conv",
    "mm_dense_pt",
)

# ---- trace ---------------------------------------------------------------------------------

CONV = Args("Conv2d", ("padding_mode", "padding", "dilation"))


def check_conv(fz: Fuser, node: torch.fx.Node) -> None:
    a = read_args(fz, node, CONV)
    if a["padding_mode"] != "zeros":
        raise refuse(fz, node, CONV, "padding_mode", a["padding_mode"], "only zero padding")
    if isinstance(a["padding"], str):
        raise refuse(fz, node, CONV, "padding", a["padding"], "give the padding as numbers")
    if pair(a["dilation"]) != (1, 1):
        raise refuse(fz, node, CONV, "dilation", a["dilation"], "only dilation 1 is supported")


def emit_weighted(fz: Fuser, node: torch.fx.Node, kind: str, nodes, last, **attrs) -> None:
    """Emit the conv or linear op of `node` whose fused nodes end at `last` (BN, if any, is
    absorbed already); takes the ReLU that follows."""
    m = fz.modules[node.target]
    x = fz.src(node, node.args[0])
    last, act = fz.absorb_act(last, nodes)
    out = chw(last)
    w = tuple(m.weight.shape)
    macs = w[0] * w[1] if len(w) == 2 else out[0] * out[1] * out[2] * w[1] * w[2] * w[3]
    fz.signed[fz.name_for(node)] = act is None
    fz.emit(
        node, nodes, last, kind=kind, inputs=(x,), in_shape=fz.shapes[x], macs=macs,
        weight=WeightInfo(str(node.target), w), act=act, **attrs,
    )  # fmt: skip


def trace(fz: Fuser, node: torch.fx.Node) -> None:
    m = fz.modules[node.target]
    check_conv(fz, node)
    nodes = [node]
    last, bn = fz.absorb_bn(node, nodes)
    emit_weighted(
        fz, node, "conv", nodes, last, bn=bn, kernel=tuple(m.kernel_size),
        stride=tuple(m.stride), padding=tuple(m.padding), groups=m.groups,
    )  # fmt: skip


# ---- memory: constants, kernel choice, scratch ---------------------------------------------


def params(op: Op, in_bits: int | None = None) -> list[tuple[str, str, int]]:
    """Per output channel an int32 bias (absorbs BN's shift), an int32 multiplier mantissa and
    an int8 shift (ICN-equivalent requantization); a per-tensor layer (`Op.per_tensor`) one
    multiplier and one shift for all its channels."""
    c = op.out_shape[0]
    r = 1 if op.per_tensor else c
    return [("bias", "int32", c), ("mult", "int32", r), ("shift", "int8", r)]


def conv_dims(op: Op) -> tuple[int, ...]:
    """mm_conv_dims of a conv or linear op as executed (a linear on a C x H x W input is an
    H x W convolution): in C, H, W, out C, H, W, kernel, stride, padding, groups."""
    kernel, _ = window(op)
    return (*op.in_shape, *op.out_shape, *kernel, *op.stride, *op.padding, op.groups)


def kernel_dims(op: Op) -> tuple[int, ...]:
    """`conv_dims(op)`, refused when the C kernels cannot hold them (int16 sizes)."""
    dims = conv_dims(op)
    if max(dims) > DIM_MAX:
        raise MicromixError(
            f"layer {op.name} has a dimension above {DIM_MAX}, more than the C kernels take."
        )
    return dims


def window(op: Op) -> tuple[tuple[int, int], tuple[int, int]]:
    """(kernel, padding) as the kernels run the op: a linear on C x H x W is an H x W conv."""
    if op.weight is not None and len(op.weight.shape) == 2:
        return (op.in_shape[1], op.in_shape[2]), (0, 0)
    return tuple(op.kernel), tuple(op.padding)


def is_pointwise_sub(op: Op, w_bits: int | None) -> bool:
    """mm_pointwise_sub's layers: a 1x1 conv, or a linear on a 1 x 1 input, with 4- or 2-bit
    weights on at least 32 / w_bits and at most MM_PATCH input channels, no padding, no groups
    (its scratch is one int16 per input channel). kernel_of also gives it such layers on 8-bit
    inputs from 4 channels (its sub8 path, no scratch: they keep their family's)."""
    if op.weight is None or w_bits is None or w_bits >= 8 or not _pointwise_shape(op):
        return False
    c = op.in_shape[0]
    return c * w_bits >= 32


def _pointwise_shape(op: Op) -> bool:
    """A 1x1 layer without padding or groups on at most MM_PATCH input channels."""
    kernel, padding = window(op)
    return (
        op.groups == 1
        and kernel == (1, 1)
        and padding == (0, 0)
        and op.in_shape[0] <= kernel_constant("MM_PATCH")
    )


def _pointwise8(op: Op, w_bits: int, in_bits: int) -> str | None:
    """mm_pointwise8 (8-bit inputs whose patch is one contiguous run of input bytes: 1x1 without
    padding, or a window covering the whole input) or mm_pointwise8_widen (1x1, 2/4-bit inputs
    of 4 to MM_PATCH channels widened to bytes per pixel: from 4 channels it beats the lane
    kernel on Cortex-M4, 8 -> 16 channels at 4 bits 578 k against 1,145 k estimated cycles,
    4 -> 8 333 k against 484 k; on 2 and 3 channels it loses, 509 k against 439 k, measured);
    None for other layers."""
    kernel, padding = window(op)
    if op.groups != 1 or w_bits != 8 or padding != (0, 0):
        return None
    c, h, w = op.in_shape
    if in_bits != 8:
        ok = kernel == (1, 1) and 4 <= c <= kernel_constant("MM_PATCH")
        return "mm_pointwise8_widen" if ok else None
    if kernel == (1, 1) or (kernel == (h, w) and tuple(op.out_shape[1:]) == (1, 1)):
        return "mm_pointwise8"
    return None


def _family(op: Op, w_bits: int) -> str:
    """The scratch layout a conv or linear layer is sized for: "small" (rows short enough for
    output channels in lanes), "depthwise" or "conv". The pointwise kernels run inside the
    scratch of their family (so the figures do not depend on the activation bits)."""
    if op.weight is None:
        raise ValueError(f"op {op.name} needs a weight and its bits")
    row = op.weight.row_elems
    small = (
        op.groups == 1
        and row <= kernel_constant("MM_SMALL_ROW")
        and row * w_bits <= kernel_constant("MM_SMALL_ROW_BITS")
        and op.out_shape[0] % kernel_constant("MM_LANES") == 0
    )
    if small:
        return "small"
    if op.is_depthwise and op.in_shape[0] == op.out_shape[0]:
        return "depthwise"
    return "conv"


def kernel_of(op: Op, w_bits: int | None, in_bits: int | None) -> str:
    """The C function that runs `op` with `w_bits` weights on `in_bits` inputs (CONV_KERNELS)."""
    if w_bits is None or in_bits is None:
        raise ValueError(f"op {op.name} needs its weight and input bits")
    if op.per_tensor:  # one multiplier and shift: the one kernel that reads them so
        return "mm_dense_pt"
    family = _family(op, w_bits)
    if family == "depthwise":
        return "mm_depthwise"
    pointwise = _pointwise8(op, w_bits, in_bits)
    if pointwise == "mm_pointwise8_widen":
        return pointwise
    # 4- and 2-bit weights on 8-bit inputs: the sub8 path (mm_conv.c; ops.conv.sub8_path) beats
    # the lane kernel on every shape (VWW's 1x1 layers on 8 channels at 2 bits: 2.4x, measured).
    sub8 = in_bits == 8 and w_bits < 8 and op.groups == 1
    if is_pointwise_sub(op, w_bits) or (sub8 and _pointwise_shape(op) and op.in_shape[0] >= 4):
        return "mm_pointwise_sub"
    if pointwise is not None:
        return pointwise
    return "mm_conv_small" if family == "small" and not sub8 else "mm_conv"


def scratch_need(op: Op, w_bits: int | None) -> int:
    """Bytes of the shared scratch buffer `op`'s kernel uses (int32 tables first, then int16).

    small: tap offsets (int32 per tap), the weight tile (row x lanes int16) and the unpacked
    patch (row int16); the layers of `small8p` use 2 row bytes of it (two byte patches,
    mm_conv.c mm_small8p). depthwise: 3x3 kernels on at least four channels, a ring of
    MM_DW_RING rows of four channels' bytes (4 x in_w each) that 4- and 2-bit inputs are
    widened into (mm_dw.c mm_dw_3x3_w; counted at every input width, as the family's, on at most
    MM_DW_RING_W columns: wider rows, tile or tensor, are widened into four ring rows where
    those fit it (mm_kernels.h MM_DW_RING_FITS), else read unwidened); else none (its weight
    pairs are a small fixed stack table).
    conv: the unpacked patch, in chunks of MM_PATCH elements of one pixel when the patch is
    longer than MM_PATCH. mm_pointwise_sub: one unpacked input pixel. mm_pointwise8 (none) and
    mm_pointwise8_widen (two input pixels widened to bytes, 2 x in_c: never more than the
    family's, in_c <= MM_PATCH) take what their family counts.
    """
    if w_bits is None:
        raise ValueError(f"op {op.name} needs its weight bits")
    if is_pointwise_sub(op, w_bits):  # one unpacked input pixel (mm_pointwise_sub)
        return 2 * op.in_shape[0]
    family = _family(op, w_bits)
    lanes = kernel_constant("MM_LANES")
    kernel, _ = window(op)
    taps = kernel[0] * kernel[1]
    if family == "small":
        row = op.weight.row_elems
        return 4 * taps + 2 * row * lanes + 2 * row
    if family == "conv":
        row, patch = op.weight.row_elems, kernel_constant("MM_PATCH")
        cin_g = op.in_shape[0] // op.groups
        return 2 * (row if row <= patch else min(cin_g, patch))
    if kernel == (3, 3) and op.in_shape[0] >= 4:  # every tile of a wider input may take it
        width = min(op.in_shape[2], kernel_constant("MM_DW_RING_W"))
        return kernel_constant("MM_DW_RING") * 4 * width
    return 0


# How many output pixels, counting the one being written, whose windows a kernel may still
# read while it writes an output pixel (ops.common.window_overlap's lag): 0 when a pixel is
# written only after its window is read (the whole patch is unpacked first), 1 when its output
# channels are written block by block while later blocks still read its window, 2 when two
# pixels are computed together block by block (pixel P + 1's block is written before pixel P's
# window is read for the next block). Each kernel's comment in the C says the same; a kernel
# missing here never runs in place.
IN_PLACE_LAG = {
    "mm_depthwise": 0,
    "mm_conv_small": 0,
    "mm_pointwise8_widen": 0,  # two pixels widened into the scratch before either is written
    "mm_pointwise_sub": 2,  # its two-pixel path reads 8-bit inputs in place
    "mm_pointwise8": 2,
    "mm_conv": 2,
}  # not mm_dense_pt: one output pixel reads its whole input to the end, so no byte of the
# output could overlap it (a lag of 2 places it just before its input, as mm_pointwise8's linears)


@functools.lru_cache(maxsize=8192)  # every plan asks again for each of its drafts
def in_place(op: Op, in_bits: int, out_bits: int, w_bits: int | None) -> int | None:
    """Every conv kernel writes output pixels in raster order, all channels of a pixel before
    the next pixel, so its output can overwrite its input (ops.common.window_overlap with the
    kernel's IN_PLACE_LAG), also when the channels or bits change: a 1 x 1 layer's output needs
    only its growth over the input. Not: mm_conv_small with more than one lane block of output
    channels (it runs every pixel once per block); mm_depthwise goes group of four channels by
    group over the whole tensor, so it needs the same channels and bits in and out, and not a
    single-channel tail below 8 bits (it clears every pixel's tail bits before computing them)."""
    kernel = kernel_of(op, w_bits, in_bits)
    c_in, c_out = op.in_shape[0], op.out_shape[0]
    if kernel not in IN_PLACE_LAG:
        return None
    if kernel == "mm_conv_small" and c_out > kernel_constant("MM_LANES"):
        return None
    if kernel == "mm_depthwise" and (
        in_bits != out_bits or c_in != c_out or (out_bits != 8 and c_out % 4)
    ):
        return None
    in_pix, out_pix = packed_bytes(c_in, in_bits), packed_bytes(c_out, out_bits)
    return window_overlap(op, in_pix, out_pix, IN_PLACE_LAG[kernel])


# ---- integer conversion --------------------------------------------------------------------


def _geometry(op: Op) -> dict:
    kernel, padding = window(op)
    return dict(kernel=kernel, stride=op.stride, padding=padding, groups=op.groups)


def weight_rows(op: Op, w: np.ndarray) -> np.ndarray:
    """Integer weights as the C rows: (C_out, kh, kw, C_in/g) flattened per output channel, to
    match the HWC input. PyTorch flattens a linear's (C, H, W) input; the arena holds HWC, so
    its columns are permuted to (H, W, C) and it runs as an H x W convolution."""
    cout = w.shape[0]
    if w.ndim == 4:
        return w.transpose(0, 2, 3, 1).reshape(cout, -1)
    c, h, wd = op.in_shape
    return w.reshape(cout, c, h, wd).transpose(0, 2, 3, 1).reshape(cout, -1)


def _checked_weights(op: Op, qp: QuantParams) -> np.ndarray:
    lq = qp.layers[op.name]
    if op.weight is None:
        raise ValueError(f"op {op.name} has no weight")
    w = np.asarray(lq.w_int, dtype=np.int64)
    if w.shape != op.weight.shape:
        raise MicromixError(
            f"layer '{op.name}' has weights of shape {w.shape}, expected {op.weight.shape}."
        )
    lo, hi = -(2 ** (lq.bits - 1)), 2 ** (lq.bits - 1) - 1
    if w.min() < lo or w.max() > hi:
        raise MicromixError(
            f"layer '{op.name}' has weights outside [{lo}, {hi}] for {lq.bits} bits."
        )
    return w


def convert(op: Op, qp: QuantParams) -> IntOp:
    lq, out, inp = qp.layers[op.name], qp.tensors[op.output], qp.tensors[op.inputs[0]]
    rows = weight_rows(op, _checked_weights(op, qp)).copy()
    cout = rows.shape[0]
    w_scale = np.asarray(lq.w_scale, dtype=np.float64).reshape(cout)
    bias = np.asarray(lq.bias, dtype=np.float64).reshape(cout)
    s_in, s_out = inp.scale, out.scale
    bound = accumulator_bound(np.abs(rows).sum(axis=1), inp.bits, inp.signed)
    # A channel whose output is the same code for every input is a constant: a zero scale, or
    # a bias so far past the clamp that no dot product brings the output back inside it (one
    # step of margin). It outputs that code: zero weights, multiplier 1, bias = output. (Left
    # as a dot product, its bias in accumulator steps can overflow int32 for nothing.)
    if op.per_tensor and np.any(w_scale != w_scale[0]):
        raise MicromixError(
            f"layer '{op.name}' has per-tensor weight scales but {len(set(w_scale))} different ones."
        )
    reach = np.abs(w_scale) * s_in * bound
    low, high = (bias - reach) / s_out, (bias + reach) / s_out
    past = (low >= out.qmax + 0.5) | (high < out.qmin - 0.5)
    zero = (w_scale == 0.0) | (past & (not op.per_tensor))
    rows[zero] = 0
    bound = np.where(zero, 0.0, bound)
    const = np.clip(round_half_up(bias / s_out), out.qmin, out.qmax)
    b_acc = np.where(zero, 0.0, bias / np.where(zero, 1.0, w_scale * s_in))  # accumulator units
    if op.per_tensor:  # one multiplier: a constant channel keeps it, its bias capped instead
        b_acc = _capped_bias(b_acc, bound, np.abs(w_scale * s_in) / s_out, out.qmax - out.qmin)
    mq = [
        (2**30, 30) if z else quantize_multiplier(m) for z, m in zip(zero, w_scale * s_in / s_out)
    ]
    if op.per_tensor:
        mq = mq[:1]
    mult = np.array([m for m, _ in mq], dtype=np.int64)
    shift = np.array([n for _, n in mq], dtype=np.int64)

    def biases(k: int) -> np.ndarray:
        return np.where(zero, const * 2.0**k, round_half_up(b_acc * 2.0**k))

    def fits(k: int) -> bool:
        # The C code forms dot * 2^k + B in int32: the worst case must fit, for every input.
        return bool(np.all(bound * 2.0**k + np.abs(biases(k)) <= INT32_MAX)) and bool(
            np.all(shift + k <= MAX_SHIFT)
        )

    if not fits(0):
        _refuse_overflow(op, bound, bias, b_acc, w_scale * s_in, biases(0))
    # The bias keeps as many fractional bits as int32 allows (up to MAX_BIAS_SHIFT): rounding
    # it to whole accumulator steps would cost up to M/2 output steps, and BN can make M > 1.
    k = 0
    while k < MAX_BIAS_SHIFT and fits(k + 1):
        k += 1
    packed = pack_bits(rows, lq.bits, signed=True).reshape(-1)
    arrays = typed_arrays(op, inp.bits, bias=biases(k).astype(np.int64), mult=mult, shift=shift + k)
    return int_op(
        op, out, [inp], arrays, w_bits=lq.bits, weights=packed, bias_shift=k, **_geometry(op)
    )


def _capped_bias(b_acc: np.ndarray, bound: np.ndarray, m: np.ndarray, span: int) -> np.ndarray:
    """A per-tensor layer's biases (accumulator units) with each one that keeps its channel
    past the clamp for every input brought down to where it still does (by span + 2 output
    steps of M = `m` beyond the dot products' reach `bound`): the same outputs, and a bias that
    fits int32 (per-channel layers store such a channel as a constant instead)."""
    cap = bound + (span + 2) / np.where(m > 0, m, 1.0)
    return np.where(m > 0, np.clip(b_acc, -cap, cap), b_acc)


def _refuse_overflow(op: Op, bound, bias, b_acc, step, b0) -> None:
    ch = int(np.argmax(bound + np.abs(b0)))
    # The search keeps the weights' part within int32 (budget.weight_bits_caps); what is
    # left is a bias that is large against the channel's trained scale.
    why = (
        "lower the weight bits"
        if bound[ch] > INT32_MAX
        else f"its bias {bias[ch]:.3g} is {abs(b_acc[ch]):.3g} accumulator steps of scale "
        f"{step[ch]:.3g}; retrain the layer or rescale it"
    )
    raise OverflowError32(
        f"layer {op.name}, channel {ch}: the int32 accumulator could overflow (worst case "
        f"{bound[ch] + abs(b0[ch]):.3g}); {why}."
    )


# ---- numpy reference -----------------------------------------------------------------------


def _windows(x: np.ndarray, iop: IntOp) -> np.ndarray:
    """(N, OH, OW, C, kh, kw) views of the zero-padded input (zero is the real 0)."""
    (kh, kw), (sh, sw), (ph, pw) = iop.kernel, iop.stride, iop.padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    _, oh, ow = iop.op.out_shape
    v = sliding_window_view(x, (kh, kw), axis=(1, 2))
    return v[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for integer matrices, exact. Every partial sum is bounded by max|a| * sum|b| over
    a column of b; float32 holds integers exactly below 2^24, float64 below 2^53."""
    bound = float(np.abs(a).max(initial=0)) * float(np.abs(b).sum(axis=0).max(initial=0))
    ft = np.float32 if bound < 2**24 else np.float64
    if bound >= 2**53:  # float64 would round: the integer result would be wrong
        raise OverflowError32(
            f"an integer product reaches {bound:.3g}, beyond exact float64 (2^53)."
        )
    return np.rint(a.astype(ft) @ b.astype(ft)).astype(np.int64)


def conv_accumulate(iop: IntOp, x: np.ndarray) -> np.ndarray:
    """sum(w_int * q_in) of a conv / linear op, int64 (N, OH, OW, C_out), without the bias."""
    w = iop.weight_matrix()  # (C_out, kh, kw, C_in/g)
    n = len(x)
    cout, oh, ow = iop.op.out_shape
    cin = x.shape[3]
    g = iop.groups
    if g == cin == cout and g > 1:  # depthwise: one tap at a time, elementwise
        # int32 is exact here: conversion proved |sum| < 2^31 for every channel.
        acc = np.zeros((n, oh, ow, cout), np.int32)
        win = _windows(x.astype(np.int32), iop)  # (N, OH, OW, C, kh, kw)
        w32 = w.astype(np.int32)
        for i in range(iop.kernel[0]):
            for j in range(iop.kernel[1]):
                acc += win[..., i, j] * w32[:, i, j, 0]
        return acc.astype(np.int64)
    if iop.kernel == (1, 1) and iop.stride == (1, 1) and iop.padding == (0, 0) and g == 1:
        cols = x.reshape(-1, cin)
        return _exact_matmul(cols, w.reshape(cout, -1).T).reshape(n, oh, ow, cout)
    win = _windows(x, iop).transpose(0, 1, 2, 4, 5, 3)  # (N, OH, OW, kh, kw, C): row order
    cg, og = cin // g, cout // g
    parts = []
    for k in range(g):
        cols = win[..., k * cg : (k + 1) * cg].reshape(n * oh * ow, -1)
        wk = w[k * og : (k + 1) * og].reshape(og, -1)
        parts.append(_exact_matmul(cols, wk.T))
    return np.concatenate(parts, axis=1).reshape(n, oh, ow, cout)


def run(iop: IntOp, x: np.ndarray) -> np.ndarray:
    acc = conv_accumulate(iop, x) * (1 << iop.bias_shift) + iop.arrays["bias"].astype(np.int64)
    check_int32(acc, f"layer {iop.name}")
    y = requantize(acc, iop.arrays["mult"], iop.arrays["shift"], where=f"layer {iop.name}")
    return np.clip(y, iop.qmin, iop.qmax)


# ---- C -------------------------------------------------------------------------------------


def emit(site: CallSite) -> str:
    """The call of the kernel the memory report records (`kernel_dims` checked its sizes
    before any training)."""
    iop, arr = site.iop, site.arrays
    before = [site.inputs[0], site.output, arr["w"]]
    dims = tiled(kernel_dims(iop.op), site.tile)
    return struct_call(site.kernel, before, dims, quant_of(iop, arr), ("s",))


# The paths of the conv kernels that an export compiles only where one of its layers takes
# them (mm_paths.h: MM_USE_<path>); `c_rules` gives a call's.
C_PATHS = (
    "CONV8X2", "CONV8X2D_U", "CONV8X2D_U16", "CONV8X2D_S", "CONV8X2_RQANY", "CONV8P", "CONV8P_D",
    "CONV8P_ANY", "CONV8", "CONV_ANY",
    "SUB8X2", "SUB8X2D_W4", "SUB8X2D_W2", "SUB8P", "SUB8PD_W4", "SUB8PD_W2", "SUB8PD_W2T", "PWSUB8PD_W4",
    "PWSUB8PD_W2", "PWSUB8", "PWSUB8F", "PWSUB_PACKED",
    "SUB8_W4S", "SUB8_W4U", "SUB8_W2S", "SUB8_W2U", "S8F_W4", "S8F_W2", "SUB8_RQS",
    "SUB8_RQANY", "SUB8D_W4", "SUB8D_W2",
    "DW_3X3_8U", "DW_4X4_8U", "DW_8U", "DW_4U", "DW_2U", "DW_ANY", "DW_CHANNEL", "DW_3X3_W",
    "DW_OUT4", "DW_OUT2", "DW_D4_8", "DW_D4_4", "DW_D4_2", "DW_D2_8", "DW_D2_4", "DW_D2_2",
    "DW_RQANY", "DW_WSUB",
    "PW8_ONE", "PW8_FAST", "PW8_ANY", "PW8_WIDE", "PW8_WIDE_ANY", "PW8_DENSE_U", "PW8_DENSE_S",
    "SMALL8P", "SMALL_LANES",
    "DENSE_PT", "PW8D_PT_U", "PW8D_PT_S", "SUB8D_PT_W4", "SUB8D_PT_W2", "PW8_PT",
    "SUB8D4_PT_W4U", "SUB8D4_PT_W4S", "SUB8D4_PT_W2U", "SUB8D4_PT_W2S",
)  # fmt: skip


def c_rules(site: CallSite) -> tuple[str, ...]:
    """The kernel paths this call takes: the kernel's own rules (mm_kernels.h MM_CONV_PATH,
    MM_CONV8X2_KIND, MM_CONV8P_KIND, MM_SUB8X2_KIND, MM_SUB8_PX_PATH, MM_PWSUB_PATH,
    MM_SUB8_KIND, MM_SUB8_RQ, MM_SMALL_PATH, MM_DW_GROUP, MM_DW_TAIL, MM_DW_OUT, MM_DW_DIRECT,
    MM_DW_RQ_PATH, MM_DW_WB, MM_PW8_PATH, MM_PW8_WIDEN) on the numbers the call passes, for the
    export's preprocessor to evaluate. Whether every shift is above 32 is the call's
    mm_quant_params.above32 (`shifts_above32`)."""
    iop = site.iop
    dims = tiled(kernel_dims(iop.op), site.tile)
    c_in, in_h, in_w, c_out, out_h, out_w, kh, kw, _, sw, ph, pw, groups = dims
    ib, is_ = iop.in_bits[0], int(iop.in_signed[0])
    row = kh * kw * (c_in // groups)
    above32 = shifts_above32(iop)
    if site.kernel in ("mm_conv", "mm_pointwise_sub"):
        fast = f"MM_PW_FAST({iop.qmin}, {iop.qmax}, {iop.out_bits}, {above32})"
        rq8 = f"MM_RQ8({iop.qmin}, {iop.qmax}, {iop.out_bits}, {above32})"
        path = (f"MM_PWSUB_PATH({ib}, {is_}, {c_in}, {fast}, {out_h * out_w}, {iop.w_bits}, "
                f"{c_out}, {rq8})")  # fmt: skip
        if site.kernel == "mm_conv":
            whole = int((kh, kw, ph, pw, out_h, out_w) == (in_h, in_w, 0, 0, 1, 1))
            path = (f"MM_CONV_PATH({ib}, {iop.w_bits}, {is_}, {groups}, {c_in}, {row}, {whole}, "
                    f"{c_out}, {rq8})")  # fmt: skip
        px = path  # MM_SUB8_PX_PATH: none where SUB8X2D_W4 or _W2 takes every pixel
        if site.kernel == "mm_conv":
            px = f"MM_SUB8_PX_PATH({path}, {iop.w_bits}, {is_}, {c_in}, {rq8})"
        rq = f"MM_SUB8_RQ({px}, {iop.qmin}, {iop.qmax}, {iop.out_bits}, {above32})"
        kinds = (f"MM_SUB8_KIND({px}, {iop.w_bits}, {is_})", rq)
        if site.kernel == "mm_conv":  # the W8/A8 pair paths' pixel functions
            kinds += (
                f"MM_CONV8X2_KIND({path}, {is_}, {rq8}, {sw * c_in})",
                f"MM_CONV8P_KIND({path}, {is_}, {rq8}, {c_out}, {row})",
                f"MM_SUB8X2_KIND({path}, {iop.w_bits}, {is_}, {c_in}, {rq8})",
            )
        return (path, *kinds)
    if site.kernel == "mm_conv_small":
        fast = f"MM_PW_FAST({iop.qmin}, {iop.qmax}, {iop.out_bits}, {above32})"
        return (f"MM_SMALL_PATH({ib}, {iop.w_bits}, {is_}, {c_in}, {row}, {fast})",)
    if site.kernel == "mm_depthwise":
        group = f"MM_DW_GROUP({is_}, {ib}, {kh}, {kw}, {c_in}, {in_w})"
        rq = f"{iop.qmin}, {iop.qmax}, {iop.out_bits}, {above32}"
        out, direct = f"MM_DW_OUT({group}, {rq})", f"MM_DW_DIRECT({group}, {ib}, {rq})"
        rq_any, wsub = f"MM_DW_RQ_PATH({group}, {ib}, {rq})", f"MM_DW_WB({iop.w_bits})"
        return (group, f"MM_DW_TAIL({c_in}, {kh}, {kw})", out, direct, rq_any, wsub)
    if site.kernel == "mm_dense_pt":
        rq8 = f"MM_RQ8({iop.qmin}, {iop.qmax}, {iop.out_bits}, {above32})"
        return (f"MM_DENSE_PT_PATH({ib}, {is_}, {iop.w_bits}, {row}, {c_out}, {rq8})",)
    if site.kernel in ("mm_pointwise8", "mm_pointwise8_widen"):
        pw8 = (f"MM_PW8_PATH({is_}, {row}, {iop.qmin}, {iop.qmax}, {iop.out_bits}, {above32}, "
               f"{out_h * out_w}, {c_out})")  # fmt: skip
        if site.kernel == "mm_pointwise8_widen":
            return (pw8, "MM_P_PW8_WIDE", f"MM_PW8_WIDEN({is_}, {ib}, {row})")
        return (pw8,)
    return ()


def interleave4(rows: np.ndarray, head: int) -> np.ndarray:
    """Rows (one per output channel, bytes) in blocks of four: the first `head` bytes (a
    multiple of 4) of the block's rows as 4-byte words, word after word and row after row within
    a word; then each row's remaining bytes, row after row. Rows after the last full block stay
    as they are. A permutation of the bytes."""
    cout = rows.shape[0]
    blocks = []
    for b in range(cout // 4):
        r = rows[4 * b : 4 * b + 4]
        blocks.append(r[:, :head].reshape(4, head // 4, 4).transpose(1, 0, 2).reshape(-1))
        blocks.append(r[:, head:].reshape(-1))
    blocks.append(rows[cout - cout % 4 :].reshape(-1))
    return np.concatenate(blocks)


def depthwise_layout(iop: IntOp, kernel: str) -> np.ndarray | None:
    """mm_depthwise's weight bytes, or None where it reads natural rows (kernels above
    MM_DW_TAPS taps). Channels in groups of four: a group is row_bytes words; byte j of word
    k holds channel j's taps k * per .. k * per + per - 1 (per = 8 // w_bits), the first in
    the top bits; the last c % 4 channels keep their natural rows. Same byte count."""
    op = iop.op
    if kernel != "mm_depthwise":
        return None
    (kh, kw), c, wb = iop.kernel, op.out_shape[0], iop.w_bits
    taps = kh * kw
    if taps > kernel_constant("MM_DW_TAPS"):
        return None
    per, c4 = 8 // wb, c - c % 4
    words = -(-taps // per)
    vals = np.zeros((c, words * per), dtype=np.int64)
    vals[:, :taps] = iop.weight_matrix().reshape(c, taps)
    g = vals[:c4].reshape(c4 // 4, 4, words, per).transpose(0, 2, 1, 3)[..., ::-1]
    head = pack_bits(g.reshape(-1, per), wb, signed=True).reshape(-1)
    tail = np.asarray(iop.weights, dtype=np.uint8).reshape(c, -1)[c4:].reshape(-1)
    return np.concatenate([head, tail])


def small8p(iop: IntOp) -> bool:
    """Whether mm_conv_small runs this layer on mm_conv.c's CONV8P pixel pairs (mm_small8p;
    mm_kernels.h MM_SMALL_PATH, the same rule): 8-bit unsigned inputs and 8-bit weights,
    in_c % 4 != 0, rows of 4 to MM_PATCH bytes, unsigned outputs over their whole range and
    every shift above 32 (mm_pw_fast). Other layers take its lanes."""
    row, qmax = iop.row_elems, (1 << iop.out_bits) - 1
    fast = iop.qmin == 0 and iop.qmax == qmax and shifts_above32(iop)
    return (
        iop.w_bits == 8
        and iop.in_bits[0] == 8
        and not iop.in_signed[0]
        and iop.op.in_shape[0] % 4 != 0
        and 4 <= row <= kernel_constant("MM_PATCH")
        and fast
    )


def conv8_head(iop: IntOp, kernel: str) -> int | None:
    """Bytes of each weight row that mm_conv's W8/A8 two-pixel paths (mm_conv.c mm_conv8x2,
    mm_conv8p) read as interleaved words, or None where it reads natural rows. 8-bit inputs
    and weights, no groups: the whole row when in_c is a multiple of 4 (no word straddles two
    taps), else row - row % 4 for rows of at most MM_PATCH bytes (patches gathered as bytes).
    mm_conv_small: the second kind where it runs mm_conv8p (`small8p`), else natural rows."""
    if kernel == "mm_conv_small":
        return iop.row_elems - iop.row_elems % 4 if small8p(iop) else None
    if kernel != "mm_conv" or iop.w_bits != 8 or iop.in_bits[0] != 8 or iop.groups != 1:
        return None
    row = iop.row_elems
    if iop.op.in_shape[0] % 4 == 0:
        return row
    return row - row % 4 if row <= kernel_constant("MM_PATCH") else None


def dense_pt_path(iop: IntOp) -> str:
    """The weight layout mm_dense_pt reads for a per-tensor linear, by the path it takes
    (mm_kernels.h MM_DENSE_PT_PATH, the same rule) on 8-bit inputs: "pw8" for 8-bit weights
    (mm_pointwise8's interleaved blocks: its dense loop, or PW8_PT's blocks of four by
    mm_pw8x4), "sub8" (channel_packed: the sub8 path's dense loop) for 4- and 2-bit weights on
    rows of whole words (whole 16-byte steps with the output channels in blocks of four:
    SUB8D_PT, else SUB8D4_PT) and at least four output channels with MM_RQ8 (8-bit outputs
    clamped to [0, 255] or [qmin, 127] with -128 <= qmin <= 0, every shift above 32); else
    "any" (natural rows, one output at a time)."""
    if iop.in_bits[0] != 8:
        return "any"
    if iop.w_bits == 8:
        return "pw8"
    row, oc = iop.row_elems, iop.op.out_shape[0]
    clamp = (iop.qmin, iop.qmax) == (0, 255) or (-128 <= iop.qmin <= 0 and iop.qmax == 127)
    rq8 = iop.out_bits == 8 and shifts_above32(iop) and clamp
    words = row % 4 == 0 and row <= kernel_constant("MM_SUB8_ROW") and oc >= 4
    return "sub8" if words and rq8 else "any"


def sub8_path(iop: IntOp, kernel: str) -> bool:
    """Whether `kernel` runs this layer on its path for 4- and 2-bit weights on 8-bit inputs
    (mm_conv.c mm_sub8_*; the C takes it by the same rule), whose weights are channel_packed:
    no groups, rows of at most MM_SUB8_ROW elements (the path's scaled sums then stay in int32),
    mm_pointwise_sub always, mm_conv where in_c is a multiple of 4 (read from the input) or the
    row fits MM_PATCH bytes (patches gathered as bytes)."""
    if iop.w_bits not in (2, 4) or iop.in_bits[0] != 8 or iop.groups != 1:
        return False
    row = iop.row_elems
    if row > kernel_constant("MM_SUB8_ROW"):
        return False
    if kernel == "mm_pointwise_sub":
        return True
    return kernel == "mm_conv" and (
        iop.op.in_shape[0] % 4 == 0 or row <= kernel_constant("MM_PATCH")
    )


def channel_packed(iop: IntOp) -> np.ndarray:
    """The weight bytes of the sub8 path (`sub8_path`): in each block of four output channels,
    one byte holds one element of several channels, so that one SXTB16 of a weight word and a
    few masks give halfword weights that need no shift. 4-bit: byte = (w_c + 8) | w_c+1 << 4
    for the channel pairs (0, 1) and (2, 3); per group of 4 elements the pair (0, 1)'s word,
    then the pair (2, 3)'s. 2-bit: byte = (w_0 + 2) | (w_1 + 2) << 2 | (w_2 + 2) << 4 | w_3 << 6,
    one word per group. The last row % 4 elements follow as bytes of the same form (4-bit: the
    pair (0, 1)'s, then the pair (2, 3)'s), zero bytes up to the block's 4 x row bytes; the rows
    after the last full block stay packed in natural order. The top field is two's complement,
    the others offset binary."""
    wb, cout = iop.w_bits, iop.op.out_shape[0]
    vals = iop.weight_matrix().reshape(cout, -1)
    row = vals.shape[1]
    rb, head, c4 = packed_bytes(row, wb), row - row % 4, cout - cout % 4
    out = []
    for b in range(0, c4, 4):
        v = vals[b : b + 4]
        if wb == 4:
            pairs = [(v[p] + 8) | ((v[p + 1] & 15) << 4) for p in (0, 2)]
            words = np.stack([q[:head].reshape(-1, 4) for q in pairs], 1).reshape(-1)
            block = np.concatenate([words, pairs[0][head:], pairs[1][head:]])
        else:
            block = (v[0] + 2) | ((v[1] + 2) << 2) | ((v[2] + 2) << 4) | ((v[3] & 3) << 6)
        out += [block.astype(np.uint8), np.zeros(4 * rb - block.size, np.uint8)]
    out.append(pack_bits(vals[c4:], wb, signed=True).reshape(-1))
    return np.concatenate(out)


def weight_layout(iop: IntOp, kernel: str) -> np.ndarray:
    """The packed weight bytes in the order `kernel` reads them (same bytes, same count).

    mm_depthwise: see depthwise_layout.
    mm_dense_pt: as its path reads them (`dense_pt_path`): mm_pointwise8's on "pw8",
    channel_packed on "sub8", natural rows on "any".
    mm_pointwise8 (and mm_pointwise8_widen): each block of four rows interleaves 4-byte runs
    (row 0 bytes 0-3, row 1 bytes 0-3, row 2, row 3, then bytes 4-7 of each ...), followed by
    the last row % 4 bytes of each row, row after row; rows after the last full block stay as
    they are. mm_pointwise_sub: the same over the bytes of the whole blocks of 32 / w_bits
    elements (on 2- and 4-bit inputs). mm_conv on its W8/A8 two-pixel paths: the same over
    conv8_head bytes of each row. Both on 8-bit inputs with 4- or 2-bit weights: `channel_packed`
    (`sub8_path`). Other kernels read the natural row order.
    """
    w = np.asarray(iop.weights, dtype=np.uint8)
    dw = depthwise_layout(iop, kernel)
    if dw is not None:
        assert dw.size == w.size
        return dw.reshape(w.shape)
    cout = iop.op.out_shape[0]
    rows = w.reshape(cout, -1)
    pt = dense_pt_path(iop) if kernel == "mm_dense_pt" else None
    if pt == "any":
        return w
    if pt == "sub8" or sub8_path(iop, kernel):
        flat = channel_packed(iop)
    elif kernel == "mm_pointwise_sub":  # words over the whole blocks of 32 / w_bits elements
        c = iop.op.in_shape[0]
        flat = interleave4(rows, (c - c % (32 // iop.w_bits)) * iop.w_bits // 8)
    elif pt == "pw8" or kernel in ("mm_pointwise8", "mm_pointwise8_widen"):  # head: whole words
        flat = interleave4(rows, rows.shape[1] - rows.shape[1] % 4)
    elif conv8_head(iop, kernel) is not None:
        flat = interleave4(rows, conv8_head(iop, kernel))
    else:
        return w
    assert flat.size == w.size
    return flat.reshape(w.shape)


def weighted_def(kind: str, describe: str, trace_fn, **match) -> OpDef:
    """The OpDef of a weighted layer (conv, linear): everything but its trace is shared."""
    return OpDef(
        kind=kind,
        describe=describe,
        trace=trace_fn,
        params=params,
        kernel=kernel_of,
        convert=convert,
        run=run,
        emit=emit,
        scratch=scratch_need,
        check=kernel_dims,
        weight_layout=weight_layout,
        in_place=in_place,
        c_paths=C_PATHS,
        c_rules=c_rules,
        **match,
    )


register(
    weighted_def(
        "conv", "Conv2d (any groups) with a BatchNorm2d after it", trace, modules=(nn.Conv2d,)
    )
)
