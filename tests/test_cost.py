"""The measured cost table (bench/mcu_cost.py under qemu) as the search would use it."""

from __future__ import annotations

import json
from pathlib import Path

from micromix.cost import layer_cost, load_cost_table, network_cost
from micromix.graph import trace
from micromix.models import create
from micromix.policy import Policy

ROOT = Path(__file__).resolve().parents[1]


def test_table_reproduces_the_measured_w8a8_network() -> None:
    g = trace(create("mobilenet_v1", width=0.25, resolution=28, in_channels=1, num_classes=10))
    costs = network_cost(g, Policy.uniform(g, 8))
    assert all(c is not None for c in costs.values())
    measured = json.loads((ROOT / "results" / "mcu_cost.json").read_text())["micromix_w8a8"]
    total = sum(c.instructions for c in costs.values())
    # Pooled per (type, bits) over the policies that ran those bits; the input copy is outside.
    assert abs(total - measured["instructions"]) / measured["instructions"] < 0.03
    assert sum(c.est_cycles for c in costs.values()) > total  # cycles >= instructions here


def test_sub_byte_layers_have_their_own_rows_and_unknown_ones_none() -> None:
    table = load_cost_table()
    assert "pointwise 1x1|4|4|4" in table and "pointwise 1x1|8|8|8" in table
    g = trace(create("mobilenet_v1", width=0.25, resolution=28, in_channels=1, num_classes=10))
    pw = g.ops[6]
    assert layer_cost(pw, 4, 4, 4).instructions != layer_cost(pw, 8, 8, 8).instructions
    assert layer_cost(pw, 3, 5, 7) is None
