from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from micromix.data import ImageSet
from micromix.errors import CheckpointError
from micromix.models import create
from micromix.train import FitRun, TrainConfig, evaluate, fit, load_model, lr_at, save_model


def _toy(n: int = 256, seed: int = 0) -> ImageSet:
    """Two classes told apart by brightness: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    base = torch.randint(0, 100, (n, 1, 8, 8), generator=g)
    images = (base + 120 * labels.view(-1, 1, 1, 1)).clamp(0, 255).to(torch.uint8)
    return ImageSet(images, labels, ("dark", "bright"))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


CFG = TrainConfig(epochs=3, batch_size=32, lr=0.05, augment=False)
QUIET = FitRun(progress=False)


def test_fit_learns_and_records_history():
    ds = _toy()
    model = _net()
    before = evaluate(model, ds)
    state = fit(model, ds, CFG, QUIET)
    assert state.epoch == 3 and len(state.history) == 3
    assert state.history[-1]["loss"] < state.history[0]["loss"]
    assert evaluate(model, ds) > max(before, 80.0)


def test_resume_matches_uninterrupted_run(tmp_path):
    ds = _toy()
    full = _net()
    fit(full, ds, CFG, QUIET)
    part = _net()
    ck = tmp_path / "ck.pt"
    fit(
        part, ds, CFG, FitRun(checkpoint=ck, progress=False, until_epoch=1)
    )  # "killed" after epoch 1
    # A new process would rebuild the model from scratch and resume from the file.
    resumed = _net()
    state = fit(resumed, ds, CFG, FitRun(checkpoint=ck, resume=True, progress=False))
    assert state.epoch == 3
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_same_seed_same_weights():
    ds = _toy()
    a, b = _net(), _net()
    fit(a, ds, CFG, QUIET)
    fit(b, ds, CFG, QUIET)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_lr_schedules():
    cos = TrainConfig(epochs=10, lr=0.1)
    assert lr_at(cos, 0) == 0.1 and abs(lr_at(cos, 5) - 0.05) < 1e-12 and lr_at(cos, 10) < 1e-12
    step = TrainConfig(epochs=10, lr=1e-4, schedule="step", lr_steps=((4, 0.5), (8, 0.1)))
    assert [lr_at(step, e) for e in (0, 4, 8)] == [1e-4, 5e-5, 1e-4 * 0.1]
    assert TrainConfig.from_json(step.to_json()) == step


def test_model_file_round_trip_and_corruption(tmp_path):
    m = create("mobilenet_v1", width=0.25, resolution=28, in_channels=1, num_classes=10)
    save_model(tmp_path / "m.pt", m, metrics={"test_acc": 1.0})
    m2, meta = load_model(tmp_path / "m.pt")
    assert meta["metrics"]["test_acc"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    for path in (bad, tmp_path / "missing.pt"):
        try:
            load_model(path)
        except CheckpointError as e:
            assert str(path) in str(e) and "\n" not in str(e)
        else:
            raise AssertionError("expected CheckpointError")


# ---- distillation ------------------------------------------------------------------------------


def test_distill_loss_is_cross_entropy_at_weight_zero_and_pulls_toward_teacher():
    from micromix.train import distill_loss

    torch.manual_seed(0)
    ce = nn.CrossEntropyLoss()
    s = torch.randn(8, 5)
    t = torch.randn(8, 5) * 3
    y = torch.randint(0, 5, (8,))
    assert torch.equal(distill_loss(s, y, t, 0.0, 4.0, ce), ce(s, y))
    assert torch.equal(distill_loss(s, y, None, 0.7, 4.0, ce), ce(s, y))
    # weight 1, T: the loss is T^2 KL, zero where the student equals the teacher
    assert distill_loss(t, y, t, 1.0, 2.0, ce).abs() < 1e-6
    x = s.clone().requires_grad_(True)
    loss = distill_loss(x, y, t, 1.0, 2.0, ce)
    loss.backward()
    p_s = torch.softmax(s / 2, 1)
    p_t = torch.softmax(t / 2, 1)
    kl = (p_t * (p_t.log() - p_s.log())).sum(1).mean() * 4
    torch.testing.assert_close(loss, kl)
    # a gradient step moves the student's distribution toward the teacher's
    moved = torch.softmax((s - 0.5 * x.grad) / 2, 1)
    assert (moved - p_t).abs().sum() < (p_s - p_t).abs().sum()


class _Counting(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.images = net, 0

    def forward(self, x):
        self.images += len(x)
        return self.net(x)


def test_fit_distills_and_caches_teacher_logits_without_augmentation():
    """Without augmentation each image's teacher logits are computed once over all epochs; a
    teacher changes the result, and kd_weight 0 ignores it."""
    torch.manual_seed(0)
    ds = _toy(128)
    teacher_net = create("mobilenet_v1", width=0.1, resolution=8, in_channels=1, num_classes=2)
    teacher = _Counting(teacher_net.eval())
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, augment=False, kd_weight=0.8)

    def run(c, t):
        torch.manual_seed(1)
        m = create("mobilenet_v1", width=0.1, resolution=8, in_channels=1, num_classes=2)
        fit(m, ds, c, QUIET, teacher=t)
        return m

    kd = run(cfg, teacher)
    assert teacher.images == 128  # 3 epochs of 128 images, each image's logits once
    plain = run(TrainConfig(**{**cfg.to_json(), "kd_weight": 0.0}), teacher)
    assert teacher.images == 128  # not called at weight 0
    assert not torch.equal(kd.classifier.weight, plain.classifier.weight)
    from dataclasses import replace

    teacher.images = 0
    run(replace(cfg, augment=True, epochs=1), teacher)
    assert teacher.images == 128  # augmented: every batch afresh (one epoch here)


def test_adam_scales_the_learning_rate_of_parameters_that_ask():
    """LSQ's gradient scale is divided out by Adam; make_optimizer puts it into the lr."""
    from dataclasses import replace

    from micromix.train import make_optimizer

    m = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    m[1].bias.lr_scale = 0.25
    cfg = TrainConfig(optimizer="adam", lr=1e-3, weight_decay=1e-4)
    opt = make_optimizer(m, cfg)
    (group,) = [g for g in opt.param_groups if any(p is m[1].bias for p in g["params"])]
    assert group["lr"] == 1e-3 * 0.25 and group["weight_decay"] == 0.0
    assert len(group["params"]) == 1
    sgd = make_optimizer(m, replace(cfg, optimizer="sgd"))
    assert all(g["lr"] == 1e-3 for g in sgd.param_groups)  # SGD keeps the gradient's scale
    # fit keeps the ratio while the schedule moves the learning rate
    ds = _toy(64)
    seen = []
    real_step = torch.optim.Adam.step

    def spy(self, *a, **k):
        seen.append([g["lr"] for g in self.param_groups])
        return real_step(self, *a, **k)

    torch.optim.Adam.step = spy
    try:
        net = create("mobilenet_v1", width=0.1, resolution=8, in_channels=1, num_classes=2)
        net.classifier.bias.lr_scale = 0.5
        fit(net, ds, replace(cfg, epochs=1, batch_size=16, schedule="cosine"), QUIET)
    finally:
        torch.optim.Adam.step = real_step
    assert len(seen) == 4 and seen[1][0] < seen[0][0]
    assert all(abs(lrs[-1] - 0.5 * lrs[0]) < 1e-15 for lrs in seen)


