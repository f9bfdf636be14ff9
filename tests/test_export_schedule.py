"""The exported C follows the schedule (micromix.schedule): in place, an op's output overlaps
the input it overwrites; patch by patch, the first stage runs cell by cell on patch buffers.
Either way the C is bit-identical to the numpy reference (which runs the same schedule), holds
exactly the scheduled arena, writes only inside the bytes each step may write, and reads and
writes only inside its tensors and patches (AddressSanitizer on exact-size heap blocks)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch.nn as nn
from conftest import require_tool
from test_export import run_checked_build
from test_export_guard import need_asan, run_guarded

from micromix.export import export_c
from micromix.graph import trace
from micromix.integer import convert
from micromix.integer.convert import random_qparams
from micromix.memory import memory_report
from micromix.models import create
from micromix.ops.conv import IN_PLACE_LAG
from micromix.policy import Policy


def _net(name: str, act_bits: tuple[int, ...] = (4, 8), res: int = 48):
    """A first stage at 48 px (the schedule's case) small enough to build in seconds; mixed
    weight bits, activation bits drawn from `act_bits`."""
    m = create(name, width=0.25, resolution=res, in_channels=3, num_classes=10).eval()
    g = trace(m, (1, 3, res, res))
    rng = np.random.default_rng(5)
    acts = {t: int(rng.choice(act_bits)) for t in g.tensors if t not in (g.input, g.output)}
    w = {o.name: int(rng.choice([2, 4, 8])) for o in g.weight_ops}
    return g, Policy.uniform(g, 8).replace(weights=w, activations=acts)


@pytest.mark.parametrize(
    "name, schedule, bits",
    [("mobilenet_v1", "patch", (4, 8)),
     pytest.param("mnasnet", "patch", (4, 8), marks=pytest.mark.slow),  # mobilenet_v1's case
     # in place: test_every_in_place_conv_kernel_is_bit_exact_over_its_input, default
     pytest.param("mobilenet_v2", "inplace", (8,), marks=pytest.mark.slow)],
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


class KernelZoo(nn.Module):
    """One layer for each conv kernel that can write over its input (ops.conv.IN_PLACE_LAG),
    at the bits that choose it: 3 x 3, grouped, widening / narrowing 1 x 1, depthwise, a
    short-row conv (s: lanes take it on sub-byte inputs; on 8-bit ones the stem goes to
    mm_conv), stride 2, and the classifier."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.d = nn.Conv2d(8, 32, 1)
        self.e = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.f = nn.Conv2d(32, 8, 1)
        self.s = nn.Conv2d(8, 8, 1)
        self.g = nn.Conv2d(8, 4, 1)
        self.h = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        for m in (self.a, self.b, self.c, self.d, self.e, self.f, self.s, self.g, self.h):
            x = m(x).relu()
        return self.fc(x.mean((2, 3)))


def test_every_in_place_conv_kernel_is_bit_exact_over_its_input(tmp_path) -> None:
    """Each kernel's IN_PLACE_LAG is its contract: written over its dying input at exactly the
    planned overlap, the C still computes what the reference computes (a kernel that read an
    input byte it had already overwritten would not), within the guarded build's bounds."""
    from micromix.export.build import ARM_TOOLS

    require_tool("gcc", "make", "nm", "size", *ARM_TOOLS)
    g = trace(KernelZoo().eval(), (1, 3, 12, 12))
    inner = [t for t in g.tensors if t not in (g.input, g.output)]
    x = np.random.default_rng(4).integers(0, 256, (6, 3, 12, 12), dtype=np.uint8)
    seen = set()
    for i, (wb, ab) in enumerate([(8, 8), (8, 4), (4, 4), (2, 2), (4, 8)]):
        p = Policy.uniform(g, 8).replace(
            weights={o.name: wb for o in g.weight_ops}, activations=dict.fromkeys(inner, ab)
        )
        qp = random_qparams(g, p, seed=i)
        im = convert(qp, g, p, schedule="inplace")
        sched = im.report.schedule
        assert im.report.arena_bytes < memory_report(g, p).arena_bytes
        seen |= {lay.kernel for lay in im.report.layers if lay.name in sched.inplace}
        # host C (portable loops), and the Cortex-M4 image under qemu where 8-bit operands
        # take the DSP pixel-pair paths
        m4 = {"target": "cortex-m4", "cm4_images": 2} if 8 in (wb, ab) else {}
        out = export_c(im, tmp_path / f"c{i}", test_images=x, **m4)
        s = json.loads((out / "export.json").read_text())
        assert s["selftest_identical"] == len(x)
        assert not m4 or s["cortex_m4"]["images"] == 2
        assert np.array_equal(im.run(x), convert(qp, g, p).run(x))
        r = run_checked_build(out)
        assert r.returncode == 0, r.stderr[-2000:]
    assert seen == set(IN_PLACE_LAG)


ROW_APP = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "micromix_model.h"
static unsigned char image[MICROMIX_INPUT_BYTES];
static int next_row;
/* The contract of micromix_run_rows: each row asked for once, top to bottom. */
static void read_row(void *ctx, int y, uint8_t *dst)
{
    if (ctx != image || y != next_row++)
        abort();
    memcpy(dst, image + (long)y * MICROMIX_INPUT_W * MICROMIX_INPUT_C,
           MICROMIX_INPUT_W * MICROMIX_INPUT_C);
}
int main(int argc, char **argv)
{
    FILE *f = fopen(argv[1], "rb");
    if (argc < 2 || !f || fread(image, 1, sizeof image, f) != sizeof image)
        return 2;
    micromix_run_rows(read_row, image);
    if (next_row != MICROMIX_INPUT_H)
        return 3;
    fwrite(micromix_output(), 1, MICROMIX_OUTPUT_BYTES, stdout);
    return 0;
}
"""


# the default run: 48 px (the ring); the row stem at 96 px is slow (its C: default in
# test_row_stem_from_the_resident_input_is_bit_exact)
@pytest.mark.parametrize("res, row_ops, chip", [(48, 0, False),
                                                pytest.param(96, 1, False, marks=pytest.mark.slow),
                                                pytest.param(96, 1, True, marks=pytest.mark.slow)])  # fmt: skip
def test_streamed_input_holds_a_ring_of_rows_and_stays_bit_exact(
    tmp_path, res, row_ops, chip
) -> None:
    """Schedule `stream`: the patch stage reads the input row by row into a ring smaller than
    the image (at 96 px the stem runs row by row from a line buffer into a ring of its output
    rows), through the application's reader (each row once, top to bottom), in less RAM than
    auto; the C (host library, write-checked build, and with `chip` the chip-sized firmware
    under qemu whose reader reads the rows off a file in order) computes the reference's
    outputs."""
    import subprocess

    from micromix.export.build import ARM_TOOLS
    from micromix.export.cgen import hwc, outputs_bytes

    require_tool("gcc", "make", "nm", "size", *ARM_TOOLS)
    g, p = _net("mobilenet_v1", res=res)
    qp = random_qparams(g, p, seed=1)
    im = convert(qp, g, p, schedule="stream")
    sched = im.report.schedule
    assert sched.stream_input and sched.split is not None and sched.row_ops == row_ops
    assert sched.member_bytes[g.input] < 3 * res * res  # a ring or a line buffer, not the image
    assert im.report.arena_bytes < convert(qp, g, p, schedule="auto").report.arena_bytes
    x = np.random.default_rng(2).integers(0, 256, (4, 3, res, res), dtype=np.uint8)
    board = {"target": "stm32f412", "cm4_images": 2} if chip else {}
    out = export_c(im, tmp_path / "c", test_images=x, **board)
    s = json.loads((out / "export.json").read_text())
    assert s["selftest_identical"] == 4 and (not chip or s["fit"]["qemu_images"] == 2)
    assert s["built"]["arena_bytes"] == im.report.arena_bytes
    header = (out / "lib" / "micromix_model.h").read_text()
    assert "micromix_run_rows" in header and "micromix_input" not in header
    r = run_checked_build(out)  # reading rows writes only the ring, the copies their patch
    assert r.returncode == 0, r.stderr[-2000:]
    lib = out / "lib"
    assert subprocess.run(["make", "-s"], cwd=lib, capture_output=True).returncode == 0
    (tmp_path / "app.c").write_text(ROW_APP)
    exe = tmp_path / "app"
    subprocess.run(["gcc", "-std=c99", "-O2", f"-I{lib}", "app.c", str(lib / "libmicromix.a"),
                    "-o", str(exe)], cwd=tmp_path, check=True)  # fmt: skip
    want = outputs_bytes(im.run(x))
    for i in range(2):
        (tmp_path / "img.bin").write_bytes(hwc(x[i : i + 1]).tobytes())
        got = subprocess.run([str(exe), "img.bin"], cwd=tmp_path, capture_output=True)
        assert got.returncode == 0 and np.array_equal(np.frombuffer(got.stdout, np.uint8), want[i])


class InputSkip(nn.Module):
    """The input is added back after a conv: no patch stage can hold it (a residual)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 8, 3, stride=2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.b((self.a(x) + x).relu()).relu().mean((2, 3)))


