"""Activation functions as integer lookup tables: one table per op, built from the scales.

The table is the specification: entry r (the raw bit pattern of an input code, 2^bits entries)
is clamp(round_half_up(f(s_in * code(r)) / s_out)) over the output's range, computed in float64
once. The integer reference and the C index it; the fake-quant model indexes the very same
table in evaluation, so QAT, integer and C agree exactly. Training runs f in float (its
gradient), followed by the output's quantizer as everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .params import qrange, round_half_up


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