def _dead_net() -> nn.Module:
    """Logits are a ReLU of a strongly negative pre-activation: constant 0, nothing to learn
    (the SqueezeNet failure of issue 25 in miniature)."""
    net = _net()
    with torch.no_grad():
        net[5].weight.zero_()
        net[5].bias.fill_(-100.0)
    return nn.Sequential(net, nn.ReLU())


def test_fit_checked_stops_a_model_at_chance_after_one_epoch(tmp_path):
    import pytest

    from micromix.errors import MicromixError
    from micromix.files import load_checkpoint
    from micromix.train import fit_checked

    ck = tmp_path / "ck.pt"
    with pytest.raises(MicromixError, match=r"at chance after epoch 1.*--lr.*--checkpoint"):
        fit_checked(
            _dead_net(), _toy(3300), CFG, FitRun(checkpoint=ck, progress=False)
        )  # 103 steps
    assert load_checkpoint(ck)["epoch"] == 1  # no second epoch was spent


def test_fit_checked_is_plain_fit_for_a_model_that_trains(tmp_path):
    """The check splits training at epoch 1 through the checkpoint; the result is bit-identical
    to one uninterrupted fit."""
    from micromix.train import fit_checked

    ref, checked = _net(), _net()
    want = fit(ref, _toy(), CFG, QUIET)
    got = fit_checked(checked, _toy(), CFG, FitRun(checkpoint=tmp_path / "ck.pt", progress=False))
    assert [h["epoch"] for h in got.history] == [1, 2, 3]
    assert [h["loss"] for h in got.history] == [h["loss"] for h in want.history]
    for k, v in ref.state_dict().items():
        assert torch.equal(v, checked.state_dict()[k]), k


