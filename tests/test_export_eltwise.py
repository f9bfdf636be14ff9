"""C kernels of mm_eltwise.c (residual add, global average pooling) at W8/A8: bit-identical to
the numpy reference over random shapes, input signs and requantization constants, in place
where the schedule puts the output over an input; the host build (portable C) by default and
the Cortex-M4 image under qemu (the asm) in the slow run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import require_tool
from test_export import _host_and_qemu, _text_symbols, _write

from micromix.export.cgen import library_files
from micromix.graph import trace
from micromix.integer import convert
from micromix.integer.convert import random_qparams
from micromix.policy import Policy


@pytest.fixture(autouse=True)
def _c_tools() -> None:
    require_tool("gcc", "make", "nm", "size")


class AddNet(nn.Module):
    """x = relu(stem); a = relu(x + p(x)) (x dies there: the add may run in place over it);
    out = relu(q(a) + r(a)) (in place over q's or r's output); p's, q's and r's outputs signed
    or unsigned (ReLU or not: `signs`); then a global average pool and a linear."""

    def __init__(self, c: int, signs: tuple[bool, bool, bool]) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.p, self.q, self.r = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
        self.signs = signs
        self.fc = nn.Linear(c, 3)

    def forward(self, x):
        x = F.relu(self.stem(x))
        p = self.p(x)
        a = F.relu(x + (p if self.signs[0] else F.relu(p)))
        q, r = (y if s else F.relu(y) for y, s in zip((self.q(a), self.r(a)), self.signs[1:]))
        y = F.relu(q + r)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def add_model(seed: int, c: int, h: int, w: int, signs: tuple[bool, bool, bool]):
    """AddNet with random quantization parameters, its adds' multipliers and shift redrawn over
    the range of the n <= 32 path (n in [9, 32], multipliers about 2^(n-2) to 2^(n+1)); both adds
    written over a dying input (the in-place schedule)."""
    torch.manual_seed(seed)
    g = trace(AddNet(c, signs).eval(), (1, 1, h, w))
    pol = Policy.uniform(g, 8)
    im = convert(random_qparams(g, pol, seed=seed), g, pol, schedule="inplace")
    assert {"add", "add_1"} <= set(im.report.schedule.inplace)
    rng = np.random.default_rng(seed)
    ops = []
    for o in im.ops:
        if o.op.kind == "add":
            n = int(rng.integers(9, 33))
            m = rng.integers(1 << (n - 2), min(1 << (n + 1), (1 << 31) - 1), 2)
            arrays = {**o.arrays, "mult": m.astype(np.int32), "shift": np.array([n], np.int8)}
            o = dataclasses.replace(o, arrays=arrays)
        ops.append(o)
    return dataclasses.replace(im, ops=tuple(ops))


# the signs of p, q and r: between them the two adds take all four input sign pairs
ADD_SIGNS = [(False, True, True), (True, True, False), (False, False, False), (True, False, True)]


def _add_case(seed: int):
    rng = np.random.default_rng(seed)
    c, h, w = (int(v) for v in rng.integers(1, 12, 3))
    return add_model(seed, c, h, w, ADD_SIGNS[seed]), (c, h, w)


@pytest.mark.parametrize("seed", range(2))
def test_add_bytes_are_bit_exact(tmp_path, seed: int) -> None:
    """Random odd shapes (elements not a multiple of four: the per-element tail), the four
    input sign pairs, shifts 9..32: the host build bit for bit the numpy reference; the library
    compiles the specialised loops of the network's two adds' sign pairs only, not the general
    ones (mm_paths.h)."""
    im, (c, h, w) = _add_case(seed)
    sp, sq, sr = ADD_SIGNS[seed]
    want = {f"mm_add_u8_u{'us'[sp]}", f"mm_add_u8_{'us'[sq]}{'us'[sr]}"}
    loops = {f"mm_add_u8_{x}{y}" for x in "us" for y in "us"} | {"mm_add_bytes", "mm_add_any"}
    lib = _write(tmp_path / "lib", library_files(im))
    assert _text_symbols(lib, "mm_eltwise.c") & loops == want
    x = np.random.default_rng(seed).integers(0, 256, (12, 1, h, w), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x, qemu=False)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_add_bytes_on_cortex_m4(tmp_path, seed: int) -> None:
    """As above (and two more shapes), four images in the Cortex-M4 image under qemu (LDRSB,
    SMULL / SMLAL, USAT)."""
    require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    im, (c, h, w) = _add_case(seed)
    x = np.random.default_rng(seed).integers(0, 256, (12, 1, h, w), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x)


class AvgNet(nn.Module):
    """Global average pools over the network input (bytes the test sets: all 255 makes the
    lane sums pass 65535 unless flushed in time) and over a 3x3 stem's map (ReLU'd or signed),
    each one run of h * w pixels; a tiling 2x3 average pool (windows of two rows) on the
    stem's map, then a global one."""

    def __init__(self, c: int, signed: bool) -> None:
        super().__init__()
        self.stem = nn.Conv2d(c, c, 3, padding=1)
        self.signed = signed
        self.fc = nn.Linear(3 * c, 3)

    def forward(self, x):
        y = self.stem(x)
        y = y if self.signed else F.relu(y)
        z = F.adaptive_avg_pool2d(F.avg_pool2d(y, (2, 3)), 1)
        g = [F.adaptive_avg_pool2d(t, 1) for t in (x, y)]
        return self.fc(torch.flatten(torch.cat([*g, z], 1), 1))


