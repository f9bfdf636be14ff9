"""Helpers the op modules share: the kernels' constants, integer conversion (typed constant
arrays, requantization multipliers), the windowed numpy reference, and C argument formats."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import OverflowError32
from ..ir import Op
from ..numerics.arith import quantize_multiplier, requantize
from ..numerics.intop import IntOp
from ..numerics.params import TensorQuant
from .registry import get

CTYPE_BYTES = {"int8": 1, "uint8": 1, "int32": 4}
CTYPES = {"int32": "int32_t", "int8": "int8_t", "uint8": "uint8_t"}
_NP = {"int32": np.int32, "int8": np.int8, "uint8": np.uint8}

# The constants the C kernels and the memory model share, defined here only: cgen writes them
# into the generated mm_config.h that every kernel includes (nothing parses C).
#   MM_PATCH: int16 elements of an unpacked patch (longer ones run in chunks of one pixel's).
#   MM_LANES: output channels side by side (mm_conv_small, mm_depthwise's groups are 4).
#   MM_SMALL_ROW, MM_SMALL_ROW_BITS: the longest weight row mm_conv_small takes.
#   MM_DW_TAPS: the largest kernel mm_depthwise runs four channels at a time.
#   MM_SUB8_ROW: the longest weight row of the sub8 path (4- and 2-bit weights on 8-bit inputs):
#     its sums of int8-held weight bytes, |w| <= 128, over 8-bit inputs stay in int32.
KERNEL_CONSTANTS: Mapping[str, int] = {
    "MM_PATCH": 256,
    "MM_LANES": 8,
    "MM_SMALL_ROW": 32,
    "MM_SMALL_ROW_BITS": 128,
    "MM_DW_TAPS": 25,
    "MM_DW_RING": 5,
    # The widest input rows (tile or tensor) the ring takes five of (up to 5 x 24 / 4 columns
    # it takes four, mm_kernels.h MM_DW_RING_FITS): it is counted at 8-bit inputs too
    # (scratch follows the weight bits), so it may add at most 5 x 4 x 24 = 480 B there.
    "MM_DW_RING_W": 24,
    "MM_SUB8_ROW": 65536,
}


def kernel_constant(name: str) -> int:
    """One of KERNEL_CONSTANTS (the C side reads the same value from mm_config.h)."""
    if name not in KERNEL_CONSTANTS:
        raise ValueError(f"no kernel constant {name}")
    return KERNEL_CONSTANTS[name]


def requant_params(op: Op, n: int = 1) -> list[tuple[str, str, int]]:
    """`n` int32 multiplier mantissas and `n` int8 shifts (one requantization each)."""
    return [("mult", "int32", n), ("shift", "int8", n)]


def module_name(name: str) -> str:
    """The attribute name of a module the QAT rewrite adds for tensor or op `name`."""
    return "t_" + "".join(c if c.isalnum() else "_" for c in name)


# ---- running in place ----------------------------------------------------------------------


def window_overlap(op: Op, in_pix: int, out_pix: int, lag: int = 0) -> int:
    """Bytes by which the output of a window op must start before its input so that its kernel
    can write the output over the input as it goes: the kernel writes output pixels in raster
    order, and while it writes output pixel P it may still read the windows of outputs
    P + 1 - lag onward (lag 0: each pixel is written after its window is read, as mm_depthwise;
    lag 1: its own window may still be read, as kernels that write a pixel's channels block by
    block; lag 2: two pixels computed together). So writing pixel P may only destroy input
    pixels no such output reads. 0 or more (TinyEngine's in-place depthwise, with the arena as
    the buffer: about one input row at stride 1, none at 2; for a 1 x 1 layer that widens the
    channels, the growth of the tensor)."""
    if lag < 0:
        raise ValueError(f"lag {lag} < 0")
    (_, h, w), (_, oh, ow) = op.in_shape, op.out_shape
    (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
    iy, ix = np.arange(h), np.arange(w)
    # the last output row / column whose window holds input row iy / column ix (-1: none)
    ly = np.minimum((iy + ph) // sh, oh - 1)
    lx = np.minimum((ix + pw) // sw, ow - 1)
    ly = np.where(ly * sh - ph + kh > iy, ly, -1)
    lx = np.where(lx * sw - pw + kw > ix, lx, -1)
    last = np.where((ly[:, None] >= 0) & (lx[None, :] >= 0), ly[:, None] * ow + lx[None, :], -1)
    last = last.reshape(-1)  # raster index of the last output that reads each input pixel
    # alive[v] = min{i : last[i] >= v - 1}: the first input pixel some output from v - 1 on reads
    first_at = np.full(oh * ow + 2, h * w, dtype=np.int64)  # first_at[v]: min i, last[i] = v - 1
    np.minimum.at(first_at, last + 1, np.arange(h * w))
    alive = np.minimum.accumulate(first_at[::-1])[::-1]
    p = np.arange(oh * ow, dtype=np.int64)
    # outputs from P + 1 - lag on still read: index P + 2 - lag (at least 1: pixels no output
    # reads are free from the start)
    still = alive[np.maximum(p + 2 - lag, 1)]
    bound = still < h * w  # after the last reader, the output may run past the input
    return max(0, int(((p + 1) * out_pix - still * in_pix)[bound].max(initial=0)))


def same_pixel_in_place(op: Op, in_bits: int, out_bits: int, w_bits: int | None) -> int | None:
    """Elementwise kernels read each output pixel's inputs before writing it: the output can
    start where its first input does, when their pixels take the same bytes."""
    if op.in_shape != op.out_shape or in_bits != out_bits:
        return None
    return 0


# ---- integer conversion --------------------------------------------------------------------


def typed_arrays(op: Op, in_bits: int | None, **values: object) -> dict[str, np.ndarray]:
    """The op's constants, named, typed and sized exactly as its `params` layout says."""
    out = {}
    for suffix, ctype, count in get(op.kind).params(op, in_bits):
        a = np.asarray(values[suffix], dtype=np.int64)
        if a.shape != (count,):
            raise ValueError(f"parameter {suffix} of {op.name} has shape {a.shape}, not ({count},)")
        info = np.iinfo(_NP[ctype])
        if a.min() < info.min or a.max() > info.max:
            raise OverflowError32(f"layer {op.name}: {suffix} does not fit {ctype}.")
        out[suffix] = a.astype(_NP[ctype])
    return out


