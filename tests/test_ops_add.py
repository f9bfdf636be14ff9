"""The residual add (ops/add.py, mm_add in mm_eltwise.c): the C is bit-identical to the numpy
rule (a * ma + b * mb + 2^(n-1)) >> n on each of its 8-bit paths (a shift within the low word,
of exactly one word, and past it, where the C keeps only the high word of the sum) and on the
packed path."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import torch.nn as nn
from conftest import require_tool

from micromix.export import export_c
from micromix.graph import trace
from micromix.integer import convert
from micromix.integer.convert import random_qparams
from micromix.policy import Policy


class AddNet(nn.Module):
    """An unsigned + signed add, then an add of two signed tensors."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        y = self.a(x).relu()
        u = y + self.b(y)
        v = u + self.c(u)
        return self.fc(v.mean((2, 3)))


def test_add_kernel_is_bit_exact_on_every_path(tmp_path) -> None:
    require_tool("gcc", "make", "nm", "size")
    g = trace(AddNet().eval(), (1, 1, 8, 8))
    adds = [o.name for o in g.ops if o.name.startswith("add")]
    x = np.random.default_rng(3).integers(0, 256, (40, 1, 8, 8), dtype=np.uint8)
    shifts = set()
    # seeds whose shifts are 31 and 32; a larger output scale: multipliers below 1/2
    cases = [(8, 1.0, 0), (8, 1.0, 2), (8, 6.0, 1), (4, 1.0, 3)]
    for i, (bits, grow, seed) in enumerate(cases):
        p = Policy.uniform(g, bits).replace(activations={g.input: 8, g.output: 8})
        qp = random_qparams(g, p, seed=seed)
        tensors = dict(qp.tensors)
        for t in adds:
            tensors[t] = replace(tensors[t], scale=tensors[t].scale * grow)
        im = convert(replace(qp, tensors=tensors), g, p)
        if bits == 8:
            shifts |= {np.sign(int(o.arrays["shift"][0]) - 32) for o in im.ops if o.name in adds}
        out = export_c(im, tmp_path / f"c{i}", test_images=x)
        assert json.loads((out / "export.json").read_text())["selftest_identical"] == len(x)
    assert shifts == {-1, 0, 1}  # the three 8-bit paths ran: n < 32, n = 32, n > 32
