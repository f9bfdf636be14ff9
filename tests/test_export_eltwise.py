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
    """x = relu(stem); a = x + p(x) (x dies there: the add may run in place over it); out =
    relu(a + q(a)) with p's and q's outputs signed or unsigned (ReLU or not), so every pair of
    input signs; then a global average pool and a linear."""

    def __init__(self, c: int, signs: tuple[bool, bool]) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, padding=1)
        self.p, self.q = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
        self.signs = signs
        self.fc = nn.Linear(c, 3)

    def forward(self, x):
        x = F.relu(self.stem(x))
        p, q = self.p(x), self.q
        a = F.relu(x + (p if self.signs[0] else F.relu(p)))
        b = q(a)
        y = F.relu((b if self.signs[1] else F.relu(b)) + a)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


def add_model(seed: int, c: int, h: int, w: int, signs: tuple[bool, bool]):
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


def _add_case(seed: int):
    rng = np.random.default_rng(seed)
    c, h, w = (int(v) for v in rng.integers(1, 12, 3))
    return add_model(seed, c, h, w, (bool(seed & 1), bool(seed & 2))), (c, h, w)


@pytest.mark.parametrize("seed", range(4))
def test_add_bytes_are_bit_exact(tmp_path, seed: int) -> None:
    """Random odd shapes (elements not a multiple of four: the per-element tail), all four input
    sign pairs, shifts 9..32: the host build bit for bit the numpy reference; the library
    compiles the one specialised loop of the network's two adds' sign pairs (mm_paths.h)."""
    im, (c, h, w) = _add_case(seed)
    signs = [(0, seed & 1), (seed >> 1 & 1, 0)]  # x + p, then q(a) + a: x and a are ReLU'd
    want = {f"mm_add_u8_{'us'[sa]}{'us'[sb]}" for sa, sb in signs}
    loops = {f"mm_add_u8_{x}{y}" for x in "us" for y in "us"}
    lib = _write(tmp_path / "lib", library_files(im))
    assert _text_symbols(lib, "mm_eltwise.c") & loops == want
    x = np.random.default_rng(seed).integers(0, 256, (12, 1, h, w), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x, qemu=False)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_add_bytes_on_cortex_m4(tmp_path, seed: int) -> None:
    """As above, and four images in the Cortex-M4 image under qemu (USAT, SMULL / SMLAL)."""
    require_tool("arm-none-eabi-gcc", "qemu-system-arm")
    im, (c, h, w) = _add_case(seed)
    x = np.random.default_rng(seed).integers(0, 256, (12, 1, h, w), dtype=np.uint8)
    _host_and_qemu(im, tmp_path, x)
