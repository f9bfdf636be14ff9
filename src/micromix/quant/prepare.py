"""Turn a float model into a fake-quant (QAT) model for a Policy, calibrate it, read its QuantParams.

`prepare` rewrites the torch.fx GraphModule of a deep copy of the model, guided by the micromix
Graph: every conv/linear becomes a QConv2d/QLinear (per-channel weight fake-quant), every
activation tensor gets one ActQuant right where its value is produced (a fused ReLU/ReLU6 is
replaced by the PACT clamp), and the input image is quantized at 8 bits with scale 1/255.
BatchNorm stays a module: in eval mode it is a per-channel affine map that `quant_params`
folds into the per-channel weight scale and bias.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.fx
import torch.nn as nn

from ..data import ImageSet, Sampling
from ..data import batches as iter_batches
from ..graph import Graph, trace
from ..numerics.params import LayerQuant, QuantParams, TensorQuant
from ..ops import of
from ..ops.common import module_name
from ..policy import Policy
from .fakequant import (
    DEFAULT_WEIGHT_RANGE,
    ActQuant,
    WeightQuant,
    fake_quant,
    quantize_weight_module,
)

INPUT_SCALE = 1.0 / 255.0
QUANT_BITS = tuple(range(2, 9))  # what the quantizers can do; the search emits 2, 4, 8


class QATModel(nn.Module):
    """A fake-quant model: `net` is the rewritten GraphModule; `graph`/`policy` describe it.
    `weight_quant` is "mse" (fixed clips) or "lsq" (learned step sizes), as `prepare` built it."""

    def __init__(
        self,
        net: torch.fx.GraphModule,
        graph: Graph,
        policy: Policy,
        act_targets: dict[str, str],
        weight_range: str,
        model_config: dict | None,
        weight_quant: str = "mse",
    ) -> None:
        super().__init__()
        self.net = net
        self.graph = graph
        self.policy = policy
        self.act_targets = act_targets  # tensor name -> module path of its ActQuant in `net`
        self.weight_range = weight_range
        self.weight_quant = weight_quant
        self.model_config = model_config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def act_quant(self, tensor: str) -> ActQuant:
        return self.net.get_submodule(self.act_targets[tensor])

    def weight_module(self, op_name: str) -> nn.Module:
        return self.net.get_submodule(self.graph.op(op_name).weight.module)


def rewrite(
    model: nn.Module,
    graph: Graph,
    act_bits: Callable[[str], int | None],
    weight_module: Callable[[str, nn.Module], nn.Module],
) -> tuple[torch.fx.GraphModule, dict[str, str]]:
    """fx-rewrite a deep copy of `model`: swap weight modules, insert activation quantizers.

    `act_bits(tensor)` gives the bits of an activation tensor (None: leave it float);
    `weight_module(op_name, module)` returns the replacement of each conv/linear module.
    Shared by `prepare` and the k-means baseline.
    """
    gm = torch.fx.symbolic_trace(copy.deepcopy(model))
    nodes = {n.name: n for n in gm.graph.nodes}
    for name in graph.dropped:  # a trailing softmax: the QAT model returns the logits
        node = nodes[name]
        node.replace_all_uses_with(node.args[0] if node.args else node.kwargs["input"])
        gm.graph.erase_node(node)
    hooks = {o.name: h(gm, o, nodes) for o in graph.ops if (h := of(o).qat) is not None}
    for op in graph.weight_ops:
        path = op.weight.module
        gm.set_submodule(path, weight_module(op.name, gm.get_submodule(path)))
    holder = nn.Module()
    gm.add_module("act_quant", holder)
    targets: dict[str, str] = {}
    for name, t in graph.tensors.items():
        bits = act_bits(name)
        if bits is None:
            continue
        node = nodes.get(t.fx_node)
        if node is None:
            raise ValueError(f"fx node {t.fx_node} of tensor {name} not found; wrong graph?")
        op = None if t.producer is None else graph.op(t.producer)
        if _keeps_input_grid(graph, op, act_bits) and op.inputs[0] in targets:
            # A max pool that keeps its input's bits outputs codes of the input's grid: it
            # shares the input's quantizer (same scale), and the C needs no requantization.
            targets[name] = targets[op.inputs[0]]
            continue
        if name == graph.input:
            q = ActQuant(8, False, init=1.0, learn=False)  # scale 1.0 / 255 = 1/255
        else:
            act = op.act if op is not None else None
            q = ActQuant(bits, t.signed, float_act=act if not t.signed else None)
        mod = module_name(name)
        holder.add_module(mod, q)
        targets[name] = f"act_quant.{mod}"
        if op is not None and op.act is not None and not t.signed:
            # The ReLU is the last fused node: the PACT clamp [0, alpha] takes its place.
            with gm.graph.inserting_after(node):
                new = gm.graph.call_module(targets[name], (node.args[0],))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
        else:
            with gm.graph.inserting_after(node):
                new = gm.graph.call_module(targets[name], (node,))
            node.replace_all_uses_with(new, delete_user_cb=lambda user, new=new: user is not new)
    for op_name, hook in hooks.items():  # e.g. a table activation reads both quantizers
        op = graph.op(op_name)
        if hook is not None and op.inputs[0] in targets and op.output in targets:
            hook.bind(gm.get_submodule(targets[op.inputs[0]]), gm.get_submodule(targets[op.output]))
    gm.graph.lint()
    gm.recompile()
    return gm, targets


def _keeps_input_grid(graph: Graph, op, act_bits: Callable[[str], int | None]) -> bool:
    if op is None or not of(op).keeps_grid or op.act is not None:
        return False
    x = op.inputs[0]
    return (
        act_bits(x) is not None
        and act_bits(x) == act_bits(op.output)
        and graph.tensors[x].signed == graph.tensors[op.output].signed
    )


def prepare(
    model: nn.Module,
    policy: Policy,
    graph: Graph | None = None,
    *,
    weight_range: str = DEFAULT_WEIGHT_RANGE,
    learn_weight_clip: bool = False,
    weight_quant: str = "mse",
) -> QATModel:
    """A fake-quant copy of `model` under `policy` (the float model is never changed).

    Works for any model `micromix.graph.trace` accepts; pass `graph` to skip tracing.
    Activation clips start at 6; call `calibrate` to set them from data. `weight_quant`: "mse"
    (fixed MSE clips) or "lsq" (learned step sizes from the same start).
    """
    if graph is None:
        graph = trace(model)
    policy.validate(graph, allowed=QUANT_BITS)
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    gm, targets = rewrite(
        model,
        graph,
        act_bits=lambda t: policy.activations[t],
        weight_module=lambda op, m: quantize_weight_module(
            m,
            policy.weights[op],
            weight_range,
            learn_weight_clip,
            weight_quant,
            graph.op(op).per_tensor,
        ),  # fmt: skip
    )
    qmodel = QATModel(
        gm,
        graph,
        policy,
        targets,
        weight_range,
        getattr(model, "micromix_config", None),
        weight_quant,
    )
    qmodel.train(model.training)
    return qmodel.to(device)


# ---- calibration ---------------------------------------------------------------------------


def act_quantizers(qmodel: nn.Module) -> Iterator[ActQuant]:
    return (m for m in qmodel.modules() if isinstance(m, ActQuant) and m.alpha.requires_grad)


@contextmanager
def observing(qmodel: nn.Module) -> Iterator[list[ActQuant]]:
    """Activation quantizers pass float values through and record samples while inside."""
    qs = list(act_quantizers(qmodel))
    for q in qs:
        q.observer = []
    try:
        yield qs
    finally:
        for q in qs:
            q.observer = None


@torch.no_grad()
def calibrate(
    qmodel: nn.Module,
    ds: ImageSet,
    *,
    batches: int = 4,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> None:
    """Prepare a fake-quant model for training from a few batches of `ds`.

    First the BatchNorm statistics are re-estimated for the quantized weights (low-bit weights
    shift the pre-activations, and stale statistics would make the first epochs and any short
    fine-tune score badly in eval mode); then every activation clip is set to the value that
    minimises its quantization error (MSE) on a sample of the float activations.
    """
    was = qmodel.training
    xs = calibration_batches(ds, batches, batch_size, device)
    with observing(qmodel) as qs:
        reestimate_bn(qmodel, xs)
        qmodel.eval()
        for q in qs:
            q.observer.clear()
        for x in xs:
            qmodel(x)
        for q in qs:
            if q.observer:
                q.set_alpha(best_clip(torch.cat(q.observer), q.qmin, q.qmax))
    qmodel.train(was)


@torch.no_grad()
def reestimate_bn(model: nn.Module, xs: list[torch.Tensor]) -> None:
    """Replace every BatchNorm's running statistics by their plain average over batches `xs`."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
    if not bns or not xs:
        return
    was = model.training
    model.eval()
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
        bn.train()
    for x in xs:
        model(x)
    for bn, m in zip(bns, saved):
        bn.momentum = m
    model.train(was)


