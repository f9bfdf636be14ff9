"""QAT fine-tuning (prepare + calibrate + train.fit) and the self-describing QAT checkpoint."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .. import configs
from ..configs import check_choice, check_int
from ..data import ImageSet
from ..errors import CheckpointError, MicromixError
from ..files import load_checkpoint, save_checkpoint
from ..graph import Graph, scales_of
from ..models.spec import attach_spec, attached_spec, spec_of
from ..numerics.params import qparams_to_data
from ..policy import Policy
from ..train import FitHooks, FitRun, TrainConfig, fit
from .fakequant import DEFAULT_WEIGHT_RANGE, WEIGHT_QUANTS, WEIGHT_RANGES
from .prepare import (
    QATModel,
    calibrate,
    calibration_batches,
    prepare,
    reestimate_bn,
    repair_dead_channels,
)
from .recipe import DEFAULT_RECIPE, QAT_EPOCHS, QATRecipe
from .recipe import recipe as named_recipe

QAT_KIND = "micromix-qat"


@dataclass(frozen=True)
class FinetuneConfig:
    """One QAT fine-tune's settings that its recipe does not hold (configuration is data:
    frozen, checked when built, JSON round trip). `batch_size` None: the recipe's."""

    epochs: int = QAT_EPOCHS
    batch_size: int | None = None
    max_batches: int | None = None  # cap per epoch (the search's short fine-tunes)
    seed: int = 0
    weight_range: str = DEFAULT_WEIGHT_RANGE
    learn_weight_clip: bool = False
    calib_batches: int = 4  # batches that calibrate the activation clips before training
    device: str = "cpu"
    checkpoint: str | None = None  # written after each epoch (rank 0); read first on resume
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 0)
        check_int("batch_size", self.batch_size, 1, optional=True)
        check_int("max_batches", self.max_batches, 1, optional=True)
        check_int("calib_batches", self.calib_batches, 1)
        check_choice("weight_range", self.weight_range, tuple(WEIGHT_RANGES))
        # torch.device and Path are accepted; the stored form is a string.
        object.__setattr__(self, "device", str(self.device))
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", str(self.checkpoint))

    def train_config(self, recipe: QATRecipe) -> TrainConfig:
        """`recipe`'s TrainConfig for this fine-tune (what `finetune` trains with)."""
        run: dict[str, Any] = {"seed": self.seed, "max_batches": self.max_batches}
        if self.batch_size is not None:
            run["batch_size"] = self.batch_size
        return recipe.train_config(self.epochs, **run)

    def fit_run(self) -> FitRun:
        return FitRun(self.device, self.checkpoint, self.resume, self.progress, desc="qat")

    def to_json(self) -> dict[str, Any]:
        return configs.to_json(self)

    @classmethod
    def from_json(cls, d: Any) -> FinetuneConfig:
        return configs.from_json(cls, d, "the fine-tune settings")


def finetune(
    model: nn.Module,
    policy: Policy,
    train: ImageSet,
    recipe: QATRecipe | str = DEFAULT_RECIPE,
    config: FinetuneConfig | None = None,
    *,
    eval_set: ImageSet | None = None,
    graph: Graph | None = None,
) -> QATModel:
    """Quantization-aware fine-tuning of a copy of the float `model` under `policy`, with
    `recipe` (a QATRecipe or a name in quant.recipe.RECIPES) and `config` (epochs, batches,
    seed, weight range, device, checkpoint, resume; FinetuneConfig's defaults when None).

    Activation clips are calibrated on `train` first, then `train.fit` runs the recipe (BN
    statistics re-estimated, then frozen after `freeze_bn_after` epochs). With kd_weight > 0
    the float `model` (eval mode, BN folded) is the teacher. Under torchrun every rank runs
    this and only rank 0 writes the checkpoint; `config.resume` continues from it.
    """
    config = config or FinetuneConfig()
    device, checkpoint, progress = torch.device(config.device), config.checkpoint, config.progress
    if isinstance(recipe, str):
        recipe = named_recipe(recipe)
    cfg = config.train_config(recipe)
    qmodel = prepare(
        model,
        policy,
        graph,
        weight_range=config.weight_range,
        learn_weight_clip=config.learn_weight_clip,
        weight_quant=recipe.weight_quant,
    ).to(device)
    attach_spec(qmodel, spec_of(model))  # saved with it: later commands rebuild the model
    resuming = config.resume and checkpoint is not None and Path(checkpoint).exists()
    if resuming:
        _check_same_run(checkpoint, policy, config.weight_range)
    else:
        # Skipped on resume: the checkpoint holds the trained clips anyway.
        calibrate(
            qmodel, train, batches=config.calib_batches, batch_size=cfg.batch_size, device=device
        )
    reest = recipe.bn_reestimate_batches

    def before_bn_freeze(m: nn.Module) -> None:
        # The quantizers are on now: BN sees the quantized pre-activations it will fold.
        reestimate_bn(m, calibration_batches(train, reest, cfg.batch_size, device))

    state = fit(
        qmodel,
        train,
        cfg,
        config.fit_run(),
        eval_set=eval_set,
        teacher=make_teacher(model, device) if cfg.kd_weight > 0 else None,
        hooks=FitHooks(
            extra_state=lambda: _describe(qmodel),
            before_bn_freeze=before_bn_freeze if reest > 0 else None,
        ),
    )
    qmodel.history = state.history  # per-epoch loss, accuracy and seconds
    qmodel.repaired = repair_dead_channels(qmodel)
    if qmodel.repaired and progress:
        where = "; ".join(f"{k} channels {v}" for k, v in qmodel.repaired.items())
        print(f"[micromix] QAT left channels deployed as all zeros; re-initialised: {where}")
    qmodel.eval()
    return qmodel


