"""files: atomic writes that clean up, checkpoints loaded without running code, JSON errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import full_disk

from micromix.errors import CheckpointError, RunDirError, StorageError
from micromix.files import atomic_path, load_checkpoint, read_json, save_checkpoint, write_json


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    write_json(path, {"v": 1})
    full_disk(monkeypatch)
    with pytest.raises(StorageError, match=r"cannot write .*m\.json: the disk is full\."):
        write_json(path, {"v": 2})
    with pytest.raises(StorageError, match="the disk is full"):
        save_checkpoint(tmp_path / "c.pt", {"w": torch.zeros(1000)})
    with pytest.raises(StorageError), atomic_path(tmp_path / "p.png") as tmp:
        tmp.write_bytes(b"png")
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


def test_checkpoints_hold_only_weights_only_values(tmp_path):
    state = {
        "a": np.arange(5, dtype=np.float32),
        "b": np.float64(0.5),
        "c": (np.int64(3), [np.ones(2)]),
        "rng": np.random.default_rng(1).bit_generator.state,
    }
    save_checkpoint(tmp_path / "c.pt", state)
    back = torch.load(tmp_path / "c.pt", weights_only=True)
    assert torch.equal(back["a"], torch.arange(5, dtype=torch.float32))
    assert back["b"] == 0.5 and type(back["b"]) is float and back["c"][0] == 3
    g = np.random.default_rng(0)
    g.bit_generator.state = back["rng"]
    assert g.random() == np.random.default_rng(1).random()


def test_load_checkpoint_refuses_pickled_objects(tmp_path):
    torch.save({"x": Path("/tmp")}, tmp_path / "t.pt")  # any class, harmless or not
    with pytest.raises(CheckpointError, match="does not load those"):
        load_checkpoint(tmp_path / "t.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_read_json_errors_are_sentences(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 50_000 + "]" * 50_000)
    (tmp_path / "big.json").write_text("9" * 5000)
    with pytest.raises(RunDirError, match="nested too deeply"):
        read_json(tmp_path / "deep.json", error=RunDirError)
    with pytest.raises(RunDirError, match="cannot read"):
        read_json(tmp_path / "big.json", error=RunDirError)
    with pytest.raises(RunDirError, match="is a folder"):
        read_json(tmp_path, error=RunDirError)
