"""DDPG with HAQ's defaults: the agent that proposes one bit-width per step.

Follows HAQ's public code where the paper is silent: a final-layer init of U(-3e-3, 3e-3), one
update per stored transition after each episode, and the moving-average baseline (alpha 0.5)
of the sampled batch's mean reward subtracted at update time (every stored transition of an
episode carries that episode's final reward). The agent owns its random generators, so the
global RNGs (which QAT fine-tuning reseeds) never change what it does.
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
    warmup: int = 20  # episodes of uniform random actions, no updates
    sigma: float = 0.5  # exploration: sigma x sigma_decay ** (episode - warmup)
    sigma_decay: float = 0.99
    baseline_alpha: float = 0.5
    init_w: float = 3e-3

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
        self, obs_dim: int, steps_per_episode: int, cfg: DDPGConfig, seed: int = 0
    ) -> None:
        self.cfg, self.obs_dim = cfg, obs_dim
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
        """Exploration width at `episode` (0-based); zero during warm-up (actions are uniform)."""
        if episode < self.cfg.warmup:
            return 0.0
        return self.cfg.sigma * self.cfg.sigma_decay ** (episode - self.cfg.warmup)

    @torch.no_grad()
    def deterministic_action(self, obs: np.ndarray) -> float:
        with single_thread():
            return float(self.actor(torch.as_tensor(obs, dtype=torch.float32)[None])[0, 0])

    def act(self, obs: np.ndarray, episode: int) -> float:
        if episode < self.cfg.warmup:
            return float(self.rng.uniform(0.0, 1.0))
        return truncated_normal(self.rng, self.deterministic_action(obs), self.sigma(episode))

    def remember(
        self, transitions: list[tuple[np.ndarray, float, np.ndarray, bool]], reward: float
    ) -> None:
        """Store an episode; every transition carries the episode's final reward."""
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
            "buffer": self.buffer.state_dict(),
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
