"""The search episode: one episode builds one policy, two steps per quantizable layer.

Steps follow execution order: for every conv/linear layer first its weight bits, then the bits
of its output activation. The logits (the last layer's output) stay at 8 bits: that step is
still taken so every episode has 2 x layers steps, but its action is ignored.

Tensors not produced by a weight layer (add and average-pool outputs) get no step of their
own: they take the **largest bits among their inputs** (a residual sum or a pooled map is no
less precise than what feeds it), resolved in execution order. The action wall may still cut
them like any other activation.

Observation of a step (all in [0, 1]):
  HAQ's features, each min-max scaled over the steps of the network: layer index, in-channels,
  out-channels, kernel size, stride, input feature-map area, number of weights, depthwise flag,
  weight(1)/activation(0) flag; the memory features, also min-max scaled: the layer's share of
  the 8-bit weight bytes and the share of the 8-bit RAM peak live at its step; then the
  previous action, and the fraction of the FLASH and of the RAM budget still free given the
  actions so far, assuming every tensor not yet decided at 2 bits (the least it can take, so a
  negative margin means the choices made already force the wall to cut). RAM here is the
  liveness bound, which the arena meets on chains; the wall checks the arena itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..budget import Budget
from ..graph import Graph
from ..memory import SizeTable, scratch_bytes, size_table
from ..policy import ALLOWED_BITS, FIXED_BITS, Policy

STATIC_FEATURES = (
    "layer",
    "in_channels",
    "out_channels",
    "kernel",
    "stride",
    "in_area",
    "weights",
    "depthwise",
    "is_weight",
    "flash_share",
    "ram_share",
)
DYNAMIC_FEATURES = ("prev_action", "flash_free", "ram_free")
OBS_DIM = len(STATIC_FEATURES) + len(DYNAMIC_FEATURES)


def action_to_bits(a: float) -> int:
    """Equal-width intervals of [0, 1] -> 2, 4, 8 bits."""
    idx = min(2, max(0, math.floor(3.0 * float(a))))
    return 2 ** (idx + 1)


def bits_to_action(bits: int) -> float:
    """The centre of the action interval of `bits` (what the replay stores for walled bits)."""
    return (ALLOWED_BITS.index(bits) + 0.5) / len(ALLOWED_BITS)


def reward(accuracy: float, float_accuracy: float) -> float:
    """HAQ's reward: 0.1 x the accuracy change in percentage points."""
    return 0.1 * (accuracy - float_accuracy)


def derive_activations(graph: Graph, acts: dict[str, int]) -> dict[str, int]:
    """Fill the bits of add / avgpool outputs from their inputs (see the module docstring)."""
    out = dict(acts)
    for op in graph.ops:
        if op.has_weight or op.output not in graph.tensors:
            continue
        out[op.output] = FIXED_BITS if op.output == graph.output else max(out[t] for t in op.inputs)
    out[graph.input] = FIXED_BITS
    out[graph.output] = FIXED_BITS
    return out


@dataclass(frozen=True)
class Step:
    layer: str  # op name
    is_weight: bool
    tensor: str | None  # the output activation for an activation step
    fixed: bool  # the logits: the action is ignored


def _minmax(col: np.ndarray) -> np.ndarray:
    lo, hi = col.min(), col.max()
    return np.zeros_like(col) if hi == lo else (col - lo) / (hi - lo)


