"""IntegerModel: the integer-only network exactly as the C export stores it, and its numpy
reference interpreter.

Every constant lives here in its final form: packed weight bytes (uint8, the C array byte for
byte) and the per-op parameter arrays named and typed by `memory.param_arrays`. The reference
unpacks the same bytes the C code reads, so a packing mistake cannot hide.

Activations inside the interpreter are int64 arrays in N x H x W x C order (HWC, as in the
arena). Each op runs its op kind's numpy kernel (`ops.of(op).run`); see the op modules of
micromix.ops for their exact semantics.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..ir import Graph
from ..memory import MemoryReport
from ..numerics.intop import IntOp
from ..numerics.params import TensorQuant
from ..ops import of
from ..policy import Policy
from ..schedule import (
    Span,
    input_span,
    macs_per_pixel,
    patch_fill,
    reads_whole,
    stage_ops,
    stage_spans,
)

__all__ = ["IntOp", "IntegerModel", "run_op"]


@dataclass(frozen=True, eq=False)
class IntegerModel:
    graph: Graph
    policy: Policy
    report: MemoryReport
    ops: tuple[IntOp, ...]
    tensors: dict[str, TensorQuant]

    @property
    def output_signed(self) -> bool:
        return self.tensors[self.graph.output].signed

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.graph.tensors[self.graph.input].shape

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return self.graph.tensors[self.graph.output].shape

    def run(self, images: np.ndarray, *, batch_size: int = 250) -> np.ndarray:
        """Logits of uint8 images (N, C, H, W): int8 (N, classes), or (N, C, H, W) when the
        output has a spatial extent (uint8 if the output tensor is unsigned)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise ValueError(
                f"images must be uint8 of shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {images.dtype} {images.shape}"
            )
        outs = [
            self.run_scheduled(images[i : i + batch_size])[self.graph.output]
            for i in range(0, len(images), batch_size)
        ]
        c, h, w = self.output_shape
        y = np.concatenate(outs) if outs else np.zeros((0, h, w, c), np.int64)
        y = y.astype(np.int8 if self.output_signed else np.uint8).transpose(0, 3, 1, 2)
        return y.reshape(len(y), c) if h == w == 1 else y

    def run_scheduled(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """The tensors from the last one the schedule's patch stage writes on, computed the
        way the exported C computes them: patch by patch up to the split tensor, when the
        report's schedule has one (the same integers as layer by layer: integer ops are local;
        tests/test_integer_patch.py checks it), else `run_tensors`. A row stem
        (schedule.row_stem) runs once over the whole input, as the C runs each of its rows
        once."""
        sched = self.report.schedule
        if sched is None or getattr(sched, "split", None) is None:
            return self.run_tensors(images)
        return run_patched(self, images, sched.split, sched.grid, sched.row_ops)[0]

    def run_tensors(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every activation tensor (int64, N x H x W x C) for a batch of uint8 NCHW images."""
        vals: dict[str, np.ndarray] = {
            self.graph.input: images.astype(np.int64).transpose(0, 2, 3, 1)
        }
        for iop in self.ops:
            x = [vals[t] for t in iop.op.inputs]
            vals[iop.op.output] = run_op(iop, *x)
        return vals


def run_op(iop: IntOp, *xs: np.ndarray) -> np.ndarray:
    """The numpy reference of one op: int64 N x H x W x C inputs -> its output tensor."""
    return of(iop.op).run(iop, *xs)


# ---- patch by patch (micromix.schedule) ---------------------------------------------------

_Held = tuple[np.ndarray, tuple[Span, Span]]  # a tensor's computed region and its spans


def run_patched(
    model: IntegerModel, images: np.ndarray, split: str, grid: int, row_ops: int = 0
) -> tuple[dict[str, np.ndarray], int]:
    """Every tensor from the split tensor on (int64 N x H x W x C) for uint8 NCHW `images`, and
    the MACs the run performed (each op's MACs per output pixel times the pixels it computed).
    `row_ops` 1: the first op runs once over the whole input (the C's row stem computes each of
    its rows once), the cells start from its output."""
    graph = model.graph
    ops = stage_ops(graph, split)
    by_name = {iop.op.name: iop for iop in model.ops}
    x = np.asarray(images).astype(np.int64).transpose(0, 2, 3, 1)
    c, h, w = graph.tensors[split].shape
    out = np.zeros((len(x), h, w, c), np.int64)
    macs = 0
    first = graph.input
    if row_ops:
        first = ops[0].output
        x = run_op(by_name[ops[0].name], x)
        macs += ops[0].macs
    full = ((0, x.shape[1]), (0, x.shape[2]))
    for rows in stage_spans(graph, split, grid, 0):
        for cols in stage_spans(graph, split, grid, 1):
            held: dict[str, _Held] = {first: (x, full)}
            for o in ops[row_ops:]:
                spans = (rows[o.output], cols[o.output])
                y = _run_cell(by_name[o.name], held, spans, graph.tensors)
                macs += macs_per_pixel(o) * y.shape[1] * y.shape[2]
                held[o.output] = (y, spans)
            y, ((r0, r1), (c0, c1)) = held[split]
            out[:, r0:r1, c0:c1] = y
    vals = {split: out}
    for iop in model.ops[len(ops) :]:
        vals[iop.op.output] = run_op(iop, *(vals[t] for t in iop.op.inputs))
        macs += iop.op.macs
    return vals, macs


def _run_cell(iop: IntOp, held: dict[str, _Held], spans: tuple[Span, Span], tensors) -> np.ndarray:
    """`iop` on the inputs its output `spans` read, with its padding made explicit."""
    op = iop.op
    if all(reads_whole(op, tensors[t].shape) for t in op.inputs):
        return run_op(iop, *(held[t][0] for t in op.inputs))  # held in full (stage_spans)
    xs, shapes = [], []
    for t in op.inputs:
        arr, have = held[t]
        shape = tensors[t].shape
        if reads_whole(op, shape):
            xs.append(arr)
            shapes.append(shape)
            continue
        want = tuple(input_span(op, shape, spans[a], a) for a in (0, 1))
        xs.append(_crop(arr, have, want, shape, op))
        shapes.append((shape[0], *(hi - lo for lo, hi in want)))
    out_shape = (op.out_shape[0], *(hi - lo for lo, hi in spans))
    cell_op = replace(op, in_shape=shapes[0], in_shapes=tuple(shapes), out_shape=out_shape)
    cell_op = replace(cell_op, padding=(0, 0))
    return run_op(replace(iop, op=cell_op, padding=(0, 0)), *xs)


def _crop(arr: np.ndarray, have, want, shape, op) -> np.ndarray:
    """The `want` region of a tensor of `shape` of which `arr` holds the `have` region; outside
    the tensor, the op's padding code."""
    inside = [(max(lo, 0), min(hi, shape[1 + a])) for a, (lo, hi) in enumerate(want)]
    if any(i[0] < h[0] or i[1] > h[1] for i, h in zip(inside, have)):
        raise ValueError(f"layer {op.name}: the cell did not compute the region it reads")
    (r0, r1), (c0, c1) = want
    (ir0, ir1), (ic0, ic1) = inside
    src = arr[:, ir0 - have[0][0] : ir1 - have[0][0], ic0 - have[1][0] : ic1 - have[1][0]]
    if inside == list(want):
        return src
    buf = np.full((len(arr), r1 - r0, c1 - c0, arr.shape[3]), patch_fill(op), np.int64)
    buf[:, ir0 - r0 : ir1 - r0, ic0 - c0 : ic1 - c0] = src
    return buf