def calibration_batches(
    ds: ImageSet, batches: int, batch_size: int, device: torch.device | str = "cpu"
) -> list[torch.Tensor]:
    """The first `batches` batches of a fixed shuffle: the same images on every rank and call."""
    it = iter_batches(ds, batch_size, Sampling(shuffle=True, seed=12345), device=device)
    return [x for _, (x, _y) in zip(range(batches), it)]


def best_clip(values: torch.Tensor, qmin: int, qmax: int, steps: int = 60) -> float:
    """The clip (a fraction 1/steps .. 1 of max|v|) whose quantization grid fits `values` best."""
    v = values if qmin < 0 else values.clamp_min(0)
    top = v.abs().max()
    if top <= 0:
        return 1.0
    if v.numel() > _MSE_SAMPLE:  # plenty for a 1-D search; keep the maximum in the sample
        idx = torch.randperm(v.numel(), generator=torch.Generator().manual_seed(0))
        v = torch.cat([v[idx[:_MSE_SAMPLE]], v.abs().max().view(1)])
    cand = torch.linspace(1.0 / steps, 1.0, steps, dtype=v.dtype) * top
    scale = (cand / qmax)[:, None]
    err = (fake_quant(v[None, :], scale, qmin, qmax) - v[None, :]).pow_(2).mean(1)
    return float(cand[int(err.argmin())])


