"""What an op's trace handler may use: the tracer's interface (Fuser) and one argument reader.

Every handler reads its op's arguments through `read_args`, from the nn.Module's attributes or
from the functional call (positional, keyword, defaults) alike, so an argument the kernels
cannot honour is refused the same way everywhere: one sentence naming the op, the argument with
its value, and the module whose forward holds it (fx `nn_module_stack` for functional calls).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.fx
import torch.nn as nn

from ..errors import UnsupportedOpError


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

    def unsupported(self, node: torch.fx.Node, what: str) -> Exception: ...

    def absorb_bn(
        self, node: torch.fx.Node, nodes: list[torch.fx.Node]
    ) -> tuple[torch.fx.Node, str | None]: ...

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


# ---- arguments -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Args:
    """An op's arguments after its input tensor, in the functional signature's order."""

    op: str  # how a refusal names the op
    names: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    first: int = 1  # positional index of names[0] in a functional call (after the input)


def fn_name(node: torch.fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return getattr(node.target, "__name__", str(node.target))


def where(fz: Fuser, node: torch.fx.Node) -> str:
    """The place of `node` in the user's code: the module, or the module whose forward calls it."""
    if node.op == "call_module":
        return f"module `{node.target}` ({type(fz.modules[node.target]).__name__})"
    stack = node.meta.get("nn_module_stack")
    call = f"`{fn_name(node)}` (fx node `{node.name}`)"
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


def pair(v) -> tuple[int, int]:
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


def input_of(fz: Fuser, node: torch.fx.Node) -> str:
    x = node.args[0] if node.args else node.kwargs.get("input")
    return fz.src(node, x)


def is_tensor(node: Any) -> bool:
    """True for an fx node whose value is a tensor (not a size or a Python number)."""
    meta = node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None
    return meta is not None and hasattr(meta, "shape")
