"""The measured cost table (bench/mcu_cost.py under qemu) as the search would use it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from micromix import cost
from micromix.cost import cost_key, layer_cost, layer_type, load_cost_table, network_cost
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


def mobilenet():
    return trace(create("mobilenet_v1", width=0.25, resolution=28, in_channels=1, num_classes=10))


def test_cost_grows_with_the_layer_macs() -> None:
    """At the same type and bits, a layer with more MACs costs more, in proportion: the table
    is per MAC, so the search may compare layers of any size by it."""
    g = mobilenet()
    pws = sorted((o for o in g.ops[1:] if layer_type(o) == "pointwise 1x1"), key=lambda o: o.macs)
    small, big = pws[0], pws[-1]
    assert big.macs >= 2 * small.macs
    for bits in ((8, 8, 8), (4, 4, 4), (2, 2, 2)):
        a, b = layer_cost(small, *bits), layer_cost(big, *bits)
        assert a.instructions < b.instructions and a.est_cycles < b.est_cycles
        ratio = b.instructions / a.instructions
        assert ratio == pytest.approx(big.macs / small.macs, rel=0.01)


def test_a_measured_row_is_used_when_present_and_only_then(monkeypatch) -> None:
    """The cost comes from the table's row for the layer's (type, bits), and from nothing else:
    another table gives other figures, and a layer whose row is gone has no cost."""
    g = mobilenet()
    pw = next(o for o in g.ops[1:] if layer_type(o) == "pointwise 1x1")
    shipped = load_cost_table()
    key = cost_key("pointwise 1x1", 4, 4, 4)
    before = layer_cost(pw, 4, 4, 4)
    row = shipped[key]
    doubled = {
        key: {**row, "instructions_per_mac": 2 * row["instructions_per_mac"], "cycles_per_mac": 3}
    }
    monkeypatch.setattr(cost, "load_cost_table", lambda path=None: doubled)
    after = layer_cost(pw, 4, 4, 4)
    assert after.instructions == pytest.approx(2 * before.instructions, abs=1)
    assert after.est_cycles == 3 * pw.macs
    assert layer_cost(pw, 8, 8, 8) is None  # its row is not in this table
    costs = network_cost(g, Policy.uniform(g, 4, 4))
    assert {n for n, c in costs.items() if c is not None} == {
        o.name for o in g.ops[1:] if layer_type(o) == "pointwise 1x1"
    }


def test_memory_cost_view_shows_the_layer_costs(capsys) -> None:
    """`micromix memory --cost` reports what the search uses (layer_cost) and a total that
    leaves out only the layers without a measured row."""
    from micromix.cli import main

    assert main(["memory", "--json", "--cost", "--bits", "4"]) == 0
    out = json.loads(capsys.readouterr().out)["cost"]
    g = mobilenet()
    costs = network_cost(g, Policy.uniform(g, 4))
    by_name = {r["layer"]: r for r in out["layers"]}
    assert set(by_name) == set(costs)
    for name, c in costs.items():
        want = None if c is None else c.instructions
        assert by_name[name]["instructions"] == want, name
    pw = next(r for r in out["layers"] if r["type"] == "pointwise 1x1")
    assert pw["bits"] == [4, 4, 4] and pw["instructions"] > 0
    known = [r for r in out["layers"] if r["instructions"] is not None]
    assert out["instructions"] == sum(r["instructions"] for r in known)
    assert main(["memory", "--cost", "--bits", "4"]) == 0
    text = capsys.readouterr().out
    assert f"{pw['instructions']:,}" in text and f"{out['est_cycles']:,}" in text
