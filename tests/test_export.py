"""C export: builds warning-free, computes bit for bit what the numpy reference computes, and
holds exactly the memory model's FLASH (constants) and RAM (arena + kernel scratch); Cortex-M4
under qemu."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import require_tool
from test_integer import combo_policy, images, mixed_policy, policies, tiny

from micromix.errors import MicromixError
from micromix.export import build_and_check, export_c
from micromix.export.build import (
    ARM_TOOLS,
    built_memory,
    make,
    run_selftest,
    sections,
    symbols,
)
from micromix.export.cgen import library_files
from micromix.graph import WeightScales, trace, with_scales
from micromix.integer import convert
from micromix.integer.convert import random_qparams
from micromix.integer.model import IntegerModel
from micromix.models import conv_bn, create
from micromix.ops.conv import conv8_head, dense_pt_path, small8p, sub8_path
from micromix.policy import Policy


@pytest.fixture(autouse=True)
def _c_tools() -> None:
    """Every test here builds C: skip without gcc and binutils (fail under MICROMIX_STRICT=1)."""
    require_tool("gcc", "make", "nm", "size")


def export_tiny(
    tmp: Path,
    name: str,
    *,
    relu_after_add: bool = False,
    odd: bool = False,
    n: int = 200,
    scales: WeightScales | None = None,
    **kw,
) -> tuple:
    model, g = tiny(relu_after_add, odd=odd)
    g = g if scales is None else with_scales(g, scales)
    pol = policies(g)[name]
    im = convert(random_qparams(g, pol, seed=11), g, pol)
    out = export_c(im, tmp / "c", test_images=images(n, seed=4), **kw)
    return im, out, json.loads((out / "export.json").read_text())


@pytest.mark.parametrize("net", [pytest.param("tiny", marks=pytest.mark.slow), "tiny-relu", "odd"])
@pytest.mark.parametrize("name", ["8/8", "4/4", "2/2", "mixed"])
def test_tiny_net_is_bit_exact_and_exactly_sized(tmp_path, name: str, net: str) -> None:
    im, out, s = export_tiny(tmp_path, name, relu_after_add=net == "tiny-relu", odd=net == "odd")
    assert s["selftest_identical"] == s["selftest_images"] == 200
    rep = im.report
    assert s["built"] == {
        "const_bytes": rep.flash_bytes,
        "rodata_bytes": rep.flash_bytes,
        "arena_bytes": rep.arena_bytes,
        "scratch_bytes": rep.scratch_bytes,
        "ram_bytes": rep.ram_bytes,
    }


def combo_integer_model():
    """ComboNet under its every-bit-triple policy, with random quantization parameters."""
    model, g = tiny(combo=True)
    pol = combo_policy(g)
    return convert(random_qparams(g, pol, seed=5), g, pol)


def test_every_bit_combination_of_every_kernel_is_bit_exact(tmp_path) -> None:
    """ComboNet: depthwise, pointwise, full 3x3 and residual adds each see all 27 (input,
    weight or second input, output) bit triples of {2, 4, 8}."""
    im = combo_integer_model()
    s = json.loads(
        (export_c(im, tmp_path / "c", test_images=images(100)) / "export.json").read_text()
    )
    assert s["selftest_identical"] == 100
    assert s["built"]["const_bytes"] == im.report.flash_bytes


class Conv8Net(torch.nn.Module):
    """mm_conv's W8/A8 paths on a 3 x 15 x 15 input. Two pixels straight from the input
    (in_c % 4 == 0): clipped borders and an odd row (a), stride 2 and a 2-row tail of channels
    (b), signed inputs and 4-bit outputs (f). Two pixels from byte patches (in_c % 4 != 0): a
    3-channel stem (a 3-byte tail per row), a 2-byte tail and a 2-row tail of channels (c),
    signed inputs in a 5x5 window on 8x8 with a 1-byte tail (e). One pixel (in_c % 4 != 0, a
    row of more than MM_PATCH): d."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(3, 8, 3)
        self.a = conv_bn(8, 12, 3)
        self.b = conv_bn(12, 10, 3, 2)
        self.c = conv_bn(10, 30, 3)
        self.d = conv_bn(30, 5, 3, act=None)
        self.e = conv_bn(5, 8, 5, act=None)
        self.f = conv_bn(8, 8, 3)
        self.fc = torch.nn.Linear(8, 10)

    LAYERS = ("stem", "a", "b", "c", "d", "e", "f")

    def forward(self, x):
        y = self.f(self.e(self.d(self.c(self.b(self.a(self.stem(x)))))))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))


def conv8_model():
    """Conv8Net at W8/A8 but for f's 4-bit output, with random quantization parameters."""
    torch.manual_seed(1)
    g = trace(Conv8Net().eval(), (1, 3, 15, 15))
    pol = Policy.uniform(g, 8)
    f = next(o for o in g.ops if o.name == "f.0")
    pol = pol.replace(activations={**pol.activations, f.output: 4})
    return convert(random_qparams(g, pol, seed=3), g, pol)


def test_w8a8_conv_paths_are_bit_exact(tmp_path) -> None:
    """Host build (portable C) and, with the ARM tools, qemu (the DSP asm): every W8/A8 mm_conv
    path above, bit for bit the numpy reference."""
    im = conv8_model()
    convs = {o.name[:-2]: o for o in im.ops if o.name in {f"{c}.0" for c in Conv8Net.LAYERS}}
    path = {
        n: "natural" if h is None else "input" if h == o.row_elems else "patch"
        for n, o in convs.items()
        for h in [conv8_head(o, "mm_conv")]
    }
    assert path == {"stem": "patch", "a": "input", "b": "input", "c": "patch",
                    "d": "natural", "e": "patch", "f": "input"}  # fmt: skip
    assert {x.kernel for x in im.report.layers if x.name[:-2] in convs} == {"mm_conv"}
    x = np.random.default_rng(6).integers(0, 256, (40, 3, 15, 15), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x)


