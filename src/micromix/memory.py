"""The exact memory model: FLASH and RAM bytes of a Graph under a Policy, and the arena plan.

This module is the only place that computes a byte size. The search, the reports and the C
export all read sizes and arena offsets from here, so the budget the search respected is the
memory the device gets.

RAM is the activation arena plus the one scratch buffer the C kernels share (unpacked patches
and weight tiles); what remains on the call stack is small fixed locals, not counted here.

Packing (DESIGN.md): little-endian within a byte, first element in the lowest bits; activations
HWC with channels innermost, each pixel padded to a whole byte; each weight row (one output
channel) padded to a whole byte.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

from .ir import Graph, Op, TensorInfo
from .numerics.arith import packed_bytes
from .ops import of
from .ops.common import CTYPE_BYTES
from .policy import Policy


def activation_bytes(shape: tuple[int, int, int], bits: int) -> int:
    """H x W x ceil(C x bits / 8): one padded byte run per pixel, channels innermost."""
    c, h, w = shape
    return h * w * packed_bytes(c, bits)


def weight_bytes(op: Op, bits: int) -> int:
    """C_out x ceil(row x bits / 8), where a row is one output channel's weights."""
    if op.weight is None:
        raise ValueError(f"op {op.name} has no weight")
    return op.weight.out_channels * packed_bytes(op.weight.row_elems, bits)


def param_arrays(op: Op, in_bits: int | None = None) -> list[tuple[str, str, int]]:
    """The integer constants the export stores for `op`, as (suffix, C type, count): its op
    kind's layout (`ops.of(op).params`). `in_bits` is the input tensor's bits, which sizes a
    table activation's table (None gives the 8-bit upper bound)."""
    return of(op).params(op, in_bits)


def param_bytes(op: Op, in_bits: int | None = None) -> int:
    return sum(CTYPE_BYTES[t] * n for _, t, n in param_arrays(op, in_bits))


def _input_bits_matter(op: Op) -> bool:
    return param_bytes(op, 2) != param_bytes(op, 8)


def activation_flash_bytes(graph: Graph, tensor: str, bits: int) -> int:
    """FLASH bytes that depend on the bits of activation `tensor`: the constants of the ops
    whose layout grows with their input's bits (a table activation's 2^bits entries) that read
    it. `param_bytes(op)` without `in_bits` counts these at 8 bits (the upper bound)."""
    return sum(
        param_bytes(o, bits) for o in graph.ops if o.inputs[0] == tensor and _input_bits_matter(o)
    )


# ---- kernels -------------------------------------------------------------------------------


def check_kernel_limits(graph: Graph) -> None:
    """Refuse, before anything is trained, an op its C kernel cannot run."""
    for op in graph.ops:
        of(op).check(op)


def kernel_of(op: Op, w_bits: int | None, in_bits: int | None) -> str:
    """The C function that runs `op` with `w_bits` weights (None for ops without) on `in_bits`
    inputs, chosen here once by its op kind: the export calls it directly, and the C checks
    the choice only in debug builds."""
    return of(op).kernel(op, w_bits, in_bits)


def scratch_need(op: Op, w_bits: int | None) -> int:
    """Bytes of the shared scratch buffer `op`'s kernel uses (its op kind's `scratch`)."""
    return of(op).scratch(op, w_bits)


