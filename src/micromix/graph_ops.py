"""Trace handlers of the pooling, concat, table-activation, multiply and softmax ops.

Every handler reads its op's arguments through `read_args`, from the nn.Module's attributes or
from the functional call (positional, keyword, defaults) alike, so an argument the kernels
cannot honour is refused the same way everywhere: one sentence naming the op, the argument with
its value, and the module whose forward holds it (fx `nn_module_stack` for functional calls).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from .errors import UnsupportedOpError


class Fuser(Protocol):
    """What a handler may read and call of the tracer (`graph.Fuser`): the fx modules, the
    tensors traced so far (`value`: fx node -> tensor, `shapes`, `signed`), and the three ways
    to change them: `emit` an op, alias a node (`value`), or drop it (`dropped`, `notes`)."""

    gm: torch.fx.GraphModule
    modules: dict[str, nn.Module]
    value: dict[str, str]
    shapes: dict[str, tuple[int, int, int]]
    signed: dict[str, bool]
    ops: list[dict]
    done: set[str]
    notes: list[str]
    dropped: list[str]

    def src(self, node: torch.fx.Node, arg: Any) -> str: ...

    def absorb_act(
        self, last: torch.fx.Node, nodes: list[torch.fx.Node]
    ) -> tuple[torch.fx.Node, str | None]: ...

    def emit(
        self, first: torch.fx.Node, nodes: list[torch.fx.Node], last: torch.fx.Node, **op: Any
    ) -> None: ...

    def name_for(self, node: torch.fx.Node) -> str: ...


def chw(node: torch.fx.Node) -> tuple[int, int, int]:
    """(C, H, W) of a traced tensor; a vector (N, F) is (F, 1, 1)."""
    shape = tuple(node.meta["tensor_meta"].shape)[1:]
    if len(shape) == 3:
        return shape  # type: ignore[return-value]
    if len(shape) == 1:
        return (shape[0], 1, 1)
    raise UnsupportedOpError(
        f"tensor {node.name} has shape {tuple(shape)}; only (C,H,W) or (F,) are supported."
    )


# Table activations: fn name -> whether the output can be negative for a negative input.
LUT_FNS = ("hardswish", "hardsigmoid", "sigmoid", "silu", "leaky_relu", "tanh")
_NONNEG_FNS = ("hardsigmoid", "sigmoid")

_LUT_MODULES: dict[type, str] = {
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.Sigmoid: "sigmoid",
    nn.SiLU: "silu",
    nn.LeakyReLU: "leaky_relu",
    nn.Tanh: "tanh",
}
_LUT_FUNCS: dict[Callable, str] = {
    F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    F.silu: "silu",
    F.leaky_relu: "leaky_relu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
}
_LUT_METHODS = {"sigmoid": "sigmoid", "sigmoid_": "sigmoid", "tanh": "tanh", "tanh_": "tanh"}

FUNCTION_KINDS: dict[Callable, str] = {
    F.max_pool2d: "maxpool",
    F.max_pool2d_with_indices: "maxpool",
    F.adaptive_max_pool2d: "maxpool",
    torch.cat: "cat",
    torch.concat: "cat",
    torch.concatenate: "cat",
    operator.mul: "mul",
    torch.mul: "mul",
    operator.imul: "mul",
    F.softmax: "softmax",
    F.log_softmax: "softmax",
    torch.softmax: "softmax",
    torch.log_softmax: "softmax",
    **dict.fromkeys(_LUT_FUNCS, "lut"),
}
METHOD_KINDS: dict[str, str] = {
    "mul": "mul",
    "mul_": "mul",
    "__mul__": "mul",
    "softmax": "softmax",
    "log_softmax": "softmax",
    **dict.fromkeys(_LUT_METHODS, "lut"),
}


def module_kind(m: nn.Module) -> str | None:
    if isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
        return "maxpool"
    if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
        return "softmax"
    if type(m) in _LUT_MODULES:
        return "lut"
    return None


# ---- arguments -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Args:
    """An op's arguments after its input tensor, in the functional signature's order."""

    op: str  # how a refusal names the op
    names: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    first: int = 1  # positional index of names[0] in a functional call (after the input)


def _fn_name(node: torch.fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return getattr(node.target, "__name__", str(node.target))


def where(fz: Fuser, node: torch.fx.Node) -> str:
    """The place of `node` in the user's code: the module, or the module whose forward calls it."""
    if node.op == "call_module":
        return f"module `{node.target}` ({type(fz.modules[node.target]).__name__})"
    stack = node.meta.get("nn_module_stack")
    call = f"`{_fn_name(node)}` (fx node `{node.name}`)"
    if stack:
        path, owner = list(stack.values())[-1]
        cls = owner.__name__ if isinstance(owner, type) else str(owner).rsplit(".", 1)[-1]
        return f"{call} in the forward of module `{path}` ({cls})"
    return f"{call} in the forward of the model ({type(fz.gm).__name__})"


