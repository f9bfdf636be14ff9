"""`micromix memory --schedule`: the peak of every schedule and the chosen plan's buffers."""

from __future__ import annotations

import json

import pytest

from micromix.cli import main

# MobileNetV1-0.25 at 1 x 28 x 28 (the CLI's default model)


def test_memory_schedule_json_matches_the_layer_report(capsys):
    assert main(["memory", "--json", "--schedule", "auto", "--max-recompute", "0.1"]) == 0
    d = json.loads(capsys.readouterr().out)
    s = d["schedule"]
    # the export's RAM stays the layer-by-layer figure until the C follows the schedule
    assert s["schedules"]["layer"]["ram"] == d["ram_bytes"] == s["export_ram"]
    assert str(d["ram_bytes"]) in s["note"].replace(",", "")
    auto = s["schedules"]["auto"]
    assert auto["ram"] == min(v["ram"] for v in s["schedules"].values())
    assert auto["ram"] < d["ram_bytes"] and 0 <= auto["mac_overhead"] <= 0.1
    chosen = s["chosen"]
    assert chosen["ram"] == auto["ram"]
    # every step's live buffers fit in the arena; RAM is arena + the kernels' scratch
    live = [sum(st["buffers"].values()) for st in chosen["steps"]]
    assert max(live) <= chosen["arena"] and chosen["arena"] + chosen["scratch"] == chosen["ram"]


def test_memory_schedule_table_lists_every_schedule_and_the_steps(capsys):
    assert main(["memory", "--schedule", "inplace", "--abits", "4"]) == 0
    out = capsys.readouterr().out
    for k in ("layer", "inplace", "patch", "auto"):
        assert any(line.startswith(k + " ") for line in out.splitlines()), k
    assert "chosen: inplace" in out and "(per patch)" not in out.split("chosen:")[1]
    assert "until the C follows the schedule" in out


def test_memory_without_schedule_flags_prints_no_schedule(capsys):
    assert main(["memory"]) == 0
    assert "chosen:" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--schedule", "fastest"], "invalid choice"),
        (["--max-recompute", "-0.5"], "fraction of 0 or more"),
        (["--max-recompute", "ten"], "expected a number"),
        (["--max-recompute", "inf"], "finite"),
    ],
)
def test_bad_schedule_flags_one_line_exit_2(argv, needle, capsys):
    assert main(["memory", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
