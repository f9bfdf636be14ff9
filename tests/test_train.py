from __future__ import annotations

import torch
import torch.nn as nn

from micromix.data import ImageSet
from micromix.errors import CheckpointError
from micromix.models import create
from micromix.train import TrainConfig, evaluate, fit, load_model, lr_at, save_model


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


def test_fit_learns_and_records_history():
    ds = _toy()
    model = _net()
    before = evaluate(model, ds)
    state = fit(model, ds, CFG, progress=False)
    assert state.epoch == 3 and len(state.history) == 3
    assert state.history[-1]["loss"] < state.history[0]["loss"]
    assert evaluate(model, ds) > max(before, 80.0)


def test_resume_matches_uninterrupted_run(tmp_path):
    ds = _toy()
    full = _net()
    fit(full, ds, CFG, progress=False)
    part = _net()
    ck = tmp_path / "ck.pt"
    fit(part, ds, CFG, checkpoint=ck, progress=False, until_epoch=1)  # "killed" after epoch 1
    # A new process would rebuild the model from scratch and resume from the file.
    resumed = _net()
    state = fit(resumed, ds, CFG, checkpoint=ck, resume=True, progress=False)
    assert state.epoch == 3
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_same_seed_same_weights():
    ds = _toy()
    a, b = _net(), _net()
    fit(a, ds, CFG, progress=False)
    fit(b, ds, CFG, progress=False)
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
