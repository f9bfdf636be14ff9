"""`search()`: one entry point for every registered strategy, with run directory and resume.

    search(model, data, budget, "haq", episodes=40)            # a name and its settings
    search(model, data, budget, HAQConfig(episodes=40))       # or a config
    search(model, data, budget, "rule", SearchConfig(run_dir="runs/x", seed=1))  # how it runs

Strategies (registry.py): haq and random (episodic, haq.py), rule, ilp and uniform
(simple.py). The episodic ones write one JSON line per episode and an atomic checkpoint after
each batch, so `SearchConfig(resume=True)` after a `kill -9` ends with the same policy as an
uninterrupted run. A checkpoint written under other settings is refused, naming the setting
that differs.

The choice is honest: the top-k distinct policies by search score (short fine-tune, held-out
subset) are re-scored by the evaluator's `rescorer()` (longer fine-tune, whole held-out split)
and the best re-score wins. `SearchResult.search_score` and `.heldout_acc` keep both; the test
split is never looked at. A search with one candidate (rule, ilp, uniform) has nothing to
choose: it is not re-scored (`heldout_acc` None).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch.nn as nn

from .. import configs
from ..budget import Budget, check_feasible
from ..configs import check_int
from ..data import DataSplits
from ..errors import CheckpointError, InfeasibleBudgetError, MicromixError
from ..files import write_json
from ..graph import Graph, scales_of, trace
from ..memory import MemoryReport, SizeTable, memory_report
from ..models.spec import spec_of
from ..policy import FIXED_BITS, Policy
from ..progress import Progress
from ..rundir import open_run_dir
from ..schedule import Scheduling, check_schedule
from .evaluate import CachedEvaluator, Evaluator, QATEvaluator, QATSettings, score, threads
from .parallel import make_pool
from .registry import StrategyConfig, create, get
from .wall import Wall

# Train images the sensitivities (ilp.py) are measured on: at most this many, and never more
# than each episode trains on (a small search, as the smoke preset's, stays small).
ILP_CALIB_IMAGES = 1024
# What a search writes into its run directory (`force=True` removes these first).
SEARCH_FILES = (
    "checkpoint.pt",
    "graph.json",
    "episodes.jsonl",
    "policy.json",
    "memory.json",
    "metrics.json",
    "rewards.png",
    "policy.png",
)


@dataclass
class SearchResult:
    strategy: str
    policy: Policy
    search_score: float  # held-out subset accuracy after the short fine-tune
    report: MemoryReport
    budget: Budget
    float_accuracy: float | None = None
    episodes: int = 0  # distinct policies the strategy evaluated
    evaluations: int = 0  # distinct policies trained over the whole search (resumes included)
    cache_hits: int = 0  # evaluations the cache saved in this call
    proposals: int = 0  # episodes proposed, repeats included
    wall_seconds: float = 0.0
    heldout_acc: float | None = None  # the re-score of the returned policy
    rescored: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """The re-scored held-out accuracy when there is one, else the search score."""
        return self.search_score if self.heldout_acc is None else self.heldout_acc

    @property
    def utilization(self) -> dict[str, float | None]:
        return self.budget.utilization(self.report)

    def metrics(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "search_score": self.search_score,
            "heldout_acc": self.heldout_acc,
            "best_accuracy": self.accuracy,
            "float_accuracy": self.float_accuracy,
            "flash_bytes": self.report.flash_bytes,
            "ram_bytes": self.report.ram_bytes,
            "budget": self.budget.to_json(),
            "utilization": self.utilization,
            "episodes": self.episodes,
            "proposals": self.proposals,
            "evaluations": self.evaluations,
            "cache_hits": self.cache_hits,
            "wall_seconds": self.wall_seconds,
            "rescored": self.rescored,
            "config": self.config,
        }


@dataclass
class SearchContext:
    """What a strategy's `run(ctx, cfg)` may use."""

    graph: Graph
    budget: Budget
    sizes: SizeTable  # the schedule's (schedule.search_table)
    cached: CachedEvaluator
    pool: Any
    identity: dict[str, Any]
    model: nn.Module | None = None
    data: DataSplits | None = None
    qat: QATSettings = field(default_factory=QATSettings)
    seed: int = 0
    run: Path | None = None
    resume: bool = False
    progress: bool = True
    stop_after: int | None = None
    scheduling: Scheduling = field(default_factory=Scheduling)
    _sens: dict | None = None
    _walls: dict = field(default_factory=dict)

    def wall(self, weights_only: bool = False) -> Wall:
        if weights_only not in self._walls:
            self._walls[weights_only] = Wall(
                self.graph,
                self.budget,
                sizes=self.sizes,
                weights_only=weights_only,
                scheduling=self.scheduling,
            )
        return self._walls[weights_only]

    def report(self, policy: Policy) -> MemoryReport:
        """The policy's exact memory under the search's schedule (what the budget is held to)."""
        return self.wall().report(policy)

    def sensitivities(self) -> dict:
        """Per-tensor sensitivities (ilp.py): measured on train images when a model is given,
        else by the evaluator itself (not counted as search evaluations)."""
        if self._sens is None:
            from .ilp import SENSITIVITY_BATCH, evaluator_sensitivity, measure_sensitivity

            if self.model is not None and self.data is not None:
                n = min(ILP_CALIB_IMAGES, self.qat.train_images)
                calib = self.data.train.subset(n, seed=self.seed)
                batch = self.qat.user_batch_size or SENSITIVITY_BATCH
                with threads(self.qat.threads):
                    self._sens = measure_sensitivity(
                        self.model.eval(), self.graph, calib, batch_size=batch
                    )
            else:
                self._sens = evaluator_sensitivity(self.graph, self.cached.fn)
        return self._sens

    def gains(self) -> dict:
        from .ilp import gains_from

        return gains_from(self.sensitivities())


