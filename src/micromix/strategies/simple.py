"""The one-policy strategies: `rule` (MLSys 2020 rules from 8 bits), `ilp` (sensitivities and
an exact integer program) and `uniform` (the highest uniform bits that fit).

Each honours `weights_only` (activations stay at 8 bits) and, where `fill` is set, the action
wall's upward pass spends the budget the rules leave unused: rule with the fixed proxy gains,
ilp with its own sensitivities.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..budget import Budget, weight_bits_caps
from ..errors import MicromixError
from ..graph import Graph
from ..policy import FIXED_BITS, Policy
from ..schedule import LAYER, Scheduling
from .ilp import gains_from, solve_ilp
from .registry import StrategyConfig, register

# Most total bits first; on a tie weights keep more bits (FLASH is usually the looser budget).
UNIFORM_ORDER = ((8, 8), (8, 4), (4, 8), (8, 2), (2, 8), (4, 4), (4, 2), (2, 4), (2, 2))


@dataclass(frozen=True)
class RuleConfig(StrategyConfig):
    name = "rule"
    fill: bool = True


@dataclass(frozen=True)
class ILPConfig(StrategyConfig):
    name = "ilp"
    fill: bool = True


@dataclass(frozen=True)
class UniformConfig(StrategyConfig):
    name = "uniform"


def uniform_policy(
    graph: Graph, budget: Budget, *, weights_only: bool = False, scheduling: Scheduling = LAYER
) -> Policy:
    """The highest uniform bits whose memory (RAM under `scheduling`'s schedule) fits."""
    order = [(w, a) for w, a in UNIFORM_ORDER if a == FIXED_BITS] if weights_only else UNIFORM_ORDER
    cap = min(weight_bits_caps(graph).values(), default=max(b for b, _ in order))
    for w, a in order:
        p = Policy.uniform(graph, w, a)
        if w <= cap and budget.fits(scheduling.report(graph, p)):
            return p
    raise MicromixError("no uniform policy fits the budget.")


def seed_policy(ctx, name: str, weights_only: bool, fill: bool) -> Policy:
    """The policy strategy `name` (rule or ilp) returns, without evaluating it."""
    wall = ctx.wall(weights_only)
    if name == "rule":
        policy, _ = wall.enforce(Policy.uniform(ctx.graph, 8))
        return wall.fill_exchange(policy)[0] if fill else policy
    if name == "ilp":
        sens = ctx.sensitivities()
        policy = solve_ilp(
            ctx.graph,
            ctx.budget,
            sens,
            sizes=ctx.sizes,
            weights_only=weights_only,
            scheduling=ctx.scheduling,
        )
        policy, _ = wall.enforce(policy)  # a no-op on a fitting policy
        return wall.fill_exchange(policy, gains_from(sens))[0] if fill else policy
    if name == "uniform":
        return uniform_policy(
            ctx.graph, ctx.budget, weights_only=weights_only, scheduling=ctx.scheduling
        )
    raise MicromixError(f"strategy {name!r} cannot seed a search; use rule, ilp or uniform.")


def _single(ctx, cfg, policy: Policy):
    from .engine import SearchResult

    acc = ctx.cached(policy)
    report = ctx.report(policy)
    res = SearchResult(cfg.name, policy, acc, report, ctx.budget, episodes=1)
    res.history = [
        {
            "episode": 0,
            "new": True,
            "accuracy": acc,
            "flash_bytes": report.flash_bytes,
            "ram_bytes": report.ram_bytes,
            "policy": policy.to_json(),
        }
    ]
    return res


@register("rule", RuleConfig)
def run_rule(ctx, cfg: RuleConfig):
    return _single(ctx, cfg, seed_policy(ctx, "rule", cfg.weights_only, cfg.fill))


@register("ilp", ILPConfig)
def run_ilp(ctx, cfg: ILPConfig):
    return _single(ctx, cfg, seed_policy(ctx, "ilp", cfg.weights_only, cfg.fill))


@register("uniform", UniformConfig)
def run_uniform(ctx, cfg: UniformConfig):
    return _single(ctx, cfg, seed_policy(ctx, "uniform", cfg.weights_only, False))
