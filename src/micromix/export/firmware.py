"""The fit verdict: the library linked with a minimal startup and main against a target's
real memory map, measured, and run under qemu on a board with the same core with the chip's
FLASH and RAM sizes.

FLASH needed = vector table + code (library kernels, startup, main) + constants + .data
initialisers, to the last byte the linker places in the FLASH region. RAM needed = .data +
.bss (arena, scratch, startup data) + the peak call stack measured by stack painting under
qemu. Both are read from the linked image (linker symbols, nm, the link map), never computed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import MicromixError
from ..mcu import BOARDS, Region, Target
from .build import make, missing_tools, run_qemu, symbols
from .cgen import LIB_DIR, template

FW_DIR = "firmware"
FW_FILES = ("mm_fw_main.c", "mm_cm4_startup.c", "mm_cm4.h")
ARM_NM = "arm-none-eabi-nm"


class FitError(MicromixError):
    """The model and its minimal firmware do not fit the target's memory."""


def linker_script(
    target: Target, *, flash: Region | None = None, ram: Region | None = None, note: str = ""
) -> str:
    """A GNU ld script for `target`: every region of its map, FLASH sections in the largest
    FLASH region, RAM sections in the largest RAM region, the stack from the end of .bss to
    the end of that region (painted at reset). `flash` / `ram` replace the primary regions
    (for qemu: the board's addresses with the chip's sizes; for measuring: no limit)."""
    pf, pr = flash or target.flash_region, ram or target.ram_region
    if pf is None:
        raise MicromixError(f"target {target.name} has no FLASH region to link code into.")
    regions = [(pf, "rx"), (pr, "rwx")]
    if flash is None and ram is None:  # the real map: every other region too, for the app
        regions += [(r, "rx") for r in target.flash_regions if r != pf]
        regions += [(r, "rwx") for r in target.ram_regions if r != pr]
    mem = "\n".join(
        f"    {r.name} ({a}) : ORIGIN = {r.origin:#010x}, LENGTH = {r.length}" for r, a in regions
    )
    alias = "".join(
        f'REGION_ALIAS("{k}", {r.name});\n' for k, r in (("FLASH", pf), ("RAM", pr)) if r.name != k
    )
    return f"""/* micromix: {target.name} ({target.core}){note}.
 * Memory map: {target.source}. Generated from micromix's target registry. */
MEMORY
{{
{mem}
}}
{alias}
ENTRY(Reset_Handler)
STACK_MIN = DEFINED(STACK_MIN) ? STACK_MIN : 0;

SECTIONS
{{
    .isr_vector : {{ KEEP(*(.isr_vector)) }} > FLASH
    .text : {{ *(.text*) *(.glue_7) *(.glue_7t) *(.eh_frame) }} > FLASH
    .rodata : {{ *(.rodata*) }} > FLASH
    .ARM.exidx : {{ *(.ARM.exidx*) }} > FLASH
    _sidata = LOADADDR(.data);
    .data : ALIGN(4) {{ _sdata = .; *(.data*) . = ALIGN(4); _edata = .; }} > RAM AT > FLASH
    _mm_flash_end = LOADADDR(.data) + SIZEOF(.data);
    .bss (NOLOAD) : ALIGN(4) {{ _sbss = .; *(.bss*) *(COMMON) . = ALIGN(4); _ebss = .; }} > RAM
    PROVIDE(end = _ebss);
    /* The stack: everything from the end of .bss to the end of the region. */
    _sstack = ALIGN(_ebss, 8);
    _estack = (ORIGIN(RAM) + LENGTH(RAM)) & ~7;
    _mm_flash_origin = ORIGIN(FLASH);
    _mm_ram_origin = ORIGIN(RAM);
    ASSERT(_estack >= _sstack + STACK_MIN, "micromix: the stack does not fit in RAM")
}}
"""


