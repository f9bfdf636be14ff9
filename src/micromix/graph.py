"""Trace an nn.Module into the Graph that the memory model, quantizers, search and export share.

The Graph works at the level the MCU executes: a convolution with its BatchNorm and ReLU is one op
(BN is absorbed in the requantization, the ReLU in its clamp), flatten and dropout are aliases,
and every op writes one activation tensor. Ops are in execution order; op i runs at step i.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from . import configs, ops
from .errors import MicromixError, UnsupportedOpError
from .ir import Graph, Op, TensorInfo, WeightInfo, record
from .ops.tracing import chw, is_tensor, where

INPUT = "input"

DENSE_SCALES = ("channel", "tensor")


@dataclass(frozen=True)
class WeightScales:
    """How the weights of a layer kind are scaled: `dense` (nn.Linear) "channel" (one scale per
    output row, the default) or "tensor" (one scale for the whole weight tensor, as TFLite's
    int8 fully connected layers: the layer stores one multiplier and one shift instead of one
    per row). The trace records it on each op (`Op.per_tensor`), so the memory model counts
    the layout before any search and every later stage reads it from the Graph."""

    dense: str = "channel"

    def __post_init__(self) -> None:
        configs.check_choice("dense weight scales", self.dense, DENSE_SCALES)

    def to_json(self) -> dict[str, Any]:
        return configs.to_json(self)

    @classmethod
    def from_json(cls, data: Any, source: str = "the weight scales") -> WeightScales:
        return configs.from_json(cls, data, source)


def scales_of(graph: Graph) -> WeightScales:
    """The WeightScales a Graph was traced with (per tensor where any dense op is)."""
    return WeightScales(dense="tensor" if any(o.per_tensor for o in graph.ops) else "channel")


def with_scales(graph: Graph, scales: WeightScales) -> Graph:
    """`graph` with every dense layer's (a 2-D weight: nn.Linear) `per_tensor` set from
    `scales`."""
    tensor = scales.dense == "tensor"
    new = tuple(
        dataclasses.replace(o, per_tensor=tensor)
        if o.has_weight and len(o.weight.shape) == 2
        else o
        for o in graph.ops
    )
    return dataclasses.replace(graph, ops=new)


def supported() -> str:
    """What the tracer takes, for its refusals: every registered op and the fused ones."""
    return ", ".join([d.describe for d in ops.all_defs()] + ["ReLU, ReLU6, flatten and dropout"])


class _Rule:
    """What the tracer does with an fx node that is not an op of the registry."""

    def __init__(self, what: str) -> None:
        self.what = what


ALIAS = _Rule("alias")  # the same bytes under another name: flatten, dropout, views
IGNORE = _Rule("ignore")  # not a tensor (sizes): whatever reads it is checked there
RELU = _Rule("relu")  # fused into the op before it
BN = _Rule("bn")  # fused into the conv before it


def _op(d: Any) -> Op:
    op = record(Op, d, {"weight": lambda w: None if w is None else record(WeightInfo, w)})
    if not ops.get(op.kind).in_graph:
        raise ValueError(f"op kind {op.kind!r} never reaches a graph")
    return op


def graph_from_json(d: Any, source: str = "the stored graph") -> Graph:
    """The Graph that `Graph.to_json` wrote; damaged or foreign data is one sentence."""
    try:
        tensors = d["tensors"]
        graph = record(
            Graph,
            d,
            {
                "ops": lambda ops: tuple(_op(o) for o in ops),
                "tensors": lambda ts: {k: record(TensorInfo, v) for k, v in ts.items()},
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
_ALIAS_FUNCS = {torch.flatten, F.dropout}
_SCALAR_FUNCS = {operator.mul, operator.add, operator.sub, operator.floordiv, operator.truediv}


def trace(
    model: nn.Module,
    input_shape: tuple[int, ...] | None = None,
    scales: WeightScales | None = None,
) -> Graph:
    """Trace `model` with torch.fx and fuse it into MCU ops.

    `input_shape` is (N, C, H, W); the default is the shape the model was traced with before,
    or the one its model spec or zoo config gives. A successful trace records it on the model.
    Raises UnsupportedOpError naming the op and its module path for anything not supported.
    `scales`: per-channel weight scales everywhere by default (WeightScales).
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
    return graph if scales is None else with_scales(graph, scales)


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
    """Walks fx nodes in order: each node is an op of the registry (its trace handler emits
    it, fusing BN and ReLU), an alias, a number (ignored) or refused."""

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

    def unsupported(self, node: torch.fx.Node, what: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"unsupported operation {what} at {where(self, node)}; micromix supports {supported()}."
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
        rule = self.classify(node)
        if isinstance(rule, ops.OpDef):
            rule.trace(self, node)
        elif rule is ALIAS:
            self.value[node.name] = self.src(node, node.args[0])
        elif rule is RELU:
            raise self.unsupported(
                node, "ReLU whose input is not the sole output of a conv, linear, add or pooling"
            )
        elif rule is BN:
            raise self.unsupported(node, "BatchNorm2d that does not directly follow a Conv2d")
        elif rule is not IGNORE:
            raise self.unsupported(node, str(rule))

    def classify(self, node: torch.fx.Node) -> ops.OpDef | _Rule | str:
        """The registry's op for `node`, one of the tracer's own rules, or (refused) its name."""
        if node.op == "call_module":
            m = self.modules[node.target]
            if isinstance(m, (nn.ReLU, nn.ReLU6)):
                return RELU
            if isinstance(m, nn.BatchNorm2d):
                return BN
            if isinstance(m, (nn.Flatten, nn.Dropout, nn.Identity)):
                return ALIAS
            d = next((d for d in ops.all_defs() if isinstance(m, d.modules)), None)
            return self._taken(d, node, f"`{type(m).__name__}`")
        if node.op == "call_function":
            t = node.target
            if t in _RELU_FUNCS or (t is F.relu6) or (t is F.hardtanh and _is_relu6_hardtanh(node)):
                return RELU
            if t in _ALIAS_FUNCS:
                return ALIAS
            if t in _SCALAR_FUNCS and not is_tensor(node):
                return IGNORE  # arithmetic on sizes: whatever reads it is checked there
            if t in (getattr, operator.getitem) and not is_tensor(node):
                return IGNORE
            d = next((d for d in ops.all_defs() if t in d.functions), None)
            return self._taken(d, node, f"`{getattr(t, '__name__', str(t))}`")
        if node.op == "call_method":
            return self._method(node)
        return f"`{node.op}`"

    def _method(self, node: torch.fx.Node) -> ops.OpDef | _Rule | str:
        if node.target in ("flatten", "view", "reshape") and self.is_flatten(node):
            return ALIAS
        if node.target in ("relu", "relu_"):
            return RELU
        if node.target == "size" or not is_tensor(node):
            return IGNORE
        d = next((d for d in ops.all_defs() if node.target in d.methods), None)
        if d is not None and d.accepts(self, node):
            return d
        if node.target in ("view", "reshape", "unsqueeze") and self.is_vector_view(node):
            return ALIAS
        return f"`Tensor.{node.target}`"

    def _taken(self, d: ops.OpDef | None, node: torch.fx.Node, name: str) -> ops.OpDef | str:
        return d if d is not None and d.accepts(self, node) else name

    def is_flatten(self, node: torch.fx.Node) -> bool:
        src = node.args[0]
        out = tuple(node.meta["tensor_meta"].shape)
        inp = tuple(src.meta["tensor_meta"].shape)
        return len(out) == 2 and out[0] == inp[0] and (len(inp) == 2 or len(inp) == 4)

    def is_vector_view(self, node: torch.fx.Node) -> bool:
        """(N, C) <-> (N, C, 1, 1): the same bytes in the arena (a squeeze-excitation gate)."""
        if not is_tensor(node) or not is_tensor(node.args[0]):
            return False
        shapes = [tuple(n.meta["tensor_meta"].shape) for n in (node, node.args[0])]
        flat = [s[:2] + tuple(d for d in s[2:] if d != 1) for s in shapes]
        return all(len(s) in (2, 4) for s in shapes) and flat[0] == flat[1] and len(flat[0]) == 2

    def sole_user(self, node: torch.fx.Node, want: _Rule) -> torch.fx.Node | None:
        users = list(node.users)
        if len(users) == 1 and self.classify(users[0]) is want:
            return users[0]
        return None

    def absorb_bn(
        self, node: torch.fx.Node, nodes: list[torch.fx.Node]
    ) -> tuple[torch.fx.Node, str | None]:
        bn_node = self.sole_user(node, BN)
        if bn_node is None:
            return node, None
        nodes.append(bn_node)
        return bn_node, str(bn_node.target)

    def absorb_act(
        self, last: torch.fx.Node, nodes: list[torch.fx.Node]
    ) -> tuple[torch.fx.Node, str | None]:
        act_node = self.sole_user(last, RELU)
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

    def build(self) -> Graph:
        if self.output is None or INPUT not in self.shapes:
            raise UnsupportedOpError("the traced model has no input or no output.")
        if not self.ops:
            raise UnsupportedOpError("the traced model has no conv or linear layer.")
        built = tuple(Op(**o) for o in self.ops)
        step = {o.name: i for i, o in enumerate(built)}
        consumers: dict[str, list[str]] = {t: [] for t in self.shapes}
        for o in built:
            for t in o.inputs:
                consumers[t].append(o.name)
        tensors: dict[str, TensorInfo] = {}
        n = len(built)
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
            ops=built,
            tensors=tensors,
            input=INPUT,
            output=self.output,
            input_shape=self.input_shape,
            notes=tuple(self.notes),
            dropped=tuple(self.dropped),
        )


def _is_relu6_hardtanh(node: torch.fx.Node) -> bool:
    lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val", -1.0)
    hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max_val", 1.0)
    return lo == 0.0 and hi == 6.0
