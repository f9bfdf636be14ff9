"""Scoring a policy: an evaluator is any callable `policy -> held-out accuracy in percent`.

Only `QATEvaluator` touches quantization-aware training; the search logic and the tests work
with any callable (e.g. `SyntheticEvaluator`, a deterministic function of the bits).
`CachedEvaluator` wraps either so a policy seen before is never trained again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn as nn

from .. import configs
from ..configs import check_choice, check_int, check_number
from ..data import DataSplits, ImageSet
from ..errors import MicromixError
from ..graph import Graph, trace
from ..policy import Policy
from ..quant.finetune import FinetuneConfig
from ..quant.recipe import DEFAULT_RECIPE, RECIPES, QATRecipe
from ..train import TrainConfig, evaluate

Evaluator = Callable[[Policy], float]
EVAL_BATCH = 100
# Which recipe a search's fine-tunes use: "search" (QATSettings' own) or "final" (the final QAT's).
QAT_RECIPES = (
    "search",
    "final",
)  # `train.evaluate`'s default: batches of ~100 are fastest on small CPUs


@contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run torch on `n` intra-op threads inside the block (None: leave it alone)."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers (another float model scores otherwise)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def score(fn: Evaluator, policy: Policy, incumbent: float | None = None) -> float:
    """`fn.screen(policy, incumbent)` where the evaluator can stop early, else `fn(policy)`."""
    screen = getattr(fn, "screen", None)
    if incumbent is not None and callable(screen):
        return float(screen(policy, incumbent))
    return float(fn(policy))


class CachedEvaluator:
    """Memoises an evaluator by `Policy.key()`; the cache travels in search checkpoints."""

    def __init__(self, fn: Evaluator, cache: dict[str, float] | None = None) -> None:
        self.fn = fn
        self.cache: dict[str, float] = dict(cache or {})
        self.hits = self.misses = 0
        self.seconds = 0.0  # time spent in real evaluations

    def __call__(self, policy: Policy) -> float:
        return self.many([policy])[0]

    def many(
        self, policies: list[Policy], pool: Any = None, incumbent: float | None = None
    ) -> list[float]:
        """Scores of `policies`; the unseen ones (each once) go to `pool.map` when given.
        `incumbent` (the best score so far) lets an evaluator with `screen` stop early."""
        todo: dict[str, Policy] = {}
        for p in policies:
            key = p.key()
            if key in self.cache or key in todo:
                self.hits += 1
            else:
                todo[key] = p
        if todo:
            t0 = time.perf_counter()
            items = list(todo.values())
            if pool is not None:
                scores = pool.map(items, incumbent)
            else:
                scores = [score(self.fn, p, incumbent) for p in items]
            self.seconds += time.perf_counter() - t0
            self.misses += len(items)
            self.cache.update({k: float(v) for k, v in zip(todo, scores)})
        return [self.cache[p.key()] for p in policies]

    @property
    def float_accuracy(self) -> float | None:
        return getattr(self.fn, "float_accuracy", None)


@dataclass(frozen=True)
class QATSettings:
    """The short fine-tune of every search episode (measured in results/search.md)."""

    train_images: int = 2000  # subset of the TRAIN split, fixed for the whole search
    eval_images: int = 2000  # subset of the HELD-OUT split, fixed
    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-3  # Adam; measured best of 1e-4..2e-3 at batch 64 (results/search.md)
    calib_batches: int = 1  # activation clips from one batch: 4 cost more than the training
    subset_seed: int = 0
    # Batches of 64 small images leave little to parallelise, and on a shared 2-core machine
    # a second thread that gets descheduled made each episode 10x slower (2 s -> 22 s).
    threads: int | None = 1  # None: torch's default
    # The final choice among the top-k policies (and the seeds): the FINAL QAT's recipe
    # (quant.recipe.RECIPES[final_recipe]: same optimizer, lr steps, BN freeze, augmentation, batch and
    # calibration) for `rescore_epochs` over `rescore_train_images` fresh train images (the
    # final QAT takes all of them), scored on the whole held-out split (None) or this many of
    # its images. The issue 13 study showed the search's own recipe (Adam 1e-3, 2,000 images
    # re-used) ordering policies unlike the final QAT (Adam 1e-4 on 50,000), see
    # results/search_study.md.
    rescore_epochs: int = 3
    rescore_images: int | None = None
    rescore_train_images: int = 6000
    rescore_recipe: str = (
        "final"  # "final" (the final QAT's recipe) or "search" (this fine-tune, longer)
    )
    rescore_seeds: int = 1  # the re-score averages this many fine-tunes (seeds seed, seed+1, ...)
    # Successive halving: a policy is scored on the first `screen_images` held-out images; only
    # one within `screen_margin` points of the incumbent gets the rest of `eval_images` (the
    # fine-tune is shared). 0: always the whole subset.
    screen_images: int = 500
    screen_margin: float = 1.0
    recipe: str = "search"  # "search": the settings above; "final": the final QAT's recipe
    final_recipe: str = DEFAULT_RECIPE  # the final QAT's recipe (a name in quant.recipe.RECIPES)
    repeats: int = 1  # fine-tunes (training seeds seed, seed+1, ...) averaged per score
    # --batch-size as the user gave it: then every fine-tune and evaluation of the search uses
    # it (the final recipe's re-score, held-out scoring, ILP sensitivities), so memory scales
    # with it. None: each its own default (the final recipe's 128, evaluation's 100, ...).
    user_batch_size: int | None = None

    def __post_init__(self) -> None:
        # Refused when built, before any search stage runs.
        for what in ("train", "eval"):
            n = getattr(self, f"{what}_images")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise MicromixError(f"--{what}-images must be at least 1, got {n!r}.")
        for name in ("epochs", "batch_size", "repeats", "rescore_seeds", "rescore_train_images"):
            check_int(f"QAT setting {name}", getattr(self, name), 1)
        check_int("QAT setting calib_batches", self.calib_batches, 1)
        check_int("QAT setting rescore_epochs", self.rescore_epochs, 0)
        check_int("QAT setting rescore_images", self.rescore_images, 1, optional=True)
        check_int("QAT setting user_batch_size", self.user_batch_size, 1, optional=True)
        check_int("QAT setting screen_images", self.screen_images, 0)
        check_number("QAT setting lr", self.lr, 0.0)
        check_number("QAT setting screen_margin", self.screen_margin, 0.0)
        for name in ("recipe", "rescore_recipe"):
            check_choice(f"QAT setting {name}", getattr(self, name), QAT_RECIPES)
        check_choice("QAT setting final_recipe", self.final_recipe, tuple(RECIPES))

    def qat_recipe(self) -> QATRecipe:
        """The recipe of these fine-tunes: the final QAT's, or the search's own settings."""
        if self.recipe == "final":
            return RECIPES[self.final_recipe]
        return QATRecipe(
            lr=self.lr,
            schedule="cosine",
            warmup_epochs=0.0,
            weight_quant="mse",
            kd_temperature=1.0,
            augment=False,  # a one-epoch fine-tune recovers faster on the plain images
            bn_reestimate_batches=0,
            freeze_bn_after=None,
        )

    def check_trains(self, flag: str = "--train-images") -> None:
        """Refuse a fine-tune subset smaller than one batch: no policy would be trained."""
        if self.train_images < self.batch_size:
            raise MicromixError(
                f"{flag} {self.train_images} is fewer than one fine-tune batch of the search "
                f"({self.batch_size} images), so no policy would be trained; use at least "
                f"{self.batch_size}."
            )

    def finetune_config(self, seed: int, device: torch.device | str = "cpu") -> FinetuneConfig:
        """One fine-tune of these settings with training seed `seed`; the final recipe keeps
        the final QAT's batch size unless the user gave one."""
        batch = self.user_batch_size if self.recipe == "final" else self.batch_size
        return FinetuneConfig(
            epochs=self.epochs,
            batch_size=batch,
            seed=seed,
            calib_batches=self.calib_batches,
            device=device,
            progress=False,
        )

    def train_config(self, seed: int) -> TrainConfig:
        return self.finetune_config(seed).train_config(self.qat_recipe())

    @property
    def eval_batch_size(self) -> int:
        return self.user_batch_size or EVAL_BATCH

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        if d["user_batch_size"] is None:  # searches checkpointed before it existed still resume
            del d["user_batch_size"]
        return d

    @classmethod
    def from_json(cls, d: Any) -> QATSettings:
        return configs.from_json(cls, d, "the search's QAT settings")


