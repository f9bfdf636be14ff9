"""MCU targets: core and memory map (FLASH and RAM regions with origin and length). The module
is `mcu` because `micromix.targets` is the API's dict of targets.

A target gives the search its budget (the largest FLASH region and the largest RAM region,
each less a reserve for what the firmware needs beyond the model: kernel code, startup and
vector table in FLASH; call stack and startup data in RAM) and gives the export its linker
script, so that the fit verdict is a statement about the chip. Users add their own targets
from a small TOML or JSON file (`--target my_board.toml`, see `load_target_file`).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MicromixError
from .units import parse_bytes

# Defaults of the reserves (bytes kept out of the search's budget). Measured: the library's
# code is 23.4 kB for MobileNetV1-1.0 on cortex-m7 (arm-none-eabi-gcc -O2, the DSP kernels of
# issue 11; results/firmware_scale.md) and startup, vector table and a minimal main add under
# 1.3 kB; the peak call stack of a run is under 2 kB
# (stack painting under qemu). The reserves leave room for kernel growth and the application.
RESERVE_FLASH = 32 * 1024
RESERVE_RAM = 8 * 1024

# qemu boards: (FLASH origin, RAM origin, bytes available at each), from qemu's hw/arm/mps2.c
# and mps2-tz.c: code SSRAM and data SSRAM of 4 MiB each (AN505: secure aliases).
BOARDS: dict[str, tuple[int, int, int]] = {
    "mps2-an385": (0x00000000, 0x20000000, 4 * 1024**2),
    "mps2-an386": (0x00000000, 0x20000000, 4 * 1024**2),
    "mps2-an500": (0x00000000, 0x20000000, 4 * 1024**2),
    "mps2-an505": (0x10000000, 0x38000000, 2 * 1024**2),
}


# Cores whose code micromix builds: the one core table (export/cores.py, bench/mcu_cost.py and
# the qemu kernel tests read it from here). `flags`: arm-none-eabi-gcc architecture flags with
# the FPU ABI the kernel benchmark builds with; `board`: the qemu board with the same core
# (Cortex-M0+ code is ARMv6-M, a subset of the Cortex-M3's ARMv7-M, so it runs on the M3
# board); `dsp`: the core has the DSP extension (__ARM_FEATURE_DSP: SMLAD, SXTB16), which
# selects the kernels' dual-MAC path (the portable C path runs elsewhere).


@dataclass(frozen=True)
class Core:
    name: str
    flags: str  # arm-none-eabi-gcc architecture flags (no optimisation level)
    board: str | None  # qemu-system-arm -M board whose CPU is this core; None: not an Arm core
    dsp: bool  # has the DSP extension: the kernels take the SMLAD path

    @property
    def machine(self) -> str:
        """The qemu board (-M); MicromixError for a core qemu cannot run."""
        if self.board is None:
            raise MicromixError(f"core {self.name} has no qemu board.")
        return self.board

    @property
    def cpu_flags(self) -> str:
        """-mcpu and -mthumb only: the export's image keeps the soft-float ABI (its startup
        code does not enable an FPU, and integer kernels need none)."""
        return " ".join(f for f in self.flags.split() if f.startswith(("-mcpu", "-mthumb")))

    @property
    def flash(self) -> int:
        """Code/constants origin of the core's qemu board."""
        return BOARDS[self.machine][0]

    @property
    def ram(self) -> int:
        """Data/stack origin of the core's qemu board."""
        return BOARDS[self.machine][1]


