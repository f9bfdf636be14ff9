"""OpDef and the registry of op kinds (`register`, `get`, `list_ops`, `of`).

An op kind is one OpDef: everything micromix knows about it, from the fx nodes it takes to the
C statement that runs it. Every stage asks the registry (`of(op).params(op, in_bits)`,
`of(op).run(iop, *xs)`, ...) instead of comparing kind strings, so adding an op is one new
module in this package that calls `register`, plus its test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir import Op
from ..numerics.intop import IntOp
from ..numerics.params import QuantParams, TensorQuant

ParamLayout = list[tuple[str, str, int]]  # (suffix, C type, count) of each constant array


@dataclass(frozen=True)
class CallSite:
    """What an op's C emitter gets: its step, its integer op, the kernel the memory report
    chose, the C expressions of its input and output pointers and of its constant arrays."""

    step: int
    iop: IntOp
    kernel: str
    inputs: tuple[str, ...]
    output: str
    arrays: dict[str, str]
    # a patch of the op (micromix.schedule): input H, W, output H, W, top and left padding
    tile: tuple[int, int, int, int, int, int] | None = None


def _no_scratch(op: Op, w_bits: int | None) -> int:
    return 0


def _never_in_place(op: Op, in_bits: int, out_bits: int, w_bits: int | None) -> int | None:
    return None


def _zero_fill(op: Op) -> int | None:
    return 0


def _no_check(op: Op) -> None:
    return None


def _absent(*args: Any) -> Any:
    raise ValueError("this op kind never reaches a Graph (the tracer drops it)")


def _takes_all(fz: Any, node: Any) -> bool:
    return True


def _no_paths(site: CallSite) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class OpDef:
    """One op kind, end to end. The hooks, in pipeline order:

    - trace (`modules`, `functions`, `methods` name the fx nodes it takes; `accepts` may refuse
      one of them, which is then left to the tracer's other rules): `trace(fuser, node)` emits
      the Op through `fuser.emit` (see ops.tracing);
    - memory: `params(op, in_bits)` the constant arrays, `kernel(op, w_bits, in_bits)` the C
      function that runs it (chosen once, recorded in the MemoryReport), `scratch(op, w_bits)`
      bytes of the shared scratch buffer it needs, `check(op)` refuses (before any training) an
      op its C kernel cannot run, `weight_layout(iop, kernel)` its weight bytes in the order
      that kernel reads them, `in_place(op, in_bits, out_bits, w_bits)` the bytes by which its
      output must start before its first input for its kernel to write the output over that
      input as it goes (None: it cannot), `patch_fill(op)` the code its padding holds when it
      runs on a patch whose input region crosses the tensor's border (None: it cannot run on
      patches; its receptive field is its kernel, stride and padding);
    - QAT: `keeps_grid` (its output may share its input's quantizer when the bits agree: then
      its requantization is exactly 1), `qat(gm, op, nodes)` rewrites its fx nodes for
      fake-quant training and returns an object whose `bind(q_in, q_out)` is called once the
      activation quantizers exist (or None);
    - integer: `convert(op, qparams)` its IntOp, `run(iop, *xs)` its numpy reference (int64
      N x H x W x C), `real(op, ins, xs)` its real-valued output on integer inputs (synthetic
      parameters for tests and benchmarks);
    - C: `emit(site)` the statement(s) that run it, `c_source` the kernel's C (None when it
      lives in the shipped templates), `c_decl` its prototypes; `c_paths` the kernel paths
      its kernels compile only where a model takes them (MM_USE_<path> of mm_paths.h) and
      `c_rules(site)` the paths one call takes, as C constant expressions (the kernels' own
      rules, mm_kernels.h, on the call's numbers) that the export's preprocessor evaluates;
    - `describe`: how the tracer's list of supported operations names it.
    """

    kind: str
    describe: str
    trace: Callable[[Any, Any], None]
    params: Callable[[Op, int | None], ParamLayout] = _absent
    kernel: Callable[[Op, int | None, int | None], str] = _absent
    convert: Callable[[Op, QuantParams], IntOp] = _absent
    run: Callable[..., np.ndarray] = _absent
    real: Callable[[Op, list[TensorQuant], list[np.ndarray]], np.ndarray] = _absent
    emit: Callable[[CallSite], str] = _absent
    in_graph: bool = True  # False: the tracer takes the node and drops it (a trailing softmax)
    modules: tuple[type, ...] = ()
    functions: tuple[Callable, ...] = ()
    methods: tuple[str, ...] = ()
    accepts: Callable[[Any, Any], bool] = _takes_all
    scratch: Callable[[Op, int | None], int] = _no_scratch
    check: Callable[[Op], object] = _no_check
    in_place: Callable[[Op, int, int, int | None], int | None] = _never_in_place
    patch_fill: Callable[[Op], int | None] = _zero_fill
    weight_layout: Callable[[IntOp, str], np.ndarray] | None = None
    keeps_grid: bool = False
    qat: Callable[[Any, Op, dict], Any] | None = None
    c_source: str | None = None
    c_decl: str = ""
    c_paths: tuple[str, ...] = ()
    c_rules: Callable[[CallSite], tuple[str, ...]] = _no_paths


_REGISTRY: dict[str, OpDef] = {}


def register(d: OpDef) -> OpDef:
    """Add an op kind; a kind or an fx target that another kind already takes is refused."""
    if d.kind in _REGISTRY:
        raise ValueError(f"op kind {d.kind!r} is registered twice")
    for other in _REGISTRY.values():
        taken = (
            set(d.modules) & set(other.modules)
            or set(d.functions) & set(other.functions)
            or set(d.methods) & set(other.methods)
        )
        if taken:
            raise ValueError(f"op kinds {d.kind!r} and {other.kind!r} both take {taken}")
    _REGISTRY[d.kind] = d
    return d


def get(kind: str) -> OpDef:
    """The OpDef of `kind`; an unknown kind is a ValueError naming the known ones."""
    d = _REGISTRY.get(kind)
    if d is None:
        raise ValueError(f"unknown op kind {kind!r} (known: {', '.join(sorted(_REGISTRY))})")
    return d


def of(op: Op) -> OpDef:
    """The OpDef of an op of a Graph."""
    return get(op.kind)


def list_ops() -> tuple[str, ...]:
    """The registered kinds, in registration order."""
    return tuple(_REGISTRY)


def all_defs() -> tuple[OpDef, ...]:
    return tuple(_REGISTRY.values())
