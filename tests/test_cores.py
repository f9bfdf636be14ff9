"""The one core table (micromix.mcu.CORES, re-exported by export/cores.py)."""

from __future__ import annotations

import pytest

from micromix import mcu
from micromix.errors import MicromixError
from micromix.export import cores
from micromix.export.cores import CORES, KERNEL_CORES, core


def test_export_reads_the_same_table_as_the_target_registry() -> None:
    assert cores.CORES is mcu.CORES and cores.core is mcu.core


def test_every_arm_core_has_flags_a_board_and_its_dsp_flag() -> None:
    for name, c in CORES.items():
        if c.board is None:
            assert c.flags == "" and not c.dsp
            continue
        assert c.flags.split()[0] == f"-mcpu={name.removesuffix('f')}" and "-mthumb" in c.flags
        assert c.machine in mcu.BOARDS and (c.flash, c.ram) == mcu.BOARDS[c.machine][:2]
    assert {n for n, c in CORES.items() if c.dsp} == {
        "cortex-m4",
        "cortex-m4f",
        "cortex-m7",
        "cortex-m33",
    }
    assert set(KERNEL_CORES) <= set(CORES)


def test_targets_take_flags_and_board_from_the_table() -> None:
    for t in mcu.list_targets():
        c = CORES[t.core]
        assert t.gcc_flags == c.cpu_flags and t.board == c.board
        assert "-mfloat-abi" not in t.gcc_flags  # the export's image is soft-float


def test_unknown_core_is_one_sentence() -> None:
    with pytest.raises(MicromixError, match="cortex-m99"):
        core("cortex-m99")
    with pytest.raises(MicromixError, match="no qemu board"):
        _ = core("riscv-gap8").machine