class Conv8RqNet(torch.nn.Module):
    """mm_conv's W8/A8 pair walks under each requantization of mm_conv8x2_px (mm_rq8_kind) on
    a 3 x 9 x 11 input (odd width: pixels alone at the borders and an odd row): a signed 8-bit
    output straight from the input (a) and from byte patches (c), unsigned ones (stem, b;
    the stem's 3 x 5 window: 45-byte rows, whose 44-byte heads take the patch loop's one-step,
    two-step and four-step parts, and a 1-byte tail; c's 88-byte heads: no one-step part),
    and a stride-2 layer with 2 rows after the last block of channels (b); 1x1 layers on
    signed inputs (mm_pointwise8's general pixel pairs) with a signed (p) and an unsigned (q)
    output; 1x1 layers on unsigned inputs with unsigned 8-bit outputs (mm_pointwise8's fast
    asm loop, which takes a row's first word apart) whose rows are 7, 9, 16 and 1 words (the
    loop entered two words in, at its start, one word in, onto its exit test), 9 pixels (pairs
    across rows of pixels, an odd last one) and 1 row after the last block of four (u); a
    linear on 13 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_relu(3, 8, (3, 5))
        self.a = conv_bn(8, 12, 3, act=None)
        self.b = conv_bn(12, 10, 3, 2)
        self.c = conv_bn(10, 28, 3, act=None)
        self.p = conv_bn(28, 12, 1, act=None)
        self.q = conv_bn(12, 28, 1)
        self.r, self.s = conv_bn(28, 36, 1, 2), conv_bn(36, 64, 1)
        self.t, self.u = conv_bn(64, 4, 1), conv_bn(4, 13, 1)
        self.fc = torch.nn.Linear(13, 10)

    def forward(self, x):
        y = self.q(self.p(self.c(self.b(self.a(self.stem(x))))))
        y = self.u(self.t(self.s(self.r(y))))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))


@pytest.mark.parametrize("variant", ["as converted", "qmin -128", "a shift of 32"])
def test_w8a8_conv_requantizations_are_bit_exact(tmp_path, variant: str) -> None:
    """Conv8RqNet as converted (unsigned [0, 255] and symmetric signed [-127, 127] clamps, all
    shifts above 32: the branch-free requantization), with its signed layers clamped to
    [-128, 127], and with one channel of every layer at shift 32 (the general requantization
    for the whole layer): host build and, with the ARM tools, qemu (the DSP asm), bit for bit
    the numpy reference. Every layer that can is written over its own input (the inplace
    schedule: stem, a and b's pair loops, r to u's fast 1x1 loop)."""
    torch.manual_seed(3)
    g = trace(Conv8RqNet().eval(), (1, 3, 9, 11))
    pol = Policy.uniform(g, 8)
    im = convert(random_qparams(g, pol, seed=5), g, pol, schedule="inplace")
    in_place = set(im.report.schedule.inplace)
    assert {"stem.0", "a.0", "b.0", "r.0", "s.0", "t.0", "u.0"} <= in_place, in_place
    convs = [o for o in im.ops if o.weights is not None]
    assert [o.row_elems for o in convs[:4] if o.op.in_shape[0] % 4] == [45, 90]  # patches
    assert {(o.qmin, o.qmax) for o in convs} == {(0, 255), (-127, 127)}
    assert all(int(o.arrays["shift"].min()) > 32 for o in convs)
    if variant == "qmin -128":
        ops = tuple(dataclasses.replace(o, qmin=-128) if o.qmin == -127 else o for o in im.ops)
        im = dataclasses.replace(im, ops=ops)
    elif variant == "a shift of 32":
        for o in convs:
            o.arrays["shift"][o.arrays["shift"].size // 2] = 32
    layers = {x.name: x.kernel for x in im.report.layers}
    assert [layers[o.name] for o in convs] == ["mm_conv"] * 4 + ["mm_pointwise8"] * 7
    if variant == "as converted":  # r, s, t and u take the fast loop (its C, or its asm)
        lib = _write(tmp_path / "lib", library_files(im))
        assert "mm_pw8_two8" in _text_symbols(lib, "mm_conv.c")
    x = np.random.default_rng(9).integers(0, 256, (30, 3, 9, 11), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x)
    # the pair paths' pixel functions (MM_CONV8X2_KIND, MM_CONV8P_KIND) the host build holds:
    # the asm loop's on a (unsigned inputs), b (signed, 2 rows after its blocks), stem and c
    # (patches; their lone pixels too), the general ones under a shift of 32
    fns = _text_symbols(tmp_path / "c" / "build" / "host", "mm_conv.o", nm_only=True)
    loops = {"mm_conv8x2d_u", "mm_conv8x2d_s", "mm_conv8p_d"}
    general = variant == "a shift of 32"
    assert (fns & loops, "mm_conv8p_px" in fns) == (set() if general else loops, general)
    assert ("mm_conv8x2_px" in fns) == general


def _pairs_net(rng: np.random.Generator) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """Random layers of the W8/A8 pair paths' asm loop (mm_conv8x2d) on an odd or even image:
    3, 5 or 6 unsigned channels to 4 or 12 (not the small family's lanes) from byte patches
    (CONV8P_D: random kernel, rows with a 0 to 3 byte tail), then from the input (CONV8X2D_U,
    random kernel, stride and padding: clipped borders, lone pixels) to signed outputs, and on
    those signed inputs (CONV8X2D_S) to an odd or even count of channels (rows after the last
    block)."""
    c0, c1, c2 = int(rng.choice([3, 5, 6])), int(rng.choice([4, 12])), int(rng.choice([4, 12]))
    c3 = int(rng.choice([5, 7, 8, 11]))
    h, w = int(rng.integers(4, 10)), int(rng.integers(4, 10))
    k1 = (int(rng.integers(1, 4)), int(rng.integers(2, 4)))
    k2 = (int(rng.integers(1, 4)), int(rng.integers(2, 4)))
    s2, p2 = int(rng.integers(1, 3)), (int(rng.integers(0, k2[0])), int(rng.integers(0, k2[1])))
    body = torch.nn.Sequential(
        _conv_relu(c0, c1, k1),
        torch.nn.Sequential(
            torch.nn.Conv2d(c1, c2, k2, s2, p2, bias=False), torch.nn.BatchNorm2d(c2)
        ),
        conv_bn(c2, c3, 3),
    )
    head = [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(c3, 10)]
    return torch.nn.Sequential(body, *head).eval(), (c0, h, w)


def _conv_relu(ci: int, co: int, k: tuple[int, int]) -> torch.nn.Module:
    m = torch.nn.Conv2d(ci, co, k, 1, (k[0] // 2, k[1] // 2), bias=False)
    return torch.nn.Sequential(m, torch.nn.BatchNorm2d(co), torch.nn.ReLU())


@pytest.mark.parametrize("qemu", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_w8a8_pair_loops_on_random_shapes_are_bit_exact(tmp_path, seed: int, qemu: bool) -> None:
    """_pairs_net's layers on mm_conv's asm pair loops (MM_CONV8P_KIND, MM_CONV8X2_KIND),
    written over their own input where the inplace schedule lets them, bit for bit the numpy
    reference (seed 0: the first two in place, 1 (slow): the last). Host build (portable C);
    `qemu` (slow): also the Cortex-M4 image (the asm)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, shape = _pairs_net(rng)
    g = trace(model, (1, *shape))
    pol = Policy.uniform(g, 8)
    im = convert(random_qparams(g, pol, seed=seed), g, pol, schedule="inplace")
    convs = [o for o in im.ops if o.weights is not None][:3]
    assert [x.kernel for x in im.report.layers if x.name in {o.name for o in convs}] == [
        "mm_conv"
    ] * 3
    assert [o.in_signed[0] for o in convs] == [False, False, True]
    assert [(o.qmin, o.qmax) for o in convs] == [(0, 255), (-127, 127), (0, 255)]
    assert all(int(o.arrays["shift"].min()) > 32 for o in convs)
    assert {o.name for o in convs} & set(im.report.schedule.inplace)
    x = np.random.default_rng(seed).integers(0, 256, (12, *shape), dtype=np.uint8)
    if qemu:
        require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    _host_and_qemu(im, tmp_path, x, qemu=qemu)
    fns = _text_symbols(tmp_path / "c" / "build" / "host", "mm_conv.o", nm_only=True)
    assert {"mm_conv8x2d_u", "mm_conv8x2d_s", "mm_conv8p_d"} <= fns


@pytest.mark.parametrize("qemu", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_w8a8_pair_loop_with_an_immediate_offset_is_bit_exact(tmp_path, qemu: bool) -> None:
    """A layer on 16 unsigned channels at stride 1 (pixel 1's input 16 bytes after pixel 0's:
    MM_CONV8X2_KIND's CONV8X2D_U16, the offset an immediate) beside one at stride 2 (32 bytes:
    CONV8X2D_U), both with clipped borders, lone pixels and a row after the last block of four,
    bit for bit the numpy reference: host build (portable C); `qemu` (slow): the asm."""
    torch.manual_seed(4)
    model = torch.nn.Sequential(
        _conv_relu(3, 16, (3, 3)), _conv_relu(16, 13, (3, 3)), conv_bn(13, 16, 1),
        torch.nn.Sequential(torch.nn.Conv2d(16, 9, 3, 2, 1, bias=False),
                            torch.nn.BatchNorm2d(9), torch.nn.ReLU()),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(9, 10),
    ).eval()  # fmt: skip
    g = trace(model, (1, 3, 7, 9))
    pol = Policy.uniform(g, 8)
    im = convert(random_qparams(g, pol, seed=4), g, pol, schedule="inplace")
    convs = [o for o in im.ops if o.weights is not None]
    assert [(o.in_signed[0], o.qmin, o.qmax) for o in (convs[1], convs[3])] == [(False, 0, 255)] * 2
    assert all(int(o.arrays["shift"].min()) > 32 for o in convs)
    x = np.random.default_rng(4).integers(0, 256, (12, 3, 7, 9), dtype=np.uint8)
    if qemu:
        require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    _host_and_qemu(im, tmp_path, x, qemu=qemu)
    lib = tmp_path / "c" / "lib"
    assert _paths_compiled(lib, tmp_path, "CONV8X2D_U16", "CONV8X2D_U") == [1, 1]


class Sub8PwNet(torch.nn.Module):
    """mm_conv's SUB8P pairs in one asm loop (mm_sub8p_d: rows of whole words) and
    mm_pointwise_sub on 8-bit inputs (the sub8 path) on a 1 x 13 x 13 input: a 10 x 4 stride-2
    stem on one channel (kws's: 40-byte rows, clipped borders, 36 pixels), a 1x1 layer down to 5
    channels and a 2 x 2 layer on them (20-byte rows: a 4-byte step after the 8-byte ones) to
    20 signed outputs (the clamp S) on 25 pixels (an odd last one); then 25 pixels in pairs and
    an odd last one (a, b, c), a 2-element tail per row and signed inputs (a, c: b has no
    ReLU), 2 and 1 rows after the last block of four (a, b), a stride-2 1x1 layer to 12 signed
    outputs on 9 pixels (s: the pair asm straight from the input, pairs across rows), one pixel
    (fc). Under the inplace schedule the stem and the 1x1 layers write over their own
    inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(
            torch.nn.Conv2d(1, 20, (10, 4), 2, (4, 1), bias=False),
            torch.nn.BatchNorm2d(20),
            torch.nn.ReLU(),
        )
        self.p = conv_bn(20, 5, 1)
        self.q = torch.nn.Sequential(
            torch.nn.Conv2d(5, 20, 2, bias=False), torch.nn.BatchNorm2d(20)
        )
        self.a = conv_bn(20, 18, 1)
        self.b = conv_bn(18, 13, 1, act=None)
        self.c = conv_bn(13, 16, 1)
        self.s = conv_bn(16, 12, 1, 2, act=None)
        self.fc = torch.nn.Linear(12, 9)

    def forward(self, x):
        y = self.s(self.c(self.b(self.a(self.q(self.p(self.stem(x)))))))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(y, 1), 1))


@pytest.mark.parametrize("wb", [4, 2])
def test_sub8_paths_are_bit_exact(tmp_path, wb: int) -> None:
    """4- and 2-bit weights on 8-bit inputs: mm_conv's two-pixel walks over channel_packed
    weights (Conv8Net: from the input and from byte patches, clipped borders, odd rows, stride
    2, tails of elements and of channels, signed inputs, signed 8-bit outputs: path SUB8_RQS)
    and mm_pointwise_sub's (Sub8PwNet), bit for bit the numpy reference: host build (portable
    C) and, with the ARM tools, qemu (the DSP asm)."""
    arm = shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")
    kw = {"target": "cortex-m4", "cm4_images": 3} if arm else {}
    paths = set()
    for i, (net, shape) in enumerate([(Conv8Net, (1, 3, 15, 15)), (Sub8PwNet, (1, 1, 13, 13))]):
        torch.manual_seed(i)
        g = trace(net().eval(), shape)
        pol = Policy.uniform(g, 8)
        pol = pol.replace(weights={k: wb for k in pol.weights})
        im = convert(random_qparams(g, pol, seed=3 + i), g, pol, schedule=("layer", "inplace")[i])
        assert i == 0 or {"stem.0", "a.0"} <= set(im.report.schedule.inplace)
        for o, lay in zip(im.ops, im.report.layers, strict=True):
            if o.weights is not None and sub8_path(o, lay.kernel):
                one = lay.kernel == "mm_pointwise_sub" and np.prod(o.op.out_shape[1:]) == 1
                paths.add((lay.kernel, "one pixel" if one else "in_c % 4" if o.op.in_shape[0] % 4 else "pairs"))  # fmt: skip
        x = np.random.default_rng(6 + i).integers(0, 256, (30, *shape[1:]), dtype=np.uint8)
        out = export_c(im, tmp_path / f"c{i}", test_images=x, **kw)
        s = json.loads((out / "export.json").read_text())
        assert s["selftest_identical"] == 30
        assert not arm or s["cortex_m4"]["images"] == 3
        # the signed 8-bit outputs (act=None layers) take mm_rq8x4's requantization; no layer
        # needs the general one, so it is not compiled (kernel .text: ic mixed)
        assert _paths_compiled(out / "lib", tmp_path, "SUB8_RQS", "SUB8_RQANY") == [1, 0]
        # Sub8PwNet's stem and q (rows of whole words on patches, MM_RQ8: U and S) take the asm
        # pair loop of their width only, and so does Conv8Net's stem (27-byte rows: a 3-byte
        # tail after the words; 2-bit: the loop with the tail step, W2T), its other patch
        # layers (signed inputs, 30 outputs) the generic one; Sub8PwNet's s (unsigned inputs,
        # 12 signed outputs) the same asm loop from mm_pointwise_sub
        pd = [o for o in im.ops if o.weights is not None and o.op.in_shape[0] % 4 and o.row_elems % 4 == 0]  # fmt: skip
        assert [(o.qmin, o.qmax) for o in pd] == [[], [(0, 255), (-127, 127)]][i]
        stem = im.ops[0] if i == 0 else next(o for o in im.ops if o.name == "s.0")
        assert (stem.row_elems, stem.qmin, stem.qmax) == [(27, 0, 255), (16, -127, 127)][i]
        assert all(int(o.arrays["shift"].min()) > 32 for o in [*pd, stem])
        want = [int(i == 1 or wb == 4), 0, int(i == 0 and wb == 2), int(i == 0)]
        assert _paths_compiled(out / "lib", tmp_path, f"SUB8PD_W{wb}", f"SUB8PD_W{6 - wb}", "SUB8PD_W2T", "SUB8P") == want  # fmt: skip
        assert _paths_compiled(out / "lib", tmp_path, f"PWSUB8PD_W{wb}") == [i]
    expected = {("mm_conv", "pairs"), ("mm_conv", "in_c % 4"), ("mm_pointwise_sub", "pairs"),
                ("mm_pointwise_sub", "in_c % 4")}  # fmt: skip
    assert expected | ({("mm_pointwise_sub", "one pixel")} if wb == 4 else set()) <= paths


@pytest.mark.slow
@pytest.mark.parametrize("wb", [4, 2])
def test_sub8_pair_loop_tails_are_bit_exact(tmp_path, wb: int) -> None:
    """mm_sub8p_d's rows that end in a tail of 1, 2 and 3 bytes (SUB8PD_W4, SUB8PD_W2T) on
    byte patches of 1, 5 and 3 channels: the clamps U and S, clipped borders, stride 2, odd
    rows (pairs across rows) and a lone last pixel; and (4-bit) mm_pointwise_sub's stride-2
    1x1 on 5 channels (PWSUB8PD_W4: a 1-byte tail). Host build and the Cortex-M4 image under
    qemu (the DSP asm), bit for bit the numpy reference."""
    require_tool("arm-none-eabi-gcc", "qemu-system-arm")

    def conv(ci, co, k, s=1, p=(0, 0), act=True):
        m = [torch.nn.Conv2d(ci, co, k, s, p, bias=False), torch.nn.BatchNorm2d(co)]
        return torch.nn.Sequential(*m, *([torch.nn.ReLU()] if act else []))

    torch.manual_seed(wb)
    net = torch.nn.Sequential(
        conv(1, 8, 3, 1, (1, 1)), conv(8, 5, 1), conv(5, 12, (1, 2), 2, (0, 1), act=False),
        conv(12, 3, 1), conv(3, 8, 3, 1, (1, 1)), conv(8, 5, 1), conv(5, 8, 1, 2, act=False),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10),
    ).eval()  # fmt: skip
    g = trace(net, (1, 1, 11, 9))
    pol = Policy.uniform(g, 8)
    pol = pol.replace(weights={k: wb for k in pol.weights})
    im = convert(random_qparams(g, pol, seed=wb), g, pol)
    patch = [o for o in im.ops if o.weights is not None and o.op.in_shape[0] % 4]
    assert [(o.row_elems % 4, o.qmax) for o in patch] == [(1, 255), (2, 127), (3, 255), (1, 127)]
    assert all(int(o.arrays["shift"].min()) > 32 for o in patch)
    x = np.random.default_rng(wb).integers(0, 256, (12, 1, 11, 9), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x)
    paths = (f"SUB8PD_W{wb}" if wb == 4 else "SUB8PD_W2T", "SUB8P", "PWSUB8PD_W4")
    assert _paths_compiled(tmp_path / "c" / "lib", tmp_path, *paths) == [1, 0, int(wb == 4)]


def _sub8_pairs_net(rng: np.random.Generator) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """Random layers of the sub8 pair path (4-bit weights on 8-bit inputs, in_c % 4 == 0) on an
    odd or even image: a stem on 3 channels (patches), then on 8 unsigned channels to 8 or 16
    (random kernel, stride and padding: clipped borders, lone pixels; the clamp U), on those to
    10 or 13 signed outputs (the clamp S, rows after the last block) and on 12 channels (in_c %
    8 != 0: mm_sub8_px's pairs)."""
    c1, c2 = int(rng.choice([8, 16])), int(rng.choice([10, 13]))
    h, w = int(rng.integers(4, 10)), int(rng.integers(4, 10))
    k1 = (int(rng.integers(1, 5)), int(rng.integers(2, 5)))
    s1, p1 = int(rng.integers(1, 3)), (int(rng.integers(0, k1[0])), int(rng.integers(0, k1[1])))
    body = torch.nn.Sequential(
        _conv_relu(3, 8, (3, 3)),
        torch.nn.Sequential(
            torch.nn.Conv2d(8, c1, k1, s1, p1, bias=False), torch.nn.BatchNorm2d(c1),
            torch.nn.ReLU(),
        ),
        conv_bn(c1, c2, 3, act=None),
        conv_bn(c2, 12, 1),
        _conv_relu(12, 8, (3, 3)),
    )  # fmt: skip
    head = [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10)]
    return torch.nn.Sequential(body, *head).eval(), (3, h, w)


@pytest.mark.parametrize("qemu", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
@pytest.mark.parametrize("wb", [4, 2])
def test_sub8_pair_loop_on_random_shapes_is_bit_exact(
    tmp_path, seed: int, qemu: bool, wb: int
) -> None:
    """_sub8_pairs_net's layers on `wb`-bit weights: those on 8 or 16 unsigned channels under
    MM_RQ8 take the asm pair loop (MM_SUB8X2_KIND: SUB8X2D_W4, SUB8X2D_W2; lone pixels too; the
    rows after its blocks mm_s8_rest, portable builds mm_s8x2d_c), written over their own
    input where the inplace schedule lets them, bit for bit the numpy reference: host build
    (portable C); `qemu` (slow): the Cortex-M4 image (the asm)."""
    torch.manual_seed(seed)
    model, shape = _sub8_pairs_net(np.random.default_rng(seed))
    g = trace(model, (1, *shape))
    pol = Policy.uniform(g, 8)
    pol = pol.replace(weights={k: wb for k in pol.weights})
    im = convert(random_qparams(g, pol, seed=seed), g, pol, schedule="inplace")
    convs = [o for o in im.ops if o.weights is not None][1:3]
    assert [(o.op.in_shape[0], o.in_signed[0], o.qmin, o.qmax) for o in convs] == [
        (8, False, 0, 255),
        (convs[1].op.in_shape[0], False, -127, 127),
    ]
    assert all(int(o.arrays["shift"].min()) > 32 for o in convs)
    x = np.random.default_rng(seed).integers(0, 256, (12, *shape), dtype=np.uint8)
    if qemu:
        require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    _host_and_qemu(im, tmp_path, x, qemu=qemu)
    kind = f"SUB8X2D_W{wb}"
    assert _paths_compiled(tmp_path / "c" / "lib", tmp_path, kind, "SUB8X2") == [1, 1]


def _fast_sub8_nets(wb: int):
    """Two models whose 1x1 layers and linears on 8-bit unsigned inputs take mm_pointwise_sub's
    fast sub8 path (MM_P_PWSUB8F), weights of `wb` and 6 - `wb` bits by turns: (a) 25 pixels,
    then 9 (odd last ones; a stride-2 layer), on 4, 8, 28, 20, 12, 24, 32 and 16 channels (1 to
    8 input words: the pair asm's loop of eight words entered at each of its eight entries, four
    per weight width, the other four with `wb` swapped), 13 outputs (a row after the last block
    of four); (b) a linear with the fast requantization (ReLU) and one with the general one
    (signed logits, three rows after the block)."""
    torch.manual_seed(wb)
    a = torch.nn.Sequential(conv_bn(1, 4, 3), conv_bn(4, 8, 1), conv_bn(8, 28, 1, stride=2),
                            *(conv_bn(i, o, 1) for i, o in [(28, 20), (20, 12), (12, 24), (24, 32),
                                                             (32, 16), (16, 13)]))  # fmt: skip
    b = torch.nn.Sequential(conv_bn(1, 8, 3), conv_bn(8, 16, 1), torch.nn.AdaptiveAvgPool2d(1),
                            torch.nn.Flatten(), torch.nn.Linear(16, 12), torch.nn.ReLU(),
                            torch.nn.Linear(12, 7))  # fmt: skip
    for i, (net, shape) in enumerate([(a, (1, 1, 5, 5)), (b, (1, 1, 3, 3))]):
        g = trace(net.eval(), shape)
        pol = Policy.uniform(g, 8)
        bits = {k: (8 if j == 0 else wb if j % 2 else 6 - wb) for j, k in enumerate(pol.weights)}
        pol = pol.replace(weights=bits)
        yield convert(random_qparams(g, pol, seed=4 + i), g, pol), shape


def _paths_compiled(lib: Path, tmp_path: Path, *paths: str) -> list[int]:
    """MM_USE_<path> of an exported library's mm_paths.h, read by the C preprocessor."""
    src = tmp_path / "paths.c"
    src.write_text('#include <stdio.h>\n#include "mm_kernels.h"\nint main(void) { '
                   + " ".join(f'printf("%d ", (int)(MM_USE_{p}));' for p in paths) + " }\n")  # fmt: skip
    subprocess.run(["gcc", "-std=c99", f"-I{lib}", "-o", str(tmp_path / "paths"), str(src)],
                   check=True)  # fmt: skip
    out = subprocess.run([str(tmp_path / "paths")], capture_output=True, text=True, check=True)
    return [int(v) for v in out.stdout.split()]


def _fast_sub8_check(tmp_path, wb: int, qemu: bool) -> None:
    for i, (im, shape) in enumerate(_fast_sub8_nets(wb)):
        subs = [o for o, lay in zip(im.ops, im.report.layers, strict=True)
                if lay.kernel == "mm_pointwise_sub"]  # fmt: skip
        assert len(subs) == (8, 3)[i] and all(o.op.in_shape[0] % 4 == 0 for o in subs)
        x = np.random.default_rng(9 + i).integers(0, 256, (12, *shape[1:]), dtype=np.uint8)
        d = tmp_path / f"n{i}"
        if qemu:
            _host_and_qemu(im, d, x)
        else:
            s = json.loads((export_c(im, d / "c", test_images=x) / "export.json").read_text())
            assert s["selftest_identical"] == len(x)
        # every one of them on the fast path (the old sub8 pixels compiled out)
        assert _paths_compiled(d / "c" / "lib", d, "PWSUB8F", "PWSUB8") == [1, 0]


def test_fast_sub8_pointwise_is_bit_exact_on_the_host(tmp_path) -> None:
    """mm_pointwise_sub's fast sub8 path (portable C) bit for bit the numpy reference: pixel
    pairs, odd last pixels, rows after the last block, in_c 4 / 8 / 28, both linears' paths,
    4- and 2-bit layers (one model of each kind keeps the default run short)."""
    _fast_sub8_check(tmp_path, 4, qemu=False)


@pytest.mark.slow
@pytest.mark.parametrize("wb", [4, 2])
def test_fast_sub8_pointwise_is_bit_exact_under_qemu(tmp_path, wb: int) -> None:
    """The same models through the Cortex-M4 image (the DSP asm: every block of a pixel pair's
    sums, corrections, requantization and stores in one asm loop) under qemu."""
    require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    _fast_sub8_check(tmp_path, wb, qemu=True)


def _dense_sub8_model(wb: int, signed: bool):
    """Linears on 8-bit inputs with `wb`- and 6 - `wb`-bit weights by turns, most on the sub8
    path's dense one (MM_SUB8D): mm_conv's linear on a 8 x 2 x 2 input (a 2 x 2 window, inputs
    unsigned or, with `signed`, signed), mm_pointwise_sub's on 32 and 16 channels, the last
    one's outputs signed (no ReLU: the asm's S clamp), the others' unsigned. Off it: 24 inputs
    (not whole 16-byte steps: PWSUB8F) and 12 outputs on signed inputs (PWSUB8). Then five
    linears with per-tensor weight scales (mm_dense_pt): 8-bit weights on the signed 12
    (PW8D_PT_S, 29 outputs: a row after the blocks), `wb`-bit on 29 -> 16 (not whole 16-byte
    rows, a part-used last byte: DENSE_PT's sub-byte rows on 8-bit inputs), `wb`-bit on
    16 -> 16 (SUB8D_PT), 8-bit to 10 4-bit outputs (PW8_PT: fewer than 16 channels, packed
    outputs), 6 - `wb`-bit on those to 7 signed outputs (DENSE_PT on packed inputs)."""
    torch.manual_seed(wb + 2 * signed)
    net = torch.nn.Sequential(
        conv_bn(1, 8, 3, 2, act=None if signed else torch.nn.ReLU), torch.nn.Flatten(),
        torch.nn.Linear(32, 24), torch.nn.ReLU(), torch.nn.Linear(24, 32), torch.nn.ReLU(),
        torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 20), torch.nn.Linear(20, 12),
        torch.nn.Linear(12, 29), torch.nn.ReLU(), torch.nn.Linear(29, 16), torch.nn.ReLU(),
        torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10), torch.nn.ReLU(),
        torch.nn.Linear(10, 7),
    )  # fmt: skip
    g = trace(net.eval(), (1, 1, 3, 3))
    pt = g.ops[-5:]
    g = dataclasses.replace(
        g, ops=(*g.ops[:-5], *(dataclasses.replace(o, per_tensor=True) for o in pt))
    )
    pol = Policy.uniform(g, 8)
    bits = {k: (8 if j == 0 else wb if j % 2 else 6 - wb) for j, k in enumerate(pol.weights)}
    bits.update(zip([o.name for o in pt], (8, wb, wb, 8, 6 - wb)))
    pol = pol.replace(weights=bits, activations={pt[3].output: 4})
    return convert(random_qparams(g, pol, seed=5 + wb), g, pol)


