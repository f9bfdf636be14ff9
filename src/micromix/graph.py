"""Trace an nn.Module into the Graph that the memory model, quantizers, search and export share.

The Graph works at the level the MCU executes: a convolution with its BatchNorm and ReLU is one op
(BN is absorbed in the requantization, the ReLU in its clamp), flatten and dropout are aliases,
and every op writes one activation tensor. Ops are in execution order; op i runs at step i.
"""

from __future__ import annotations

import contextlib
import io
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from . import graph_ops
from .errors import MicromixError, UnsupportedOpError
from .graph_ops import chw

INPUT = "input"

SUPPORTED = (
    "Conv2d (any groups), Linear, BatchNorm2d after a conv, ReLU, ReLU6, residual add, "
    "average and max pooling, torch.cat on channels, Hardswish, Hardsigmoid, Sigmoid, SiLU, "
    "LeakyReLU, Tanh, a channel-wise multiply by an N x C x 1 x 1 gate, a trailing "
    "softmax / log_softmax, flatten and dropout"
)


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
    """One step of the schedule. `kind` is conv, linear, add, avgpool, maxpool, cat (inputs
    joined along channels, in order), lut (an activation function as a table, `fn`), or mul
    (inputs[0] times a per-channel gate inputs[1] of shape (C, 1, 1))."""

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

    @property
    def is_depthwise(self) -> bool:
        return self.kind == "conv" and self.groups > 1 and self.groups == self.in_shape[0]

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

OP_KINDS = ("conv", "linear", "add", "avgpool", "maxpool", "cat", "lut", "mul")


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return [_plain(v) for v in obj]
    return obj


def _tuples(v: Any) -> Any:
    """JSON lists back to the tuples every sequence of a Graph is."""
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def _record(cls: type, d: Any, nested: dict[str, Any] | None = None) -> Any:
    """`cls(**d)` for a JSON object with exactly cls's fields (nested: field -> builder)."""
    names = {f.name for f in fields(cls)}
    if not isinstance(d, dict) or not set(d) <= names:
        raise TypeError(f"{cls.__name__} expects the keys {sorted(names)}")
    nested = nested or {}
    return cls(**{k: nested[k](v) if k in nested else _tuples(v) for k, v in d.items()})


def _op(d: Any) -> Op:
    op = _record(Op, d, {"weight": lambda w: None if w is None else _record(WeightInfo, w)})
    if op.kind not in OP_KINDS:
        raise ValueError(f"unknown op kind {op.kind!r}")
    return op


def graph_from_json(d: Any, source: str = "the stored graph") -> Graph:
    """The Graph that `Graph.to_json` wrote; damaged or foreign data is one sentence."""
    try:
        tensors = d["tensors"]
        graph = _record(
            Graph,
            d,
            {
                "ops": lambda ops: tuple(_op(o) for o in ops),
                "tensors": lambda ts: {k: _record(TensorInfo, v) for k, v in ts.items()},
            },
        )
        if not isinstance(tensors, dict) or graph.input not in graph.tensors:
            raise ValueError("no input tensor")
        if graph.output not in graph.tensors or not graph.ops:
            raise ValueError("no output tensor")
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise MicromixError(f"{source} is damaged ({type(e).__name__}: {str(e)[:80]}).") from None
    return graph


# ---- tracing -------------------------------------------------------------------------------

_RELU_FUNCS = {F.relu, torch.relu, torch.relu_}
_ADD_FUNCS = {operator.add, torch.add, operator.iadd}
_FLATTEN_FUNCS = {torch.flatten}
_DROPOUT_FUNCS = {F.dropout}
_POOL_FUNCS = {F.adaptive_avg_pool2d, F.avg_pool2d}
_SCALAR_FUNCS = {operator.mul, operator.add, operator.sub, operator.floordiv, operator.truediv}


