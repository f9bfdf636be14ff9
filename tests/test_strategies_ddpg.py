"""DDPG agent: exploration that narrows over the search, updates, replay buffer and exact state
round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from micromix.strategies.ddpg import DDPG, DDPGConfig, ReplayBuffer, truncated_normal

OBS = 6


def agent(seed: int = 0, **kw) -> DDPG:
    return DDPG(OBS, steps_per_episode=4, cfg=DDPGConfig(**{"batch_size": 8, **kw}), seed=seed)


def fill(a: DDPG, episodes: int, rng: np.random.Generator) -> None:
    for _ in range(episodes):
        trans = [(rng.random(OBS), float(rng.random()), rng.random(OBS), i == 3) for i in range(4)]
        a.remember(trans, float(rng.normal()))


def test_default_exploration_narrows_and_actions_stay_in_range():
    """With the defaults: warm-up covers the whole action range; after it the actions spread
    around the actor's action by less and less, and every action is a valid one (in [0, 1])."""
    episodes = 60
    a = DDPG(OBS, 4, DDPGConfig(), episodes=episodes)
    obs = np.random.default_rng(5).random(OBS).astype(np.float32)
    mu = a.deterministic_action(obs)
    warm = [a.act(obs, 0) for _ in range(400)]
    assert min(warm) < 0.05 and max(warm) > 0.95
    spread = []
    for ep in (a.cfg.warmup, 40, episodes - 1):
        xs = np.array([a.act(obs, ep) for _ in range(400)])
        assert xs.min() >= 0.0 and xs.max() <= 1.0, ep
        spread.append(np.sqrt(np.mean((xs - mu) ** 2)))
    assert spread[0] > spread[1] > spread[2] and spread[2] < 0.1
    sig = [a.sigma(e) for e in range(a.cfg.warmup, episodes)]
    assert all(x > y for x, y in zip(sig, sig[1:]))


def test_replay_keeps_the_last_buffer_episodes():
    """The replay buffer holds the most recent `buffer_episodes` episodes, whatever the
    episode length: older episodes are forgotten whole."""
    a = DDPG(OBS, 4, DDPGConfig(buffer_episodes=3))
    for ep in range(5):
        a.remember([(np.zeros(OBS), 0.5, np.zeros(OBS), i == 3) for i in range(4)], float(ep))
    assert sorted(a.buffer.reward[: a.buffer.size, 0].tolist()) == [2.0] * 4 + [3.0] * 4 + [4.0] * 4


def test_sigma_schedule():
    a = agent(sigma_decay=0.99)  # HAQ's fixed decay, when asked for
    assert a.sigma(0) == a.sigma(19) == 0.0  # warm-up: explores otherwise (see act)
    assert a.sigma(20) == pytest.approx(a.cfg.sigma)  # the full width when updates begin
    # a fixed decay: the width shrinks by the same factor every episode
    ratios = [a.sigma(e + 1) / a.sigma(e) for e in (20, 120, 299)]
    assert ratios == pytest.approx([0.99] * 3)


