"""Budgets in bytes; the MCU target registry lives in mcu.py and byte sizes in units.py (their
names are re-exported here)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InfeasibleBudgetError, MicromixError
from .graph import Graph
from .mcu import Region, Target, get_target, list_targets, register_target
from .memory import MemoryReport, check_kernel_limits, memory_report
from .numerics.arith import INT32_MAX, accumulator_bound
from .policy import ALLOWED_BITS, Policy
from .schedule import Scheduling
from .units import format_bytes, parse_bytes

__all__ = [
    "Budget",
    "Region",
    "Target",
    "check_feasible",
    "format_bytes",
    "get_target",
    "list_targets",
    "parse_bytes",
    "register_target",
    "smallest_footprint",
    "weight_bits_caps",
]


@dataclass(frozen=True)
class Budget:
    """FLASH and RAM limits in bytes; None means unconstrained. `target` names the chip the
    limits come from (or are capped by)."""

    flash: int | None = None
    ram: int | None = None
    target: str | None = None

    @classmethod
    def parse(
        cls,
        flash: str | int | None = None,
        ram: str | int | None = None,
        *,
        target: str | Target | None = None,
        reference: MemoryReport | None = None,
    ) -> Budget:
        """Read CLI-style limits. `0.48x` is a fraction of `reference` (the uniform 8-bit report).

        With a target, a limit not given is the target's (largest region less its reserve, see
        mcu.py); a ratio stays a ratio of the 8-bit footprint, capped by that figure; an
        explicit byte limit applies as given but may not exceed the target's region.
        """
        base = get_target(target) if target is not None else None
        out = []
        for what, value in (("FLASH", flash), ("RAM", ram)):
            cap = None
            if base is not None:
                cap = base.flash_budget if what == "FLASH" else base.ram_budget
            if value is None:
                out.append(cap)
                continue
            s = str(value).strip()
            if s.lower().endswith("x"):
                try:
                    ratio = float(s[:-1])
                except ValueError:
                    raise MicromixError(
                        f"cannot read {what} ratio {s!r}; write e.g. 0.48x."
                    ) from None
                if reference is None:
                    raise MicromixError(
                        f"a {what} ratio like {s} needs the model's 8-bit footprint as reference."
                    )
                if not (math.isfinite(ratio) and ratio > 0):
                    raise MicromixError(f"{what} ratio {s} must be a finite positive number.")
                ref = reference.flash_bytes if what == "FLASH" else reference.ram_bytes
                v = int(ratio * ref)
                if v < 1:
                    raise MicromixError(f"{what} ratio {s} of {ref:,} B is less than one byte.")
                out.append(v if cap is None else min(v, cap))
            else:
                v = parse_bytes(value if isinstance(value, int) else s)
                size = None if base is None else base.flash if what == "FLASH" else base.ram
                if size is not None and v > size:
                    region = base.flash_region if what == "FLASH" else base.ram_region
                    raise MicromixError(
                        f"the {what} limit {v:,} B is more than the {size:,} B of "
                        f"{base.name}'s {region.name}; give at most that or drop --target."
                    )
                out.append(v)
        return cls(out[0], out[1], base.name if base is not None else None)

    def fits(self, report: MemoryReport) -> bool:
        return (self.flash is None or report.flash_bytes <= self.flash) and (
            self.ram is None or report.ram_bytes <= self.ram
        )

    def utilization(self, report: MemoryReport) -> dict[str, float | None]:
        return {
            "flash": None if self.flash is None else report.flash_bytes / self.flash,
            "ram": None if self.ram is None else report.ram_bytes / self.ram,
        }

    def describe(self, report: MemoryReport) -> str:
        parts = []
        for what, used, lim in (
            ("FLASH", report.flash_bytes, self.flash),
            ("RAM", report.ram_bytes, self.ram),
        ):
            if lim is None:
                parts.append(f"{what} {used:,} B (no limit)")
            else:
                mark = "fits" if used <= lim else "OVER"
                parts.append(f"{what} {used:,} / {lim:,} B = {100 * used / lim:.1f}% ({mark})")
        where = f" (target {self.target})" if self.target else ""
        return f"budget{where}: " + "; ".join(parts)

    def to_json(self) -> dict:
        return {"flash": self.flash, "ram": self.ram, "target": self.target}

    @classmethod
    def from_json(cls, obj: dict) -> Budget:
        return cls(obj.get("flash"), obj.get("ram"), obj.get("target"))


def smallest_footprint(graph: Graph, scheduling: Scheduling | None = None) -> MemoryReport:
    """The memory of 2 bits everywhere (input and logits stay 8-bit): nothing smaller exists
    (under `scheduling`'s schedule; None: layer by layer)."""
    low = Policy.uniform(graph, 2, 2)
    return memory_report(graph, low) if scheduling is None else scheduling.report(graph, low)


# Activations are searched up to 8 bits: the caps hold whatever bits the search gives a tensor.
_MAX_ACT_BITS = max(ALLOWED_BITS)


def weight_bits_caps(graph: Graph) -> dict[str, int]:
    """Per conv / linear layer, the most weight bits (of ALLOWED_BITS) at which its int32
    accumulator cannot overflow for any weights and any input codes up to 8 bits (the bias
    comes from training and is checked by the conversion). The search never gives a layer more;
    a layer that overflows even at 2 bits is refused here, before anything trains."""
    caps = {}
    for op in graph.weight_ops:
        signed = graph.tensors[op.inputs[0]].signed
        n = op.weight.row_elems
        ok = [
            b
            for b in ALLOWED_BITS
            if accumulator_bound(n * 2 ** (b - 1), _MAX_ACT_BITS, signed) <= INT32_MAX
        ]
        if not ok:
            raise MicromixError(
                f"layer {op.name} sums {n:,} products per output: its int32 accumulator can "
                f"overflow even with {min(ALLOWED_BITS)}-bit weights; split the layer."
            )
        caps[op.name] = max(ok)
    return caps


def check_feasible(graph: Graph, budget: Budget, scheduling: Scheduling | None = None) -> None:
    """Fail before any training when even the smallest policy cannot fit (RAM under
    `scheduling`'s schedule; None: layer by layer), or a layer's
    accumulator overflows at any bits (`weight_bits_caps`), or a layer is larger than the C
    kernels take (`memory.check_kernel_limits`)."""
    check_kernel_limits(graph)
    weight_bits_caps(graph)
    low = smallest_footprint(graph, scheduling)
    if budget.fits(low):
        return
    raise InfeasibleBudgetError(
        f"the budget (FLASH {_lim(budget.flash)}, RAM {_lim(budget.ram)}) cannot be met: even 2 bits everywhere "
        f"need FLASH {low.flash_bytes:,} B and RAM {low.ram_bytes:,} B."
    )


def _lim(v: int | None) -> str:
    return "unlimited" if v is None else f"{v:,} B"
