from __future__ import annotations

import random

import pytest
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from micromix.graph import WeightScales, trace
from micromix.memory import (
    activation_bytes,
    check_plan,
    flash_bytes,
    kernel_of,
    live_bytes,
    memory_report,
    packed_bytes,
    param_arrays,
    param_bytes,
    plan_arena,
    ram_lower_bound,
    scratch_bytes,
    scratch_need,
    size_table,
    tensor_sizes,
    weight_bytes,
)
from micromix.models import create
from micromix.policy import Policy


class OddChain(nn.Module):
    """1 -> 5 -> 3 channels: odd counts exercise the per-row and per-pixel byte padding."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 5, 3, padding=1, bias=False)
        self.ba = nn.BatchNorm2d(5)
        self.ra = nn.ReLU()
        self.b = nn.Conv2d(5, 3, 1, bias=False)
        self.bb = nn.BatchNorm2d(3)
        self.rb = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(3, 7)

    def forward(self, x):
        x = self.rb(self.bb(self.b(self.ra(self.ba(self.a(x))))))
        return self.fc(self.pool(x).flatten(1))


def test_packed_sizes_by_hand():
    assert packed_bytes(9, 8) == 9 and packed_bytes(9, 4) == 5 and packed_bytes(9, 2) == 3
    assert activation_bytes((5, 4, 4), 4) == 16 * 3  # 20 bits per pixel -> 3 bytes
    assert activation_bytes((3, 2, 2), 2) == 4 * 1


@pytest.mark.parametrize("bits, w_a, w_b, w_fc", [(8, 45, 15, 21), (4, 25, 9, 14), (2, 15, 6, 7)])
def test_odd_chain_flash_by_hand(bits, w_a, w_b, w_fc):
    g = trace(OddChain(), (1, 1, 4, 4))
    a, b, pool, fc = g.ops
    assert weight_bytes(a, bits) == w_a  # 5 rows of 9 weights
    assert weight_bytes(b, bits) == w_b  # 3 rows of 5 weights
    assert weight_bytes(fc, bits) == w_fc  # 7 rows of 3 weights
    params = 9 * 5 + 9 * 3 + 5 + 9 * 7  # bias+mult+shift per channel; pooling: mult+shift
    assert param_bytes(a) + param_bytes(b) + param_bytes(pool) + param_bytes(fc) == params
    p = Policy.uniform(g, bits)
    assert flash_bytes(g, p) == w_a + w_b + w_fc + params
    assert memory_report(g, p).flash_bytes == flash_bytes(g, p)


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_per_tensor_dense_params_by_hand(bits):
    """WeightScales("tensor"): the linear stores its 7 biases and one multiplier and shift
    (33 B instead of 63); the convolutions keep theirs per channel. The search's size table
    counts the same FLASH as the report."""
    g = trace(OddChain(), (1, 1, 4, 4), WeightScales(dense="tensor"))
    a, b, pool, fc = g.ops
    assert (a.per_tensor, b.per_tensor, fc.per_tensor) == (False, False, True)
    assert param_arrays(fc) == [("bias", "int32", 7), ("mult", "int32", 1), ("shift", "int8", 1)]
    p = Policy.uniform(g, bits)
    w = {8: 45 + 15 + 21, 4: 25 + 9 + 14, 2: 15 + 6 + 7}[bits]
    assert memory_report(g, p).flash_bytes == w + 9 * 5 + 9 * 3 + 5 + 4 * 7 + 5
    assert size_table(g).flash(p.weights, p.activations) == memory_report(g, p).flash_bytes


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_odd_chain_ram_by_hand(bits):
    g = trace(OddChain(), (1, 1, 4, 4))
    p = Policy.uniform(g, bits)
    inp = 16  # 1 channel, 8-bit
    a = 16 * packed_bytes(5, bits)
    b = 16 * packed_bytes(3, bits)
    pool = packed_bytes(3, bits)
    logits = 7
    assert live_bytes(g, tensor_sizes(g, p)) == [inp + a, a + b, b + pool, pool + logits]
    r = memory_report(g, p)
    assert r.ram_lower_bound == max(inp + a, a + b) and r.arena_bytes == r.ram_lower_bound
    assert check_plan(g, r.tensor_bytes, r.offsets, r.arena_bytes)
    assert r.ram_bytes == r.arena_bytes + r.scratch_bytes


def test_residual_skip_tensor_counts(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    p = Policy.uniform(g, 8)
    s = tensor_sizes(g, p)
    stem, dw, pw = (o.output for o in g.ops[:3])
    assert s[stem] == 4 * 4 * 5
    # While the pointwise conv runs, the stem output waits for the add.
    assert live_bytes(g, s)[2] == s[stem] + s[dw] + s[pw]
    r = memory_report(g, p)
    assert r.arena_bytes >= r.ram_lower_bound == max(live_bytes(g, s))
    assert check_plan(g, s, r.offsets, r.arena_bytes)


def test_mixed_policy_changes_only_its_tensor(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    p8 = Policy.uniform(g, 8)
    p = p8.replace(activations={"conv2": 2}, weights={"stem": 4})
    s8, s = tensor_sizes(g, p8), tensor_sizes(g, p)
    assert s["conv2"] == 16 * 2 and all(s[k] == s8[k] for k in s if k != "conv2")
    assert flash_bytes(g, p8) - flash_bytes(g, p) == weight_bytes(g.op("stem"), 8) - weight_bytes(
        g.op("stem"), 4
    )


def test_mobilenet_v1_imagenet_facts():
    g = trace(create("mobilenet_v1", width=1.0, resolution=224, num_classes=1000, in_channels=3))
    r = memory_report(g, Policy.uniform(g, 8))
    assert r.weight_bytes == 4_209_088
    first_pw = r.layers[2]
    assert first_pw.in_bytes == 112 * 112 * 32 and first_pw.out_bytes == 112 * 112 * 64
    assert max(x.in_bytes + x.out_bytes for x in r.layers) == 1_204_224
    assert r.arena_bytes == r.ram_lower_bound == 1_204_224
    # The largest kernel scratch: a 1x1 conv on 1024 channels unpacks MM_PATCH = 256 elements;
    # the 3x3 depthwise layers' ring of widened rows is counted on at most MM_DW_RING_W = 24
    # of their 112 columns (5 rows of 4 x 24 bytes = 480), below it.
    assert r.scratch_bytes == 2 * 256 and r.ram_bytes == 1_204_224 + 512


@pytest.mark.parametrize("name, width", [("mobilenet_v2", 0.35), ("mnasnet", 0.5)])
def test_planner_close_to_bound_on_residual_nets(name, width):
    g = trace(create(name, width=width, resolution=28, in_channels=1, num_classes=10))
    rng = random.Random(0)
    for _ in range(5):
        p = Policy.uniform(g, 8).replace(
            activations={
                t: rng.choice([2, 4, 8]) for t in g.tensors if t not in (g.input, g.output)
            }
        )
        r = memory_report(g, p)
        assert check_plan(g, r.tensor_bytes, r.offsets, r.arena_bytes)
        assert r.arena_bytes <= 1.02 * r.ram_lower_bound


def _chain(channels: list[int]) -> nn.Module:
    layers: list[nn.Module] = []
    for cin, cout in zip(channels, channels[1:]):
        layers += [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*layers)


@settings(max_examples=25, deadline=None)
@given(
    channels=st.lists(st.integers(1, 24), min_size=3, max_size=7),
    bits=st.lists(st.sampled_from([2, 4, 8]), min_size=8, max_size=8),
)
def test_chain_arena_meets_lower_bound(channels, bits):
    g = trace(_chain(channels), (1, channels[0], 3, 3))
    p = Policy.uniform(g, 8)
    inner = [t for t in g.tensors if t not in (g.input, g.output)]
    p = p.replace(activations={t: b for t, b in zip(inner, bits)})
    sizes = tensor_sizes(g, p)
    arena, offsets = plan_arena(g, sizes)
    assert arena == ram_lower_bound(g, p)
    assert check_plan(g, sizes, offsets, arena)


def test_check_plan_detects_overlap(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    p = Policy.uniform(g, 8)
    sizes = tensor_sizes(g, p)
    arena, offsets = plan_arena(g, sizes)
    bad = dict(offsets)
    bad["stem"] = bad["conv1"]  # both live at step 1
    assert not check_plan(g, sizes, bad, arena + 1000)


def test_report_table_and_json(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    r = memory_report(g, Policy.uniform(g, 4))
    js = r.to_json()
    assert js["flash_bytes"] == r.flash_bytes and len(js["layers"]) == len(g.ops)
    assert f"FLASH {r.flash_bytes:,} B" in r.table()


class KernelZoo(nn.Module):
    """One layer per kernel path, with row lengths on both sides of the thresholds."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)  # row 9: lanes ("small")
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # depthwise, 9 taps
        self.pw = nn.Conv2d(8, 32, 1)  # row 8: small
        self.pw32 = nn.Conv2d(32, 40, 1)  # row 32: small at 2 or 4 bits, not at 8
        self.full = nn.Conv2d(40, 300, 3, padding=1)  # row 360 > MM_PATCH: chunks of 40
        self.wide = nn.Conv2d(300, 16, 1)  # row 300 > MM_PATCH: chunks of 256
        self.fc = nn.Linear(16 * 4 * 4, 10)  # a 4 x 4 "convolution" with a 256 row

    def forward(self, x):
        for m in (self.stem, self.dw, self.pw, self.pw32, self.full, self.wide):
            x = m(x)
        return self.fc(x.flatten(1))