def firmware_makefile(target: Target) -> str:
    return f"""# micromix: minimal firmware for {target.name} ({target.core}), built from ../{LIB_DIR}.
#   make firmware_chip.elf    linked against the chip's memory map (chip.ld)
#   make firmware_qemu.elf    the chip's FLASH and RAM sizes at the qemu board's addresses
LIB = ../{LIB_DIR}
CC = arm-none-eabi-gcc
# Per-core flags: micromix.mcu.CORES (the one core table), -mcpu/-mthumb only (soft-float image).
CPU = {target.gcc_flags}
CFLAGS = $(CPU) -std=c99 -Wall -Wextra -Werror -O2 -ffunction-sections
WEIGHT_FLAGS = -fno-toplevel-reorder
LDFLAGS = $(CPU) -nostartfiles -Wl,--gc-sections --specs=nano.specs --specs=nosys.specs
STACK_MIN = 0
SRCS = $(notdir $(sort $(wildcard $(LIB)/*.c))) {" ".join(f for f in FW_FILES if f.endswith(".c"))}
OBJS = $(SRCS:%.c=build/%.o)
HEADERS = $(wildcard $(LIB)/*.h) $(wildcard *.h)
vpath %.c $(LIB)

firmware_%.elf: $(OBJS) %.ld
	$(CC) $(LDFLAGS) -T $*.ld -Wl,--defsym=STACK_MIN=$(STACK_MIN) -Wl,-Map=firmware_$*.map \\
		-o $@ $(OBJS)

build/micromix_weights.o: micromix_weights.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WEIGHT_FLAGS) -I$(LIB) -c -o $@ $<

build/%.o: %.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -I$(LIB) -c -o $@ $<

clean:
	rm -rf build firmware_*.elf firmware_*.map

.PHONY: clean
"""


def map_sizes(map_file: Path) -> dict[tuple[str, str], int]:
    """(output section, object file name) -> bytes placed, read from a GNU ld link map."""
    text = Path(map_file).read_text()
    lines = text[text.find("Linker script and memory map") :].splitlines()
    out: dict[tuple[str, str], int] = {}
    section, pending = "?", None
    full = re.compile(r"^ (\.\S+|COMMON)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S+\.o)\s*$")
    tail = re.compile(r"^\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S+\.o)\s*$")
    for line in lines:
        if re.match(r"^\.\S+", line):  # an output section
            section, pending = line.split()[0], None
            continue
        m = full.match(line)
        if m:
            size, obj = int(m.group(2), 16), m.group(3)
        elif pending and (t := tail.match(line)):
            size, obj = int(t.group(1), 16), t.group(2)
        else:
            # An input section whose name is too long is alone on its line; sizes follow.
            pending = line.strip() if re.match(r"^ (\.\S+|COMMON)\s*$", line) else None
            continue
        pending = None
        key = (section, Path(obj).name)
        out[key] = out.get(key, 0) + size
    return out


@dataclass(frozen=True)
class Fit:
    region: str
    needed: int
    available: int

    @property
    def fits(self) -> bool:
        return self.needed <= self.available

    @property
    def margin(self) -> int:
        return self.available - self.needed


def _read_link(elf: Path) -> dict[str, int]:
    syms = {}
    for line in _nm_all(elf).splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2]] = int(parts[0], 16)
    return syms


def _nm_all(elf: Path) -> str:
    import subprocess

    r = subprocess.run([ARM_NM, str(elf)], capture_output=True, text=True)
    if r.returncode != 0:
        raise MicromixError(f"`{ARM_NM}` cannot read {elf}: {r.stderr.strip()}")
    return r.stdout


def _usage(elf: Path) -> tuple[int, int, int]:
    """(FLASH bytes to the end of the .data initialisers, RAM bytes to the stack's start,
    bytes left for the stack) of a linked image, from its linker symbols."""
    s = _read_link(elf)
    flash = s["_mm_flash_end"] - s["_mm_flash_origin"]
    ram = s["_sstack"] - s["_mm_ram_origin"]
    return flash, ram, s["_estack"] - s["_sstack"]


