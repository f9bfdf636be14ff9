from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from micromix.errors import MicromixError
from micromix.graph import trace
from micromix.memory import (
    activation_bytes,
    memory_report,
    packed_bytes,
    scratch_bytes,
    size_table,
)
from micromix.models import create
from micromix.ops import of
from micromix.ops.common import window_overlap
from micromix.ops.conv import IN_PLACE_LAG
from micromix.policy import Policy
from micromix.schedule import (
    Scheduling,
    cells,
    check_groups,
    plan,
    ring_rows,
    row_fetches,
    row_stem,
    scheduled_report,
    split_points,
    stage_ops,
    stage_overlap,
    stem_windows,
)

SCHEDULES = ("layer", "inplace", "patch", "auto", "stream")


@functools.cache
def zoo(name: str, width: float, res: int, chans: int = 1):
    m = create(name, width=width, resolution=res, in_channels=chans, num_classes=10)
    return trace(m, (1, chans, res, res))


STUDY = [("mobilenet_v1", 0.25), ("mobilenet_v2", 0.35), ("mnasnet", 0.35)]


def random_policy(g, draw_bits) -> Policy:
    base = Policy.uniform(g, 8)
    inner = [t for t in g.tensors if t not in (g.input, g.output)]
    return base.replace(
        weights={o.name: draw_bits() for o in g.weight_ops},
        activations={t: draw_bits() for t in inner},
    )


def _split_ahead(m, g) -> bool:
    """The split tensor starts far enough before the input it overwrites (checked byte by byte
    in test_split_tensor_written_over_the_consumed_input_never_clobbers_a_later_read)."""
    (_, h, w), (_, hs, ws) = g.tensors[g.input].shape, g.tensors[m.split].shape
    pix_in, pix_out = m.member_bytes[g.input] // (h * w), m.member_bytes[m.split] // (hs * ws)
    need = stage_overlap(g, m.split, m.grid, pix_in, pix_out)
    return m.tensor_offset(g.input) - m.tensor_offset(m.split) >= need


def _overlap_free(m, g) -> bool:
    """No two tensors (or staging buffers) live at the same step share a byte, except the
    output of an op written in place and the input it writes over, at that op's step, and a
    patch stage's split tensor far enough ahead of the input; all inside the arena (an oracle
    apart from schedule.check_groups)."""
    for s, op in enumerate(g.ops):
        spans = sorted(
            (m.tensor_offset(n), m.tensor_offset(n) + b, n)
            for n, b in m.member_bytes.items()
            if m.member_live[n][0] <= s <= m.member_live[n][1] and b
        )
        for i, (_, hi, a) in enumerate(spans):
            for lo2, _, b in spans[i + 1 :]:
                if lo2 >= hi:
                    break
                if not (op.name in m.inplace and {a, b} <= {op.output, *op.inputs}):
                    if {a, b} != {g.input, m.split} or not _split_ahead(m, g):
                        return False
    return all(m.tensor_offset(n) + b <= m.arena_bytes for n, b in m.member_bytes.items())


@pytest.mark.parametrize("name, width", STUDY)
def test_layer_is_memory_reports_ram(name, width):
    g = zoo(name, width, 28)
    for bits in (8, 4, 2):
        p = Policy.uniform(g, bits).replace(activations={g.input: 8, g.output: 8})
        assert plan(g, p, "layer").ram_bytes == memory_report(g, p).ram_bytes


def test_layer_is_memory_reports_ram_on_a_residual_net(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 12, 12))
    p = Policy.uniform(g, 8)
    assert plan(g, p, "layer").ram_bytes == memory_report(g, p).ram_bytes


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(STUDY))
def test_every_plan_places_its_buffers_apart_and_inplace_never_above_layer(data, model):
    g = zoo(*model, 28)
    p = random_policy(g, lambda: data.draw(st.sampled_from((2, 3, 4, 8))))
    layer = plan(g, p, "layer")
    for kind in SCHEDULES:
        m = plan(g, p, kind, max_recompute=0.5)
        assert check_groups(m, g) and _overlap_free(m, g)
        assert m.ram_bytes == m.arena_bytes + scratch_bytes(g, p.weights)
        assert m.ram_bytes <= layer.ram_bytes or kind == "patch"
        # every tensor has a home buffer that is live whenever the tensor is
        for t, info in g.tensors.items():
            first, last = m.live[m.tensors[t]]
            assert first <= info.first and (last >= info.last or m.split is not None)
    assert plan(g, p, "auto", 0.5).ram_bytes <= min(
        plan(g, p, k, 0.5).ram_bytes for k in ("layer", "inplace", "patch")
    )