def test_streamed_input_without_a_patch_stage_reads_every_row_first(tmp_path) -> None:
    """Where no patch stage can run (the input feeds a residual), `stream` runs layer by layer
    or in place with every row read into the input tensor before the first op: same API,
    same outputs."""
    require_tool("gcc", "make", "nm", "size")
    g = trace(InputSkip().eval(), (1, 3, 12, 12))
    p = Policy.uniform(g, 8)
    qp = random_qparams(g, p, seed=0)
    im = convert(qp, g, p, schedule="stream")
    sched = im.report.schedule
    assert sched.stream_input and sched.split is None
    assert sched.member_bytes[g.input] == 3 * 12 * 12
    x = np.random.default_rng(4).integers(0, 256, (3, 3, 12, 12), dtype=np.uint8)
    out = export_c(im, tmp_path / "c", test_images=x)
    assert json.loads((out / "export.json").read_text())["selftest_identical"] == 3
    assert run_checked_build(out).returncode == 0


def test_row_stem_from_the_resident_input_is_bit_exact(tmp_path) -> None:
    """At a tight recompute cap, auto runs the stem row by row from the input in place into a
    ring of its output rows (schedule.row_stem): same outputs, each step inside its bytes."""
    require_tool("gcc", "make", "nm", "size")
    g = _net("mobilenet_v1", res=96)[0]
    p = Policy.uniform(g, 8)
    qp = random_qparams(g, p, seed=2)
    im = convert(qp, g, p, schedule="auto", max_recompute=0.03)
    sched = im.report.schedule
    assert sched.row_ops == 1 and not sched.stream_input
    assert sched.member_bytes[g.ops[0].output] < im.report.tensor_bytes[g.ops[0].output]
    x = np.random.default_rng(3).integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)
    out = export_c(im, tmp_path / "c", test_images=x)
    assert json.loads((out / "export.json").read_text())["selftest_identical"] == 3
    r = run_checked_build(out)
    assert r.returncode == 0, r.stderr[-2000:]
