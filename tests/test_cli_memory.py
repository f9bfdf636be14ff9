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
        (["--dense-scales", "row"], "--dense-scales: choose channel, tensor, not 'row'"),
    ],
)
def test_bad_schedule_flags_one_line_exit_2(argv, needle, capsys):
    assert main(["memory", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err


TWO_DENSE = """
import torch.nn as nn


class TwoDense(nn.Module):
    def __init__(self, hidden=7, classes=3):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.relu = nn.ReLU()
        self.fc1 = nn.Linear(4 * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x):
        x = self.relu(self.conv(x)).flatten(1)
        return self.fc2(self.relu(self.fc1(x)))
"""


@pytest.mark.parametrize("hidden, classes", [(7, 3), (16, 1)])
def test_dense_scales_tensor_saves_a_multiplier_and_shift_per_dense_row(
    hidden, classes, tmp_path, capsys
):
    """Per tensor, each Linear layer keeps one int32 multiplier and one int8 shift instead of
    one per output row (DESIGN: per-channel parameters); the conv keeps its own."""
    net = tmp_path / "net.py"
    net.write_text(TWO_DENSE)
    argv = ["memory", "--json", "--model", f"{net}:TwoDense", "--input-shape", "1x6x6"]
    argv += ["--model-args", json.dumps({"hidden": hidden, "classes": classes})]
    flash = {}
    for scales in ("channel", "tensor"):
        assert main([*argv, "--dense-scales", scales]) == 0
        flash[scales] = json.loads(capsys.readouterr().out)["flash_bytes"]
    assert main(argv) == 0  # per channel unless asked
    assert json.loads(capsys.readouterr().out)["flash_bytes"] == flash["channel"]
    assert flash["channel"] - flash["tensor"] == (hidden - 1 + classes - 1) * (4 + 1)
