"""report.py: what report.md shows comes from the files in the run directory as they are now."""

from __future__ import annotations

from micromix.files import write_json
from micromix.report import export_rows, render
from micromix.rundir import open_run_dir

BUILT = {
    "target": "host",
    "selftest_identical": 7,
    "selftest_images": 7,
    "built": {"const_bytes": 1234, "ram_bytes": 567},
    "memory_model": {"flash_bytes": 1234, "ram_bytes": 567},
}


def test_the_export_section_is_the_current_export_not_the_stage_record(tmp_path):
    d = tmp_path / "run"
    with open_run_dir(d, "run", {}):
        # the run exported for a chip; `micromix export --force` then replaced c/ with a host
        # build, leaving the run's stages.json as it was
        stale = {"target": "stm32f412", "fit: FLASH needed / available (B)": "1 / 2"}
        write_json(d / "stages.json", {"export": {**stale, "seconds": 1.0}})
        write_json(d / "c" / "export.json", BUILT)
        summary = render(d)
    report = (d / "report.md").read_text()
    assert "stm32f412" not in report + summary and "fit:" not in report + summary
    assert (
        "| target | host |" in report and "| const data in the object file (B) | 1,234 |" in report
    )
    assert "C build: target host" in summary


def test_no_export_folder_no_export_section(tmp_path):
    d = tmp_path / "run"
    with open_run_dir(d, "run", {}):
        write_json(d / "stages.json", {"export": {"target": "stm32f412", "seconds": 1.0}})
        summary = render(d)
    assert "C export" not in (d / "report.md").read_text() and "C build" not in summary


def test_export_rows_of_chip_and_unchecked_exports():
    chip = {**BUILT, "chip": {"name": "stm32h743"}}
    assert export_rows(chip)["target"] == "stm32h743"
    rows = export_rows({"target": "cortex-m4"})  # written with --no-check: nothing measured
    assert rows["target"] == "cortex-m4" and not any("(B)" in k for k in rows)
