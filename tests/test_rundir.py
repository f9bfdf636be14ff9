"""rundir: atomic writes that clean up, checkpoints loaded without code, locks, identity."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from micromix.budget import Budget
from micromix.errors import CheckpointError, RunDirError, StorageError
from micromix.graph import trace
from micromix.memory import memory_report
from micromix.policy import Policy
from micromix.rundir import (
    LOCK_NAME,
    TMP_SUFFIX,
    atomic_path,
    load_checkpoint,
    lock_dir,
    open_run_dir,
    read_json,
    save_checkpoint,
    write_json,
)


def _full_disk(monkeypatch) -> None:
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)


def _temps(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if p.name.endswith(TMP_SUFFIX)]


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.json"
    write_json(path, {"v": 1})
    _full_disk(monkeypatch)
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


def test_search_checkpoint_loads_with_weights_only_and_resumes(tmp_path):
    from micromix.strategies import DDPGConfig, SyntheticEvaluator, search

    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16, 4)
    ).eval()
    g = trace(net, (1, 1, 4, 4))
    hi, lo = (memory_report(g, Policy.uniform(g, b)) for b in (8, 2))
    budget = Budget((hi.flash_bytes + lo.flash_bytes) // 2, None)
    kw = dict(graph=g, evaluator=SyntheticEvaluator(g), episodes=6, seed=3, progress=False)
    kw.update(agent=DDPGConfig(hidden=16, warmup=2, batch_size=4), plots=False)
    search(None, None, budget, "haq", run_dir=tmp_path / "a", stop_after=3, **kw)
    ck = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)  # no numpy inside
    assert sum(h["new"] for h in ck["history"]) == 3
    assert isinstance(ck["agent"]["buffer"]["obs"], torch.Tensor)
    resumed = search(None, None, budget, "haq", run_dir=tmp_path / "a", resume=True, **kw)
    straight = search(None, None, budget, "haq", run_dir=tmp_path / "b", **kw)
    assert [h["policy"] for h in resumed.history] == [h["policy"] for h in straight.history]
    with pytest.raises(RunDirError, match="strategy.episodes was 6, now 7"):
        search(
            None, None, budget, "haq", run_dir=tmp_path / "a", resume=True, **{**kw, "episodes": 7}
        )


def test_load_checkpoint_refuses_pickled_objects(tmp_path):
    torch.save({"x": Path("/tmp")}, tmp_path / "t.pt")  # any class, harmless or not
    with pytest.raises(CheckpointError, match="does not load those"):
        load_checkpoint(tmp_path / "t.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_open_run_dir_identity(tmp_path):
    d = tmp_path / "r"
    with open_run_dir(d, "train", {"lr": 0.1, "quiet": False}) as rd:
        assert not rd.resumed and (d / LOCK_NAME).exists()
        (d / "model.pt").write_text("x")
        (d / "notes.txt").write_text("mine")
    assert not (d / LOCK_NAME).exists()
    cfg = (d / "config.json").read_text()
    with pytest.raises(RunDirError, match="not empty; pass --resume"):
        open_run_dir(d, "train", {"lr": 0.1})
    with pytest.raises(RunDirError, match="made by `micromix train`, not `micromix search`"):
        open_run_dir(d, "search", {"lr": 0.1}, resume=True)
    with pytest.raises(RunDirError, match="lr was 0.1, now 0.2"):
        open_run_dir(d, "train", {"lr": 0.2, "quiet": False}, resume=True)
    # Only result keys count; a resume keeps config.json.
    with open_run_dir(d, "train", {"lr": 0.1, "quiet": True}, resume=True, result_keys=["lr"]):
        pass
    assert (d / "config.json").read_text() == cfg
    with open_run_dir(d, "train", {"lr": 0.5}, force=True, owned=["model.pt"]) as rd:
        assert rd.config["settings"] == {"lr": 0.5}
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "notes.txt"]


def test_failed_open_leaves_no_folder_and_nested_opens_share_the_lock(tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        _full_disk(m)
        with pytest.raises(StorageError, match="config.json: the disk is full"):
            open_run_dir(tmp_path / "x", "train", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="not a folder"):
        open_run_dir(tmp_path / "file", "train", {})
    with open_run_dir(tmp_path / "n", "run", {}):
        lock = lock_dir(tmp_path / "n")  # the same process: shared, not refused
        lock.release()
        assert (tmp_path / "n" / LOCK_NAME).exists()
    assert not (tmp_path / "n" / LOCK_NAME).exists()


def test_read_json_errors_are_sentences(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 50_000 + "]" * 50_000)
    (tmp_path / "big.json").write_text("9" * 5000)
    with pytest.raises(RunDirError, match="nested too deeply"):
        read_json(tmp_path / "deep.json", error=RunDirError)
    with pytest.raises(RunDirError, match="cannot read"):
        read_json(tmp_path / "big.json", error=RunDirError)
    with pytest.raises(RunDirError, match="is a folder"):
        read_json(tmp_path, error=RunDirError)


def test_stale_temporary_files_are_cleared_when_a_run_dir_is_opened(tmp_path):
    d = tmp_path / "r"
    with open_run_dir(d, "train", {}):
        pass
    (d / f".config.json.abc{TMP_SUFFIX}").write_text("half")  # left by a kill -9
    (d / f".c.xyz{TMP_SUFFIX}").mkdir()  # a killed export's staging folder
    with open_run_dir(d, "train", {}, resume=True):
        assert not _temps(d)