def _dense_sub8_check(tmp_path, wb: int, signed: bool, qemu: bool) -> None:
    im = _dense_sub8_model(wb, signed)
    kernels = [lay.kernel for lay in im.report.layers]
    assert kernels[1:] == ["mm_conv"] + ["mm_pointwise_sub"] * 4 + ["mm_dense_pt"] * 5, kernels
    assert [dense_pt_path(o) for o in im.ops[6:]] == ["pw8", "any", "sub8", "pw8", "any"]
    assert [o.arrays["mult"].size for o in im.ops[5:]] == [12, 1, 1, 1, 1, 1]
    assert im.ops[-1].in_bits == (4,) and im.ops[-2].w_bits == 8
    x = np.random.default_rng(wb).integers(0, 256, (16, 1, 3, 3), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x, qemu)
    # both widths' dense code compiled; mm_conv's linear not on its two-pixel walk
    paths = ("SUB8D_W4", "SUB8D_W2", "SUB8X2", "PWSUB8F", "PWSUB8")
    assert _paths_compiled(tmp_path / "c" / "lib", tmp_path, *paths) == [1, 1, 0, 1, 1]
    pt = ("PW8D_PT_U", "PW8D_PT_S", "SUB8D_PT_W4", "SUB8D_PT_W2", "PW8_PT", "DENSE_PT")
    want = [0, 1, int(wb == 4), int(wb == 2), 1, 1]
    assert _paths_compiled(tmp_path / "c" / "lib", tmp_path, *pt) == want


def test_dense_sub8_linears_are_bit_exact_on_the_host(tmp_path) -> None:
    """The sub8 path's dense linears (portable C) bit for bit the numpy reference: mm_conv's
    and mm_pointwise_sub's, 4- and 2-bit rows, unsigned and signed outputs."""
    _dense_sub8_check(tmp_path, 4, signed=False, qemu=False)


@pytest.mark.slow
@pytest.mark.parametrize(("wb", "signed"), [(4, False), (2, True)])
def test_dense_sub8_linears_are_bit_exact_under_qemu(tmp_path, wb: int, signed: bool) -> None:
    """The same through the Cortex-M4 image (the dense asm loop: sums, corrections,
    requantization and word store per block of four channels) under qemu, both weight widths
    in each model, unsigned and signed inputs."""
    require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    _dense_sub8_check(tmp_path, wb, signed, qemu=True)


