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

from dataclasses import dataclass

import numpy as np

from ..ir import Graph
from ..memory import MemoryReport
from ..numerics.intop import IntOp
from ..numerics.params import TensorQuant
from ..ops import of
from ..policy import Policy

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
            self.run_tensors(images[i : i + batch_size])[self.graph.output]
            for i in range(0, len(images), batch_size)
        ]
        c, h, w = self.output_shape
        y = np.concatenate(outs) if outs else np.zeros((0, h, w, c), np.int64)
        y = y.astype(np.int8 if self.output_signed else np.uint8).transpose(0, 3, 1, 2)
        return y.reshape(len(y), c) if h == w == 1 else y

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
