"""finetune: BN freezing, resume, the QAT checkpoint, and the `micromix finetune` command."""

from __future__ import annotations

import json
from dataclasses import fields, replace

import pytest
import torch
from test_quant import SkipNet, image_set

from micromix.cli import main
from micromix.graph import trace
from micromix.models import create
from micromix.policy import Policy
from micromix.quant.finetune import FinetuneConfig, finetune, load_qat
from micromix.quant.recipe import recipe
from micromix.train import save_model

# the old recipe (BN frozen after epoch 1, fixed clips) at a rate that moves a tiny net fast
FAST = recipe("old", lr=3e-3, augment=False)


def bn_means(q) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in q.state_dict().items() if k.endswith("running_mean")}


def test_bn_frozen_after_first_epoch_and_resume_matches(tmp_path):
    torch.manual_seed(0)
    model = SkipNet()
    g = trace(model, (1, 1, 8, 8))
    pol = Policy.uniform(g, 4)
    ds = image_set(128)
    ck = tmp_path / "ck.pt"
    quiet = FinetuneConfig(batch_size=32, progress=False)
    one = finetune(model, pol, ds, FAST, replace(quiet, epochs=1, checkpoint=ck), graph=g)
    after1 = bn_means(one)
    float_means = {
        f"net.{k}": v for k, v in model.state_dict().items() if k.endswith("running_mean")
    }
    assert any(not torch.equal(after1[k], float_means[k]) for k in after1)  # epoch 1 updates BN
    two = finetune(
        model, pol, ds, FAST, replace(quiet, epochs=2, checkpoint=ck, resume=True), graph=g
    )
    assert [h["epoch"] for h in two.history] == [1, 2]
    after2 = bn_means(two)
    assert all(torch.equal(after1[k], after2[k]) for k in after1)  # frozen in epoch 2
    assert not torch.equal(one.net.stem.weight, two.net.stem.weight)  # but training went on
    # an uninterrupted run ends exactly where the interrupted + resumed one does
    ref = finetune(model, pol, ds, FAST, replace(quiet, epochs=2), graph=g)
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
    run = FinetuneConfig(epochs=1, max_batches=1, batch_size=32, checkpoint=ck, progress=False)
    finetune(model, Policy.uniform(g, 4), ds, FAST, run, graph=g)
    with pytest.raises(CheckpointError, match="another policy"):
        finetune(model, Policy.uniform(g, 8), ds, FAST, replace(run, resume=True), graph=g)


def test_step_schedule_keeps_its_steps_relative_to_the_run():
    from micromix.train import lr_at

    old = recipe("old")
    for epochs in (1, 3, 5, 10, 20):
        cfg = old.train_config(epochs)
        lrs = [lr_at(cfg, e) for e in range(epochs)]
        assert lrs[0] == old.lr and lrs == sorted(lrs, reverse=True)  # starts at lr, anneals
        if epochs >= 5:  # long enough for both steps: lr x0.5 near 40 %, x0.1 near 80 %
            assert sorted(set(lrs), reverse=True) == pytest.approx(
                [old.lr, old.lr / 2, old.lr / 10]
            )
            assert lrs[round(0.4 * epochs) - 1] == old.lr and lrs[-1] == old.lr / 10


def test_finetune_defaults_to_the_new_recipe_and_its_config_holds_no_recipe_setting():
    import inspect

    from micromix.errors import MicromixError
    from micromix.quant.recipe import DEFAULT_RECIPE, RECIPES, QATRecipe

    assert DEFAULT_RECIPE == "new" and QATRecipe() == RECIPES["new"]
    assert inspect.signature(finetune).parameters["recipe"].default == DEFAULT_RECIPE
    model = SkipNet()
    g = trace(model, (1, 1, 8, 8))
    run = FinetuneConfig(epochs=1, max_batches=1, batch_size=32, progress=False)
    q = finetune(model, Policy.uniform(g, 4), image_set(64), config=run, graph=g)
    assert q.weight_quant == RECIPES["new"].weight_quant == "lsq"
    # A recipe's setting is changed in the recipe: the run's config has no field for it.
    assert not {f.name for f in fields(FinetuneConfig)} & {f.name for f in fields(QATRecipe)}
    with pytest.raises(MicromixError, match="lr is a QAT recipe setting"):
        RECIPES["new"].train_config(1, lr=1e-2)


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
    # A recipe setting is a setting like any other: changed, the resume is refused.
    code, err = run_cli(capsys, *args, "--run-dir", rd, "--resume", "--kd-weight", "0.5")
    assert code == 2 and "qat_recipe.kd_weight was 0.0, now 0.5" in err, err
    code, err = run_cli(capsys, *args, "--run-dir", rd, "--resume")
    assert code == 0, err
    m = json.loads((rd / "metrics.json").read_text())
    assert [h["epoch"] for h in m["history"]] == [1]
    cfg = json.loads((rd / "config.json").read_text())
    assert cfg["torch_threads"] == torch.get_num_threads()
    assert cfg["settings"]["qat_recipe"]["name"] == "old"