def int_op(op: Op, out: TensorQuant, ins: list[TensorQuant], arrays: dict, **extra) -> IntOp:
    """The IntOp of `op` with its quantized inputs and output and its constants."""
    return IntOp(
        op=op,
        in_bits=tuple(t.bits for t in ins),
        in_signed=tuple(t.signed for t in ins),
        out_bits=out.bits,
        out_signed=out.signed,
        qmin=out.qmin,
        qmax=out.qmax,
        arrays=arrays,
        **extra,
    )


def multipliers(reals: list[float]) -> dict[str, list[int]]:
    """{"mult": mantissas, "shift": shifts} of the real requantization factors `reals`."""
    pairs = [quantize_multiplier(r) for r in reals]
    return {"mult": [m for m, _ in pairs], "shift": [n for _, n in pairs]}


def requant_op(op: Op, qp, reals: list[float]) -> IntOp:
    """The IntOp of an op whose only constants are one requantization per entry of `reals`."""
    out, ins = qp.tensors[op.output], [qp.tensors[t] for t in op.inputs]
    arrays = typed_arrays(op, ins[0].bits, **multipliers(reals))
    return int_op(op, out, ins, arrays, kernel=op.kernel, stride=op.stride, padding=op.padding)


def rescale_op(op: Op, qp) -> IntOp:
    """The IntOp of an op that moves its input's codes (pooling's max, upsampling, padding):
    one requantization by s_in / s_out, exactly 1 when the op keeps its input's quantizer."""
    return requant_op(op, qp, [qp.tensors[op.inputs[0]].scale / qp.tensors[op.output].scale])


# ---- numpy reference (activations int64, N x H x W x C) ------------------------------------


def finish(iop: IntOp, acc: np.ndarray, index: np.ndarray | int = 0) -> np.ndarray:
    """Requantize `acc` by the op's multiplier `index` and clamp to the output range."""
    m, n = iop.arrays["mult"].astype(np.int64), iop.arrays["shift"].astype(np.int64)
    y = requantize(acc, m[index], n[index], where=f"{iop.op.kind} {iop.name}")
    return np.clip(y, iop.qmin, iop.qmax)


