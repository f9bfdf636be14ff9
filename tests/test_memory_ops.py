"""Bytes of the new ops, by hand: requantization constants, tables of 2^bits entries counted
in FLASH, and activations of max pooling, concat and multiply in the arena."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from micromix.graph import trace
from micromix.memory import activation_flash_bytes, flash_bytes, memory_report, param_bytes
from micromix.policy import Policy


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 3, 1, bias=False)  # 3 weights
        self.b = nn.Conv2d(1, 5, 1, bias=False)  # 5 weights

    def forward(self, x):
        y = torch.cat([F.relu(self.a(x)), self.b(x)], 1)  # 8 x 6 x 6
        y = F.max_pool2d(y, 2)  # 8 x 3 x 3
        y = y * torch.sigmoid(
            F.avg_pool2d(y, 3, 1, 1, count_include_pad=False).mean((2, 3), keepdim=True)
        )
        return F.hardswish(y)


def test_new_op_bytes_by_hand() -> None:
    g = trace(Net(), (1, 1, 6, 6))
    assert [o.kind for o in g.ops] == [
        "conv",
        "conv",
        "cat",
        "maxpool",
        "avgpool",
        "avgpool",
        "lut",
        "mul",
        "lut",
    ]
    pol = Policy.uniform(g, 8).replace(
        weights={"a": 4, "b": 2},
        activations={
            "a": 2,
            "b": 4,
            "cat": 4,
            "max_pool2d": 2,
            "avg_pool2d": 8,
            "mean": 4,
            "sigmoid": 2,
            "mul": 4,
        },
    )
    by_op = {o.name: o for o in g.ops}
    assert param_bytes(by_op["cat"]) == 2 * (4 + 1)  # a multiplier and a shift per input
    assert param_bytes(by_op["max_pool2d"]) == 5
    assert param_bytes(by_op["avg_pool2d"]) == 9 * 5  # one per divisor 1..9 (padding not counted)
    assert param_bytes(by_op["mean"]) == 5
    assert param_bytes(by_op["mul"]) == 5
    assert param_bytes(by_op["sigmoid"], 4) == 16 and param_bytes(by_op["sigmoid"]) == 256
    assert activation_flash_bytes(g, "mean", 4) == 16 and activation_flash_bytes(g, "mul", 2) == 4
    # conv rows: 3 x ceil(4/8) + 5 x ceil(2/8) weight bytes, 9 B of constants per channel.
    conv = 3 * 1 + 5 * 1 + 8 * 9
    tables = 2**4 + 2**4  # sigmoid reads `mean` (4 bits), hardswish reads `mul` (4 bits)
    want = conv + 10 + 5 + 45 + 5 + 5 + tables
    assert flash_bytes(g, pol) == want == memory_report(g, pol).flash_bytes
    rep = memory_report(g, pol)
    # HWC pixels padded to bytes: cat 8 x 4 bits = 4 B per pixel, max pool 8 x 2 bits = 2 B.
    assert rep.tensor_bytes["cat"] == 36 * 4 and rep.tensor_bytes["max_pool2d"] == 9 * 2
    assert rep.tensor_bytes["mean"] == 4 and rep.tensor_bytes["sigmoid"] == 2
    layer = {x.name: x for x in rep.layers}
    assert layer["cat"].in_bytes == 36 * 1 + 36 * 3  # 3 x 2 bits -> 1 B, 5 x 4 bits -> 3 B


def test_size_table_counts_tables_at_their_input_bits() -> None:
    """The searches' size table gives memory_report's FLASH exactly (lut tables of 2^bits
    entries, as the export builds them), and the wall and the ILP fit such budgets exactly."""
    import random

    from micromix.budget import Budget
    from micromix.memory import size_table
    from micromix.policy import ALLOWED_BITS
    from micromix.strategies import Wall, solve_ilp

    g = trace(Net(), (1, 1, 6, 6))
    sizes = size_table(g)
    assert set(sizes.act_flash) == {"mean", "mul"} and sizes.act_flash["mean"][2] == 4
    rng = random.Random(0)
    fixed = (g.input, g.output)
    for _ in range(30):
        pol = Policy(
            {o.name: rng.choice(ALLOWED_BITS) for o in g.weight_ops},
            {t: 8 if t in fixed else rng.choice(ALLOWED_BITS) for t in g.tensors},
        )
        want = memory_report(g, pol).flash_bytes
        assert sizes.flash(pol.weights, pol.activations) == want
        assert Wall(g, Budget(None, None)).flash_bytes(pol.weights, pol.activations) == want
    # A budget that 8-bit tables would not fit but 2-bit inputs of both tables do.
    low = Policy.uniform(g, 2, 8).replace(activations={"mean": 2, "mul": 2})
    budget = Budget(memory_report(g, low).flash_bytes, None)
    assert sizes.flash(low.weights) > budget.flash  # the 8-bit upper bound would refuse it
    ilp = solve_ilp(g, budget, {}, sizes=sizes)
    assert budget.fits(memory_report(g, ilp))
    wall = Wall(g, budget)
    out, rep = wall.fill(wall.enforce(low)[0])
    assert budget.fits(rep) and rep.flash_bytes == memory_report(g, out).flash_bytes