# (channels, height, width, signed): 289 and 323 pixels in a global window (past the 256 of
# one lane run), 1 - 3 channels past the last group of four, fewer than four channels
AVG_CASES = [(5, 17, 17, True), (7, 9, 10, False), (3, 8, 9, True), (12, 19, 17, False),
             (9, 6, 7, True)]  # fmt: skip
# the default run: the first two (both signs, tails of 1 and 3 channels, past 256 pixels)


def avg_model(c: int, h: int, w: int, signed: bool):
    torch.manual_seed(c)
    g = trace(AvgNet(c, signed).eval(), (1, c, h, w))
    pol = Policy.uniform(g, 8)
    return convert(random_qparams(g, pol, seed=h), g, pol)


def avg_images(c: int, h: int, w: int) -> np.ndarray:
    """Random images, and flat ones (0 and 255): 255 in windows of 289 or more pixels."""
    x = np.random.default_rng(c).integers(0, 256, (12, c, h, w), dtype=np.uint8)
    x[:2] = 255
    x[2] = 0
    return x


@pytest.mark.parametrize(("c", "h", "w", "signed"), AVG_CASES[:2])
def test_avgpool_bytes_are_bit_exact(tmp_path, c: int, h: int, w: int, signed: bool) -> None:
    """Global and windowed average pools on signed and unsigned bytes, any channel count: the
    host build bit for bit the numpy reference, through the four-channel path (mm_avg8) where
    there are four channels or more and the general one (mm_avg_any) below."""
    im = avg_model(c, h, w, signed)
    pools = [o for o in im.ops if o.op.kind == "avgpool"]
    assert [o.in_signed[0] for o in pools] == [signed, signed, False, signed]
    assert {x.kernel for x in im.report.layers if "pool" in x.name} == {"mm_avgpool"}
    lib = _write(tmp_path / "lib", library_files(im))
    assert _text_symbols(lib, "mm_eltwise.c") & {"mm_avg8", "mm_avg_any"} == {
        "mm_avg8" if c >= 4 else "mm_avg_any"
    }
    _host_and_qemu(im, tmp_path, avg_images(c, h, w), qemu=False)


@pytest.mark.slow
@pytest.mark.parametrize(("c", "h", "w", "signed"), AVG_CASES)
def test_avgpool_bytes_on_cortex_m4(tmp_path, c: int, h: int, w: int, signed: bool) -> None:
    """As above (and three more shapes: fewer than four channels, mm_avg_any), four images in
    the Cortex-M4 image under qemu (UXTAB16)."""
    require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    _host_and_qemu(avg_model(c, h, w, signed), tmp_path, avg_images(c, h, w))


class DenseNet(nn.Module):
    """Linear layers whose rows are whole words (mm_pointwise8's dense path): unsigned and
    signed inputs, ReLU'd (U) and signed (S) outputs, 3 rows after the last block of four
    (fc5: 19 outputs; the path takes 16 rows or more). Rows of 72 and 66 words (more than
    MM_PATCH bytes: the input read as it is; three passes of MM_PW8D_N = 32 words, the first
    entered 24 and 30 words in; fc1 unsigned inputs, fc3 signed) and of 12, 5 and 4 words (the
    input extended into the scratch first: fc2, fc4 unsigned, fc5 signed)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(288, 48), nn.Linear(48, 264)
        self.fc3, self.fc4 = nn.Linear(264, 20), nn.Linear(20, 16)
        self.fc5 = nn.Linear(16, 19)

    def forward(self, x):
        y = self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))
        return self.fc5(self.fc4(F.relu(self.fc3(y))))


def dense_model(qmin: int):
    """DenseNet with random quantization parameters; its signed outputs clamped at `qmin`."""
    torch.manual_seed(2)
    g = trace(DenseNet().eval(), (1, 18, 4, 4))
    pol = Policy.uniform(g, 8)
    im = convert(random_qparams(g, pol, seed=2), g, pol)
    ops = tuple(dataclasses.replace(o, qmin=qmin) if o.qmin < 0 else o for o in im.ops)
    return dataclasses.replace(im, ops=ops)


def _check_dense(tmp_path, qmin: int, qemu: bool) -> None:
    im = dense_model(qmin)
    fcs = [o for o in im.ops if o.op.kind == "linear"]
    assert [(o.in_signed[0], o.qmin) for o in fcs] == [
        (False, 0), (False, qmin), (True, 0), (False, qmin), (True, qmin)
    ]  # fmt: skip
    assert all(int(o.arrays["shift"].min()) > 32 for o in fcs)
    lib = _write(tmp_path / "lib", library_files(im))
    fns = {"mm_pw8_dense_u", "mm_pw8_dense_s", "mm_pw8_one"}
    assert _text_symbols(lib, "mm_conv.c") & fns == {"mm_pw8_dense_u", "mm_pw8_dense_s"}
    x = np.random.default_rng(-qmin).integers(0, 256, (30, 18, 4, 4), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x, qemu=qemu)


def test_dense_linears_are_bit_exact(tmp_path) -> None:
    """Every input sign and output clamp of the dense path ([-127, 127] for the signed
    outputs), on the host (its portable loop) bit for bit the numpy reference; the build
    compiles the dense functions only (no mm_pw8_one)."""
    _check_dense(tmp_path, -127, qemu=False)


@pytest.mark.slow
@pytest.mark.parametrize("qmin", [-127, -128])
def test_dense_linears_on_cortex_m4(tmp_path, qmin: int) -> None:
    """As above with signed outputs clamped at -127 (the asm raises bytes to qmin) and -128,
    and four images in the Cortex-M4 image under qemu (the asm)."""
    require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    _check_dense(tmp_path, qmin, qemu=True)
