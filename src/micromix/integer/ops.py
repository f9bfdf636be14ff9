"""Integer conversion and numpy reference of pooling, concat, table activations and multiply.

Semantics (real values as in micromix.quant.params; every result is clamped to the output
tensor's integer range, where an absorbed ReLU lives):
- maxpool: the max of the input codes over the window's taps inside the input (padding never
  wins; the code map is monotone, so this is the max of the real values), requantized by
  s_in / s_out. A pool that keeps its input's quantizer has multiplier exactly 1 (2^30 >> 30).
- avgpool: the sum over the window (padded taps are zeros) times s_in / (d * s_out), with d the
  window size, or, without count_include_pad, the number of taps inside the input (one
  multiplier per possible d).
- cat: each input requantized by s_i / s_out, written at its channel offset.
- mul: q_x * q_g times s_x * s_g / s_out (the gate is per channel or per element).
- lut: table[raw bits of the input code] (micromix.quant.lut.lut_table).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..graph import Op
from ..quant.lut import lut_table, numpy_fn
from ..quant.params import QuantParams, TensorQuant
from .arith import quantize_multiplier, requantize
from .intop import IntOp

_LOW = -(2**40)  # below every code: padding never wins a max


def _mults(reals: list[float]) -> tuple[list[int], list[int]]:
    pairs = [quantize_multiplier(r) for r in reals]
    return [m for m, _ in pairs], [n for _, n in pairs]


def convert_op(op: Op, qp: QuantParams, base: Callable, arrays: Callable) -> IntOp:
    """`base(op, out, ins, arrays)` and `arrays(op, **values)` are convert.py's helpers."""
    out = qp.tensors[op.output]
    ins = [qp.tensors[t] for t in op.inputs]
    s_in = ins[0].scale
    geom = dict(kernel=op.kernel, stride=op.stride, padding=op.padding)
    if op.kind == "maxpool":
        m, n = _mults([s_in / out.scale])
    elif op.kind == "avgpool":
        k = op.kernel[0] * op.kernel[1]
        divisors = [k] if op.count_include_pad else list(range(1, k + 1))
        m, n = _mults([s_in / (d * out.scale) for d in divisors])
    elif op.kind == "cat":
        m, n = _mults([t.scale / out.scale for t in ins])
    elif op.kind == "mul":
        m, n = _mults([s_in * ins[1].scale / out.scale])
    else:
        if op.kind != "lut":
            raise ValueError(f"op {op.name}: no requantization for kind {op.kind!r}")
        t = lut_table(
            op.fn, op.alpha, s_in, ins[0].bits, ins[0].signed, out.scale, out.bits, out.signed
        )
        return IntOp(**base(op, out, ins, arrays(op, ins[0].bits, table=t & 0xFF)), **geom)
    return IntOp(**base(op, out, ins, arrays(op, ins[0].bits, mult=m, shift=n)), **geom)


def real_output(op: Op, ins: list[TensorQuant], xs: list[np.ndarray]) -> np.ndarray:
    """The real-valued output of `op` on integer inputs (sets synthetic output scales)."""
    v = [x * t.scale for x, t in zip(xs, ins)]
    if op.kind == "lut":
        return numpy_fn(op.fn, op.alpha)(v[0])
    if op.kind == "mul":
        return v[0] * v[1]
    if op.kind == "cat":
        return np.concatenate(v, axis=3)
    return v[0]  # pools keep the spread of their input


# ---- numpy reference (activations int64, N x H x W x C) ------------------------------------


def _padded_windows(x: np.ndarray, iop: IntOp, fill: int) -> np.ndarray:
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


def _finish(iop: IntOp, acc: np.ndarray, index: np.ndarray | int = 0) -> np.ndarray:
    m, n = iop.arrays["mult"].astype(np.int64), iop.arrays["shift"].astype(np.int64)
    y = requantize(acc, m[index], n[index], where=f"{iop.op.kind} {iop.name}")
    return np.clip(y, iop.qmin, iop.qmax)


def maxpool(iop: IntOp, x: np.ndarray) -> np.ndarray:
    return _finish(iop, _padded_windows(x, iop, _LOW).max(axis=(4, 5)))


def avgpool(iop: IntOp, x: np.ndarray) -> np.ndarray:
    s = _padded_windows(x, iop, 0).sum(axis=(4, 5))
    if iop.op.count_include_pad:
        return _finish(iop, s)
    ones = np.ones((1, *x.shape[1:3], 1), dtype=np.int64)
    count = _padded_windows(ones, iop, 0).sum(axis=(4, 5))  # taps inside the input
    return _finish(iop, s, np.broadcast_to(count - 1, s.shape))


def cat(iop: IntOp, *xs: np.ndarray) -> np.ndarray:
    return np.concatenate([_finish(iop, x, i) for i, x in enumerate(xs)], axis=3)


def mul(iop: IntOp, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return _finish(iop, x * g)  # |q| <= 255: the product is far inside int32


def lut(iop: IntOp, x: np.ndarray) -> np.ndarray:
    table = iop.arrays["table"]
    if iop.out_signed:
        table = table.view(np.int8)
    return table.astype(np.int64)[x & (2 ** iop.in_bits[0] - 1)]


KERNELS = {"maxpool": maxpool, "avgpool": avgpool, "cat": cat, "mul": mul, "lut": lut}
