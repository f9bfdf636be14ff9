"""C export: an IntegerModel becomes a self-contained C99 project that fits its memory budget
byte for byte (sizes and arena offsets come from the memory model) and computes bit for bit
what the numpy reference computes (checked by building and running it)."""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import MicromixError
from ..files import TMP_SUFFIX, default_mode, read_json, storage_error, write_json
from ..integer.model import IntegerModel
from ..mcu import Target, get_target, target_from_json
from .build import built_memory, missing_tools, run_cm4, run_selftest
from .cgen import write_sources
from .firmware import FitError, fit_check

__all__ = ["TARGETS", "FitError", "build_and_check", "export_c"]

TARGETS = ("host", "cortex-m4")  # or an MCU target (registry name, .toml/.json, Target)


def export_c(
    imodel: IntegerModel,
    out_dir: str | os.PathLike,
    *,
    target: str | Target = "host",
    test_images: np.ndarray | None = None,
    check: bool = True,
    cm4_images: int = 8,
) -> Path:
    """Write the C project for `imodel` as folder `out_dir` (replacing it whole) and return it.

    `test_images` (uint8 N x C x H x W; default: 16 random images) become the self-test data
    with the reference outputs. With `check`, the project is built with gcc, the self-test must
    be bit-identical, and the objects must hold exactly the memory model's FLASH (constant
    arrays) and RAM (arena); for target "cortex-m4" the first `cm4_images` images are also run
    under qemu (see `build_and_check`). For an MCU target (e.g. "stm32h743"), the library is
    also linked with a minimal firmware against the chip's memory map: the fit verdict (FitError
    when FLASH or RAM does not fit) and the chip-sized image under qemu on the first
    `cm4_images` images. Results go to `export.json`; any failure raises MicromixError.
    """
    chip = None if isinstance(target, str) and target in TARGETS else get_target(target)
    target = "host" if chip is not None else target
    out = Path(out_dir)
    if test_images is None:
        c, h, w = imodel.input_shape
        test_images = np.random.default_rng(0).integers(0, 256, (16, c, h, w), dtype=np.uint8)
    images = np.asarray(test_images)
    outputs = imodel.run(images)
    rep = imodel.report
    summary: dict = {
        "target": target,
        "memory_model": {
            "flash_bytes": rep.flash_bytes,
            "ram_bytes": rep.ram_bytes,
            "arena_bytes": rep.arena_bytes,
            "scratch_bytes": rep.scratch_bytes,
        },
        "macs": sum(o.macs for o in imodel.graph.ops),
        "output_signed": imodel.output_signed,
        "checked": False,
    }
    if chip is not None:
        summary["chip"] = chip.to_json()
        summary["chip_images"] = min(cm4_images, len(images))
    # Built and checked in a temporary sibling folder, renamed into place only when whole:
    # `out` is always one complete model (the old one until the new one is done).
    with staging_dir(out) as tmp:
        write_sources(
            imodel, tmp, images, outputs, cm4=target == "cortex-m4", cm4_images=cm4_images
        )
        write_json(tmp / "export.json", summary)
        if check:
            build_and_check(tmp)
    return out


@contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A new empty folder beside `out`; when the block succeeds it replaces `out` (the old
    folder is removed only after the new one is in place); on failure it is removed."""
    tmp: Path | None = None
    old: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for stale in out.parent.glob(f".{out.name}.*{TMP_SUFFIX}"):  # a killed export's
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=TMP_SUFFIX))
        os.chmod(tmp, default_mode(folder=True))  # mkdtemp's 0700 would hide the export
        yield tmp
        if out.is_dir() and not out.is_symlink():
            old = Path(
                tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old.", suffix=TMP_SUFFIX)
            )
            os.rename(out, old / out.name)
        elif out.exists() or out.is_symlink():
            raise MicromixError(f"{out} exists and is not a folder; choose another output folder.")
        os.rename(tmp, out)
        tmp = None
    except OSError as e:
        if old is not None and not out.exists():  # put the old export back
            try:
                os.rename(old / out.name, out)
            except OSError:
                pass
        raise storage_error(e, out) from None
    finally:
        for d in (tmp, old):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)


def build_and_check(out_dir: str | os.PathLike) -> dict:
    """Build an exported folder, run its self-tests and measure it; returns the results (also
    written to its export.json). Raises MicromixError on any disagreement: outputs that
    differ from the numpy reference's, or objects that do not hold exactly the memory model's
    FLASH (constant arrays) and RAM (one arena)."""
    out = Path(out_dir)
    summary = read_json(out / "export.json")
    missing = missing_tools("gcc", "make", "nm", "size")
    if missing:
        raise MicromixError(
            f"checking the C export needs {', '.join(missing)}; install it or pass check=False."
        )
    data = (out / "selftest.bin").read_bytes()
    n, in_bytes, out_bytes = struct.unpack("<III", data[4:16])
    expected = np.frombuffer(data, np.uint8, n * out_bytes, 16 + n * in_bytes).reshape(n, -1)
    res = run_selftest(out)
    if not res.ok or not np.array_equal(res.outputs, expected):
        raise MicromixError(
            f"the C code differs from the numpy reference on {res.images - res.identical} of "
            f"{res.images} images; please report this as a micromix bug."
        )
    mem, model = built_memory(out), summary["memory_model"]
    built = (mem.const_bytes, mem.arena_bytes, mem.scratch_bytes)
    if built != (model["flash_bytes"], model["arena_bytes"], model["scratch_bytes"]) or (
        mem.other_const
    ):
        raise MicromixError(
            f"the compiled C holds {mem.const_bytes} B of constants, a {mem.arena_bytes} B "
            f"arena and {mem.scratch_bytes} B of scratch, but the memory model says "
            f"{model['flash_bytes']}, {model['arena_bytes']} and {model['scratch_bytes']} B "
            f"(other constants: {mem.other_const}); please report this as a micromix bug."
        )
    result: dict = {
        "selftest_images": res.images,
        "selftest_identical": res.identical,
        "built": {
            "const_bytes": mem.const_bytes,
            "rodata_bytes": mem.rodata_bytes,
            "arena_bytes": mem.arena_bytes,
            "scratch_bytes": mem.scratch_bytes,
            "ram_bytes": mem.arena_bytes + mem.scratch_bytes,
        },
    }
    if summary["target"] == "cortex-m4":
        r = run_cm4(out)
        want = expected[: len(r.outputs)].view(np.int8 if summary["output_signed"] else np.uint8)
        if r.mismatches or not np.array_equal(r.outputs, want.astype(np.int64)):
            raise MicromixError("the Cortex-M4 image differs from the numpy reference under qemu.")
        result["cortex_m4"] = {
            "images": len(r.outputs),
            "flash_bytes": r.flash_bytes,
            "ram_bytes": r.ram_bytes,
            "stack_used": r.stack_used,
            "sections": r.sections,
        }
    if "chip" in summary:
        k = summary["chip_images"]
        x = np.frombuffer(data, np.uint8, k * in_bytes, 16).reshape(k, -1)
        want = expected[:k].view(np.int8 if summary["output_signed"] else np.uint8)
        result["fit"] = fit_check(
            out, target_from_json(summary["chip"]), x, want, summary["memory_model"]
        )
    write_json(out / "export.json", {**summary, **result, "checked": True})
    return result
