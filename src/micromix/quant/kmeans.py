"""HAQ's non-uniform baseline: a k-means codebook of 2^b float centroids per layer (weights only).

Every weight is replaced by the index of its nearest centroid; fine-tuning keeps the indices and
trains the centroids, each receiving the sum of the gradients of the weights that share it
(Deep Compression's "centroid-preserving" update, which indexing backward gives for free).
Activations stay float or are fake-quantized at 8 bits like the uniform models.

Its FLASH is counted honestly: indices packed at b bits per weight with the same row padding as
uniform weights (`memory.weight_bytes`), plus each layer's codebook, plus the same per-channel
parameters the uniform models pay.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..graph import Graph, trace
from ..memory import param_bytes, weight_bytes
from .fakequant import conv_args
from .prepare import rewrite


@torch.no_grad()
def kmeans_1d(w: torch.Tensor, k: int, iters: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """(centroids [k], index of each weight): Lloyd's algorithm from a linear initialisation
    between min and max (the initialisation Deep Compression found best: it keeps the rare
    large weights representable)."""
    flat = w.detach().reshape(-1).float()
    lo, hi = float(flat.min()), float(flat.max())
    c = torch.linspace(lo, hi, k, device=flat.device)
    idx = torch.zeros(flat.numel(), dtype=torch.int64, device=flat.device)
    for _ in range(iters):
        idx = (flat[:, None] - c[None, :]).abs().argmin(1)
        sums = torch.zeros(k, device=flat.device).index_add_(0, idx, flat)
        counts = torch.bincount(idx, minlength=k).to(flat.dtype)
        new = torch.where(counts > 0, sums / counts.clamp_min(1), c)  # empty clusters stay
        if torch.equal(new, c):
            break
        c = new
    return c, idx.view(w.shape)


class _Codebook(nn.Module):
    def _init_codebook(self, weight: torch.Tensor, bits: int) -> None:
        centroids, index = kmeans_1d(weight, 2**bits)
        self.bits = bits
        self.centroids = nn.Parameter(centroids.to(weight.dtype))
        self.register_buffer("index", index)

    def codebook_weight(self) -> torch.Tensor:
        return self.centroids[self.index]


class KMeansConv2d(nn.Conv2d, _Codebook):
    def __init__(self, conv: nn.Conv2d, bits: int):
        super().__init__(*conv_args(conv), device=conv.weight.device)
        del self.weight  # the codebook and the indices replace it
        self.bias = conv.bias
        self._init_codebook(conv.weight, bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.codebook_weight(), self.bias)


class KMeansLinear(nn.Linear, _Codebook):
    def __init__(self, lin: nn.Linear, bits: int):
        super().__init__(
            lin.in_features, lin.out_features, lin.bias is not None, device=lin.weight.device
        )
        del self.weight
        self.bias = lin.bias
        self._init_codebook(lin.weight, bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.codebook_weight(), self.bias)


class KMeansModel(nn.Module):
    """A k-means-quantized copy of a float model (weights as codebooks; optional 8-bit acts)."""

    def __init__(self, net: nn.Module, graph: Graph, bits: dict[str, int], act_bits: int | None):
        super().__init__()
        self.net = net
        self.graph = graph
        self.bits = bits
        self.act_bits = act_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def kmeans_quantize(
    model: nn.Module,
    bits: int | Mapping[str, int],
    graph: Graph | None = None,
    *,
    act_bits: int | None = 8,
) -> KMeansModel:
    """A copy of `model` with every conv/linear weight on a per-layer codebook of 2^bits values.

    `bits` is one width for all layers or a mapping op name -> bits; `act_bits=None` keeps the
    activations float, otherwise they are fake-quantized (input and logits at 8 bits).
    """
    if graph is None:
        graph = trace(model)
    per_layer = _per_layer(graph, bits)

    def act(t: str) -> int | None:
        if act_bits is None:
            return None
        return 8 if t in (graph.input, graph.output) else act_bits

    def swap(op_name: str, m: nn.Module) -> nn.Module:
        cls = KMeansConv2d if isinstance(m, nn.Conv2d) else KMeansLinear
        return cls(m, per_layer[op_name])

    net, _ = rewrite(model, graph, act, swap)
    return KMeansModel(net, graph, per_layer, act_bits).train(model.training)


def kmeans_flash_bytes(
    graph: Graph, bits: int | Mapping[str, int], centroid_bytes: int = 4
) -> dict[str, int]:
    """FLASH of a k-means model: packed indices + codebooks (2^b centroids of `centroid_bytes`:
    4 for float32, 2 for int16) + the per-channel parameters every op keeps."""
    per_layer = _per_layer(graph, bits)
    indices = sum(weight_bytes(o, per_layer[o.name]) for o in graph.weight_ops)
    codebooks = sum(2 ** per_layer[o.name] * centroid_bytes for o in graph.weight_ops)
    params = sum(param_bytes(o) for o in graph.ops)
    return {
        "flash_bytes": indices + codebooks + params,
        "index_bytes": indices,
        "codebook_bytes": codebooks,
        "param_bytes": params,
    }


def _per_layer(graph: Graph, bits: int | Mapping[str, int]) -> dict[str, int]:
    names = [o.name for o in graph.weight_ops]
    if isinstance(bits, int):
        return dict.fromkeys(names, bits)
    missing = sorted(set(names) - set(bits))
    if missing:
        raise ValueError(f"no k-means bits for layer {missing[0]}")
    return {n: int(bits[n]) for n in names}
