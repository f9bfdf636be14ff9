"""The paper's baselines: uniform policies, and the best 8-bit network that fits a budget.

The k-means (HAQ non-uniform) baseline lives in `quant.kmeans`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .budget import Budget
from .errors import InfeasibleBudgetError, MicromixError
from .graph import Graph, trace
from .memory import memory_report
from .models import create
from .policy import Policy

# name -> (weight bits, activation bits); the input and the logits always stay at 8 bits.
UNIFORM = {"8/8": (8, 8), "4/4": (4, 4), "W2/A4": (2, 4), "W2/A8": (2, 8)}

WIDTHS = tuple(round(0.05 * i, 2) for i in range(2, 21))  # 0.10, 0.15, ..., 1.00
RESOLUTIONS = tuple(range(16, 29, 2))  # 16..28 px for Fashion-MNIST's 28x28 images


def uniform_policies(graph: Graph, names: list[str] | None = None) -> dict[str, Policy]:
    """The uniform baselines by name ("8/8", "4/4", "W2/A4", "W2/A8")."""
    names = list(UNIFORM) if names is None else names
    unknown = [n for n in names if n not in UNIFORM]
    if unknown:
        raise MicromixError(
            f"unknown uniform baseline {unknown[0]!r}; choose from {', '.join(UNIFORM)}."
        )
    return {n: Policy.uniform(graph, *UNIFORM[n]) for n in names}


@dataclass(frozen=True)
class Candidate:
    """One point of the width x resolution grid under uniform 8 bits."""

    width: float
    resolution: int
    macs: int
    flash_bytes: int
    ram_bytes: int
    fits: bool

    def to_json(self) -> dict:
        return asdict(self)


def grid_8bit(
    model: str,
    budget: Budget,
    *,
    widths: tuple[float, ...] = WIDTHS,
    resolutions: tuple[int, ...] = RESOLUTIONS,
    **model_kwargs: object,
) -> list[Candidate]:
    """Memory of every (width, resolution) of `model` at uniform 8 bits, against `budget`.

    FLASH does not depend on the resolution, so a width whose FLASH is over budget is
    reported once (at the smallest resolution) and its other resolutions are skipped.
    """
    out = []
    for w in widths:
        for r in sorted(resolutions):
            m = create(model, width=w, resolution=r, **model_kwargs)
            g = trace(m)
            rep = memory_report(g, Policy.uniform(g, 8))
            macs = sum(o.macs for o in g.ops)
            out.append(Candidate(w, r, macs, rep.flash_bytes, rep.ram_bytes, budget.fits(rep)))
            if budget.flash is not None and rep.flash_bytes > budget.flash:
                break
    return out


def best_fitting_8bit(
    model: str,
    budget: Budget,
    *,
    widths: tuple[float, ...] = WIDTHS,
    resolutions: tuple[int, ...] = RESOLUTIONS,
    **model_kwargs: object,
) -> dict:
    """The model config (for `models.create(**cfg)`) of the largest network by MACs, over the
    grid of widths and resolutions, whose uniform 8-bit memory fits `budget`; ties go to the
    higher resolution. The dict also carries "memory" and "grid" (every point evaluated)."""
    grid = grid_8bit(model, budget, widths=widths, resolutions=resolutions, **model_kwargs)
    fitting = [c for c in grid if c.fits]
    if not fitting:
        small = min(grid, key=lambda c: (c.flash_bytes, c.ram_bytes))
        raise InfeasibleBudgetError(
            f"no {model} of width {min(widths)}-{max(widths)} and resolution {min(resolutions)}-{max(resolutions)} "
            f"fits at 8 bits; the smallest needs FLASH {small.flash_bytes:,} B and RAM {small.ram_bytes:,} B."
        )
    best = max(fitting, key=lambda c: (c.macs, c.resolution, c.width))
    cfg = create(model, width=best.width, resolution=best.resolution, **model_kwargs)
    return {
        "model_config": dict(cfg.micromix_config),
        "macs": best.macs,
        "memory": {"flash_bytes": best.flash_bytes, "ram_bytes": best.ram_bytes},
        "budget": budget.to_json(),
        "grid": [c.to_json() for c in grid],
    }
