"""Memory-driven policy search: HAQ's agent with the MLSys 2020 budget rules as action wall.

`micromix.search(model, data, budget, strategy=...)` (engine.py) is the entry point. Every
strategy registers a config dataclass and a run function (registry.py): haq and random
(haq.py), rule, ilp and uniform (simple.py). The pieces are importable for custom loops:
`QuantEnv` (episodes), `Wall` (budget rules), `DDPG` (agent), evaluators, pools.
"""

from . import haq as _haq  # noqa: F401  (registers haq, random)
from . import simple as _simple  # noqa: F401  (registers rule, ilp, uniform)
from .ddpg import DDPG, DDPGConfig
from .engine import SearchConfig, SearchResult, check_identity, search, search_identity
from .env import OBS_DIM, QuantEnv, action_to_bits, bits_to_action, derive_activations, reward
from .evaluate import CachedEvaluator, Evaluator, QATEvaluator, QATSettings, SyntheticEvaluator
from .haq import HAQConfig, RandomConfig
from .ilp import measure_sensitivity, solve_ilp
from .parallel import LocalPool, RayPool, make_pool
from .registry import (
    StrategyConfig,
    config_from_json,
    create,
    get,
    list_strategies,
    register,
    strategy_config,
)
from .simple import UNIFORM_ORDER, ILPConfig, RuleConfig, UniformConfig, uniform_policy
from .wall import Wall, rule_policy

__all__ = [
    "DDPG",
    "OBS_DIM",
    "UNIFORM_ORDER",
    "CachedEvaluator",
    "DDPGConfig",
    "Evaluator",
    "HAQConfig",
    "ILPConfig",
    "LocalPool",
    "QATEvaluator",
    "QATSettings",
    "QuantEnv",
    "RandomConfig",
    "RayPool",
    "RuleConfig",
    "SearchConfig",
    "SearchResult",
    "StrategyConfig",
    "SyntheticEvaluator",
    "UniformConfig",
    "Wall",
    "action_to_bits",
    "bits_to_action",
    "check_identity",
    "config_from_json",
    "strategy_config",
    "create",
    "derive_activations",
    "get",
    "list_strategies",
    "make_pool",
    "measure_sensitivity",
    "register",
    "reward",
    "rule_policy",
    "search",
    "search_identity",
    "solve_ilp",
    "uniform_policy",
]