def refuse(fz: Fuser, node: torch.fx.Node, spec: Args, arg: str, value, why: str) -> Exception:
    return UnsupportedOpError(
        f"{spec.op} at {where(fz, node)} has {arg}={value!r}, which micromix cannot honour ({why})."
    )


def read_args(fz: Fuser, node: torch.fx.Node, spec: Args) -> dict[str, Any]:
    """The values of `spec.names` for `node`: module attributes, or call arguments and defaults."""
    if node.op == "call_module":
        m = fz.modules[node.target]
        return {n: getattr(m, n, spec.defaults.get(n)) for n in spec.names}
    out = dict(spec.defaults)
    pos = node.args[spec.first :]
    if len(pos) > len(spec.names):
        raise refuse(fz, node, spec, "arguments", pos, "more positional arguments than it takes")
    out.update(zip(spec.names, pos))
    for k, v in node.kwargs.items():
        if k not in spec.names and k != "input":
            raise refuse(fz, node, spec, k, v, "an argument micromix does not know")
        out[k] = v
    for k, v in out.items():
        if k != "tensors" and isinstance(v, torch.fx.Node):
            raise refuse(fz, node, spec, k, v.name, "it is computed at run time, not a constant")
    return out


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(x) for x in v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def pool_size(size: int, k: int, s: int, p: int, ceil: bool) -> int:
    """PyTorch's pooled size; with ceil_mode the last window must start inside the input or
    its left padding."""
    if not ceil:
        return (size + 2 * p - k) // s + 1
    o = -(-(size + 2 * p - k) // s) + 1
    return o - 1 if (o - 1) * s >= size + p else o


def _input(fz: Fuser, node: torch.fx.Node) -> str:
    x = node.args[0] if node.args else node.kwargs.get("input")
    return fz.src(node, x)


# ---- handlers ------------------------------------------------------------------------------

CONV = Args("Conv2d", ("padding_mode", "padding", "dilation"))


def check_conv(fz: Fuser, node: torch.fx.Node) -> None:
    a = read_args(fz, node, CONV)
    if a["padding_mode"] != "zeros":
        raise refuse(fz, node, CONV, "padding_mode", a["padding_mode"], "only zero padding")
    if isinstance(a["padding"], str):
        raise refuse(fz, node, CONV, "padding", a["padding"], "give the padding as numbers")
    if _pair(a["dilation"]) != (1, 1):
        raise refuse(fz, node, CONV, "dilation", a["dilation"], "only dilation 1 is supported")


MAXPOOL = Args(
    "max pooling",
    ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    dict(stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False),
)
ADAPTIVE_MAX = Args(
    "adaptive max pooling", ("output_size", "return_indices"), {"return_indices": False}
)
AVGPOOL = Args(
    "average pooling",
    ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    dict(stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None),
)
ADAPTIVE_AVG = Args("adaptive average pooling", ("output_size",))
MEAN = Args("mean", ("dim", "keepdim", "dtype"), dict(keepdim=False, dtype=None))


def _adaptive(fz: Fuser, node, spec: Args, x: str, out: tuple[int, int, int]):
    _, h, w = fz.shapes[x]
    _, oh, ow = out
    if h % oh or w % ow:
        raise refuse(
            fz, node, spec, "output_size", (oh, ow), f"the input {h}x{w} is not a multiple of it"
        )
    return (h // oh, w // ow), (h // oh, w // ow)


def _is_adaptive(fz: Fuser, node) -> bool:
    if node.op == "call_module":
        return isinstance(fz.modules[node.target], (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))
    return node.target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d)


def _window(fz, node, spec, a, x) -> tuple[tuple, tuple, tuple]:
    kernel = _pair(a["kernel_size"])
    stride = kernel if a["stride"] in (None, ()) else _pair(a["stride"])
    padding = _pair(a["padding"])
    for name, v in (("kernel_size", kernel), ("stride", stride)):
        if min(v) < 1:
            raise refuse(fz, node, spec, name, v, "it must be positive")
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise refuse(fz, node, spec, "padding", padding, "padding is at most half the kernel")
    return kernel, stride, padding


def maxpool(fz: Fuser, node: torch.fx.Node) -> None:
    x = _input(fz, node)
    c, h, w = fz.shapes[x]
    adaptive = _is_adaptive(fz, node)
    spec = ADAPTIVE_MAX if adaptive else MAXPOOL
    if node.target is F.max_pool2d_with_indices:
        raise refuse(fz, node, spec, "return_indices", True, "the indices are not computed")
    a = read_args(fz, node, spec)
    if a["return_indices"]:
        raise refuse(fz, node, spec, "return_indices", True, "the indices are not computed")
    ceil = False
    if adaptive:
        kernel, stride = _adaptive(fz, node, spec, x, chw(node))
        padding = (0, 0)
    else:
        if _pair(a["dilation"]) != (1, 1):
            raise refuse(fz, node, spec, "dilation", a["dilation"], "only dilation 1 is supported")
        kernel, stride, padding = _window(fz, node, spec, a, x)
        ceil = bool(a["ceil_mode"])
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    out = chw(last)
    want = tuple(pool_size(n, k, s, p, ceil) for n, k, s, p in zip((h, w), kernel, stride, padding))
    if out[1:] != want:  # torch and our size rule must agree, or the arena plan is wrong
        raise ValueError(f"pooling {node.name}: torch gives {out[1:]}, the size rule {want}")
    fz.signed[fz.name_for(node)] = act is None and fz.signed[x]
    fz.emit(
        node, nodes, last, kind="maxpool", inputs=(x,), in_shape=(c, h, w),
        macs=c * out[1] * out[2] * kernel[0] * kernel[1], act=act, kernel=kernel,
        stride=stride, padding=padding, ceil_mode=ceil,
    )  # fmt: skip


def avgpool(fz: Fuser, node: torch.fx.Node) -> None:
    x = _input(fz, node)
    c, h, w = fz.shapes[x]
    padding, include_pad = (0, 0), True
    if node.op == "call_method":  # x.mean((2, 3)): global
        kernel = stride = (h, w)
    elif _is_adaptive(fz, node):
        read_args(fz, node, ADAPTIVE_AVG)
        kernel, stride = _adaptive(fz, node, ADAPTIVE_AVG, x, chw(node))
    else:
        a = read_args(fz, node, AVGPOOL)
        if a["divisor_override"] is not None:
            raise refuse(
                fz, node, AVGPOOL, "divisor_override", a["divisor_override"], "not supported"
            )
        kernel, stride, padding = _window(fz, node, AVGPOOL, a, x)
        sizes = zip((h, w), kernel, stride, padding)
        if a["ceil_mode"] and any(
            pool_size(*t, True) != pool_size(*t, False) for t in sizes
        ):  # windows clipped at the edge would need their own divisors
            raise refuse(
                fz, node, AVGPOOL, "ceil_mode", True, "it adds windows that end past the padding"
            )
        include_pad = bool(a["count_include_pad"]) or padding == (0, 0)
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    out = chw(last)
    want = tuple(
        pool_size(n, k, s, p, False) for n, k, s, p in zip((h, w), kernel, stride, padding)
    )
    if out[1:] != want:  # torch and our size rule must agree, or the arena plan is wrong
        raise ValueError(f"pooling {node.name}: torch gives {out[1:]}, the size rule {want}")
    fz.signed[fz.name_for(node)] = act is None and fz.signed[x]
    fz.emit(
        node, nodes, last, kind="avgpool", inputs=(x,), in_shape=(c, h, w), macs=c * h * w,
        act=act, kernel=kernel, stride=stride, padding=padding, count_include_pad=include_pad,
    )  # fmt: skip


CAT = Args("torch.cat", ("tensors", "dim", "axis"), {"dim": 0, "axis": None}, first=0)


def cat(fz: Fuser, node: torch.fx.Node) -> None:
    a = read_args(fz, node, CAT)
    if a["axis"] is not None:  # numpy's spelling, which torch.cat accepts too
        a["dim"] = a["axis"]
    rank = len(node.meta["tensor_meta"].shape)
    if not isinstance(a["dim"], int) or a["dim"] % rank != 1:
        raise refuse(fz, node, CAT, "dim", a["dim"], "only dim=1, the channels, is supported")
    if not isinstance(a["tensors"], (list, tuple)):
        raise refuse(fz, node, CAT, "tensors", a["tensors"], "it must be a list of tensors")
    xs = tuple(fz.src(node, t) for t in a["tensors"])
    if len(xs) == 1:
        fz.value[node.name] = xs[0]
        return
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    out = chw(last)
    fz.signed[fz.name_for(node)] = act is None and any(fz.signed[t] for t in xs)
    fz.emit(
        node, nodes, last, kind="cat", inputs=xs, in_shape=fz.shapes[xs[0]],
        macs=out[0] * out[1] * out[2], act=act,
    )  # fmt: skip


LUT_ARGS = {
    "leaky_relu": Args(
        "LeakyReLU", ("negative_slope", "inplace"), dict(negative_slope=0.01, inplace=False)
    ),
    "sigmoid": Args("Sigmoid", ()),
    "tanh": Args("Tanh", ()),
}


def lut_fn(fz: Fuser, node: torch.fx.Node) -> str:
    if node.op == "call_module":
        return _LUT_MODULES[type(fz.modules[node.target])]
    if node.op == "call_method":
        return _LUT_METHODS[node.target]
    return _LUT_FUNCS[node.target]


def lut(fz: Fuser, node: torch.fx.Node) -> None:
    fn = lut_fn(fz, node)
    x = _input(fz, node)
    spec = LUT_ARGS.get(fn, Args(fn, ("inplace",), {"inplace": False}))
    a = read_args(fz, node, spec)
    alpha = float(a.get("negative_slope", 0.0))
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    c, h, w = chw(last)
    fz.signed[fz.name_for(node)] = act is None and fn not in _NONNEG_FNS and fz.signed[x]
    fz.emit(
        node, nodes, last, kind="lut", inputs=(x,), in_shape=fz.shapes[x], macs=c * h * w,
        act=act, fn=fn, alpha=alpha,
    )  # fmt: skip


MUL = Args("multiply", ("other",))


def mul(fz: Fuser, node: torch.fx.Node) -> None:
    if len(node.args) != 2 or node.kwargs:
        raise refuse(fz, node, MUL, "arguments", node.args, "it multiplies exactly two tensors")
    a, b = (fz.src(node, t) for t in node.args)
    if _swish(fz, node):
        return
    sa, sb = fz.shapes[a], fz.shapes[b]
    if sa[1:] == (1, 1) and sb[1:] != (1, 1):
        a, b, sa, sb = b, a, sb, sa  # the feature map first, the gate second
    if sa[0] != sb[0] or sb[1:] not in ((1, 1), sa[1:]):
        raise refuse(
            fz, node, MUL, "shapes", (sa, sb),
            "only a C x H x W map times a C x 1 x 1 gate or a map of its own shape is supported",
        )  # fmt: skip
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    c, h, w = chw(last)
    fz.signed[fz.name_for(node)] = act is None and (fz.signed[a] or fz.signed[b])
    fz.emit(node, nodes, last, kind="mul", inputs=(a, b), in_shape=sa, macs=c * h * w, act=act)


def _swish(fz: Fuser, node: torch.fx.Node) -> bool:
    """x * sigmoid(x) written by hand is one silu table: the sigmoid op already emitted for
    it (read by nothing else) is taken back, and the multiply becomes the table."""
    for x_node, s_node in (node.args, node.args[::-1]):
        name = fz.value[s_node.name]
        op = next((o for o in fz.ops if o["name"] == name), None)
        if (
            op is None
            or op["kind"] != "lut"
            or op["fn"] != "sigmoid"
            or op["act"] is not None
            or op["inputs"] != (fz.value[x_node.name],)
            or len(s_node.users) != 1
        ):
            continue
        fz.ops.remove(op)
        fz.done.discard(s_node.name)
        nodes = [s_node, node]
        last, act = fz.absorb_act(node, nodes)
        c, h, w = chw(last)
        x = op["inputs"][0]
        fz.signed[fz.name_for(node)] = act is None and fz.signed[x]
        fz.emit(
            node, nodes, last, kind="lut", inputs=(x,), in_shape=fz.shapes[x],
            macs=c * h * w, act=act, fn="silu",
        )  # fmt: skip
        return True
    return False


SOFTMAX = Args(
    "softmax", ("dim", "_stacklevel", "dtype"), dict(dim=None, _stacklevel=3, dtype=None)
)


def softmax(fz: Fuser, node: torch.fx.Node) -> None:
    x = _input(fz, node)
    a = read_args(fz, node, SOFTMAX)
    rank = len(node.meta["tensor_meta"].shape)
    dim = 1 if a["dim"] is None and rank in (2, 4) else a["dim"]
    if not isinstance(dim, int) or dim % rank != 1:
        raise refuse(fz, node, SOFTMAX, "dim", a["dim"], "only the class dimension, dim=1")
    if [u.op for u in node.users] != ["output"]:
        raise UnsupportedOpError(
            f"softmax at {where(fz, node)} is not the model's last operation; micromix keeps "
            "only a trailing softmax / log_softmax, and leaves it out of the integer model."
        )
    fz.value[node.name] = x
    fz.dropped.append(node.name)
    fz.notes.append(
        f"the trailing {_fn_name(node) if node.op != 'call_module' else node.target} at "
        f"{where(fz, node)} is left out of the integer model and the C: it does not change "
        "the arg-max, and micromix_run returns the logits."
    )


HANDLERS: dict[str, Callable[[Fuser, torch.fx.Node], None]] = {
    "avgpool": avgpool,
    "maxpool": maxpool,
    "cat": cat,
    "lut": lut,
    "mul": mul,
    "softmax": softmax,
}
