"""QuantParams + Graph + Policy -> IntegerModel (the integer-only network the C export stores).

Each op is converted by its op kind (`ops.of(op).convert`), whose module states its integer
semantics (real values as in micromix.numerics.params): conv / linear in micromix.ops.conv,
add, pooling, concat, tables and multiply in theirs. The clamp range is always the output
tensor's integer range, which is where ReLU / ReLU6 live. What is converted here is checked
against the memory model byte for byte: it is the contract the search and the export share.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MicromixError
from ..ir import Graph
from ..numerics.params import LayerQuant, QuantParams, TensorQuant
from ..ops import conv, of
from ..policy import ALLOWED_BITS, Policy
from ..schedule import scheduled_report
from .model import IntegerModel, run_op


def convert(
    qparams: QuantParams | Any,
    graph: Graph | None = None,
    policy: Policy | None = None,
    *,
    schedule: str = "layer",
    max_recompute: float = 0.10,
) -> IntegerModel:
    """Build the IntegerModel. `convert(qmodel)` takes a module from `micromix.quant.prepare`
    (it carries .graph and .policy); otherwise pass QuantParams, the Graph and the Policy.
    `schedule` (micromix.schedule: layer, inplace, patch, auto) places its tensors and runs
    it: the report's arena, the numpy reference's order and the exported C follow it."""
    if not isinstance(qparams, QuantParams):
        from .. import quant

        qmodel = qparams
        if not hasattr(qmodel, "graph") or not hasattr(qmodel, "policy"):
            raise MicromixError(
                "convert takes QuantParams with a Graph and a Policy, or a model prepared by micromix.quant.prepare."
            )
        graph, policy = qmodel.graph, qmodel.policy
        qparams = quant.quant_params(qmodel)
    if graph is None or policy is None:
        raise MicromixError("convert(QuantParams, graph, policy) needs the Graph and the Policy.")
    policy.validate(graph, allowed=ALLOWED_BITS)
    _check_tensors(qparams, graph, policy)
    iops = tuple(of(o).convert(o, qparams) for o in graph.ops)
    report = scheduled_report(graph, policy, schedule, max_recompute)
    for iop, layer in zip(iops, report.layers):
        # The memory model is the contract: what we store must be exactly what it counts.
        stored = sum(a.nbytes for a in iop.arrays.values())
        stored_w = 0 if iop.weights is None else iop.weights.nbytes
        if (stored, stored_w) != (layer.param_bytes, layer.weight_bytes):
            raise ValueError(
                f"{iop.name} stores {stored + stored_w} B, not the memory model's bytes"
            )
    return IntegerModel(graph, policy, report, iops, dict(qparams.tensors))


def _check_tensors(qp: QuantParams, graph: Graph, policy: Policy) -> None:
    for name in graph.tensors:
        t = qp.tensors.get(name)
        if t is None:
            raise MicromixError(f"the quantization parameters have no scale for tensor '{name}'.")
        if t.bits != policy.activations[name]:
            raise MicromixError(
                f"tensor '{name}' is quantized to {t.bits} bits but the policy says {policy.activations[name]}."
            )
        if not (np.isfinite(t.scale) and t.scale > 0):
            raise MicromixError(f"tensor '{name}' has scale {t.scale}; scales must be positive.")
    t = qp.tensors[graph.input]
    if t.signed or abs(t.scale * 255.0 - 1.0) > 1e-6:
        raise MicromixError(
            "the network input must be unsigned 8-bit with scale 1/255 (raw pixels), "
            f"got {'signed' if t.signed else 'unsigned'} scale {t.scale:g}."
        )
    for o in graph.weight_ops:
        lq = qp.layers.get(o.name)
        if lq is None:
            raise MicromixError(
                f"the quantization parameters have no weights for layer '{o.name}'."
            )
        if lq.bits != policy.weights[o.name]:
            raise MicromixError(
                f"layer '{o.name}' has {lq.bits}-bit weights but the policy says {policy.weights[o.name]}."
            )


def random_qparams(
    graph: Graph, policy: Policy, *, seed: int = 0, probe: np.ndarray | None = None
) -> QuantParams:
    """Synthetic but well-scaled QuantParams for `graph` under `policy` (tests, benchmarks).

    Integer weights are uniform over their full range, weight scales random with about one
    channel in five negative (as BN can make them), and every activation scale is set from a
    probe batch (random images by default) so each tensor uses its integer range.
    """
    rng = np.random.default_rng(seed)
    c, h, w = graph.tensors[graph.input].shape
    if probe is None:
        probe = rng.integers(0, 256, (16, c, h, w), dtype=np.uint8)
    tensors = {graph.input: TensorQuant(graph.input, 8, False, 1.0 / 255.0)}
    layers: dict[str, LayerQuant] = {}
    vals = {graph.input: probe.astype(np.int64).transpose(0, 2, 3, 1)}
    for op in graph.ops:
        bits, signed = policy.activations[op.output], graph.tensors[op.output].signed
        ins = [tensors[t] for t in op.inputs]
        xs = [vals[t] for t in op.inputs]
        if op.weight is not None:
            wb, cout = policy.weights[op.name], op.weight.out_channels
            sign = np.where(rng.random(cout) < 0.2, -1.0, 1.0)
            w_scale = (
                sign * rng.uniform(0.5, 1.5, cout) / 2 ** (wb - 1) / np.sqrt(op.weight.row_elems)
            )
            # one scale (per_tensor): no sign flips a row, so rows centred on 0 (narrow range)
            low = 1 - 2 ** (wb - 1) if op.per_tensor else -(2 ** (wb - 1))
            w_int = rng.integers(low, 2 ** (wb - 1), op.weight.shape)
            if op.per_tensor:
                w_scale = np.full(cout, abs(w_scale[0]))
            layers[op.name] = LayerQuant(op.name, wb, w_int, w_scale, np.zeros(cout))
            tmp = TensorQuant(op.output, bits, signed, 1.0)
            iop = conv.convert(op, QuantParams({**tensors, op.output: tmp}, layers))
            real = conv.conv_accumulate(iop, xs[0]) * (w_scale * ins[0].scale)
            bias = 0.5 * rng.normal(size=cout) * (real.reshape(-1, cout).std(axis=0) + 1e-3)
            layers[op.name] = LayerQuant(op.name, wb, w_int, w_scale, bias)
            real = real + bias
        else:
            real = of(op).real(op, ins, xs)
        top = np.percentile(np.abs(real) if signed else np.maximum(real, 0), 99.5)
        qmax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
        tensors[op.output] = TensorQuant(op.output, bits, signed, max(float(top), 1e-6) / qmax)
        iop = of(op).convert(op, QuantParams(tensors, layers))
        vals[op.output] = run_op(iop, *xs)
    return QuantParams(tensors, layers)
