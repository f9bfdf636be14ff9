"""The search episode: action mapping, observations, and bits of tensors without a step."""

from __future__ import annotations

import numpy as np
import pytest

from micromix.budget import Budget
from micromix.graph import trace
from micromix.memory import memory_report
from micromix.policy import Policy
from micromix.strategies import OBS_DIM, QuantEnv, action_to_bits, derive_activations, reward
from micromix.strategies.env import STATIC_FEATURES


@pytest.mark.parametrize(
    ("a", "bits"),
    [(0.0, 2), (0.2, 2), (0.333, 2), (0.334, 4), (0.5, 4), (0.666, 4), (0.667, 8), (1.0, 8)],
)
def test_action_to_bits(a, bits):
    assert action_to_bits(a) == bits


def test_reward_is_tenth_of_points():
    assert reward(85.0, 90.0) == pytest.approx(-0.5)


@pytest.fixture
def res_graph(tiny_resnet):
    return trace(tiny_resnet, (1, 1, 16, 16))


def test_episode_steps_and_observations(res_graph):
    g = res_graph
    ref = memory_report(g, Policy.uniform(g, 8))
    env = QuantEnv(g, Budget(int(ref.flash_bytes * 0.6), int(ref.ram_bytes * 0.5)))
    assert env.steps_per_episode == 2 * len(g.weight_ops)
    assert env.static.shape == (env.steps_per_episode, len(STATIC_FEATURES))
    rng = np.random.default_rng(0)
    for _ in range(20):
        obs, done, n = env.reset(), False, 0
        while not done:
            assert obs.shape == (OBS_DIM,) and obs.dtype == np.float32
            assert np.all(obs >= 0.0) and np.all(obs <= 1.0)
            obs, done = env.step(float(rng.uniform()))
            n += 1
        assert n == env.steps_per_episode
        env.proposal().validate(g)
    # Every static feature spans [0, 1] over the network unless it is constant.
    assert np.allclose(env.static.max(0)[env.static.max(0) > 0], 1.0)


def test_weight_flag_and_free_budget(res_graph):
    g = res_graph
    env = QuantEnv(g, Budget(None, None))
    flag = STATIC_FEATURES.index("is_weight")
    assert env.static[0, flag] == 1.0 and env.static[1, flag] == 0.0
    obs = env.reset()
    assert obs[-2] == 1.0 and obs[-1] == 1.0  # no limit: everything free
    ref = memory_report(g, Policy.uniform(g, 8))
    env = QuantEnv(g, Budget(ref.flash_bytes, ref.ram_bytes))
    first = env.reset()
    for _ in range(env.steps_per_episode):
        obs, _ = env.step(1.0)  # all 8 bits: the budget fills up
    assert obs[-2] < first[-2] and obs[-2] == pytest.approx(0.0, abs=1e-6)


def test_logits_fixed_and_derived_tensors(res_graph):
    g = res_graph
    env = QuantEnv(g, Budget(None, None))
    p = env.policy_from_actions([0.0] * env.steps_per_episode)
    assert p.activations[g.output] == 8 and p.activations[g.input] == 8
    for op in g.ops:
        if not op.has_weight and op.output != g.output:
            assert p.activations[op.output] == max(p.activations[t] for t in op.inputs)
    # An add of a 2-bit and an 8-bit tensor is 8-bit; the pool after it follows.
    add = next(o for o in g.ops if o.kind == "add")
    acts = {t: 2 for t in g.tensors}
    acts[add.inputs[0]] = 8
    out = derive_activations(g, acts)
    assert out[add.output] == 8


def test_weights_only_mode_keeps_activations_at_8(tiny_resnet):
    from micromix.budget import Budget
    from micromix.graph import trace
    from micromix.strategies import QuantEnv

    g = trace(tiny_resnet, (1, 1, 8, 8))
    env = QuantEnv(g, Budget(), weights_only=True)
    assert env.steps_per_episode == len(g.weight_ops)
    obs, done = env.reset(), False
    while not done:
        obs, done = env.step(0.0)  # 2 bits for every step taken
        assert 0.0 <= obs.min() and obs.max() <= 1.0
    p = env.proposal()
    assert set(p.weights.values()) == {2}
    assert set(p.activations.values()) == {8}


def test_walled_bits_become_the_stored_actions(res_graph):
    from micromix.strategies import Wall, bits_to_action

    g = res_graph
    assert [action_to_bits(bits_to_action(b)) for b in (2, 4, 8)] == [2, 4, 8]
    lo, hi = (memory_report(g, Policy.uniform(g, b)) for b in (2, 8))
    budget = Budget((lo.flash_bytes + hi.flash_bytes) // 2, (lo.ram_bytes + hi.ram_bytes) // 2)
    env, wall = QuantEnv(g, budget, pin_ends=True), Wall(g, budget)
    rng = np.random.default_rng(0)
    for _ in range(20):
        walled, _ = wall.enforce(env.policy_from_actions(rng.uniform(size=env.steps_per_episode)))
        actions = env.actions_of(walled)
        trans = env.transitions(actions)
        assert [t[1] for t in trans] == actions and trans[-1][3] and not trans[0][3]
        replay = env.proposal()  # what those actions ask for: the walled bits on every step
        for st in env.steps:
            if st.is_weight and not st.fixed:
                assert replay.weights[st.layer] == walled.weights[st.layer]
            elif not st.is_weight and not st.fixed:
                assert replay.activations[st.tensor] == walled.activations[st.tensor]
        first, last = g.weight_ops[0].name, g.weight_ops[-1].name
        assert replay.weights[first] == replay.weights[last] == 8  # pinned (HAQ)