_SOFT, _M4 = "-mfloat-abi=soft", "-mfloat-abi=hard -mfpu=fpv4-sp-d16"
CORES: dict[str, Core] = {
    c.name: c
    for c in (
        Core("cortex-m0plus", f"-mcpu=cortex-m0plus -mthumb {_SOFT}", "mps2-an385", False),
        Core("cortex-m3", f"-mcpu=cortex-m3 -mthumb {_SOFT}", "mps2-an385", False),
        Core("cortex-m4", f"-mcpu=cortex-m4 -mthumb {_M4}", "mps2-an386", True),
        Core("cortex-m4f", f"-mcpu=cortex-m4 -mthumb {_M4}", "mps2-an386", True),
        Core("cortex-m7", "-mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16", "mps2-an500",
             True),
        Core("cortex-m33", "-mcpu=cortex-m33 -mthumb -mfloat-abi=hard -mfpu=fpv5-sp-d16",
             "mps2-an505", True),
        Core("riscv-gap8", "", None, False),  # no Arm code: budgets only, no fit verdict
    )
}  # fmt: skip


def core(name: str) -> Core:
    """The core called `name`; MicromixError (one sentence) for an unknown one."""
    try:
        return CORES[name]
    except KeyError:
        raise MicromixError(
            f"unknown core {name!r}; choose one of {', '.join(sorted(CORES))}."
        ) from None


@dataclass(frozen=True)
class Region:
    name: str
    origin: int
    length: int


@dataclass(frozen=True)
class Target:
    """One chip: its core and memory map. `flash` / `ram` are the largest regions' lengths
    (None: no fixed FLASH, e.g. external flash)."""

    name: str
    core: str
    flash_regions: tuple[Region, ...]
    ram_regions: tuple[Region, ...]
    source: str = ""  # the vendor document and section the map comes from
    note: str = ""
    reserve_flash: int = RESERVE_FLASH
    reserve_ram: int = RESERVE_RAM
    external_flash: bool = False
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def flash_region(self) -> Region | None:
        return max(self.flash_regions, key=lambda r: r.length) if self.flash_regions else None

    @property
    def ram_region(self) -> Region:
        return max(self.ram_regions, key=lambda r: r.length)

    @property
    def flash(self) -> int | None:
        r = self.flash_region
        return None if r is None or self.external_flash else r.length

    @property
    def ram(self) -> int:
        return self.ram_region.length

    @property
    def flash_budget(self) -> int | None:
        """FLASH the search may give the model: the largest region less the reserve."""
        return None if self.flash is None else self.flash - self.reserve_flash

    @property
    def ram_budget(self) -> int:
        """RAM the search may give the arena + scratch: the largest region less the reserve."""
        return self.ram - self.reserve_ram

    @property
    def gcc_flags(self) -> str:
        return CORES[self.core].cpu_flags

    @property
    def board(self) -> str | None:
        return CORES[self.core].board

    def to_json(self) -> dict:
        regions = {
            "flash": [r.__dict__ for r in self.flash_regions],
            "ram": [r.__dict__ for r in self.ram_regions],
        }
        return {
            "name": self.name,
            "core": self.core,
            **regions,
            "flash_bytes": self.flash,
            "ram_bytes": self.ram,
            "reserve_flash": self.reserve_flash,
            "reserve_ram": self.reserve_ram,
            "source": self.source,
            "note": self.note,
        }


def target_from_json(obj: dict) -> Target:
    """The inverse of Target.to_json (how export.json records the target it was checked for)."""
    return Target(
        obj["name"],
        obj["core"],
        tuple(Region(**r) for r in obj["flash"]),
        tuple(Region(**r) for r in obj["ram"]),
        obj.get("source", ""),
        obj.get("note", ""),
        obj.get("reserve_flash", RESERVE_FLASH),
        obj.get("reserve_ram", RESERVE_RAM),
        obj.get("flash_bytes") is None,
    )


_TARGETS: dict[str, Target] = {}


def register_target(t: Target) -> Target:
    """Add a target to the registry (replacing one of the same name)."""
    _validate(t, t.name)
    _TARGETS[t.name.lower()] = t
    return t


def list_targets() -> list[Target]:
    return list(_TARGETS.values())