@pytest.mark.parametrize("episodes", [40, 600])
def test_sigma_schedule_scales_to_the_episode_count(episodes):
    a = DDPG(OBS, 4, DDPGConfig(warmup=10, sigma_end=0.05), episodes=episodes)
    assert a.sigma(10) == pytest.approx(0.5)
    assert a.sigma(episodes - 1) == pytest.approx(0.05)  # the last episode, whatever the count
    assert a.sigma(episodes // 2) > a.sigma(episodes - 1)


def test_warmup_around_seed_actions():
    a = agent(warmup_sigma=0.1)
    obs = np.zeros(OBS, np.float32)
    near = [a.act(obs, 3, around=0.8) for _ in range(2000)]
    assert 0.7 < np.mean(near) < 0.85 and np.std(near) < 0.12 and max(near) <= 1.0


def test_clone_fits_the_actor_to_seed_actions():
    a = agent(hidden=32, clone_steps=300)
    rng = np.random.default_rng(0)
    obs = rng.random((12, OBS)).astype(np.float32)
    want = np.where(obs[:, 0] > 0.5, 5 / 6, 1 / 6)
    before = np.mean([abs(a.deterministic_action(o) - w) for o, w in zip(obs, want)])
    a.clone(obs, want)
    after = np.mean([abs(a.deterministic_action(o) - w) for o, w in zip(obs, want)])
    assert before > 0.2 and after < 0.1
    mu = a.actor_target(torch.as_tensor(obs)).detach().numpy().ravel()
    assert np.allclose(mu, [a.deterministic_action(o) for o in obs], atol=1e-6)


def test_reward_clip():
    a = agent(reward_clip=1.0)
    a.remember([(np.zeros(OBS), 0.5, np.zeros(OBS), True)], -7.0)
    assert a.buffer.reward[0, 0] == -1.0


def test_warmup_actions_uniform_then_around_actor():
    a = agent()
    obs = np.zeros(OBS, np.float32)
    warm = [a.act(obs, 3) for _ in range(2000)]
    assert 0.45 < np.mean(warm) < 0.55 and min(warm) < 0.02 and max(warm) > 0.98
    mu = a.deterministic_action(obs)
    late = [a.act(obs, 500) for _ in range(200)]  # sigma ~ 0.5 x 0.99^480 ~ 0.004
    assert all(0.0 <= x <= 1.0 for x in late)
    assert np.mean(late) == pytest.approx(mu, abs=0.01)


def test_truncated_normal_stays_in_range():
    rng = np.random.default_rng(0)
    xs = [truncated_normal(rng, mu, 0.5) for mu in (0.0, 0.02, 0.5, 0.99, 1.0) for _ in range(200)]
    assert min(xs) >= 0.0 and max(xs) <= 1.0
    near_edge = [truncated_normal(rng, 0.98, 0.05) for _ in range(500)]
    assert 0.9 < np.mean(near_edge) < 0.98  # mass pushed inside, below the centre


def test_update_changes_actor_and_targets_softly():
    a = agent()
    fill(a, 10, np.random.default_rng(1))
    before = [p.detach().clone() for p in a.actor.parameters()]
    target_before = [p.detach().clone() for p in a.actor_target.parameters()]
    a.end_episode(episode=5, n_updates=3)  # warm-up: no update
    assert a.updates == 0
    a.end_episode(episode=25, n_updates=3)
    assert a.updates == 3
    assert any(not torch.equal(b, p) for b, p in zip(before, a.actor.parameters()))
    moved = [(p - b).abs().max().item() for b, p in zip(target_before, a.actor_target.parameters())]
    assert max(moved) > 0  # soft update moved the target a little
    assert a.baseline is not None


def test_replay_buffer_ring():
    buf = ReplayBuffer(5, 2)
    for i in range(7):
        buf.add(np.full(2, i), i / 10, float(i), np.full(2, i + 1), i == 6)
    assert buf.size == 5 and buf.ptr == 2
    assert sorted(buf.reward[:, 0].tolist()) == [2, 3, 4, 5, 6]
    obs, act, rew, nxt, nd = buf.sample(np.random.default_rng(0), 16)
    assert obs.shape == (16, 2) and nd.shape == (16, 1)


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(2)
    a = agent(seed=3)
    fill(a, 6, rng)
    a.end_episode(25, 2)
    b = agent(seed=99)
    b.load_state_dict(a.state_dict())
    obs = np.random.default_rng(4).random(OBS).astype(np.float32)
    for ep in (25, 26):
        assert a.act(obs, ep) == b.act(obs, ep)
    a.end_episode(26, 2)
    b.end_episode(26, 2)
    for p, q in zip(a.actor.parameters(), b.actor.parameters()):
        assert torch.equal(p, q)