def resolve_config(strategy: str | StrategyConfig, settings: dict[str, Any]) -> StrategyConfig:
    """A config from a name and settings, or a config with some settings changed."""
    if isinstance(strategy, StrategyConfig):
        if not settings:
            return strategy
        known = {f.name for f in dataclasses.fields(strategy)}
        bad = sorted(set(settings) - known)
        if bad:
            raise MicromixError(f"strategy {strategy.name!r} has no setting {bad[0]!r}.")
        return dataclasses.replace(strategy, **settings)
    return create(strategy, **settings)


def search_identity(
    cfg: StrategyConfig,
    evaluator: Any,
    seed: int,
    budget: Budget,
    graph: Graph,
    scheduling: Scheduling | None = None,
) -> dict[str, Any]:
    """Every setting that changes a reward: a resume under another identity is refused."""
    ident = getattr(evaluator, "identity", None)
    return {
        "strategy": cfg.to_json(),
        "evaluator": ident() if callable(ident) else type(evaluator).__name__,
        "seed": seed,
        "budget": budget.to_json(),
        "schedule": (scheduling or Scheduling()).to_json(),
        "dense_scales": scales_of(graph).dense,  # QAT and the FLASH of a policy follow it
        "graph": ";".join(f"{o.name}:{o.kind}:{o.out_shape}" for o in graph.ops),
    }


def identity_difference(saved: Any, want: Any, path: str = "") -> str | None:
    """The dotted name of the first setting where `saved` and `want` differ, or None."""
    if isinstance(saved, dict) and isinstance(want, dict):
        for k in list(want) + [k for k in saved if k not in want]:
            d = identity_difference(saved.get(k), want.get(k), f"{path}.{k}" if path else str(k))
            if d is not None:
                return d
        return None
    if isinstance(saved, (list, tuple)) and isinstance(want, (list, tuple)):
        saved, want = list(saved), list(want)
    return None if saved == want else (path or "identity")


def check_identity(saved: Any, want: dict[str, Any], where: Path | str) -> None:
    diff = identity_difference(saved, want)
    if diff is not None:
        raise CheckpointError(
            f"checkpoint {where} belongs to another search: its setting '{diff}' differs; "
            "pass --force to start over."
        )


@dataclass(frozen=True)
class SearchConfig:
    """How a search runs, apart from the strategy's own config (configuration is data: frozen,
    checked when built, JSON round trip). `seed` and `qat` change the rewards (a resume must
    match them); `stop_after` ends an episodic run after that many evaluations, as an
    interruption would (for tests); `workers` > 1 or `ray_address` score a batch's policies as
    Ray tasks, and the result does not depend on them. `schedule` and `max_recompute` name the
    schedule whose RAM the budget holds (schedule.Scheduling; they change the policies, so a
    resume must match them)."""

    run_dir: str | None = None
    seed: int = 0
    qat: QATSettings = field(default_factory=QATSettings)
    resume: bool = False
    force: bool = False
    device: str = "cpu"
    progress: bool = True
    plots: bool = True
    stop_after: int | None = None
    workers: int = 1
    ray_address: str | None = None
    schedule: str = "auto"
    max_recompute: float = 0.10

    def __post_init__(self) -> None:
        check_schedule(self.schedule, self.max_recompute)
        # torch.device and Path are accepted; the stored form is a string.
        object.__setattr__(self, "device", str(self.device))
        if self.run_dir is not None:
            object.__setattr__(self, "run_dir", str(self.run_dir))
        if not isinstance(self.qat, QATSettings):
            raise MicromixError(f"SearchConfig.qat must be a QATSettings, not {self.qat!r}.")
        check_int("seed", self.seed, 0)
        check_int("stop_after", self.stop_after, 1, optional=True)
        check_int("--workers", self.workers, 1)

    @property
    def scheduling(self) -> Scheduling:
        return Scheduling(self.schedule, self.max_recompute)

    def to_json(self) -> dict[str, Any]:
        return configs.to_json(self)

    @classmethod
    def from_json(cls, d: Any) -> SearchConfig:
        return configs.from_json(cls, d, "the search settings", qat=QATSettings.from_json)


