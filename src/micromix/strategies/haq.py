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
    """The random strategy (haq=False) and HAQ's agent: batches of walled proposals, the new
    ones scored, the agent taught, a checkpoint after every batch (see `_Episodes`)."""
    run = _Episodes(ctx, cfg, haq)
    if haq and not run.resumed and cfg.seeds:
        run.seed()
    stop = cfg.episodes if ctx.stop_after is None else min(cfg.episodes, ctx.stop_after)
    cap = cfg.max_proposals_factor * cfg.episodes
    # A bar on a terminal; in a log, one line per batch of episodes.
    bar = Progress(
        cfg.episodes, cfg.name, enabled=ctx.progress, initial=min(run.distinct(), cfg.episodes)
    )
    while run.distinct() < stop and run.proposals < cap:
        run.batch(stop)
        best = run.best
        bar.update(run.distinct() - bar.done, "" if best is None else f"best {best[0]:.2f}%")
    bar.close()
    return run.result()


class _Episodes:
    """The state of an episodic search (history, best, seeds, the agent, the RNGs) and its
    steps; every field that a resume needs is in `checkpoint`."""

    def __init__(self, ctx, cfg: RandomConfig, haq: bool) -> None:
        graph = ctx.graph
        self.ctx, self.cfg = ctx, cfg
        self.env = QuantEnv(
            graph, ctx.budget, cfg.weights_only, pin_ends=cfg.pin_ends, sizes=ctx.sizes
        )
        self.wall = ctx.wall(cfg.weights_only)
        self.gains = ctx.gains() if haq and cfg.fill else None
        self.surrogate = (
            Surrogate(graph, ctx.sensitivities(), cfg.screen) if haq and cfg.screen else None
        )
        self.agent = (
            DDPG(OBS_DIM, self.env.steps_per_episode, cfg.agent, ctx.seed, episodes=cfg.episodes)
            if haq
            else None
        )
        self.rng = np.random.default_rng(ctx.seed)  # the random strategy's actions
        self.history: list[dict[str, Any]] = []
        self.seeds: list[list[float]] = []  # walled actions of the seed policies
        self.best: list[Any] | None = None  # [accuracy, row index]
        self.elapsed, self.proposals = 0.0, 0
        self.boost = 1.0  # exploration boost: doubles after each batch that found nothing new
        self.ck_path = ctx.run / "checkpoint.pt" if ctx.run is not None else None
        _seed_rng(ctx.seed)
        self.resumed = self._resume()
        if ctx.run is not None:  # drop lines written after the last checkpoint
            text = "".join(json.dumps(h) + "\n" for h in self.history)
            write_text(ctx.run / "episodes.jsonl", text)

    def _resume(self) -> bool:
        from .engine import check_identity

        ctx, ck_path = self.ctx, self.ck_path
        if not (ctx.resume and ck_path is not None and ck_path.exists()):
            return False
        ck = load_checkpoint(ck_path)
        check_identity(ck.get("identity"), ctx.identity, ck_path)
        if self.agent is not None:
            self.agent.load_state_dict(ck["agent"])
        self.rng.bit_generator.state = ck["rng"]["strategy"]
        _set_rng_states(ck["rng"]["global"])
        ctx.cached.cache.update(ck["cache"])
        self.history, self.best, self.elapsed = ck["history"], ck["best"], ck["elapsed"]
        self.seeds, self.proposals, self.boost = ck["seeds"], ck["proposals"], ck["boost"]
        return True

    def distinct(self) -> int:
        return sum(1 for h in self.history if h["new"])

    def record(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.history.append(row)
            if row.get("screened"):
                continue
            if self.best is None or row["accuracy"] > self.best[0]:
                self.best = [row["accuracy"], len(self.history) - 1]
        if self.ctx.run is not None:
            with open(self.ctx.run / "episodes.jsonl", "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)

    def checkpoint(self) -> None:
        if self.ck_path is None:
            return
        agent = self.agent
        save_checkpoint(
            self.ck_path,
            {
                "identity": self.ctx.identity,
                "agent": agent.state_dict() if agent is not None else None,
                "rng": {"strategy": self.rng.bit_generator.state, "global": _rng_states()},
                "cache": dict(self.ctx.cached.cache),
                "history": self.history,
                "best": self.best,
                "elapsed": self.elapsed,
                "seeds": self.seeds,
                "proposals": self.proposals,
                "boost": self.boost,
            },
        )

    def walled(self, proposal: Policy) -> tuple[Policy, Any]:
        policy, report = self.wall.enforce(proposal)
        if self.cfg.fill:
            policy, report = self.wall.fill_exchange(policy, self.gains)
        return policy, report

    def row(self, i: int, policy: Policy, report, acc: float, new: bool, secs: float, **kw):
        # the wall's trial report bounds the RAM; a recorded row has the exact one
        report = self.ctx.report(policy)
        return {
            "episode": i,
            "new": new,
            "accuracy": acc,
            "reward": reward(acc, self.ctx.cached.float_accuracy or 0.0),
            "flash_bytes": report.flash_bytes,
            "ram_bytes": report.ram_bytes,
            "seconds": secs,
            "policy": policy.to_json(),
            **kw,
        }

    def seed(self) -> None:
        """Score the seed policies (rule, ilp), teach the agent their transitions, and clone
        the best one into its actor."""
        from .simple import seed_policy

        ctx, cfg, env, agent = self.ctx, self.cfg, self.env, self.agent
        t_start = time.time()
        seed_rows, pols = [], []
        for name in cfg.seeds:
            policy = seed_policy(ctx, name, cfg.weights_only, cfg.fill)
            pols.append((name, policy, ctx.report(policy)))
        accs = ctx.cached.many([p for _, p, _ in pols], ctx.pool)
        seen: set[str] = set()
        for (name, policy, report), acc in zip(pols, accs):
            actions = env.actions_of(policy)
            self.seeds.append(actions)
            agent.remember(env.transitions(actions), reward(acc, ctx.cached.float_accuracy or 0.0))
            new = policy.key() not in seen
            seen.add(policy.key())
            seed_rows.append(self.row(-1, policy, report, acc, new, 0.0, seed=name))
        top = max(range(len(seed_rows)), key=lambda i: seed_rows[i]["accuracy"])
        trans = env.transitions(self.seeds[top])
        agent.clone(np.stack([t[0] for t in trans]), np.asarray([t[1] for t in trans]))
        self.elapsed += time.time() - t_start
        self.record(seed_rows)
        self.checkpoint()

    def _propose(self, n_done: int) -> list[tuple[int, Policy, Any]]:
        """One batch of walled proposals: the agent's (around a seed's actions) or random."""
        env, agent, batch = self.env, self.agent, []
        for _ in range(self.cfg.batch):
            obs, done, actions = env.reset(), False, []
            around = self.seeds[self.proposals % len(self.seeds)] if self.seeds else None
            while not done:
                if agent is None:
                    a = float(self.rng.uniform())
                else:
                    mu = around[len(actions)] if around is not None else None
                    step = _schedule(agent, self.proposals, n_done)
                    a = agent.act(obs, step, around=mu, boost=self.boost)
                obs, done = env.step(a)
                actions.append(a)
            policy, report = self.walled(env.proposal())
            batch.append((self.proposals, policy, report))
            self.proposals += 1
        return batch

    def _fresh(self, batch, room: int) -> tuple[list[Policy], dict[str, float]]:
        """The distinct new policies of the batch, in order, up to `room`; those the surrogate
        screens out get its guess instead of a fine-tune."""
        seen = dict(self.ctx.cached.cache)
        fresh: list[Policy] = []
        for _, p, _ in batch:
            if p.key() not in seen and len(fresh) < room:
                seen[p.key()] = 0.0
                fresh.append(p)
        predicted: dict[str, float] = {}
        if self.surrogate is not None and self.best is not None:
            scored = [h for h in self.history if not h.get("screened")]
            kept = []
            for p in fresh:
                guess = self.surrogate.screen(p, self.best[0], scored)
                if guess is None:
                    kept.append(p)
                else:
                    predicted[p.key()] = guess
            fresh = kept
        return fresh, predicted

    def batch(self, stop: int) -> None:
        ctx, agent = self.ctx, self.agent
        t0 = time.time()
        n_done = self.distinct()
        batch = self._propose(n_done)
        fresh, predicted = self._fresh(batch, stop - n_done)
        incumbent = None if self.best is None else self.best[0]
        ctx.cached.many(fresh, ctx.pool, incumbent=incumbent)
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
            r = self.row(i, policy, report, acc, new, secs, **extra)
            if agent is not None:
                agent.remember(self.env.transitions(self.env.actions_of(policy)), r["reward"])
                r["sigma"] = agent.sigma(_schedule(agent, i, n_done))
            rows.append(r)
        self.boost = 1.0 if fresh or predicted else min(self.boost * 2.0, 64.0)
        if agent is not None:
            for r in rows:  # a repeat is remembered but pays for no updates (HAQ: one per
                if r["new"]:  # transition of an evaluated episode)
                    step = _schedule(agent, r["episode"], n_done)
                    agent.end_episode(step, self.env.steps_per_episode)
        self.elapsed += time.time() - t0
        self.record(rows)
        self.checkpoint()

    def result(self):
        from .engine import SearchResult

        if self.best is None:
            raise MicromixError("the search ran no episode.")
        top = self.history[self.best[1]]
        policy = Policy.from_json(top["policy"])
        return SearchResult(
            self.cfg.name,
            policy,
            top["accuracy"],
            self.ctx.report(policy),
            self.ctx.budget,
            episodes=self.distinct(),
            proposals=self.proposals,
            wall_seconds=self.elapsed,
            history=self.history,
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
