"""Build and check an exported C project: host self-test, object sizes, Cortex-M4 under qemu."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MicromixError

ARM_TOOLS = ("arm-none-eabi-gcc", "qemu-system-arm")


def missing_tools(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise MicromixError(
            f"`{cmd[0]}` is not installed; it is needed to build the C export."
        ) from None
    except subprocess.TimeoutExpired:
        raise MicromixError(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s.") from None


def make(out_dir: Path, *targets: str, variables: dict[str, str] | None = None) -> str:
    """Run make in the export folder; raise MicromixError with the compiler's output on failure."""
    if missing_tools("make"):
        raise MicromixError("`make` is not installed; it is needed to build the C export.")
    jobs = str(min(4, os.cpu_count() or 1))
    extra = [f"{k}={v}" for k, v in (variables or {}).items()]
    r = _run(["make", "-s", "-j", jobs, *extra, *targets], Path(out_dir))
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-20:])
        raise MicromixError(f"building the C export in {out_dir} failed:\n{tail}")
    return r.stdout


@dataclass(frozen=True)
class SelftestResult:
    images: int
    identical: int
    outputs: np.ndarray  # raw output bytes per image, as micromix_run wrote them

    @property
    def ok(self) -> bool:
        return self.images == self.identical


def run_selftest(out_dir: Path, data: str = "selftest.bin") -> SelftestResult:
    """Build the host self-test and run it on `data`; compares byte for byte inside C too."""
    out_dir = Path(out_dir).resolve()
    make(out_dir, "micromix_selftest")
    r = _run(["./micromix_selftest", data, "selftest_outputs.bin"], out_dir)
    m = re.search(r"(\d+)/(\d+) images bit-identical", r.stdout)
    if r.returncode not in (0, 1) or m is None:
        raise MicromixError(
            f"the C self-test crashed (exit {r.returncode}): {r.stderr.strip()[-500:]}"
        )
    raw = np.fromfile(out_dir / "selftest_outputs.bin", dtype=np.uint8)
    n = int(m.group(2))
    return SelftestResult(n, int(m.group(1)), raw.reshape(n, -1) if n else raw)


def symbols(obj: Path, nm: str = "nm") -> dict[str, tuple[str, int]]:
    """name -> (nm type letter, size in bytes) of every sized symbol of an object or image."""
    obj = Path(obj).resolve()
    r = _run([nm, "-S", "--size-sort", str(obj)], obj.parent)
    if r.returncode != 0:
        raise MicromixError(f"`{nm}` cannot read {obj}: {r.stderr.strip()}")
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4:
            out[parts[3]] = (parts[2], int(parts[1], 16))
    return out


def sections(obj: Path, size: str = "size") -> dict[str, int]:
    """section name -> bytes, from `size -A`."""
    obj = Path(obj).resolve()
    r = _run([size, "-A", str(obj)], obj.parent)
    if r.returncode != 0:
        raise MicromixError(f"`{size}` cannot read {obj}: {r.stderr.strip()}")
    out = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


@dataclass(frozen=True)
class BuiltMemory:
    """What the compiled objects really hold, beside what the memory model promised."""

    const_bytes: int  # sum of the model's constant symbols in micromix_weights.o
    rodata_bytes: int  # size of that object's .rodata section (includes any padding)
    arena_bytes: int  # size of the static arena symbol
    scratch_bytes: int  # size of the kernels' static scratch symbol
    other_const: list[str]  # constant symbols that are not model arrays (must be empty)


def built_memory(
    out_dir: Path, build: str = "host", tools: tuple[str, str] = ("nm", "size")
) -> BuiltMemory:
    """Read sizes from the objects of a finished build (`build/<build>/`)."""
    objdir = Path(out_dir) / "build" / build
    w = symbols(objdir / "micromix_weights.o", tools[0])
    model = symbols(objdir / "micromix_model.o", tools[0])
    const = {k: v for k, v in w.items() if v[0] in "rR"}
    arena, scratch = model.get("micromix_arena"), model.get("micromix_scratch")
    if arena is None or scratch is None:
        raise MicromixError(
            f"no micromix_arena or micromix_scratch symbol in {objdir / 'micromix_model.o'}."
        )
    return BuiltMemory(
        const_bytes=sum(s for k, (_, s) in const.items() if k.startswith("mm_L")),
        rodata_bytes=sections(objdir / "micromix_weights.o", tools[1]).get(".rodata", 0),
        arena_bytes=arena[1],
        scratch_bytes=scratch[1],
        other_const=sorted(k for k in const if not k.startswith("mm_L"))
        + sorted(k for k, v in model.items() if v[0] in "rRdD"),
    )


@dataclass(frozen=True)
class Cm4Result:
    outputs: np.ndarray  # int64 (n, outputs) as printed by the image
    mismatches: int
    stack_used: int
    flash_bytes: int  # image: vectors + code + constants + .data initialisers
    ram_bytes: int  # image: .data + .bss + reserved stack
    sections: dict[str, int]


@dataclass(frozen=True)
class QemuRun:
    outputs: np.ndarray  # int64 (n, outputs) as printed by the image
    mismatches: int
    stack_used: int


def run_qemu(elf: Path, machine: str, timeout: float = 120) -> QemuRun:
    """Run a bare-metal image under qemu-system-arm with semihosting (in the image's folder)
    and read what it prints: one `logits i: ...` line per image, `stack N`, `mismatches M`."""
    elf = Path(elf).resolve()
    cmd = [
        "qemu-system-arm", "-M", machine, "-nographic", "-monitor", "none",
        "-semihosting-config", "enable=on,target=native", "-kernel", elf.name,
    ]  # fmt: skip
    r = _run(cmd, elf.parent, timeout=timeout)
    text = (r.stdout + r.stderr).replace("\r", "")  # semihosting writes to stderr
    rows = [
        [int(v) for v in m.group(1).split()]
        for m in re.finditer(r"^logits \d+:((?: -?\d+)*)$", text, re.M)
    ]
    st = re.search(r"^stack (\d+)$", text, re.M)
    mm = re.search(r"^mismatches (\d+)$", text, re.M)
    if st is None or mm is None:
        raise MicromixError(
            f"the image {elf.name} did not finish under qemu ({machine}): {text[-500:]}"
        )
    return QemuRun(np.array(rows, dtype=np.int64), int(mm.group(1)), int(st.group(1)))


def run_cm4(out_dir: Path, timeout: float = 120) -> Cm4Result:
    """Build the test-only Cortex-M4 image (embedded test data, on the memory map of qemu's
    mps2-an386, not a chip's) and run it under qemu with semihosting."""
    missing = missing_tools(*ARM_TOOLS)
    if missing:
        raise MicromixError(
            f"the Cortex-M4 check needs {' and '.join(missing)}, which is not installed."
        )
    out_dir = Path(out_dir).resolve()
    make(out_dir, "micromix_cm4.elf")
    q = run_qemu(out_dir / "micromix_cm4.elf", "mps2-an386", timeout)
    sec = sections(out_dir / "micromix_cm4.elf", "arm-none-eabi-size")
    flash = sum(sec.get(s, 0) for s in (".isr_vector", ".text", ".rodata", ".ARM.exidx", ".data"))
    ram = sum(sec.get(s, 0) for s in (".data", ".bss", ".stack"))
    return Cm4Result(q.outputs, q.mismatches, q.stack_used, flash, ram, sec)
