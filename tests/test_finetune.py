"""finetune: BN freezing, resume, the QAT checkpoint, and the `micromix finetune` command."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from test_quant import SkipNet, image_set

from micromix.cli import main
from micromix.graph import trace
from micromix.models import create
from micromix.policy import Policy
from micromix.quant.finetune import finetune, load_qat, qat_recipe
from micromix.train import save_model

CFG = replace(qat_recipe(2), lr=3e-3, batch_size=32, augment=False)


def bn_means(q) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in q.state_dict().items() if k.endswith("running_mean")}


def test_bn_frozen_after_first_epoch_and_resume_matches(tmp_path):
    torch.manual_seed(0)
    model = SkipNet()
    g = trace(model, (1, 1, 8, 8))
    pol = Policy.uniform(g, 4)
    ds = image_set(128)
    ck = tmp_path / "ck.pt"
    one = finetune(model, pol, ds, replace(CFG, epochs=1), checkpoint=ck, graph=g, progress=False)
    after1 = bn_means(one)
    float_means = {
        f"net.{k}": v for k, v in model.state_dict().items() if k.endswith("running_mean")
    }
    assert any(not torch.equal(after1[k], float_means[k]) for k in after1)  # epoch 1 updates BN
    two = finetune(model, pol, ds, CFG, checkpoint=ck, resume=True, graph=g, progress=False)
    assert [h["epoch"] for h in two.history] == [1, 2]
    after2 = bn_means(two)
    assert all(torch.equal(after1[k], after2[k]) for k in after1)  # frozen in epoch 2
    assert not torch.equal(one.net.stem.weight, two.net.stem.weight)  # but training went on
    # an uninterrupted run ends exactly where the interrupted + resumed one does
    ref = finetune(model, pol, ds, CFG, graph=g, progress=False)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, two.state_dict()[k]), k
    q, meta = load_qat(ck, model=model)
    assert meta["epoch"] == 2 and q.policy == pol


def test_resume_refuses_other_policy(tmp_path):
    from micromix.errors import CheckpointError

    model = SkipNet()
    g = trace(model, (1, 1, 8, 8))
    ds = image_set(64)
    ck = tmp_path / "ck.pt"
    cfg = replace(CFG, epochs=1, max_batches=1)
    finetune(model, Policy.uniform(g, 4), ds, cfg, checkpoint=ck, graph=g, progress=False)
    with pytest.raises(CheckpointError, match="another policy"):
        finetune(model, Policy.uniform(g, 8), ds, cfg, checkpoint=ck, resume=True, graph=g)


def test_qat_recipe_scales_lr_steps():
    assert qat_recipe(10).lr_steps == ((4, 0.5), (8, 0.1))
    assert qat_recipe(5).lr_steps == ((2, 0.5), (4, 0.1))
    assert qat_recipe(1).lr_steps == ()
    assert qat_recipe(3).freeze_bn_after == 1 and qat_recipe(3).optimizer == "adam"


# ---- CLI -------------------------------------------------------------------------------------


@pytest.fixture
def float_ckpt(tmp_path):
    m = create("mobilenet_v1", width=0.1, resolution=28, in_channels=1, num_classes=10)
    path = tmp_path / "float.pt"
    save_model(path, m)
    return path, trace(m)


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = main(["finetune", *map(str, argv)])
    return code, capsys.readouterr().err.strip()


def test_cli_errors_are_one_line(tmp_path, capsys, float_ckpt):
    ck, g = float_ckpt
    rd = tmp_path / "run"
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    other = tmp_path / "other.json"
    Policy.uniform(g, 8).replace(weights={"nope": 8}).save(other)
    cases = [
        (["--checkpoint", tmp_path / "missing.pt"], "does not exist"),
        (["--checkpoint", ck, "--policy", bad_json], "not valid JSON"),
        (["--checkpoint", ck, "--policy", other], "unknown weight tensor 'nope'"),
        (["--checkpoint", ck, "--bits", 3], "allowed are 2, 4, 8"),
        (["--checkpoint", ck, "--policy", other, "--bits", 4], "not both"),
        (["--checkpoint", ck, "--epochs", 0], "--epochs"),
    ]
    for argv, msg in cases:
        code, err = run_cli(capsys, *argv, "--run-dir", rd)
        assert code == 2, argv
        assert len(err.splitlines()) == 1 and msg in err and err.startswith("micromix: error:"), err


@pytest.mark.slow
def test_cli_finetune_and_resume(tmp_path, capsys, float_ckpt, fashion):
    ck, g = float_ckpt
    rd = tmp_path / "run"
    args = ["--checkpoint", ck, "--bits", 4, "--abits", 8, "--epochs", 1, "--max-batches", 3]
    code, err = run_cli(capsys, *args, "--run-dir", rd)
    assert code == 0, err
    for f in ("config.json", "policy.json", "memory.json", "metrics.json", "qat.pt"):
        assert (rd / f).exists(), f
    m = json.loads((rd / "metrics.json").read_text())
    assert {"float_test_acc", "test_acc", "heldout_acc", "train_seconds"} <= set(m)
    assert Policy.load(rd / "policy.json") == Policy.uniform(g, 4, 8)
    code, err = run_cli(capsys, *args, "--run-dir", rd)
    assert code == 2 and "--resume" in err
    # More epochs would change the result (the learning-rate steps move): refused, unchanged.
    before = {p.name: p.read_bytes() for p in rd.iterdir() if p.is_file()}
    longer = list(args)
    longer[longer.index("--epochs") + 1] = 2
    code, err = run_cli(capsys, *longer, "--run-dir", rd, "--resume")
    assert code == 2 and "train.epochs was 1, now 2" in err, err
    assert {p.name: p.read_bytes() for p in rd.iterdir() if p.is_file()} == before
    code, err = run_cli(capsys, *args, "--run-dir", rd, "--resume")
    assert code == 0, err
    m = json.loads((rd / "metrics.json").read_text())
    assert [h["epoch"] for h in m["history"]] == [1]
