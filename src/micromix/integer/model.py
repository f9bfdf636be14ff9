"""IntegerModel: the integer-only network exactly as the C export stores it, and its numpy
reference interpreter.

Every constant lives here in its final form: packed weight bytes (uint8, the C array byte for
byte) and the per-op parameter arrays named and typed by `memory.param_arrays`. The reference
unpacks the same bytes the C code reads, so a packing mistake cannot hide.

Activations inside the interpreter are int64 arrays in N x H x W x C order (HWC, as in the
arena). Dot products run as BLAS matrix products in floating point, which is exact here: every
partial sum is an integer bounded by max|x| * sum|w| (< 2^31 by the check made at conversion),
and float32 / float64 represent every integer below 2^24 / 2^53 exactly; `_exact_matmul` picks
the type from that bound. Everything after the dot product (bias, 64-bit requantization, clamp)
is int64, with the overflow checks of the C semantics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import OverflowError32
from ..graph import Graph
from ..memory import MemoryReport
from ..policy import Policy
from ..quant.params import TensorQuant
from .arith import check_int32, requantize
from .intop import IntOp
from .ops import KERNELS as OP_KERNELS

__all__ = ["IntOp", "IntegerModel", "conv_accumulate", "run_op"]


@dataclass(frozen=True, eq=False)
class IntegerModel:
    graph: Graph
    policy: Policy
    report: MemoryReport
    ops: tuple[IntOp, ...]
    tensors: dict[str, TensorQuant]

    @property
    def output_signed(self) -> bool:
        return self.tensors[self.graph.output].signed

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.graph.tensors[self.graph.input].shape

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return self.graph.tensors[self.graph.output].shape

    def run(self, images: np.ndarray, *, batch_size: int = 250) -> np.ndarray:
        """Logits of uint8 images (N, C, H, W): int8 (N, classes), or (N, C, H, W) when the
        output has a spatial extent (uint8 if the output tensor is unsigned)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise ValueError(
                f"images must be uint8 of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {images.dtype} {images.shape}"
            )
        outs = [
            self.run_tensors(images[i : i + batch_size])[self.graph.output]
            for i in range(0, len(images), batch_size)
        ]
        c, h, w = self.output_shape
        y = np.concatenate(outs) if outs else np.zeros((0, h, w, c), np.int64)
        y = y.astype(np.int8 if self.output_signed else np.uint8).transpose(0, 3, 1, 2)
        return y.reshape(len(y), c) if h == w == 1 else y

    def run_tensors(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every activation tensor (int64, N x H x W x C) for a batch of uint8 NCHW images."""
        vals: dict[str, np.ndarray] = {
            self.graph.input: images.astype(np.int64).transpose(0, 2, 3, 1)
        }
        for iop in self.ops:
            x = [vals[t] for t in iop.op.inputs]
            vals[iop.op.output] = run_op(iop, *x)
        return vals


def run_op(iop: IntOp, *xs: np.ndarray) -> np.ndarray:
    """The numpy reference of one op: int64 N x H x W x C inputs -> its output tensor."""
    return _KERNELS[iop.op.kind](iop, *xs)


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


def _finish(iop: IntOp, acc: np.ndarray) -> np.ndarray:
    acc = acc * (1 << iop.bias_shift) + iop.arrays["bias"].astype(np.int64)
    check_int32(acc, f"layer {iop.name}")
    y = requantize(acc, iop.arrays["mult"], iop.arrays["shift"], where=f"layer {iop.name}")
    return np.clip(y, iop.qmin, iop.qmax)


def _conv(iop: IntOp, x: np.ndarray) -> np.ndarray:
    return _finish(iop, conv_accumulate(iop, x))


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


def _add(iop: IntOp, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    m = iop.arrays["mult"].astype(np.int64)
    s = int(iop.arrays["shift"][0])
    acc = a * m[0] + b * m[1]  # |q| <= 255, |m| < 2^31: far inside int64
    y = requantize(acc, 1, s, where=f"add {iop.name}")
    return np.clip(y, iop.qmin, iop.qmax)


_KERNELS = {"conv": _conv, "linear": _conv, "add": _add, **OP_KERNELS}
