"""Training loops shared by float training and QAT fine-tuning, with checkpoints and resume.

`fit` runs single-process or under torchrun (DistributedDataParallel); only rank 0 prints and
writes. A checkpoint after every epoch holds model, optimizer, epoch and RNG states, so
`FitRun(resume=True)` continues exactly where an interrupted run stopped.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from . import configs
from . import distributed as dist
from .configs import check_choice, check_int, check_number
from .data import ImageSet, Sampling, batches, num_batches
from .errors import CheckpointError, MicromixError
from .files import load_checkpoint, save_checkpoint
from .progress import Progress

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-5
    schedule: str = "cosine"  # cosine | step
    # step schedule: lr multiplied by each factor once `epoch >= at`, e.g. ((3, 0.5), (6, 0.1))
    lr_steps: tuple[tuple[int, float], ...] = ()
    warmup_epochs: float = 0.0
    grad_clip: float | None = None  # max global L2 norm of the gradient per step (None: off)
    label_smoothing: float = 0.0
    augment: bool = True
    freeze_bn_after: int | None = None  # epochs of BN statistics updates, then frozen
    max_batches: int | None = None  # cap per epoch (short fine-tunes in the search)
    seed: int = 0
    # Distillation (fit's `teacher`): loss = (1 - w) CE + w T^2 KL(teacher_T || student_T).
    kd_weight: float = 0.0
    kd_temperature: float = 1.0

    def __post_init__(self) -> None:
        # Refused when built, before any training: one sentence each.
        check_int("epochs", self.epochs, 0)
        check_int("batch_size", self.batch_size, 1)
        check_int("max_batches", self.max_batches, 1, optional=True)
        check_int("freeze_bn_after", self.freeze_bn_after, 0, optional=True)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_number("the learning rate", self.lr, 0.0)
        if self.lr == 0:
            raise MicromixError("the learning rate must be positive, got 0.")
        check_number("warmup_epochs", self.warmup_epochs, 0.0)
        check_number("kd_weight", self.kd_weight, 0.0, 1.0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Any) -> TrainConfig:
        steps = lambda v: tuple(tuple(x) for x in v)  # noqa: E731  (JSON has lists only)
        return configs.from_json(cls, d, "the training settings", lr_steps=steps)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_at(cfg: TrainConfig, epoch_float: float) -> float:
    """Learning rate at a fractional epoch."""
    if cfg.warmup_epochs and epoch_float < cfg.warmup_epochs:
        return cfg.lr * (epoch_float + 1e-3) / cfg.warmup_epochs
    if cfg.schedule == "cosine":
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(epoch_float / max(cfg.epochs, 1), 1.0)))
    lr = cfg.lr
    for at, factor in cfg.lr_steps:
        if epoch_float >= at:
            lr = cfg.lr * factor
    return lr


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on BN, biases and learned clips: decaying them only hurts.
    decay, no_decay = [], []
    scaled: dict[float, list[nn.Parameter]] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        # Adam divides any gradient scale out, so a parameter that asks for one (LSQ's step
        # sizes: `lr_scale` = 1 / sqrt(N * Q_p)) gets it as a scale of its learning rate.
        s = getattr(p, "lr_scale", None) if cfg.optimizer == "adam" else None
        if s is not None:
            scaled.setdefault(float(s), []).append(p)
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups += [
        {"params": ps, "weight_decay": 0.0, "lr": cfg.lr * s, "lr_scale": s}
        for s, ps in scaled.items()
    ]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {cfg.optimizer}")


def distill_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    weight: float,
    temperature: float,
    ce: nn.Module,
) -> torch.Tensor:
    """(1 - weight) * CE(logits, labels) + weight * T^2 * KL(softmax(t / T) || softmax(s / T)).

    T^2 keeps the soft term's gradient on the scale of the hard one (Hinton et al. 2015);
    weight 0 (or no teacher) is the plain cross-entropy.
    """
    hard = ce(logits, labels)
    if teacher_logits is None or weight == 0:
        return hard
    t = temperature
    soft = nn.functional.kl_div(
        nn.functional.log_softmax(logits / t, dim=1),
        nn.functional.log_softmax(teacher_logits / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1.0 - weight) * hard + (weight * t * t) * soft


def teacher_forward(teacher: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The teacher's logits for `x`, outside autograd.

    inference_mode skips autograd's bookkeeping (18.6 vs 29-38 ms under no_grad for a batch of
    128 on one CPU thread, results/qat_overhead.md); the clone makes the logits an ordinary
    tensor that the loss may use."""
    with torch.inference_mode():
        out = teacher(x)
    return out.clone()


