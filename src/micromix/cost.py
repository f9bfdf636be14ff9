"""Measured cost of layers on a Cortex-M4: executed instructions and estimated cycles per MAC.

The table (assets/mcu_cost_table.json) is written by bench/mcu_cost.py from instruction counts
under qemu (MobileNetV1-0.25 28x28, W8/A8, the demo's mixed policy, W4/A4, W2/A2), keyed by
layer type and (input, weight, output) bits. Nothing here is guessed: a combination the
benchmark did not run has no entry, and `layer_cost` says so (returns None).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from .graph import Graph, Op
from .policy import Policy

__all__ = ["LayerCost", "cost_key", "layer_cost", "layer_type", "load_cost_table", "network_cost"]


@dataclass(frozen=True)
class LayerCost:
    instructions: int
    est_cycles: int


def layer_type(op: Op, first: bool = False) -> str:
    """'stem 3x3', 'depthwise 3x3', 'pointwise 1x1', 'conv', 'linear', 'avgpool', 'add'."""
    if op.kind == "linear" or op.kind != "conv":
        return op.kind
    if first:
        return "stem 3x3"
    if op.is_depthwise:
        return "depthwise 3x3"
    return "pointwise 1x1" if tuple(op.kernel) == (1, 1) else "conv"


def cost_key(kind: str, in_bits: int, w_bits: int | None, out_bits: int) -> str:
    return f"{kind}|{in_bits}|{w_bits or 0}|{out_bits}"


@lru_cache(maxsize=4)
def load_cost_table(path: str | None = None) -> dict[str, dict]:
    """key -> {"instructions_per_mac", "cycles_per_mac", "macs"} (the shipped table by default)."""
    if path is None:
        text = resources.files("micromix").joinpath("assets", "mcu_cost_table.json").read_text()
    else:
        with open(path) as f:
            text = f.read()
    return json.loads(text)["layers"]


def layer_cost(
    op: Op, in_bits: int, w_bits: int | None, out_bits: int, *, first: bool = False
) -> LayerCost | None:
    """Instructions and estimated cycles of `op` from the measured per-MAC figures, or None."""
    row = load_cost_table().get(cost_key(layer_type(op, first), in_bits, w_bits, out_bits))
    if row is None:
        return None
    return LayerCost(
        round(row["instructions_per_mac"] * op.macs), round(row["cycles_per_mac"] * op.macs)
    )


def network_cost(graph: Graph, policy: Policy) -> dict[str, LayerCost | None]:
    """layer name -> its measured cost under `policy` (None where the table has no entry)."""
    out = {}
    for i, op in enumerate(graph.ops):
        in_bits = policy.activations[op.inputs[0]]
        w_bits = policy.weights[op.name] if op.has_weight else None
        out[op.name] = layer_cost(op, in_bits, w_bits, policy.activations[op.output], first=i == 0)
    return out
