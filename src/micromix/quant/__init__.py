"""Quantization-aware training: fake quantizers, prepare / calibrate / quant_params, finetune."""

from ..numerics.params import LayerQuant, QuantParams, TensorQuant, qrange, round_half_up
from .fakequant import DEFAULT_WEIGHT_RANGE, WEIGHT_RANGES, ActQuant, WeightQuant

# Binding the name makes `micromix.quant.finetune` the function, not its submodule.
from .finetune import FinetuneConfig, finetune, load_qat, save_qat
from .prepare import QATModel, calibrate, prepare, quant_params
from .recipe import DEFAULT_RECIPE, RECIPES, QATRecipe

__all__ = [
    "DEFAULT_RECIPE",
    "DEFAULT_WEIGHT_RANGE",
    "RECIPES",
    "WEIGHT_RANGES",
    "ActQuant",
    "LayerQuant",
    "QATModel",
    "QATRecipe",
    "QuantParams",
    "TensorQuant",
    "WeightQuant",
    "calibrate",
    "FinetuneConfig",
    "finetune",
    "load_qat",
    "save_qat",
    "prepare",
    "qrange",
    "quant_params",
    "round_half_up",
]
