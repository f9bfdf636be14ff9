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
from dataclasses import asdict, dataclass, field

from .errors import MicromixError
from .graph import Graph, Op, TensorInfo
from .policy import Policy

CTYPE_BYTES = {"int8": 1, "uint8": 1, "int32": 4}


def packed_bytes(elems: int, bits: int) -> int:
    """Bytes of `elems` values of `bits` bits, padded to a whole byte."""
    return (elems * bits + 7) // 8


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
    """The integer constants the export stores for `op`, as (suffix, C type, count).

    conv/linear: per output channel an int32 bias (absorbs BN's shift), an int32 multiplier
    mantissa and an int8 shift (ICN-equivalent requantization). add: one int32 multiplier per
    input and one shared shift. avgpool: one multiplier and one shift, or one per possible
    divisor (1 .. kh*kw) when padded zeros are not counted. maxpool, mul: one multiplier and
    shift. cat: one multiplier and shift per input. lut: a table of one byte per input code,
    2^in_bits entries (`in_bits` is the input tensor's bits; None gives the 8-bit upper bound).
    """
    if op.kind in ("conv", "linear"):
        c = op.out_shape[0]
        return [("bias", "int32", c), ("mult", "int32", c), ("shift", "int8", c)]
    if op.kind == "add":
        return [("mult", "int32", 2), ("shift", "int8", 1)]
    if op.kind == "avgpool":
        n = 1 if op.count_include_pad else op.kernel[0] * op.kernel[1]
        return [("mult", "int32", n), ("shift", "int8", n)]
    if op.kind in ("maxpool", "mul", "cat"):
        n = len(op.inputs) if op.kind == "cat" else 1
        return [("mult", "int32", n), ("shift", "int8", n)]
    if op.kind == "lut":
        return [("table", "uint8", 2 ** (8 if in_bits is None else in_bits))]
    raise ValueError(f"no parameter layout for op kind {op.kind}")


def param_bytes(op: Op, in_bits: int | None = None) -> int:
    return sum(CTYPE_BYTES[t] * n for _, t, n in param_arrays(op, in_bits))


def activation_flash_bytes(graph: Graph, tensor: str, bits: int) -> int:
    """FLASH bytes that depend on the bits of activation `tensor`: the tables (2^bits bytes)
    of the lut ops that read it. `param_bytes(op)` without `in_bits` counts these at 8 bits
    (the upper bound); the exact FLASH is that minus (256 - 2^bits) per table."""
    return sum(2**bits for o in graph.ops if o.kind == "lut" and o.inputs[0] == tensor)


# ---- kernel scratch ------------------------------------------------------------------------


# The constants the C kernels and the memory model share, defined here only: cgen writes them
# into the generated mm_config.h that every kernel includes (nothing parses C).
#   MM_PATCH: int16 elements of an unpacked patch (longer ones run in chunks of one pixel's).
#   MM_LANES: output channels side by side (mm_conv_small, mm_depthwise's groups are 4).
#   MM_SMALL_ROW, MM_SMALL_ROW_BITS: the longest weight row mm_conv_small takes.
#   MM_DW_TAPS: the largest kernel mm_depthwise runs four channels at a time.
KERNEL_CONSTANTS: Mapping[str, int] = {
    "MM_PATCH": 256,
    "MM_LANES": 8,
    "MM_SMALL_ROW": 32,
    "MM_SMALL_ROW_BITS": 128,
    "MM_DW_TAPS": 25,
}


DIM_MAX = 2**15 - 1  # the kernels' mm_conv_dims holds int16 sizes


def conv_dims(op: Op) -> tuple[int, ...]:
    """mm_conv_dims of a conv or linear op as executed (a linear on a C x H x W input is an
    H x W convolution): in C, H, W, out C, H, W, kernel, stride, padding, groups."""
    if op.weight is None:
        raise ValueError(f"op {op.name} has no weight")
    linear = len(op.weight.shape) == 2  # runs as a conv whose kernel is the whole input
    kernel = op.in_shape[1:] if linear else op.kernel
    return (*op.in_shape, *op.out_shape, *kernel, *op.stride, *op.padding, op.groups)


def kernel_dims(op: Op) -> tuple[int, ...]:
    """`conv_dims(op)`, refused when the C kernels cannot hold them (int16 sizes)."""
    dims = conv_dims(op)
    if max(dims) > DIM_MAX:
        raise MicromixError(
            f"layer {op.name} has a dimension above {DIM_MAX}, more than the C kernels take."
        )
    return dims


def check_kernel_limits(graph: Graph) -> None:
    """Refuse, before anything is trained, a layer the C kernels cannot run."""
    for op in graph.weight_ops:
        kernel_dims(op)


def kernel_constant(name: str) -> int:
    """One of KERNEL_CONSTANTS (the C side reads the same value from mm_config.h)."""
    if name not in KERNEL_CONSTANTS:
        raise ValueError(f"no kernel constant {name}")
    return KERNEL_CONSTANTS[name]


# The C functions that run a conv or linear layer (kernel_of picks one per layer).
CONV_KERNELS = (
    "mm_pointwise8",
    "mm_pointwise8_widen",
    "mm_pointwise_sub",
    "mm_conv_small",
    "mm_depthwise",
    "mm_conv",
)


def _window(op: Op) -> tuple[tuple[int, int], tuple[int, int]]:
    """(kernel, padding) as the kernels run the op: a linear on C x H x W is an H x W conv."""
    if op.kind == "linear":
        return (op.in_shape[1], op.in_shape[2]), (0, 0)
    return tuple(op.kernel), tuple(op.padding)


