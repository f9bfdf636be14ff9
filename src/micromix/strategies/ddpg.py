"""DDPG with HAQ's defaults: the agent that proposes one bit-width per step.

Follows HAQ's public code where the paper is silent: a final-layer init of U(-3e-3, 3e-3), one
update per stored transition after each episode, and the moving-average baseline (alpha 0.5)
of the sampled batch's mean reward subtracted at update time (every stored transition of an
episode carries that episode's final reward). The agent owns its random generators, so the
global RNGs (which QAT fine-tuning reseeds) never change what it does.

Differences from HAQ's code, for short searches (issue 13): the exploration width decays to
`sigma_end` at the last episode whatever the episode count (HAQ's 0.99 per episode is sized for
600); warm-up explores around given seed actions (truncated normal) instead of uniformly; and
`clone` fits the actor to a seed policy's actions (behaviour cloning) before the search.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from scipy.special import ndtr, ndtri


@dataclass(frozen=True)
class DDPGConfig:
    hidden: int = 300
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01
    discount: float = 1.0
    buffer_episodes: int = 128  # replay capacity = this x steps per episode
    batch_size: int = 64
    warmup: int = 20  # episodes of exploration without updates
    sigma: float = 0.5  # exploration: sigma x sigma_decay ** (episode - warmup)
    # None: the decay that reaches sigma_end at the last episode (scaled to the episode count).
    sigma_decay: float | None = None
    sigma_end: float = 0.05
    warmup_sigma: float = 0.3  # warm-up width around seed actions (uniform without seeds)
    baseline_alpha: float = 0.5
    init_w: float = 3e-3
    clone_steps: int = 300  # behaviour-cloning SGD steps onto the best seed (0: none)
    clone_lr: float = 1e-3
    reward_clip: float | None = None  # clip rewards to +-this before storing (None: no clip)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def decay(self, episodes: int) -> float:
        if self.sigma_decay is not None:
            return self.sigma_decay
        n = max(1, episodes - self.warmup - 1)
        return (
            (min(self.sigma_end, self.sigma) / self.sigma) ** (1.0 / n) if self.sigma > 0 else 1.0
        )


def mlp(n_in: int, hidden: int, n_out: int, init_w: float) -> nn.Sequential:
    net = nn.Sequential(
        nn.Linear(n_in, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_out),
    )
    nn.init.uniform_(net[-1].weight, -init_w, init_w)
    nn.init.uniform_(net[-1].bias, -init_w, init_w)
    return net


class Actor(nn.Module):
    def __init__(self, obs_dim: int, hidden: int, init_w: float) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden, 1, init_w)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(obs))


class Critic(nn.Module):
    def __init__(self, obs_dim: int, hidden: int, init_w: float) -> None:
        super().__init__()
        self.net = mlp(obs_dim + 1, hidden, 1, init_w)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=1))


class ReplayBuffer:
    """A ring buffer of (obs, action, reward, next obs, not-done) in numpy arrays."""

    def __init__(self, capacity: int, obs_dim: int) -> None:
        self.capacity, self.size, self.ptr = capacity, 0, 0
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, 1), np.float32)
        self.reward = np.zeros((capacity, 1), np.float32)
        self.not_done = np.zeros((capacity, 1), np.float32)

    def add(self, obs, action: float, reward: float, next_obs, done: bool) -> None:
        i = self.ptr
        self.obs[i], self.next_obs[i] = obs, next_obs
        self.action[i], self.reward[i], self.not_done[i] = action, reward, 0.0 if done else 1.0
        self.ptr = (self.ptr + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        idx = rng.integers(0, self.size, size=n)
        return (
            self.obs[idx],
            self.action[idx],
            self.reward[idx],
            self.next_obs[idx],
            self.not_done[idx],
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in ("capacity", "size", "ptr", "obs", "next_obs", "action", "reward", "not_done")
        }

    def plain_state(self) -> dict[str, Any]:
        """The state as tensors and Python numbers (loads with torch.load(weights_only=True))."""
        return {
            k: torch.from_numpy(v.copy()) if isinstance(v, np.ndarray) else v
            for k, v in self.state_dict().items()
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for k, v in d.items():
            # Checkpoints store the arrays as tensors (loadable with weights_only=True).
            if isinstance(v, torch.Tensor):
                v = v.numpy()
            setattr(self, k, v.copy() if isinstance(v, np.ndarray) else v)


def truncated_normal(rng: np.random.Generator, mu: float, sigma: float, lo=0.0, hi=1.0) -> float:
    """One draw of N(mu, sigma) restricted to [lo, hi], by inverting the CDF (one uniform)."""
    if sigma <= 0:
        return float(np.clip(mu, lo, hi))
    a, b = ndtr((lo - mu) / sigma), ndtr((hi - mu) / sigma)
    u = rng.uniform(a, b)
    return float(np.clip(mu + sigma * ndtri(u), lo, hi))


@contextmanager
def single_thread() -> Iterator[None]:
    """Tiny MLPs run fastest on one thread; on 2 busy cores two threads cost 10x more."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


