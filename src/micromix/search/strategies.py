"""`search()`: one entry point for the five strategies, with run directory and resume.

- haq: the DDPG agent proposes, the action wall fits, a short QAT fine-tune scores (HAQ).
- random: the same episode loop with uniform random actions (through the same wall).
- rule: the MLSys 2020 procedure alone, from 8 bits everywhere.
- ilp: per-tensor sensitivities and an exact integer program (see ilp.py).
- uniform: the highest uniform (weight, activation) bits that fit, tried in UNIFORM_ORDER.

The episodic strategies write one JSON line per episode and an atomic checkpoint after each
(agent, replay buffer, evaluation cache, history and every RNG state), so `resume=True`
after a `kill -9` ends with the same best policy as an uninterrupted run.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ..budget import Budget, check_feasible
from ..data import DataSplits
from ..errors import CheckpointError, MicromixError
from ..graph import Graph, trace
from ..memory import MemoryReport, memory_report
from ..policy import Policy
from ..rundir import load_checkpoint, open_run_dir, save_checkpoint, write_json, write_text
from .ddpg import DDPG, DDPGConfig
from .env import OBS_DIM, QuantEnv, reward
from .evaluate import CachedEvaluator, Evaluator, QATEvaluator, QATSettings, threads
from .ilp import evaluator_sensitivity, measure_sensitivity, solve_ilp
from .wall import Wall, rule_policy

STRATEGIES = ("haq", "rule", "ilp", "uniform", "random")
# Most total bits first; on a tie weights keep more bits (FLASH is usually the looser budget).
UNIFORM_ORDER = ((8, 8), (8, 4), (4, 8), (8, 2), (2, 8), (4, 4), (4, 2), (2, 4), (2, 2))
DEFAULT_EPISODES = 600
ILP_CALIB_IMAGES = 1024
# Settings a resumed search must share with the interrupted one (the evaluator's class name
# is recorded but not compared: a wrapper around the same evaluator is fine).
SEARCH_RESULT_KEYS = (
    "strategy",
    "budget",
    "episodes",
    "weights_only",
    "seed",
    "agent",
    "qat",
    "device",
    "model",
)
# What a search writes into its run directory (`force=True` removes these first).
SEARCH_FILES = (
    "checkpoint.pt",
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
    accuracy: float  # held-out accuracy after the short fine-tune
    report: MemoryReport
    budget: Budget
    float_accuracy: float | None = None
    episodes: int = 0
    evaluations: int = 0  # distinct policies trained over the whole search
    cache_hits: int = 0  # evaluations the cache saved in this call
    wall_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def utilization(self) -> dict[str, float | None]:
        return self.budget.utilization(self.report)

    def metrics(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "best_accuracy": self.accuracy,
            "float_accuracy": self.float_accuracy,
            "flash_bytes": self.report.flash_bytes,
            "ram_bytes": self.report.ram_bytes,
            "budget": self.budget.to_json(),
            "utilization": self.utilization,
            "episodes": self.episodes,
            "evaluations": self.evaluations,
            "cache_hits": self.cache_hits,
            "wall_seconds": self.wall_seconds,
        }


def search(
    model: nn.Module | None,
    data: DataSplits | None,
    budget: Budget,
    strategy: str = "haq",
    *,
    episodes: int | None = None,
    run_dir: str | Path | None = None,
    seed: int = 0,
    evaluator: Evaluator | None = None,
    resume: bool = False,
    force: bool = False,
    graph: Graph | None = None,
    agent: DDPGConfig | None = None,
    qat: QATSettings | None = None,
    train_images: int | None = None,
    eval_images: int | None = None,
    warmup: int | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    plots: bool = True,
    stop_after: int | None = None,
    weights_only: bool = False,
) -> SearchResult:
    """Find a policy that fits `budget` and keeps accuracy; see the module docstring.

    `evaluator` (policy -> held-out accuracy %) replaces the QAT evaluator built from `model`
    and `data`. `train_images`, `eval_images` and `warmup` are shortcuts for the fields of
    `qat` (QATSettings) and `agent` (DDPGConfig). `stop_after` ends an episodic run after
    that many episodes in total, as an interruption would (for tests); the checkpoint lets
    `resume=True` finish it. `weights_only` searches weight bits alone (activations at 8),
    HAQ's weight-only mode for FLASH-only comparisons.
    """
    if strategy not in STRATEGIES:
        raise MicromixError(
            f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}."
        )
    if graph is None:
        if model is None:
            raise MicromixError("search needs a model or a traced graph.")
        graph = trace(model)
    check_feasible(graph, budget)  # before any training
    agent = agent or DDPGConfig()
    qat = qat or QATSettings()
    if warmup is not None:
        agent = replace(agent, warmup=int(warmup))
    if train_images is not None:
        qat = replace(qat, train_images=int(train_images))
    if eval_images is not None:
        qat = replace(qat, eval_images=int(eval_images))
    for what, n in (("train", qat.train_images), ("eval", qat.eval_images)):
        if n < 1:
            raise MicromixError(f"--{what}-images must be at least 1, got {n}.")
    if evaluator is None and qat.train_images < qat.batch_size:
        raise MicromixError(
            f"--train-images {qat.train_images} is fewer than one fine-tune batch of the search "
            f"({qat.batch_size} images), so no policy would be trained; use at least {qat.batch_size}."
        )
    episodes = DEFAULT_EPISODES if episodes is None else int(episodes)
    if strategy in ("haq", "random") and episodes < 1:
        raise MicromixError(f"--episodes must be at least 1, got {episodes}.")
    if evaluator is None:
        if model is None or data is None:
            raise MicromixError("search needs a model and data, or an evaluator.")
        evaluator = QATEvaluator(model, data, graph=graph, settings=qat, seed=seed, device=device)
    cached = CachedEvaluator(evaluator)
    run = None
    if run_dir is not None:  # lock + identity check (resume needs the same settings), then config
        rd = open_run_dir(
            run_dir,
            "search",
            {
                "strategy": strategy,
                "budget": budget.to_json(),
                "episodes": episodes,
                "weights_only": weights_only,
                "seed": seed,
                "agent": agent.to_json(),
                "qat": qat.to_json(),
                "evaluator": type(evaluator).__name__,
                "device": str(device),
                "model": getattr(model, "micromix_config", None),
            },
            resume=resume,
            force=force,
            result_keys=SEARCH_RESULT_KEYS,
            owned=SEARCH_FILES,
        )
        run = rd.path
    t0 = time.time()
    if strategy in ("haq", "random"):
        result = _episodic(
            graph,
            budget,
            cached,
            strategy,
            episodes,
            seed,
            run,
            resume,
            agent,
            progress,
            stop_after,
            weights_only,
        )
    else:
        if strategy == "rule":
            policy = rule_policy(graph, budget)
        elif strategy == "uniform":
            policy = uniform_policy(graph, budget)
        else:
            if model is not None and data is not None:
                calib = data.train.subset(ILP_CALIB_IMAGES, seed=seed)
                with threads(qat.threads):
                    sens = measure_sensitivity(model.eval(), graph, calib)
            else:
                sens = evaluator_sensitivity(graph, cached)
            policy = solve_ilp(graph, budget, sens)
        policy, report = Wall(graph, budget).enforce(policy)  # a no-op on a fitting policy
        acc = cached(policy)
        result = SearchResult(strategy, policy, acc, report, budget)
        result.history = [_row(0, policy, report, acc, cached.float_accuracy, time.time() - t0)]
        result.wall_seconds = time.time() - t0
    result.float_accuracy = cached.float_accuracy
    # Policies trained over the whole search (a resumed run counts those before the stop too).
    result.evaluations, result.cache_hits = len(cached.cache), cached.hits
    if run is not None:
        _write_outputs(run, graph, result, plots)
        rd.close()
    return result


def uniform_policy(graph: Graph, budget: Budget) -> Policy:
    for w, a in UNIFORM_ORDER:
        p = Policy.uniform(graph, w, a)
        if budget.fits(memory_report(graph, p)):
            return p
    raise MicromixError("no uniform policy fits the budget.")  # check_feasible rules this out


def _row(ep: int, policy: Policy, report: MemoryReport, acc: float, float_acc, secs: float):
    return {
        "episode": ep,
        "accuracy": acc,
        "reward": reward(acc, float_acc or 0.0),
        "flash_bytes": report.flash_bytes,
        "ram_bytes": report.ram_bytes,
        "seconds": secs,
        "policy": policy.to_json(),
    }


def _rng_states() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": _plain_np_state(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }


def _plain_np_state(s: tuple) -> tuple:
    """numpy's legacy state with its key as a list: checkpoints hold no numpy objects."""
    return (s[0], [int(k) for k in s[1]], *s[2:])


