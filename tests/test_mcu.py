"""Targets: memory maps in the registry, targets from TOML / JSON files, budgets from a target
(and with --flash / --ram within it), --target honoured by `micromix run` presets."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest

from micromix.budget import Budget, check_feasible, smallest_footprint
from micromix.cli import build_parser, main
from micromix.cli.cmd_run import config_from_args
from micromix.errors import InfeasibleBudgetError, MicromixError
from micromix.graph import trace
from micromix.mcu import CORES, Region, Target, get_target, list_targets
from micromix.memory import memory_report
from micromix.policy import Policy

K = 1024


def overlap(a: Region, b: Region) -> bool:
    return a.origin < b.origin + b.length and b.origin < a.origin + a.length


def test_every_target_keeps_a_reserve_and_a_sound_memory_map() -> None:
    """What the search and the linker script rely on: the budget is below the chip's memory
    (room for code and stack), no two regions share an address, a limit up to the arena's
    region is accepted and one byte more is refused, and the map cites its vendor document."""
    targets = list_targets()
    assert len(targets) >= 4
    for t in targets:
        assert t.core in CORES and "section" in t.source.lower(), t.name
        assert 0 < t.ram_budget < t.ram, t.name
        assert t.flash is None or 0 < t.flash_budget < t.flash, t.name
        regions = [*t.flash_regions, *t.ram_regions]
        for i, r in enumerate(regions):
            assert not any(overlap(r, q) for q in regions[i + 1 :]), (t.name, r.name)
        assert Budget.parse(ram=t.ram, target=t).ram == t.ram
        with pytest.raises(MicromixError, match=f"{t.name}'s {t.ram_region.name}"):
            Budget.parse(ram=t.ram + 1, target=t)


def test_a_model_over_the_usable_budget_is_refused(tiny_resnet) -> None:
    """A model that fits the chip's RAM but not what is left after the reserve is refused
    before anything runs; with a smaller reserve the same model is accepted."""
    g = trace(tiny_resnet, (1, 1, 8, 8))
    low = smallest_footprint(g)
    ram = (Region("SRAM", 0x20000000, low.ram_bytes + 64),)
    tight = Target("tight", "cortex-m4f", (Region("FLASH", 0x08000000, K * K),), ram,
                   reserve_ram=128)  # fmt: skip
    assert low.ram_bytes < tight.ram
    with pytest.raises(InfeasibleBudgetError, match="cannot be met"):
        check_feasible(g, Budget.parse(target=tight))
    check_feasible(g, Budget.parse(target=replace(tight, reserve_ram=64)))


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
    assert b == Budget(t.flash_budget, t.ram_budget, "stm32f412")
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
    for t in list_targets():  # every chip with its arena region, where it is and its source
        r = t.ram_region
        assert t.name in out and r.name in out and f"{r.origin:#010x}" in out, t.name
        assert t.source.split(",")[0] in out, t.name
    assert main(["targets", "--target", str(write(tmp_path, "b.toml", BOARD)), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["ram_bytes"] == 128 * K
    assert main(["run", "--target", "esp8266", "--run-dir", str(tmp_path / "r")]) == 2
    assert "unknown target 'esp8266'" in capsys.readouterr().err


def test_run_refuses_a_board_whose_reserve_leaves_too_little_ram(tmp_path, capsys) -> None:
    """`micromix run --target` stops before any stage with one sentence and exit 2 when even
    2 bits everywhere need more RAM than the board leaves after its reserve, though the
    model would fit the board's whole RAM; no run directory is left behind."""
    board = BOARD.replace('"128KiB"', '"12KiB"').replace('"64KiB"', '"1KiB"')
    board = board.replace('reserve_ram = "4KiB"', 'reserve_ram = "8KiB"')
    t = get_target(str(write(tmp_path, "small.toml", board)))
    # --search-train-images 1 makes a later check refuse the run should this one not, so a
    # regression fails fast instead of training.
    args = ["--target", str(tmp_path / "small.toml"), "--search-train-images", "1"]
    run = ["run", *args, "--strategy", "haq", "--run-dir", str(tmp_path / "r")]
    assert main([*run, "--schedule", "layer"]) == 2
    err = capsys.readouterr().err
    assert "cannot be met" in err and err.count("\n") == 1
    need = int(re.search(r"RAM ([\d,]+) B\.", err).group(1).replace(",", ""))
    assert t.ram_budget < need < t.ram
    assert not (tmp_path / "r").exists()
    # under the default schedule (auto) the 2-bit network fits what the board leaves: the run
    # gets past the budget to the next check
    assert main(run) == 2
    assert "--search-train-images 1" in capsys.readouterr().err