_MSE_SAMPLE = 1 << 15


# ---- QuantParams ---------------------------------------------------------------------------


@torch.no_grad()
def quant_params(qmodel: QATModel) -> QuantParams:
    """The eval-mode numbers of `qmodel`: scales, integer weights, BN folded into scale and bias."""
    g = qmodel.graph
    tensors: dict[str, TensorQuant] = {}
    for name in g.tensors:
        if name == g.input:
            tensors[name] = TensorQuant(name, 8, False, INPUT_SCALE)
            continue
        q = qmodel.act_quant(name)
        tensors[name] = TensorQuant(name, q.bits, q.signed, float(q.scale()))
    layers: dict[str, LayerQuant] = {}
    for op in g.weight_ops:
        m = qmodel.weight_module(op.name)
        wq: WeightQuant = m.wq
        w_int, scale = wq.int_weight(m.weight)
        w_scale = scale.double().cpu().numpy()
        bias = m.bias.double().cpu().numpy() if m.bias is not None else np.zeros(len(w_scale))
        if op.bn is not None:
            factor, shift = bn_affine(qmodel.net.get_submodule(op.bn))
            w_scale, bias = w_scale * factor, bias * factor + shift
        layers[op.name] = LayerQuant(
            op.name, wq.bits, w_int.cpu().numpy().astype(np.int64), w_scale, bias
        )
    return QuantParams(tensors, layers)


def repair_dead_channels(qmodel: QATModel) -> dict[str, list[int]]:
    """Give every channel that would be deployed as all-zero codes while its float weights are
    not (a grid that grew past all of its weights, or a step that underflowed) its starting
    MSE grid back; returns {layer: channels} of those repaired.

    Such a channel silently deploys as zeros: fake-quant, numpy and C all agree on it, so no
    later check notices. Repairing rather than refusing keeps a finished QAT run; the accuracy
    the caller measures afterwards is that of the repaired model.
    """
    fixed: dict[str, list[int]] = {}
    for op in qmodel.graph.weight_ops:
        m = qmodel.weight_module(op.name)
        rows = m.wq.repair(m.weight)
        if rows:
            fixed[op.name] = rows
    return fixed


def bn_affine(bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """(factor, shift) with BN_eval(y) = factor * y + shift, in float64."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"BatchNorm {bn} has no running statistics to fold")
    mean = bn.running_mean.double().cpu().numpy()
    inv = 1.0 / np.sqrt(bn.running_var.double().cpu().numpy() + bn.eps)
    gamma = bn.weight.double().cpu().numpy() if bn.weight is not None else np.ones_like(mean)
    beta = bn.bias.double().cpu().numpy() if bn.bias is not None else np.zeros_like(mean)
    factor = gamma * inv
    return factor, beta - mean * factor
