"""The exported C follows the schedule (micromix.schedule): in place, an op's output overlaps
the input it overwrites; patch by patch, the first stage runs cell by cell on patch buffers.
Either way the C is bit-identical to the numpy reference (which runs the same schedule), holds
exactly the scheduled arena, writes only inside the bytes each step may write, and reads and
writes only inside its tensors and patches (AddressSanitizer on exact-size heap blocks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_tool
from test_export import run_checked_build
from test_export_guard import need_asan, run_guarded

from micromix.export import export_c
from micromix.graph import trace
from micromix.integer import convert
from micromix.integer.convert import random_qparams
from micromix.memory import memory_report
from micromix.models import create
from micromix.policy import Policy


def _net(name: str, act_bits: tuple[int, ...] = (4, 8)):
    """A first stage at 48 px (the schedule's case) small enough to build in seconds; mixed
    weight bits, activation bits drawn from `act_bits`."""
    m = create(name, width=0.25, resolution=48, in_channels=3, num_classes=10).eval()
    g = trace(m, (1, 3, 48, 48))
    rng = np.random.default_rng(5)
    acts = {t: int(rng.choice(act_bits)) for t in g.tensors if t not in (g.input, g.output)}
    w = {o.name: int(rng.choice([2, 4, 8])) for o in g.weight_ops}
    return g, Policy.uniform(g, 8).replace(weights=w, activations=acts)


@pytest.mark.parametrize(
    "name, schedule, bits",
    [("mobilenet_v1", "patch", (4, 8)), ("mnasnet", "patch", (4, 8)),
     ("mobilenet_v2", "inplace", (8,))],
)  # fmt: skip
def test_scheduled_c_is_bit_exact_in_the_planned_arena(tmp_path, name, schedule, bits) -> None:
    require_tool("gcc", "make", "nm", "size")
    g, p = _net(name, bits)
    qp = random_qparams(g, p, seed=1)
    im = convert(qp, g, p, schedule=schedule)
    sched = im.report.schedule
    assert sched is not None and sched.kind == schedule
    assert im.report.arena_bytes < memory_report(g, p).arena_bytes
    x = np.random.default_rng(2).integers(0, 256, (12, 3, 48, 48), dtype=np.uint8)
    assert np.array_equal(im.run(x), convert(qp, g, p).run(x))  # the schedule's own order
    out = export_c(im, tmp_path / "c", test_images=x)
    s = json.loads((out / "export.json").read_text())
    assert s["selftest_identical"] == 12
    assert (s["built"]["arena_bytes"], s["built"]["ram_bytes"]) == (
        im.report.arena_bytes,
        im.report.ram_bytes,
    )
    r = run_checked_build(out)  # each step writes only its output (its patch, its copy)
    assert r.returncode == 0, r.stderr[-2000:]
    need_asan(tmp_path)
    r = run_guarded(out)
    assert r.returncode == 0 and b"AddressSanitizer" not in r.stderr, r.stderr[-2000:]
    assert b"12/12 images bit-identical" in r.stdout


def test_patch_schedule_on_cortex_m4_under_qemu(tmp_path) -> None:
    from micromix.export.build import ARM_TOOLS

    require_tool(*ARM_TOOLS)
    g, p = _net("mobilenet_v1")
    im = convert(random_qparams(g, p, seed=3), g, p, schedule="patch")
    x = np.random.default_rng(4).integers(0, 256, (4, 3, 48, 48), dtype=np.uint8)
    out = export_c(im, tmp_path / "c", test_images=x, target="cortex-m4", cm4_images=4)
    assert json.loads((out / "export.json").read_text())["cortex_m4"]["images"] == 4
