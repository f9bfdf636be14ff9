"""Cortex-M cores the kernels are measured and tested on: compiler flags and the qemu board.

One small table (bench/mcu_cost.py and the qemu kernel tests use it; micromix.mcu's target
registry names the same cores and boards for `export --target <chip>`). `dsp` says whether the core has the DSP extension (__ARM_FEATURE_DSP: SMLAD,
SXTB16), which selects the kernels' dual-MAC path; the portable C path runs elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MicromixError

__all__ = ["CORES", "Core", "core"]


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
