"""`--core`: the exported image is compiled for the chosen Cortex-M and checked on its board."""

from __future__ import annotations

import json
import os

import pytest
from test_export import export_tiny

from micromix.errors import MicromixError
from micromix.export.build import ARM_TOOLS, missing_tools
from micromix.export.cgen import template
from micromix.export.cores import CORES, EXPORT_CORES, makefile_for


def test_every_core_has_flags_and_a_board() -> None:
    for name, c in CORES.items():
        assert f"-mcpu={name}" in c.flags and c.machine.startswith("mps2-an")
        assert makefile_for(template("Makefile"), name).count(c.cpu_flags + " ") == 1
    assert not CORES["cortex-m3"].dsp and CORES["cortex-m4"].dsp
    assert "cortex-m33" not in EXPORT_CORES and "cortex-m7" in EXPORT_CORES


def test_cortex_m7_image_is_checked_under_qemu(tmp_path) -> None:
    if missing_tools(*ARM_TOOLS):
        if os.environ.get("MICROMIX_STRICT") == "1":
            pytest.fail(f"needs {ARM_TOOLS}")
        pytest.skip(f"needs {ARM_TOOLS}")
    _, out, s = export_tiny(tmp_path, "mixed", n=6, target="cortex-m4", core="cortex-m7")
    assert "-mcpu=cortex-m7 -mthumb" in (out / "Makefile").read_text()
    assert s["core"] == "cortex-m7" and s["cortex_m4"]["images"] == 6


@pytest.mark.parametrize("core", ["cortex-m33", "cortex-m99"])
def test_unusable_core_is_one_clear_error(tmp_path, core: str) -> None:
    with pytest.raises(MicromixError, match=core):
        export_tiny(tmp_path, "8/8", n=2, target="cortex-m4", core=core, check=False)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_core_is_recorded(tmp_path) -> None:
    _, out, _ = export_tiny(tmp_path, "8/8", n=2, check=False)
    assert json.loads((out / "export.json").read_text())["core"] == "cortex-m4"
