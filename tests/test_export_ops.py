"""C kernels of mm_ops.c (max / padded average pooling, concat, table activations, multiply):
bit-identical to the numpy reference at every bit-width, writing only their output tensor, and
holding exactly the memory model's bytes (tables included)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import require_tool
from test_export import run_checked_build

from micromix.export import export_c
from micromix.export.build import symbols
from micromix.graph import trace
from micromix.integer import convert
from micromix.integer.convert import random_qparams
from micromix.policy import Policy


class OpsNet(nn.Module):
    """Every new op with odd channel counts (sub-byte pixels end mid-byte)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 5, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        self.a = nn.Conv2d(5, 3, 1)
        self.b = nn.Conv2d(5, 7, 1)
        self.gate = nn.Conv2d(15, 15, 1)
        self.fc = nn.Linear(15, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.stem(x)))  # 5 x 5 x 7
        a = F.hardswish(self.a(x))
        b = F.leaky_relu(self.b(x), 0.2)
        y = torch.cat([a, x, b], 1)  # 3 + 5 + 7 = 15 channels, mixed signedness
        y = F.avg_pool2d(y, 3, 1, 1, count_include_pad=False)
        y = F.max_pool2d(y, (2, 3), (1, 2), (1, 1), ceil_mode=True)  # non-square everything
        g = torch.sigmoid(self.gate(F.adaptive_avg_pool2d(y, 1)))
        y = F.silu(y * g) * torch.tanh(y)  # per-channel gate, then a map times a map
        y = F.avg_pool2d(F.hardsigmoid(y), (3, 2), stride=(2, 1), padding=(1, 0))
        return self.fc(torch.flatten(F.adaptive_max_pool2d(y, 1), 1))


def ops_graph():
    torch.manual_seed(0)
    return trace(OpsNet().eval(), (1, 1, 10, 13))


def policies(g) -> dict[str, Policy]:
    rng = np.random.default_rng(3)
    out = {f"{b}/{b}": Policy.uniform(g, b) for b in (8, 4, 2)}
    for i in range(2):
        acts = {t: int(rng.choice([2, 4, 8])) for t in g.tensors if t not in (g.input, g.output)}
        w = {o.name: int(rng.choice([2, 4, 8])) for o in g.weight_ops}
        out[f"mixed{i}"] = Policy.uniform(g, 8).replace(weights=w, activations=acts)
    return out


def test_every_new_op_kind_is_traced() -> None:
    kinds = [o.kind for o in ops_graph().ops]
    assert {"maxpool", "avgpool", "cat", "lut", "mul"} <= set(kinds)
    assert kinds.count("lut") == 6 and kinds.count("mul") == 2


@pytest.mark.parametrize("name", ["8/8", "4/4", "2/2", "mixed0", "mixed1"])
def test_new_kernels_are_bit_exact_and_exactly_sized(tmp_path, name: str) -> None:
    require_tool("gcc", "make", "nm", "size")
    g = ops_graph()
    pol = policies(g)[name]
    im = convert(random_qparams(g, pol, seed=7), g, pol)
    x = np.random.default_rng(1).integers(0, 256, (60, 1, 10, 13), dtype=np.uint8)
    out = export_c(im, tmp_path / "c", test_images=x)
    s = json.loads((out / "export.json").read_text())
    assert s["selftest_identical"] == 60
    rep = im.report
    assert (s["built"]["const_bytes"], s["built"]["ram_bytes"]) == (rep.flash_bytes, rep.ram_bytes)
    # Each table is its own array of 2^bits(input) bytes in the object file.
    objs = symbols(out / "build" / "host" / "micromix_weights.o")
    for step, iop in enumerate(im.ops):
        if iop.op.kind == "lut":
            table = next(
                v
                for k, v in objs.items()
                if k.startswith(f"mm_L{step:02d}_") and k.endswith("_table")
            )
            assert table[1] == 2 ** iop.in_bits[0]


def test_new_kernels_write_only_their_output(tmp_path) -> None:
    require_tool("gcc", "make")
    g = ops_graph()
    pol = policies(g)["mixed1"]
    im = convert(random_qparams(g, pol, seed=2), g, pol)
    x = np.random.default_rng(2).integers(0, 256, (8, 1, 10, 13), dtype=np.uint8)
    out = export_c(im, tmp_path / "c", test_images=x, check=False)
    r = run_checked_build(out)
    assert r.returncode == 0, r.stderr
    assert b"8/8 images bit-identical" in r.stdout


def test_new_kernels_on_cortex_m4_under_qemu(tmp_path) -> None:
    """Built with arm-none-eabi-gcc -Werror and run under qemu: the outputs are the reference's
    (export_c raises otherwise), and the tables are in the image's FLASH constants."""
    from micromix.export.build import ARM_TOOLS

    require_tool(*ARM_TOOLS)
    g = ops_graph()
    pol = policies(g)["mixed0"]
    im = convert(random_qparams(g, pol, seed=7), g, pol)
    x = np.random.default_rng(1).integers(0, 256, (6, 1, 10, 13), dtype=np.uint8)
    out = export_c(im, tmp_path / "c", test_images=x, target="cortex-m4", cm4_images=6)
    assert json.loads((out / "export.json").read_text())["cortex_m4"]["images"] == 6
    arm = symbols(out / "build" / "cm4" / "micromix_weights.o", "arm-none-eabi-nm")
    assert sum(v[1] for v in arm.values() if v[0] in "rR") == im.report.flash_bytes
