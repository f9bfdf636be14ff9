"""Memory-driven policy search: HAQ's agent with the MLSys 2020 budget rules as action wall.

`search(model, data, budget, strategy=...)` is the entry point; the pieces are importable for
custom loops: `QuantEnv` (episodes), `Wall` (budget rules), `DDPG` (agent), evaluators.
"""

from .ddpg import DDPG, DDPGConfig
from .env import OBS_DIM, QuantEnv, action_to_bits, derive_activations, reward
from .evaluate import CachedEvaluator, Evaluator, QATEvaluator, QATSettings, SyntheticEvaluator
from .ilp import measure_sensitivity, solve_ilp
from .strategies import STRATEGIES, UNIFORM_ORDER, SearchResult, search, uniform_policy
from .wall import Wall, rule_policy

__all__ = [
    "DDPG",
    "OBS_DIM",
    "STRATEGIES",
    "UNIFORM_ORDER",
    "CachedEvaluator",
    "DDPGConfig",
    "Evaluator",
    "QATEvaluator",
    "QATSettings",
    "QuantEnv",
    "SearchResult",
    "SyntheticEvaluator",
    "Wall",
    "action_to_bits",
    "derive_activations",
    "measure_sensitivity",
    "reward",
    "rule_policy",
    "search",
    "solve_ilp",
    "uniform_policy",
]
