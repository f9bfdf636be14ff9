"""Evaluating several candidate policies at a time: in-process, or as Ray actors.

A pool only scores what it is given, in order, so a search's result does not depend on the
number of workers: the agent proposes fixed-size batches (`batch`, a strategy setting) and the
pool just runs a batch's distinct policies side by side. Ray is optional
(`pip install micromix[ray]`); `workers=1` needs none of it.
"""

from __future__ import annotations

from typing import Any

from ..errors import MicromixError
from ..policy import Policy
from .evaluate import Evaluator, score


class LocalPool:
    """One policy after another in this process."""

    workers = 1

    def __init__(self, fn: Evaluator) -> None:
        self.fn = fn

    def map(self, policies: list[Policy], incumbent: float | None = None) -> list[float]:
        return [score(self.fn, p, incumbent) for p in policies]

    def close(self) -> None:
        pass


class _Worker:
    """A Ray actor that holds one copy of the evaluator (the model and data travel once)."""

    def __init__(self, fn: Evaluator) -> None:
        self.fn = fn

    def score(self, policy: dict[str, Any], incumbent: float | None) -> float:
        return score(self.fn, Policy.from_json(policy), incumbent)


class RayPool:
    """`workers` Ray actors; joins the cluster at `address`, or starts a local Ray instance."""

    def __init__(
        self, fn: Evaluator, workers: int, address: str | None = None, gpus: float = 0.0
    ) -> None:
        try:
            import ray
            from ray.util import ActorPool
        except ImportError:
            raise MicromixError(
                "--workers above 1 and --ray-address need Ray: pip install 'micromix[ray]'."
            ) from None
        self.ray, self.workers = ray, workers
        self.started = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"address": address} if address else {"num_cpus": workers}
            try:
                ray.init(
                    **kw,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError...
                raise MicromixError(
                    f"could not start or join Ray{f' at {address}' if address else ''}: {e}"
                ) from None
            self.started = True
        actor = ray.remote(num_cpus=1, num_gpus=gpus)(_Worker)
        ref = ray.put(fn)
        self.actors = [actor.remote(ref) for _ in range(workers)]
        self.pool = ActorPool(self.actors)

    def map(self, policies: list[Policy], incumbent: float | None = None) -> list[float]:
        jobs = [p.to_json() for p in policies]
        return list(self.pool.map(lambda a, j: a.score.remote(j, incumbent), jobs))

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        if self.started:
            self.ray.shutdown()


def make_pool(fn: Evaluator, workers: int = 1, address: str | None = None) -> LocalPool | RayPool:
    if workers < 1:
        raise MicromixError(f"--workers must be at least 1, got {workers}.")
    if workers == 1 and address is None:
        return LocalPool(fn)
    return RayPool(fn, workers, address)