def scratch_bytes(graph: Graph, weights: Mapping[str, int]) -> int:
    """The one static scratch buffer all kernels share (they never run at the same time).

    Depends on the weight bits only (they pick the kernels). A multiple of 4 (it is declared
    as int32 words for alignment) and at least 4 (C has no empty arrays).
    """
    need = max(scratch_need(o, weights[o.name] if o.has_weight else None) for o in graph.ops)
    return max(4, (need + 3) // 4 * 4)


def flash_bytes(graph: Graph, policy: Policy) -> int:
    """Total FLASH: packed weights plus every op's integer parameters."""
    return sum(
        param_bytes(o, policy.activations[o.inputs[0]])
        + (weight_bytes(o, policy.weights[o.name]) if o.has_weight else 0)
        for o in graph.ops
    )


def tensor_sizes(graph: Graph, policy: Policy) -> dict[str, int]:
    return {n: activation_bytes(t.shape, policy.activations[n]) for n, t in graph.tensors.items()}


def live_bytes(graph: Graph, sizes: dict[str, int]) -> list[int]:
    """Bytes live at each step (inputs, output and every tensor kept for later)."""
    live = [0] * len(graph.ops)
    for name, t in graph.tensors.items():
        for s in range(t.first, t.last + 1):
            live[s] += sizes[name]
    return live


def ram_lower_bound(graph: Graph, policy: Policy) -> int:
    """No arena can be smaller than the largest set of simultaneously live tensors."""
    return max(live_bytes(graph, tensor_sizes(graph, policy)))


# ---- arena planning ------------------------------------------------------------------------


def plan_arena(graph: Graph, sizes: dict[str, int]) -> tuple[int, dict[str, int]]:
    """Offsets for every activation tensor in one static arena; returns (arena bytes, offsets).

    Chains get a two-ended ping-pong (inputs and outputs at opposite ends), which meets the
    liveness lower bound exactly. Other graphs take the best of several greedy best-fit orders
    (TFLite Micro's greedy-by-size and by-breadth among them), then seeded random orders until
    the bound is met or the tries run out. Deterministic: same sizes, same plan.
    """
    key = tuple((t.name, t.first, t.last, sizes[t.name]) for t in graph.tensors.values())
    arena, offsets = _plan_cached(key)
    return arena, dict(offsets)


@functools.lru_cache(maxsize=4096)
def _plan_cached(
    key: tuple[tuple[str, int, int, int], ...],
) -> tuple[int, tuple[tuple[str, int], ...]]:
    tensors = [_Interval(n, first, last) for n, first, last, _ in key]
    sizes = {n: s for n, _, _, s in key}
    steps = max(t.last for t in tensors) + 1
    live = [0] * steps
    for t in tensors:
        for i in range(t.first, t.last + 1):
            live[i] += sizes[t.name]
    lb = max(live)
    if all(t.last - t.first <= 1 for t in tensors):
        offsets = _ping_pong(tensors, sizes, lb)
        if offsets is not None:
            return lb, tuple(offsets.items())
    orders = [
        sorted(tensors, key=lambda t: (-sizes[t.name], t.first)),
        sorted(tensors, key=lambda t: (-(t.last - t.first), -sizes[t.name], t.first)),
        sorted(tensors, key=lambda t: (t.first, -sizes[t.name])),
        sorted(tensors, key=lambda t: (-sizes[t.name] * (t.last - t.first + 1), t.first)),
        _by_breadth(tensors, sizes, live),
    ]
    rng = random.Random(0)
    best: tuple[int, dict[str, int]] | None = None
    for i in range(len(orders) + _RANDOM_TRIES):
        order = orders[i] if i < len(orders) else rng.sample(tensors, len(tensors))
        offsets = _first_fit(order, sizes)
        total = max(offsets[t.name] + sizes[t.name] for t in tensors)
        if best is None or total < best[0]:
            best = (total, offsets)
            if total == lb:
                break
    if best is None:
        raise ValueError("the arena planner found no placement")
    return best[0], tuple(best[1].items())


_RANDOM_TRIES = 300


@dataclass(frozen=True)
class _Interval:
    name: str
    first: int
    last: int


def _by_breadth(
    tensors: list[_Interval], sizes: dict[str, int], live: list[int]
) -> list[_Interval]:
    """TFLite's greedy-by-breadth order: the tensors of the busiest step first, largest first."""
    seen: set[str] = set()
    order: list[_Interval] = []
    for step in sorted(range(len(live)), key=lambda i: -live[i]):
        here = [t for t in tensors if t.first <= step <= t.last and t.name not in seen]
        for t in sorted(here, key=lambda t: -sizes[t.name]):
            seen.add(t.name)
            order.append(t)
    return order


def _ping_pong(
    tensors: list[TensorInfo], sizes: dict[str, int], arena: int
) -> dict[str, int] | None:
    offsets: dict[str, int] = {}
    low = True
    for t in sorted(tensors, key=lambda t: t.first):
        offsets[t.name] = 0 if low else arena - sizes[t.name]
        low = not low
    return offsets if _valid(tensors, sizes, offsets) else None


def _first_fit(order: list[_Interval], sizes: dict[str, int]) -> dict[str, int]:
    placed: list[_Interval] = []
    offsets: dict[str, int] = {}
    for t in order:
        busy = sorted(
            (offsets[p.name], offsets[p.name] + sizes[p.name])
            for p in placed
            if p.first <= t.last and t.first <= p.last
        )
        # Smallest gap that holds the tensor (best fit), else the end of the last block.
        best_off, best_gap, cursor = None, None, 0
        for lo, hi in busy:
            gap = lo - cursor
            if gap >= sizes[t.name] and (best_gap is None or gap < best_gap):
                best_off, best_gap = cursor, gap
            cursor = max(cursor, hi)
        offsets[t.name] = cursor if best_off is None else best_off
        placed.append(t)
    return offsets


def _valid(tensors: list, sizes: dict[str, int], offsets: dict[str, int]) -> bool:
    for i, a in enumerate(tensors):
        for b in tensors[i + 1 :]:
            if a.first <= b.last and b.first <= a.last:
                if (
                    offsets[a.name] < offsets[b.name] + sizes[b.name]
                    and offsets[b.name] < offsets[a.name] + sizes[a.name]
                ):
                    return False
    return all(o >= 0 for o in offsets.values())


def check_plan(graph: Graph, sizes: dict[str, int], offsets: dict[str, int], arena: int) -> bool:
    """True when no two simultaneously live tensors overlap and all lie inside the arena."""
    tensors = list(graph.tensors.values())
    inside = all(offsets[t.name] + sizes[t.name] <= arena for t in tensors)
    return inside and _valid(tensors, sizes, offsets)


# ---- report --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerMemory:
    step: int
    name: str
    kind: str
    kernel: str  # the C function that runs it (kernel_of): the export calls exactly this one
    scratch_bytes: int  # of the shared scratch buffer, while it runs (scratch_need)
    weight_bits: int | None
    out_bits: int
    weight_bytes: int
    param_bytes: int
    in_bytes: int  # all inputs of the op
    out_bytes: int
    live_bytes: int  # everything live while the op runs

    @property
    def flash_bytes(self) -> int:
        return self.weight_bytes + self.param_bytes


@dataclass(frozen=True)
class MemoryReport:
    flash_bytes: int
    weight_bytes: int
    param_bytes: int
    ram_bytes: int  # everything the export allocates in RAM: arena + kernel scratch
    arena_bytes: int  # the activation arena
    scratch_bytes: int  # the kernels' shared scratch buffer
    ram_lower_bound: int  # of the arena: the largest set of simultaneously live tensors
    layers: tuple[LayerMemory, ...]
    tensor_bytes: dict[str, int] = field(hash=False)
    offsets: dict[str, int] = field(hash=False)
    # The schedule the arena follows (schedule.ScheduledMemory; None: layer by layer): the
    # offsets, arena and RAM above are its figures (schedule.scheduled_report).
    schedule: object | None = field(default=None, hash=False, compare=False)

    def to_json(self) -> dict:
        d = asdict(replace(self, schedule=None))
        d["layers"] = [asdict(x) for x in self.layers]
        d["schedule"] = None if self.schedule is None else self.schedule.to_json()
        return d

    def table(self, budget=None) -> str:
        """Per-layer table and totals; with a Budget, the share of each limit."""
        head = f"{'step':>4} {'layer':<28} {'kind':<7} {'W':>2} {'A':>2} {'weights B':>11} {'params B':>9} {'in+out B':>10} {'live B':>10}"
        rows = [head, "-" * len(head)]
        for x in self.layers:
            wb = "-" if x.weight_bits is None else str(x.weight_bits)
            rows.append(
                f"{x.step:>4} {x.name[:28]:<28} {x.kind:<7} {wb:>2} {x.out_bits:>2} {x.weight_bytes:>11,} "
                f"{x.param_bytes:>9,} {x.in_bytes + x.out_bytes:>10,} {x.live_bytes:>10,}"
            )
        rows.append("-" * len(head))
        rows.append(
            f"FLASH {self.flash_bytes:,} B (weights {self.weight_bytes:,} + parameters {self.param_bytes:,})"
        )
        rows.append(
            f"RAM   {self.ram_bytes:,} B (arena {self.arena_bytes:,}, liveness lower bound "
            f"{self.ram_lower_bound:,}; kernel scratch {self.scratch_bytes:,})"
        )
        if self.schedule is not None:  # the arena above is the plan's
            rows.append(f"schedule {self.schedule.describe()}")
        if budget is not None:
            rows.append(budget.describe(self))
        return "\n".join(rows)


def memory_report(graph: Graph, policy: Policy) -> MemoryReport:
    """FLASH, RAM and the arena plan of `graph` under `policy` (validated first)."""
    policy.validate(graph, allowed=tuple(range(1, 9)))
    sizes = tensor_sizes(graph, policy)
    live = live_bytes(graph, sizes)
    arena, offsets = plan_arena(graph, sizes)
    layers = []
    for i, o in enumerate(graph.ops):
        wbits = policy.weights[o.name] if o.has_weight else None
        layers.append(
            LayerMemory(
                step=i,
                name=o.name,
                kind=o.kind,
                kernel=kernel_of(o, wbits, policy.activations[o.inputs[0]]),
                scratch_bytes=scratch_need(o, wbits),
                weight_bits=wbits,
                out_bits=policy.activations[o.output],
                weight_bytes=weight_bytes(o, wbits) if wbits is not None else 0,
                param_bytes=param_bytes(o, policy.activations[o.inputs[0]]),
                in_bytes=sum(sizes[t] for t in o.inputs),
                out_bytes=sizes[o.output],
                live_bytes=live[i],
            )
        )
    wb = sum(x.weight_bytes for x in layers)
    pb = sum(x.param_bytes for x in layers)
    scratch = scratch_bytes(graph, policy.weights)
    return MemoryReport(
        flash_bytes=wb + pb,
        weight_bytes=wb,
        param_bytes=pb,
        ram_bytes=arena + scratch,
        arena_bytes=arena,
        scratch_bytes=scratch,
        ram_lower_bound=max(live),
        layers=tuple(layers),
        tensor_bytes=sizes,
        offsets=offsets,
    )


# ---- size table for searches ---------------------------------------------------------------


@dataclass(frozen=True)
class SizeTable:
    """Bytes of every tensor at every allowed bit-width, and what is live at each step.

    Searches try thousands of policies; they add these numbers up instead of re-deriving sizes
    (the agent's observations, the action wall and the ILP all read this one table).
    """

    act: Mapping[str, Mapping[int, int]]  # activation tensor -> bits -> bytes
    weight: Mapping[str, Mapping[int, int]]  # weight op -> bits -> bytes
    params: int  # the integer parameters of every op that do not depend on the bits
    live: tuple[tuple[str, ...], ...]  # tensors live at each execution step
    # activation tensor -> bits -> FLASH bytes of the lut tables that read it (2^bits each, as
    # the export builds them); only tensors some lut op reads
    act_flash: Mapping[str, Mapping[int, int]] = field(default_factory=dict)

    def flash(self, weights: Mapping[str, int], acts: Mapping[str, int] | None = None) -> int:
        """FLASH of a policy: exactly memory_report's figure. Without `acts` the lut tables
        count at 8 input bits (their upper bound)."""
        return (
            self.params
            + sum(self.weight[o][b] for o, b in weights.items())
            + self.table_flash(acts)
        )

    def table_flash(self, acts: Mapping[str, int] | None = None) -> int:
        """The lut tables' FLASH at the bits of the tensors they read (None: at 8 bits)."""
        return sum(t[8 if acts is None else acts[n]] for n, t in self.act_flash.items())

    def live_at(self, acts: Mapping[str, int], step: int) -> int:
        return sum(self.act[t][acts[t]] for t in self.live[step])

    def live_peak(self, acts: Mapping[str, int]) -> int:
        """The liveness lower bound of the arena (the planner may need more on residual nets)."""
        return max(self.live_at(acts, s) for s in range(len(self.live)))


def size_table(graph: Graph) -> SizeTable:
    """The SizeTable of `graph` over ALLOWED_BITS (see SizeTable)."""
    from .policy import ALLOWED_BITS

    return SizeTable(
        act={
            n: {b: activation_bytes(t.shape, b) for b in ALLOWED_BITS}
            for n, t in graph.tensors.items()
        },
        weight={o.name: {b: weight_bytes(o, b) for b in ALLOWED_BITS} for o in graph.weight_ops},
        params=sum(param_bytes(o) for o in graph.ops if not _input_bits_matter(o)),
        live=tuple(tuple(graph.live_at(s)) for s in range(len(graph.ops))),
        act_flash={
            n: {b: activation_flash_bytes(graph, n, b) for b in ALLOWED_BITS}
            for n in sorted({o.inputs[0] for o in graph.ops if _input_bits_matter(o)})
        },
    )
