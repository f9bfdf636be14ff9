"""Schedules and their exact RAM: layer by layer, in place, and patch by patch.

`layer` is memory.memory_report's figure: every tensor lives in full from the op that writes it
to the last op that reads it. `inplace` lets an op write its output over an input that dies at
that op, where its kernel can (`OpDef.in_place`): the kernel writes output pixels in raster
order, each after reading its window, so the output starts a few bytes before the input
(about one input row for a 3x3 depthwise at stride 1, a pixel at stride 2, nothing for
elementwise ops and tables of equal in / out bits) and that overlap is the only extra RAM:
TinyEngine's in-place depthwise with the arena itself as the buffer, and no kernel changes. `patch` runs the ops up to a split tensor once per cell of an n x n grid
of that tensor (MCUNetV2): each cell computes, from the input region its receptive field needs
(clipped at the borders, where the op's own padding is applied), a patch-sized buffer per
intermediate tensor and writes its slice of the split tensor; the rest runs layer by layer
(in place where it applies). The recomputed MACs are counted exactly. `stream` is auto with the
input handed over row by row by the application (the C's micromix_run_rows): a patch stage
then holds only a ring of the rows its cells still read (`ring_rows`); where the first op can
(`row_stem`), it runs row by row ahead of the cells, each output row once, from a line buffer
of input rows into a ring of its own rows, so the stage recomputes nothing of it (a row stem
also runs from a resident input, where it pays).

Every plan is a list of buffers with live steps that memory.plan_arena places, so a peak is an
arena plan that memory.check_plan verifies, plus the kernels' shared scratch (as memory.py).
The geometry functions (`stage_spans`, `input_span`, `macs_per_pixel`, `patch_fill`) are what
IntegerModel.run_scheduled runs, so the reference computes exactly what the plan counts.

The searches hold RAM to the budget under a `Scheduling` (schedule name and recompute cap,
plain data): `search_table` is their size table of the plan picked at 8 bits, `bound` a cheap
check never below the exact figure, `report` the exact one (`scheduled_report`).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .errors import MicromixError
from .graph import Graph, Op, TensorInfo
from .memory import (
    MemoryReport,
    SizeTable,
    activation_bytes,
    memory_report,
    packed_bytes,
    plan_arena,
    scratch_bytes,
    size_table,
)
from .ops import of
from .policy import Policy

SCHEDULES = ("auto", "layer", "inplace", "patch", "stream")
GRIDS = range(2, 9)  # the patch grids `auto` and `patch` search

Span = tuple[int, int]  # [lo, hi) along one spatial axis


def patch_fill(op: Op) -> int:
    """The code written where `op`'s input region crosses the tensor border (its padding)."""
    fill = of(op).patch_fill(op)
    if fill is None:
        raise MicromixError(f"layer {op.name} cannot run on patches (its padding is not a value).")
    return fill


# ---- geometry ------------------------------------------------------------------------------


def reads_whole(op: Op, shape: tuple[int, int, int]) -> bool:
    """True when `op` reads all of an input of `shape`: a broadcast gate, or an op with a 1 x 1
    output (linear, global pool) whose input is larger."""
    out_hw, in_hw = tuple(op.out_shape[1:]), tuple(op.in_shape[1:])
    return tuple(shape[1:]) != in_hw or (out_hw == (1, 1) and in_hw != (1, 1))


def input_span(op: Op, shape: tuple[int, int, int], span: Span, axis: int) -> Span:
    """The input rows (axis 0) or columns (axis 1) output `span` reads, before clipping to the
    input (negative or past the end: the op's padding)."""
    if reads_whole(op, shape):
        return 0, shape[1 + axis]
    k, s, p = op.kernel[axis], op.stride[axis], op.padding[axis]
    return span[0] * s - p, (span[1] - 1) * s - p + k


def macs_per_pixel(op: Op) -> int:
    """MACs of one output pixel of `op` (all its channels)."""
    pixels = op.out_shape[1] * op.out_shape[2]
    if op.macs % pixels:
        raise ValueError(f"op {op.name}'s MACs are not a whole number per output pixel")
    return op.macs // pixels