class DwChain(nn.Module):
    """conv 1 -> 4 channels, depthwise 3x3 (stride s), pointwise 4 -> 2: one in-place op."""

    def __init__(self, stride: int):
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.dw = nn.Conv2d(4, 4, 3, stride=stride, padding=1, groups=4)
        self.pw = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.pw(self.dw(self.a(x).relu()).relu())


@pytest.mark.parametrize("stride, abits", [(1, 8), (2, 8), (1, 4), (2, 2), (1, 3)])
def test_inplace_depthwise_output_starts_its_overlap_before_the_input(stride, abits):
    g = trace(DwChain(stride), (1, 1, 8, 8))
    p = Policy.uniform(g, 8).replace(activations={"a": abits, "dw": abits})
    pix = packed_bytes(4, abits)
    d = window_overlap(g.op("dw"), pix, pix)
    assert 0 <= d <= (8 + 2) * pix  # at most an input row and two pixels
    o = 8 // stride
    a, dw, pw_out = 64 * pix, o * o * pix, o * o * 2
    layer = max(64 + a, a + dw, dw + pw_out)
    assert plan(g, p, "layer").arena_bytes == layer
    m = plan(g, p, "inplace")
    assert m.arena_bytes <= layer
    if "dw" in m.inplace:
        assert m.tensor_offset("a") - m.tensor_offset("dw") == d  # the output starts d before
    # each op written in place starts its output exactly its kernel's overlap before its input
    for name in m.inplace:
        op = g.op(name)
        w_bits = p.weights[name] if op.has_weight else None
        need = of(op).in_place(op, p.activations[op.inputs[0]], p.activations[name], w_bits)
        assert m.tensor_offset(op.inputs[0]) - m.tensor_offset(name) == need


def test_inplace_widening_pointwise_needs_only_its_growth():
    """A 1 x 1 conv from 4 to 16 channels written over its input: the output starts its growth
    over the input before it, plus the input pixels its kernel may still read while it writes
    the last one (IN_PLACE_LAG: mm_pointwise8 computes two pixels together)."""
    g = trace(nn.Sequential(nn.Conv2d(4, 16, 1)), (1, 4, 8, 8))
    p = Policy.uniform(g, 8)
    x, y = g.input, g.ops[0].name
    m = plan(g, p, "inplace")
    assert m.inplace == (y,)
    lag = IN_PLACE_LAG[memory_report(g, p).layers[0].kernel]
    # the last output pixel (63) ends where the first input pixel still read (64 - lag) starts
    assert m.tensor_offset(x) - m.tensor_offset(y) == 64 * 16 - (64 - lag) * 4
    assert m.arena_bytes == 64 * 16 + lag * 4  # the output and `lag` input pixels, not 64
    assert plan(g, p, "layer").arena_bytes == 64 * 4 + 64 * 16


def test_inplace_refused_when_bits_change():
    g = trace(DwChain(1), (1, 1, 8, 8))
    p = Policy.uniform(g, 8).replace(activations={"a": 8, "dw": 4})
    assert "dw" not in plan(g, p, "inplace").inplace  # the depthwise kernel needs equal bits


def test_inplace_elementwise_writes_over_the_dying_input(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 12, 12))
    p = Policy.uniform(g, 8)
    m = plan(g, p, "inplace")
    add = next(o for o in g.ops if o.kind == "add")
    assert add.name in m.inplace
    assert m.tensors[add.output] in {m.tensors[t] for t in add.inputs}


def test_patch_lowers_the_peak_of_a_net_with_a_large_first_stage():
    g = zoo("mobilenet_v1", 0.25, 96, 3)
    p = Policy.uniform(g, 8)
    layer, patch = plan(g, p, "layer"), plan(g, p, "patch", 0.10)
    assert patch.ram_bytes < 0.75 * layer.ram_bytes
    assert 0 < patch.mac_overhead <= 0.10
    assert patch.grid >= 2 and patch.split in split_points(g)
    # the network input and the split tensor are the only full tensors of the stage
    stage = stage_ops(g, patch.split)
    for o in stage[:-1]:
        assert (
            patch.buffer_bytes[patch.tensors[o.output]] < memory_report(g, p).tensor_bytes[o.name]
        )


def test_recompute_cap_is_respected():
    g = zoo("mobilenet_v1", 0.25, 96, 3)
    p = Policy.uniform(g, 8)
    for cap in (0.0, 0.02, 0.1, 0.3):
        m = plan(g, p, "auto", cap)
        assert m.mac_overhead <= cap + 1e-12
    assert plan(g, p, "auto", 0.3).ram_bytes <= plan(g, p, "auto", 0.02).ram_bytes
    assert plan(g, p, "patch", 0.0).mac_overhead == 0  # a split after the stem recomputes nothing