class QATEvaluator:
    """Fine-tune the fake-quant model briefly, return its accuracy on a held-out subset.

    Every policy trains with the same seed and the same images (common random numbers), so
    the comparison between two policies is not blurred by batch-order noise, and the same
    policy always gets the same score.
    """

    def __init__(
        self,
        model: nn.Module,
        data: DataSplits,
        *,
        graph: Graph | None = None,
        settings: QATSettings | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        self.model = model.to(device).eval()
        self.graph = graph if graph is not None else trace(model)
        settings = settings or QATSettings()
        self.settings, self.device = settings, device
        self.data, self.seed = data, seed
        self._load(settings)

    def _load(self, settings: QATSettings) -> None:
        self.settings = settings
        self.cfg = settings.train_config(self.seed)
        self.train = self.data.train.subset(settings.train_images, seed=settings.subset_seed)
        self.heldout = self.data.heldout.subset(settings.eval_images, seed=settings.subset_seed)
        self._float_accuracy: float | None = None

    @property
    def float_accuracy(self) -> float:
        """The float model on the scored images (computed when first asked: a re-scorer on
        the whole held-out split never needs it)."""
        if self._float_accuracy is None:
            with threads(self.settings.threads):
                self._float_accuracy = self._evaluate(self.model, self.heldout)
        return self._float_accuracy

    def finetune(self, policy: Policy) -> nn.Module:
        from ..quant.finetune import finetune

        s = self.settings
        # a repeat's own seed (see __call__)
        config = s.finetune_config(self.cfg.seed, self.device)
        return finetune(self.model, policy, self.train, s.qat_recipe(), config, graph=self.graph)

    def __call__(self, policy: Policy) -> float:
        if self.settings.repeats <= 1:
            return self.screen(policy, None)
        scores = []
        for i in range(self.settings.repeats):  # each repeat its own training seed
            ev = object.__new__(QATEvaluator)
            ev.__dict__.update(self.__dict__)
            ev.cfg = replace(self.cfg, seed=self.seed + i)
            scores.append(ev.screen(policy, None))
        return sum(scores) / len(scores)

    def screen(self, policy: Policy, incumbent: float | None) -> float:
        """The held-out score, cut short (successive halving, see QATSettings) when the first
        `screen_images` already put it more than `screen_margin` below `incumbent`."""
        s, n_all = self.settings, len(self.heldout)
        with threads(s.threads):
            qmodel = self.finetune(policy)
            n = s.screen_images
            if incumbent is None or not 0 < n < n_all:
                return self._evaluate(qmodel, self.heldout)
            first = self._evaluate(qmodel, self.heldout.take(range(n)))
            if first < incumbent - s.screen_margin:
                return first  # screened out: it cannot be the best, so 500 images suffice
            rest = self._evaluate(qmodel, self.heldout.take(range(n, n_all)))
            return (first * n + rest * (n_all - n)) / n_all

    def _evaluate(self, model: nn.Module, ds: ImageSet) -> float:
        return evaluate(model, ds, batch_size=self.settings.eval_batch_size, device=self.device)

    def identity(self) -> dict[str, Any]:
        """Everything that changes a score (a resumed search must not mix two evaluators)."""
        return {
            "type": "QATEvaluator",
            "settings": self.settings.to_json(),
            "seed": self.seed,
            "train_images": len(self.data.train),
            "heldout_images": len(self.data.heldout),
            "model": getattr(self.model, "micromix_config", None),
            "weights_sha256": weights_digest(self.model),
        }

    def rescorer(self) -> QATEvaluator:
        """The evaluator of the final choice: longer fine-tune, the whole held-out split."""
        s = self.settings
        n = len(self.data.heldout) if s.rescore_images is None else s.rescore_images
        final = s.rescore_recipe == "final"
        return self.with_settings(
            epochs=s.rescore_epochs,
            eval_images=n,
            train_images=min(s.rescore_train_images, len(self.data.train)),
            recipe=s.rescore_recipe,
            # the final QAT's calibration (FinetuneConfig's default)
            calib_batches=FinetuneConfig.calib_batches if final else s.calib_batches,
            screen_images=0,
            repeats=s.rescore_seeds,
        )

    def with_settings(self, **changes: Any) -> QATEvaluator:
        """A copy with other fine-tune settings that reuses the loaded model and graph."""
        ev = object.__new__(QATEvaluator)
        ev.__dict__.update(self.__dict__)
        ev._load(replace(self.settings, **changes))
        return ev


class SyntheticEvaluator:
    """accuracy = float accuracy minus a fixed penalty per low-bit tensor (deterministic).

    Penalties grow as bits drop and weigh small layers (depthwise, first, last) more, the way
    real sensitivities do, so a search has structure to find. For tests and demos only.
    """

    PENALTY = {8: 0.0, 4: 0.4, 2: 3.0}

    def __init__(self, graph: Graph, float_accuracy: float = 90.0, delay: float = 0.0) -> None:
        self.graph, self.float_accuracy, self.delay = graph, float_accuracy, delay
        sizes = {o.name: o.weight.numel for o in graph.weight_ops}
        big = max(sizes.values())
        n = len(sizes)
        self.w_sens = {k: 0.5 + (1.0 - v / big) for k, v in sizes.items()}
        self.a_sens = {name: 0.3 + 0.7 * (i == 0 or i == n - 1) for i, name in enumerate(sizes)}
        self.scale = 10.0 / n

    def identity(self) -> dict[str, Any]:
        return {"type": "SyntheticEvaluator", "float_accuracy": self.float_accuracy}

    def __call__(self, policy: Policy) -> float:
        if self.delay:
            time.sleep(self.delay)
        drop = sum(self.w_sens[k] * self.PENALTY[b] for k, b in policy.weights.items())
        drop += sum(
            s * self.PENALTY[policy.activations[self.graph.op(k).output]]
            for k, s in self.a_sens.items()
        )
        return self.float_accuracy - self.scale * drop