class QuantEnv:
    """Builds one policy per episode from 2 x layers actions in [0, 1]."""

    def __init__(
        self,
        graph: Graph,
        budget: Budget,
        weights_only: bool = False,
        *,
        pin_ends: bool = False,
        sizes: SizeTable | None = None,
    ) -> None:
        # weights_only: HAQ's weight-only mode, one step per layer, activations stay at 8 bits.
        # pin_ends: HAQ pins the first and the last layer's weights at 8 bits (the action of
        # those steps is ignored; the wall may still lower them to fit).
        self.graph, self.budget, self.weights_only = graph, budget, weights_only
        self.layers = graph.weight_ops
        ends = {self.layers[0].name, self.layers[-1].name} if pin_ends else set()
        self.steps: list[Step] = []
        for op in self.layers:
            self.steps.append(Step(op.name, True, None, op.name in ends))
            if not weights_only:
                self.steps.append(Step(op.name, False, op.output, op.output == graph.output))
        # Size tables from memory.py, so observations cost no re-planning.
        self.sizes = sizes or size_table(graph)
        self.act_bytes, self.w_bytes = self.sizes.act, self.sizes.weight
        self.param_bytes = self.sizes.params
        self.static = self._static_features()
        self.reset()

    @property
    def steps_per_episode(self) -> int:
        return len(self.steps)

    def _static_features(self) -> np.ndarray:
        g = self.graph
        eight = dict.fromkeys(self.act_bytes, 8)
        live8 = [self.sizes.live_at(eight, s) for s in range(len(g.ops))]
        step_of = {o.name: i for i, o in enumerate(g.ops)}
        w8 = sum(t[8] for t in self.w_bytes.values())
        rows = []
        for i, op in enumerate(self.layers):
            c_in, h, w = op.in_shape
            row = [
                i,
                c_in,
                op.out_shape[0],
                op.kernel[0],
                op.stride[0],
                h * w,
                op.weight.numel,
                float(op.is_depthwise),
                0.0,
                self.w_bytes[op.name][8] / w8,
                live8[step_of[op.name]] / max(live8),
            ]
            rows.append([*row[:8], 1.0, *row[9:]])  # weight step
            rows.append(row)  # activation step
        arr = np.asarray(rows, dtype=np.float64)
        if self.weights_only:
            arr = arr[::2]
        return np.stack([_minmax(arr[:, j]) for j in range(arr.shape[1])], axis=1)

    # ---- episode -----------------------------------------------------------------------------

    def reset(self) -> np.ndarray:
        self.t = 0
        self.prev_action = 0.0
        self.weights: dict[str, int] = {}
        self.acts: dict[str, int] = {}
        self.actions: list[float] = []
        return self.observation()

    def _estimate(self) -> tuple[int, int]:
        """FLASH and RAM lower bound with undecided tensors at 2 bits."""
        weights = {o.name: self.weights.get(o.name, 2) for o in self.layers}
        acts = {n: self.acts.get(n, 2) for n in self.graph.tensors}
        acts = derive_activations(self.graph, acts)
        flash = self.sizes.flash(weights, acts)
        ram = self.sizes.live_peak(acts)
        ram += scratch_bytes(self.graph, weights)
        return flash, ram

    def observation(self) -> np.ndarray:
        t = min(self.t, len(self.steps) - 1)
        flash, ram = self._estimate()
        free = [
            1.0 if lim is None else float(np.clip((lim - used) / lim, 0.0, 1.0))
            for lim, used in ((self.budget.flash, flash), (self.budget.ram, ram))
        ]
        return np.concatenate([self.static[t], [self.prev_action, *free]]).astype(np.float32)

    def step(self, action: float) -> tuple[np.ndarray, bool]:
        """Apply one action; returns (next observation, done)."""
        a = float(np.clip(action, 0.0, 1.0))
        st = self.steps[self.t]
        bits = action_to_bits(a)
        if st.is_weight:
            self.weights[st.layer] = FIXED_BITS if st.fixed else bits
        elif not st.fixed:
            self.acts[st.tensor] = bits
        self.actions.append(a)
        self.prev_action = a
        self.t += 1
        return self.observation(), self.t >= len(self.steps)

    def proposal(self) -> Policy:
        """The policy the episode's actions ask for, before the action wall."""
        acts = {n: self.acts.get(n, FIXED_BITS) for n in self.graph.tensors}
        return Policy(dict(self.weights), derive_activations(self.graph, acts))

    def policy_from_actions(self, actions) -> Policy:
        """Replay a full list of actions (used by strategies that do not need observations)."""
        self.reset()
        for a in actions:
            self.step(a)
        return self.proposal()

    def actions_of(self, policy: Policy) -> list[float]:
        """The actions that ask for exactly `policy`: interval centres of its bits."""
        return [
            bits_to_action(
                policy.weights[st.layer] if st.is_weight else policy.activations[st.tensor]
            )
            for st in self.steps
        ]

    def transitions(self, actions) -> list[tuple[np.ndarray, float, np.ndarray, bool]]:
        """(obs, action, next obs, done) of an episode that takes `actions`."""
        obs, out = self.reset(), []
        for a in actions:
            nxt, done = self.step(a)
            out.append((obs, float(a), nxt, done))
            obs = nxt
        return out