def test_grid_one_is_layer_by_layer_work():
    g = zoo("mobilenet_v2", 0.35, 28)
    p = Policy.uniform(g, 8)
    for s in split_points(g)[:6]:
        assert plan(g, p, "patch", split=s, grid=1).mac_overhead == 0


def test_split_inside_a_residual_block_is_refused():
    g = zoo("mobilenet_v2", 0.35, 28)
    p = Policy.uniform(g, 8)
    add = next(o for o in g.ops if o.kind == "add")
    inside = g.ops[g.ops.index(add) - 1].name  # the projection: the skip is live across it
    assert inside not in split_points(g) and add.name in split_points(g)
    with pytest.raises(MicromixError, match="residual"):
        plan(g, p, "patch", split=inside, grid=2)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(schedule="fastest"), "unknown schedule"),
        (dict(max_recompute=-0.1), "fraction"),
        (dict(schedule="layer", grid=2), "only for the patch"),
        (dict(schedule="patch", split="nope", grid=2), "no layer"),
        (dict(schedule="patch", split="features.0.0", grid=99), "grid does not fit"),
        (dict(schedule="patch", split="features.0.0", grid=0), "whole number"),
    ],
)
def test_bad_settings_are_one_sentence(kwargs, needle):
    g = zoo("mobilenet_v1", 0.25, 28)
    with pytest.raises(MicromixError, match=needle):
        plan(g, Policy.uniform(g, 8), **kwargs)


# ---- the searches' view: Scheduling, search_table, bound --------------------------------------


@pytest.mark.parametrize("name, width", STUDY)
@pytest.mark.parametrize("schedule", ["inplace", "patch", "auto", "stream"])
def test_search_table_adds_up_to_the_plans_live_buffers_at_8_bits(name, width, schedule):
    g = zoo(name, width, 28)
    eight = Policy.uniform(g, 8)
    m = plan(g, eight, schedule)
    table = Scheduling(schedule).sizes(g)
    for s, step in enumerate(m.steps):
        assert table.live_at(eight.activations, s) == sum(b for _, b in step.buffers), s
    # a tensor the table counts shrinks with its own bits: the sweeps have something to cut
    cuttable = {t for names in table.live for t in names} - {g.input, g.output}
    assert cuttable and all(table.act[t][2] < table.act[t][8] for t in cuttable)


def test_search_table_of_layer_is_memory_size_table():
    g = zoo("mobilenet_v1", 0.25, 28)
    assert Scheduling("layer").sizes(g) == size_table(g)


@settings(max_examples=9, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(["auto", "patch", "stream"]))
def test_bound_is_never_below_the_exact_scheduled_ram(data, schedule):
    g = zoo("mobilenet_v1", 0.25, 28)
    s = Scheduling(schedule)
    hint = s.patch_hint(g)
    assert hint is not None
    p = random_policy(g, lambda: data.draw(st.sampled_from((2, 4, 8))))
    exact, bound = s.report(g, p), s.bound(g, p, hint)
    assert bound.ram_bytes >= exact.ram_bytes == scheduled_report(g, p, schedule).ram_bytes
    assert bound.flash_bytes == exact.flash_bytes
    # at the policy the hint was chosen for, the bound is the exact figure
    eight = Policy.uniform(g, 8)
    assert s.bound(g, eight, hint).ram_bytes == s.report(g, eight).ram_bytes


@pytest.mark.parametrize(
    "schedule, cap, needle",
    [("fastest", 0.1, "unknown schedule"), ("auto", -0.1, "fraction >= 0"),
     ("auto", True, "fraction >= 0"), ("auto", "0.1", "fraction >= 0")],
)  # fmt: skip
def test_scheduling_refuses_bad_settings_in_one_sentence(schedule, cap, needle):
    with pytest.raises(MicromixError, match=needle) as e:
        Scheduling(schedule, cap)
    assert str(e.value).count(". ") == 0 and str(e.value).endswith(".")


def test_scheduling_round_trips_as_plain_json():
    s = Scheduling("patch", 0.25)
    assert json.loads(json.dumps(s.to_json())) == {"schedule": "patch", "max_recompute": 0.25}
    assert Scheduling.from_json(s.to_json()) == s