def search(
    model: nn.Module | None,
    data: DataSplits | None,
    budget: Budget,
    strategy: str | StrategyConfig = "haq",
    config: SearchConfig | None = None,
    *,
    graph: Graph | None = None,
    evaluator: Evaluator | None = None,
    rescorer: Evaluator | None = None,
    **settings: Any,
) -> SearchResult:
    """Find a policy that fits `budget` and keeps accuracy; see the module docstring.

    `strategy`: a registered name (its config's fields may be given as keywords, e.g.
    `episodes=40, weights_only=True`) or a config (`create("haq", ...)`, `HAQConfig(...)`).
    `config`: run directory, seed, QAT settings, resume, device, workers (SearchConfig).
    `evaluator` (policy -> held-out accuracy %) replaces the QAT evaluator built from `model`
    and `data`; `rescorer` scores the final top-k (default: the evaluator's `rescorer()`, or
    the evaluator itself).
    """
    config = config or SearchConfig()
    misplaced = sorted(set(settings) & {f.name for f in dataclasses.fields(SearchConfig)})
    if misplaced:
        raise MicromixError(
            f"{misplaced[0]} is a setting of how the search runs, not of the strategy: "
            f"pass config=SearchConfig({misplaced[0]}=...)."
        )
    cfg = resolve_config(strategy, settings)
    entry = get(cfg.name)
    if graph is None:
        if model is None:
            raise MicromixError("search needs a model or a traced graph.")
        graph = trace(model)
    scheduling = config.scheduling
    _validate(cfg, graph, budget, scheduling)  # before any training
    evaluator, rescorer = _evaluators(model, data, graph, config, evaluator, rescorer)
    identity = search_identity(cfg, evaluator, config.seed, budget, graph, scheduling)
    rd = _open_search_dir(model, config, identity)
    cached = CachedEvaluator(evaluator)
    parallel = (config.workers, config.ray_address)
    pool = make_pool(evaluator, *parallel) if entry.episodic else None
    ctx = SearchContext(
        graph=graph,
        budget=budget,
        sizes=scheduling.sizes(graph),
        cached=cached,
        pool=pool,
        identity=identity,
        model=model,
        data=data,
        qat=config.qat,
        seed=config.seed,
        run=None if rd is None else rd.path,
        resume=config.resume,
        progress=config.progress,
        stop_after=config.stop_after,
        scheduling=scheduling,
    )
    t0 = time.time()
    try:
        result = entry.run(ctx, cfg)
        stop = config.stop_after
        if stop is None or result.episodes < stop or not entry.episodic:  # finished
            k = getattr(cfg, "top_k", 1)
            _choose(ctx, result, rescorer, k, parallel, config.progress)
    except BaseException:
        if rd is not None:
            rd.close(failed=True)
        raise
    finally:
        if pool is not None:
            pool.close()
    if not entry.episodic:
        result.wall_seconds = time.time() - t0
    result.config = cfg.to_json()
    result.float_accuracy = cached.float_accuracy
    # Policies trained over the whole search (a resumed run counts those before the stop too).
    result.evaluations, result.cache_hits = len(cached.cache), cached.hits
    if rd is not None:
        try:
            _write_outputs(rd.path, graph, result, config.plots)
        except BaseException:
            rd.close(failed=True)  # a --force keeps the earlier search's files
            raise
        rd.close()
    return result


def _evaluators(
    model: nn.Module | None,
    data: DataSplits | None,
    graph: Graph,
    config: SearchConfig,
    evaluator: Evaluator | None,
    rescorer: Evaluator | None,
) -> tuple[Evaluator, Evaluator]:
    """The evaluator (the QAT one of `model` and `data` unless given) and the re-scorer."""
    if evaluator is None:
        config.qat.check_trains()
        if model is None or data is None:
            raise MicromixError("search needs a model and data, or an evaluator.")
        evaluator = QATEvaluator(
            model, data, graph=graph, settings=config.qat, seed=config.seed, device=config.device
        )
    if rescorer is None:
        make = getattr(evaluator, "rescorer", None)
        rescorer = make() if callable(make) else evaluator
    return evaluator, rescorer