@pytest.mark.slow
def test_cli_finetune_new_recipe_flags(tmp_path, capsys, float_ckpt, fashion):
    ck, _ = float_ckpt
    rd = tmp_path / "run"
    code, err = run_cli(
        capsys, "--checkpoint", ck, "--bits", 4, "--epochs", 2, "--max-batches", 2,
        "--recipe", "new", "--kd-temperature", 3, "--no-augment", "--run-dir", rd,
    )  # fmt: skip
    assert code == 0, err
    rec = json.loads((rd / "config.json").read_text())["settings"]["qat_recipe"]
    assert rec["name"] == "new" and rec["kd_temperature"] == 3.0 and rec["augment"] is False
    assert rec["weight_quant"] == "lsq"
    q, _ = load_qat(rd / "qat.pt")
    assert q.weight_quant == "lsq"
    code, err = run_cli(capsys, "--checkpoint", ck, "--kd-weight", 2, "--run-dir", rd, "--force")
    assert code == 2 and "distillation weight must be in [0, 1]" in err, err


# ---- issue 15: recipes, LSQ, BN re-estimation --------------------------------------------------


def test_recipe_json_round_trip_and_refusals():
    from micromix.errors import MicromixError
    from micromix.quant.recipe import DEFAULT_RECIPE, RECIPES, QATRecipe, recipe

    for name, r in RECIPES.items():
        back = QATRecipe.from_json(json.loads(json.dumps(r.to_json())))
        assert back == r, name
    assert DEFAULT_RECIPE in RECIPES
    new, kd = RECIPES["new"], RECIPES["kd"]
    # `new` is `kd` without the teacher; each ablation differs from `kd` in exactly its ingredient
    assert new == replace(kd, kd_weight=0.0) and kd.kd_weight > 0
    assert RECIPES["kd_no_lsq"] == replace(kd, weight_quant="mse") and kd.weight_quant == "lsq"
    assert RECIPES["kd_no_bn_reest"].bn_reestimate_batches == 0 < kd.bn_reestimate_batches
    assert (
        RECIPES["kd_old_schedule"].train_config(10).lr_steps
        == RECIPES["old"].train_config(10).lr_steps
    )
    assert recipe("new", kd_temperature=8.0).kd_temperature == 8.0
    for bad in ({"kd_weight": 1.5}, {"nope": 1}, {"schedule": "linear"}, {"weight_quant": "x"}):
        with pytest.raises(MicromixError):
            QATRecipe.from_json({**new.to_json(), **bad})
    with pytest.raises(MicromixError, match="unknown QAT recipe"):
        recipe("newest")