def test_kernel_scratch_by_hand():
    g = trace(KernelZoo(), (1, 1, 4, 4))
    ops = {o.name: o for o in g.ops}
    # (kernel, scratch bytes) at 8-bit weights on 8-bit inputs and at 4-bit weights; lanes = 8,
    # int32 tap offsets; depthwise keeps its weight pairs in a fixed stack table, and a 3x3 one
    # the ring of MM_DW_RING rows of 4 x in_w bytes that sub-byte inputs are widened into
    # (counted at every input width, as its family's, on at most MM_DW_RING_W columns).
    # The 8-bit pointwise kernels read the input in place but are counted their family's
    # scratch (small or conv), so the RAM figure does not depend on the activation bits.
    # 4-bit weights on 8-bit inputs leave the lanes for the sub8 path (mm_conv), in the same
    # scratch.
    small_9 = 4 * 9 + 2 * 9 * 8 + 2 * 9
    want = {
        "stem": (("mm_conv_small", small_9), ("mm_conv", small_9)),
        "dw": (("mm_depthwise", 5 * 4 * 4), ("mm_depthwise", 5 * 4 * 4)),
        # 4-bit weights on >= 8 channels: mm_pointwise_sub, one unpacked input pixel.
        "pw": (("mm_pointwise8", 4 + 2 * 8 * 8 + 2 * 8), ("mm_pointwise_sub", 2 * 8)),
        "pw32": (("mm_pointwise8", 2 * 32), ("mm_pointwise_sub", 2 * 32)),
        "full": (("mm_conv", 2 * 40), ("mm_conv", 2 * 40)),
        # 300 channels: mm_pointwise8 has no limit, mm_pointwise_sub takes at most MM_PATCH.
        "wide": (("mm_pointwise8", 2 * 256), ("mm_conv", 2 * 256)),
        # a window over the whole 4 x 4 input: one contiguous run of bytes at 8 bits
        "fc": (("mm_pointwise8", 2 * 256), ("mm_conv", 2 * 256)),
    }
    for name, per_bits in want.items():
        for bits, (kernel, need) in zip((8, 4), per_bits):
            assert (kernel_of(ops[name], bits, 8), scratch_need(ops[name], bits)) == (
                kernel,
                need,
            ), (name, bits)
    # 8-bit weights on 4-bit inputs: 1x1 layers of 4 to MM_PATCH channels widen each pixel.
    got = {n: kernel_of(ops[n], 8, 4) for n in ("pw", "pw32", "wide", "fc")}
    assert got == {
        "pw": "mm_pointwise8_widen",
        "pw32": "mm_pointwise8_widen",
        "wide": "mm_conv",
        "fc": "mm_conv",
    }
    p8 = Policy.uniform(g, 8)
    assert scratch_bytes(g, p8.weights) == 512
    p4 = Policy.uniform(g, 4)
    assert scratch_bytes(g, p4.weights) == 512  # wide and fc: 256-element chunks
    p2 = Policy.uniform(g, 2)  # pw at 2 bits (8 channels, under one word) stays on lanes
    assert scratch_need(ops["pw"], 2) == 4 + 2 * 8 * 8 + 2 * 8
    r = memory_report(g, p4)
    assert (r.scratch_bytes, r.ram_bytes) == (512, r.arena_bytes + 512)
    assert scratch_bytes(g, p2.weights) == 512


def test_scratch_is_whole_words():
    g = trace(OddChain(), (1, 1, 4, 4))  # needs: a small 5-channel stem -> plain conv paths
    for bits in (8, 4, 2):
        n = scratch_bytes(g, Policy.uniform(g, bits).weights)
        need = max(scratch_need(o, bits if o.has_weight else None) for o in g.ops)
        assert n % 4 == 0 and need <= n < need + 4