def _open_search_dir(model: nn.Module | None, config: SearchConfig, identity: dict[str, Any]):
    """The locked run directory of the search (None without one); a resume must have every
    setting that changes a reward."""
    if config.run_dir is None:
        return None
    spec = None if model is None else spec_of(model)
    return open_run_dir(
        config.run_dir,
        "search",
        {
            **identity,
            "device": config.device,
            "workers": config.workers,  # recorded only: the result does not depend on it
            "model": getattr(model, "micromix_config", None),
            # the model's code (file, NAME, sha256): a resume must name the same one
            "model_spec": None if spec is None else spec.to_json(),
        },
        resume=config.resume,
        force=config.force,
        result_keys=(*identity, "device", "model_spec"),
        owned=SEARCH_FILES,
    )


def _validate(
    cfg: StrategyConfig, graph: Graph, budget: Budget, scheduling: Scheduling | None = None
) -> None:
    check_feasible(graph, budget, scheduling)
    for name in ("episodes", "batch", "top_k", "max_proposals_factor"):
        v = getattr(cfg, name, None)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise MicromixError(f"{name} must be a positive integer, got {v!r}.")
    screen = getattr(cfg, "screen", None)
    if screen is not None and (isinstance(screen, bool) or not screen > 0):
        raise MicromixError(f"screen must be a positive margin in points or None, got {screen!r}.")
    for name in getattr(cfg, "seeds", ()):
        if name not in ("rule", "ilp", "uniform"):
            raise MicromixError(f"seeds may name rule, ilp or uniform, not {name!r}.")
    if cfg.weights_only:
        check_weight_only(graph, budget, scheduling)


def check_weight_only(graph: Graph, budget: Budget, scheduling: Scheduling | None = None) -> None:
    """A weight-only search keeps activations at 8 bits: refuse a budget that cannot hold it
    (RAM under `scheduling`'s schedule; None: layer by layer)."""
    least = Policy.uniform(graph, 2, FIXED_BITS)
    least = memory_report(graph, least) if scheduling is None else scheduling.report(graph, least)
    if not budget.fits(least):
        raise InfeasibleBudgetError(
            "a weight-only search keeps activations at 8 bits, and even with 2-bit weights "
            f"that does not fit ({budget.describe(least)})."
        )


def _choose(
    ctx: SearchContext,
    result: SearchResult,
    rescorer: Evaluator,
    k: int,
    parallel: tuple[int, str | None] = (1, None),
    progress: bool = False,
) -> None:
    """Re-score the top-k distinct policies and every seed policy (rule, ilp); return the best
    re-score (ties: search score). The seeds are always among them, so the returned policy
    re-scores at least as well as each seed, whatever the short fine-tune thought of them.
    One candidate has nothing to choose from: it keeps its search score, re-scored by nobody
    (rule, ilp and uniform; the longer fine-tune was their run's largest memory peak)."""
    cached = ctx.cached
    rows = candidates(result.history, k)
    if len(rows) <= 1:
        return
    policies = [Policy.from_json(h["policy"]) for h in rows]
    workers, address = parallel
    if rescorer is cached.fn:  # the same evaluator (e.g. a synthetic one): scores are known
        scores = cached.many(policies)
    elif workers <= 1:  # one at a time, so the log can say how far it is
        bar = Progress(len(policies), "re-score", enabled=progress)
        scores = []
        for p in policies:
            scores.append(score(rescorer, p))
            bar.update(1, f"held-out {scores[-1]:.2f}%")
        bar.close()
    else:
        pool = make_pool(rescorer, min(workers, len(policies)), address)
        try:
            scores = pool.map(policies)
        finally:
            pool.close()
    result.rescored = [
        {"search_score": h["accuracy"], "heldout_acc": s, "policy": h["policy"]}
        for h, s in zip(rows, scores)
    ]
    i = max(range(len(rows)), key=lambda j: (scores[j], rows[j]["accuracy"], -j))
    result.policy = policies[i]
    result.search_score = rows[i]["accuracy"]
    result.heldout_acc = scores[i]
    result.report = ctx.report(result.policy)


def candidates(history: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The rows the final choice re-scores: the k best distinct policies by search score and
    every seed, each policy once."""
    rows, seen = [], set()
    ranked = sorted((h for h in history if not h.get("screened")), key=lambda h: -h["accuracy"])
    for h in ranked:
        key = json.dumps(h["policy"], sort_keys=True)
        if key not in seen and (len(rows) < k or h.get("seed")):
            seen.add(key)
            rows.append(h)
    return rows


def _write_outputs(run: Path, graph: Graph, result: SearchResult, plots: bool) -> None:
    result.policy.save(run / "policy.json")
    mem = result.report.to_json()
    mem["budget"] = result.budget.to_json()
    mem["utilization"] = result.utilization
    write_json(run / "memory.json", mem)
    write_json(run / "metrics.json", result.metrics())
    if plots:
        from .plots import plot_policy, plot_rewards

        if len(result.history) > 1:
            plot_rewards(result.history, run / "rewards.png")
        plot_policy(graph, result.policy, result.report, result.budget, run / "policy.png")
