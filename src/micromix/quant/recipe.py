"""QAT recipes as data: a frozen dataclass that round-trips through JSON, and named recipes.

`new` (the default everywhere: `QATRecipe()`, `finetune`, the CLI) has learned weight step sizes
(LSQ), Adam 1e-3 with warm-up + cosine, no augmentation and BN re-estimation with the quantizers
on before BN freezes; `kd` adds distillation from the float model, and `kd_*` are `kd` minus one
ingredient each. `old` is the MLSys 2020 recipe micromix used until issue 15 (Adam 1e-4 stepped
x0.5 / x0.1 at 4/10 and 8/10 of the run, BN frozen after epoch 1, fixed MSE weight clips, no
teacher), kept by name for the studies that cite it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..errors import MicromixError
from ..train import TrainConfig
from .fakequant import WEIGHT_QUANTS

SCHEDULES = ("step", "cosine")
QAT_EPOCHS = 10  # a fine-tune's length when the caller names none
QAT_BATCH_SIZE = 128
# The step schedule: lr x0.5 at 4/10 and x0.1 at 8/10 of the run (the MLSys 2020 recipe's steps
# at epochs 4 and 8 of 10), so a short fine-tune still anneals.
STEPS_PER_10_EPOCHS = ((4, 0.5), (8, 0.1))


@dataclass(frozen=True)
class QATRecipe:
    """Every QAT training setting beyond the run's length, batch size and seed."""

    # The defaults are the `new` recipe (see RECIPES for why each value).
    lr: float = 1e-3  # Adam
    schedule: str = "cosine"  # step: x0.5 at 4/10, x0.1 at 8/10 of the run; cosine: to 0
    warmup_epochs: float = 0.1  # linear warm-up (fraction of an epoch allowed)
    weight_quant: str = "lsq"  # mse: fixed per-channel MSE clips; lsq: learned step sizes
    kd_weight: float = 0.0  # distillation from the float model: 0 = plain cross-entropy
    kd_temperature: float = 4.0
    augment: bool = False  # random crop + flip (off: the teacher's logits are computed once)
    bn_reestimate_batches: int = 8  # BN statistics recomputed, quantizers on, before freezing
    freeze_bn_after: int | None = 1  # epochs of BN statistics updates (None: never frozen)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        bad = None
        if not self.lr > 0:
            bad = f"lr must be positive, got {self.lr}"
        elif self.schedule not in SCHEDULES:
            bad = f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
        elif not self.warmup_epochs >= 0:
            bad = f"warm-up epochs must be >= 0, got {self.warmup_epochs}"
        elif self.weight_quant not in WEIGHT_QUANTS:
            bad = f"weight quantizer must be one of {', '.join(WEIGHT_QUANTS)}, got {self.weight_quant!r}"
        elif not 0 <= self.kd_weight <= 1:
            bad = f"distillation weight must be in [0, 1], got {self.kd_weight}"
        elif not self.kd_temperature > 0:
            bad = f"distillation temperature must be positive, got {self.kd_temperature}"
        elif self.bn_reestimate_batches < 0:
            bad = f"BN re-estimation batches must be >= 0, got {self.bn_reestimate_batches}"
        elif self.freeze_bn_after is not None and self.freeze_bn_after < 0:
            bad = f"freeze-BN epoch must be >= 0, got {self.freeze_bn_after}"
        if bad:
            raise MicromixError(f"QAT recipe: {bad}.")

    def train_config(self, epochs: int = QAT_EPOCHS, **changes: Any) -> TrainConfig:
        """The TrainConfig of this recipe for `epochs` epochs; `changes` set what a recipe does
        not hold (batch_size, seed, max_batches). The step schedule keeps its steps at 4/10 and
        8/10 of the run."""
        named = sorted(set(changes) & {f.name for f in fields(self)})
        if named:
            raise MicromixError(
                f"{named[0]} is a QAT recipe setting: change it in the recipe, "
                f"e.g. recipe(name, {named[0]}=...)."
            )
        steps: tuple[tuple[int, float], ...] = ()
        if self.schedule == "step" and epochs > 1:
            steps = tuple((max(1, round(at * epochs / 10)), f) for at, f in STEPS_PER_10_EPOCHS)
        cfg = TrainConfig(
            epochs=epochs,
            batch_size=QAT_BATCH_SIZE,
            optimizer="adam",
            weight_decay=0.0,
            lr=self.lr,
            schedule=self.schedule,
            lr_steps=steps,
            warmup_epochs=self.warmup_epochs,
            augment=self.augment,
            freeze_bn_after=self.freeze_bn_after,
            kd_weight=self.kd_weight,
            kd_temperature=self.kd_temperature,
        )
        try:
            return replace(cfg, **changes)
        except TypeError:
            known = ", ".join(f.name for f in fields(TrainConfig))
            raise MicromixError(
                f"QAT training settings: unknown setting in {sorted(changes)}; known: {known}."
            ) from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any], source: str = "the QAT recipe") -> QATRecipe:
        if not isinstance(d, dict):
            raise MicromixError(f"{source} must be a JSON object of recipe settings.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise MicromixError(f"{source} has unknown setting {unknown[0]!r}.")
        try:
            return cls(**d)
        except TypeError as e:
            raise MicromixError(f"{source} is malformed: {e}.") from None


OLD = QATRecipe(
    lr=1e-4,
    schedule="step",
    warmup_epochs=0.0,
    weight_quant="mse",
    kd_temperature=1.0,
    augment=True,
    bn_reestimate_batches=0,
)
# `kd` was chosen by short CPU probes (2 x 75 batches, results/qat_accuracy.md): lr 1e-3 (W2/A4
# 83.55 vs 80.25 at 3e-4; W4/A4 89.85 vs 89.7 (3e-4), 89.0 (1e-4)), no augmentation (3 epochs,
# MobileNetV1: augmentation back lost 0.2-2.2 points per policy). `new` is `kd` without the
# teacher: in the 3-epoch benchmark (results/qat_accuracy.md, 3 models x 4 policies)
# distillation lost in 10 of 12 cells (mean -0.33 points), so `new` is the default.
NEW = QATRecipe()
KD = replace(NEW, kd_weight=0.9)
# `kd` minus one ingredient each (the benchmark's ablations were run on `kd`).
ABLATIONS = {
    "no_lsq": {"weight_quant": "mse"},
    # the shape only (steps x0.5, x0.1, no warm-up) at the same learning rate
    "old_schedule": {"schedule": OLD.schedule, "warmup_epochs": OLD.warmup_epochs},
    "no_bn_reest": {"bn_reestimate_batches": 0},
    "augment": {"augment": True},  # not an ingredient removed: augmentation put back
}
RECIPES: dict[str, QATRecipe] = {
    "old": OLD,
    "new": NEW,
    "kd": KD,
    **{f"kd_{k}": replace(KD, **v) for k, v in ABLATIONS.items()},
}
DEFAULT_RECIPE = "new"


def recipe(name: str = DEFAULT_RECIPE, **overrides: Any) -> QATRecipe:
    """A named recipe with some settings replaced (None values are ignored)."""
    if name not in RECIPES:
        raise MicromixError(f"unknown QAT recipe {name!r}; choose one of {', '.join(RECIPES)}.")
    changes = {k: v for k, v in overrides.items() if v is not None}
    try:
        return replace(RECIPES[name], **changes)
    except TypeError as e:
        raise MicromixError(f"QAT recipe: {e}.") from None
