"""The action wall: the MLSys 2020 memory-driven rules that make any proposal fit the budget.

Weights and activations are independent here (FLASH depends only on weight bits, RAM only on
activation bits), so the two rules run separately and only ever lower bits.

RAM (activations). The MLSys 2020 rule works on the tensors live at each step: for a chain
that is the layer's input and output. On residual graphs a skip tensor kept alive across a step
is live there too ("bystander"). At a step whose live bytes exceed the budget the wall picks,
among the cuttable live tensors (not the input image or the logits, not already at 2 bits), the
one with the most bits (tie: the most bytes) and halves it, but only if the sweep may cut it:
a forward sweep may cut the op's output, a backward sweep its inputs, and either may cut a
bystander (a skip tensor touches steps on both sides, so neither sweep direction owns it).
Otherwise the step is left to the sweep going the other way. Sweeps alternate until every step
fits. Every violating step always has a pick that one of the two directions may cut, so each
forward+backward pair makes progress and the loop ends.

The arena planner may exceed the liveness bound on residual nets, so afterwards the planned
arena (memory_report.ram_bytes, what the device allocates) is checked and the largest tensor
of the peak step is halved until the arena fits.

FLASH (weights): while over budget, among layers not at 2 bits take those whose share of the
current weight bytes is within 5 percentage points of the largest share, and halve the
earliest one.
"""

from __future__ import annotations

from ..budget import Budget, check_feasible
from ..errors import InfeasibleBudgetError
from ..graph import Graph
from ..memory import (
    MemoryReport,
    activation_bytes,
    memory_report,
    param_bytes,
    scratch_bytes,
    weight_bytes,
)
from ..policy import ALLOWED_BITS, FIXED_BITS, Policy

MIN_BITS = min(ALLOWED_BITS)
SHARE_WINDOW = 0.05  # the 5 percentage points of the FLASH rule