def freeze_bn(model: nn.Module) -> None:
    """Use running statistics from now on (BN becomes a fixed per-channel affine map)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


@torch.no_grad()
def evaluate(
    model: nn.Module, ds: ImageSet, *, batch_size: int = 100, device: torch.device | str = "cpu"
) -> float:
    """Top-1 accuracy in percent (summed over ranks under torchrun)."""
    rank, world = dist.world()
    was = model.training
    model.eval()
    correct = total = 0
    for x, y in batches(ds, batch_size, Sampling(rank=rank, world_size=world), device=device):
        correct += (model(x).argmax(1) == y).sum().item()
        total += len(y)
    model.train(was)
    correct, total = dist.all_reduce_sum([correct, total], torch.device(device))
    return 100.0 * correct / max(total, 1)


@dataclass(frozen=True)
class FitRun:
    """Where and how `fit` runs, as opposed to what it computes (TrainConfig).

    `checkpoint` is written (rank 0) after each epoch; with `resume` it is read first.
    `until_epoch` stops early without changing the schedule (a staged or interrupted run).
    """

    device: str = "cpu"
    checkpoint: str | None = None
    resume: bool = False
    progress: bool = True
    desc: str = "train"  # the progress lines' label
    until_epoch: int | None = None

    def __post_init__(self) -> None:
        # torch.device and Path are accepted; the stored form is a string.
        object.__setattr__(self, "device", str(self.device))
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", str(self.checkpoint))
        check_int("until_epoch", self.until_epoch, 1, optional=True)

    def to_json(self) -> dict[str, Any]:
        return configs.to_json(self)

    @classmethod
    def from_json(cls, d: Any) -> FitRun:
        return configs.from_json(cls, d, "the fit run settings")


@dataclass(frozen=True)
class FitHooks:
    """Code `fit` calls (never data: not stored). `extra_state()` is merged into each
    checkpoint; `before_bn_freeze(model)` runs once, right before BN statistics freeze."""

    extra_state: Callable[[], dict[str, Any]] | None = None
    before_bn_freeze: Callable[[nn.Module], None] | None = None


@dataclass
class FitState:
    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)


def fit(
    model: nn.Module,
    train: ImageSet,
    cfg: TrainConfig,
    run: FitRun | None = None,
    *,
    eval_set: ImageSet | None = None,
    teacher: nn.Module | None = None,
    hooks: FitHooks | None = None,
) -> FitState:
    """Train `model` in place for cfg.epochs epochs, as `run` says; returns the per-epoch
    history, with the accuracy on `eval_set` after each epoch when given.

    Under torchrun the model is wrapped in DistributedDataParallel and each rank sees a shard.
    `teacher` (eval mode, no gradients) is distilled with cfg.kd_weight / cfg.kd_temperature;
    without augmentation its logits are fixed per image: computed once, the first time.
    """
    run, hooks = run or FitRun(), hooks or FitHooks()
    device, checkpoint = torch.device(run.device), run.checkpoint
    rank, world = dist.world()
    model.to(device)
    opt = make_optimizer(model, cfg)
    seed_everything(cfg.seed)
    state, saved_logits = FitState(), None
    if run.resume and checkpoint is not None and Path(checkpoint).exists():
        state, saved_logits = _load_fit_checkpoint(checkpoint, model, opt, device)
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    loop = _EpochRun(
        model=model,
        net=net,
        opt=opt,
        cfg=cfg,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing),
        teacher=teacher if cfg.kd_weight else None,
        data=train,
        device=device,
    )
    if loop.teacher is not None and not cfg.augment:
        loop.cache_teacher(train, saved_logits)
    per_epoch = num_batches(len(train), cfg.batch_size, world, drop_last=True)
    if cfg.max_batches:
        per_epoch = min(per_epoch, cfg.max_batches)
    if per_epoch < 1 and state.epoch < cfg.epochs:  # drop_last: too few images train nothing
        raise MicromixError(
            f"{len(train)} training images make no batch of {cfg.batch_size}"
            + (f" on each of {world} processes" if world > 1 else "")
            + "; lower --batch-size or use more images."
        )
    talk, desc, until_epoch = run.progress and rank == 0, run.desc, run.until_epoch
    # One line per epoch (elapsed, time left) on a terminal and in a log; batches as a bar
    # on a terminal only.
    epochs = Progress(cfg.epochs, f"{desc} epoch", enabled=talk, bar=False, initial=state.epoch)
    for epoch in range(state.epoch, min(cfg.epochs, until_epoch or cfg.epochs)):
        net.train()
        if cfg.freeze_bn_after is not None and epoch >= cfg.freeze_bn_after:
            if epoch == cfg.freeze_bn_after and hooks.before_bn_freeze is not None:
                hooks.before_bn_freeze(model)
            freeze_bn(net)
        bar = Progress(per_epoch, f"{desc} {epoch + 1}/{cfg.epochs}", enabled=talk, lines=False)
        row = loop.epoch(epoch, per_epoch, bar, rank, world)
        bar.close()
        if eval_set is not None:
            row["eval_acc"] = evaluate(model, eval_set, device=device)
        state.history.append(row)
        state.epoch = epoch + 1
        extra = f", eval {row['eval_acc']:.2f}%" if "eval_acc" in row else ""
        epochs.update(
            1,
            f"loss {row['loss']:.4f}, train {row['train_acc']:.2f}%{extra}, {row['seconds']:.0f}s",
        )
        if checkpoint is not None and rank == 0:
            ck = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": state.epoch,
                "history": state.history,
                "rng": {"torch": torch.get_rng_state()},
                "config": cfg.to_json(),
            }
            if loop.cached is not None:
                ck["teacher_logits"] = loop.cached.cpu()
            if hooks.extra_state is not None:
                ck.update(hooks.extra_state())
            save_checkpoint(checkpoint, ck)
        dist.barrier()
    return state


def _load_fit_checkpoint(
    checkpoint: str | Path, model: nn.Module, opt: torch.optim.Optimizer, device: torch.device
) -> tuple[FitState, torch.Tensor | None]:
    """The epoch, history, weights, optimizer and RNG of a fit checkpoint (and its cached
    teacher logits), loaded into `model` and `opt`."""
    ck = load_checkpoint(checkpoint, map_location=str(device))
    try:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
    except (KeyError, RuntimeError, ValueError):
        raise CheckpointError(
            f"checkpoint {checkpoint} does not match this model or settings."
        ) from None
    torch.set_rng_state(ck["rng"]["torch"])
    return FitState(ck["epoch"], ck["history"]), ck.get("teacher_logits")


@dataclass
class _EpochRun:
    """One training epoch's loop: batches, the learning-rate schedule, distillation (with the
    teacher's logits cached per image when nothing is augmented), the optimizer step."""

    model: nn.Module  # the model being trained; `net` runs it (DDP under torchrun)
    net: nn.Module
    opt: torch.optim.Optimizer
    cfg: TrainConfig
    loss_fn: nn.Module
    teacher: nn.Module | None
    data: ImageSet
    device: torch.device
    cached: torch.Tensor | None = None
    labels: torch.Tensor | None = None

    def cache_teacher(self, train: ImageSet, saved: torch.Tensor | None) -> None:
        """Without augmentation an image's teacher logits never change: each is computed the
        first time its image comes up (NaN until then) and reused in later epochs (index
        labels pick them)."""
        self.cached = torch.full((len(train), len(train.classes)), float("nan"), device=self.device)
        if saved is not None:
            # The checkpoint's logits, not recomputed ones: the teacher's float result
            # depends on which images share its batch, and a resumed run batches differently.
            self.cached.copy_(saved)
        self.data = ImageSet(train.images, torch.arange(len(train)), train.classes)
        self.labels = train.labels.to(self.device)

    def epoch(self, epoch: int, per_epoch: int, bar: Progress, rank: int, world: int) -> dict:
        cfg, opt = self.cfg, self.opt
        t0, seen, steps, loss_sum, correct = time.time(), 0, 0, 0.0, 0
        order = Sampling(True, cfg.seed, epoch, cfg.augment, rank, world, drop_last=True)
        it = batches(self.data, cfg.batch_size, order, device=self.device)
        for i, (x, y) in enumerate(it):
            if i >= per_epoch:
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, epoch + i / per_epoch) * g.get("lr_scale", 1.0)
            soft, y = self._soft_targets(x, y)
            out = self.net(x)
            loss = distill_loss(out, y, soft, cfg.kd_weight, cfg.kd_temperature, self.loss_fn)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            opt.step()
            seen, steps = seen + len(y), steps + 1
            loss_sum += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            bar.update(1, f"loss={loss_sum / seen:.3f}, acc={100 * correct / seen:.1f}")
        return {
            "epoch": epoch + 1,
            "steps": steps,
            "loss": loss_sum / max(seen, 1),
            "train_acc": 100 * correct / max(seen, 1),
            "seconds": time.time() - t0,
        }

    def _soft_targets(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The teacher's logits for the batch (None without a teacher) and the true labels."""
        if self.cached is not None:
            fresh = self.cached[y].isnan().any(1)
            if bool(fresh.any()):
                self.cached[y[fresh]] = teacher_forward(self.teacher, x[fresh])
            return self.cached[y], self.labels[y]
        if self.teacher is not None:
            return teacher_forward(self.teacher, x), y
        return None, y


CHANCE_LOSS_TOLERANCE = 0.03  # relative distance of the loss from ln(classes) that is "at chance"
# Fewer optimizer steps than this in the epoch judge nothing: a tiny data set's first epoch
# (a few batches) is at chance because it has barely started, and its epochs cost little.
CHANCE_MIN_STEPS = 100


def check_not_at_chance(row: dict[str, float], classes: int) -> None:
    """Refuse a model whose epoch `row` (fit's history) is at chance: loss within 3 % of
    ln(classes) and training accuracy below twice 1/classes, after at least CHANCE_MIN_STEPS
    optimizer steps. More epochs do not help such a
    model (issue 25: 20 epochs at loss 2.3026 = ln 10), so the run stops here, saying why."""
    chance = math.log(classes)
    if row.get("steps", CHANCE_MIN_STEPS) < CHANCE_MIN_STEPS:
        return
    if abs(row["loss"] - chance) > CHANCE_LOSS_TOLERANCE * chance:
        return
    if row["train_acc"] >= 2 * 100.0 / classes:
        return
    raise MicromixError(
        f"the float model is at chance after epoch {int(row['epoch'])} (loss {row['loss']:.4f}, "
        f"ln {classes} = {chance:.4f}; train accuracy {row['train_acc']:.1f} %), so this training "
        "recipe does not train this network: train it with `micromix train` at a smaller --lr "
        "(e.g. --lr 0.01) and pass the model file with --checkpoint."
    )


def fit_checked(
    model: nn.Module, train: ImageSet, cfg: TrainConfig, run: FitRun, **kw: Any
) -> FitState:
    """`fit` (same arguments; `run` names a checkpoint) that stops after the first epoch if the
    model is still at chance there (`check_not_at_chance`). It runs as two `fit` calls joined by
    the checkpoint, which resumes exactly, so a model that trains ends bit-identical to one
    plain `fit`."""
    if run.checkpoint is None:
        raise ValueError("fit_checked resumes from its checkpoint: FitRun.checkpoint is needed.")
    _, world = dist.world()
    state = fit(model, train, cfg, replace(run, until_epoch=1), **kw)
    first = dict(state.history[0])
    if world > 1:  # every rank decides on the same (summed) figures
        loss, acc = dist.all_reduce_sum(
            [first["loss"], first["train_acc"]], next(model.parameters()).device
        )
        first.update(loss=loss / world, train_acc=acc / world)
    check_not_at_chance(first, len(train.classes))
    if cfg.epochs <= 1:
        return state
    return fit(model, train, cfg, replace(run, resume=True), **kw)


# The recipes `train_float` tries, in order of preference: micromix's SGD (measured best on the
# BN zoo, results/float_training.md) and Adam 1e-3, which trains BN-free nets that SGD at 0.1
# leaves at chance (issue 25, results/float_recipe.md).
PROBE_ADAM = {"optimizer": "adam", "lr": 1e-3}
PROBE_BATCHES = 40
PROBE_KEEP = 0.5  # an earlier recipe is kept while its loss drop is >= half the best drop


def probe_recipe(
    model: nn.Module, train: ImageSet, cfg: TrainConfig, *, device: torch.device | str = "cpu"
) -> tuple[TrainConfig, list[float]]:
    """Train a copy of `model` for PROBE_BATCHES batches with `cfg` (constant lr) and with Adam
    1e-3; return the first (cfg first) whose mean loss fell from chance, ln(classes), by at
    least PROBE_KEEP of the largest fall, and both probe losses. A loss that falls is what
    tells them apart, not an lr range test: in 80 batches SGD at 0.1, 0.03 ... 0.001 all sat
    at ln 10 on the BN-free SqueezeNet, while Adam's loss already fell."""
    tries = [cfg, replace(cfg, **PROBE_ADAM)]
    losses = []
    for c in tries:
        probe = replace(
            c, epochs=1, max_batches=PROBE_BATCHES, schedule="step", lr_steps=(), warmup_epochs=0.0
        )
        state = fit(copy.deepcopy(model), train, probe, FitRun(device=device, progress=False))
        losses.append(state.history[0]["loss"])
    _, world = dist.world()
    if world > 1:  # every rank chooses from the same (mean) losses
        losses = [v / world for v in dist.all_reduce_sum(losses, torch.device(device))]
    chance = math.log(len(train.classes))
    drops = [chance - v if math.isfinite(v) else -math.inf for v in losses]
    best = max(drops)
    if best <= 0:  # nothing learns yet: keep the preferred recipe (fit_checked judges it)
        return cfg, losses
    return next(c for c, d in zip(tries, drops) if d >= PROBE_KEEP * best), losses


def train_float(
    model: nn.Module, train: ImageSet, cfg: TrainConfig, run: FitRun, **kw: Any
) -> FitState:
    """Float training as `micromix run` does it: `cfg` or Adam, as `probe_recipe` chooses (on
    resume, the checkpoint's choice), then `fit_checked` (stops a model still at chance after
    epoch 1)."""
    device = run.device
    if run.resume and run.checkpoint is not None and Path(run.checkpoint).exists():
        saved = load_checkpoint(run.checkpoint)["config"]
        cfg = replace(cfg, optimizer=saved["optimizer"], lr=float(saved["lr"]))
    else:
        cfg, losses = probe_recipe(model, train, cfg, device=device)
        if run.progress and dist.world()[0] == 0:
            tried = ", ".join(f"{v:.3f}" for v in losses)
            print(
                f"float training: {cfg.optimizer} lr {cfg.lr:g} (probe losses {tried})", flush=True
            )
    return fit_checked(model, train, cfg, run, **kw)


def float_recipe(epochs: int, seed: int = 0, batch_size: int = 128) -> TrainConfig:
    return replace(TrainConfig(), epochs=epochs, seed=seed, batch_size=batch_size)


MODEL_KIND = "micromix-model"


def save_model(path: str | Path, model: nn.Module, *, graph: Any = None, **meta: Any) -> None:
    """A self-describing model file: the model spec (plain JSON data that rebuilds the
    architecture: zoo name, or file/module + NAME + args + input shape), the weights, and the
    traced Graph as data (`graph`, or traced here), which `micromix memory` and `report` read
    without the model code."""
    from .graph import trace
    from .models import input_shape_of, spec_of

    spec = spec_of(model)
    cfg = getattr(model, "micromix_config", None)
    if graph is None:
        try:
            graph = trace(model) if input_shape_of(model) is not None else None
        except MicromixError:  # a model micromix cannot quantize may still be trained and saved
            graph = None
    graph = None if graph is None else graph.to_json()
    save_checkpoint(
        path,
        {
            "kind": MODEL_KIND,
            "model_spec": None if spec is None else spec.to_json(),
            "model_config": cfg,
            "graph": graph,
            "state_dict": model.state_dict(),
            **meta,
        },
    )


def load_model(
    path: str | Path, map_location: str = "cpu", *, named: Any = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by `save_model` (e.g. `micromix train`'s model.pt): zoo models
    from their config; any other model only when `named` (the ModelSpec of the user's --model)
    names the same code as the file (`models.spec.authorize`): a file never picks the code."""
    from .models import ModelSpec, authorize, build, create_from_config

    ck = load_checkpoint(path, map_location=map_location)
    if ck.get("kind") != MODEL_KIND or not (ck.get("model_spec") or ck.get("model_config")):
        raise CheckpointError(
            f"{path} is not a micromix model file (expected one written by `micromix train`); "
            "pass it as --checkpoint together with --model to load plain weights."
        )
    if ck.get("model_spec"):
        model = build(authorize(ModelSpec.from_json(ck["model_spec"]), named, str(path)))
    else:
        model = create_from_config(ck["model_config"])
    load_weights(model, ck["state_dict"], source=str(path))
    return model, ck


def load_float(checkpoint: str | Path | None, spec: Any = None) -> nn.Module:
    """A float model: a micromix model file (its own architecture; code outside the zoo only
    when `spec` names it), plain weights (any layout `state_dict_of` knows) into the model
    `spec` describes, or a fresh `spec` model."""
    from .models import build

    if checkpoint is None:
        if spec is None:
            raise CheckpointError("no checkpoint and no model spec: nothing to build.")
        return build(spec)
    ck = load_checkpoint(checkpoint)
    if is_model_file(ck):
        return load_model(checkpoint, named=spec)[0]
    if spec is None:
        raise CheckpointError(
            f"{checkpoint} holds plain weights, not a micromix model file; give --model "
            "(and --model-args / --input-shape) for the architecture they belong to."
        )
    model = build(spec)
    load_weights(model, ck, source=str(checkpoint))
    return model


def is_model_file(ck: dict[str, Any]) -> bool:
    return ck.get("kind") == MODEL_KIND


def state_dict_of(ck: dict[str, Any], source: str = "the checkpoint") -> dict[str, torch.Tensor]:
    """The weights inside the usual checkpoint layouts: micromix files, a plain state_dict, or
    a training-loop dict {"state_dict": ...} / {"model": ...}; a DDP `module.` prefix is
    removed."""
    state: Any = ck
    for key in ("state_dict", "model"):
        if isinstance(ck.get(key), dict):
            state = ck[key]
            break
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise CheckpointError(
            f"{source} holds no state_dict (expected tensors by name, or a dict with "
            "'state_dict' or 'model')."
        )
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, ck: dict[str, Any], source: str = "the checkpoint") -> None:
    """Load the weights of `ck` (any layout `state_dict_of` knows) into `model`; a mismatch
    names the first missing or unexpected key and the shapes."""
    state = state_dict_of(ck, source)
    own = model.state_dict()
    # Older or foreign files may lack BN's counter; it does not change any output.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing:
        raise CheckpointError(
            f"{source} does not match the model: it lacks {missing[0]} (shape "
            f"{tuple(own[missing[0]].shape)}){_and_more(missing)}."
        )
    if unexpected:
        raise CheckpointError(
            f"{source} does not match the model: it has {unexpected[0]} (shape "
            f"{tuple(state[unexpected[0]].shape)}) that the model lacks{_and_more(unexpected)}."
        )
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(
                f"{source} does not match the model: {k} has shape {tuple(v.shape)} in the "
                f"checkpoint but {tuple(own[k].shape)} in the model."
            )
    model.load_state_dict(state, strict=False)


def _and_more(keys: list[str]) -> str:
    return f" and {len(keys) - 1} more" if len(keys) > 1 else ""