def trace(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> Graph:
    """Trace `model` with torch.fx and fuse it into MCU ops.

    `input_shape` is (N, C, H, W); the default is the shape the model was traced with before,
    or the one its model spec or zoo config gives. A successful trace records it on the model.
    Raises UnsupportedOpError naming the op and its module path for anything not supported.
    """
    from .models.spec import input_shape_of, record_input_shape

    if input_shape is None:
        # Given once: a traced model remembers its shape; a spec or zoo config also has it.
        input_shape = input_shape_of(model)
        if input_shape is None:
            raise UnsupportedOpError(
                "trace needs input_shape=(1, C, H, W) for a model outside the zoo."
            )
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 4:
        raise UnsupportedOpError(f"input_shape must be (N, C, H, W), got {input_shape}.")
    input_shape = (1, *input_shape[1:])
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as e:
        raise UnsupportedOpError(
            f"torch.fx cannot trace {type(model).__name__} ({type(e).__name__}: {str(e).splitlines()[0]})."
        ) from None
    was_training = model.training
    gm.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        _propagate_shapes(gm, torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
    graph = _Fuser(gm, input_shape).run()
    record_input_shape(model, input_shape)
    return graph


class _NamedShapeProp(ShapeProp):
    """ShapeProp that remembers the node it is running, to name it when the model fails."""

    node: torch.fx.Node | None = None

    def run_node(self, n: torch.fx.Node) -> Any:
        self.node = n
        return super().run_node(n)


def _propagate_shapes(gm: torch.fx.GraphModule, x: torch.Tensor) -> None:
    """Record every node's output shape for input `x`; a model that does not run on it is one
    sentence with the layer and torch's own reason (e.g. "expected input ... to have 1
    channels, but got 3"), not fx's wrapper message and the traceback ShapeProp prints."""
    prop = _NamedShapeProp(gm)
    try:
        # ShapeProp prints the traceback of any failure itself before re-raising it
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            prop.propagate(x)
    except Exception as e:
        cause = e.__cause__ if e.__cause__ is not None else e
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0].rstrip(".")
        n, where = prop.node, ""
        if n is not None and n.op == "call_module":
            where = f" at layer `{n.target}` ({type(gm.get_submodule(str(n.target))).__name__})"
        elif n is not None and n.op != "placeholder":
            where = f" at `{n.name}`"
        shape = "x".join(map(str, x.shape[1:]))
        raise UnsupportedOpError(
            f"the model does not run on input shape {shape}{where}: {reason}."
        ) from None


class _Fuser:
    """Walks fx nodes in order, grouping conv/linear + BN + ReLU into ops and aliasing no-ops."""

    def __init__(self, gm: torch.fx.GraphModule, input_shape: tuple[int, ...]):
        self.gm = gm
        self.modules = dict(gm.named_modules())
        self.input_shape = input_shape
        self.value: dict[str, str] = {}  # fx node name -> tensor name
        self.ops: list[dict] = []
        self.signed: dict[str, bool] = {}
        self.fx_of: dict[str, str] = {}
        self.shapes: dict[str, tuple[int, int, int]] = {}
        self.done: set[str] = set()
        self.output: str | None = None
        self.notes: list[str] = []
        self.dropped: list[str] = []

    def where(self, node: torch.fx.Node) -> str:
        return graph_ops.where(self, node)

    def unsupported(self, node: torch.fx.Node, what: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"unsupported operation {what} at {self.where(node)}; micromix supports {SUPPORTED}."
        )

    def src(self, node: torch.fx.Node, arg) -> str:
        if not isinstance(arg, torch.fx.Node) or arg.name not in self.value:
            raise self.unsupported(node, f"with a non-tensor or constant input ({arg!r})")
        return self.value[arg.name]

    def run(self) -> Graph:
        for node in self.gm.graph.nodes:
            if node.name in self.done:
                continue
            self.visit(node)
        return self.build()

    def visit(self, node: torch.fx.Node) -> None:
        if node.op == "placeholder":
            if INPUT in self.shapes:
                raise self.unsupported(node, "(a second model input)")
            self.value[node.name] = INPUT
            self.shapes[INPUT] = chw(node)
            self.signed[INPUT] = False
            self.fx_of[INPUT] = node.name
            return
        if node.op == "output":
            arg = node.args[0]
            if not isinstance(arg, torch.fx.Node):
                raise self.unsupported(node, "(more than one model output)")
            self.output = self.src(node, arg)
            return
        if node.op == "get_attr":
            raise self.unsupported(node, f"(a tensor attribute `{node.target}` used as data)")
        kind = self.classify(node)
        if kind == "alias":
            self.value[node.name] = self.src(node, node.args[0])
        elif kind == "ignore":
            return
        elif kind in ("conv", "linear"):
            self.weighted(node, kind)
        elif kind == "add":
            self.elementwise_add(node)
        elif kind in graph_ops.HANDLERS:
            graph_ops.HANDLERS[kind](self, node)
        elif kind == "relu":
            raise self.unsupported(
                node, "ReLU whose input is not the sole output of a conv, linear, add or pooling"
            )
        elif kind == "bn":
            raise self.unsupported(node, "BatchNorm2d that does not directly follow a Conv2d")
        else:
            raise self.unsupported(node, kind)

    def classify(self, node: torch.fx.Node) -> str:
        if node.op == "call_module":
            m = self.modules[node.target]
            if isinstance(m, nn.Conv2d):
                return "conv"
            if isinstance(m, nn.Linear):
                return "linear"
            if isinstance(m, nn.BatchNorm2d):
                return "bn"
            if isinstance(m, (nn.ReLU, nn.ReLU6)):
                return "relu"
            if isinstance(m, (nn.Flatten, nn.Dropout, nn.Identity)):
                return "alias"
            if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
                return "avgpool"
            kind = graph_ops.module_kind(m)
            return kind if kind is not None else f"`{type(m).__name__}`"
        if node.op == "call_function":
            t = node.target
            if t in _RELU_FUNCS or (t is F.relu6) or (t is F.hardtanh and _is_relu6_hardtanh(node)):
                return "relu"
            if t in _ADD_FUNCS:
                return "add"
            if t in _FLATTEN_FUNCS or t in _DROPOUT_FUNCS:
                return "alias"
            if t in _POOL_FUNCS:
                return "avgpool"
            if t in _SCALAR_FUNCS and not _is_tensor(node):
                return "ignore"  # arithmetic on sizes: whatever reads it is checked there
            if t in graph_ops.FUNCTION_KINDS:
                return graph_ops.FUNCTION_KINDS[t]
            if t in (getattr, operator.getitem) and not _is_tensor(node):
                return "ignore"
            return f"`{getattr(t, '__name__', str(t))}`"
        if node.op == "call_method":
            if node.target in ("flatten", "view", "reshape") and self.is_flatten(node):
                return "alias"
            if node.target in ("relu", "relu_"):
                return "relu"
            if node.target in ("add", "add_", "__add__"):
                return "add"
            if node.target == "size" or not _is_tensor(node):
                return "ignore"
            if node.target == "mean" and self.is_global_mean(node):
                return "avgpool"
            if node.target in graph_ops.METHOD_KINDS:
                return graph_ops.METHOD_KINDS[node.target]
            if node.target in ("view", "reshape", "unsqueeze") and self.is_vector_view(node):
                return "alias"
            return f"`Tensor.{node.target}`"
        return f"`{node.op}`"

    def is_flatten(self, node: torch.fx.Node) -> bool:
        src = node.args[0]
        out = tuple(node.meta["tensor_meta"].shape)
        inp = tuple(src.meta["tensor_meta"].shape)
        return len(out) == 2 and out[0] == inp[0] and (len(inp) == 2 or len(inp) == 4)

    def is_vector_view(self, node: torch.fx.Node) -> bool:
        """(N, C) <-> (N, C, 1, 1): the same bytes in the arena (a squeeze-excitation gate)."""
        if not _is_tensor(node) or not _is_tensor(node.args[0]):
            return False
        shapes = [tuple(n.meta["tensor_meta"].shape) for n in (node, node.args[0])]
        flat = [s[:2] + tuple(d for d in s[2:] if d != 1) for s in shapes]
        return all(len(s) in (2, 4) for s in shapes) and flat[0] == flat[1] and len(flat[0]) == 2

    def is_global_mean(self, node: torch.fx.Node) -> bool:
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        return (
            tuple(sorted(dims)) in ((2, 3), (-2, -1)) if isinstance(dims, (tuple, list)) else False
        )

    def sole_user(self, node: torch.fx.Node, want: str) -> torch.fx.Node | None:
        users = list(node.users)
        if len(users) == 1 and self.classify(users[0]) == want:
            return users[0]
        return None

    def absorb_act(
        self, last: torch.fx.Node, nodes: list[torch.fx.Node]
    ) -> tuple[torch.fx.Node, str | None]:
        act_node = self.sole_user(last, "relu")
        if act_node is None:
            return last, None
        nodes.append(act_node)
        m = self.modules.get(act_node.target) if act_node.op == "call_module" else None
        six = isinstance(m, nn.ReLU6) or act_node.target is F.relu6 or act_node.target is F.hardtanh
        return act_node, "relu6" if six else "relu"

    def name_for(self, node: torch.fx.Node) -> str:
        return str(node.target) if node.op == "call_module" else node.name

    def emit(
        self, first: torch.fx.Node, nodes: list[torch.fx.Node], last: torch.fx.Node, **op
    ) -> None:
        name = self.name_for(first)
        for n in nodes:
            self.done.add(n.name)
        self.value[last.name] = name
        self.shapes[name] = chw(last)
        self.fx_of[name] = last.name
        op.update(
            name=name,
            output=name,
            out_shape=chw(last),
            fx_nodes=tuple(n.name for n in nodes),
            in_shapes=tuple(self.shapes[t] for t in op["inputs"]),
        )
        self.ops.append(op)

    def weighted(self, node: torch.fx.Node, kind: str) -> None:
        m = self.modules[node.target]
        x = self.src(node, node.args[0])
        in_shape = self.shapes[x]
        nodes = [node]
        last, bn = node, None
        if kind == "conv":
            graph_ops.check_conv(self, node)
            bn_node = self.sole_user(node, "bn")
            if bn_node is not None:
                nodes.append(bn_node)
                last, bn = bn_node, str(bn_node.target)
        elif len(node.args[0].meta["tensor_meta"].shape) != 2:
            raise self.unsupported(node, "Linear on a tensor that is not flattened to (N, F)")
        last, act = self.absorb_act(last, nodes)
        out = chw(last)
        w = tuple(m.weight.shape)
        if kind == "conv":
            macs = out[0] * out[1] * out[2] * w[1] * w[2] * w[3]
            attrs = dict(
                kernel=tuple(m.kernel_size),
                stride=tuple(m.stride),
                padding=tuple(m.padding),
                groups=m.groups,
            )
        else:
            macs = w[0] * w[1]
            attrs = {}
        self.signed[self.name_for(node)] = act is None
        self.emit(
            node,
            nodes,
            last,
            kind=kind,
            inputs=(x,),
            in_shape=in_shape,
            macs=macs,
            weight=WeightInfo(str(node.target), w),
            bn=bn,
            act=act,
            **attrs,
        )

    def elementwise_add(self, node: torch.fx.Node) -> None:
        args = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if len(args) != 2 or len(node.args) != 2 or node.kwargs:
            raise self.unsupported(node, "add of anything but two tensors")
        a, b = (self.src(node, x) for x in args)
        if self.shapes[a] != self.shapes[b]:
            raise self.unsupported(
                node, f"add of tensors with shapes {self.shapes[a]} and {self.shapes[b]}"
            )
        nodes = [node]
        last, act = self.absorb_act(node, nodes)
        self.signed[self.name_for(node)] = act is None and (self.signed[a] or self.signed[b])
        c, h, w = self.shapes[a]
        self.emit(
            node,
            nodes,
            last,
            kind="add",
            inputs=(a, b),
            in_shape=self.shapes[a],
            macs=c * h * w,
            act=act,
        )

    def build(self) -> Graph:
        if self.output is None or INPUT not in self.shapes:
            raise UnsupportedOpError("the traced model has no input or no output.")
        if not self.ops:
            raise UnsupportedOpError("the traced model has no conv or linear layer.")
        ops = tuple(Op(**o) for o in self.ops)
        step = {o.name: i for i, o in enumerate(ops)}
        consumers: dict[str, list[str]] = {t: [] for t in self.shapes}
        for o in ops:
            for t in o.inputs:
                consumers[t].append(o.name)
        tensors: dict[str, TensorInfo] = {}
        n = len(ops)
        for name, shape in self.shapes.items():
            if name != self.output and not consumers[name]:
                continue  # dead value: nothing reads it, nothing to store
            first = 0 if name == INPUT else step[name]
            last = n - 1 if name == self.output else max(step[c] for c in consumers[name])
            tensors[name] = TensorInfo(
                name=name,
                shape=shape,
                producer=None if name == INPUT else name,
                consumers=tuple(consumers[name]),
                first=first,
                last=last,
                signed=self.signed[name],
                fx_node=self.fx_of[name],
            )
        if self.output == INPUT:
            raise UnsupportedOpError("the model returns its input unchanged.")
        return Graph(
            ops=ops,
            tensors=tensors,
            input=INPUT,
            output=self.output,
            input_shape=self.input_shape,
            notes=tuple(self.notes),
            dropped=tuple(self.dropped),
        )


def _is_tensor(node: torch.fx.Node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape")


def _is_relu6_hardtanh(node: torch.fx.Node) -> bool:
    lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", -1.0)
    hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max_val", 1.0)
    return lo == 0.0 and hi == 6.0


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))