@pytest.mark.parametrize("name, width, grid", [("mobilenet_v1", 0.25, 4), ("mnasnet", 0.35, 3)])
def test_split_tensor_written_over_the_consumed_input_never_clobbers_a_later_read(
    name, width, grid
):
    """A byte-level run of the patch stage: each cell reads its input patch, then writes its
    slice of the split tensor, placed stage_overlap bytes before the input; no cell reads a
    byte an earlier cell wrote, and the overlap saves part of the split tensor."""
    g = zoo(name, width, 48, 3)
    p = Policy.uniform(g, 8)
    split = plan(g, p, "patch", 0.5).split
    (ci, hi, wi), (cs, hs, ws) = g.tensors[g.input].shape, g.tensors[split].shape
    d = stage_overlap(g, split, grid, ci, cs)
    dirty = np.zeros(d + ci * hi * wi + cs * hs * ws, dtype=bool)  # split at 0, input at d
    for cell in cells(g, split, grid):
        st = next(s for s in cell if s.staged)
        for r in range(*st.in_rows):
            lo = d + (r * wi + st.in_cols[0]) * ci
            assert not dirty[lo : d + (r * wi + st.in_cols[1]) * ci].any()
        last = next(s for s in cell if s.op.output == split)
        for r in range(*last.rows):
            dirty[(r * ws + last.cols[0]) * cs : (r * ws + last.cols[1]) * cs] = True
    assert 0 < d < cs * hs * ws
    m = plan(g, p, "auto")
    if m.split is not None and m.tensors[m.split] == m.tensors[g.input]:
        assert m.tensor_offset(g.input) - m.tensor_offset(m.split) >= stage_overlap(
            g, m.split, m.grid, ci, cs
        )


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(STUDY), st.integers(2, 8), st.integers(0, 5), st.integers(0, 1))
def test_ring_of_streamed_rows_holds_every_row_a_cell_copies_and_no_fewer(model, grid, k, row):
    """Row by row, as the C reads them: rows arrive once each into slot y mod R (ring_rows)
    before the cell that first needs them; every cell finds each row of its input patch in its
    slot, and with one slot fewer some cell would not. The same for the ring of a row stem's
    output rows (`row` 1)."""
    g = zoo(*model, 48, 3)
    split = split_points(g)[min(k, len(split_points(g)) - 1)]
    if grid > g.tensors[split].shape[1] or (row and row_stem(g, split) is None):
        return
    cell_list = cells(g, split, grid, row)
    first = g.ops[0].output if row else g.input

    def run(r: int) -> bool:
        slot, have = [None] * r, 0
        for cell, need in zip(cell_list, row_fetches(cell_list)):
            for y in range(have, need):
                slot[y % r] = y
            have = need
            st_ = next(s for s in cell if s.staged)
            if any(slot[y % r] != y for y in range(*st_.in_rows)):
                return False
        return True

    r = ring_rows(cell_list)
    assert run(r) and (r == 1 or not run(r - 1))
    assert all(st.staged == (st.op.inputs == (first,)) for c in cell_list for st in c)
    m = plan(g, Policy.uniform(g, 8), "patch", split=split, grid=grid, stream_input=True)
    if m.row_ops == row:  # the plan's ring is the one simulated here
        c, _, w = g.tensors[first].shape
        assert m.member_bytes[first] == r * w * c and m.stream_input


@pytest.mark.parametrize("name, width", STUDY)
def test_row_stem_reads_each_input_row_once_through_a_line_buffer(name, width):
    """The stem's windows move down the image and never back (so a line buffer of the largest
    window, refilled in order, holds each); a streamed plan that runs the stem by rows holds
    exactly that buffer for the input, a ring for the stem's output, and recomputes none of
    the stem's MACs."""
    g = zoo(name, width, 96, 3)
    p = Policy.uniform(g, 8)
    m = plan(g, p, "stream")
    assert m.row_ops == 1 and row_stem(g, m.split) is g.ops[0]
    ws = stem_windows(g, g.ops[0])
    los, his = [w.in_rows[0] for w in ws], [w.in_rows[1] for w in ws]
    assert los == sorted(los) and his == sorted(his) and 0 <= los[0] and his[-1] <= 96
    window = max(h - lo for lo, h in zip(los, his))
    assert m.member_bytes[g.input] == window * 96 * 3 < 96 * 96 * 3
    stem_out = g.tensors[g.ops[0].output]
    assert m.member_bytes[stem_out.name] < activation_bytes(stem_out.shape, 8)
    without = plan(g, p, "patch", split=m.split, grid=m.grid)  # the input in full, no row stem
    assert without.row_ops == 0 and m.macs < without.macs  # the stem is no longer recomputed
