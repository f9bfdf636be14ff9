"""The cost model (micromix.cost): per kernel and bits, fitted to qemu counts by
bench/mcu_cost.py, as `micromix memory --cost` and the benchmarks use it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from micromix import cost
from micromix.cost import (
    cost_key,
    cost_rows,
    fit_cost_table,
    layer_cost,
    load_cost_table,
    network_cost,
    patch_class,
    row_key,
)
from micromix.graph import trace
from micromix.memory import memory_report
from micromix.models import create
from micromix.policy import Policy

ROOT = Path(__file__).resolve().parents[1]
MEASURED = json.loads((ROOT / "results" / "mcu_cost.json").read_text())


def mobilenet(name: str = "mobilenet_v1", width: float = 0.25):
    return trace(create(name, width=width, resolution=28, in_channels=1, num_classes=10))


def exact(a: float, b: float, macs: int, outputs: int) -> int:
    return round(a * macs + b * outputs)


@settings(max_examples=40, deadline=None)
@given(
    a=st.floats(0.5, 20),
    b=st.floats(0.0, 300),
    shapes=st.lists(
        st.tuples(st.integers(1, 512), st.integers(1, 4096)), min_size=2, max_size=6, unique=True
    ),
)
def test_fit_recovers_the_coefficients_of_exact_counts(a, b, shapes) -> None:
    """Counts made by a known per-MAC and per-output cost (the oracle) on layers of at least
    two MACs-per-output ratios: the fitted row predicts every layer within rounding."""
    ratios = {m for m, _ in shapes}
    if len(ratios) < 2:
        return
    layers = [
        {"kernel": "mm_x", "bits": [8, 4, 2], "macs": m * o, "outputs": o,
         "instructions": exact(a, b, m * o, o), "est_cycles": exact(2 * a, b, m * o, o)}
        for m, o in shapes
    ]  # fmt: skip
    table = fit_cost_table(layers)
    assert list(table) == ["mm_x|8|4|2"] and table["mm_x|8|4|2"]["layers"] == len(shapes)
    for r in layers:
        c = layer_cost("mm_x|8|4|2", r["macs"], r["outputs"], table)
        assert c.instructions == pytest.approx(r["instructions"], rel=1e-3, abs=2)
        assert c.est_cycles == pytest.approx(r["est_cycles"], rel=1e-3, abs=2)


@settings(max_examples=30, deadline=None)
@given(
    coef=st.tuples(st.floats(0.5, 20), st.floats(0, 50), st.floats(0, 300), st.floats(0, 900)),
    shapes=st.lists(
        st.tuples(st.integers(1, 300), st.integers(2, 64), st.integers(1, 32)),
        min_size=6,
        max_size=10,
        unique=True,
    ),
)
def test_fit_recovers_per_pixel_and_per_channel_costs(coef, shapes) -> None:
    """Counts made by a known cost per MAC, output, output pixel and output channel (a stem's
    gather per pixel, a depthwise group's set-up per channel) on layers of varied shapes: the
    fitted row prices every layer within rounding, and a layer it was not fitted on too (two
    pixels or more: a one-pixel layer has a row of its own)."""
    a, b, c, d = coef

    def count(row, px, ch):
        return round(a * row * px * ch + b * px * ch + c * px + d * ch)

    layers = [
        {"kernel": "mm_x", "bits": [8, 8, 8], "macs": row * px * ch, "outputs": px * ch,
         "pixels": px, "instructions": count(row, px, ch), "est_cycles": count(row, px, ch)}
        for row, px, ch in shapes
    ]  # fmt: skip
    x = np.array([[r["macs"], r["outputs"], r["pixels"], r["outputs"] // r["pixels"]]
                  for r in layers], dtype=float)  # fmt: skip
    if np.linalg.matrix_rank(x) < 4:
        return
    table = fit_cost_table(layers)
    for r in [*layers, {"macs": 7 * 9 * 5, "outputs": 45, "pixels": 9}]:
        want = count(r["macs"] // r["outputs"], r["pixels"], r["outputs"] // r["pixels"])
        got = layer_cost("mm_x|8|8|8", r["macs"], r["outputs"], table, r["pixels"])
        assert got.est_cycles == pytest.approx(want, rel=1e-3, abs=3)


def test_one_shape_gives_a_one_term_row_that_reproduces_it() -> None:
    """A key measured on one layer shape only: a single non-negative coefficient, exact on it;
    keys stay apart (kernel and each of the three bits)."""
    layers = [
        {"kernel": "mm_avgpool", "bits": [4, None, 8], "macs": 1024, "outputs": 16,
         "instructions": 12_345, "est_cycles": 17_000},
        {"kernel": "mm_avgpool", "bits": [8, None, 8], "macs": 1024, "outputs": 16,
         "instructions": 9_000, "est_cycles": 11_000},
    ]  # fmt: skip
    table = fit_cost_table(layers)
    assert set(table) == {"mm_avgpool|4|0|8", "mm_avgpool|8|0|8"}
    for r in layers:
        row = table[cost_key(r["kernel"], *r["bits"])]
        assert min(row["instructions"]) == 0 and max(row["instructions"]) > 0
        c = layer_cost(cost_key(r["kernel"], *r["bits"]), 1024, 16, table)
        assert (c.instructions, c.est_cycles) == (r["instructions"], r["est_cycles"])


@pytest.mark.parametrize("net", ["demo", "kws", "vww", "ic", "ad"])
def test_shipped_table_is_within_5_percent_of_each_measured_network(net: str) -> None:
    """The shipped table's total over a measured network's layers (their kernel, bits, MACs,
    outputs as the benchmark recorded them) against the counted estimated cycles."""
    run = MEASURED["networks"][net]["cortex-m4"]["micromix_w8a8"]
    total = 0
    for r in run["layers"]:
        c = layer_cost(row_key(load_cost_table(), r), r["macs"], r["outputs"], None, r["pixels"])
        assert c is not None, r
        total += c.est_cycles
    assert abs(total / run["est_cycles"] - 1) < 0.05


def test_demo_graph_through_the_memory_report_matches_the_measured_layers() -> None:
    """cost_rows reads kernel and bits from the memory report of the graph: the demo network
    at W8/A8 gets the kernels the benchmark recorded, and a total within 5 % of the count."""
    g = mobilenet()
    rows = cost_rows(g, Policy.uniform(g, 8))
    run = MEASURED["networks"]["demo"]["cortex-m4"]["micromix_w8a8"]
    assert [r["kernel"] for r in rows] == [r["kernel"] for r in run["layers"]]
    assert [r["macs"] for r in rows] == [r["macs"] for r in run["layers"]]
    assert abs(sum(r["est_cycles"] for r in rows) / run["est_cycles"] - 1) < 0.05


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_every_kernel_and_bits_the_search_can_emit_has_a_row(seed: int) -> None:
    """Random policies over {2, 4, 8} on the zoo networks (depthwise, pointwise, residual
    adds, pooling, classifier): no layer is left without a cost."""
    rng = np.random.default_rng(seed)
    for g in (mobilenet(), mobilenet("mobilenet_v2", 0.35), mobilenet("mnasnet", 0.35)):
        u = Policy.uniform(g, 8)
        weights = {k: int(rng.choice([2, 4, 8])) for k in u.weights}
        fixed = (g.input, g.output)
        acts = {
            k: v if k in fixed else int(rng.choice([2, 4, 8])) for k, v in u.activations.items()
        }
        rows = cost_rows(g, Policy(weights, acts))
        missing = [(r["kernel"], r["bits"]) for r in rows if r["instructions"] is None]
        assert not missing


def test_the_row_is_chosen_by_the_reported_kernel_and_bits_only(monkeypatch) -> None:
    """A table with one row costs exactly the layers whose memory report names that kernel at
    those bits, with that row's coefficients; every other layer has no cost."""
    g = mobilenet()
    pol = Policy.uniform(g, 8)
    kernels = [x.kernel for x in memory_report(g, pol).layers]
    table = {"mm_depthwise|8|8|8": {"layers": 1, "instructions": [2.0, 10.0],
                                    "est_cycles": [3.0, 0.0]}}  # fmt: skip
    monkeypatch.setattr(cost, "load_cost_table", lambda path=None: table)
    costs = network_cost(g, pol)
    for op, k in zip(g.ops, kernels, strict=True):
        c = costs[op.name]
        if k != "mm_depthwise":
            assert c is None
            continue
        assert c.instructions == 2 * op.macs + 10 * int(np.prod(op.out_shape))
        assert c.est_cycles == 3 * op.macs
    assert any(c is not None for c in costs.values())
    assert network_cost(g, Policy.uniform(g, 4))[g.ops[1].name] is None  # other bits


def test_memory_cost_view_leaves_no_layer_out(capsys) -> None:
    """`micromix memory --cost` costs every layer (uniform 4 bits: sub-byte kernels too) and
    its total is the sum of the layers'."""
    from micromix.cli import main

    assert main(["memory", "--json", "--cost", "--bits", "4"]) == 0
    out = json.loads(capsys.readouterr().out)["cost"]
    g = mobilenet()
    costs = network_cost(g, Policy.uniform(g, 4))
    assert [r["layer"] for r in out["layers"]] == list(costs)
    assert all(r["instructions"] is not None for r in out["layers"])
    assert out["layers_without_measurement"] == 0
    assert out["est_cycles"] == sum(c.est_cycles for c in costs.values())
    assert main(["memory", "--cost", "--bits", "4"]) == 0
    text = capsys.readouterr().out
    assert f"{out['est_cycles']:,}" in text and "no measured row" not in text


def test_one_pixel_layers_have_their_own_row_and_fall_back_without_one() -> None:
    """A dense layer (one output pixel) runs a kernel's one-pixel path: fitted apart, and
    priced by the kernel's general row where the table has no one-pixel row."""
    conv = [
        {"kernel": "k", "bits": [8, 8, 8], "macs": m, "outputs": o, "pixels": 4,
         "instructions": 2 * m + 10 * o, "est_cycles": 2 * m + 10 * o}
        for m, o in ((1000, 10), (4000, 20), (9000, 90))
    ]  # fmt: skip
    dense = [dict(r, pixels=1, est_cycles=3 * r["macs"], instructions=3 * r["macs"]) for r in conv]
    table = fit_cost_table(conv + dense)
    assert set(table) == {"k|8|8|8", "k|8|8|8|1px"}
    r = {"kernel": "k", "bits": [8, 8, 8], "pixels": 1}
    assert layer_cost(row_key(table, r), 5000, 5, table).est_cycles == 15000
    assert layer_cost(row_key(table, dict(r, pixels=3)), 5000, 5, table).est_cycles == 10050
    general = {k: v for k, v in table.items() if not k.endswith("1px")}
    assert row_key(general, r) == "k|8|8|8"


def test_a_stem_on_byte_patches_has_its_own_row() -> None:
    """A conv on 1-3 input channels (byte patches: kws's and vww's stems) is keyed apart from
    the convs on whole words of channels, whose cost per MAC the pair loops set, and the fit
    gives each class its own coefficients."""
    import torch.nn as nn

    net = nn.Sequential(nn.Conv2d(1, 64, (10, 4), 2, (5, 1)), nn.ReLU(), nn.Conv2d(64, 8, 3))
    g = trace(net, input_shape=(1, 1, 49, 10))  # kws's stem
    rows = cost_rows(g, Policy.uniform(g, 8), table={})
    assert [r["kernel"] for r in rows] == ["mm_conv", "mm_conv"]
    assert [r["patch"] for r in rows] == [True, False]
    keys = {row_key({}, r) for r in rows}
    assert keys == {"mm_conv|8|8|8"}  # no patch row in the table: the kernel's own row
    meas = [dict(r, instructions=3 * r["macs"], est_cycles=(3 if r["patch"] else 1) * r["macs"])
            for r in rows]  # fmt: skip
    table = fit_cost_table(meas)
    assert set(table) == {"mm_conv|8|8|8|patch", "mm_conv|8|8|8"}  # kws's rows: 40 bytes
    assert patch_class(dict(rows[0], macs=27, outputs=1)) == "patch_tail"  # a 3x3x3 stem's
    for r in meas:
        c = layer_cost(row_key(table, r), r["macs"], r["outputs"], table)
        assert c.est_cycles == r["est_cycles"]