def test_chance_is_judged_by_loss_and_accuracy():
    import math

    import pytest

    from micromix.errors import MicromixError
    from micromix.train import check_not_at_chance

    at = {"epoch": 1, "steps": 390, "loss": math.log(10) * 1.01, "train_acc": 10.3}
    with pytest.raises(MicromixError):
        check_not_at_chance(at, 10)
    check_not_at_chance({**at, "loss": math.log(10) * 0.9}, 10)  # learning, slowly
    check_not_at_chance({**at, "train_acc": 35.0}, 10)  # calibrated but right a third of the time
    check_not_at_chance(at, 2)  # ln 10 is no chance level for two classes
    check_not_at_chance({**at, "steps": 8}, 10)  # 8 steps say nothing yet


def test_grad_clip_bounds_every_update():
    """With clip c, SGD's first step (Nesterov, momentum m) moves the parameters by at most
    lr * (1 + m) * c; without the clip it moves them further."""
    cfg = TrainConfig(
        epochs=1,
        batch_size=32,
        lr=0.5,
        weight_decay=0.0,
        schedule="step",
        augment=False,
        grad_clip=0.01,
        max_batches=1,
    )
    free = _net()
    before = torch.cat([p.detach().reshape(-1).clone() for p in free.parameters()])
    fit(free, _toy(), replace(cfg, grad_clip=None), QUIET)
    moved = torch.cat([p.detach().reshape(-1) for p in free.parameters()]) - before
    assert moved.norm() > 0.5 * 1.9 * 0.01
    model = _net()
    before = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    fit(model, _toy(), cfg, QUIET)
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert 0 < (after - before).norm() <= 0.5 * 1.9 * 0.01 + 1e-6


def _bn_free_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


def test_probe_recipe_turns_to_adam_where_sgd_does_not_train():
    """At a peak lr of 5, SGD leaves a BN-free net where it started; Adam 1e-3 lowers its loss
    in the same batches, so the probe picks Adam. The model it probes is left untouched."""
    import math

    from micromix.train import probe_recipe

    model = _bn_free_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=3, batch_size=32, lr=5.0, augment=False)
    chosen, (sgd, adam) = probe_recipe(model, _toy(1280), cfg)
    assert (chosen.optimizer, chosen.lr) == ("adam", 1e-3)
    assert adam < math.log(2) and not sgd < adam  # NaN or higher
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_probe_recipe_keeps_sgd_where_it_trains():
    from micromix.train import probe_recipe

    chosen, (sgd, adam) = probe_recipe(_net(), _toy(1280), CFG)
    assert chosen == CFG and sgd < adam


def test_train_float_resumes_with_the_recipe_it_chose(tmp_path, monkeypatch):
    import micromix.train as train_mod

    cfg = TrainConfig(epochs=2, batch_size=32, lr=5.0, augment=False)
    ck = tmp_path / "ck.pt"
    data = _toy(4000)
    first = train_mod.train_float(_bn_free_net(), data, cfg, FitRun(checkpoint=ck, progress=False))
    assert train_mod.load_checkpoint(ck)["config"]["optimizer"] == "adam"

    def no_probe(*a, **k):
        raise AssertionError("a resumed run must not probe again")

    monkeypatch.setattr(train_mod, "probe_recipe", no_probe)
    again = train_mod.train_float(
        _bn_free_net(), data, cfg, FitRun(checkpoint=ck, resume=True, progress=False)
    )
    assert again.history == first.history


def test_a_redirected_fit_logs_one_line_per_epoch_with_time_left(capsys):
    # capsys's streams are not terminals, as in CI or under nohup: no bar redraws
    cfg = TrainConfig(epochs=4, batch_size=8, lr=0.05, augment=False)
    fit(_net(), _toy(), cfg, FitRun(progress=True, desc="qat"))
    cap = capsys.readouterr()
    lines = cap.out.splitlines()
    assert "\r" not in cap.err + cap.out
    assert len(lines) == cfg.epochs  # 32 batches per epoch, one line per epoch
    assert [line.split(":")[0] for line in lines] == [f"qat epoch {i}/4" for i in range(1, 5)]
    assert all("left" in line for line in lines[:-1]) and "elapsed" in lines[-1]