def _set_rng_states(s: dict[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])


def _episodic(
    graph: Graph,
    budget: Budget,
    cached: CachedEvaluator,
    strategy: str,
    episodes: int,
    seed: int,
    run: Path | None,
    resume: bool,
    cfg: DDPGConfig,
    progress: bool,
    stop_after: int | None,
    weights_only: bool = False,
) -> SearchResult:
    env, wall = QuantEnv(graph, budget, weights_only), Wall(graph, budget)
    agent = DDPG(OBS_DIM, env.steps_per_episode, cfg, seed) if strategy == "haq" else None
    rng = np.random.default_rng(seed)  # the random strategy's actions
    history: list[dict[str, Any]] = []
    best: tuple[float, int] | None = None  # (accuracy, episode)
    elapsed = 0.0
    ck_path = run / "checkpoint.pt" if run is not None else None
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if resume and ck_path is not None and ck_path.exists():
        ck = load_checkpoint(ck_path)
        want = {
            "strategy": strategy,
            "seed": seed,
            "budget": budget.to_json(),
            "key": _graph_key(graph),
        }
        if ck.get("identity") != want:
            raise CheckpointError(
                f"checkpoint {ck_path} belongs to another search (strategy, seed, budget or model differ)."
            )
        if agent is not None:
            agent.load_state_dict(ck["agent"])
        rng.bit_generator.state = ck["rng"]["strategy"]
        _set_rng_states(ck["rng"]["global"])
        cached.cache.update(ck["cache"])
        history, best, elapsed = ck["history"], ck["best"], ck["elapsed"]
    if run is not None:  # drop lines written after the last checkpoint
        write_text(run / "episodes.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    start = len(history)
    stop = episodes if stop_after is None else min(episodes, stop_after)
    bar = tqdm(
        total=episodes, initial=start, desc=strategy, disable=not progress, dynamic_ncols=True
    )
    for ep in range(start, stop):
        t_ep = time.time()
        obs, done, trans = env.reset(), False, []
        while not done:
            a = agent.act(obs, ep) if agent is not None else float(rng.uniform())
            nxt, done = env.step(a)
            trans.append((obs, a, nxt, done))
            obs = nxt
        policy, report = wall.enforce(env.proposal())
        acc = cached(policy)
        row = _row(ep, policy, report, acc, cached.float_accuracy, 0.0)
        if agent is not None:
            agent.remember(trans, row["reward"])
            agent.end_episode(ep, len(trans))
            row["sigma"] = agent.sigma(ep)
        row["seconds"] = time.time() - t_ep
        history.append(row)
        if best is None or acc > best[0]:
            best = (acc, ep)
            if run is not None:
                policy.save(run / "policy.json")
        elapsed += row["seconds"]
        if run is not None:
            with open(run / "episodes.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            state = {
                "identity": {
                    "strategy": strategy,
                    "seed": seed,
                    "budget": budget.to_json(),
                    "key": _graph_key(graph),
                },
                "agent": agent.state_dict() if agent is not None else None,
                "rng": {"strategy": rng.bit_generator.state, "global": _rng_states()},
                "cache": cached.cache,
                "history": history,
                "best": best,
                "elapsed": elapsed,
            }
            save_checkpoint(ck_path, state)
        bar.update(1)
        bar.set_postfix(best=f"{best[0]:.2f}%", last=f"{acc:.2f}%")
    bar.close()
    if best is None:
        raise MicromixError("the search ran no episode.")
    top = history[best[1]]
    policy = Policy.from_json(top["policy"])
    return SearchResult(
        strategy,
        policy,
        top["accuracy"],
        memory_report(graph, policy),
        budget,
        episodes=len(history),
        wall_seconds=elapsed,
        history=history,
    )


def _graph_key(graph: Graph) -> str:
    return ";".join(f"{o.name}:{o.kind}:{o.out_shape}" for o in graph.ops)


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
