"""IntOp: one op of the schedule with its integer constants, as the C export stores them.

Shared by the op modules' conversion and numpy kernels (micromix.ops), the integer model and the
export, so that none of them imports another to know the record they all read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir import Op
from .arith import unpack_bits


@dataclass(frozen=True, eq=False)
class IntOp:
    """One op of the schedule with its integer constants."""

    op: Op
    in_bits: tuple[int, ...]
    in_signed: tuple[bool, ...]
    out_bits: int
    out_signed: bool
    qmin: int  # clamp range of the output (absorbs ReLU / ReLU6 through the PACT scale)
    qmax: int
    arrays: dict[str, np.ndarray]  # suffix of memory.param_arrays(op) -> int32 / int8 array
    w_bits: int | None = None
    weights: np.ndarray | None = None  # packed uint8, C_out rows of row_bytes, as in C
    bias_shift: int = 0  # conv / linear: the bias is in units of 2^-bias_shift accumulator steps
    kernel: tuple[int, int] = (1, 1)  # as executed: a linear on a (C,H,W) input is an HxW conv
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def row_elems(self) -> int:
        c = self.op.in_shape[0] // self.groups
        return self.kernel[0] * self.kernel[1] * c

    def weight_matrix(self) -> np.ndarray:
        """Unpacked weights, int64 (C_out, kh, kw, C_in/groups), from the packed bytes."""
        if "w" not in self._cache:
            if self.weights is None or self.w_bits is None:
                raise ValueError(f"op {self.op.name} has no weights")
            cout = self.op.out_shape[0]
            rows = self.weights.reshape(cout, -1)
            w = unpack_bits(rows, self.w_bits, self.row_elems, signed=True)
            self._cache["w"] = w.reshape(cout, *self.kernel, -1)
        return self._cache["w"]