def _short_rows_model(wb: int):
    """Per-tensor linears with `wb`- and 6 - `wb`-bit weights on rows of whole words that are
    not whole 16-byte steps (mm_dense_pt's SUB8D4_PT): 4 signed inputs (one group: no
    iteration of the pair loop) -> 20, 20 unsigned (five groups: the odd one, then two
    iterations) -> 8, 8 (two groups) -> 10 signed outputs (two rows after the blocks)."""
    torch.manual_seed(30 + wb)
    net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 4), torch.nn.Linear(4, 20), torch.nn.ReLU(),
        torch.nn.Linear(20, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10),
    )  # fmt: skip
    g = trace(net.eval(), (1, 3, 2, 2))
    pt = g.ops[1:]
    g = dataclasses.replace(
        g, ops=(g.ops[0], *(dataclasses.replace(o, per_tensor=True) for o in pt))
    )
    pol = Policy.uniform(g, 8)
    pol = pol.replace(weights={**pol.weights, **dict(zip([o.name for o in pt], (wb, 6 - wb, wb)))})
    return convert(random_qparams(g, pol, seed=7 + wb), g, pol)


@pytest.mark.parametrize(("wb", "qemu"), [(4, False), pytest.param(4, True, marks=pytest.mark.slow),
                                          pytest.param(2, True, marks=pytest.mark.slow)])  # fmt: skip
def test_dense_pt_short_sub_byte_rows_are_bit_exact(tmp_path, wb: int, qemu: bool) -> None:
    """Short 4- and 2-bit per-tensor rows in the sub8 dense loop's 4-byte steps bit for bit the
    numpy reference: host (portable C) and, under qemu, the Cortex-M4 asm (all four kinds,
    both weight widths on signed and unsigned inputs, across the two models)."""
    im = _short_rows_model(wb)
    assert [lay.kernel for lay in im.report.layers] == ["mm_pointwise8"] + ["mm_dense_pt"] * 3
    assert [dense_pt_path(o) for o in im.ops[1:]] == ["sub8"] * 3
    assert [o.in_signed[0] for o in im.ops[1:]] == [True, False, False]
    x = np.random.default_rng(wb).integers(0, 256, (16, 3, 2, 2), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x, qemu)
    # the layers' kinds alone compiled (wb 4: W4S, W2U, W4U; wb 2: W2S, W4U, W2U)
    kinds = ("W4U", "W4S", "W2U", "W2S")
    paths = (*(f"SUB8D4_PT_{k}" for k in kinds), "SUB8D_PT_W4", "SUB8D_PT_W2", "DENSE_PT")
    want = [1, int(wb == 4), 1, int(wb == 2), 0, 0, 0]
    assert _paths_compiled(tmp_path / "c" / "lib", tmp_path, *paths) == want


@pytest.mark.parametrize(
    ("c", "size", "stride", "relu", "out_bits"),
    [
        (12, 9, 1, True, 8),
        (12, 9, 2, False, 4),
        (4, 3, 1, False, 8),
        (10, 5, 1, True, 2),
        (8, 1, 1, False, 8),
    ],  # fmt: skip
)
def test_depthwise_3x3_windows_are_bit_exact(tmp_path, c, size, stride, relu, out_bits) -> None:
    """A 3x3 depthwise layer alone (its output is the model's: every value is compared), on
    8-bit unsigned inputs: inside windows and every border at stride 1 and 2, an image just 3
    wide, a tail of channels, clamps to [0, 255] and to the signed range, 8-, 4- and 2-bit
    outputs; a 1 x 1 image (narrower than the kernel: every window clipped on both sides).
    Host build and, with the ARM tools, qemu (the DSP asm)."""
    torch.manual_seed(2)
    dw = conv_bn(c, c, 3, stride, groups=c, act=torch.nn.ReLU if relu else None)
    # The model's output stays 8-bit: sub-byte outputs go through a 1x1 layer that mixes them.
    model = (dw if out_bits == 8 else torch.nn.Sequential(dw, conv_bn(c, c, 1, act=None))).eval()
    g = trace(model, (1, c, size, size))
    pol = Policy.uniform(g, 8)
    pol = pol.replace(activations={**pol.activations, g.ops[0].output: out_bits})
    im = convert(random_qparams(g, pol, seed=4), g, pol)
    assert im.report.layers[0].kernel == "mm_depthwise" and im.ops[0].out_bits == out_bits
    x = np.random.default_rng(7).integers(0, 256, (40, c, size, size), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x)


def _host_and_qemu(im, tmp_path, x: np.ndarray, qemu: bool = True) -> None:
    """Every image bit-identical in the host self-test and, with the ARM tools (and `qemu`),
    four in the Cortex-M4 image under qemu (the DSP asm)."""
    arm = qemu and shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")
    kw = {"target": "cortex-m4", "cm4_images": 4} if arm else {}
    s = json.loads((export_c(im, tmp_path / "c", test_images=x, **kw) / "export.json").read_text())
    assert s["selftest_identical"] == len(x)
    assert not arm or s["cortex_m4"]["images"] == 4


@pytest.mark.parametrize(("pad", "h", "w"), [(2, 7, 8), (3, 6, 4), (2, 5, 1), (1, 4, 2), (0, 6, 6)])
def test_depthwise_3x3_any_padding_is_bit_exact(tmp_path, pad: int, h: int, w: int) -> None:
    """3x3 depthwise layers on 8-bit unsigned inputs with padding 0 to 3 (windows with two,
    one or no columns and rows inside, whole windows outside) on images 1 to 8 wide: host
    build and, with the ARM tools, qemu (the DSP asm, whose border windows assumed a padding of
    one before)."""
    torch.manual_seed(5)
    c = 8
    conv = torch.nn.Conv2d(c, c, 3, 1, pad, groups=c, bias=False)
    model = torch.nn.Sequential(conv, torch.nn.BatchNorm2d(c), torch.nn.ReLU()).eval()
    g = trace(model, (1, c, h, w))
    pol = Policy.uniform(g, 8)
    im = convert(random_qparams(g, pol, seed=6), g, pol)
    assert im.report.layers[0].kernel == "mm_depthwise"
    x = np.random.default_rng(8).integers(0, 256, (20, c, h, w), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x)


def _dw_after_sub_byte(c: int, h: int, w: int, stride: int, pad: int, bits: tuple[int, int]):
    """A 1x1 layer whose output (the depthwise layer's input) has bits[0] bits, then a 3x3
    depthwise layer with bits[1]-bit outputs (a 1x1 layer after it when below 8, so that the
    model's output stays 8-bit): its IntegerModel."""
    dw = torch.nn.Conv2d(c, c, 3, stride, pad, groups=c, bias=False)
    layers = [conv_bn(c, c, 1), dw, torch.nn.BatchNorm2d(c), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, *([conv_bn(c, c, 1)] if bits[1] < 8 else [])).eval()
    g = trace(model, (1, c, h, w))
    pol = Policy.uniform(g, 8)
    acts = {g.ops[0].output: bits[0], g.ops[1].output: bits[1]}
    pol = pol.replace(activations={**pol.activations, **acts})
    return convert(random_qparams(g, pol, seed=3), g, pol)


DW_SUB_BYTE = [
    (12, 9, 7, 1, 1, (4, 4)),
    (10, 8, 5, 2, 1, (2, 2)),
    (7, 5, 9, 1, 2, (4, 8)),
    (4, 6, 3, 2, 0, (2, 4)),
    (9, 2, 6, 1, 1, (4, 2)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("c", "h", "w", "stride", "pad", "bits", "qemu"),
    [*[pytest.param(*p, True, marks=pytest.mark.slow) for p in DW_SUB_BYTE],
     (*DW_SUB_BYTE[1], False)],
)  # fmt: skip
def test_depthwise_3x3_on_sub_byte_inputs_is_bit_exact(tmp_path, c, h, w, stride, pad, bits, qemu):
    """3x3 depthwise layers on 4- and 2-bit unsigned inputs (mm_dw_3x3_w: rows widened into a
    ring, then the 8-bit code, or on DSP cores the packed rows read as they are where every
    window is in mm_dw_rows' runs; the host builds run its portable rows, qemu the DSP asm) with
    odd widths and channel counts (a tail of channels), padding 0 to 2, stride 2, an image two
    rows high, and 8-, 4- and 2-bit outputs (DW_OUT4 / DW_OUT2 where the clamp is their whole
    range): every image bit-identical. The host build of one stays in the default run (and
    test_depthwise_ring_is_exactly_the_counted_scratch builds another)."""
    torch.manual_seed(c + h)
    im = _dw_after_sub_byte(c, h, w, stride, pad, bits)
    assert im.report.layers[1].kernel == "mm_depthwise"
    assert (im.ops[1].in_bits[0], im.ops[1].out_bits) == bits
    x = np.random.default_rng(9).integers(0, 256, (12, c, h, w), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x, qemu)


def _dw_chain(c: int, h: int, w: int) -> IntegerModel:
    """1x1 layers around three 3x3 depthwise layers on 4- and 2-bit unsigned inputs (4 -> 8
    bits at stride 1, 2 -> 8 at stride 2, 4 -> 4 at stride 1): each a loop of the direct path
    (MM_DW_DIRECT) on DSP cores."""

    def dw(stride: int) -> list[torch.nn.Module]:
        conv = torch.nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False)
        return [conv, torch.nn.BatchNorm2d(c), torch.nn.ReLU()]

    layers = [conv_bn(c, c, 1), *dw(1), conv_bn(c, c, 1), *dw(2), conv_bn(c, c, 1), *dw(1)]
    g = trace(torch.nn.Sequential(*layers, conv_bn(c, c, 1)).eval(), (1, c, h, w))
    pol = Policy.uniform(g, 8)
    acts = dict(zip([g.ops[k].output for k in range(6)], [4, 8, 2, 8, 4, 4], strict=True))
    pol = pol.replace(activations={**pol.activations, **acts})
    return convert(random_qparams(g, pol, seed=4), g, pol)


