from __future__ import annotations

import functools
import importlib

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from user_models import MODELS

from micromix.errors import MicromixError
from micromix.graph import trace
from micromix.integer import convert
from micromix.integer.convert import random_qparams
from micromix.integer.model import run_patched
from micromix.models import create
from micromix.policy import Policy
from micromix.schedule import plan, row_stem, split_points


class Odd(nn.Module):
    """Every kind of op a stage can hold: a 3x5 strided conv, a ceil-mode padded max pool, a
    table activation, a squeeze-excitation gate (a broadcast input), a concat of two branches,
    a padded average pool, then the classifier."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 6, (3, 5), stride=(1, 2), padding=(1, 2))
        self.se = nn.Conv2d(6, 6, 1)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.b = nn.Conv2d(12, 5, 3, stride=2, padding=1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x):
        x = self.a(x)  # signed: the pool's padding must lose to negative codes
        x = F.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True)
        x = F.hardswish(x)
        x = x * torch.sigmoid(self.se(F.adaptive_avg_pool2d(x, 1)))
        x = torch.cat([x, F.relu(self.dw(x))], dim=1)
        x = F.avg_pool2d(F.relu(self.b(x)), 3, stride=1, padding=1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@functools.cache
def _model(name: str, abits: int):
    if name == "odd":
        g = trace(Odd().eval(), (1, 1, 23, 29))
    elif name in MODELS:
        mod = importlib.import_module(f"user_models.{name}")
        torch.manual_seed(0)
        g = trace(getattr(mod, MODELS[name])().eval(), (1, *mod.INPUT_SHAPE))
    else:
        width = 0.25 if name == "mobilenet_v1" else 0.35
        g = trace(create(name, width=width, resolution=28, in_channels=1, num_classes=10))
    p = Policy.uniform(g, 8)
    if abits != 8:
        inner = [t for t in g.tensors if t not in (g.input, g.output)]
        p = p.replace(activations={t: (abits, 8, 2)[i % 3] for i, t in enumerate(inner)})
    return g, p, convert(random_qparams(g, p, seed=3), g, p)


def _splits(g, k: int = 4) -> list[str]:
    pts = split_points(g)
    return sorted({pts[i * (len(pts) - 1) // (k - 1)] for i in range(k)}, key=pts.index)


CASES = [
    (name, abits, i)
    for name, abits in [("mobilenet_v1", 8), ("mobilenet_v2", 8), ("mnasnet", 4), ("odd", 8)]
    for i in range(4)
] + [(name, 8, i) for name in sorted(MODELS) for i in (1, 3)]


@pytest.mark.parametrize("name, abits, which", CASES)
def test_patch_run_is_bit_identical_and_performs_the_plans_macs(name, abits, which):
    g, p, m = _model(name, abits)
    split = _splits(g)[min(which, len(_splits(g)) - 1)]
    images = np.random.default_rng(which).integers(0, 256, (2, *m.input_shape), dtype=np.uint8)
    ref = m.run_tensors(images)
    for grid in range(1, 5):
        if grid > min(g.tensors[split].shape[1:]):
            break
        for row_ops in (0, 1) if row_stem(g, split) is not None else (0,):
            vals, macs = run_patched(m, images, split, grid, row_ops)
            after = {o.output for o in g.ops[g.ops.index(g.op(split)) + 1 :]}
            assert set(vals) == {split} | after
            for t, v in vals.items():
                assert np.array_equal(v, ref[t]), (split, grid, t)
        try:  # the C runs fewer stages patch by patch (schedule.cells): those are planned
            planned = plan(g, p, "patch", split=split, grid=grid)
        except MicromixError:
            continue
        vals, macs = run_patched(m, images, split, grid, planned.row_ops)
        assert macs == planned.macs


def test_odd_model_has_split_points_after_every_local_op():
    g, _, _ = _model("odd", 8)
    kinds = {g.op(s).kind for s in split_points(g)}
    assert {"conv", "maxpool", "lut", "mul", "cat", "avgpool"} <= kinds


def test_a_wrong_fill_would_be_seen():
    """The max pool's padding must be below every code: the run pads with it, not with 0."""
    g, p, m = _model("odd", 8)
    pool = next(o for o in g.ops if o.kind == "maxpool")
    images = np.full((1, *m.input_shape), 255, np.uint8)
    ref = m.run_tensors(images)
    vals, _ = run_patched(m, images, pool.name, 3)
    assert np.array_equal(vals[pool.name], ref[pool.name])
