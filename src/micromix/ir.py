"""The network as micromix executes it: ops in schedule order (Op), the activation tensors
between them with their lifetimes (TensorInfo), and the Graph that holds both, as plain data.

A leaf module: the tracer (graph.py) builds a Graph, the op registry (ops/) reads one op at a
time, and everything after them (memory model, quantizers, integer model, export) reads Graphs.
The Graph round-trips through JSON (`Graph.to_json`, `graph.graph_from_json`), so a run
directory is data and needs no model code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class WeightInfo:
    """The weight tensor of a conv or linear op, as the memory model counts it."""

    module: str  # module path of the nn.Conv2d / nn.Linear
    shape: tuple[int, ...]  # (C_out, C_in/groups, kh, kw) or (out, in)

    @property
    def out_channels(self) -> int:
        return self.shape[0]

    @property
    def row_elems(self) -> int:
        """Elements of one output channel's row: the unit that is padded to a whole byte."""
        n = 1
        for d in self.shape[1:]:
            n *= d
        return n

    @property
    def numel(self) -> int:
        return self.out_channels * self.row_elems


@dataclass(frozen=True)
class Op:
    """One step of the schedule. `kind` names its entry in the op registry (micromix.ops:
    conv, linear, add, avgpool, maxpool, cat, lut, mul, upsample, pad, ...), whose module says
    what the optional fields below mean for it; the ones it does not use keep their defaults."""

    name: str
    kind: str
    inputs: tuple[str, ...]  # tensor names
    output: str  # tensor name (equal to the op name)
    in_shape: tuple[int, int, int]  # (C, H, W) of the first input
    out_shape: tuple[int, int, int]
    macs: int
    weight: WeightInfo | None = None
    bn: str | None = None  # module path of an absorbed BatchNorm2d
    act: str | None = None  # "relu" | "relu6" | None
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    fx_nodes: tuple[str, ...] = ()  # fused fx nodes; the last one produces the output
    ceil_mode: bool = False  # maxpool: windows may start in the right / bottom padding
    count_include_pad: bool = True  # avgpool: the divisor counts padded zeros
    fn: str | None = None  # lut: hardswish, hardsigmoid, sigmoid, silu, leaky_relu, tanh
    alpha: float = 0.0  # lut: leaky_relu's negative slope
    in_shapes: tuple[tuple[int, int, int], ...] = ()  # (C, H, W) of every input
    # linear: one weight scale for the whole tensor (one multiplier and shift for the layer, as
    # TFLite's int8 fully connected layers), set by the trace's WeightScales
    per_tensor: bool = False

    @property
    def is_depthwise(self) -> bool:
        w = self.weight
        return w is not None and len(w.shape) == 4 and 1 < self.groups == self.in_shape[0]

    @property
    def has_weight(self) -> bool:
        return self.weight is not None


@dataclass(frozen=True)
class TensorInfo:
    """An activation tensor: the network input or the output of one op."""

    name: str
    shape: tuple[int, int, int]  # (C, H, W); vectors are (F, 1, 1)
    producer: str | None  # op name, None for the network input
    consumers: tuple[str, ...]
    first: int  # first step at which it is live
    last: int  # last step at which it is live
    signed: bool  # can hold negative values (no ReLU at its end)
    fx_node: str = ""  # fx node whose value is this tensor


@dataclass(frozen=True)
class Graph:
    ops: tuple[Op, ...]
    tensors: dict[str, TensorInfo] = field(hash=False)
    input: str
    output: str
    input_shape: tuple[int, int, int, int]
    notes: tuple[str, ...] = ()  # what the trace left out on purpose (a trailing softmax)
    dropped: tuple[str, ...] = ()  # fx nodes left out of the integer model (the QAT drops them)

    def op(self, name: str) -> Op:
        for o in self.ops:
            if o.name == name:
                return o
        raise KeyError(name)

    @property
    def weight_ops(self) -> tuple[Op, ...]:
        """The quantizable layers (conv and linear), in execution order."""
        return tuple(o for o in self.ops if o.has_weight)

    def live_at(self, step: int) -> list[str]:
        return [t.name for t in self.tensors.values() if t.first <= step <= t.last]

    def steps(self) -> Iterator[tuple[int, Op]]:
        return enumerate(self.ops)

    @property
    def is_chain(self) -> bool:
        """True when no tensor outlives the op that consumes it (no skip connections)."""
        return all(t.last - t.first <= 1 for t in self.tensors.values())

    def summary(self) -> str:
        lines = [f"{'step':>4}  {'op':<28} {'kind':<7} {'out (C,H,W)':<16} {'MACs':>12}"]
        for i, o in self.steps():
            lines.append(f"{i:>4}  {o.name:<28} {o.kind:<7} {str(o.out_shape):<16} {o.macs:>12,}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data; `graph_from_json` gives back an equal Graph. A run directory stores
        it, so `report`, `memory --run-dir` and `export --run-dir` need no model code."""
        return _plain(self)


# ---- the Graph as data ---------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [_plain(v) for v in obj]
    return obj


def tuples(v: Any) -> Any:
    """JSON lists back to the tuples every sequence of a Graph is."""
    return tuple(tuples(x) for x in v) if isinstance(v, list) else v


def record(cls: type, d: Any, nested: dict[str, Any] | None = None) -> Any:
    """`cls(**d)` for a JSON object with exactly cls's fields (nested: field -> builder)."""
    names = {f.name for f in fields(cls)}
    if not isinstance(d, dict) or not set(d) <= names:
        raise TypeError(f"{cls.__name__} expects the keys {sorted(names)}")
    nested = nested or {}
    return cls(**{k: nested[k](v) if k in nested else tuples(v) for k, v in d.items()})
