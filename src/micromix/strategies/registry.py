"""The strategy registry (the shape of `models/`'s): each strategy registers a frozen config
dataclass and a function `run(ctx, cfg) -> SearchResult`.

    from micromix.strategies import create, get, list_strategies, register
    cfg = create("haq", episodes=40)          # a HAQConfig
    cfg = config_from_json(cfg.to_json())     # the same config back
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ..errors import MicromixError


@dataclass(frozen=True)
class StrategyConfig:
    """Settings every strategy has. Subclasses set `name` and add their own fields."""

    name: ClassVar[str] = ""
    weights_only: bool = False  # HAQ's weight-only mode: activations stay at 8 bits

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"strategy": self.name}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_json() if hasattr(v, "to_json") else _plain(v)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> StrategyConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(d) - set(known) - {"strategy"})
        if unknown:
            raise MicromixError(f"unknown setting {unknown[0]!r} for strategy {cls.name!r}.")
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k == "strategy":
                continue
            default = _default(known[k])
            if dataclasses.is_dataclass(default) and isinstance(v, dict):
                v = type(default)(**v)
            elif isinstance(v, list):
                v = tuple(v)
            kw[k] = v
        return cls(**kw)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


@dataclass(frozen=True)
class Strategy:
    name: str
    config: type[StrategyConfig]
    run: Callable[..., Any]  # (SearchContext, config) -> SearchResult
    episodic: bool  # evaluates many policies (takes episodes, workers, resume)


_REGISTRY: dict[str, Strategy] = {}


def register(
    name: str, config: type[StrategyConfig], *, episodic: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `run(ctx, cfg)` as strategy `name` with its config class."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} is already registered")
        if config.name != name:
            raise TypeError(f"config {config.__name__} must set name = {name!r}")
        _REGISTRY[name] = Strategy(name, config, fn, episodic)
        return fn

    return decorator


def list_strategies() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> Strategy:
    if name not in _REGISTRY:
        raise MicromixError(f"unknown strategy {name!r}; choose one of {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


def create(name: str, **settings: Any) -> StrategyConfig:
    """The config of strategy `name` with `settings` changed (unknown settings are refused)."""
    cls = get(name).config
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise MicromixError(
            f"strategy {name!r} has no setting {unknown[0]!r}; it has {', '.join(sorted(known))}."
        )
    return cls(**settings)


def config_from_json(d: dict[str, Any]) -> StrategyConfig:
    return get(d.get("strategy", "")).config.from_json(d)


def strategy_config(
    name: str,
    *,
    episodes: int | None = None,
    warmup: int | None = None,
    weights_only: bool = False,
):
    """The strategy config the search options ask for (one error naming a misplaced option)."""
    from .ddpg import DDPGConfig

    settings: dict = {"weights_only": weights_only}
    if episodes is not None or warmup is not None:
        if not get(name).episodic:
            flag = "--episodes" if episodes is not None else "--warmup"
            raise MicromixError(f"{flag} applies to haq and random, not to {name}.")
        if episodes is not None:
            settings["episodes"] = episodes
        if warmup is not None:
            if name != "haq":
                raise MicromixError(f"--warmup applies to haq, not to {name}.")
            settings["agent"] = dataclasses.replace(DDPGConfig(), warmup=warmup)
    return create(name, **settings)
