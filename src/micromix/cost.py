"""Measured cost of layers on a Cortex-M4: executed instructions and estimated cycles.

A layer's cost is keyed on the C function that runs it (`MemoryReport.layers[i].kernel`, an
opaque string: a conv kernel such as mm_pointwise8, or the name of another op's function) and
its (input, weight, output) bits, and modelled as

    cost = per_mac * MACs + per_output * output elements
           + per_pixel * output pixels + per_channel * output channels

(MACs as the graph counts them: the input elements of a pooling or elementwise op; the pixel
term carries what a kernel spends per output pixel, such as a stem's patch gather, the channel
term what it spends per channel group, such as a depthwise group's weight tables). The
coefficients of every row are fitted by bench/mcu_cost.py to instruction counts under qemu
(probe chains that run every kernel at every bit triple, and the benchmark networks), and
written to assets/mcu_cost_table.json. Nothing here is guessed: a combination the benchmark
did not run has no row, and `layer_cost` says so (returns None).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from .graph import Graph
from .memory import memory_report
from .policy import Policy

__all__ = [
    "LayerCost",
    "cost_key",
    "cost_rows",
    "cost_table",
    "fit_cost_table",
    "layer_cost",
    "load_cost_table",
    "row_key",
    "network_cost",
]

MEASURES = ("instructions", "est_cycles")


@dataclass(frozen=True)
class LayerCost:
    instructions: int
    est_cycles: int


def cost_key(
    kernel: str,
    in_bits: int,
    w_bits: int | None,
    out_bits: int,
    pixels: int | None = None,
    patch: str = "",
) -> str:
    """The table row of a layer. A layer of one output pixel (a dense layer) has a row of its
    own: the kernels that take output pixels two at a time run it on their one-pixel path. So
    has a conv that gathers byte patches (`patch`, `patch_class`: a stem on 1-3 input
    channels), whose cost per MAC and per output differs from the pair loops on whole words of
    channels, by whether its rows end in a tail of 1-3 bytes (an extra step a block)."""
    key = f"{kernel}|{in_bits}|{w_bits or 0}|{out_bits}"
    return key + ("|1px" if pixels == 1 else "") + (f"|{patch}" if patch else "")


def patch_class(r: Mapping) -> str:
    """A measured or modelled layer's patch class: "" (none), "patch" (whole-word rows) or
    "patch_tail" (rows of MACs / outputs bytes with a tail)."""
    if not r.get("patch"):
        return ""
    return "patch_tail" if (r["macs"] // max(r["outputs"], 1)) % 4 else "patch"


def layer_key(r: Mapping) -> str:
    """The own key of layer `r` (kernel, bits, pixels, MACs, outputs, patch): what the fit
    groups it under."""
    return cost_key(r["kernel"], *r["bits"], r.get("pixels"), patch_class(r))


def row_key(table: Mapping[str, dict], r: Mapping) -> str:
    """The key of layer `r` in `table`: its own row (`layer_key`: one-pixel, patch) where the
    table has one, else the kernel and bits' row."""
    key = layer_key(r)
    return key if key in table else cost_key(r["kernel"], *r["bits"])


@lru_cache(maxsize=4)
def load_cost_table(path: str | None = None) -> dict[str, dict]:
    """key -> {measure: [per_mac, per_output, per_pixel, per_channel], "layers": n} (the
    shipped table by default)."""
    if path is None:
        text = resources.files("micromix").joinpath("assets", "mcu_cost_table.json").read_text()
    else:
        with open(path) as f:
            text = f.read()
    return json.loads(text)["rows"]


