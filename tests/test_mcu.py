"""Targets: memory maps in the registry, targets from TOML / JSON files, budgets from a target
(and with --flash / --ram within it), --target honoured by `micromix run` presets."""

from __future__ import annotations

import json

import pytest

from micromix.budget import Budget
from micromix.cli import build_parser, main
from micromix.cli.cmd_run import config_from_args
from micromix.errors import MicromixError
from micromix.graph import trace
from micromix.mcu import CORES, get_target, list_targets
from micromix.memory import memory_report
from micromix.policy import Policy

K = 1024


def test_registry_has_cores_and_vendor_memory_maps() -> None:
    h7 = get_target("stm32h743")
    assert h7.core == "cortex-m7"
    regions = {r.name: (r.origin, r.length) for r in h7.ram_regions}
    assert regions["AXI_SRAM"] == (0x24000000, 512 * K)
    assert regions["DTCM"] == (0x20000000, 128 * K)
    assert regions["SRAM1"][0] == 0x30000000 and regions["SRAM4"][0] == 0x38000000
    assert (h7.flash_region.origin, h7.flash) == (0x08000000, 2 * K * K)
    assert h7.ram_region.name == "AXI_SRAM" and h7.ram == 512 * K  # the largest one
    f4 = get_target("stm32f412")
    assert (f4.core, f4.flash, f4.ram) == ("cortex-m4f", K * K, 256 * K)
    for t in list_targets():
        assert t.core in CORES and "section" in t.source.lower(), t.name
    assert {"stm32h743", "stm32f746", "stm32f412", "nrf52840"} <= {t.name for t in list_targets()}


def write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text)
    return p


BOARD = """
name = "my_board"
core = "cortex-m4f"
source = "MYCHIP RM, section 2.2"
flash = [{name = "FLASH", origin = 0x08000000, length = "512KiB"}]
ram = [{name = "SRAM", origin = 0x20000000, length = "128KiB"},
       {name = "CCM", origin = 0x10000000, length = "64KiB"}]
reserve_ram = "4KiB"
"""


def test_target_from_toml_and_json(tmp_path) -> None:
    t = get_target(str(write(tmp_path, "b.toml", BOARD)))
    assert (t.name, t.core, t.flash, t.ram, t.ram_region.name) == (
        "my_board", "cortex-m4f", 512 * K, 128 * K, "SRAM"
    )  # fmt: skip
    assert (t.flash_budget, t.ram_budget) == (512 * K - t.reserve_flash, 124 * K)
    j = write(tmp_path, "b.json", json.dumps(t.to_json() | {"flash_bytes": None}))
    obj = json.loads(j.read_text())
    small = {k: obj[k] for k in ("name", "core", "flash", "ram")}
    assert get_target(str(write(tmp_path, "c.json", json.dumps(small)))).ram == 128 * K
    assert Budget.parse(target=str(tmp_path / "b.toml")) == Budget(
        512 * K - t.reserve_flash, 124 * K, "my_board"
    )


@pytest.mark.parametrize(
    "text, match",
    [
        ("core = 'cortex-m4f'\nram = []\nflash = []", "at least one RAM region"),
        (BOARD.replace('"cortex-m4f"', '"cortex-m99"'), "unknown core 'cortex-m99'"),
        (BOARD.replace('"512KiB"', '"lots"'), "cannot read memory size 'lots'"),
        (BOARD.replace('"CCM"', '"SRAM"'), "unique"),
        (BOARD + "\ncolour = 'blue'\n", "unknown setting 'colour'"),
        ("core = ", "not valid TOML"),
        (BOARD.replace("origin = 0x10000000, ", ""), "needs origin and length"),
        (BOARD.replace('reserve_ram = "4KiB"', 'reserve_ram = "1MiB"'), "leaves no RAM"),
    ],
)
def test_bad_target_files_get_one_sentence(tmp_path, text: str, match: str) -> None:
    p = write(tmp_path, "bad.toml", text)
    with pytest.raises(MicromixError, match=match) as e:
        get_target(str(p))
    assert str(e.value).count("\n") == 0
    with pytest.raises(MicromixError, match="does not exist"):
        get_target(str(tmp_path / "missing.toml"))


def test_budget_within_a_target(tiny_resnet) -> None:
    """The rule: no limit given -> the target's budget; a ratio stays a ratio of the 8-bit
    footprint, capped by the target; explicit bytes apply, but not above the target's region."""
    g = trace(tiny_resnet, (1, 1, 8, 8))
    ref = memory_report(g, Policy.uniform(g, 8))
    t = get_target("stm32f412")
    b = Budget.parse(target="stm32f412")
    assert b == Budget(t.flash - t.reserve_flash, t.ram - t.reserve_ram, "stm32f412")
    r = Budget.parse("0.5x", "0.42x", target="stm32f412", reference=ref)
    assert (r.flash, r.ram) == (int(0.5 * ref.flash_bytes), int(0.42 * ref.ram_bytes))
    big = Budget.parse("1000000x", None, target="stm32f412", reference=ref)
    assert big.flash == t.flash_budget  # capped by the target
    assert Budget.parse(ram="100kB", target="stm32f412").ram == 100_000
    with pytest.raises(MicromixError, match="more than the 262,144 B of stm32f412's SRAM1"):
        Budget.parse(ram="300kB", target="stm32f412")
    assert "target stm32f412" in b.describe(ref)
    assert Budget.from_json(b.to_json()) == b


def test_run_presets_honour_target() -> None:
    """`micromix run --target` is no longer overridden by the preset's 0.48x / 0.42x."""
    p = build_parser()
    cfg = config_from_args(p.parse_args(["run", "--target", "stm32h743"]))
    assert (cfg.flash, cfg.ram, cfg.target) == (None, None, "stm32h743")
    ratio = config_from_args(p.parse_args(["run", "--target", "stm32h743", "--ram", "0.3x"]))
    assert (ratio.flash, ratio.ram) == (None, "0.3x")
    plain = config_from_args(p.parse_args(["run"]))
    assert (plain.flash, plain.ram) == ("0.48x", "0.42x")


def test_cli_targets_and_unknown_target(tmp_path, capsys) -> None:
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "AXI_SRAM" in out and "0x24000000" in out and "cortex-m7" in out and "RM0433" in out
    assert main(["targets", "--target", str(write(tmp_path, "b.toml", BOARD)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["ram_bytes"] == 128 * K
    assert main(["run", "--target", "esp8266", "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown target 'esp8266'" in capsys.readouterr().err
