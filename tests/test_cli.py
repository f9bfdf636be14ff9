from __future__ import annotations

import json

import pytest

from micromix.cli import main


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_memory_table_matches_facts(capsys):
    assert (
        main(
            [
                "memory",
                "--width",
                "1.0",
                "--resolution",
                "224",
                "--classes",
                "1000",
                "--in-channels",
                "3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "weights 4,209,088" in out and "1,204,224" in out


def test_memory_json_and_budget(capsys):
    assert main(["memory", "--json", "--bits", "4", "--flash", "0.48x", "--ram", "100kB"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["budget"]["ram"] == 100_000
    assert d["utilization"]["ram"] == d["ram_bytes"] / 100_000


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["memory", "--model", "resnet999"], "unknown model"),
        (["memory", "--flash", "12 parsecs"], "cannot read memory size"),
        (["memory", "--target", "esp8266"], "unknown target"),
        (["memory", "--checkpoint", "/nonexistent.pt"], "does not exist"),
        (["memory", "--policy", "/nonexistent.json"], "does not exist"),
    ],
)
def test_user_errors_one_line_exit_2(argv, needle, capsys):
    assert main(argv) == 2
    assert needle in _err_line(capsys)


def test_bad_policy_file(tmp_path, capsys):
    p = tmp_path / "p.json"
    p.write_text('{"format": 1, "weights": {"nope": 4}, "activations": {}}')
    assert main(["memory", "--policy", str(p)]) == 2
    assert "unknown weight tensor 'nope'" in _err_line(capsys)


def test_train_refuses_non_empty_run_dir(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["train", "--run-dir", str(tmp_path), "--epochs", "1"]) == 2
    assert "--force" in _err_line(capsys)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_train_cli_writes_run_dir(tmp_path, fashion, capsys):
    d = tmp_path / "run"
    argv = [
        "train",
        "--run-dir",
        str(d),
        "--epochs",
        "1",
        "--train-images",
        "512",
        "--width",
        "0.25",
        "--dense-scales",
        "tensor",
    ]
    assert main(argv) == 0
    metrics = json.loads((d / "metrics.json").read_text())
    cfg = json.loads((d / "config.json").read_text())
    assert 10.0 <= metrics["test_acc"] <= 100.0 and metrics["epochs"] == 1
    assert cfg["settings"]["train_images"] == 512 and "torch" in cfg["versions"]
    assert cfg["settings"]["dense_scales"] == "tensor"
    assert (d / "model.pt").exists() and (d / "checkpoint.pt").exists()
    # the model file holds the graph traced per tensor: `memory` reads it as recorded, and
    # --dense-scales names another layout of the same graph
    capsys.readouterr()
    flash = {}
    for scales in ([], ["--dense-scales", "tensor"], ["--dense-scales", "channel"]):
        assert main(["memory", "--json", "--checkpoint", str(d / "model.pt"), *scales]) == 0
        flash[tuple(scales)] = json.loads(capsys.readouterr().out)["flash_bytes"]
    assert flash[()] == flash[("--dense-scales", "tensor")] < flash[("--dense-scales", "channel")]
    # a resume with another layout is refused before anything trains
    assert main([*argv[:-1], "channel", "--resume"]) == 2
    assert 'dense_scales was "tensor", now "channel"' in _err_line(capsys)


def test_targets_and_models_lists(capsys):
    assert main(["targets"]) == 0 and "stm32h743" in capsys.readouterr().out
    assert main(["models"]) == 0 and "mnasnet" in capsys.readouterr().out


def test_memory_names_the_trailing_softmax_it_leaves_out(tmp_path, capsys):
    """The C returns logits; the user must be told that the softmax is theirs to apply."""
    net = tmp_path / "net.py"
    net.write_text(
        "import torch.nn as nn\nimport torch.nn.functional as F\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(1, 4, 3)\n"
        "        self.fc = nn.Linear(4 * 6 * 6, 3)\n\n"
        "    def forward(self, x):\n"
        "        return F.softmax(self.fc(F.relu(self.conv(x)).flatten(1)), dim=1)\n"
    )
    model = ["memory", "--model", f"{net}:Net", "--input-shape", "1x8x8"]
    assert main([*model, "--json"]) == 0
    notes = json.loads(capsys.readouterr().out)["notes"]
    assert len(notes) == 1 and "softmax" in notes[0] and "logits" in notes[0]
    assert main(model) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == f"note: {notes[0]}"
