"""The episodic strategies: `haq` (the DDPG agent) and `random` (uniform actions).

One episode builds one policy (QuantEnv), the action wall fits it and fills the budget it
leaves unused, and the evaluator scores it. What changed from HAQ's loop (issue 13):

- Seeds: haq first evaluates the rule and ilp policies, stores them in the replay buffer and
  clones the actor onto the better one; warm-up explores around the seeds (truncated normal)
  instead of uniformly. So haq's search score is never below either seed's.
- The replay stores the walled bits as the episode's actions (interval centres), with the
  observations of that walled episode: the reward belongs to what was evaluated.
- Batches: the agent proposes `batch` episodes with the same networks, the pool scores their
  distinct new policies side by side, then the agent learns from all of them in order. The
  result depends on `batch`, never on the number of workers.
- A policy seen before is not evaluated again and does not count against `episodes` (at most
  `max_proposals_factor` x episodes proposals in all, so a converged agent still ends).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import MicromixError
from ..files import load_checkpoint, save_checkpoint, write_text
from ..memory import memory_report
from ..policy import Policy
from ..progress import Progress
from .ddpg import DDPG, DDPGConfig
from .env import OBS_DIM, QuantEnv, reward
from .registry import StrategyConfig, register

DEFAULT_EPISODES = 600


@dataclass(frozen=True)
class RandomConfig(StrategyConfig):
    name = "random"
    episodes: int = DEFAULT_EPISODES  # distinct policies evaluated
    batch: int = 4  # episodes proposed before the agent learns; workers score them side by side
    fill: bool = True  # the wall's upward pass: every evaluated policy fills its budget
    pin_ends: bool = True  # first and last layer's weights at 8 bits (HAQ)
    top_k: int = 3  # distinct best policies re-scored by the longer fine-tune at the end
    max_proposals_factor: int = 5


@dataclass(frozen=True)
class HAQConfig(RandomConfig):
    name = "haq"
    agent: DDPGConfig = field(default_factory=DDPGConfig)
    seeds: tuple[str, ...] = ("rule", "ilp")  # strategies whose policies start the search
    # Surrogate screen: a fresh policy that the ILP's additive model (its summed sensitivity,
    # fitted to the scores trained so far) predicts more than `screen` points below the best
    # score is not trained; the agent learns the predicted score instead, and it does not
    # count against `episodes`. None: every policy is trained.
    screen: float | None = None


def _seed_rng(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_states() -> dict[str, Any]:
    """Global RNG states as plain values (the checkpoint loads with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "numpy": [kind, torch.from_numpy(np.asarray(keys).astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
    }


def _set_rng_states(s: dict[str, Any]) -> None:
    random.setstate((s["python_version"], tuple(s["python"]), s["python_gauss"]))
    kind, keys, pos, has_gauss, gauss = s["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(s["torch"])


@register("random", RandomConfig, episodic=True)
def run_random(ctx, cfg: RandomConfig):
    return _episodic(ctx, cfg, haq=False)


@register("haq", HAQConfig, episodic=True)
def run_haq(ctx, cfg: HAQConfig):
    return _episodic(ctx, cfg, haq=True)


def _episodic(ctx, cfg: RandomConfig, haq: bool):
    from .engine import SearchResult, check_identity

    graph, budget = ctx.graph, ctx.budget
    env = QuantEnv(graph, budget, cfg.weights_only, pin_ends=cfg.pin_ends, sizes=ctx.sizes)
    wall = ctx.wall(cfg.weights_only)
    gains = ctx.gains() if haq and cfg.fill else None
    surrogate = Surrogate(graph, ctx.sensitivities(), cfg.screen) if haq and cfg.screen else None
    agent = (
        DDPG(OBS_DIM, env.steps_per_episode, cfg.agent, ctx.seed, episodes=cfg.episodes)
        if haq
        else None
    )
    rng = np.random.default_rng(ctx.seed)  # the random strategy's actions
    history: list[dict[str, Any]] = []
    seeds: list[list[float]] = []  # walled actions of the seed policies
    best: list[Any] | None = None  # [accuracy, row index]
    elapsed, proposals = 0.0, 0
    boost = 1.0  # exploration boost: doubles after each batch that found nothing new
    run = ctx.run
    ck_path = run / "checkpoint.pt" if run is not None else None
    _seed_rng(ctx.seed)
    resumed = False
    if ctx.resume and ck_path is not None and ck_path.exists():
        ck = load_checkpoint(ck_path)
        check_identity(ck.get("identity"), ctx.identity, ck_path)
        if agent is not None:
            agent.load_state_dict(ck["agent"])
        rng.bit_generator.state = ck["rng"]["strategy"]
        _set_rng_states(ck["rng"]["global"])
        ctx.cached.cache.update(ck["cache"])
        history, best, elapsed = ck["history"], ck["best"], ck["elapsed"]
        seeds, proposals, boost = ck["seeds"], ck["proposals"], ck["boost"]
        resumed = True
    if run is not None:  # drop lines written after the last checkpoint
        write_text(run / "episodes.jsonl", "".join(json.dumps(h) + "\n" for h in history))

    def distinct() -> int:
        return sum(1 for h in history if h["new"])

    def record(rows: list[dict[str, Any]]) -> None:
        nonlocal best
        for row in rows:
            history.append(row)
            if row.get("screened"):
                continue
            if best is None or row["accuracy"] > best[0]:
                best = [row["accuracy"], len(history) - 1]
        if run is not None:
            with open(run / "episodes.jsonl", "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)

    def checkpoint() -> None:
        if ck_path is None:
            return
        save_checkpoint(
            ck_path,
            {
                "identity": ctx.identity,
                "agent": agent.state_dict() if agent is not None else None,
                "rng": {"strategy": rng.bit_generator.state, "global": _rng_states()},
                "cache": dict(ctx.cached.cache),
                "history": history,
                "best": best,
                "elapsed": elapsed,
                "seeds": seeds,
                "proposals": proposals,
                "boost": boost,
            },
        )

    def walled(proposal: Policy) -> tuple[Policy, Any]:
        policy, report = wall.enforce(proposal)
        if cfg.fill:
            policy, report = wall.fill_exchange(policy, gains)
        return policy, report

    def row(i: int, policy: Policy, report, acc: float, new: bool, secs: float, **kw) -> dict:
        return {
            "episode": i,
            "new": new,
            "accuracy": acc,
            "reward": reward(acc, ctx.cached.float_accuracy or 0.0),
            "flash_bytes": report.flash_bytes,
            "ram_bytes": report.ram_bytes,
            "seconds": secs,
            "policy": policy.to_json(),
            **kw,
        }

    t_start = time.time()
    if haq and not resumed and cfg.seeds:
        from .simple import seed_policy

        seed_rows, pols = [], []
        for name in cfg.seeds:
            policy = seed_policy(ctx, name, cfg.weights_only, cfg.fill)
            pols.append((name, policy, memory_report(graph, policy)))
        accs = ctx.cached.many([p for _, p, _ in pols], ctx.pool)
        seen: set[str] = set()
        for (name, policy, report), acc in zip(pols, accs):
            actions = env.actions_of(policy)
            seeds.append(actions)
            agent.remember(env.transitions(actions), reward(acc, ctx.cached.float_accuracy or 0.0))
            new = policy.key() not in seen
            seen.add(policy.key())
            seed_rows.append(row(-1, policy, report, acc, new, 0.0, seed=name))
        top = max(range(len(seed_rows)), key=lambda i: seed_rows[i]["accuracy"])
        trans = env.transitions(seeds[top])
        agent.clone(np.stack([t[0] for t in trans]), np.asarray([t[1] for t in trans]))
        elapsed += time.time() - t_start
        record(seed_rows)
        checkpoint()

    stop = cfg.episodes if ctx.stop_after is None else min(cfg.episodes, ctx.stop_after)
    cap = cfg.max_proposals_factor * cfg.episodes
    # A bar on a terminal; in a log, one line per batch of episodes.
    bar = Progress(
        cfg.episodes, cfg.name, enabled=ctx.progress, initial=min(distinct(), cfg.episodes)
    )
    while distinct() < stop and proposals < cap:
        t0 = time.time()
        n_done = distinct()
        batch = []
        for _ in range(cfg.batch):
            obs, done, actions = env.reset(), False, []
            around = seeds[proposals % len(seeds)] if seeds else None
            while not done:
                if agent is None:
                    a = float(rng.uniform())
                else:
                    mu = around[len(actions)] if around is not None else None
                    a = agent.act(obs, _schedule(agent, proposals, n_done), around=mu, boost=boost)
                obs, done = env.step(a)
                actions.append(a)
            policy, report = walled(env.proposal())
            batch.append((proposals, policy, report))
            proposals += 1
        # The distinct new policies of the batch, in order, up to what the budget has left.
        seen = dict(ctx.cached.cache)
        fresh: list[Policy] = []
        for _, p, _ in batch:
            if p.key() not in seen and len(fresh) < stop - n_done:
                seen[p.key()] = 0.0
                fresh.append(p)
        predicted: dict[str, float] = {}
        if surrogate is not None and best is not None:
            scored = [h for h in history if not h.get("screened")]
            kept = []
            for p in fresh:
                guess = surrogate.screen(p, best[0], scored)
                if guess is None:
                    kept.append(p)
                else:
                    predicted[p.key()] = guess
            fresh = kept
        ctx.cached.many(fresh, ctx.pool, incumbent=None if best is None else best[0])
        fresh_keys = {p.key() for p in fresh}
        secs = (time.time() - t0) / len(batch)
        rows = []
        for i, policy, report in batch:
            key = policy.key()
            extra = {}
            if key in predicted:  # screened: learnt from the surrogate's guess, not trained
                acc, new, extra = predicted[key], False, {"screened": True}
            elif key not in ctx.cached.cache:  # over the episode budget: not evaluated or learnt
                continue
            else:
                new = key in fresh_keys
                fresh_keys.discard(key)
                acc = ctx.cached.cache[key]
            r = row(i, policy, report, acc, new, secs, **extra)
            if agent is not None:
                trans = env.transitions(env.actions_of(policy))
                agent.remember(trans, r["reward"])
                r["sigma"] = agent.sigma(_schedule(agent, i, n_done))
            rows.append(r)
        boost = 1.0 if fresh or predicted else min(boost * 2.0, 64.0)
        if agent is not None:
            for r in rows:  # a repeat is remembered but pays for no updates (HAQ: one per
                if r["new"]:  # transition of an evaluated episode)
                    agent.end_episode(_schedule(agent, r["episode"], n_done), env.steps_per_episode)
        elapsed += time.time() - t0
        record(rows)
        checkpoint()
        bar.update(distinct() - bar.done, "" if best is None else f"best {best[0]:.2f}%")
    bar.close()
    if best is None:
        raise MicromixError("the search ran no episode.")
    top = history[best[1]]
    policy = Policy.from_json(top["policy"])
    return SearchResult(
        cfg.name,
        policy,
        top["accuracy"],
        memory_report(graph, policy),
        budget,
        episodes=distinct(),
        proposals=proposals,
        wall_seconds=elapsed,
        history=history,
    )


class Surrogate:
    """The ILP's additive model as a predictor: accuracy ~ a - b x (summed sensitivity), a and
    b fitted (least squares, b >= 0) on the policies trained so far."""

    def __init__(self, graph, sens: dict, margin: float) -> None:
        from .ilp import policy_cost

        self.cost = lambda p: policy_cost(p, graph, sens)
        self.margin = margin

    def predict(self, policy: Policy, scored: list[dict]) -> float | None:
        """The predicted score, or None while the trained policies cannot fit a line."""
        x = np.array([self.cost(Policy.from_json(h["policy"])) for h in scored])
        y = np.array([h["accuracy"] for h in scored])
        if len(x) < 2 or np.ptp(x) <= 0:
            return None
        b = max(0.0, -float(np.polyfit(x, y, 1)[0]))
        a = float(np.mean(y + b * x))
        return a - b * self.cost(policy)

    def screen(self, policy: Policy, incumbent: float, scored: list[dict]) -> float | None:
        """None when `policy` is worth training, else the predicted score the agent learns
        instead (more than `margin` points below the `incumbent` score)."""
        guess = self.predict(policy, scored)
        if guess is None or guess >= incumbent - self.margin:
            return None
        return guess


def _schedule(agent: DDPG, proposal: int, distinct: int) -> int:
    """The episode index of the agent's schedule: warm-up lasts `warmup` proposals; after it,
    exploration decays with the distinct policies found, so repeats keep it wide."""
    w = agent.cfg.warmup
    return proposal if proposal < w else w + max(0, distinct - w)