def fit_check(
    out_dir: Path,
    target: Target,
    images_hwc: np.ndarray,
    expected: np.ndarray,
    memory_model: dict,
    *,
    timeout: float | None = None,
) -> dict:
    """Link the minimal firmware for `target`, give the verdict, and run the chip-sized image
    under qemu on the first images of `images_hwc` (uint8, N x bytes); `expected` holds the
    reference's output bytes. Raises FitError when FLASH or RAM does not fit, MicromixError
    when the outputs differ or the link disagrees with the memory model."""
    _check_buildable(target)
    fw = _write_firmware(Path(out_dir).resolve() / FW_DIR, target, images_hwc)
    pf, pr = target.flash_region, target.ram_region
    make(fw, "firmware_probe.elf")
    flash_need, ram_static, _ = _usage(fw / "firmware_probe.elf")
    flash = Fit(f"{target.name}'s {pf.name}", flash_need, pf.length)
    _raise_if_over(flash, "")
    _raise_if_over(Fit(f"{target.name}'s {pr.name}", ram_static, pr.length), " before any stack")
    _agree_with_memory_model(fw / "firmware_probe.elf", fw / "firmware_probe.map", memory_model)
    if timeout is None:
        # A stack that overflows into .bss can leave the image looping instead of faulting, so
        # the limit follows the work: a few ms per image under qemu, 100x that here for slow
        # or busy machines.
        timeout = 60 + 0.5 * len(images_hwc)
    q = _run_chip_sized(fw, target, ram_static, timeout)
    ram = Fit(f"{target.name}'s {pr.name}", ram_static + q.stack_used, pr.length)
    _raise_if_over(ram, " with the measured stack")
    n = len(q.outputs)
    if n != len(images_hwc) or not np.array_equal(q.outputs, expected[:n].astype(np.int64)):
        raise MicromixError(
            f"the chip-sized {target.name} image differs from the numpy reference under qemu; "
            "please report this as a micromix bug."
        )
    # The deliverable link: the chip's real addresses, with room for the measured stack.
    (fw / "firmware_chip.elf").unlink(missing_ok=True)
    make(fw, "firmware_chip.elf", variables={"STACK_MIN": str(q.stack_used)})
    chip_flash, chip_ram, _ = _usage(fw / "firmware_chip.elf")
    code = _library_code(fw / "firmware_chip.map", Path(out_dir))
    mm = memory_model
    return {
        "target": target.name,
        "core": target.core,
        "board": target.board,
        "flash": {**asdict(flash), "margin": flash.margin},
        "ram": {**asdict(ram), "margin": ram.margin},
        "flash_breakdown": {
            "constants": mm["flash_bytes"],
            "library_code": code,
            "startup_main_libc_vectors": flash.needed - mm["flash_bytes"] - code,
        },
        "ram_breakdown": {
            "arena": mm["arena_bytes"],
            "scratch": mm["scratch_bytes"],
            "startup_data": ram_static - mm["arena_bytes"] - mm["scratch_bytes"],
            "stack_peak": q.stack_used,
        },
        "chip_link": {"flash_bytes": chip_flash, "ram_static_bytes": chip_ram},
        "qemu_images": n,
        "fits": True,
    }


def _check_buildable(target: Target) -> None:
    if target.board is None:
        raise MicromixError(
            f"target {target.name} has core {target.core}, which micromix cannot build for; "
            "the fit verdict needs a Cortex-M core."
        )
    missing = missing_tools("arm-none-eabi-gcc", ARM_NM, "qemu-system-arm")
    if missing:
        raise MicromixError(
            f"the fit verdict for {target.name} needs {', '.join(missing)}, which is not installed."
        )
    b_size = BOARDS[target.board][2]
    if max(target.flash_region.length, target.ram_region.length) > b_size:
        raise MicromixError(
            f"qemu's {target.board} has {b_size:,} B per memory, less than {target.name}'s; the "
            "chip-sized image cannot run there."
        )