@pytest.mark.parametrize("fold", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_depthwise_direct_loops_are_bit_exact(tmp_path, fold: bool) -> None:
    """The direct path's loops on packed 4- and 2-bit rows (channels 1 and 3 summed 2^4 or 2^2
    times theirs, taken out of their bias shift: mm_dw.c mm_dw_fold), and, where a group's
    requantization cannot fold that in (a bias shift of 1; a channel whose shift leaves 8 bits
    of it unfolded, 4 or 6 on channel 1 after its 2^4 or 2^2: scaled weights), the ring of
    widened rows instead: host build and, with the ARM tools, qemu (the DSP asm), every image
    bit-identical."""
    torch.manual_seed(12)
    im = _dw_chain(8, 9, 10)
    dws = [k for k, o in enumerate(im.ops) if im.report.layers[k].kernel == "mm_depthwise"]
    assert [(im.ops[k].in_bits[0], im.ops[k].out_bits) for k in dws] == [(4, 8), (2, 8), (4, 4)]
    if not fold:
        ops = list(im.ops)
        for k in dws:
            shift = ops[k].arrays["shift"].copy()
            shift[5] = 32 + ops[k].bias_shift - 8
            arrays = {**ops[k].arrays, "shift": shift}
            ops[k] = dataclasses.replace(ops[k], bias_shift=1 if k == dws[0] else ops[k].bias_shift,
                                         arrays=arrays)  # fmt: skip
        im = dataclasses.replace(im, ops=tuple(ops))
    x = np.random.default_rng(3).integers(0, 256, (6, 8, 9, 10), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x)


def _ring_four_rows_max() -> int:
    """The widest input whose four widened rows fit the ring counted at MM_DW_RING_W columns
    (mm_dw_3x3_w's four-row ring)."""
    from micromix.ops.common import kernel_constant

    return kernel_constant("MM_DW_RING") * kernel_constant("MM_DW_RING_W") // 4


def test_depthwise_ring_is_exactly_the_counted_scratch(tmp_path) -> None:
    """The depthwise ring of widened rows is the scratch the memory model counts for a 3x3
    layer (MM_DW_RING rows of 4 x in_w bytes): with the largest need in the model, the checked
    build passes, and with 4 bytes less the ring writes into the guard."""
    from micromix.ops.common import kernel_constant

    torch.manual_seed(1)
    im = _dw_after_sub_byte(8, 6, 16, 1, 1, (4, 8))
    need = kernel_constant("MM_DW_RING") * 4 * 16
    assert im.report.layers[1].scratch_bytes == need == im.report.scratch_bytes
    x = np.random.default_rng(2).integers(0, 256, (4, 8, 6, 16), dtype=np.uint8)
    _ring_fills_the_scratch(tmp_path, im, x, need)


def test_depthwise_four_row_ring_fills_the_counted_scratch(tmp_path) -> None:
    """At the widest input the four-row ring takes (MM_DW_RING_W < w, four rows of 4 x w
    bytes exactly the counted MM_DW_RING x 4 x MM_DW_RING_W), the checked build passes and with
    4 bytes less of scratch the ring writes into the guard."""
    from micromix.ops.common import kernel_constant

    torch.manual_seed(2)
    w = _ring_four_rows_max()
    assert w > kernel_constant("MM_DW_RING_W")
    im = _dw_after_sub_byte(4, 7, w, 1, 1, (4, 8))
    need = 4 * 4 * w
    assert im.report.layers[1].scratch_bytes == need == im.report.scratch_bytes
    x = np.random.default_rng(3).integers(0, 256, (3, 4, 7, w), dtype=np.uint8)
    _ring_fills_the_scratch(tmp_path, im, x, need)


def _ring_fills_the_scratch(tmp_path, im, x: np.ndarray, need: int) -> None:
    """The checked build of `im` passes with `need` bytes of scratch, and with 4 bytes less it
    stops at the guard."""
    out = export_c(im, tmp_path / "c", test_images=x, check=False)
    assert run_checked_build(out).returncode == 0
    header = (out / "lib" / "micromix_model.h").read_text()
    old = f"#define MICROMIX_SCRATCH_BYTES {need} "
    assert header.count(old) == 1
    (out / "lib" / "micromix_model.h").write_text(
        header.replace(old, f"#define MICROMIX_SCRATCH_BYTES {need - 4} ")
    )
    r = run_checked_build(out)
    assert r.returncode != 0 and b"wrote past the" in r.stderr


@pytest.mark.parametrize(
    ("c", "h", "w", "stride", "bits", "qemu"),
    [pytest.param(8, 9, 30, 1, (4, 4), True, marks=pytest.mark.slow),
     pytest.param(6, 10, 25, 2, (2, 8), True, marks=pytest.mark.slow),
     pytest.param(5, 7, 27, 1, (4, 2), True, marks=pytest.mark.slow),
     (6, 8, 25, 2, (2, 4), False)],
)  # fmt: skip
def test_depthwise_four_row_ring_is_bit_exact(tmp_path, c, h, w, stride, bits, qemu) -> None:
    """3x3 layers on 4- and 2-bit inputs wider than MM_DW_RING_W columns whose four widened
    rows fit the counted ring take mm_dw_3x3_w's four-row ring (no unwidened group code in the
    build): rows kept across a move to the ring's top (one or two, odd word counts), stride 1
    and 2, 8-, 4- and 2-bit outputs, a tail of channels; every image bit-identical on the
    host (portable rows) and in qemu (the DSP asm and its ring copy)."""
    from micromix.export.cgen import library_files

    torch.manual_seed(c + w)
    im = _dw_after_sub_byte(c, h, w, stride, 1, bits)
    model = _write(tmp_path / "model", library_files(im))
    assert _text_symbols(model, "mm_dw.c") & {"mm_dw_4u", "mm_dw_2u", "mm_dw_3x3_w"} == {
        "mm_dw_3x3_w"
    }
    x = np.random.default_rng(c).integers(0, 256, (8, c, h, w), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x, qemu)


def test_depthwise_rows_wider_than_the_ring_are_read_unwidened(tmp_path) -> None:
    """A 3x3 layer on 4-bit inputs too wide for four rows in the ring counted at MM_DW_RING_W
    columns keeps the unwidened group code (mm_dw_4u, no mm_dw_3x3_w in its build), is counted
    the ring of MM_DW_RING_W columns only (a patch tile of it may be that narrow), and stays
    bit-identical on the host."""
    from micromix.export.cgen import library_files
    from micromix.ops.common import kernel_constant

    torch.manual_seed(4)
    w = _ring_four_rows_max() + 1
    im = _dw_after_sub_byte(8, 5, w, 1, 1, (4, 8))
    cap = kernel_constant("MM_DW_RING") * 4 * kernel_constant("MM_DW_RING_W")
    assert im.report.layers[1].scratch_bytes == cap
    model = _write(tmp_path / "model", library_files(im))
    assert _text_symbols(model, "mm_dw.c") & {"mm_dw_4u", "mm_dw_3x3_w"} == {"mm_dw_4u"}
    x = np.random.default_rng(5).integers(0, 256, (6, 8, 5, w), dtype=np.uint8)
    s = json.loads((export_c(im, tmp_path / "c", test_images=x) / "export.json").read_text())
    assert s["selftest_identical"] == 6


@pytest.mark.parametrize(
    ("c_in", "bits", "signed", "qemu"),
    [pytest.param(4, 4, False, True, marks=pytest.mark.slow),
     pytest.param(7, 2, True, True, marks=pytest.mark.slow),
     pytest.param(13, 4, True, True, marks=pytest.mark.slow), (13, 4, True, False)],
)  # fmt: skip
def test_widened_pointwise_on_few_channels_is_bit_exact(tmp_path, c_in, bits, signed, qemu):
    """mm_pointwise8_widen from 4 input channels (whole words of fields and a tail widened one
    by one, signed fields sign-extended bytewise) with 2-bit outputs, odd output channels."""
    torch.manual_seed(c_in)
    act = None if signed else torch.nn.ReLU
    model = torch.nn.Sequential(conv_bn(1, c_in, 3, act=act), conv_bn(c_in, 9, 1), conv_bn(9, 5, 1))
    g = trace(model.eval(), (1, 1, 7, 5))
    pol = Policy.uniform(g, 8)
    acts = {g.ops[0].output: bits, g.ops[1].output: 2}
    pol = pol.replace(activations={**pol.activations, **acts})
    im = convert(random_qparams(g, pol, seed=2), g, pol)
    assert im.report.layers[1].kernel == "mm_pointwise8_widen"
    assert g.tensors[g.ops[0].output].signed == signed
    x = np.random.default_rng(4).integers(0, 256, (12, 1, 7, 5), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x, qemu)


@pytest.mark.parametrize(("c_in", "out_bits"), [(16, 4), (8, 2)])
def test_widened_pointwise_on_words_of_unsigned_fields_is_bit_exact(tmp_path, c_in, out_bits):
    """mm_pointwise8_widen on unsigned 4-bit inputs in whole words (mm_widen4u: one and two
    words a pixel), an odd last pixel, 4- and 2-bit outputs packed by the pair loop's stores
    (mm_pw8_two8): host build and, with the ARM tools, qemu (the DSP asm)."""
    torch.manual_seed(c_in)
    model = torch.nn.Sequential(conv_bn(1, c_in, 3), conv_bn(c_in, 12, 1), conv_bn(12, 4, 1))
    g = trace(model.eval(), (1, 1, 5, 3))
    pol = Policy.uniform(g, 8)
    acts = {g.ops[0].output: 4, g.ops[1].output: out_bits}
    pol = pol.replace(activations={**pol.activations, **acts})
    im = convert(random_qparams(g, pol, seed=3), g, pol)
    assert im.report.layers[1].kernel == "mm_pointwise8_widen"
    assert not g.tensors[g.ops[0].output].signed and im.ops[1].out_bits == out_bits
    x = np.random.default_rng(5).integers(0, 256, (8, 1, 5, 3), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x)


@pytest.mark.parametrize(("c", "h", "w", "in_bits"), [(8, 9, 11, 8), (12, 8, 7, 8), (8, 6, 9, 4)])
def test_depthwise_4x4_stride_2_is_bit_exact(tmp_path, c: int, h: int, w: int, in_bits) -> None:
    """A 4x4 depthwise layer at stride 2 with padding 1 (what TF's one-sided padding of a
    stride-2 3x3 becomes on import): rows of whole 4-tap windows (mm_dw_group's unrolled row),
    clipped rows and columns at every border, odd and even sizes, a single-channel tail (12
    channels), 8- and 4-bit unsigned inputs. Host build and, with the ARM tools, qemu (the DSP
    asm), bit for bit the numpy reference."""
    torch.manual_seed(6)
    pw = conv_bn(c, c, 1)  # gives the depthwise layer its input bits
    conv = torch.nn.Conv2d(c, c, 4, 2, 1, groups=c, bias=False)
    model = torch.nn.Sequential(pw, conv, torch.nn.BatchNorm2d(c), torch.nn.ReLU()).eval()
    g = trace(model, (1, c, h, w))
    pol = Policy.uniform(g, 8)
    pol = pol.replace(activations={**pol.activations, g.ops[0].output: in_bits})
    im = convert(random_qparams(g, pol, seed=7), g, pol)
    dw = im.ops[1]
    assert im.report.layers[1].kernel == "mm_depthwise" and dw.kernel == (4, 4)
    assert dw.in_bits == (in_bits,) and dw.stride == (2, 2)
    x = np.random.default_rng(10).integers(0, 256, (20, c, h, w), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x)


# (c, h, w, kernel, stride, in place): 3x3 windows at stride 1 (rows of several runs, blocks
# of inside rows, odd sizes), at stride 2 on an even width (no right-hand run), a tail of
# channels; 4x4 at stride 2 with rows of 4 or more inside windows (and borders on every side);
# a tall narrow image (kws's shape) apart from its output (column by column, mm_dw_cols) and
# in place (row by row).
# The host runs every other one (its code for them is not new).
# (c, h, w, k, stride, in place); the last two tall and narrow: three groups column by column
# (mm_dw_cols) on runs built for the first, and eight columns, more than mm_dw_cols takes
# (MM_DW_COLS: row by row).
DW_FAST = [(12, 9, 7, 3, 1, True), (13, 8, 10, 3, 2, False), (8, 11, 13, 4, 2, True),
           (5, 10, 12, 4, 2, False), (7, 13, 5, 3, 1, False), (9, 11, 5, 3, 1, True),
           (12, 13, 5, 3, 1, False), (8, 36, 8, 3, 1, False)]  # fmt: skip


def _dw_fast_check(tmp_path, c: int, h: int, w: int, k: int, stride: int, inplace: bool,
                   qemu: bool) -> None:  # fmt: skip
    """A depthwise layer between two 1x1 layers, ReLU to 8-bit outputs (every shift above 32:
    the requantization of mm_dw_rows8 and mm_dw_run4x4), optionally written over its dying
    input (the schedule's in-place placement), bit for bit the numpy reference."""
    torch.manual_seed(c * h + w)
    dw = [torch.nn.Conv2d(c, c, k, stride, 1, groups=c, bias=False), torch.nn.BatchNorm2d(c)]
    model = torch.nn.Sequential(
        conv_bn(c, c, 1), *dw, torch.nn.ReLU(), conv_bn(c, c, 1, act=None)
    ).eval()
    g = trace(model, (1, c, h, w))
    pol = Policy.uniform(g, 8)
    im = convert(
        random_qparams(g, pol, seed=c + k), g, pol, schedule=("inplace" if inplace else "layer")
    )
    op, sched = im.ops[1], im.report.schedule
    assert im.report.layers[1].kernel == "mm_depthwise" and op.kernel == (k, k)
    assert (op.qmin, op.qmax) == (0, 255) and (np.asarray(op.arrays["shift"]) > 32).all()
    assert (sched is not None and g.ops[1].name in sched.inplace) == inplace
    x = np.random.default_rng(w).integers(0, 256, (12, c, h, w), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x, qemu)


@pytest.mark.parametrize(("c", "h", "w", "k", "stride", "inplace"), DW_FAST[::2])
def test_depthwise_fast_rows_are_bit_exact_on_the_host(tmp_path, c, h, w, k, stride, inplace):
    """The layers of the DSP row loops (mm_dw_rows8, mm_dw_run4x4), host build (the portable
    group code they replace there)."""
    _dw_fast_check(tmp_path, c, h, w, k, stride, inplace, qemu=False)


@pytest.mark.slow
@pytest.mark.parametrize(("c", "h", "w", "k", "stride", "inplace"), DW_FAST)
def test_depthwise_fast_rows_are_bit_exact_under_qemu(tmp_path, c, h, w, k, stride, inplace):
    """The same layers in the Cortex-M4 image under qemu: the asm row loops themselves."""
    require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    _dw_fast_check(tmp_path, c, h, w, k, stride, inplace, qemu=True)


# (c, h, w, stride, padding, weight bits, in place): tall narrow layers column by column
# (stride 1 and 2, 4- and 8-bit weights, a tail of channels), a wide one row by row in place
# (2-bit weights), and padding 2 (rows of no whole window, taken one window at a time: the
# group's rule stays the old one, no weights scaled).
DW_FOLD = [(8, 13, 5, 1, 1, 4, False), (5, 10, 6, 2, 1, 8, False), (12, 9, 7, 1, 1, 2, True),
           (8, 8, 6, 1, 2, 8, False)]  # fmt: skip


def _dw_fold_check(tmp_path, c: int, h: int, w: int, stride: int, pad: int, wb: int,
                   inplace: bool) -> None:  # fmt: skip
    """A 3x3 depthwise layer (the model's output: every value compared, ReLU to [0, 255]) whose
    channel 0 is a constant (zero weights: multiplier 2^30, shift 30 + k) and whose channels 1
    and 2 have M in [1/2, 1) and [1, 2) (shift 31 + k and 30 + k): the row loops' SMLAL rule
    with the bias shift only partly folded in (weights scaled by 2^d where every window is the
    loops'), bit for bit the numpy reference under qemu."""
    torch.manual_seed(c + h + w)
    dw = [torch.nn.Conv2d(c, c, 3, stride, pad, groups=c, bias=False), torch.nn.BatchNorm2d(c)]
    model = torch.nn.Sequential(conv_bn(c, c, 1), *dw, torch.nn.ReLU()).eval()
    g = trace(model, (1, c, h, w))
    pol = Policy.uniform(g, 8)
    pol = pol.replace(weights={**pol.weights, g.ops[1].name: wb})
    qp = random_qparams(g, pol, seed=c + wb)
    lq = qp.layers[g.ops[1].name]
    lq.w_int[0] = 0
    lq.w_scale[0] = 0.0
    im = convert(qp, g, pol, schedule=("inplace" if inplace else "layer"))
    op, sched = im.ops[1], im.report.schedule
    k = op.bias_shift
    op.arrays["shift"][1:3] = (31 + k, 30 + k)
    assert k >= 2 and (np.asarray(op.arrays["shift"]) > 32).all() and op.arrays["mult"][0] == 2**30
    assert (op.qmin, op.qmax) == (0, 255) and op.w_bits == wb
    assert (sched is not None and g.ops[1].name in sched.inplace) == inplace
    x = np.random.default_rng(h).integers(0, 256, (12, c, h, w), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x)


@pytest.mark.slow
@pytest.mark.parametrize(("c", "h", "w", "stride", "pad", "wb", "inplace"), DW_FOLD)
def test_depthwise_rows_fold_the_bias_shift_under_qemu(tmp_path, c, h, w, stride, pad, wb,
                                                       inplace):  # fmt: skip
    """See _dw_fold_check: the Cortex-M4 image's asm row loops."""
    require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    _dw_fold_check(tmp_path, c, h, w, stride, pad, wb, inplace)


def test_memory_exactness_read_from_the_objects(tmp_path) -> None:
    """The compiled objects, read with nm and size: the model's constants are exactly the
    arrays the memory model counts, one arena and one kernel scratch buffer of exactly its RAM;
    no other data. The linear has per-tensor weight scales: one multiplier and one shift."""
    im, out, _ = export_tiny(tmp_path, "mixed", scales=WeightScales(dense="tensor"))
    fc = next(o for o in im.ops if o.op.per_tensor)
    assert (fc.arrays["mult"].size, fc.arrays["shift"].size, fc.arrays["bias"].size) == (1, 1, 10)
    objs = out / "build" / "host"
    consts = {k: v for k, v in symbols(objs / "micromix_weights.o").items() if v[0] in "rR"}
    assert sum(size for _, size in consts.values()) == im.report.flash_bytes
    assert len(consts) == sum(len(o.arrays) + (o.weights is not None) for o in im.ops)
    assert sections(objs / "micromix_weights.o")[".rodata"] == im.report.flash_bytes
    model_syms = symbols(objs / "micromix_model.o")
    assert model_syms["micromix_arena"] == ("b", im.report.arena_bytes)
    assert model_syms["micromix_scratch"] == ("b", im.report.scratch_bytes)
    assert im.report.arena_bytes + im.report.scratch_bytes == im.report.ram_bytes
    data = {k for k, v in model_syms.items() if v[0] in "bBdDrR"}
    assert data == {"micromix_arena", "micromix_scratch"}  # no other RAM or constant
    for kernel in ("mm_conv", "mm_small", "mm_dw", "mm_dot", "mm_eltwise"):
        syms = symbols(objs / f"{kernel}.o")
        assert not [k for k, v in syms.items() if v[0] in "bBdD"], kernel  # no static buffers
    mem = built_memory(out)
    assert (mem.const_bytes, mem.arena_bytes, mem.scratch_bytes, mem.other_const) == (
        im.report.flash_bytes,
        im.report.arena_bytes,
        im.report.scratch_bytes,
        [],
    )


def test_mobilenet_v1_mixed_is_bit_exact(tmp_path) -> None:
    model = create("mobilenet_v1", width=0.25, resolution=28, in_channels=1, num_classes=10)
    g = trace(model)
    pol = mixed_policy(g, seed=2)
    im = convert(random_qparams(g, pol, seed=2), g, pol)
    x = np.random.default_rng(5).integers(0, 256, (60, 1, 28, 28), dtype=np.uint8)
    s = json.loads((export_c(im, tmp_path / "c", test_images=x) / "export.json").read_text())
    assert s["selftest_identical"] == 60
    assert s["built"]["const_bytes"] == im.report.flash_bytes
    assert s["built"]["ram_bytes"] == im.report.ram_bytes


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "mnasnet"])
def test_residual_zoo_models_are_bit_exact(tmp_path, name: str) -> None:
    model = create(name, width=0.35, resolution=28, in_channels=1, num_classes=10)
    g = trace(model)
    for i, pol in enumerate([Policy.uniform(g, 8), Policy.uniform(g, 2, 4), mixed_policy(g)]):
        im = convert(random_qparams(g, pol, seed=i), g, pol)
        x = np.random.default_rng(i).integers(0, 256, (300, 1, 28, 28), dtype=np.uint8)
        s = json.loads(
            (export_c(im, tmp_path / f"c{i}", test_images=x) / "export.json").read_text()
        )
        assert s["selftest_identical"] == 300


