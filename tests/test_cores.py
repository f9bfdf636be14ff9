"""The core table the kernel benchmark and the qemu kernel tests use (export/cores.py)."""

from __future__ import annotations

import pytest

from micromix import mcu
from micromix.errors import MicromixError
from micromix.export.cores import CORES, core


def test_every_core_has_flags_a_board_and_its_dsp_flag() -> None:
    for name, c in CORES.items():
        assert f"-mcpu={name}" in c.flags and "-mthumb" in c.flags
        assert c.machine.startswith("mps2-an")
    assert [n for n, c in CORES.items() if not c.dsp] == ["cortex-m3"]


def test_the_target_registry_runs_each_core_on_the_same_board() -> None:
    """micromix.mcu (export --target <chip>) and this table agree on the qemu board."""
    for name, c in CORES.items():
        assert mcu.CORES[name][1] == c.machine
        assert mcu.CORES[name][0].split()[0] == f"-mcpu={name}"


def test_unknown_core_is_one_sentence() -> None:
    with pytest.raises(MicromixError, match="cortex-m99"):
        core("cortex-m99")
