"""The hand-off from a trained fake-quant model to integer conversion: plain numbers, no torch.

Semantics (eval mode), which the fake-quant forward implements and `integer.convert` reproduces
with integer arithmetic:

- A tensor t holds integers q with real value `scale * q`. Unsigned tensors (after ReLU/ReLU6,
  PACT clip) use q in [0, 2^b - 1]; signed tensors use the symmetric range
  [-(2^(b-1) - 1), 2^(b-1) - 1]. The network input is unsigned 8-bit with scale 1/255.
- Quantizing a real value v: q = clamp(round_half_up(v / scale), qmin, qmax), where
  round_half_up(x) = floor(x + 1/2). This is the one rounding rule of micromix.
- conv / linear op: real output of channel c =
  w_scale[c] * s_in * sum(w_int[c] * q_in) + bias[c], then quantized to the output tensor.
  BatchNorm (running statistics) and any conv bias are already folded into w_scale and bias,
  so w_scale may be negative. w_int lies in [-2^(b-1), 2^(b-1) - 1].
- add: real output = s_a * q_a + s_b * q_b, quantized to the output tensor.
- avgpool: real output = mean over each window of s_in * q_in, quantized.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def round_half_up(x: np.ndarray | float) -> np.ndarray:
    """The rounding rule used everywhere (fake-quant, integer reference, C): floor(x + 1/2)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


def qrange(bits: int, signed: bool) -> tuple[int, int]:
    """Integer range of an activation tensor."""
    if signed:
        m = 2 ** (bits - 1) - 1
        return -m, m
    return 0, 2**bits - 1


@dataclass(frozen=True)
class TensorQuant:
    name: str
    bits: int
    signed: bool
    scale: float

    @property
    def qmin(self) -> int:
        return qrange(self.bits, self.signed)[0]

    @property
    def qmax(self) -> int:
        return qrange(self.bits, self.signed)[1]


@dataclass(frozen=True, eq=False)
class LayerQuant:
    name: str  # op name
    bits: int
    w_int: np.ndarray  # int64, the module's weight shape (C_out, C_in/groups, kh, kw) or (out, in)
    w_scale: np.ndarray  # float64 [C_out], BN folded in
    bias: np.ndarray  # float64 [C_out], real-valued, BN shift and conv bias folded in


@dataclass(frozen=True, eq=False)
class QuantParams:
    tensors: dict[str, TensorQuant]  # every activation tensor of the Graph
    layers: dict[str, LayerQuant]  # every conv / linear op of the Graph


def qparams_to_data(qp: QuantParams) -> dict:
    """QuantParams as plain data (numbers, strings, numpy arrays); `qparams_from_data` is the
    inverse. A QAT checkpoint stores it (arrays as tensors), so conversion and export need no
    model code."""
    return {
        "tensors": {
            n: {"bits": t.bits, "signed": t.signed, "scale": t.scale} for n, t in qp.tensors.items()
        },
        "layers": {
            n: {"bits": lq.bits, "w_int": lq.w_int, "w_scale": lq.w_scale, "bias": lq.bias}
            for n, lq in qp.layers.items()
        },
    }


def qparams_from_data(d: dict) -> QuantParams:
    """The QuantParams of `qparams_to_data` (arrays may be numpy arrays or CPU tensors).
    Raises TypeError / ValueError / KeyError on damaged data; the caller names the file."""
    tensors = {}
    for n, t in d["tensors"].items():
        bits, signed, scale = t["bits"], t["signed"], t["scale"]
        if type(bits) is not int or type(signed) is not bool or not isinstance(scale, float):
            raise TypeError(f"tensor {n!r}: bits, signed and scale must be int, bool, float")
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"tensor {n!r}: scale must be finite and positive")
        tensors[n] = TensorQuant(n, bits, signed, scale)
    layers = {}
    for n, lq in d["layers"].items():
        w_int, w_scale, bias = (np.asarray(lq[k]) for k in ("w_int", "w_scale", "bias"))
        if w_int.dtype != np.int64 or w_scale.dtype != np.float64 or bias.dtype != np.float64:
            raise TypeError(f"layer {n!r}: w_int must be int64, w_scale and bias float64")
        rows = (len(w_int),) if w_int.ndim else ()
        if type(lq["bits"]) is not int or not w_scale.shape == bias.shape == rows:
            raise ValueError(f"layer {n!r}: bits or array shapes do not match")
        layers[n] = LayerQuant(n, lq["bits"], w_int, w_scale, bias)
    return QuantParams(tensors, layers)