def cuts(size: int, n: int) -> list[Span]:
    """`size` cut into `n` spans as even as possible."""
    return [(i * size // n, (i + 1) * size // n) for i in range(n)]


def stage_ops(graph: Graph, split: str) -> tuple[Op, ...]:
    """The ops that run per patch for split tensor `split` (up to and including its producer),
    refused unless `split` is the only tensor they pass on (no residual crosses the split) and
    every one of them can run on patches."""
    steps = {o.name: i for i, o in enumerate(graph.ops)}
    if split not in steps:
        raise MicromixError(f"no layer '{split}' to split the network at.")
    k = steps[split]
    crossing = [t.name for t in graph.tensors.values() if t.first <= k < t.last]
    if crossing != [split] and not (k == len(graph.ops) - 1 and not crossing):
        raise MicromixError(
            f"cannot split at '{split}': tensors {crossing} are live across it (a residual)."
        )
    ops = graph.ops[: k + 1]
    for o in ops:
        patch_fill(o)
    return ops


def split_points(graph: Graph) -> list[str]:
    """Every tensor the network can be split at (stage_ops accepts it), in execution order."""
    out = []
    for o in graph.ops:
        try:
            stage_ops(graph, o.name)
        except MicromixError:
            continue
        out.append(o.name)
    return out


def stage_spans(graph: Graph, split: str, grid: int, axis: int) -> list[dict[str, Span]]:
    """Per grid row (axis 0) or column (axis 1): the span of every tensor of the stage that
    cell computes (its split-tensor slice, and the union of what the consumers read, clipped),
    the network input included."""
    ops = stage_ops(graph, split)
    size = graph.tensors[split].shape[1 + axis]
    if not 1 <= grid <= size:
        raise MicromixError(f"a {grid} x {grid} grid does not fit the {split} tensor.")
    out = []
    for cell in cuts(size, grid):
        need: dict[str, Span] = {split: cell}
        for o in reversed(ops):
            for t in o.inputs:
                shape = graph.tensors[t].shape
                lo, hi = input_span(o, shape, need[o.output], axis)
                lo, hi = max(lo, 0), min(hi, shape[1 + axis])
                old = need.get(t, (lo, hi))
                need[t] = (min(old[0], lo), max(old[1], hi))
        out.append(need)
    return out


@dataclass(frozen=True)
class TileStep:
    """One op of one patch cell as the C runs it: its output region, the (clipped) input
    region its kernel reads, and the padding that region leaves on the top and left (the
    kernel's own clipping pads the bottom and right at the tensor's border)."""

    op: Op
    rows: Span  # of its output tensor
    cols: Span
    in_rows: Span  # of its (first) input tensor, inside the tensor
    in_cols: Span
    pad: tuple[int, int]  # (top, left) rows and columns of padding in the kernel's window
    staged: bool  # its input is the stage's input, copied into the staging buffer first


Cells = tuple[tuple[TileStep, ...], ...]  # per cell of the grid (row-major), its ops


def cells(graph: Graph, split: str, grid: int, row_ops: int = 0) -> list[list[TileStep]]:
    """The patch stage as the C runs it: per cell of the grid (row-major), its ops in order.
    Refused (one sentence) where a kernel could not read its input tile in place: an op that
    reads a whole tensor, or a tensor whose patch holds more than one of its readers needs (a
    tensor read by two ops of the stage); the stage's input is always copied in. `row_ops`:
    the stage's first op runs row by row before it (`row_stem`), so the cells start at its
    output."""
    return [list(cell) for cell in _geometry(graph, split, grid, row_ops).cells]


def row_stem(graph: Graph, split: str) -> Op | None:
    """The op that can run row by row ahead of a streamed patch stage: the first op, when it
    reads only the network input and only the stage's next op reads its output. Each of its
    output rows is computed once into a ring of rows (`ring_rows`) from a line buffer of input
    rows (`stem_windows`), so the stage recomputes nothing of it."""
    ops = stage_ops(graph, split)
    stem = ops[0]
    t = graph.tensors[stem.output]
    if len(ops) < 2 or stem.inputs != (graph.input,) or t.last != 1 or ops[1].inputs != (t.name,):
        return None
    return stem


def stem_windows(graph: Graph, stem: Op) -> list[TileStep]:
    """Per output row of `stem`, its tile: all its columns, from the input rows its window
    reads (clipped; the top padding in `pad`)."""
    _, h, w = stem.out_shape
    return [_tile_step(graph, stem, {stem.output: (y, y + 1)}, {stem.output: (0, w)}, graph.input)
            for y in range(h)]  # fmt: skip


def stage_overlap(graph: Graph, split: str, grid: int, in_pix: int, out_pix: int) -> int:
    """Bytes by which the split tensor must start before the network input so that the patch
    stage can write it over the input as it goes (`in_pix` / `out_pix`: bytes of one pixel of
    each): cell k copies its input patch in before it writes its slice of the split tensor,
    so the slice may only cover input bytes no later cell copies. Each cell's slice must end
    before the first input byte any later cell reads."""
    return _stage_overlap(graph, split, _geometry(graph, split, grid, 0).cells, in_pix, out_pix)


def _stage_overlap(graph: Graph, split: str, cell_list: Cells, in_pix: int, out_pix: int) -> int:
    _, _, w_in = graph.tensors[graph.input].shape
    _, _, w_out = graph.tensors[split].shape
    reads, ends = [], []
    for cell in cell_list:
        first = next(st for st in cell if st.staged)
        reads.append((first.in_rows[0] * w_in + first.in_cols[0]) * in_pix)
        last = next(st for st in cell if st.op.output == split)
        ends.append(((last.rows[1] - 1) * w_out + last.cols[1]) * out_pix)
    later = [min(reads[k + 1 :]) for k in range(len(reads) - 1)]
    return max([0] + [e - a for e, a in zip(ends, later)])


@dataclass(frozen=True)
class _Geometry:
    """A patch stage at one split, grid and row stem, whatever the bits: what `_patch_buffers`
    sizes its buffers from. The searches plan the same graph for thousands of policies, and the
    cells alone are most of a plan's time, so `_geometry` keeps the last few."""

    ops: tuple[Op, ...]  # the graph's ops up to the one writing the split tensor
    first: str  # the stage's input: the network input, or the row stem's output
    extra: int  # recomputed MACs (`_extra_macs`)
    cells: Cells
    patch_hw: dict[str, tuple[int, int]]  # each intermediate's largest patch (rows, columns)
    staged_in: frozenset[tuple[int, int]]  # the (rows, columns) of each patch of `first`
    staged_out: frozenset[tuple[int, int]]  # and of each slice of the split tensor


def _geometry(graph: Graph, split: str, grid: int, row_ops: int) -> _Geometry:
    """The stage's geometry; refused (one sentence, as `cells`) where the C cannot run it."""
    geo = _geometry_or_refusal(graph, split, grid, row_ops)
    if isinstance(geo, MicromixError):
        raise MicromixError(str(geo))
    return geo


@functools.lru_cache(maxsize=256)  # a refusal is kept too: auto tries every split and grid
def _geometry_or_refusal(
    graph: Graph, split: str, grid: int, row_ops: int
) -> _Geometry | MicromixError:
    try:
        return _stage_geometry(graph, split, grid, row_ops)
    except MicromixError as e:
        return e


def _stage_geometry(graph: Graph, split: str, grid: int, row_ops: int) -> _Geometry:
    rows, cols = (stage_spans(graph, split, grid, a) for a in (0, 1))
    ops = graph.ops[: graph.tensors[split].first + 1]
    first = graph.input if not row_ops else ops[0].output
    cell_list = tuple(
        tuple(_tile_step(graph, o, r, c, first) for o in ops[row_ops:]) for r in rows for c in cols
    )
    hw = {
        o.output: (
            max(r[o.output][1] - r[o.output][0] for r in rows),
            max(c[o.output][1] - c[o.output][0] for c in cols),
        )
        for o in ops[row_ops:]
        if o.output != split
    }
    steps = [st for cell in cell_list for st in cell]
    return _Geometry(
        ops=ops,
        first=first,
        extra=_extra_macs(ops[row_ops:], rows, cols),  # the spans once: recomputed_macs's count
        cells=cell_list,
        patch_hw=hw,
        staged_in=frozenset((_n(st.in_rows), _n(st.in_cols)) for st in steps if st.staged),
        staged_out=frozenset((_n(st.rows), _n(st.cols)) for st in steps if st.op.output == split),
    )


def _tile_step(
    graph: Graph, o: Op, rows: dict[str, Span], cols: dict[str, Span], first: str
) -> TileStep:
    spans, pads, staged = [], [], False
    for axis, need in ((0, rows), (1, cols)):
        for t in o.inputs:
            shape = graph.tensors[t].shape
            if reads_whole(o, shape):
                raise MicromixError(
                    f"layer {o.name} reads a whole tensor: it cannot run on patches."
                )
            lo, hi = input_span(o, shape, need[o.output], axis)
            inside = (max(lo, 0), min(hi, shape[1 + axis]))
            if t != first and inside != need[t]:
                raise MicromixError(
                    f"layer {o.name} reads part of a patch another layer needs more of; the C "
                    "runs a patch stage only where each tensor has one reader."
                )
            staged = staged or t == first
        spans.append(inside)
        pads.append(inside[0] - lo)
    if staged and len(o.inputs) != 1:
        raise MicromixError(f"layer {o.name} reads the stage's input and another tensor.")
    return TileStep(o, rows[o.output], cols[o.output], spans[0], spans[1], tuple(pads), staged)


def recomputed_macs(graph: Graph, split: str, grid: int, row_ops: int = 0) -> int:
    """The MACs a patch stage at `split` and `grid` computes beyond layer by layer: each op's
    MACs per output pixel times the halo pixels its cells compute twice (a row stem's rows are
    computed once). Counted from the spans alone, for any stage stage_ops accepts."""
    rows, cols = (stage_spans(graph, split, grid, a) for a in (0, 1))
    return _extra_macs(stage_ops(graph, split)[row_ops:], rows, cols)


def _extra_macs(ops, rows: list[dict[str, Span]], cols: list[dict[str, Span]]) -> int:
    extra = 0
    for o in ops:
        n_rows = sum(r[o.output][1] - r[o.output][0] for r in rows)
        n_cols = sum(c[o.output][1] - c[o.output][0] for c in cols)
        extra += macs_per_pixel(o) * n_rows * n_cols - o.macs
    return extra


def row_fetches(cell_list: Cells) -> list[int]:
    """With the input streamed (`stream`): per cell, the input rows read so far once its patch
    is copied in. Rows arrive once each, top to bottom, so a cell reads up to its patch's last
    row and never back."""
    out, have = [], 0
    for cell in cell_list:
        first = next(st for st in cell if st.staged)
        have = max(have, first.in_rows[1])
        out.append(have)
    return out


def ring_rows(cell_list: Cells) -> int:
    """Rows of the ring buffer a streamed input needs: row y lives in slot y mod R, so before
    cell k's copy the ring must hold every row from the first any cell >= k still reads up to
    the last read so far."""
    lows = [next(st for st in cell if st.staged).in_rows[0] for cell in cell_list]
    still = [min(lows[k:]) for k in range(len(lows))]
    return max(have - lo for have, lo in zip(row_fetches(cell_list), still))


# ---- plans ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepBuffers:
    step: int
    label: str  # the op; "(per patch)" inside the patch stage
    buffers: tuple[tuple[str, int], ...]  # (its tensors live then, "a + b" in place; bytes)


@dataclass(frozen=True)
class ScheduledMemory:
    kind: str  # layer, inplace or patch
    split: str | None  # patch: the tensor the per-patch stage writes
    grid: int  # patch: n of the n x n grid (1 otherwise)
    inplace: tuple[str, ...]  # ops whose output overwrites an input
    ram_bytes: int  # arena + kernel scratch (memory.memory_report's convention)
    arena_bytes: int
    scratch_bytes: int
    macs: int
    layer_macs: int
    steps: tuple[StepBuffers, ...]
    buffer_bytes: dict[str, int] = field(hash=False)
    live: dict[str, tuple[int, int]] = field(hash=False)  # buffer -> (first, last) step
    offsets: dict[str, int] = field(hash=False)
    tensors: dict[str, str] = field(hash=False)  # activation tensor -> the buffer holding it
    deltas: dict[str, int] = field(hash=False, default_factory=dict)  # its offset in there
    member_bytes: dict[str, int] = field(hash=False, default_factory=dict)  # tensor -> bytes
    member_live: dict[str, tuple[int, int]] = field(hash=False, default_factory=dict)
    stream_input: bool = False  # the input arrives row by row (micromix_run_rows)
    row_ops: int = 0  # 1: the patch stage's first op runs row by row into a ring (row_stem)

    def tensor_offset(self, tensor: str) -> int:
        """Where `tensor` starts in the arena (its buffer's offset plus its place in it)."""
        return self.offsets[self.tensors[tensor]] + self.deltas.get(tensor, 0)

    @property
    def mac_overhead(self) -> float:
        return self.macs / self.layer_macs - 1

    def describe(self) -> str:
        what = self.kind
        if self.split is not None:
            what += f" (split at {self.split}, {self.grid} x {self.grid} grid)"
        if self.stream_input:
            what += ", input streamed by rows"
        if self.row_ops:
            what += ", first layer row by row"
        return f"{what}: peak RAM {self.ram_bytes:,} B, MACs {self.macs:,} (+{100 * self.mac_overhead:.1f} %)"

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "split": self.split,
            "grid": self.grid,
            "inplace": list(self.inplace),
            "stream_input": self.stream_input,
            "row_ops": self.row_ops,
            "ram": self.ram_bytes,
            "arena": self.arena_bytes,
            "scratch": self.scratch_bytes,
            "macs": self.macs,
            "mac_overhead": self.mac_overhead,
            "steps": [
                {"step": s.step, "op": s.label, "buffers": dict(s.buffers)} for s in self.steps
            ],
            "offsets": dict(self.offsets),
        }


@dataclass
class _Buf:
    first: int
    last: int
    bytes: int


@dataclass(frozen=True)
class _Draft:
    """A plan before placement. Every tensor (and staging buffer) is a member with its own
    live steps and bytes (`bufs`); members written in place share a group (`home`, named after
    its first member) at fixed byte offsets inside it (`delta`), so a group's footprint changes
    from step to step: the hull of its members live at that step."""

    kind: str
    split: str | None
    grid: int
    bufs: dict[str, _Buf]
    home: dict[str, str]
    delta: dict[str, int]  # member -> its byte offset inside its group
    inplace: list[str]
    macs: int
    stream: bool = False  # the input streamed by rows: a patch stage holds a ring of its rows
    row_ops: int = 0  # 1: the stage's first op runs row by row ahead of it (row_stem)

    def rects(self) -> dict[str, list[tuple[int, int, int, int]]]:
        """Per group, its members as (first, last, lo, hi): live steps and bytes in the group."""
        out: dict[str, list[tuple[int, int, int, int]]] = {}
        for n, b in self.bufs.items():
            lo = self.delta[n]
            out.setdefault(self.home[n], []).append((b.first, b.last, lo, lo + b.bytes))
        return out

    def lower_bound(self) -> int:
        """No placement of the draft's groups beats this: the most bytes live at one step
        (a group counts its hull), and each group's whole extent (a chain of in-place ops
        walks down through memory: each output starts before its input)."""
        return _Bounds(self).value()


def _hulls(rs: list[tuple[int, int, int, int]]) -> dict[int, tuple[int, int]]:
    """A group's byte hull [lo, hi) at each step some member of it is live."""
    out: dict[int, tuple[int, int]] = {}
    for first, last, lo, hi in rs:
        if hi <= lo:
            continue
        for s in range(first, last + 1):
            a, b = out.get(s, (lo, hi))
            out[s] = (min(a, lo), max(b, hi))
    return out


def _layer_bufs(graph: Graph, policy: Policy) -> dict[str, _Buf]:
    return {
        n: _Buf(t.first, t.last, activation_bytes(t.shape, policy.activations[n]))
        for n, t in graph.tensors.items()
    }


def _draft(graph: Graph, policy: Policy, inplace: bool, stream: bool = False) -> _Draft:
    """Layer by layer, or with every op written in place that can be (`_try_inplace`); with a
    streamed input, its rows are all read into its tensor before the first op."""
    bufs = _layer_bufs(graph, policy)
    kind = "inplace" if inplace else "layer"
    macs = sum(o.macs for o in graph.ops)
    home, delta = {n: n for n in bufs}, dict.fromkeys(bufs, 0)
    d = _Draft(kind, None, 1, bufs, home, delta, [], macs, stream)
    if inplace:
        _inplace_after(graph, policy, d, -1)
    return d


def _patch_pair(
    graph: Graph, policy: Policy, split: str, grid: int, stream: bool = False, row_ops: int = 0
) -> list[_Draft]:
    """The patch drafts at one split and grid, before any op after the stage is written in
    place (`_inplace_after`): the split tensor apart from the network input, and over the part
    of it the stage has consumed (stage_overlap). With a streamed input, the stage's input
    buffer is the ring of its rows (`ring_rows`), which the stage overwrites as rows arrive:
    only apart. With a row stem (`row_ops` 1) the stage starts from a ring of the stem's
    output rows, which the stem fills one row at a time (also only apart): from the input in
    full, or from a line buffer of its largest window of rows when the input is streamed."""
    bufs = _layer_bufs(graph, policy)
    extra, cell_list = _patch_buffers(graph, policy, bufs, split, grid, row_ops)
    macs = sum(o.macs for o in graph.ops) + extra
    x = graph.input
    first = graph.ops[0].output if row_ops else x
    pix = {
        t: packed_bytes(graph.tensors[t].shape[0], policy.activations[t]) for t in (x, split, first)
    }
    if stream or row_ops:
        bufs[first].bytes = ring_rows(cell_list) * graph.tensors[first].shape[2] * pix[first]
    if row_ops and stream:
        window = max(_n(st.in_rows) for st in stem_windows(graph, graph.ops[0]))
        bufs[x].bytes = window * graph.tensors[x].shape[2] * pix[x]
    out = []
    for joined in (False, True) if not (stream or row_ops) else (False,):
        # merges change homes and offsets only: the buffers are shared
        home, delta = {n: n for n in bufs}, dict.fromkeys(bufs, 0)
        d = _Draft("patch", split, grid, bufs, home, delta, [], macs, stream, row_ops)
        if joined:
            over = _stage_overlap(graph, split, cell_list, pix[x], pix[split])
            d.home[split], d.delta[x] = x, over
        out.append(d)
    return out


def _inplace_after(graph: Graph, policy: Policy, d: _Draft, stage_end: int) -> None:
    """Every op after `stage_end` written in place where it can be (a patch stage's ops work
    on patches: their windows are not the tensor's)."""
    bounds = _Bounds(d)
    for step, op in enumerate(graph.ops):
        if step > stage_end:
            _try_inplace(graph, policy, step, op, d, bounds)


class _Bounds:
    """Draft.lower_bound kept up to date group by group while merges are tried (recomputing
    it whole for every op was most of a plan's time)."""

    def __init__(self, d: _Draft) -> None:
        self.live = [0] * (max(b.last for b in d.bufs.values()) + 1)
        self.hull: dict[str, dict[int, tuple[int, int]]] = {}
        self.extent: dict[str, int] = {}
        self.refresh(d, set(d.home.values()))

    def refresh(self, d: _Draft, groups: set[str]) -> None:
        for g in groups:
            for s, (lo, hi) in self.hull.pop(g, {}).items():
                self.live[s] -= hi - lo
            self.extent.pop(g, None)
        rects = {g: [] for g in groups}
        for n, g in d.home.items():
            if g in rects:
                b, lo = d.bufs[n], d.delta[n]
                rects[g].append((b.first, b.last, lo, lo + b.bytes))
        for g, rs in rects.items():
            if rs:
                self.hull[g] = _hulls(rs)
                for s, (lo, hi) in self.hull[g].items():
                    self.live[s] += hi - lo
                self.extent[g] = max(r[3] for r in rs) - min(r[2] for r in rs)

    def value(self) -> int:
        return max(max(self.live), max(self.extent.values()))


def _try_inplace(
    graph: Graph, policy: Policy, step: int, op: Op, d: _Draft, bounds: _Bounds
) -> None:
    """Write `op` in place unless that raises the draft's lower bound: a chain of in-place ops
    walks down through memory, so past some point the next merge costs more than it saves, and
    the output starts a new group instead."""
    before, home, delta = bounds.value(), dict(d.home), dict(d.delta)
    touched = {d.home[t] for t in op.inputs} | {d.home[op.output]}
    if not _merge_inplace(graph, policy, step, op, d):
        return
    bounds.refresh(d, touched)
    if bounds.value() <= before:
        d.inplace.append(op.name)
        return
    d.home.clear()
    d.home.update(home)
    d.delta.clear()
    d.delta.update(delta)
    bounds.refresh(d, touched)


def _patch_buffers(
    graph: Graph, policy: Policy, bufs: dict[str, _Buf], split: str, grid: int, row_ops: int = 0
) -> tuple[int, Cells]:
    """Shrink the stage's intermediates to their largest patch, keep the stage's input (the
    network input, or with `row_ops` the row stem's output) and the split tensor live through
    the whole stage; returns the recomputed MACs and the cells."""
    geo = _geometry(graph, split, grid, row_ops)
    bits = policy.activations
    for t, (h, w) in geo.patch_hw.items():
        bufs[t].bytes = activation_bytes((graph.tensors[t].shape[0], h, w), bits[t])
    k = len(geo.ops) - 1
    for t in {graph.input, geo.first}:
        bufs[t].last = max(bufs[t].last, k)
    bufs[split].first = 0
    # The C copies each patch of the stage's input into one buffer before the kernel that
    # reads it, and each patch of the split tensor out of one (kernels read and write whole
    # rows of a tensor, a patch is not).
    c_in, c_out = graph.tensors[geo.first].shape[0], graph.tensors[split].shape[0]
    staged_in = [activation_bytes((c_in, h, w), bits[geo.first]) for h, w in geo.staged_in]
    staged_out = [activation_bytes((c_out, h, w), bits[split]) for h, w in geo.staged_out]
    bufs[STAGE_IN] = _Buf(0, k, max(staged_in, default=0))
    bufs[STAGE_OUT] = _Buf(0, k, max(staged_out))
    return geo.extra, geo.cells


STAGE_IN, STAGE_OUT = "(patch of the input)", "(patch of the split tensor)"


def _n(span: Span) -> int:
    return span[1] - span[0]


def _merge_inplace(
    graph: Graph,
    policy: Policy,
    step: int,
    op: Op,
    d: _Draft,
) -> bool:
    """Let `op` write its output over an input that dies here, when its op kind's kernel can
    (`OpDef.in_place`: the bytes by which the output must start before that input, about one
    input row for a 3x3 depthwise, none for elementwise ops, the growth for a 1 x 1 layer that
    widens). The output joins the input's group that many bytes before the input (the group's
    members move up when there is no room), unless it would cover another member of the group
    while that one is live."""
    out = op.output
    if d.bufs[out].first != step or d.home[out] != out:
        return False
    in_bits = policy.activations[op.inputs[0]]
    w_bits = policy.weights[op.name] if op.has_weight else None
    overlap = of(op).in_place(op, in_bits, policy.activations[out], w_bits)
    if overlap is None:
        return False
    mine = d.bufs[out]
    for t in op.inputs:
        if graph.tensors[t].shape != graph.tensors[op.inputs[0]].shape:
            continue
        if d.bufs[t].last != step or policy.activations[t] != in_bits:
            continue
        home = d.home[t]
        pos = d.delta[t] - overlap
        members = [n for n, h in d.home.items() if h == home]
        clash = any(
            n != t
            and d.bufs[n].first <= mine.last
            and d.bufs[n].last >= step
            and d.delta[n] < pos + mine.bytes
            and pos < d.delta[n] + d.bufs[n].bytes
            for n in members
        )
        if clash:
            continue
        if pos < 0:  # no room before the input: the group's members move up
            for n in members:
                d.delta[n] -= pos
            pos = 0
        d.home[out], d.delta[out] = home, pos
        return True
    return False


def _arena_graph(graph: Graph, bufs: dict[str, _Buf]) -> Graph:
    """The buffers as the tensors of a Graph: plan_arena and check_plan read only their names
    and live steps."""
    tensors = {
        n: TensorInfo(n, (b.bytes, 1, 1), None, (), b.first, b.last, False) for n, b in bufs.items()
    }
    return replace(graph, ops=(), tensors=tensors)


def arena_graph(memory: ScheduledMemory, graph: Graph) -> Graph:
    """The plan's buffers as a Graph, for memory.check_plan(g, memory.buffer_bytes, ...): exact
    for plans without in-place groups (a group counts its largest extent over its whole life)."""
    bufs = {n: _Buf(*memory.live[n], b) for n, b in memory.buffer_bytes.items()}
    return _arena_graph(graph, bufs)


Rect = tuple[int, int, int, int]  # (first step, last step, lo byte, hi byte)


def _clash(a: list[Rect], oa: int, b: list[Rect], ob: int) -> bool:
    return any(
        f1 <= l2 and f2 <= l1 and oa + lo1 < ob + hi2 and ob + lo2 < oa + hi1
        for f1, l1, lo1, hi1 in a
        if hi1 > lo1
        for f2, l2, lo2, hi2 in b
        if hi2 > lo2
    )


def _place_groups(groups: dict[str, list[Rect]], order: list[str]) -> dict[str, int]:
    """First fit of groups whose footprint changes from step to step: each goes at the lowest
    offset where none of its members meets a member of a placed group while both are live."""
    offsets: dict[str, int] = {}
    for g in order:
        mine = groups[g]
        cands = {0}
        for h, oh in offsets.items():
            for f2, l2, _, hi2 in groups[h]:
                cands.update(
                    oh + hi2 - lo
                    for f1, l1, lo, _ in mine
                    if f1 <= l2 and f2 <= l1 and oh + hi2 >= lo
                )
        offsets[g] = next(
            c
            for c in sorted(cands)
            if not any(_clash(mine, c, groups[h], o) for h, o in offsets.items())
        )
    return offsets


_GROUP_TRIES = 12


def _plan_groups(groups: dict[str, list[Rect]], bound: int) -> tuple[int, dict[str, int]]:
    """The smallest arena over a few greedy orders (largest extent, longest life, earliest,
    largest area first) and seeded random ones, stopping at `bound`. Deterministic."""
    ext = {g: max(hi for *_, hi in rs) for g, rs in groups.items()}
    span = {g: (min(r[0] for r in rs), max(r[1] for r in rs)) for g, rs in groups.items()}
    names = sorted(groups)
    orders = [
        sorted(names, key=lambda g: (-ext[g], span[g][0])),
        sorted(names, key=lambda g: (span[g][0] - span[g][1], -ext[g])),
        sorted(names, key=lambda g: (span[g][0], -ext[g])),
        sorted(names, key=lambda g: -ext[g] * (span[g][1] - span[g][0] + 1)),
    ]
    rng = random.Random(0)
    orders += [rng.sample(names, len(names)) for _ in range(_GROUP_TRIES)]
    best: tuple[int, dict[str, int]] | None = None
    for order in orders:
        offsets = _place_groups(groups, order)
        total = max(offsets[g] + ext[g] for g in names)
        if best is None or total < best[0]:
            best = (total, offsets)
            if total <= bound:
                break
    assert best is not None
    return best


def check_groups(memory: ScheduledMemory, graph: Graph) -> bool:
    """True when no two tensors of the plan share a byte while both are live, except an op
    written in place and an input it writes over, at that op's step; every tensor inside the
    arena; and a patch stage's split tensor over the network input, where it starts at least
    stage_overlap before it. Every grouped plan is checked with it when it is placed."""
    at = {o.name: s for s, o in enumerate(graph.ops)}
    allowed = _stage_pair(memory, graph)
    allowed |= {
        frozenset((o.output, i)): at[o.name]
        for o in graph.ops
        if o.name in memory.inplace
        for i in o.inputs
    }
    spans = []
    for n, b in memory.member_bytes.items():
        lo = memory.tensor_offset(n)
        if lo < 0 or lo + b > memory.arena_bytes:
            return False
        if b:
            spans.append((lo, lo + b, n, *memory.member_live[n]))
    spans.sort()
    for i, (_, hi, a, fa, la) in enumerate(spans):
        for lo2, _, b, fb, lb in spans[i + 1 :]:
            if lo2 >= hi:
                break
            if fa <= lb and fb <= la and allowed.get(frozenset((a, b))) != max(fa, fb):
                return False
    return True


def _label(d: _Draft, group: str, step: int, names: dict[str, str]) -> str:
    """A buffer at a step: its members live then ("a + b": one written over the other)."""
    live = [
        n for n, g in d.home.items() if g == group and d.bufs[n].first <= step <= d.bufs[n].last
    ]
    return " + ".join(names.get(n, n) for n in sorted(live, key=lambda n: d.bufs[n].first)) or group


def _ring_names(graph: Graph, d: _Draft) -> dict[str, str]:
    """What a patch stage's input buffer holds when it is not the whole tensor."""
    out = {}
    if d.row_ops:
        out[graph.ops[0].output] = graph.ops[0].output + " (ring of rows)"
    if d.stream and d.split is not None:
        x = graph.input
        out[x] = x + (" (line buffer)" if d.row_ops else " (ring of rows)")
    return out


def _stage_pair(memory: ScheduledMemory, graph: Graph) -> dict[frozenset[str], int]:
    """{(input, split): 0} when the plan writes the split tensor over the input far enough
    ahead of the cells that still read it (both are live from step 0)."""
    split, x = memory.split, graph.input
    if split is None or memory.tensors[split] != memory.tensors[x]:
        return {}
    (_, h, w), (_, hs, ws) = graph.tensors[x].shape, graph.tensors[split].shape
    pix_in, pix_out = memory.member_bytes[x] // (h * w), memory.member_bytes[split] // (hs * ws)
    need = stage_overlap(graph, split, memory.grid, pix_in, pix_out)
    ok = memory.tensor_offset(x) - memory.tensor_offset(split) >= need
    return {frozenset((x, split)): 0} if ok else {}


def _place(graph: Graph, policy: Policy, d: _Draft) -> ScheduledMemory:
    groups = d.rects()
    if all(len(rs) == 1 for rs in groups.values()):
        sizes = {n: d.bufs[n].bytes for n in groups}
        arena, offsets = plan_arena(_arena_graph(graph, {n: d.bufs[n] for n in groups}), sizes)
    else:
        arena, offsets = _plan_groups(groups, d.lower_bound())
        sizes = {g: max(hi for *_, hi in rs) for g, rs in groups.items()}
    scratch = scratch_bytes(graph, policy.weights)
    stage_end = graph.tensors[d.split].first if d.split is not None else -1
    hulls = {g: _hulls(rs) for g, rs in groups.items()}
    names = _ring_names(graph, d)
    steps = tuple(
        StepBuffers(
            s,
            o.name
            + (" (row by row)" if s < d.row_ops else " (per patch)" if s <= stage_end else ""),
            tuple((_label(d, g, s, names), h[s][1] - h[s][0]) for g, h in hulls.items() if s in h),
        )
        for s, o in enumerate(graph.ops)
    )
    m = ScheduledMemory(
        kind=d.kind,
        split=d.split,
        grid=d.grid,
        inplace=tuple(d.inplace),
        ram_bytes=arena + scratch,
        arena_bytes=arena,
        scratch_bytes=scratch,
        macs=d.macs,
        layer_macs=sum(o.macs for o in graph.ops),
        steps=steps,
        buffer_bytes=sizes,
        live={g: (min(r[0] for r in rs), max(r[1] for r in rs)) for g, rs in groups.items()},
        offsets=offsets,
        tensors=dict(d.home),
        deltas=dict(d.delta),
        member_bytes={n: b.bytes for n, b in d.bufs.items()},
        member_live={n: (b.first, b.last) for n, b in d.bufs.items()},
        stream_input=d.stream,
        row_ops=d.row_ops,
    )
    if not check_groups(m, graph):
        raise AssertionError(f"the {d.kind} plan overlaps live tensors (a planner bug)")
    return m


def _best(graph: Graph, policy: Policy, drafts: Iterable[_Draft]) -> ScheduledMemory | None:
    """The smallest placed peak (then the fewest MACs). Drafts are taken in order of the bound
    of their patch stage (what writing the later ops in place cannot lower), then written in
    place after the stage and placed unless their whole bound is already beaten; the search
    stops once no later one can beat the best placed."""
    best: ScheduledMemory | None = None
    pres = [(_stage_bound(graph, d), d) for d in drafts]
    for pre, d in sorted(pres, key=lambda x: (x[0], x[1].macs)):
        if best is not None and pre > best.arena_bytes:
            break
        if d.split is not None:
            _inplace_after(graph, policy, d, graph.tensors[d.split].first)
        if best is not None and d.lower_bound() > best.arena_bytes:
            continue
        m = _place(graph, policy, d)
        if best is None or (m.arena_bytes, m.macs) < (best.arena_bytes, best.macs):
            best = m
    return best


def _stage_bound(graph: Graph, d: _Draft) -> int:
    """The most bytes live at one step of the patch stage (for a draft without one: its whole
    bound)."""
    if d.split is None:
        return d.lower_bound()
    return max(_Bounds(d).live[: graph.tensors[d.split].first + 1])


def _patch_drafts(
    graph: Graph,
    policy: Policy,
    split: str | None,
    grid: int | None,
    max_recompute: float,
    stream: bool = False,
) -> list[_Draft]:
    if split is not None:
        stage_ops(graph, split)  # refuses an unknown split or one a residual crosses
    splits = [split] if split is not None else split_points(graph)
    layer_macs = sum(o.macs for o in graph.ops)
    out = []
    for s in splits:
        _, h, w = graph.tensors[s].shape
        for n in [grid] if grid is not None else GRIDS:
            if grid is None and n > min(h, w):
                break
            explicit = split is not None and grid is not None
            try:
                ds = _patch_pair(graph, policy, s, n, stream)
                if row_stem(graph, s) is not None:
                    ds += _patch_pair(graph, policy, s, n, stream, 1)
            except MicromixError:
                if explicit:
                    raise
                continue  # a stage the C cannot run patch by patch
            out += [d for d in ds if explicit or d.macs <= layer_macs * (1 + max_recompute)]
    return out


def check_schedule(schedule: str, max_recompute: float) -> None:
    """Refuse (one sentence) a schedule name or recompute cap `plan` does not take."""
    if schedule not in SCHEDULES:
        raise MicromixError(f"unknown schedule '{schedule}' (choose {', '.join(SCHEDULES)}).")
    ok = isinstance(max_recompute, (int, float)) and not isinstance(max_recompute, bool)
    if not (ok and 0 <= max_recompute < math.inf):
        raise MicromixError(f"the recompute cap must be a fraction >= 0, got {max_recompute!r}.")


def plan(
    graph: Graph,
    policy: Policy,
    schedule: str = "auto",
    max_recompute: float = 0.10,
    *,
    split: str | None = None,
    grid: int | None = None,
    stream_input: bool = False,
) -> ScheduledMemory:
    """The schedule of `graph` under `policy` and its exact RAM (see the module docstring).

    layer: today's figure (memory_report's ram_bytes). inplace: every op that can write over a
    dying input does (never above layer: with no gain it keeps no in-place op). patch: the
    split tensor and grid (2..8 unless given) of smallest peak whose recomputed MACs stay within
    `max_recompute` of layer's (a split and grid both given are taken as they are). auto: the
    smallest peak of all of these within the cap. stream: auto with the input read row by
    row (`stream_input`; the C's micromix_run_rows): a patch stage then holds only a ring of
    input rows (`ring_rows`), the other schedules read every row into the input tensor first.
    """
    check_schedule(schedule, max_recompute)
    if (split is not None or grid is not None) and schedule != "patch":
        raise MicromixError("a split layer or grid is only for the patch schedule.")
    if grid is not None and not (isinstance(grid, int) and grid >= 1):
        raise MicromixError(f"the patch grid must be a whole number >= 1, got {grid!r}.")
    policy.validate(graph, allowed=tuple(range(1, 9)))
    stream = stream_input or schedule == "stream"
    layer = _place(graph, policy, _draft(graph, policy, False, stream))
    if schedule == "layer":
        return layer
    inplace = _place(graph, policy, _draft(graph, policy, True, stream))
    if inplace.ram_bytes > layer.ram_bytes:
        inplace = replace(layer, kind="inplace")
    if schedule == "inplace":
        return inplace
    drafts = _patch_drafts(graph, policy, split, grid, max_recompute, stream)
    patch = _best(graph, policy, drafts)
    if schedule == "patch":
        if patch is None:
            raise MicromixError(
                f"no patch schedule recomputes at most {100 * max_recompute:g} % of the MACs."
            )
        return patch
    options = [layer, inplace] + ([patch] if patch is not None else [])
    return min(options, key=lambda m: (m.ram_bytes, m.macs))


def scheduled_report(
    graph: Graph, policy: Policy, schedule: str = "auto", max_recompute: float = 0.10
) -> MemoryReport:
    """memory_report under a schedule: the arena, RAM and tensor offsets of `plan`'s choice
    (the export places tensors there and runs its patch stage), everything else as
    memory_report counts it. `layer` is memory_report itself."""
    return report_of(graph, policy, plan(graph, policy, schedule, max_recompute))


def report_of(graph: Graph, policy: Policy, m: ScheduledMemory) -> MemoryReport:
    """memory_report with the arena, RAM and offsets of plan `m` (itself for a layer plan)."""
    report = memory_report(graph, policy)
    if m.split is None and not m.inplace and not m.stream_input:  # as layer by layer places it
        return report
    return replace(
        report,
        ram_bytes=m.ram_bytes,
        arena_bytes=m.arena_bytes,
        ram_lower_bound=min(report.ram_lower_bound, m.arena_bytes),
        offsets={t: m.tensor_offset(t) for t in graph.tensors},
        schedule=m,
    )


# ---- the searches' view ----------------------------------------------------------------------


@dataclass(frozen=True)
class Scheduling:
    """The schedule whose RAM a search, a fit check and an export measure (`plan`'s `schedule`
    and `max_recompute`): plain data, recorded in run directories as it is."""

    schedule: str = "auto"
    max_recompute: float = 0.10

    def __post_init__(self) -> None:
        check_schedule(self.schedule, self.max_recompute)

    def report(self, graph: Graph, policy: Policy) -> MemoryReport:
        """`scheduled_report` under this schedule (memory_report itself for layer)."""
        if self.schedule == "layer":
            return memory_report(graph, policy)
        return scheduled_report(graph, policy, self.schedule, self.max_recompute)

    def patch_hint(self, graph: Graph) -> tuple[str, int] | None:
        """The split and grid of the smallest patch schedule of the 8-bit policy (None when
        this schedule runs no patch stage, or none is within the cap)."""
        if self.schedule not in ("auto", "patch", "stream"):
            return None
        stream = self.schedule == "stream"
        try:
            m = plan(graph, Policy.uniform(graph, 8), "patch", self.max_recompute,
                     stream_input=stream)  # fmt: skip
        except MicromixError:
            return None
        return m.split, m.grid

    def bound(self, graph: Graph, policy: Policy, hint: tuple[str, int] | None) -> MemoryReport:
        """A report whose RAM is never below `report`'s, for the searches' many trial checks:
        the smallest of the layer, in-place and `hint` patch schedules (one patch draft
        instead of every split and grid; a split's MACs do not depend on the bits, so the
        hint stays within the cap). For layer and inplace it is `report` itself."""
        if self.schedule in ("layer", "inplace") or hint is None:
            return self.report(graph, policy)
        split, grid = hint
        cap = self.max_recompute
        stream = self.schedule == "stream"
        options = [plan(graph, policy, "patch", cap, split=split, grid=grid, stream_input=stream)]
        if self.schedule in ("auto", "stream"):
            options += [
                plan(graph, policy, k, cap, stream_input=stream) for k in ("layer", "inplace")
            ]
        return report_of(graph, policy, min(options, key=lambda m: (m.ram_bytes, m.macs)))

    def sizes(self, graph: Graph) -> SizeTable:
        """The searches' size table for this schedule (`search_table`)."""
        return search_table(graph, self)

    def to_json(self) -> dict:
        return {"schedule": self.schedule, "max_recompute": self.max_recompute}

    @classmethod
    def from_json(cls, d: dict) -> Scheduling:
        return cls(d.get("schedule", "auto"), d.get("max_recompute", 0.10))


LAYER = Scheduling("layer")


@dataclass(frozen=True)
class ScheduledSizes(SizeTable):
    """A SizeTable of a plan's buffers: `act` sizes each tensor as its buffer holds it (a
    patch stage's intermediates at their largest patch), `live` names per step the tensor
    whose bits size each live buffer, and `extra` adds per step the bytes the bits of no
    searched tensor size (staging buffers, in-place overlaps), at 8 bits."""

    extra: tuple[int, ...] = ()

    def live_at(self, acts, step: int) -> int:
        return super().live_at(acts, step) + self.extra[step]


def search_table(graph: Graph, scheduling: Scheduling = LAYER) -> SizeTable:
    """The size table the searches add up (memory.SizeTable) for the schedule `plan` picks
    at 8 bits. At each step, each live buffer (a tensor, or tensors written in place over one
    another) counts as its member that is largest at 8 bits, at that tensor's bits, plus a
    constant: the rest of the buffer's bytes at that step at 8 bits (the overlap of an in-place
    pair, a staging buffer). A patch stage's intermediates count at their largest patch. Exact
    at the 8-bit policy, an estimate below it (a buffer shrinks with the bits of one tensor, and
    the plan `plan` picks may change), which is why every fit is checked with
    `Scheduling.report`. `layer` is memory.size_table itself."""
    base = size_table(graph)
    if scheduling.schedule == "layer":
        return base
    m = plan(graph, Policy.uniform(graph, 8), scheduling.schedule, scheduling.max_recompute)
    act = {t: dict(sizes) for t, sizes in base.act.items()}
    for t, size in m.member_bytes.items():
        if t in graph.tensors and size < act[t][8]:
            # a patch stage's intermediate: its buffer is one patch of it, at every bits
            pixels = size // activation_bytes((graph.tensors[t].shape[0], 1, 1), 8)
            c = graph.tensors[t].shape[0]
            act[t] = {b: activation_bytes((c, pixels, 1), b) for b in act[t]}
    live: list[list[str]] = [[] for _ in graph.ops]
    extra = [0] * len(graph.ops)
    for s in range(len(graph.ops)):
        groups: dict[str, list[str]] = {}
        for t, (first, last) in m.member_live.items():
            if first <= s <= last and m.member_bytes[t]:
                groups.setdefault(m.tensors[t], []).append(t)
        for members in groups.values():
            lo = min(m.deltas[t] for t in members)
            size = max(m.deltas[t] + m.member_bytes[t] for t in members) - lo
            here = [t for t in members if t in graph.tensors]
            rep = max(here, key=lambda t: act[t][8], default=None)
            if rep is not None:
                live[s].append(rep)
            extra[s] += size - (act[rep][8] if rep is not None else 0)
    return ScheduledSizes(
        act=act,
        weight=base.weight,
        params=base.params,
        live=tuple(tuple(x) for x in live),
        act_flash=base.act_flash,
        extra=tuple(extra),
    )