class DDPG:
    def __init__(
        self,
        obs_dim: int,
        steps_per_episode: int,
        cfg: DDPGConfig,
        seed: int = 0,
        *,
        episodes: int = 600,
    ) -> None:
        self.cfg, self.obs_dim = cfg, obs_dim
        self.sigma_decay = cfg.decay(episodes)
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(seed)
            self.actor = Actor(obs_dim, cfg.hidden, cfg.init_w)
            self.critic = Critic(obs_dim, cfg.hidden, cfg.init_w)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.lr_actor)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_critic)
        self.buffer = ReplayBuffer(cfg.buffer_episodes * steps_per_episode, obs_dim)
        self.rng = np.random.default_rng(seed)
        self.baseline: float | None = None
        self.updates = 0

    def sigma(self, episode: int) -> float:
        """Exploration width at `episode` (0-based); zero during warm-up (see `act`)."""
        if episode < self.cfg.warmup:
            return 0.0
        return self.cfg.sigma * self.sigma_decay ** (episode - self.cfg.warmup)

    @torch.no_grad()
    def deterministic_action(self, obs: np.ndarray) -> float:
        with single_thread():
            return float(self.actor(torch.as_tensor(obs, dtype=torch.float32)[None])[0, 0])

    def act(
        self, obs: np.ndarray, episode: int, around: float | None = None, boost: float = 1.0
    ) -> float:
        """Warm-up: uniform, or truncated normal around a seed action `around`; then the
        actor's action with truncated-normal noise of width sigma(episode) x boost (at most
        the initial sigma; the search boosts it while it only finds policies it has seen)."""
        if episode < self.cfg.warmup:
            if around is not None:
                return truncated_normal(self.rng, around, self.cfg.warmup_sigma)
            return float(self.rng.uniform(0.0, 1.0))
        sigma = min(self.cfg.sigma, self.sigma(episode) * boost)
        return truncated_normal(self.rng, self.deterministic_action(obs), sigma)

    def clone(self, obs: np.ndarray, actions: np.ndarray, steps: int | None = None) -> float:
        """Behaviour cloning: fit the actor (and its target) to `actions` at `obs` by MSE;
        returns the final loss."""
        steps = self.cfg.clone_steps if steps is None else steps
        x = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(actions), dtype=torch.float32).reshape(-1, 1)
        opt = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.clone_lr)
        loss = torch.zeros(())
        with single_thread():
            for _ in range(steps):
                loss = nn.functional.mse_loss(self.actor(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        self.actor_target.load_state_dict(self.actor.state_dict())
        return float(loss.detach())

    def remember(
        self, transitions: list[tuple[np.ndarray, float, np.ndarray, bool]], reward: float
    ) -> None:
        """Store an episode; every transition carries the episode's final reward."""
        if self.cfg.reward_clip is not None:
            reward = float(np.clip(reward, -self.cfg.reward_clip, self.cfg.reward_clip))
        for obs, action, next_obs, done in transitions:
            self.buffer.add(obs, action, reward, next_obs, done)

    def update(self) -> tuple[float, float]:
        """One DDPG update on a sampled batch; returns (critic loss, actor loss)."""
        cfg = self.cfg
        obs, act, rew, nxt, not_done = (
            torch.from_numpy(x) for x in self.buffer.sample(self.rng, cfg.batch_size)
        )
        mean = float(rew.mean())
        self.baseline = (
            mean
            if self.baseline is None
            else self.baseline + cfg.baseline_alpha * (mean - self.baseline)
        )
        rew = rew - self.baseline
        with torch.no_grad():
            target = rew + cfg.discount * not_done * self.critic_target(nxt, self.actor_target(nxt))
        critic_loss = nn.functional.mse_loss(self.critic(obs, act), target)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        actor_loss = -self.critic(obs, self.actor(obs)).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        with torch.no_grad():
            for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
                for p, q in zip(net.parameters(), tgt.parameters()):
                    q.mul_(1.0 - cfg.tau).add_(p, alpha=cfg.tau)
        self.updates += 1
        return critic_loss.item(), actor_loss.item()

    def end_episode(self, episode: int, n_updates: int) -> None:
        """After an episode past warm-up: as many updates as transitions it stored (HAQ)."""
        if episode < self.cfg.warmup or self.buffer.size < self.cfg.batch_size:
            return
        with single_thread():
            for _ in range(n_updates):
                self.update()

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.cfg.to_json(),
            "nets": {
                k: getattr(self, k).state_dict()
                for k in ("actor", "critic", "actor_target", "critic_target")
            },
            "optim": {"actor": self.actor_opt.state_dict(), "critic": self.critic_opt.state_dict()},
            "buffer": self.buffer.plain_state(),
            "rng": self.rng.bit_generator.state,
            "baseline": self.baseline,
            "updates": self.updates,
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        d = copy.deepcopy(d)  # optimizers keep the given tensors; never share them with `d`'s owner
        for k, v in d["nets"].items():
            getattr(self, k).load_state_dict(v)
        self.actor_opt.load_state_dict(d["optim"]["actor"])
        self.critic_opt.load_state_dict(d["optim"]["critic"])
        self.buffer.load_state_dict(d["buffer"])
        self.rng.bit_generator.state = d["rng"]
        self.baseline, self.updates = d["baseline"], d["updates"]
