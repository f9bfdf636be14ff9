"""The qemu instruction counter of bench/mcu_cost.py: exact on a hand-counted loop, and the
segments it splits at markers add up to everything executed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import require_tool

from micromix.export.cores import KERNEL_CORES

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("gcc", "arm-none-eabi-gcc", "qemu-system-arm")


def need_tools() -> None:
    require_tool(*TOOLS)  # skips, or fails under MICROMIX_STRICT=1


def bench():
    spec = importlib.util.spec_from_file_location("mcu_cost", ROOT / "bench" / "mcu_cost.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mcu_cost"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_counter_is_exact_on_a_hand_counted_loop(tmp_path) -> None:
    need_tools()
    mc = bench()
    plugin = mc.build_plugin(tmp_path)
    flags = "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2".split()
    elf = mc.link(tmp_path, "counter_check", [mc.MCU / "counter_check.c"], flags)
    c = mc.count(elf, plugin)
    # counter_check.c's comment derives these by hand: 1 + 1 + 100 * 4 + 1 instructions.
    assert c.segments[1] == (403, 3 + 1 + 100 * 5 + 99 * 2 + 3)
    # the same loop with its second load on a new 1 KB page (a new translation block)
    assert mc.symbol_address(elf, "loop_split") % 1024 == 1014
    assert c.segments[3] == c.segments[1]
    # the loop with a 32-bit second load, placed naturally and straddling a page
    assert mc.symbol_address(elf, "loop_cross") % 1024 == 1012
    assert c.segments[5] == c.segments[7] == c.segments[1]
    assert len(c.segments) == 9  # boot, then each loop and what runs after it
    assert c.hist["subs"] == 400 and c.hist["bne"] == 400  # four loops
    assert sum(s[0] for s in c.segments) == sum(c.hist.values())


def combo_and_mobilenet():
    from test_export import combo_integer_model
    from test_integer import mixed_policy

    from micromix.graph import trace
    from micromix.integer import convert
    from micromix.integer.convert import random_qparams
    from micromix.models import create
    from micromix.policy import Policy

    g = trace(create("mobilenet_v1", width=0.25, resolution=28, in_channels=1, num_classes=10))
    pol, mixed = Policy.uniform(g, 8), mixed_policy(g, seed=2)
    return {
        "combo": combo_integer_model(),
        "mbv1-8": convert(random_qparams(g, pol, seed=3), g, pol),
        "mbv1-mixed": convert(random_qparams(g, mixed, seed=2), g, mixed),
    }


@pytest.mark.parametrize(
    "core",
    # the M7 builds the M4's instruction set (ARMv7E-M) and C paths, the M33 the same DSP
    # paths, the M3 the portable loops the host runs in every export test: slow, beside the M4
    [c if c == "cortex-m4" else pytest.param(c, marks=pytest.mark.slow) for c in KERNEL_CORES],
)
def test_kernels_are_bit_exact_under_qemu_on_each_core(tmp_path, core: str) -> None:
    """The DSP paths (M4, M7, M33: SMLAD / SMLABB kernels, __ARM_FEATURE_DSP) and the portable
    path (M3) compute what numpy computes: every (input, weight, output) bit triple (ComboNet)
    and MobileNetV1 at 8/8 bits (the interleaved and tap-major weight layouts) and under a
    random mixed policy (sub-byte pointwise with in-register weight expansion)."""
    import numpy as np

    from micromix.export.cores import core as get_core

    need_tools()
    mc = bench()
    cpu = get_core(core)
    plugin = mc.build_plugin(tmp_path)
    flags = [*cpu.flags.split(), "-O2"]
    dsp = mc.run(["arm-none-eabi-gcc", *flags, "-dM", "-E", "-x", "c", "/dev/null"], tmp_path)
    assert ("__ARM_FEATURE_DSP 1" in dsp) == cpu.dsp
    for name, im in combo_and_mobilenet().items():
        shape = im.input_shape
        image = np.random.default_rng(7).integers(0, 256, shape, dtype=np.uint8)
        elf = mc.micromix_elf(im, image, tmp_path / name, flags, core)
        c = mc.count(elf, plugin, cpu.machine)
        assert "bench: ok" in c.output, (name, c.output[-300:])
        assert len(c.segments) == len(im.ops) + 3  # boot, input copy, one per step, after


# (input bits, weight bits) of nine consecutive 1x1 layers: every pair of {2, 4, 8} once.
PW_PAIRS = ((2, 2), (2, 4), (4, 2), (2, 8), (8, 2), (4, 4), (4, 8), (8, 4), (8, 8))


def pointwise_pairs_model():
    """44 channels (tails after the 4/8/16-element blocks of the sub-byte pointwise paths), nine
    ReLU layers (unsigned inputs) then ten without activation (signed inputs from the second
    on): every (input bits, weight bits) pair with unsigned and with signed inputs."""
    import torch
    from torch import nn

    from micromix.graph import trace
    from micromix.integer import convert
    from micromix.integer.convert import random_qparams
    from micromix.models import conv_bn
    from micromix.policy import Policy

    torch.manual_seed(0)
    layers = [conv_bn(1, 44, 3, 4)]
    layers += [conv_bn(44, 44, 1) for _ in range(9)]
    layers += [conv_bn(44, 44, 1, act=None) for _ in range(10)]
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(44 * 4 * 4, 10)).eval()
    g = trace(model, (1, 1, 16, 16))
    pw = [o for o in g.ops if o.kind == "conv"][1:]
    pairs = [*PW_PAIRS, (8, 8), *PW_PAIRS]
    p = Policy.uniform(g, 8)
    acts, weights = dict(p.activations), dict(p.weights)
    for o, (ib, wb) in zip(pw, pairs, strict=True):
        acts[o.inputs[0]], weights[o.name] = ib, wb
    pol = Policy(weights, acts)
    im = convert(random_qparams(g, pol, seed=4), g, pol)
    seen = {(g.tensors[o.inputs[0]].signed, i.in_bits[0], i.w_bits) for o, i in zip(pw, im.ops[1:])}
    assert len(seen) == 18  # 9 pairs x {unsigned, signed}
    return im


@pytest.mark.parametrize("core", ["cortex-m3", "cortex-m4"])
def test_sub_byte_pointwise_paths_are_bit_exact_under_qemu(tmp_path, core: str) -> None:
    """mm_pointwise_sub's input fills (DSP) and the widened-input mm_pointwise8 path (every
    core) for every (input, weight) bit pair, unsigned and signed inputs, against numpy."""
    import numpy as np

    from micromix.export.cores import core as get_core

    need_tools()
    mc = bench()
    cpu = get_core(core)
    plugin = mc.build_plugin(tmp_path)
    im = pointwise_pairs_model()
    image = np.random.default_rng(3).integers(0, 256, im.input_shape, dtype=np.uint8)
    elf = mc.micromix_elf(im, image, tmp_path / "pw", [*cpu.flags.split(), "-O2"], core)
    c = mc.count(elf, plugin, cpu.machine)
    assert "bench: ok" in c.output, c.output[-300:]


def odd_rows_model():
    """1x1 layers with output rows after the last block of four (natural order) and input
    channels off the 8/16-element blocks (row tails; 12 inputs: one word), at 4/4, 2/2, 4/2 and
    8/8 bits, then a linear with 10 classes."""
    import torch
    from torch import nn

    from micromix.graph import trace
    from micromix.integer import convert
    from micromix.integer.convert import random_qparams
    from micromix.models import conv_bn
    from micromix.policy import Policy

    torch.manual_seed(1)
    chans = [12, 45, 37, 33, 35]
    layers = [conv_bn(1, chans[0], 3, 4)]
    layers += [conv_bn(a, b, 1) for a, b in zip(chans, chans[1:], strict=False)]
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(35 * 4 * 4, 10)).eval()
    g = trace(model, (1, 1, 16, 16))
    pw = [o for o in g.ops if o.kind == "conv"][1:]
    p = Policy.uniform(g, 8)
    acts, weights = dict(p.activations), dict(p.weights)
    for o, (ib, wb) in zip(pw, ((4, 4), (2, 2), (4, 2), (8, 8)), strict=True):
        acts[o.inputs[0]], weights[o.name] = ib, wb
    pol = Policy(weights, acts)
    return convert(random_qparams(g, pol, seed=5), g, pol)


@pytest.mark.parametrize("core", ["cortex-m3", "cortex-m4"])
def test_odd_rows_and_row_tails_are_bit_exact_under_qemu(tmp_path, core: str) -> None:
    import numpy as np

    from micromix.export.cores import core as get_core

    need_tools()
    mc = bench()
    cpu = get_core(core)
    plugin = mc.build_plugin(tmp_path)
    im = odd_rows_model()
    assert [o.op.out_shape[0] % 2 for o in im.ops[1:5]] == [1, 1, 1, 1]
    image = np.random.default_rng(5).integers(0, 256, im.input_shape, dtype=np.uint8)
    elf = mc.micromix_elf(im, image, tmp_path / "odd", [*cpu.flags.split(), "-O2"], core)
    c = mc.count(elf, plugin, cpu.machine)
    assert "bench: ok" in c.output, c.output[-300:]


def conv8_shapes_model(bits_seed: int | None = None):
    """mm_conv at 8/8 bits on its two paths: fewer than four input channels (one patch per
    pixel, mm_gather8 + SMLAD dot) and four or more (input bytes read in place), with kernels
    wider than the padding at the borders, strides 1 and 2, non-square kernels, output
    channels off the blocks of four, signed inputs (no activation before) and rows longer
    than MM_PATCH (64 channels x 3 x 3)."""
    import numpy as np
    import torch
    from torch import nn

    from micromix.graph import trace
    from micromix.integer import convert
    from micromix.integer.convert import random_qparams
    from micromix.models import conv_bn
    from micromix.policy import Policy

    torch.manual_seed(2)
    layers = [
        nn.Sequential(nn.Conv2d(1, 6, (5, 3), 2, (2, 1), bias=False), nn.BatchNorm2d(6)),
        conv_bn(6, 8, 3, act=None),  # 6 signed channels in
        conv_bn(8, 3, 5, 2),
        conv_bn(3, 13, 3),
        conv_bn(13, 64, 3),
        conv_bn(64, 12, 3),
    ]
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(12 * 5 * 5, 10)).eval()
    g = trace(model, (1, 1, 20, 18))
    pol = Policy.uniform(g, 8)
    from micromix.memory import memory_report

    if bits_seed is not None:  # sub-byte rows: the chunked path (64 x 3 x 3) and the dots
        rng = np.random.default_rng(bits_seed)
        acts = {k: v if k in (g.input, g.output) else int(rng.choice([2, 4, 8]))
                for k, v in pol.activations.items()}  # fmt: skip
        pol = Policy({k: int(rng.choice([2, 4])) for k in pol.weights}, acts)
    im = convert(random_qparams(g, pol, seed=6), g, pol)
    kernels = [x.kernel for x in memory_report(g, pol).layers]
    assert kernels[4:6] == ["mm_conv"] * 2, kernels
    return im


# one random mixed policy in the default run (every bit triple: the ComboNet test above)
@pytest.mark.parametrize(
    "bits_seed", [None, *(pytest.param(s, marks=pytest.mark.slow) for s in (1, 2))]
)
@pytest.mark.parametrize(
    "core",
    # the M3 runs the portable loops, which the host builds of every export test run too
    [pytest.param("cortex-m3", marks=pytest.mark.slow), "cortex-m4"],
)
def test_conv_paths_are_bit_exact_under_qemu(tmp_path, core: str, bits_seed) -> None:
    """mm_conv's 8/8 paths (bits_seed None) and its sub-byte paths (random 2/4-bit weights,
    2/4/8-bit activations: unpacked patches, chunks of long rows, the DSP sub-byte dots)."""
    import numpy as np

    from micromix.export.cores import core as get_core

    need_tools()
    mc = bench()
    cpu = get_core(core)
    plugin = mc.build_plugin(tmp_path)
    im = conv8_shapes_model(bits_seed)
    for seed in range(2):
        image = np.random.default_rng(seed).integers(0, 256, im.input_shape, dtype=np.uint8)
        elf = mc.micromix_elf(im, image, tmp_path / f"c{seed}", [*cpu.flags.split(), "-O2"], core)
        c = mc.count(elf, plugin, cpu.machine)
        assert "bench: ok" in c.output, c.output[-300:]


def pointwise_case(case: str):
    """One 1x1 case on 8-bit inputs as the last layer of a small model (so that its output is
    the one the image checks; a sub-byte output feeds a linear). mm_pointwise8: `odd` 25
    pixels (pairs and an odd last one); `stride` a stride-2 layer (pairs across rows) on rows
    of five words (an odd word); `signed_in` signed inputs; `general` 10 inputs (rows off the
    words), signed in and out, 6 outputs (a tail after the blocks); `out4` / `out2` 4- and
    2-bit unsigned outputs (the fast path's packing); `shift` shifts of 32 or less (weight
    scales 2^19 times larger); `linear` one pixel. mm_pointwise_sub's two-pixel path (`sub_`,
    4-bit weights unless said): `sub_odd` 25 pixels, 12 inputs (a tail after the words) and 22
    outputs; `sub_signed` signed inputs (the one-pixel path, unpacked); `sub_shift` 2-bit weights, shifts of 32 or less, a
    stride-2 layer; `sub_out2` 2-bit weights and outputs."""
    import dataclasses

    import torch
    from torch import nn

    from micromix.graph import trace
    from micromix.integer import convert
    from micromix.integer.convert import random_qparams
    from micromix.memory import memory_report
    from micromix.models import conv_bn
    from micromix.policy import Policy

    torch.manual_seed(3)
    stem = conv_bn(1, 16, 3)  # 5 x 5 pixels
    to_fc = [nn.Flatten(), nn.Linear(12 * 5 * 5, 10)]
    last = {
        "odd": [conv_bn(16, 20, 1)],
        "stride": [conv_bn(16, 20, 1), conv_bn(20, 12, 1, stride=2)],
        "signed_in": [conv_bn(16, 12, 1, act=None), conv_bn(12, 16, 1)],
        "general": [conv_bn(16, 10, 1, act=None), conv_bn(10, 6, 1, act=None)],
        "out4": [conv_bn(16, 12, 1), *to_fc],
        "out2": [conv_bn(16, 12, 1), *to_fc],
        "shift": [conv_bn(16, 16, 1)],
        "linear": [nn.Flatten(), nn.Linear(16 * 5 * 5, 10)],
        "sub_odd": [conv_bn(16, 12, 1), conv_bn(12, 22, 1)],
        "sub_signed": [conv_bn(16, 12, 1, act=None), conv_bn(12, 16, 1)],
        "sub_shift": [conv_bn(16, 16, 1, stride=2)],
        "sub_out2": [conv_bn(16, 12, 1), *to_fc],
    }[case]
    g = trace(nn.Sequential(stem, *last).eval(), (1, 1, 5, 5))
    p = Policy.uniform(g, 8)
    acts, weights = dict(p.activations), dict(p.weights)
    k = -2 if case.endswith(("out4", "out2")) else -1  # the case's layer (sub-byte: a linear next)
    op = g.ops[k]
    if k == -2:
        acts[op.output] = int(case[-1])
    if case.startswith("sub_"):
        weights[op.name] = 2 if case in ("sub_shift", "sub_out2") else 4
    pol = Policy(weights, acts)
    qp = random_qparams(g, pol, seed=8)
    if case.endswith("shift"):
        lq = qp.layers[op.name]
        qp.layers[op.name] = dataclasses.replace(lq, w_scale=lq.w_scale * 2**19)
    im = convert(qp, g, pol)
    sub = case.startswith("sub_")
    assert memory_report(g, pol).layers[k].kernel == (
        "mm_pointwise_sub" if sub else "mm_pointwise8"
    )
    iop = im.ops[k]
    fast = iop.qmin == 0 and iop.qmax == 2**iop.out_bits - 1 and min(iop.arrays["shift"]) > 32
    if not sub:  # mm_pointwise8's fast path also wants unsigned inputs and whole words
        fast = fast and op.in_shape[0] % 4 == 0 and not g.tensors[op.inputs[0]].signed
    assert fast == (case not in ("signed_in", "general", "shift", "linear", "sub_shift")), case
    return im


# the default run takes one case of each kind (8-bit, sub8, outputs below 8 bits); the others
# are slow
_PW_SLOW = ("stride", "general", "shift", "linear", "sub_signed", "sub_shift")
PW_CASES = tuple(
    pytest.param(c, marks=pytest.mark.slow) if c in _PW_SLOW else c
    for c in ("odd", "stride", "signed_in", "general", "out4", "out2", "shift", "linear",
              "sub_odd", "sub_signed", "sub_shift", "sub_out2")
)  # fmt: skip


@pytest.mark.parametrize("core", ["cortex-m4", pytest.param("cortex-m3", marks=pytest.mark.slow)])
@pytest.mark.parametrize("case", PW_CASES)
def test_pointwise_pairs_and_requantization_paths_are_bit_exact_under_qemu(
    tmp_path, core: str, case: str
) -> None:
    """The pixel pairs of mm_pointwise8 and of mm_pointwise_sub on 8-bit inputs (DSP asm on
    the M4, portable C on the M3) and both requantization paths (the fast one: unsigned
    outputs over their whole range, every shift above 32; the general one) against numpy."""
    import numpy as np

    from micromix.export.cores import core as get_core

    need_tools()
    mc = bench()
    cpu = get_core(core)
    plugin = mc.build_plugin(tmp_path)
    im = pointwise_case(case)
    image = np.random.default_rng(1).integers(0, 256, im.input_shape, dtype=np.uint8)
    elf = mc.micromix_elf(im, image, tmp_path / case, [*cpu.flags.split(), "-O2"], core)
    c = mc.count(elf, plugin, cpu.machine)
    assert "bench: ok" in c.output, c.output[-300:]


def kws_shaped_model():
    """DS-CNN's shape (MLPerf Tiny KWS) at W8/A8: a 10x4 stride-2 stem on a 49 x 10 input, two
    depthwise-separable blocks of 64 channels, average pooling and a 12-class linear."""
    import torch
    from torch import nn

    from micromix.graph import trace
    from micromix.integer import convert
    from micromix.integer.convert import random_qparams
    from micromix.models import conv_bn
    from micromix.policy import Policy

    torch.manual_seed(4)
    stem = nn.Sequential(nn.Conv2d(1, 64, (10, 4), 2, (5, 1), bias=False), nn.BatchNorm2d(64),
                         nn.ReLU())  # fmt: skip
    blocks = [m for _ in range(2) for m in (conv_bn(64, 64, 3, groups=64), conv_bn(64, 64, 1))]
    model = nn.Sequential(stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 12))
    g = trace(model.eval(), (1, 1, 49, 10))
    pol = Policy.uniform(g, 8)
    return convert(random_qparams(g, pol, seed=1), g, pol)


def test_kernel_text_of_a_kws_shaped_build_is_below_the_every_path_build(tmp_path) -> None:
    """The bench's Cortex-M4 image of a KWS-shaped model compiles the kernel paths its layers
    take (mm_paths.h): its kernel .text (mcu_cost.kernel_text) is below that of the same image
    with every path (the library without a model), and it has no kernel function that the
    every-path image lacks."""
    import numpy as np

    require_tool("arm-none-eabi-gcc", "arm-none-eabi-nm")
    mc = bench()
    im = kws_shaped_model()
    image = np.random.default_rng(0).integers(0, 256, im.input_shape, dtype=np.uint8)
    flags = "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -O2".split()
    elfs = {e: mc.micromix_elf(im, image, tmp_path / str(e), flags, every_path=e)
            for e in (False, True)}  # fmt: skip

    def kernels(elf) -> set[str]:
        out = mc.run(["arm-none-eabi-nm", str(elf)], elf.parent)
        return {p[2].split(".")[0] for p in map(str.split, out.splitlines())
                if len(p) == 3 and p[1] in "tT" and p[2].startswith("mm_")}  # fmt: skip

    assert mc.kernel_text(elfs[False]) < mc.kernel_text(elfs[True])
    assert kernels(elfs[False]) < kernels(elfs[True])