def is_pointwise_sub(op: Op, w_bits: int | None) -> bool:
    """mm_pointwise_sub's layers: a 1x1 conv, or a linear on a 1 x 1 input, with 4- or 2-bit
    weights on at least 32 / w_bits and at most MM_PATCH input channels, no padding, no groups
    (its scratch is one int16 per input channel)."""
    if op.kind not in ("conv", "linear") or w_bits is None or w_bits >= 8:
        return False
    kernel, padding = _window(op)
    if op.groups != 1 or kernel != (1, 1) or padding != (0, 0):
        return False
    c = op.in_shape[0]
    return c * w_bits >= 32 and c <= kernel_constant("MM_PATCH")


def _pointwise8(op: Op, w_bits: int, in_bits: int) -> str | None:
    """mm_pointwise8 (8-bit inputs whose patch is one contiguous run of input bytes: 1x1 without
    padding, or a window covering the whole input) or mm_pointwise8_widen (1x1, 2/4-bit inputs
    of 32 to MM_PATCH channels widened to bytes per pixel); None for other layers."""
    kernel, padding = _window(op)
    if op.groups != 1 or w_bits != 8 or padding != (0, 0):
        return None
    c, h, w = op.in_shape
    if in_bits != 8:
        ok = kernel == (1, 1) and 32 <= c <= kernel_constant("MM_PATCH")
        return "mm_pointwise8_widen" if ok else None
    if kernel == (1, 1) or (kernel == (h, w) and tuple(op.out_shape[1:]) == (1, 1)):
        return "mm_pointwise8"
    return None


def _family(op: Op, w_bits: int) -> str:
    """The scratch layout a conv or linear layer is sized for: "small" (rows short enough for
    output channels in lanes), "depthwise" or "conv". The pointwise kernels run inside the
    scratch of their family (so the figures do not depend on the activation bits)."""
    if op.weight is None:
        raise ValueError(f"op {op.name} needs a weight and its bits")
    row = op.weight.row_elems
    small = (
        op.groups == 1
        and row <= kernel_constant("MM_SMALL_ROW")
        and row * w_bits <= kernel_constant("MM_SMALL_ROW_BITS")
        and op.out_shape[0] % kernel_constant("MM_LANES") == 0
    )
    if small:
        return "small"
    if op.is_depthwise and op.in_shape[0] == op.out_shape[0]:
        return "depthwise"
    return "conv"


def kernel_of(op: Op, w_bits: int | None, in_bits: int | None) -> str:
    """The C function that runs `op`, chosen here once (the export calls it directly; the C
    checks the choice only in debug builds): one of CONV_KERNELS for a conv or linear with
    `w_bits` weights on `in_bits` inputs, else the op kind."""
    if op.kind not in ("conv", "linear"):
        return op.kind
    if w_bits is None or in_bits is None:
        raise ValueError(f"op {op.name} needs its weight and input bits")
    family = _family(op, w_bits)
    if family == "depthwise":
        return "mm_depthwise"
    pointwise = _pointwise8(op, w_bits, in_bits)
    if pointwise == "mm_pointwise8_widen":
        return pointwise
    if is_pointwise_sub(op, w_bits):
        return "mm_pointwise_sub"
    if pointwise is not None:
        return pointwise
    return "mm_conv_small" if family == "small" else "mm_conv"


def scratch_need(op: Op, w_bits: int | None) -> int:
    """Bytes of the shared scratch buffer `op`'s kernel uses (int32 tables first, then int16).

    small: tap offsets (int32 per tap), the weight tile (row x lanes int16) and the unpacked
    patch (row int16). depthwise: none (its weight pairs are a small fixed stack table).
    conv: the unpacked patch, in chunks of MM_PATCH elements of one pixel when the patch is
    longer than MM_PATCH. mm_pointwise_sub: one unpacked input pixel. mm_pointwise8 and
    mm_pointwise8_widen (in_c bytes) take what their family counts.
    """
    if op.kind not in ("conv", "linear"):
        return 0
    if w_bits is None:
        raise ValueError(f"op {op.name} needs its weight bits")
    if is_pointwise_sub(op, w_bits):  # one unpacked input pixel (mm_pointwise_sub)
        return 2 * op.in_shape[0]
    kind = _family(op, w_bits)
    lanes = kernel_constant("MM_LANES")
    # A linear on a C x H x W input runs as an H x W convolution with a 1 x 1 output.
    taps = op.in_shape[1] * op.in_shape[2] if op.kind == "linear" else op.kernel[0] * op.kernel[1]
    if kind == "small":
        row = op.weight.row_elems
        return 4 * taps + 2 * row * lanes + 2 * row
    if kind == "conv":
        row, patch = op.weight.row_elems, kernel_constant("MM_PATCH")
        cin_g = op.in_shape[0] // op.groups
        return 2 * (row if row <= patch else min(cin_g, patch))
    return 0


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

    def to_json(self) -> dict:
        d = asdict(self)
        d["layers"] = [asdict(x) for x in self.layers]
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
        params=sum(param_bytes(o) for o in graph.ops if o.kind != "lut"),
        live=tuple(tuple(graph.live_at(s)) for s in range(len(graph.ops))),
        act_flash={
            n: {b: activation_flash_bytes(graph, n, b) for b in ALLOWED_BITS}
            for n in sorted({o.inputs[0] for o in graph.ops if o.kind == "lut"})
        },
    )
