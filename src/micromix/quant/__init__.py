"""Quantization-aware training: fake quantizers, prepare / calibrate / quant_params, finetune."""

from .fakequant import DEFAULT_WEIGHT_RANGE, WEIGHT_RANGES, ActQuant, WeightQuant
from .params import LayerQuant, QuantParams, TensorQuant, qrange, round_half_up
from .prepare import QATModel, calibrate, prepare, quant_params

__all__ = [
    "DEFAULT_WEIGHT_RANGE",
    "WEIGHT_RANGES",
    "ActQuant",
    "LayerQuant",
    "QATModel",
    "QuantParams",
    "TensorQuant",
    "WeightQuant",
    "calibrate",
    "prepare",
    "qrange",
    "quant_params",
    "round_half_up",
]
