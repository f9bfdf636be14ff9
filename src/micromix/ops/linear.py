"""linear: an nn.Linear on a flattened (N, F) input, with a ReLU / ReLU6 fused. It runs as a
convolution whose kernel is the whole C x H x W input (see ops.conv, which it shares)."""

from __future__ import annotations

import torch.fx
import torch.nn as nn

from .conv import emit_weighted, weighted_def
from .registry import register
from .tracing import Fuser


def trace(fz: Fuser, node: torch.fx.Node) -> None:
    fz.src(node, node.args[0])  # a tensor traced so far, or one sentence
    if len(node.args[0].meta["tensor_meta"].shape) != 2:
        raise fz.unsupported(node, "Linear on a tensor that is not flattened to (N, F)")
    emit_weighted(fz, node, "linear", [node], node)


register(weighted_def("linear", "Linear", trace, modules=(nn.Linear,)))