def test_the_self_test_catches_a_wrong_output(tmp_path) -> None:
    im, out, _ = export_tiny(tmp_path, "4/4", n=10)
    data = bytearray((out / "selftest.bin").read_bytes())
    data[-1] ^= 1  # flip a bit of the last expected logit
    (out / "selftest.bin").write_bytes(bytes(data))
    res = run_selftest(out)
    assert (res.images, res.identical) == (10, 9)


def test_generated_sources_are_self_contained(tmp_path) -> None:
    im, out, _ = export_tiny(tmp_path, "mixed", n=4, check=False)
    model_c = (out / "lib" / "micromix_model.c").read_text()
    assert (
        "malloc" not in model_c
        and f"MICROMIX_ARENA_BYTES {im.report.arena_bytes}"
        in (out / "lib" / "micromix_model.h").read_text()
    )
    assert model_c.count("static uint8_t micromix_arena[MICROMIX_ARENA_BYTES];") == 1
    for iop in im.ops:  # every tensor at the memory model's offset
        assert f"a + {im.report.offsets[iop.op.output]}" in model_c
    # The folder builds on its own with plain make, and can be checked later.
    subprocess.run(["make", "-s", "check"], cwd=out, check=True, capture_output=True)
    assert json.loads((out / "export.json").read_text())["checked"] is False
    result = build_and_check(out)
    assert result["selftest_identical"] == 4
    assert json.loads((out / "export.json").read_text())["checked"] is True


def test_unknown_target_is_an_error(tmp_path) -> None:
    model, g = tiny()
    pol = Policy.uniform(g, 8)
    im = convert(random_qparams(g, pol), g, pol)
    with pytest.raises(MicromixError, match="unknown target 'avr'"):
        export_c(im, tmp_path, target="avr")


def test_cortex_m4_under_qemu_matches_the_reference(tmp_path) -> None:
    require_tool(*ARM_TOOLS)
    im, out, s = export_tiny(tmp_path, "mixed", n=20, target="cortex-m4", cm4_images=6)
    m = s["cortex_m4"]
    assert m["images"] == 6
    assert m["flash_bytes"] >= im.report.flash_bytes  # + code, + embedded test images
    assert m["ram_bytes"] >= im.report.ram_bytes
    assert 0 < m["stack_used"] < 4096
    arm = symbols(out / "build" / "cm4" / "micromix_weights.o", "arm-none-eabi-nm")
    assert sum(v[1] for v in arm.values() if v[0] in "rR") == im.report.flash_bytes


def test_cli_exports_a_finetune_run(tmp_path, capsys) -> None:
    from micromix.cli import main
    from micromix.quant import prepare
    from micromix.quant.finetune import save_qat

    # The smallest zoo model (load_qat rebuilds zoo models from their config): keeps it quick.
    model = create("mobilenet_v1", width=0.1, resolution=16, in_channels=1, num_classes=10)
    model.eval()
    g = trace(model)
    pol = mixed_policy(g, seed=9, choices=(4, 8))
    qmodel = prepare(model, pol, g)  # clips at their initial value: no calibration needed
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_qat(run_dir / "qat.pt", qmodel)
    pol.save(run_dir / "policy.json")
    assert main(["export", "--run-dir", str(run_dir), "--images", "40"]) == 0
    out = capsys.readouterr().out
    assert "40/40 images bit-identical" in out and "exactly the memory model" in out
    assert (run_dir / "c" / "lib" / "micromix_model.c").exists()
    # A second export into the same folder needs --force; a run without qat.pt is an error.
    assert main(["export", "--run-dir", str(run_dir), "--images", "4"]) == 2
    assert main(["export", "--run-dir", str(tmp_path), "--images", "4"]) == 2
    assert "no qat.pt" in capsys.readouterr().err


def test_export_folder_has_no_leftovers_from_an_older_export(tmp_path) -> None:
    export_tiny(tmp_path, "8/8", n=4)
    im, out, s = export_tiny(tmp_path, "2/2", n=4)
    assert s["built"]["const_bytes"] == im.report.flash_bytes


def test_relative_output_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    model, g = tiny()
    pol = Policy.uniform(g, 4)
    im = convert(random_qparams(g, pol), g, pol)
    out = export_c(im, "rel/c", test_images=images(3))
    assert (
        json.loads((out / "export.json").read_text())["built"]["ram_bytes"] == im.report.ram_bytes
    )


def run_checked_build(out: Path, extra: str = "") -> subprocess.CompletedProcess:
    """Build the self-test with -DMICROMIX_CHECK_WRITES (arena shadow copy, scratch guard) and
    the `extra` flags (a test hook's -D), run it."""
    flags = f"-std=c99 -Wall -Wextra -Werror -O2 -DMICROMIX_CHECK_WRITES {extra}"
    make(out, "clean")  # make does not track CFLAGS: objects of another build would be reused
    make(out, "micromix_selftest", variables={"CFLAGS": flags})
    return subprocess.run(["./micromix_selftest", "selftest.bin"], cwd=out, capture_output=True)


@pytest.mark.parametrize("name", ["2/2", "mixed"])
def test_kernels_write_only_their_output_tensor(tmp_path, name: str) -> None:
    """Built with -DMICROMIX_CHECK_WRITES, every step compares the arena with a shadow copy:
    sub-byte stores must never touch a neighbouring tensor (or anything else)."""
    im, out, _ = export_tiny(tmp_path, name, odd=True, n=20, check=False)
    assert im.report.offsets["pool"] > 0  # so that the sabotage below stays inside the arena
    r = run_checked_build(out)
    assert r.returncode == 0, r.stderr
    # The check itself works: a pool that also flips the byte before its output is caught.
    # (mm_eltwise.c's compile-time test hook)
    r = run_checked_build(out, "-DMM_TEST_FAULT_WRITE_BEFORE_OUTPUT")
    assert r.returncode != 0 and b"outside its output" in r.stderr


