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

__all__ = [
    "LayerCost",
    "cost_key",
    "cost_rows",
    "cost_table",
    "layer_cost",
    "layer_type",
    "load_cost_table",
    "network_cost",
]


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


def cost_rows(graph: Graph, policy: Policy) -> list[dict]:
    """Per layer: name, type, (input, weight, output) bits, MACs, and the measured instructions
    and estimated cycles (None where the table has no row for that type and bits)."""
    rows = []
    for i, op in enumerate(graph.ops):
        bits = (
            policy.activations[op.inputs[0]],
            policy.weights[op.name] if op.has_weight else None,
            policy.activations[op.output],
        )
        c = layer_cost(op, *bits, first=i == 0)
        rows.append(
            {
                "layer": op.name,
                "type": layer_type(op, i == 0),
                "bits": list(bits),
                "macs": op.macs,
                "instructions": None if c is None else c.instructions,
                "est_cycles": None if c is None else c.est_cycles,
            }
        )
    return rows


def cost_table(rows: list[dict]) -> str:
    """`micromix memory --cost`: one line per layer and the network total (Cortex-M4)."""
    head = (
        f"{'layer':<20} {'type':<14} {'in/w/out':>9} {'MACs':>11} {'instr':>12} {'est.cycles':>12}"
    )
    lines = [
        "Measured cost on a Cortex-M4 (assets/mcu_cost_table.json, bench/mcu_cost.py under qemu):",
        head,
        "-" * len(head),
    ]
    for r in rows:
        b = "/".join("-" if x is None else str(x) for x in r["bits"])
        ins, cyc = r["instructions"], r["est_cycles"]
        lines.append(
            f"{r['layer']:<20} {r['type']:<14} {b:>9} {r['macs']:>11,} "
            f"{'n/a' if ins is None else f'{ins:,}':>12} {'n/a' if cyc is None else f'{cyc:,}':>12}"
        )
    known = [r for r in rows if r["instructions"] is not None]
    ins = sum(r["instructions"] for r in known)
    cyc = sum(r["est_cycles"] for r in known)
    missing = len(rows) - len(known)
    lines.append("-" * len(head))
    lines.append(
        f"{'network':<20} {'':<14} {'':>9} {sum(r['macs'] for r in rows):>11,} {ins:>12,} {cyc:>12,}"
    )
    if missing:
        lines.append(
            f"({missing} layer(s) have no measured row for their type and bits: not in the total)"
        )
    return "\n".join(lines)
