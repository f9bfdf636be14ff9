"""rundir: locks, the identity of a run directory, resume of a search checkpoint."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import full_disk

from micromix.budget import Budget
from micromix.errors import RunDirError, StorageError
from micromix.files import TMP_SUFFIX
from micromix.graph import trace
from micromix.memory import memory_report
from micromix.policy import Policy
from micromix.rundir import LOCK_NAME, lock_dir, open_run_dir, release_all


def _temps(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if p.name.endswith(TMP_SUFFIX)]


def test_search_checkpoint_loads_with_weights_only_and_resumes(tmp_path):
    from micromix.strategies import DDPGConfig, SearchConfig, SyntheticEvaluator, search

    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16, 4)
    ).eval()
    g = trace(net, (1, 1, 4, 4))
    hi, lo = (memory_report(g, Policy.uniform(g, b)) for b in (8, 2))
    budget = Budget((hi.flash_bytes + lo.flash_bytes) // 2, None)
    kw = dict(graph=g, evaluator=SyntheticEvaluator(g), episodes=6)
    kw.update(agent=DDPGConfig(hidden=16, warmup=2, batch_size=4))
    run = SearchConfig(run_dir=tmp_path / "a", seed=3, progress=False, plots=False)
    search(None, None, budget, "haq", replace(run, stop_after=3), **kw)
    ck = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)  # no numpy inside
    assert sum(h["new"] for h in ck["history"]) == 3
    assert isinstance(ck["agent"]["buffer"]["obs"], torch.Tensor)
    resumed = search(None, None, budget, "haq", replace(run, resume=True), **kw)
    straight = search(None, None, budget, "haq", replace(run, run_dir=tmp_path / "b"), **kw)
    assert [h["policy"] for h in resumed.history] == [h["policy"] for h in straight.history]
    with pytest.raises(RunDirError, match="strategy.episodes was 6, now 7"):
        search(None, None, budget, "haq", replace(run, resume=True), **{**kw, "episodes": 7})


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
        full_disk(m)
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


def test_stale_temporary_files_are_cleared_when_a_run_dir_is_opened(tmp_path):
    d = tmp_path / "r"
    with open_run_dir(d, "train", {}):
        pass
    (d / f".config.json.abc{TMP_SUFFIX}").write_text("half")  # left by a kill -9
    (d / f".c.xyz{TMP_SUFFIX}").mkdir()  # a killed export's staging folder
    with open_run_dir(d, "train", {}, resume=True):
        assert not _temps(d)


def test_force_keeps_the_earlier_results_until_the_command_ends_well(tmp_path):
    d = tmp_path / "r"
    with open_run_dir(d, "train", {"lr": 0.1}, owned=["model.pt"]):
        (d / "model.pt").write_text("old model")
    before = (d / "config.json").read_text()
    with pytest.raises(RuntimeError, match="disk"):
        with open_run_dir(d, "train", {"lr": 0.2}, force=True, owned=["model.pt"]):
            assert not (d / "model.pt").exists()  # set aside: the new run starts clean
            (d / "model.pt").write_text("half a model")
            raise RuntimeError("the disk is full")  # the new run fails before its results
    assert (d / "model.pt").read_text() == "old model" and (d / "config.json").read_text() == before
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.pt"]
    with open_run_dir(d, "train", {"lr": 0.2}, force=True, owned=["model.pt"]):
        (d / "model.pt").write_text("new model")
    assert (d / "model.pt").read_text() == "new model" and (d / "config.json").read_text() != before
    assert sorted(p.name for p in d.iterdir()) == ["config.json", "model.pt"]


def test_a_failed_cli_force_puts_the_earlier_results_back(tmp_path, monkeypatch):
    from micromix.rundir import settle_all

    d = tmp_path / "r"
    with open_run_dir(d, "search", {"seed": 0}, owned=["metrics.json"]):
        (d / "metrics.json").write_text("{}")
    # the CLI's commands keep their run directory open until main() settles them
    open_run_dir(d, "search", {"seed": 1}, force=True, owned=["metrics.json"])
    assert not (d / "metrics.json").exists()
    settle_all(failed=True)
    release_all()
    assert (d / "metrics.json").read_text() == "{}"
    assert '"seed": 0' in (d / "config.json").read_text()


def test_search_force_on_a_full_disk_keeps_the_previous_search(tmp_path, monkeypatch):
    from micromix.strategies import SearchConfig, SyntheticEvaluator, search

    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 4))
    g = trace(net.eval(), (1, 1, 4, 4))
    kw = dict(graph=g, evaluator=SyntheticEvaluator(g))
    run = SearchConfig(run_dir=tmp_path / "s", progress=False, plots=False)
    search(None, None, Budget(None, None), "rule", run, **kw)
    kept = {n: (tmp_path / "s" / n).read_bytes() for n in ("config.json", "metrics.json")}
    with monkeypatch.context() as m:
        full_disk(m)
        with pytest.raises(StorageError):
            search(None, None, Budget(None, None), "uniform", replace(run, force=True), **kw)
    assert {n: (tmp_path / "s" / n).read_bytes() for n in kept} == kept
    assert _temps(tmp_path / "s") == []