@pytest.mark.parametrize("net", ["odd", "combo"])
def test_scratch_size_is_exactly_what_the_kernels_use(tmp_path, net: str) -> None:
    """The memory model's scratch is enough (a guard after it stays intact) and not more than
    needed: 4 bytes less than the largest need and its kernel writes into the guard. (The
    pointwise kernels are counted their family's need, which they do not fill: ops.conv
    scratch_need; combo's 16-channel 1x1 layers on sub-byte inputs widen, off the lanes.)"""
    if net == "combo":
        im = combo_integer_model()
        out = export_c(im, tmp_path / "c", test_images=images(10), check=False)
    else:
        im, out, _ = export_tiny(tmp_path, "mixed", odd=True, n=10, check=False)
    r = run_checked_build(out)
    assert r.returncode == 0, r.stderr
    n = im.report.scratch_bytes
    family = ("mm_pointwise8", "mm_pointwise8_widen")
    used = max(x.scratch_bytes for x in im.report.layers if x.kernel not in family)
    assert n == (max(used, 1) + 3) // 4 * 4 or net == "combo"
    header = (out / "lib" / "micromix_model.h").read_text()
    assert header.count(f"#define MICROMIX_SCRATCH_BYTES {n} ") == 1
    less = (used + 3) // 4 * 4 - 4
    (out / "lib" / "micromix_model.h").write_text(
        header.replace(
            f"#define MICROMIX_SCRATCH_BYTES {n} ", f"#define MICROMIX_SCRATCH_BYTES {less} "
        )
    )
    r = run_checked_build(out)
    assert r.returncode != 0 and b"wrote past the" in r.stderr


# ---- the kernel library as C99, the kernel choice made once -------------------------------


def _kernel_dir(tmp: Path) -> Path:
    from micromix.export.cgen import kernel_sources

    d = tmp / "kernels"
    d.mkdir()
    for name, text in kernel_sources().items():
        (d / name).write_text(text)
    return d


