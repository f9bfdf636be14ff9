"""`micromix memory --schedule`: the peak of every schedule and the chosen plan's buffers."""

from __future__ import annotations

import json

import pytest

from micromix.cli import main

# MobileNetV1-0.25 at 1 x 28 x 28 (the CLI's default model)


def test_memory_schedule_json_reports_the_chosen_schedule(capsys):
    assert main(["memory", "--json", "--schedule", "auto", "--max-recompute", "0.1"]) == 0
    d = json.loads(capsys.readouterr().out)
    s = d["schedule"]
    # the report, the export's RAM and the note are the chosen schedule's (the C follows it)
    auto = s["schedules"]["auto"]
    assert auto["ram"] == d["ram_bytes"] == s["export_ram"]
    assert str(d["ram_bytes"]) in s["note"].replace(",", "") and "--schedule auto" in s["note"]
    assert auto["ram"] == min(v["ram"] for v in s["schedules"].values())
    assert auto["ram"] < s["schedules"]["layer"]["ram"] and 0 <= auto["mac_overhead"] <= 0.1
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
    assert "export --schedule inplace" in out


def test_memory_schedule_defaults_to_auto_at_a_tenth(capsys):
    assert main(["memory", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["memory", "--json", "--schedule", "auto", "--max-recompute", "0.1"]) == 0
    assert plain == json.loads(capsys.readouterr().out)
    assert plain["schedule"]["chosen"]["kind"] == "patch"  # the smallest peak here


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
