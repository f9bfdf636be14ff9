"""Run an IntegerModel under a patch schedule (micromix.schedule): the ops up to the split
tensor once per cell of an n x n grid, each on the input region its receptive field needs, then
the rest layer by layer. Every op runs through `run_op` on a patch-sized input: the region is
cropped from what the cell computed, and filled with the op's padding code only where it crosses
the tensor's border, so a patch run computes exactly the integers of the layer-by-layer run.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..schedule import (
    Span,
    input_span,
    macs_per_pixel,
    patch_fill,
    reads_whole,
    stage_ops,
    stage_spans,
)
from .model import IntegerModel, IntOp, run_op

_Held = tuple[np.ndarray, tuple[Span, Span]]  # a tensor's computed region and its spans


def run_patched(
    model: IntegerModel, images: np.ndarray, split: str, grid: int
) -> tuple[dict[str, np.ndarray], int]:
    """Every tensor from the split tensor on (int64 N x H x W x C) for uint8 NCHW `images`, and
    the MACs the run performed (each op's MACs per output pixel times the pixels it computed)."""
    graph = model.graph
    ops = stage_ops(graph, split)
    by_name = {iop.op.name: iop for iop in model.ops}
    x = np.asarray(images).astype(np.int64).transpose(0, 2, 3, 1)
    c, h, w = graph.tensors[split].shape
    out = np.zeros((len(x), h, w, c), np.int64)
    macs = 0
    full = ((0, x.shape[1]), (0, x.shape[2]))
    for rows in stage_spans(graph, split, grid, 0):
        for cols in stage_spans(graph, split, grid, 1):
            held: dict[str, _Held] = {graph.input: (x, full)}
            for o in ops:
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