# MM_DEBUG builds: every write-checked self-test compiles them in the default run
@pytest.mark.parametrize("debug", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_kernels_compile_as_pedantic_c99(tmp_path, debug: bool) -> None:
    """Every kernel file, with the generated mm_config.h, is ISO C99: no GNU statement
    expressions or other extensions gcc -pedantic rejects; also the Cortex-M4 (DSP) code paths
    when the ARM compiler is installed, and the MM_DEBUG build whose assertions check the
    export's kernel choice."""
    d = _kernel_dir(tmp_path)
    flags = ["-std=c99", "-pedantic", "-Werror", "-Wall", "-Wextra", "-O2"]
    flags += ["-DMM_DEBUG"] if debug else []
    compilers = [["gcc"]]
    if shutil.which("arm-none-eabi-gcc"):
        compilers.append(["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb"])
    for cc in compilers:
        for src in sorted(d.glob("mm_*.c")):
            r = subprocess.run(
                [*cc, *flags, "-c", "-o", f"{src.stem}.o", src.name],
                cwd=d,
                capture_output=True,
                text=True,
            )
            assert r.returncode == 0, (cc[0], src.name, r.stderr)


def test_functions_with_pc_relative_entries_are_word_aligned(tmp_path) -> None:
    """The asm loops entered part-way (mm_pw8_two8, mm_s8f_pixels*) take their entries by ADR
    (ADDW rd, pc, #imm), which the assembler resolves from the section's start: only right if
    the section is word-aligned, which -O2 gives every function but -Os (a firmware's usual
    flag) does not. Each such function asks for it (mm_pw8_two8's attribute once sat on its
    neighbour: at -Os its entries would have landed mid-instruction)."""
    require_tool("arm-none-eabi-gcc", "arm-none-eabi-objdump", "arm-none-eabi-readelf")
    d = _kernel_dir(tmp_path)
    flags = ["-mcpu=cortex-m4", "-mthumb", "-Os", "-ffunction-sections", "-c"]
    found = set()
    for src in sorted(d.glob("mm_*.c")):
        obj = f"{src.stem}.o"
        subprocess.run(["arm-none-eabi-gcc", *flags, "-o", obj, src.name], cwd=d, check=True)
        dis = subprocess.run(["arm-none-eabi-objdump", "-d", obj], cwd=d, capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        users = set(re.findall(r"Disassembly of section (\S+):(?:(?!Disassembly).)*?, pc, #",
                               dis, re.S))  # fmt: skip
        sections = subprocess.run(["arm-none-eabi-readelf", "-SW", obj], cwd=d,
                                  capture_output=True, text=True, check=True).stdout  # fmt: skip
        for name in users:
            align = int(re.search(re.escape(name) + r" .* (\d+)$", sections, re.M).group(1))
            assert align >= 4, (src.name, name, align)
        found |= users
    assert {".text.mm_pw8_two8"} <= found, found


def test_kernel_objects_call_each_other_without_cycles(tmp_path) -> None:
    """Which kernel object needs which (nm: undefined mm_* symbols and their definitions): the
    graph has no cycle (mm_conv.c and mm_small.c used to call each other; now mm_small.c calls
    mm_conv.c's mm_small8p, and mm_conv.c nothing of mm_small.c)."""
    d = _kernel_dir(tmp_path)
    needs, defines = {}, {}
    for src in sorted(d.glob("mm_*.c")):
        obj = d / f"{src.stem}.o"
        subprocess.run(
            ["gcc", "-std=c99", "-O2", "-c", "-o", obj.name, src.name], cwd=d, check=True
        )
        out = subprocess.run(["nm", obj.name], cwd=d, capture_output=True, text=True).stdout
        rows = [ln.split() for ln in out.splitlines()]
        needs[src.stem] = {r[-1] for r in rows if r[0] == "U" and r[-1].startswith("mm_")}
        defines.update({r[-1]: src.stem for r in rows if len(r) == 3 and r[1] == "T"})
    graph = {f: {defines[s] for s in syms} - {f} for f, syms in needs.items()}
    assert graph["mm_conv"] == {"mm_dot"} and graph["mm_small"] == {"mm_conv"}
    done: set[str] = set()
    for start in graph:  # depth-first: a node met again on its own path is a cycle
        stack = [(start, (start,))]
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                assert nxt not in path, f"C call cycle: {' -> '.join((*path, nxt))}"
                if nxt not in done:
                    stack.append((nxt, (*path, nxt)))
        done.add(start)


def test_model_calls_exactly_the_kernel_the_memory_report_records() -> None:
    """Each step of the generated micromix_run calls the one kernel function that the memory
    report records for that layer (ComboNet: every bit triple, so every conv kernel)."""
    from micromix.export.cgen import model_sources

    im = combo_integer_model()
    source = model_sources(im)[1]
    body = source[source.index("int micromix_run(void)") :]
    steps = body.split("MM_STEP_BEGIN();")[1:]
    assert len(steps) == len(im.ops)
    recorded = [x.kernel for x in im.report.layers]
    for step, text in enumerate(steps):
        called = re.findall(r"\b(mm_[a-z0-9_]+)\(", text.split("MM_STEP_END(")[0])
        called = [c for c in called if c != "mm_unguard"]
        assert set(called) == {recorded[step]}, (step, called, recorded[step])
    # the net exercises the choice: pointwise (8-bit, widened, sub-byte), depthwise, general
    assert {"mm_pointwise8", "mm_pointwise_sub", "mm_depthwise", "mm_conv"} <= set(recorded)


DEBUG_HARNESS = r"""
#include <stdlib.h>
#include "mm_kernels.h"
static const int32_t bias[4] = {0, 1, 2, 3}, mult[4] = {1 << 30, 1 << 30, 1 << 30, 1 << 30};
static const int8_t shift[4] = {40, 40, 40, 40};
static uint8_t in[4 * 4 * 8], out[4 * 4 * 4], w[4 * 8];
static int32_t scratch[256];
int main(int argc, char **argv)
{
    /* a 1x1 layer, 8-bit inputs and weights: mm_pointwise8's, never mm_conv's */
    const mm_conv_dims d = {8, 4, 4, 4, 4, 4, 1, 1, 1, 1, 0, 0, 1};
    const mm_quant_params q = {bias, mult, shift, -128, 127, 8, 1, 8, 8, 0, 0, 0, 1};
    /* the same with above32 0: a call whose fact disagrees with its shifts */
    const mm_quant_params q0 = {bias, mult, shift, -128, 127, 8, 1, 8, 8, 0, 0, 0, 0};
    (void)argv;
    if (argc > 2)
        mm_pointwise8(in, out, w, &d, &q0, scratch);
    else if (argc > 1)
        mm_conv(in, out, w, &d, &q, scratch);
    else
        mm_pointwise8(in, out, w, &d, &q, scratch);
    return 0;
}
"""


@pytest.mark.parametrize("debug", [False, True])
def test_debug_build_refuses_a_kernel_the_export_would_not_choose(tmp_path, debug: bool) -> None:
    """The C keeps its kernel rules as MM_DEBUG assertions: a call of mm_conv on an 8-bit 1x1
    layer (mm_pointwise8's) aborts in a debug build and runs in a release build; the right
    kernel runs in both. A call whose above32 (ops.common.shifts_above32) disagrees with its
    shifts aborts in a debug build too."""
    d = _kernel_dir(tmp_path)
    (d / "t.c").write_text(DEBUG_HARNESS)
    srcs = ["t.c", "mm_conv.c", "mm_dot.c"]
    flags = ["-std=c99", "-O1", "-I."] + (["-DMM_DEBUG"] if debug else [])
    subprocess.run(["gcc", *flags, "-o", "t", *srcs], cwd=d, check=True)
    right = subprocess.run(["./t"], cwd=d, capture_output=True)
    wrong = subprocess.run(["./t", "wrong"], cwd=d, capture_output=True)
    assert right.returncode == 0
    assert (wrong.returncode != 0) == debug, wrong.stderr
    if debug:
        assert b"mm_conv: Assertion" in wrong.stderr  # the kernel's own check, not a crash
    fact = subprocess.run(["./t", "wrong", "above32"], cwd=d, capture_output=True)
    assert (fact.returncode != 0) == debug, fact.stderr
    if debug:
        assert b"mm_shifts_above32: Assertion" in fact.stderr


def test_cli_export_follows_the_recorded_or_given_schedule(tmp_path, capsys) -> None:
    """`export` allocates the schedule the run directory recorded (its budget's), unless
    --schedule names another."""
    from micromix.cli import main
    from micromix.files import write_json
    from micromix.memory import memory_report
    from micromix.quant import prepare
    from micromix.quant.finetune import save_qat
    from micromix.schedule import Scheduling

    model = create("mobilenet_v1", width=0.1, resolution=16, in_channels=1, num_classes=10)
    g = trace(model.eval())
    pol = Policy.uniform(g, 8)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_qat(run_dir / "qat.pt", prepare(model, pol, g))
    settings = {"schedule": "layer", "max_recompute": 0.1}
    write_json(run_dir / "config.json", {"command": "run", "settings": settings})

    def ram(*flags: str) -> int:
        argv = ["export", "--run-dir", str(run_dir), "--no-check", "--force", "--random-images"]
        assert main([*argv, "--images", "4", *flags]) == 0
        out = capsys.readouterr().out
        return int(re.search(r"RAM ([\d,]+) B = arena", out).group(1).replace(",", ""))

    layer, auto = memory_report(g, pol).ram_bytes, Scheduling().report(g, pol).ram_bytes
    assert auto < layer
    assert ram() == layer
    assert ram("--schedule", "auto") == auto
    (run_dir / "config.json").unlink()  # nothing recorded: auto
    assert ram() == auto
    assert main(["export", "--run-dir", str(run_dir), "--schedule", "fastest"]) == 2


# ---- kernel paths compiled per model (mm_paths.h) -----------------------------------------


def dw4_model():
    """An 8-bit 1x1 stem to 4-bit activations, a 3x3 depthwise layer on them (mm_depthwise's 4-bit
    unsigned group path only) and an 8-bit 1x1 layer after it."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(conv_bn(4, 8, 1), conv_bn(8, 8, 3, groups=8), conv_bn(8, 8, 1))
    g = trace(model.eval(), (1, 4, 6, 6))
    pol = Policy.uniform(g, 8)
    pol = pol.replace(activations={**pol.activations, g.ops[0].output: 4})
    return convert(random_qparams(g, pol, seed=2), g, pol)


def _text_symbols(
    d: Path, src: str, extra: tuple[str, ...] = (), nm_only: bool = False
) -> set[str]:
    """The functions (nm: text symbols) that the object of `src` in folder `d` defines
    (`nm_only`: `src` is that object)."""
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", *extra]
    if not nm_only:
        subprocess.run(["gcc", *flags, "-c", "-o", "x.o", src], cwd=d, check=True)
    obj = src if nm_only else "x.o"
    out = subprocess.run(["nm", obj], cwd=d, capture_output=True, text=True, check=True)
    return {p[2].split(".")[0] for p in map(str.split, out.stdout.splitlines()) if len(p) == 3
            and p[1] in "tT"}  # fmt: skip


def _write(d: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        (d / name).write_text(text)
    return d


def test_an_export_compiles_only_the_kernel_paths_its_layers_take(tmp_path) -> None:
    """The library without a model defines every depthwise format's group function and mm_conv;
    the export of a model whose one depthwise layer takes 4-bit unsigned inputs (3x3: widened
    into the ring, then the 8-bit group code on the host), and which has no mm_conv layer,
    defines those two only, and no mm_conv (its paths: mm_paths.h)."""
    from micromix.export.cgen import kernel_sources, library_files

    im = dw4_model()
    assert [x.kernel for x in im.report.layers] == [
        "mm_pointwise8",
        "mm_depthwise",
        "mm_pointwise8",
    ]
    every = _write(tmp_path / "every", kernel_sources())
    model = _write(tmp_path / "model", library_files(im))
    groups = {"mm_dw_8u", "mm_dw_4u", "mm_dw_2u", "mm_dw_any", "mm_dw_3x3_w"}
    assert groups <= _text_symbols(every, "mm_dw.c")
    assert _text_symbols(model, "mm_dw.c") & groups == {"mm_dw_3x3_w", "mm_dw_8u"}
    assert "mm_conv" in _text_symbols(every, "mm_conv.c")
    assert not {"mm_conv", "mm_conv8x2_px", "mm_conv8_block"} & _text_symbols(model, "mm_conv.c")
    x = np.random.default_rng(1).integers(0, 256, (20, 4, 6, 6), dtype=np.uint8)
    s = json.loads((export_c(im, tmp_path / "c", test_images=x) / "export.json").read_text())
    assert s["selftest_identical"] == 20


def test_a_call_whose_path_is_compiled_out_does_not_build(tmp_path) -> None:
    """mm_paths.h edited to leave out the depthwise layer's path: micromix_model.c (the call's
    compile-time check, MM_NEED) no longer compiles; with the flag, it does."""
    from micromix.export.cgen import library_files

    files = library_files(dw4_model())
    ok = _write(tmp_path / "ok", files)
    _text_symbols(ok, "micromix_model.c")  # builds
    flag = re.search(r"^#define MM_USE_DW_3X3_W .*$", files["mm_paths.h"], re.M)
    assert flag is not None and "MM_P_DW_3X3_W" in flag.group(0)
    files["mm_paths.h"] = files["mm_paths.h"].replace(flag.group(0), "#define MM_USE_DW_3X3_W 0")
    off = _write(tmp_path / "off", files)
    r = subprocess.run(["gcc", "-std=c99", "-c", "micromix_model.c"], cwd=off, capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode != 0 and "negative" in r.stderr


DW_HARNESS = r"""
#include "mm_kernels.h"
static const int32_t bias[4] = {0, 1, 2, 3}, mult[4] = {1 << 30, 1 << 30, 1 << 30, 1 << 30};
static const int8_t shift[4] = {40, 40, 40, 40};
static uint8_t in[4 * 4 * 4], out[4 * 4 * 4], w[4 * 9];
int main(int argc, char **argv)
{
    /* a 3x3 depthwise layer on four channels; argc > 1: 4-bit unsigned inputs, else 8-bit */
    const mm_conv_dims d = {4, 4, 4, 4, 4, 4, 3, 3, 1, 1, 1, 1, 4};
    const mm_quant_params q = {bias, mult, shift, 0, 255, argc > 1 ? 4 : 8, 0, 8, 8, 0, 0, 0, 1};
    (void)argv;
    mm_depthwise(in, out, w, &d, &q, 0);
    return 0;
}
"""


@pytest.mark.parametrize("debug", [False, True])
def test_a_layer_on_a_path_compiled_out_stops_instead_of_running_another(tmp_path, debug) -> None:
    """A library built with the 8-bit depthwise paths only: an 8-bit layer runs, a 4-bit one
    stops (MM_PATH_OFF: an assertion that says so in debug builds, a trap otherwise) rather
    than running some other path."""
    from micromix.export.cgen import kernel_sources

    d = _write(tmp_path / "k", kernel_sources(["MM_P_DW_3X3_8U", "MM_P_DW_8U"]))
    (d / "t.c").write_text(DW_HARNESS)
    flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"] + (["-DMM_DEBUG"] if debug else [])
    subprocess.run(["gcc", *flags, "-o", "t", "t.c", "mm_dw.c"], cwd=d, check=True)
    assert subprocess.run(["./t"], cwd=d, capture_output=True).returncode == 0
    off = subprocess.run(["./t", "4-bit"], cwd=d, capture_output=True)
    assert off.returncode != 0
    assert not debug or b"compiled out" in off.stderr


@pytest.mark.slow  # every path of every model in the default run compiles in its export
def test_each_kernel_path_compiles_alone(tmp_path) -> None:
    """mm_paths.h with only the paths one layer can take (each path, and each sub8 path with a
    pixel function) still compiles warning-free: a model whose layers take one path never
    meets a kernel file that cannot build."""
    require_tool("gcc")
    from micromix.export.cgen import kernel_paths, kernel_sources

    # The kxk pair paths run one of their kinds' pixel functions: each kind with its path.
    kinds = {"CONV8X2": ("CONV8X2D_U", "CONV8X2D_U16", "CONV8X2D_S", "CONV8X2_RQANY"),
             "CONV8P": ("CONV8P_D", "CONV8P_ANY"), "SUB8X2": ("SUB8X2D_W4", "SUB8X2D_W2")}  # fmt: skip
    paired = set(kinds) | {k for ks in kinds.values() for k in ks} | {"PW8_WIDE"}
    sets = [[f"MM_P_{p}"] for p in kernel_paths() if p not in paired]  # widen: with a PW8 path
    sets += [[f"MM_P_{p}", f"MM_P_{k}"] for p, ks in kinds.items() for k in ks]
    sets += [["MM_P_PW8_WIDE", "MM_P_PW8_ANY"], ["MM_P_SUB8X2", "MM_P_SUB8_W4U"],
             ["MM_P_SUB8P", "MM_P_SUB8_W2S"], ["MM_P_SUB8PD_W4"],
             ["MM_P_PWSUB8", "MM_P_SUB8_W4S"],
             ["MM_P_PWSUB8F", "MM_P_S8F_W2"]]  # fmt: skip
    for i, rules in enumerate(sets):
        d = tmp_path / str(i)
        d.mkdir()
        for name, text in kernel_sources(rules).items():
            (d / name).write_text(text)
        for c in sorted(d.glob("*.c")):
            r = subprocess.run(["gcc", "-std=c99", "-O0", "-Wall", "-Wextra", "-Werror",
                                "-fsyntax-only", f"-I{d}", str(c)], capture_output=True, text=True)  # fmt: skip
            assert r.returncode == 0, (rules, c.name, r.stderr[:800])


def _stem_net(rng: np.random.Generator) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """Random layers of mm_conv's CONV8P path (8-bit inputs and weights, in_c % 4 != 0: pixel
    pairs over byte patches) and of mm_conv_small's SMALL8P (the same on rows of at most 16
    bytes and multiples of 8 output channels): a stem on 1 to 3 channels of an odd or even
    image (SMALL8P), a 1x1 layer down to 1 to 7 channels, signed or not, a CONV8P layer with
    output channels off the blocks of four (random kernel, stride and padding: clipped borders,
    rows with a 0 to 3 byte tail, odd rows whose last pixel pairs with the next row's first),
    another 1x1 down to 1 to 3 signed channels and mm_conv_small on them (its lanes)."""
    c0, h, w = int(rng.integers(1, 4)), int(rng.integers(5, 12)), int(rng.integers(5, 12))
    small = [(kh, kw) for kh in range(1, 5) for kw in range(1, 6) if kh * kw * c0 <= 16]
    k0 = small[int(rng.integers(len(small)))]
    c1, c2 = int(rng.choice([1, 2, 3, 5, 6, 7])), int(rng.choice([5, 6, 7, 9, 13]))
    c3 = int(rng.integers(1, 4))
    k1 = (int(rng.integers(1, 5)), int(rng.integers(2, 5)))
    s1, p1 = int(rng.integers(1, 3)), (int(rng.integers(0, k1[0])), int(rng.integers(0, k1[1])))
    k3 = small[int(rng.integers(len(small)))] if c3 == c0 else (3, 3) if c3 == 1 else (2, 2)

    def conv(ci, co, k, s=1, p=(0, 0), act=True):
        m = [torch.nn.Conv2d(ci, co, k, s, p, bias=False), torch.nn.BatchNorm2d(co)]
        return torch.nn.Sequential(*m, *([torch.nn.ReLU()] if act else []))

    layers = [
        conv(c0, 8, k0, 1, (k0[0] // 2, k0[1] // 2)),
        conv(8, c1, 1, act=bool(rng.integers(2))),
        conv(c1, c2, k1, s1, p1),
        conv(c2, c3, 1, act=False),
        conv(c3, 16, k3, 1, (1, 1)),
    ]
    body = torch.nn.Sequential(*layers)
    head = [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)]
    return torch.nn.Sequential(body, *head).eval(), (c0, h, w)


@pytest.mark.parametrize("qemu", [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize(
    ("seed", "variant"),
    [(0, "in place"), (1, "4-bit outputs"), (2, "a shift of 32"), (3, "2-bit outputs")],
)
def test_w8a8_patch_pairs_on_random_shapes_are_bit_exact(tmp_path, seed, variant, qemu):
    """_stem_net's CONV8P and SMALL8P layers, bit for bit the numpy reference: written over
    their own input (the inplace schedule), with 4- or 2-bit outputs (requantized through the
    writers), with one channel at shift 32 (the general requantization for the layer). Host
    build (portable C); `qemu` (slow): also the Cortex-M4 image (the DSP asm)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model, shape = _stem_net(rng)
    g = trace(model, (1, *shape))
    pol = Policy.uniform(g, 8)
    patch = [o for o in g.weight_ops if o.in_shape[0] % 4 and len(o.weight.shape) == 4]
    patch = [o for o in patch if o.kernel != (1, 1)]
    if variant.endswith("outputs"):
        bits = int(variant[0])
        pol = pol.replace(activations={**pol.activations, **{o.output: bits for o in patch}})
    im = convert(random_qparams(g, pol, seed=seed), g, pol, schedule="inplace")
    if variant == "a shift of 32":
        for o in im.ops:
            if o.name in {p.name for p in patch}:
                o.arrays["shift"][0] = 32
    kernels = {x.name: x.kernel for x in im.report.layers}
    assert {kernels[o.name] for o in patch} == {"mm_conv_small", "mm_conv"}, kernels
    ops = [o for o in im.ops if o.name in {p.name for p in patch}]
    pairs = [o for o in ops if kernels[o.name] == "mm_conv" or small8p(o)]
    assert all(conv8_head(o, kernels[o.name]) == o.row_elems - o.row_elems % 4 for o in pairs)
    # SMALL8P: the unsigned stem under the fast requantization (the signed last layer and a
    # shift of 32 take the lanes)
    assert [small8p(o) for o in ops if kernels[o.name] == "mm_conv_small"] == [
        variant != "a shift of 32",
        False,
    ]
    if variant == "in place":
        assert {p.name for p in patch} & set(im.report.schedule.inplace)
    x = np.random.default_rng(seed).integers(0, 256, (12, *shape), dtype=np.uint8)
    if qemu:
        require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    _host_and_qemu(im, tmp_path, x, qemu=qemu)
