"""micromix: memory-driven mixed 2/4/8-bit quantization for microcontrollers.

The public API, imported lazily so `import micromix` stays cheap:

    trace, Graph                      graph.py     model -> fused ops, tensors, lifetimes
    Policy                            policy.py    bits per weight and activation tensor
    memory_report, MemoryReport       memory.py    exact FLASH / RAM / arena plan
    Budget, targets, get_target       budget.py    limits in bytes, MCU registry
    load_model, save_model, fit       train.py     float models and training (TrainConfig, FitRun)
    prepare, finetune, quant_params   quant/       fake-quant QAT (FinetuneConfig)
    search, SearchConfig              strategies/  haq | rule | ilp | uniform | random
    convert, IntegerModel             integer/     integer-only model + numpy reference
    export_c                          export/      C99 project
    models, data                      sub-packages (registry, datasets)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "trace": "graph",
    "Graph": "graph",
    "Policy": "policy",
    "memory_report": "memory",
    "MemoryReport": "memory",
    "Budget": "budget",
    "get_target": "budget",
    "list_targets": "budget",
    "load_model": "train",
    "save_model": "train",
    "fit": "train",
    "evaluate": "train",
    "TrainConfig": "train",
    "FitRun": "train",
    "prepare": "quant",
    "finetune": "quant",
    "FinetuneConfig": "quant",
    "quant_params": "quant",
    "convert": "integer",
    "IntegerModel": "integer",
    "export_c": "export",
    "MicromixError": "errors",
    "search": "strategies",
    "SearchConfig": "strategies",
}
_SUBPACKAGES = {
    "models",
    "data",
    "quant",
    "integer",
    "export",
    "graph",
    "memory",
    "budget",
    "strategies",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name == "targets":
        from .budget import list_targets

        return {t.name: t for t in list_targets()}
    raise AttributeError(f"module 'micromix' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*_EXPORTS, *_SUBPACKAGES, "targets", "__version__"])