def get_target(name: str | Target) -> Target:
    """A registered target by name (any case), or a target file (.toml / .json) by path."""
    if isinstance(name, Target):
        return name
    if str(name).lower().endswith((".toml", ".json")):
        return load_target_file(name)
    key = str(name).lower()
    if key not in _TARGETS:
        raise MicromixError(
            f"unknown target {name!r}; known targets: {', '.join(_TARGETS)} "
            "(or give a .toml / .json target file)."
        )
    return _TARGETS[key]


def _validate(t: Target, where: str) -> None:
    """One sentence for the first thing wrong with a target."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", t.name or ""):
        raise MicromixError(f"{where}: target name {t.name!r} must be letters, digits, _ . or -.")
    if t.core not in CORES:
        raise MicromixError(f"{where}: unknown core {t.core!r}; known cores: {', '.join(CORES)}.")
    if not t.ram_regions:
        raise MicromixError(f"{where}: a target needs at least one RAM region.")
    if not t.flash_regions and not t.external_flash:
        raise MicromixError(f"{where}: a target needs at least one FLASH region.")
    seen = set()
    for r in (*t.flash_regions, *t.ram_regions):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", r.name) or r.name in seen:
            raise MicromixError(
                f"{where}: region name {r.name!r} must be a unique C-like identifier."
            )
        seen.add(r.name)
        if r.length <= 0 or r.origin < 0 or r.origin + r.length > 2**32:
            raise MicromixError(
                f"{where}: region {r.name} (origin {r.origin:#x}, length {r.length}) "
                "must have a positive length inside the 32-bit address space."
            )
    if t.flash is not None and t.reserve_flash >= t.flash:
        raise MicromixError(f"{where}: reserve_flash {t.reserve_flash} leaves no FLASH.")
    if t.reserve_ram >= t.ram:
        raise MicromixError(f"{where}: reserve_ram {t.reserve_ram} leaves no RAM.")


def _regions(obj: object, what: str, where: str) -> tuple[Region, ...]:
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise MicromixError(
            f"{where}: {what} must be a list of regions like "
            '{{name = "SRAM", origin = 0x20000000, length = "256KiB"}}.'
        )
    out = []
    for r in obj:
        unknown = set(r) - {"name", "origin", "length"}
        if unknown or not {"origin", "length"} <= set(r):
            raise MicromixError(
                f"{where}: each {what} region needs origin and length (and an optional name), "
                f"got keys {sorted(r)}."
            )
        origin = r["origin"]
        if isinstance(origin, str):
            try:
                origin = int(origin, 0)
            except ValueError:
                raise MicromixError(f"{where}: cannot read origin {origin!r}.") from None
        if not isinstance(origin, int) or isinstance(origin, bool):
            raise MicromixError(f"{where}: origin {origin!r} must be an integer address.")
        name = str(r.get("name", what.upper() if len(obj) == 1 else f"{what.upper()}{len(out)}"))
        out.append(Region(name, origin, parse_bytes(r["length"])))
    return tuple(out)


def load_target_file(path: str | Path) -> Target:
    """A target from TOML or JSON:

    name = "my_board"
    core = "cortex-m4f"
    source = "MYCHIP reference manual, section 2.2"   # optional
    flash = [{name = "FLASH", origin = 0x08000000, length = "512KiB"}]
    ram = [{name = "SRAM", origin = 0x20000000, length = "128KiB"}]
    reserve_flash = "32KiB"   # optional: FLASH kept for code, startup, vector table
    reserve_ram = "8KiB"      # optional: RAM kept for the stack and startup data
    """
    p = Path(path)
    if not p.is_file():
        raise MicromixError(f"target file {p} does not exist.")
    try:
        if p.suffix.lower() == ".toml":
            obj = tomllib.loads(p.read_text())
        else:
            obj = json.loads(p.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MicromixError(f"target file {p} is not valid {p.suffix[1:].upper()}: {e}.") from None
    if not isinstance(obj, dict):
        raise MicromixError(f"target file {p} must hold a table of settings.")
    keys = {"name", "core", "flash", "ram", "source", "note", "reserve_flash", "reserve_ram"}
    unknown = sorted(set(obj) - keys)
    if unknown:
        raise MicromixError(
            f"target file {p}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(keys))}."
        )
    for k in ("core", "flash", "ram"):
        if k not in obj:
            raise MicromixError(f"target file {p} has no {k!r} setting.")
    extra = {}
    for k in ("reserve_flash", "reserve_ram"):
        if k in obj:
            v = obj[k]
            extra[k] = 0 if v == 0 else parse_bytes(v)
    t = Target(
        name=str(obj.get("name", p.stem)),
        core=str(obj["core"]).lower(),
        flash_regions=_regions(obj["flash"], "flash", str(p)),
        ram_regions=_regions(obj["ram"], "ram", str(p)),
        source=str(obj.get("source", f"user file {p.name}")),
        note=str(obj.get("note", "")),
        **extra,
    )
    _validate(t, f"target file {p}")
    return t


# The registry: memory maps from the vendors' documents (cited in `source`).
K, M = 1024, 1024**2

for _t in (
    Target(
        "stm32h743",
        "cortex-m7",
        (Region("FLASH", 0x08000000, 2 * M),),
        (
            Region("AXI_SRAM", 0x24000000, 512 * K),
            Region("DTCM", 0x20000000, 128 * K),
            Region("SRAM1", 0x30000000, 128 * K),
            Region("SRAM2", 0x30020000, 128 * K),
            Region("SRAM3", 0x30040000, 32 * K),
            Region("SRAM4", 0x38000000, 64 * K),
        ),
        "ST RM0433 rev 8, section 2.3.2 'Memory map and register boundary addresses' "
        "(Table 7); DS12110 section 3.3",
        "arena in AXI SRAM (largest region); 1 MB RAM in total",
    ),
    Target(
        "stm32f746",
        "cortex-m7",
        (Region("FLASH", 0x08000000, 1 * M),),
        (
            Region("DTCM_SRAM1_SRAM2", 0x20000000, 320 * K),
            Region("ITCM_RAM", 0x00000000, 16 * K),
        ),
        "ST RM0385 rev 8, section 2.2.2 'Memory map and register boundary addresses' "
        "(DTCM 64 kB + SRAM1 240 kB + SRAM2 16 kB are contiguous from 0x20000000)",
    ),
    Target(
        "stm32f412",
        "cortex-m4f",
        (Region("FLASH", 0x08000000, 1 * M),),
        (Region("SRAM1", 0x20000000, 256 * K),),
        "ST RM0402 rev 6, section 2.2.2 'Memory map and register boundary addresses' "
        "and section 2.3 'Embedded SRAM'",
    ),
    Target(
        "nrf52840",
        "cortex-m4f",
        (Region("FLASH", 0x00000000, 1 * M),),
        (Region("RAM", 0x20000000, 256 * K),),
        "Nordic nRF52840 Product Specification v1.7, section 4.2.3 'Memory map'",
    ),
    Target(
        "rp2040",
        "cortex-m0plus",
        (Region("XIP_FLASH", 0x10000000, 2 * M),),
        (Region("SRAM", 0x20000000, 264 * K),),
        "Raspberry Pi RP2040 datasheet, section 2.2 'Address map' and 2.6 'Memory' "
        "(SRAM0-5 contiguous from 0x20000000)",
        "external QSPI flash, 2 MB on the Pico",
    ),
    Target(
        "gap8",
        "riscv-gap8",
        (),
        (Region("L2", 0x1C000000, 512 * K),),
        "GreenWaves GAP8 datasheet, section 'Memory' (512 kB L2)",
        "external flash; 512 kB L2; RISC-V (budgets only, no Arm fit verdict)",
        external_flash=True,
    ),
):
    register_target(_t)