class Wall:
    """Size tables of one graph and budget; `enforce(policy)` returns a fitting policy."""

    def __init__(self, graph: Graph, budget: Budget) -> None:
        check_feasible(graph, budget)  # raises InfeasibleBudgetError naming the 2-bit minimum
        self.graph, self.budget = graph, budget
        self.fixed = frozenset((graph.input, graph.output))
        # Byte tables come from memory.py; the wall only adds them up.
        self.act_bytes = {
            n: {b: activation_bytes(t.shape, b) for b in ALLOWED_BITS}
            for n, t in graph.tensors.items()
        }
        self.w_bytes = {
            o.name: {b: weight_bytes(o, b) for b in ALLOWED_BITS} for o in graph.weight_ops
        }
        self.param_bytes = sum(param_bytes(o) for o in graph.ops)
        self.live = [tuple(graph.live_at(s)) for s in range(len(graph.ops))]
        self.log: list[tuple[str, str, int]] = []  # (rule, tensor, new bits) of the last call

    # ---- sizes -------------------------------------------------------------------------------

    def live_bytes(self, acts: dict[str, int], step: int) -> int:
        return sum(self.act_bytes[t][acts[t]] for t in self.live[step])

    def flash_bytes(self, weights: dict[str, int]) -> int:
        return self.param_bytes + sum(self.w_bytes[o][b] for o, b in weights.items())

    def cuttable(self, acts: dict[str, int], names) -> list[str]:
        return [t for t in names if t not in self.fixed and acts[t] > MIN_BITS]

    # ---- rules -------------------------------------------------------------------------------

    def enforce(self, policy: Policy) -> tuple[Policy, MemoryReport]:
        """Lower bits of `policy` until it fits; returns it with its memory report."""
        self.log = []
        weights = self.fit_flash(dict(policy.weights))
        acts = self.fit_ram(dict(policy.activations), weights)
        out = Policy(weights, acts)
        out, report = self.fit_arena(out)
        if not self.budget.fits(report):  # cannot happen after check_feasible; never hand it out
            raise InfeasibleBudgetError(
                f"the action wall could not fit the policy into the budget ({self.budget.describe(report)})."
            )
        return out, report

    def fit_flash(self, weights: dict[str, int]) -> dict[str, int]:
        limit = self.budget.flash
        if limit is None:
            return weights
        order = [o.name for o in self.graph.weight_ops]
        while self.flash_bytes(weights) > limit:
            cands = [o for o in order if weights[o] > MIN_BITS]
            if not cands:
                raise InfeasibleBudgetError(
                    f"FLASH budget {limit:,} B cannot be met even with 2-bit weights."
                )
            total = sum(self.w_bytes[o][weights[o]] for o in order)
            share = {o: self.w_bytes[o][weights[o]] / total for o in cands}
            top = max(share.values())
            # The small tolerance keeps float rounding from breaking an exact 5-point tie.
            pick = next(o for o in cands if share[o] >= top - SHARE_WINDOW - 1e-12)
            weights[pick] //= 2
            self.log.append(("flash", pick, weights[pick]))
        return weights

    def fit_ram(self, acts: dict[str, int], weights: dict[str, int]) -> dict[str, int]:
        if self.budget.ram is None:
            return acts
        # The kernels' scratch buffer shares the RAM budget; the weight bits fix its size.
        limit = self.budget.ram - scratch_bytes(self.graph, weights)
        for t in self.fixed:
            acts[t] = FIXED_BITS
        n = len(self.graph.ops)
        forward, idle = True, 0
        while any(self.live_bytes(acts, s) > limit for s in range(n)):
            changed = False
            for s in range(n) if forward else range(n - 1, -1, -1):
                while self.live_bytes(acts, s) > limit:
                    t = self.pick(acts, s, forward)
                    if t is None:
                        break
                    acts[t] //= 2
                    changed = True
                    self.log.append(("ram-fwd" if forward else "ram-bwd", t, acts[t]))
            idle = 0 if changed else idle + 1
            if idle >= 2:  # a forward and a backward sweep without a cut: nothing can move
                raise InfeasibleBudgetError(
                    f"RAM budget {limit:,} B cannot be met even with 2-bit activations."
                )
            forward = not forward
        return acts

    def pick(self, acts: dict[str, int], step: int, forward: bool) -> str | None:
        """The tensor the rule halves at `step`, or None when this sweep may not cut it."""
        op = self.graph.ops[step]
        cands = self.cuttable(acts, self.live[step])
        if not cands:
            return None
        own = {op.output} if forward else set(op.inputs)
        bystanders = set(self.live[step]) - {op.output} - set(op.inputs)
        allowed = own | bystanders
        # Most bits, then most bytes; a remaining tie goes to a tensor this sweep may cut.
        best = max(
            cands, key=lambda t: (acts[t], self.act_bytes[t][acts[t]], t in allowed, -len(t))
        )
        return best if best in allowed else None

    def fit_arena(self, policy: Policy) -> tuple[Policy, MemoryReport]:
        """Cut until the planned arena, not just the liveness bound, fits."""
        report = memory_report(self.graph, policy)
        limit = self.budget.ram
        if limit is None:
            return policy, report
        acts = dict(policy.activations)
        while report.ram_bytes > limit:
            live = [x.live_bytes for x in report.layers]
            peak = max(range(len(live)), key=live.__getitem__)
            cands = self.cuttable(acts, self.live[peak]) or self.cuttable(acts, acts)
            if not cands:
                raise InfeasibleBudgetError(
                    f"RAM budget {limit:,} B cannot be met: the arena needs {report.ram_bytes:,} B at 2 bits."
                )
            t = max(cands, key=lambda t: (self.act_bytes[t][acts[t]], acts[t]))
            acts[t] //= 2
            self.log.append(("arena", t, acts[t]))
            policy = Policy(policy.weights, acts)
            report = memory_report(self.graph, policy)
        return policy, report


def rule_policy(graph: Graph, budget: Budget) -> Policy:
    """The MLSys 2020 procedure alone: all 8 bits, then the wall."""
    return Wall(graph, budget).enforce(Policy.uniform(graph, 8))[0]
