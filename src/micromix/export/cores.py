"""Cortex-M cores the C export builds for: compiler flags and the qemu board that runs them.

One small table so that every user (export targets, the Makefile, bench/mcu_cost.py) picks
the same flags. `dsp` says whether the core has the DSP extension (__ARM_FEATURE_DSP: SMLAD,
SXTB16), which selects the kernels' dual-MAC path; the portable C path runs elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import MicromixError

__all__ = ["CORES", "EXPORT_CORES", "Core", "core", "makefile_for"]


@dataclass(frozen=True)
class Core:
    name: str
    flags: str  # arm-none-eabi-gcc architecture flags (no optimisation level)
    machine: str  # qemu-system-arm -M board whose CPU is this core
    dsp: bool  # has the DSP extension: the kernels take the SMLAD path
    flash: int  # board memory map: code/constants origin
    ram: int  # data/stack origin

    @property
    def cpu_flags(self) -> str:
        """-mcpu and -mthumb only: the export's image keeps the soft-float ABI (its startup
        code does not enable an FPU, and integer kernels need none)."""
        return " ".join(f for f in self.flags.split() if f.startswith(("-mcpu", "-mthumb")))


CORES: dict[str, Core] = {
    c.name: c
    for c in (
        Core("cortex-m3", "-mcpu=cortex-m3 -mthumb -mfloat-abi=soft", "mps2-an385", False,
             0x00000000, 0x20000000),
        Core("cortex-m4", "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16",
             "mps2-an386", True, 0x00000000, 0x20000000),
        Core("cortex-m7", "-mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16",
             "mps2-an500", True, 0x00000000, 0x20000000),
        Core("cortex-m33", "-mcpu=cortex-m33 -mthumb -mfloat-abi=hard -mfpu=fpv5-sp-d16",
             "mps2-an505", True, 0x10000000, 0x38000000),
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


# Cores whose qemu board has the memory map of the export's linker script (code at 0, RAM at
# 0x20000000); the others build with their flags but need a board-specific linker script.
EXPORT_CORES = tuple(n for n, c in CORES.items() if (c.flash, c.ram) == (0, 0x20000000))


def makefile_for(makefile: str, name: str) -> str:
    """The generated Makefile with the ARM build's -mcpu/-mthumb flags of core `name`."""
    c = core(name)
    out, n = re.subn(r"^(ARM_CFLAGS = )-mcpu=\S+ -mthumb", rf"\g<1>{c.cpu_flags}", makefile,
                     count=1, flags=re.M)  # fmt: skip
    if n != 1:
        raise MicromixError("the Makefile template has no ARM_CFLAGS line to set the core in.")
    return out
