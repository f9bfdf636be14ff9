"""Guarded self-test builds: every kernel reads and writes only inside its tensors.

Built with -DMICROMIX_GUARD_TENSORS -fsanitize=address, each step gets its inputs and output
as heap blocks of exactly the tensor's size; AddressSanitizer aborts on any byte outside."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import missing
from test_export import combo_integer_model, export_tiny
from test_integer import images

from micromix.export import export_c
from micromix.export.build import make

# The guard is the heap blocks: ASan's use-after-scope checks of the step's own dims / params
# structs (two per step, hundreds in micromix_run) only make gcc take minutes to compile it.
GUARD_FLAGS = (
    "-std=c99 -Wall -Wextra -Werror -O1 -g -fsanitize=address "
    "-fno-sanitize-address-use-after-scope -DMICROMIX_GUARD_TENSORS"
)


def need_asan(tmp: Path) -> None:
    ok = shutil.which("gcc") is not None and shutil.which("make") is not None
    if ok:
        (tmp / "a.c").write_text("int main(void) { return 0; }\n")
        r = subprocess.run(["gcc", "-fsanitize=address", "-o", "a", "a.c"], cwd=tmp,
                           capture_output=True)  # fmt: skip
        ok = r.returncode == 0
    if not ok:
        missing("gcc with AddressSanitizer is needed")  # skips, or fails under MICROMIX_STRICT=1


def run_guarded(out: Path, extra: str = "") -> subprocess.CompletedProcess:
    make(out, "clean")  # make does not track CFLAGS: objects of another build would be reused
    make(out, "micromix_selftest", variables={"CFLAGS": f"{GUARD_FLAGS} {extra}"})
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    return subprocess.run(["./micromix_selftest", "selftest.bin"], cwd=out, capture_output=True,
                          env=env)  # fmt: skip


@pytest.mark.parametrize("net", ["combo", "odd-2/2", "odd-4/4", "odd-mixed"])
def test_kernels_touch_nothing_outside_their_tensors(tmp_path, net: str) -> None:
    """ComboNet has full 3x3 convolutions with 2- and 4-bit weights (mm_gather once unpacked a
    whole row's planar head from one pixel, reading past the input tensor)."""
    need_asan(tmp_path)
    if net == "combo":
        out = export_c(combo_integer_model(), tmp_path / "c", test_images=images(6), check=False)
    else:
        _, out, _ = export_tiny(tmp_path, net.split("-")[1], odd=True, n=6, check=False)
    r = run_guarded(out)
    assert r.returncode == 0 and b"AddressSanitizer" not in r.stderr, r.stderr[-2000:]
    assert b"6/6 images bit-identical" in r.stdout


def test_the_guard_catches_a_read_past_a_tensor(tmp_path) -> None:
    need_asan(tmp_path)
    _, out, _ = export_tiny(tmp_path, "8/8", odd=True, n=4, check=False)
    # The pool also peeks at the byte after its input (mm_eltwise.c's compile-time test hook).
    r = run_guarded(out, "-DMM_TEST_FAULT_READ_PAST_INPUT")
    assert r.returncode != 0 and b"heap-buffer-overflow" in r.stderr