def padded_windows(x: np.ndarray, iop: IntOp, fill: int) -> np.ndarray:
    """(N, OH, OW, C, kh, kw) windows of `x` padded with `fill` (bottom / right as far as the
    last window needs: ceil_mode)."""
    (kh, kw), (sh, sw), (ph, pw) = iop.kernel, iop.stride, iop.padding
    _, oh, ow = iop.op.out_shape
    _, h, w, _ = x.shape
    bottom = max(ph, (oh - 1) * sh + kh - h - ph)
    right = max(pw, (ow - 1) * sw + kw - w - pw)
    x = np.pad(x, ((0, 0), (ph, bottom), (pw, right), (0, 0)), constant_values=fill)
    v = sliding_window_view(x, (kh, kw), axis=(1, 2))
    return v[:, : (oh - 1) * sh + 1 : sh, : (ow - 1) * sw + 1 : sw]


def same_real(op: Op, ins: list[TensorQuant], xs: list[np.ndarray]) -> np.ndarray:
    """The real value of the first input: ops that move or select values keep its spread."""
    return xs[0] * ins[0].scale


# ---- C -------------------------------------------------------------------------------------


def dims_of(site, in_c: int | None = None) -> tuple[int, ...]:
    """mm_conv_dims of an op as its kernel runs it at `site` (a CallSite): input and output
    C, H, W, the window's kernel, stride and padding, groups (`in_c` replaces the input
    channels: one input of a concat)."""
    iop = site.iop
    c, h, w = iop.op.in_shape
    dims = (in_c or c, h, w, *iop.op.out_shape, *iop.kernel, *iop.stride, *iop.padding, iop.groups)
    return tiled(dims, site.tile)


def tiled(dims: tuple[int, ...], tile: tuple[int, ...] | None) -> tuple[int, ...]:
    """`dims` of a whole tensor made those of one patch (CallSite.tile): its input and output
    sizes, and the padding its window has on the top and left (the kernels clip the bottom and
    right at the input's edge, which is the tensor's own only at its border)."""
    if tile is None:
        return dims
    in_h, in_w, out_h, out_w, pad_h, pad_w = tile
    d = list(dims)
    d[1], d[2], d[4], d[5], d[10], d[11] = in_h, in_w, out_h, out_w, pad_h, pad_w
    return tuple(d)


def quant_of(iop: IntOp, arrays: dict[str, str], index: int = 0, *, second: bool = False) -> tuple:
    """mm_quant_params of an op: its constants (`arrays`, from `index` on), clamp, and bits;
    `second`: the second input's bits and signedness (add, multiply)."""
    at = f" + {index}" if index else ""
    bias = arrays.get("bias", "0")
    mult, shift = (arrays["mult"] + at, arrays["shift"] + at) if "mult" in arrays else ("0", "0")
    in2 = (iop.in_bits[1], int(iop.in_signed[1])) if second else (0, 0)
    return (
        bias, mult, shift, iop.qmin, iop.qmax, iop.in_bits[index], int(iop.in_signed[index]),
        iop.w_bits or 0, iop.out_bits, iop.bias_shift, *in2, shifts_above32(iop, index),
    )  # fmt: skip


def shifts_above32(iop: IntOp, index: int = 0) -> int:
    """1 where every channel's shift (from `index` on) is above 32, else 0: the fast and the
    8-bit requantizations' condition (mm_kernels.h MM_PW_FAST, MM_RQ8). Found here only: the
    call's mm_quant_params.above32 carries it to the kernels, which no longer loop over the
    shift array on every call (about 9 cycles a channel on Cortex-M4), and ops.conv.c_rules
    gives it to the paths' rules."""
    shift = iop.arrays.get("shift")
    return 0 if shift is None else int(bool((np.asarray(shift)[index:] > 32).all()))


def unary_call(fn: str) -> Callable[[Any], str]:
    """The C emitter of an op whose kernel `fn` takes one input, its output, the op's dims and
    its params (max pooling, upsampling, padding)."""

    def emit(site) -> str:
        q = quant_of(site.iop, site.arrays)
        return struct_call(fn, [site.inputs[0], site.output], dims_of(site), q)

    return emit


def struct_call(fn: str, before: list[str], dims: tuple, q: tuple, after: tuple = ()) -> str:
    """`fn(before..., &d, &q, after...)` with CMSIS-NN-style dims and params structs built at
    the call site: immediates of the call, not model constants (micromix_model.o keeps no data
    but the arena and the scratch)."""
    args = ", ".join([*before, "&d", "&q", *map(str, after)])
    return (
        f"{{\n        const mm_conv_dims d = {{{', '.join(map(str, dims))}}};\n"
        f"        const mm_quant_params q = {{{', '.join(map(str, q))}}};\n"
        f"        {fn}({args});\n    }}"
    )