def _terms(macs: int, outputs: int, pixels: int | None) -> list[int]:
    """The model's variables of a layer: MACs, outputs, output pixels, output channels (a
    layer whose pixels are not known counts as one pixel of `outputs` channels)."""
    px = max(pixels or 1, 1)
    return [macs, outputs, px, outputs // px]


def layer_cost(
    key: str,
    macs: int,
    outputs: int,
    table: Mapping[str, dict] | None = None,
    pixels: int | None = None,
) -> LayerCost | None:
    """Instructions and estimated cycles of a layer from its row of the table, or None. A row
    may hold fewer coefficients than terms (the rest are zero)."""
    row = (load_cost_table() if table is None else table).get(key)
    if row is None:
        return None
    x = _terms(macs, outputs, pixels)
    ins, cyc = (sum(c * v for c, v in zip(row[m], x, strict=False)) for m in MEASURES)
    return LayerCost(round(ins), round(cyc))


def cost_rows(graph: Graph, policy: Policy, table: Mapping[str, dict] | None = None) -> list[dict]:
    """Per layer: name, kernel, (input, weight, output) bits, MACs, outputs, and the modelled
    instructions and estimated cycles (None where the table has no row for kernel and bits)."""
    report = memory_report(graph, policy)
    t = load_cost_table() if table is None else table
    rows = []
    for op, lm in zip(graph.ops, report.layers, strict=True):
        bits = (policy.activations[op.inputs[0]], lm.weight_bits, lm.out_bits)
        outputs = int(np.prod(op.out_shape))
        pixels = int(np.prod(op.out_shape[1:]))
        r = {
            "layer": op.name,
            "kernel": lm.kernel,
            "bits": list(bits),
            "macs": int(op.macs),
            "outputs": outputs,
            "pixels": pixels,
            "patch": _patch(op, lm),
        }
        c = layer_cost(row_key(t, r), op.macs, outputs, t, pixels)
        r["instructions"] = None if c is None else c.instructions
        r["est_cycles"] = None if c is None else c.est_cycles
        rows.append(r)
    return rows


def _patch(op, lm) -> bool:
    """Whether mm_conv gathers this layer's windows as byte patches: input channels not a
    multiple of four (mm_kernels.h MM_CONV_PATH's first test; a stem on 1-3 channels)."""
    return lm.kernel == "mm_conv" and op.groups == 1 and op.in_shape[0] % 4 != 0


def network_cost(
    graph: Graph, policy: Policy, table: Mapping[str, dict] | None = None
) -> dict[str, LayerCost | None]:
    """layer name -> its modelled cost under `policy` (None where the table has no row)."""
    return {
        r["layer"]: None
        if r["instructions"] is None
        else LayerCost(r["instructions"], r["est_cycles"])
        for r in cost_rows(graph, policy, table)
    }


def _fit(x: np.ndarray, y: np.ndarray) -> list[float]:
    """Non-negative coefficients of the columns of x minimising the squared error of x @ coef
    against y (in counts, not relative: the large layers, which make a network's total, weigh
    most): the best least-squares fit over subsets of the columns, no more columns than the
    layers have distinct shapes, the fewest columns unless more fit clearly better."""
    n = min(len({tuple(r) for r in x}), x.shape[1])
    best: tuple[float, np.ndarray] | None = None
    tol = 1e-12 * float(y @ y)
    for k in range(1, n + 1):
        for cols in itertools.combinations(range(x.shape[1]), k):
            xs = x[:, cols]
            if not xs.any(axis=0).all():
                continue
            c = np.linalg.lstsq(xs, y, rcond=None)[0]
            if (c < 0).any():
                continue
            err = float(np.sum((xs @ c - y) ** 2))
            if best is None or err < best[0] - tol:
                coef = np.zeros(x.shape[1])
                coef[list(cols)] = c
                best = (err, coef)
    return [0.0] * x.shape[1] if best is None else [float(v) for v in best[1]]


def fit_cost_table(layers: Iterable[Mapping]) -> dict[str, dict]:
    """The table's rows from measured layers (each with kernel, bits, macs, outputs,
    instructions, est_cycles, and optionally pixels): one least-squares fit of the
    coefficients per key (cost_key: one-pixel layers apart)."""
    groups: dict[str, list[Mapping]] = {}
    for r in layers:
        groups.setdefault(layer_key(r), []).append(r)
    table = {}
    for key, rs in sorted(groups.items()):
        x = np.array([_terms(r["macs"], r["outputs"], r.get("pixels")) for r in rs], dtype=float)
        row: dict = {"layers": len(rs)}
        for m in MEASURES:
            row[m] = _fit(x, np.array([max(r[m], 1) for r in rs], dtype=np.float64))
        table[key] = row
    return table


def cost_table(rows: list[dict]) -> str:
    """`micromix memory --cost`: one line per layer and the network total (Cortex-M4)."""
    head = (
        f"{'layer':<20} {'kernel':<19} {'in/w/out':>9} {'MACs':>11} {'instr':>12} "
        f"{'est.cycles':>12}"
    )
    lines = [
        "Modelled cost on a Cortex-M4 (assets/mcu_cost_table.json, fitted to qemu counts by "
        "bench/mcu_cost.py; no memory wait states):",
        head,
        "-" * len(head),
    ]
    for r in rows:
        b = "/".join("-" if x is None else str(x) for x in r["bits"])
        ins, cyc = r["instructions"], r["est_cycles"]
        lines.append(
            f"{r['layer'][:20]:<20} {r['kernel'][:19]:<19} {b:>9} {r['macs']:>11,} "
            f"{'n/a' if ins is None else f'{ins:,}':>12} {'n/a' if cyc is None else f'{cyc:,}':>12}"
        )
    known = [r for r in rows if r["instructions"] is not None]
    ins = sum(r["instructions"] for r in known)
    cyc = sum(r["est_cycles"] for r in known)
    missing = len(rows) - len(known)
    lines.append("-" * len(head))
    lines.append(
        f"{'network':<20} {'':<19} {'':>9} {sum(r['macs'] for r in rows):>11,} {ins:>12,} "
        f"{cyc:>12,}"
    )
    if missing:
        lines.append(
            f"({missing} layer(s) have no measured row for their kernel and bits: not in the total)"
        )
    return "\n".join(lines)