def make_teacher(model: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A frozen copy of the float `model` for distillation: eval mode, no gradients, and BN
    folded into the convolutions where torch.fx can (fewer passes per teacher forward)."""
    teacher = copy.deepcopy(model).to(device).eval()
    try:
        with warnings.catch_warnings():  # the module imports deprecated torch.jit helpers
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.fx.experimental.optimization import fuse

        teacher = fuse(teacher)
    except Exception:  # untraceable or unusual layers: the unfused copy computes the same
        pass
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def _describe(qmodel: QATModel) -> dict[str, Any]:
    return {
        "kind": QAT_KIND,
        "model_config": qmodel.model_config,
        "model_spec": _spec_json(qmodel),
        "policy": qmodel.policy.to_json(),
        "weight_range": qmodel.weight_range,
        "weight_quant": qmodel.weight_quant,
        "input_shape": list(qmodel.graph.input_shape),
        "weight_scales": scales_of(qmodel.graph).to_json(),
    }


def _spec_json(qmodel: QATModel) -> dict[str, Any] | None:
    spec = attached_spec(qmodel)
    if spec is None:
        return None
    return replace(spec, input_shape=tuple(qmodel.graph.input_shape[1:])).to_json()


def _check_same_run(path: str | Path, policy: Policy, weight_range: str) -> None:
    ck = load_checkpoint(path)
    if ck.get("policy") is not None and Policy.from_json(ck["policy"]) != policy:
        raise CheckpointError(
            f"checkpoint {path} was trained with another policy; use a new run directory or --force without --resume."
        )
    if ck.get("weight_range", weight_range) != weight_range:
        raise CheckpointError(
            f"checkpoint {path} used weight range {ck['weight_range']}, not {weight_range}."
        )


def save_qat(path: str | Path, qmodel: QATModel, **meta: Any) -> None:
    """Write a self-describing QAT checkpoint: `load_qat` rebuilds the QAT model from it (with
    the model code), and `stored.load_integer` the integer model from its data alone (the Graph as
    JSON and the QuantParams as tensors), so a received checkpoint exports without code."""
    from .prepare import quant_params

    state = {k: v.detach().cpu() for k, v in qmodel.state_dict().items()}
    qp = qparams_to_data(quant_params(qmodel))
    for layer in qp["layers"].values():
        for k in ("w_int", "w_scale", "bias"):
            layer[k] = torch.from_numpy(np.ascontiguousarray(layer[k]))
    integer = {"graph": qmodel.graph.to_json(), "quant_params": qp}
    save_checkpoint(path, {**_describe(qmodel), "state_dict": state, "integer": integer, **meta})


def load_qat(
    path: str | Path, model: nn.Module | None = None, map_location: str = "cpu"
) -> tuple[QATModel, dict[str, Any]]:
    """Rebuild a QAT model saved by `save_qat` (or a finetune checkpoint).

    Zoo models rebuild from the stored config; for any other model pass the float `model`
    (architecture only: its weights are replaced by the checkpoint's): the code a file names
    never runs on the file's say (`models.spec.authorize`).
    """
    from ..graph import WeightScales, trace
    from ..models import ModelSpec, authorize, build, create_from_config

    ck = load_checkpoint(path, map_location=map_location)
    if ck.get("kind") != QAT_KIND or "policy" not in ck:
        raise CheckpointError(
            f"{path} is not a micromix QAT checkpoint (expected one written by `micromix finetune`)."
        )
    state = ck.get("state_dict", ck.get("model"))
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds no model weights.")
    spec = ModelSpec.from_json(ck["model_spec"]) if ck.get("model_spec") else None
    if model is None:
        if spec is not None:
            spec = authorize(spec, None, str(path))
            model = build(spec)
        elif not ck.get("model_config"):
            raise CheckpointError(
                f"{path} holds a model outside the zoo without a model spec; pass the float model to load_qat to rebuild it."
            )
        else:
            try:
                model = create_from_config(ck["model_config"])
            except MicromixError:
                raise CheckpointError(
                    f"{path} describes a model this micromix cannot build."
                ) from None
    weight_range = ck.get("weight_range", DEFAULT_WEIGHT_RANGE)
    if weight_range not in WEIGHT_RANGES:
        raise CheckpointError(f"{path} has an unknown weight range {weight_range!r}.")
    weight_quant = ck.get("weight_quant", "mse")
    if weight_quant not in WEIGHT_QUANTS:
        raise CheckpointError(f"{path} has an unknown weight quantizer {weight_quant!r}.")
    try:
        shape = ck.get("input_shape")
        scales = ck.get("weight_scales")  # checkpoints from before the setting: per channel
        scales = None if scales is None else WeightScales.from_json(scales, f"the scales in {path}")
        graph = trace(model, tuple(shape) if shape else None, scales)
        policy = Policy.from_json(ck["policy"], source=f"the policy in {path}")
        qmodel = prepare(model, policy, graph, weight_range=weight_range, weight_quant=weight_quant)
        qmodel.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, MicromixError):
        raise CheckpointError(
            f"the weights in {path} do not match the model it describes."
        ) from None
    attach_spec(qmodel, spec if spec is not None else spec_of(model))
    qmodel.eval()
    return qmodel, ck
