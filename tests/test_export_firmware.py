"""Firmware that fits the chip: zero-copy I/O, the deployable library (Makefile, CMake with the
arm-none-eabi toolchain file), the fit verdict against a target's memory map (and its refusal
one byte over), the link map agreeing with the memory model, the chip-sized image under qemu."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import require_tool
from test_integer import images, policies, tiny

from micromix.cli import main
from micromix.errors import MicromixError
from micromix.export import FitError, export_c
from micromix.export.build import symbols
from micromix.export.cgen import hwc, outputs_bytes
from micromix.export.firmware import map_sizes
from micromix.integer import convert
from micromix.integer.convert import random_qparams
from micromix.mcu import BOARDS, Region, get_target

ARM = ("arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm", "make")


def tiny_model(name: str = "mixed"):
    model, g = tiny(False)
    pol = policies(g)[name]
    return convert(random_qparams(g, pol, seed=11), g, pol)


def export_for(tmp: Path, im, target, n: int = 3):
    out = export_c(im, tmp, test_images=images(n, seed=4), target=target, cm4_images=n)
    return out, json.loads((out / "export.json").read_text())


APP = r"""
#include <stdio.h>
#include <string.h>
#include "micromix_model.h"
int main(int argc, char **argv)
{
    static unsigned char image[MICROMIX_INPUT_BYTES];
    FILE *f = fopen(argv[1], "rb");
    if (argc < 2 || !f || fread(image, 1, sizeof image, f) != sizeof image)
        return 2;
    /* the five lines of the README */
    uint8_t *in = micromix_input();
    memcpy(in, image, MICROMIX_INPUT_BYTES); /* a camera driver would DMA here */
    micromix_run();
    const MICROMIX_OUTPUT_T *y = micromix_output();
    fwrite(y, 1, MICROMIX_OUTPUT_BYTES, stdout);
    return 0;
}
"""


def test_zero_copy_api_gives_the_reference_outputs(tmp_path) -> None:
    """An application writes micromix_input() and reads micromix_output(), against the library
    built with its own Makefile (no main, no test data in it)."""
    require_tool("gcc", "make", "nm")
    im = tiny_model()
    out = export_c(im, tmp_path / "c", test_images=images(2), check=False)
    lib = out / "lib"
    r = subprocess.run(["make", "-s"], cwd=lib, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    syms = subprocess.run(["nm", "libmicromix.a"], cwd=lib, capture_output=True, text=True).stdout
    assert " T micromix_input" in syms and " T micromix_output" in syms
    assert " T main" not in syms and "mm_test" not in syms  # a library: no main, no test data
    assert not any(p.name.startswith(("mm_selftest", "mm_cm4", "selftest")) for p in lib.iterdir())
    (tmp_path / "app.c").write_text(APP)
    exe = tmp_path / "app"
    subprocess.run(
        ["gcc", "-std=c99", "-O2", f"-I{lib}", "app.c", str(lib / "libmicromix.a"), "-o", str(exe)],
        cwd=tmp_path,
        check=True,
    )
    x = images(3, seed=9)
    want = outputs_bytes(im.run(x))
    for i in range(3):
        (tmp_path / "img.bin").write_bytes(hwc(x[i : i + 1]).tobytes())
        got = subprocess.run([str(exe), "img.bin"], cwd=tmp_path, capture_output=True).stdout
        assert np.array_equal(np.frombuffer(got, np.uint8), want[i])
    # The input frame is inside the memory model's RAM: the header says where.
    header = (lib / "micromix_model.h").read_text()
    assert f"MICROMIX_RAM_BYTES {im.report.ram_bytes}" in header
    assert "int micromix_run(void);" in header and "micromix_run_copy" in header


def test_cmake_builds_the_library_with_the_arm_toolchain_file(tmp_path) -> None:
    require_tool("cmake", "arm-none-eabi-gcc", "arm-none-eabi-nm", "make")
    im = tiny_model()
    out = export_c(im, tmp_path / "c", test_images=images(2), check=False)
    lib, build = out / "lib", tmp_path / "build"
    tc = lib / "cmake" / "arm-none-eabi.cmake"
    for cmd in (
        ["cmake", "-S", str(lib), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={tc}",
         "-DMICROMIX_CPU=cortex-m7", "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(build)],
    ):  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
    archive = build / "libmicromix.a"
    syms = symbols(archive, "arm-none-eabi-nm")
    consts = sum(s for k, (t, s) in syms.items() if k.startswith("mm_L") and t in "rR")
    assert consts == im.report.flash_bytes
    assert syms["micromix_arena"][1] == im.report.arena_bytes
    attrs = subprocess.run(
        ["arm-none-eabi-readelf", "-A", str(archive)], capture_output=True, text=True
    ).stdout
    assert "Cortex-M7" in attrs or "7E-M" in attrs  # really built for the core asked for


def test_fit_verdict_link_map_agrees_and_chip_sized_image_runs(tmp_path) -> None:
    require_tool(*ARM)
    im = tiny_model()
    out, s = export_for(tmp_path / "c", im, "stm32f412")
    f = s["fit"]
    rep = im.report
    assert f["fits"] and f["qemu_images"] == 3 and f["board"] == "mps2-an386"
    assert f["flash"]["available"] == 1024**2 and f["ram"]["region"] == "stm32f412's SRAM1"
    rb, fb = f["ram_breakdown"], f["flash_breakdown"]
    assert f["ram"]["needed"] == rb["arena"] + rb["scratch"] + rb["startup_data"] + rb["stack_peak"]
    assert (rb["arena"], rb["scratch"], fb["constants"]) == (
        rep.arena_bytes, rep.scratch_bytes, rep.flash_bytes
    )  # fmt: skip
    assert 0 < rb["stack_peak"] < 4096 and 0 <= rb["startup_data"] < 256
    assert f["flash"]["needed"] == sum(fb.values())
    # The link map of the chip image: constants and arena exactly the memory model's.
    fw = out / "firmware"
    sizes = map_sizes(fw / "firmware_chip.map")
    assert sizes[(".rodata", "micromix_weights.o")] == rep.flash_bytes
    assert sizes[(".bss", "micromix_model.o")] == rep.arena_bytes + rep.scratch_bytes
    assert sum(v for (sec, o), v in sizes.items() if sec == ".text" and o.startswith("mm_")) > 0
    chip = symbols(fw / "firmware_chip.elf", "arm-none-eabi-nm")
    assert chip["micromix_arena"][1] == rep.arena_bytes
    # The chip image at the chip's addresses; the qemu image at the board's, chip-sized.
    assert "ORIGIN = 0x08000000, LENGTH = 1048576" in (fw / "chip.ld").read_text()
    b_flash, b_ram, _ = BOARDS["mps2-an386"]
    qemu_ld = (fw / "qemu.ld").read_text()
    assert f"ORIGIN = {b_flash:#010x}, LENGTH = 1048576" in qemu_ld
    assert f"ORIGIN = {b_ram:#010x}, LENGTH = 262144" in qemu_ld
    assert not list(fw.glob("mm_testdata*"))  # no test data in the chip image


@pytest.mark.slow  # five chip images under qemu (59 s); the fit verdict itself runs above
def test_fit_verdict_refuses_one_byte_over(tmp_path) -> None:
    """A synthetic target sized from a real build: FLASH exactly what is needed fits; one byte
    less is refused with one sentence naming the region, the bytes needed and available."""
    require_tool(*ARM)
    im = tiny_model("4/4")
    _, s = export_for(tmp_path / "a", im, "stm32f412", n=1)
    need_flash, ram_static = s["fit"]["flash"]["needed"], s["fit"]["ram"]["needed"]
    base = get_target("stm32f412")
    exact = replace(base, name="exact", flash_regions=(Region("FLASH", 0x08000000, need_flash),))
    _, ok = export_for(tmp_path / "b", im, exact, n=1)
    assert ok["fit"]["flash"]["margin"] == 0
    over = replace(
        exact, name="tight", flash_regions=(Region("FLASH", 0x08000000, need_flash - 1),)
    )
    with pytest.raises(FitError) as e:
        export_for(tmp_path / "c", im, over, n=1)
    msg = str(e.value)
    assert "tight's FLASH" in msg and f"{need_flash:,} B needed" in msg
    assert f"{need_flash - 1:,} B available" in msg and "\n" not in msg
    # RAM: one byte less than the static data (arena, scratch, startup data) alone.
    static = ram_static - s["fit"]["ram_breakdown"]["stack_peak"]
    small = replace(base, name="small", ram_regions=(Region("SRAM", 0x20000000, static - 1),))
    with pytest.raises(FitError, match=f"small's SRAM before any stack: {static:,} B needed"):
        export_for(tmp_path / "d", im, small, n=1)
    # Room for the static data but not for the measured stack: refused too, whether the
    # overflowing stack made the image fail or only used up all the room (the kernels' frames
    # decide which).
    stack = replace(base, name="stack", ram_regions=(Region("SRAM", 0x20000000, static + 512),))
    with pytest.raises(FitError, match="not fit stack's SRAM.* call stack"):
        export_for(tmp_path / "e", im, stack, n=1)


@pytest.mark.slow  # a chip image per target (19 s); the pipeline's own refusal runs below
def test_export_cli_exits_2_when_the_model_does_not_fit(tmp_path, capsys) -> None:
    require_tool(*ARM)
    from test_integer import mixed_policy

    from micromix.graph import trace
    from micromix.models import create
    from micromix.quant import prepare
    from micromix.quant.finetune import save_qat

    model = create("mobilenet_v1", width=0.1, resolution=16, in_channels=1, num_classes=10)
    model.eval()
    g = trace(model)
    pol = mixed_policy(g, seed=9, choices=(4, 8))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_qat(run_dir / "qat.pt", prepare(model, pol, g))
    pol.save(run_dir / "policy.json")
    board = tmp_path / "tiny_chip.toml"
    board.write_text(
        'core = "cortex-m7"\nflash = [{origin = 0x08000000, length = "16KiB"}]\n'
        'ram = [{origin = 0x20000000, length = "64KiB"}]\nreserve_flash = "4KiB"\n'
    )
    args = ["export", "--run-dir", str(run_dir), "--images", "4", "--chip-images", "1"]
    assert main([*args, "--target", "stm32h743"]) == 0
    out = capsys.readouterr().out
    assert "fit verdict for stm32h743" in out and "of stm32h743's AXI_SRAM" in out
    assert "mps2-an500: 1 images identical" in out
    # --force without --target rebuilds for the chip of the export it replaces, not the host
    assert main([*args, "--force"]) == 0
    out = capsys.readouterr().out
    assert "for stm32h743 (the replaced export's)" in out and "fit verdict for stm32h743" in out
    assert json.loads((run_dir / "c" / "export.json").read_text())["chip"]["name"] == "stm32h743"
    assert main([*args, "--target", str(board), "--force"]) == 2
    err = capsys.readouterr().err
    assert "do not fit tiny_chip's FLASH" in err and "16,384 B available" in err
    assert main([*args, "--target", "avr128", "--force"]) == 2
    assert "unknown target 'avr128'" in capsys.readouterr().err


def test_non_arm_target_is_refused_with_a_sentence(tmp_path) -> None:
    require_tool("gcc", "make", "nm", "size")
    with pytest.raises(MicromixError, match="needs a Cortex-M core"):
        export_for(tmp_path / "c", tiny_model(), "gap8", n=1)


def test_run_pipeline_exports_for_its_target_and_fails_when_it_does_not_fit(tmp_path) -> None:
    """`micromix run --target` links and checks the firmware for that target; a model that
    does not fit the target ends the run with FitError (exit 2), not with a success."""
    require_tool(*ARM)
    from types import SimpleNamespace

    import torch

    from micromix.pipeline import Pipeline, RunConfig

    im = tiny_model()
    data = SimpleNamespace(test=SimpleNamespace(images=torch.from_numpy(images(2, seed=3))))
    for name, target in (("ok", "stm32f412"), ("small", None)):
        if target is None:
            flash = im.report.flash_bytes + 1024  # the constants fit, the code does not
            toml = tmp_path / "small_chip.toml"
            toml.write_text(
                f'core = "cortex-m4f"\nflash = [{{origin = 0x08000000, length = {flash}}}]\n'
                'ram = [{origin = 0x20000000, length = "64KiB"}]\nreserve_flash = 512\n'
            )
            target = str(toml)
        d = tmp_path / name
        d.mkdir()
        p = Pipeline(d, RunConfig(target=target, export_images=2), resume=False, progress=False)
        p._data = data
        if name == "ok":
            p.export(im)
            row = json.loads((d / "stages.json").read_text())["export"]
            assert row["fit: stm32f412's FLASH needed / available (B)"].endswith("/ 1,048,576")
            assert row["fit: chip-sized image on qemu mps2-an386"] == "2 images = reference"
        else:
            with pytest.raises(FitError, match="do not fit small_chip's FLASH"):
                p.export(im)