def _write_firmware(fw: Path, target: Target, images_hwc: np.ndarray) -> Path:
    """The firmware folder: sources, Makefile, the three linker scripts (probe: unbounded
    regions, to measure; chip: the chip's map; qemu: the chip's sizes at the board's
    addresses) and the input images."""
    fw.mkdir(parents=True, exist_ok=True)
    for name in FW_FILES:
        (fw / name).write_text(template(name))
    (fw / "Makefile").write_text(firmware_makefile(target))
    big = 1 << 27  # for measuring: room for anything, so the link reports sizes, not overflows
    pf, pr = target.flash_region, target.ram_region
    b_flash, b_ram, _ = BOARDS[target.board]
    scripts = {
        "probe.ld": (big, pf.origin, big, pr.origin, ", regions unbounded (to measure)"),
        "qemu.ld": (
            pf.length,
            b_flash,
            pr.length,
            b_ram,
            f", its FLASH and RAM sizes at the addresses of qemu's {target.board}",
        ),
    }
    for name, (fl, fo, rl, ro, note) in scripts.items():
        regions = dict(flash=Region(pf.name, fo, fl), ram=Region(pr.name, ro, rl))
        (fw / name).write_text(linker_script(target, **regions, note=note))
    (fw / "chip.ld").write_text(linker_script(target))
    (fw / "mm_input.bin").write_bytes(np.ascontiguousarray(images_hwc, dtype=np.uint8).tobytes())
    return fw


def _run_chip_sized(fw: Path, target: Target, ram_static: int, timeout: float):
    """Run the image with the chip's sizes under qemu; a stack that ran into .bss is a FitError."""
    pr = target.ram_region
    make(fw, "firmware_qemu.elf")
    _, _, stack_room = _usage(fw / "firmware_qemu.elf")
    try:
        q = run_qemu(fw / "firmware_qemu.elf", target.board, timeout=timeout)
    except MicromixError:
        if stack_room < target.reserve_ram:  # most likely the stack ran into .bss
            raise FitError(
                f"the model and its minimal firmware do not fit {target.name}'s {pr.name} with "
                f"a call stack: {ram_static:,} B of static data leave {stack_room:,} B of its "
                f"{pr.length:,} B, and the image failed under qemu."
            ) from None
        raise
    if q.stack_used >= stack_room:  # painting gone up to .bss: the stack overflowed
        raise FitError(
            f"the firmware does not fit {target.name}'s {pr.name}: the call stack used all "
            f"{stack_room:,} B left after {ram_static:,} B of static data."
        )
    return q


def _library_code(chip_map: Path, out_dir: Path) -> int:
    """.text bytes of the micromix library's objects in the chip link."""
    lib_objs = {p.stem + ".o" for p in (out_dir / LIB_DIR).glob("*.c")}
    sizes = map_sizes(chip_map)
    return sum(v for (sec, obj), v in sizes.items() if sec == ".text" and obj in lib_objs)


def _raise_if_over(f: Fit, when: str) -> None:
    if not f.fits:
        raise FitError(
            f"the model and its minimal firmware do not fit {f.region}{when}: "
            f"{f.needed:,} B needed, {f.available:,} B available "
            f"({f.needed - f.available:,} B over)."
        )


def _agree_with_memory_model(elf: Path, map_file: Path, model: dict) -> None:
    """The linked image holds exactly the memory model's constants, arena and scratch: by nm
    symbol sizes and by the link map's input sections."""
    syms = symbols(elf, ARM_NM)
    const = sum(s for k, (t, s) in syms.items() if k.startswith("mm_L") and t in "rR")
    arena = syms.get("micromix_arena", ("", -1))[1]
    scratch = syms.get("micromix_scratch", ("", -1))[1]
    sizes = map_sizes(map_file)
    map_const = sizes.get((".rodata", "micromix_weights.o"), 0)
    map_bss = sizes.get((".bss", "micromix_model.o"), 0)
    want = (model["flash_bytes"], model["arena_bytes"], model["scratch_bytes"])
    if (const, arena, scratch) != want or map_const != want[0] or map_bss != want[1] + want[2]:
        raise MicromixError(
            f"the linked firmware holds {const} B of constants ({map_const} B by the link map), "
            f"a {arena} B arena and {scratch} B of scratch ({map_bss} B of .bss by the link "
            f"map), but the memory model says {want[0]}, {want[1]} and {want[2]} B; please "
            "report this as a micromix bug."
        )
