"""softmax: a trailing softmax / log_softmax over the classes. It never reaches the Graph: the
tracer takes it back out (it does not change the arg-max), notes that it did, and micromix_run
returns the logits."""

from __future__ import annotations

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UnsupportedOpError
from .registry import OpDef, register
from .tracing import Args, Fuser, fn_name, input_of, read_args, refuse, where

SOFTMAX = Args(
    "softmax", ("dim", "_stacklevel", "dtype"), dict(dim=None, _stacklevel=3, dtype=None)
)


def trace(fz: Fuser, node: torch.fx.Node) -> None:
    x = input_of(fz, node)
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
        f"the trailing {fn_name(node) if node.op != 'call_module' else node.target} at "
        f"{where(fz, node)} is left out of the integer model and the C: it does not change "
        "the arg-max, and micromix_run returns the logits."
    )


register(
    OpDef(
        kind="softmax",
        describe="a trailing softmax / log_softmax",
        trace=trace,
        in_graph=False,
        modules=(nn.Softmax, nn.LogSoftmax),
        functions=(F.softmax, F.log_softmax, torch.softmax, torch.log_softmax),
        methods=("softmax", "log_softmax"),
    )
)