def test_bn_reestimation_moves_stats_to_the_quantized_activations():
    """calibrate leaves BN statistics of float activations; re-estimation with the quantizers on
    makes them the statistics of the quantized activations BN will see (and fold)."""
    from micromix.quant.prepare import calibrate, calibration_batches, prepare, reestimate_bn

    torch.manual_seed(0)
    model = SkipNet()
    g = trace(model, (1, 1, 8, 8))
    q = prepare(model, Policy.uniform(g, 2), g)
    ds = image_set(256)
    calibrate(q, ds, batches=2, batch_size=64)
    bn = q.net.bn2  # after the 2-bit activation of the depthwise output
    xs = calibration_batches(ds, 2, 64)
    # The statistics BN meets with the quantizers on, read without changing any (momentum 0):
    # BN normalizes with batch statistics while they are estimated.
    bns = [m for m in q.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.momentum = 0.0
    seen = []
    hook = bn.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    q.train()
    with torch.no_grad():
        for x in xs:
            q(x)
    hook.remove()
    for m in bns:
        m.momentum = 0.1
    target = torch.cat(seen).mean((0, 2, 3))
    before = (bn.running_mean - target).abs().max()
    reestimate_bn(q, xs)
    after = (bn.running_mean - target).abs().max()
    assert before > 1e-3 and after < 1e-5 < before


def test_finetune_new_recipe_reestimates_before_freezing(monkeypatch):
    import sys

    from micromix.quant.recipe import RECIPES

    ft = sys.modules["micromix.quant.finetune"]  # the package binds the name to the function

    model = SkipNet()
    g = trace(model, (1, 1, 8, 8))
    ds = image_set(128)
    r = replace(RECIPES["new"], augment=False, bn_reestimate_batches=2)
    calls = []
    real = ft.reestimate_bn
    monkeypatch.setattr(ft, "reestimate_bn", lambda m, xs: calls.append(len(xs)) or real(m, xs))
    run = FinetuneConfig(epochs=2, batch_size=32, max_batches=2, progress=False)
    q = finetune(model, Policy.uniform(g, 4), ds, r, run, graph=g)
    assert calls == [2]  # once, when BN freezes after epoch 1
    assert q.weight_quant == "lsq"
    assert any(n.endswith("wq.step_raw") for n, _ in q.named_parameters())


def test_lsq_trained_model_converts_with_agreement(tmp_path):
    """Learned step sizes change nothing downstream: the integer model of an LSQ-trained model
    (saved and loaded again) gives the fake-quant model's top-1 on >= 99.9 % of images."""
    from micromix.integer import convert
    from micromix.quant.finetune import save_qat
    from micromix.quant.recipe import RECIPES

    torch.manual_seed(0)
    model = SkipNet()
    g = trace(model, (1, 1, 8, 8))
    ds = image_set(256)
    r = replace(RECIPES["new"], lr=3e-3, kd_weight=0.0)
    run = FinetuneConfig(epochs=2, batch_size=32, max_batches=4, progress=False)
    q = finetune(model, Policy.uniform(g, 4, 8), ds, r, run, graph=g)
    start = replace(r, lr=1e-12)
    run0 = FinetuneConfig(epochs=1, max_batches=1, progress=False)
    q0 = finetune(model, Policy.uniform(g, 4, 8), ds, start, run0, graph=g)
    steps = {n: p for n, p in q.named_parameters() if n.endswith("wq.step_raw")}
    steps0 = dict(q0.named_parameters())
    assert any(not torch.allclose(p, steps0[n]) for n, p in steps.items())  # steps were learned
    save_qat(tmp_path / "q.pt", q)
    loaded, _ = load_qat(tmp_path / "q.pt", model=model)
    test = image_set(1000, seed=5)
    with torch.no_grad():
        fq = q(test.images.float() / 255).argmax(1).numpy()
        fq_loaded = loaded(test.images.float() / 255).argmax(1).numpy()
    yi = convert(loaded).run(test.images.numpy()).argmax(1)
    assert (fq == fq_loaded).all()
    assert (fq == yi).mean() >= 0.999


def test_config_json_records_the_thread_count(tmp_path):
    from micromix.rundir import open_run_dir

    was = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        rd = open_run_dir(tmp_path / "a", "finetune", {"x": 1})
        rd.close()
        assert json.loads((tmp_path / "a" / "config.json").read_text())["torch_threads"] == 1
        torch.set_num_threads(2)
        rd = open_run_dir(tmp_path / "b", "finetune", {"x": 1})
        rd.close()
        assert json.loads((tmp_path / "b" / "config.json").read_text())["torch_threads"] == 2
    finally:
        torch.set_num_threads(was)


def test_run_refuses_unknown_qat_recipe_before_any_stage(tmp_path, capsys):
    from micromix.pipeline import RunConfig
    from micromix.quant.recipe import DEFAULT_RECIPE

    assert RunConfig().qat_recipe == DEFAULT_RECIPE
    code = main(["run", "--qat-recipe", "newest", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unknown QAT recipe 'newest'" in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", ["new", "kd"])
def test_crash_after_an_epoch_then_resume_matches_uninterrupted(tmp_path, monkeypatch, name):
    """A run of the `new` / `kd` recipe that dies right after its first checkpoint and is
    resumed ends bit-identical to one that never stopped: the LSQ step sizes, the cosine
    schedule's position, the BN re-estimation (after the crash, before BN freezes) and the
    teacher's cached logits (rebuilt on resume) all come back the same."""
    import micromix.train as train_mod
    from micromix.quant.recipe import recipe

    torch.manual_seed(0)
    model = SkipNet()
    g = trace(model, (1, 1, 8, 8))
    pol = Policy.uniform(g, 4)
    ds = image_set(128)
    qr = replace(recipe(name), bn_reestimate_batches=2)
    run = FinetuneConfig(epochs=3, batch_size=32, seed=0, progress=False)
    ref = finetune(model, pol, ds, qr, run, graph=g)

    real_save, calls = train_mod.save_checkpoint, []

    def save_then_die(path, obj):
        real_save(path, obj)
        calls.append(obj["epoch"])
        raise KeyboardInterrupt  # the process is gone; the checkpoint is on disk

    ck = tmp_path / "ck.pt"
    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        finetune(model, pol, ds, qr, replace(run, checkpoint=ck), graph=g)
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    assert calls == [1]
    resumed = finetune(model, pol, ds, qr, replace(run, checkpoint=ck, resume=True), graph=g)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    steps = [k for k in ref.state_dict() if "step" in k or "scale" in k]
    assert steps, "the lsq recipe should have learned step sizes in its state"
    for k, v in ref.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
