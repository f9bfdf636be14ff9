"""Cortex-M cores the C export builds for: compiler flags and the qemu board that runs them.

One small table so that every user (export targets, the Makefile, bench/mcu_cost.py) picks
the same flags. `dsp` says whether the core has the DSP extension (__ARM_FEATURE_DSP: SMLAD,
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
