"""QuantParams + Graph + Policy -> IntegerModel (the integer-only network the C export stores).

Per op (real-valued semantics in micromix.quant.params):
- conv / linear, channel c: acc = sum(w_int * q_in) * 2^k + B_c with B_c = round_half_up(
  bias_c / (w_scale_c * s_in) * 2^k); out = clamp(round_half_up(M_c * 2^-k * acc)) with
  M_c = w_scale_c * s_in / s_out as an int32 mantissa and a shift (M_c < 0 is fine: BN can flip
  a channel's sign). k (per layer, `IntOp.bias_shift`) is the largest for which acc provably
  fits int32; k = 0 is the classic bias in accumulator units, whose rounding costs up to M_c / 2
  output steps, a lot where BN makes M_c large.
- add: out = clamp((q_a * m_a + q_b * m_b + 2^(n-1)) >> n), one shift n shared by both inputs.
- avgpool, maxpool, cat, mul, lut: see micromix.integer.ops.
The clamp range is the output tensor's integer range, which is where ReLU / ReLU6 live.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MicromixError, OverflowError32
from ..graph import Graph, Op
from ..memory import memory_report, param_arrays
from ..policy import ALLOWED_BITS, Policy
from ..quant.params import LayerQuant, QuantParams, TensorQuant, round_half_up
from . import ops
from .arith import (
    INT32_MAX,
    MAX_SHIFT,
    accumulator_bound,
    pack_bits,
    quantize_multiplier,
    quantize_multiplier_pair,
)
from .model import IntegerModel, IntOp

_NP = {"int32": np.int32, "int8": np.int8, "uint8": np.uint8}
MAX_BIAS_SHIFT = 24  # fractional bits of a conv bias (2^-24 accumulator steps is plenty)


def convert(
    qparams: QuantParams | Any, graph: Graph | None = None, policy: Policy | None = None
) -> IntegerModel:
    """Build the IntegerModel. `convert(qmodel)` takes a module from `micromix.quant.prepare`
    (it carries .graph and .policy); otherwise pass QuantParams, the Graph and the Policy."""
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
    ops = tuple(_convert_op(o, qparams) for o in graph.ops)
    report = memory_report(graph, policy)
    for iop, layer in zip(ops, report.layers):
        # The memory model is the contract: what we store must be exactly what it counts.
        stored = sum(a.nbytes for a in iop.arrays.values())
        stored_w = 0 if iop.weights is None else iop.weights.nbytes
        if (stored, stored_w) != (layer.param_bytes, layer.weight_bytes):
            raise ValueError(
                f"{iop.name} stores {stored + stored_w} B, not the memory model's bytes"
            )
    return IntegerModel(graph, policy, report, ops, dict(qparams.tensors))


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


def _arrays(
    op: Op, in_bits: int | None = None, **values: np.ndarray | list[int]
) -> dict[str, np.ndarray]:
    """The op's constants, named, typed and sized exactly as memory.param_arrays says."""
    out = {}
    for suffix, ctype, count in param_arrays(op, in_bits):
        a = np.asarray(values[suffix], dtype=np.int64)
        if a.shape != (count,):
            raise ValueError(f"parameter {suffix} of {op.name} has shape {a.shape}, not ({count},)")
        info = np.iinfo(_NP[ctype])
        if a.min() < info.min or a.max() > info.max:
            raise OverflowError32(f"layer {op.name}: {suffix} does not fit {ctype}.")
        out[suffix] = a.astype(_NP[ctype])
    return out


def _base(op: Op, out: TensorQuant, ins: list[TensorQuant], arrays: dict) -> dict:
    return dict(
        op=op,
        in_bits=tuple(t.bits for t in ins),
        in_signed=tuple(t.signed for t in ins),
        out_bits=out.bits,
        out_signed=out.signed,
        qmin=out.qmin,
        qmax=out.qmax,
        arrays=arrays,
    )


def _convert_op(op: Op, qp: QuantParams) -> IntOp:
    out = qp.tensors[op.output]
    ins = [qp.tensors[t] for t in op.inputs]
    if op.kind in ("conv", "linear"):
        return _weighted(op, qp, out, ins[0])
    if op.kind == "add":
        ma, mb, n = quantize_multiplier_pair(ins[0].scale / out.scale, ins[1].scale / out.scale)
        return IntOp(**_base(op, out, ins, _arrays(op, mult=[ma, mb], shift=[n])))
    if op.kind in ops.KERNELS:
        return ops.convert_op(op, qp, _base, _arrays)
    raise MicromixError(f"op '{op.name}' of kind {op.kind} cannot be converted.")


def _weighted(op: Op, qp: QuantParams, out: TensorQuant, inp: TensorQuant) -> IntOp:
    lq = qp.layers[op.name]
    if op.weight is None:
        raise ValueError(f"op {op.name} has no weight")
    w = np.asarray(lq.w_int, dtype=np.int64)
    if w.shape != op.weight.shape:
        raise MicromixError(
            f"layer '{op.name}' has weights of shape {w.shape}, expected {op.weight.shape}."
        )
    lo, hi = -(2 ** (lq.bits - 1)), 2 ** (lq.bits - 1) - 1
    if w.min() < lo or w.max() > hi:
        raise MicromixError(
            f"layer '{op.name}' has weights outside [{lo}, {hi}] for {lq.bits} bits."
        )
    cout = w.shape[0]
    if op.kind == "conv":
        rows = w.transpose(0, 2, 3, 1)  # (C_out, kh, kw, C_in/g): matches the HWC input
        geom = dict(kernel=op.kernel, stride=op.stride, padding=op.padding, groups=op.groups)
    else:
        c, h, wd = op.in_shape
        # PyTorch flattens (C, H, W); the arena holds HWC, so the columns are permuted to
        # (H, W, C) and the layer runs as an HxW convolution over the whole input.
        rows = w.reshape(cout, c, h, wd).transpose(0, 2, 3, 1)
        geom = dict(kernel=(h, wd))
    w_scale = np.asarray(lq.w_scale, dtype=np.float64).reshape(cout)
    bias = np.asarray(lq.bias, dtype=np.float64).reshape(cout)
    rows = rows.reshape(cout, -1).copy()
    s_in, s_out = inp.scale, out.scale
    bound = accumulator_bound(np.abs(rows).sum(axis=1), inp.bits, inp.signed)
    # A channel whose output is the same code for every input is a constant: a zero scale, or
    # a bias so far past the clamp that no dot product brings the output back inside it (one
    # step of margin). It outputs that code: zero weights, multiplier 1, bias = output. (Left
    # as a dot product, its bias in accumulator steps can overflow int32 for nothing.)
    reach = np.abs(w_scale) * s_in * bound
    low, high = (bias - reach) / s_out, (bias + reach) / s_out
    zero = (w_scale == 0.0) | (low >= out.qmax + 0.5) | (high < out.qmin - 0.5)
    rows[zero] = 0
    bound = np.where(zero, 0.0, bound)
    const = np.clip(round_half_up(bias / s_out), out.qmin, out.qmax)
    b_acc = np.where(zero, 0.0, bias / np.where(zero, 1.0, w_scale * s_in))  # accumulator units
    mq = [
        (2**30, 30) if z else quantize_multiplier(m) for z, m in zip(zero, w_scale * s_in / s_out)
    ]
    mult = np.array([m for m, _ in mq], dtype=np.int64)
    shift = np.array([n for _, n in mq], dtype=np.int64)

    def biases(k: int) -> np.ndarray:
        return np.where(zero, const * 2.0**k, round_half_up(b_acc * 2.0**k))

    def fits(k: int) -> bool:
        # The C code forms dot * 2^k + B in int32: the worst case must fit, for every input.
        return bool(np.all(bound * 2.0**k + np.abs(biases(k)) <= INT32_MAX)) and bool(
            np.all(shift + k <= MAX_SHIFT)
        )

    if not fits(0):
        ch = int(np.argmax(bound + np.abs(biases(0))))
        # The search keeps the weights' part within int32 (budget.weight_bits_caps); what is
        # left is a bias that is large against the channel's trained scale.
        why = (
            "lower the weight bits"
            if bound[ch] > INT32_MAX
            else f"its bias {bias[ch]:.3g} is {abs(b_acc[ch]):.3g} accumulator steps of scale "
            f"{w_scale[ch] * s_in:.3g}; retrain the layer or rescale it"
        )
        raise OverflowError32(
            f"layer {op.name}, channel {ch}: the int32 accumulator could overflow (worst case "
            f"{bound[ch] + abs(biases(0)[ch]):.3g}); {why}."
        )
    # The bias keeps as many fractional bits as int32 allows (up to MAX_BIAS_SHIFT): rounding
    # it to whole accumulator steps would cost up to M/2 output steps, and BN can make M > 1.
    k = 0
    while k < MAX_BIAS_SHIFT and fits(k + 1):
        k += 1
    packed = pack_bits(rows, lq.bits, signed=True).reshape(-1)
    arrays = _arrays(op, bias=biases(k).astype(np.int64), mult=mult, shift=shift + k)
    return IntOp(
        **_base(op, out, [inp], arrays), w_bits=lq.bits, weights=packed, bias_shift=k, **geom
    )


def random_qparams(
    graph: Graph, policy: Policy, *, seed: int = 0, probe: np.ndarray | None = None
) -> QuantParams:
    """Synthetic but well-scaled QuantParams for `graph` under `policy` (tests, benchmarks).

    Integer weights are uniform over their full range, weight scales random with about one
    channel in five negative (as BN can make them), and every activation scale is set from a
    probe batch (random images by default) so each tensor uses its integer range.
    """
    from .model import _KERNELS, conv_accumulate

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
            w_int = rng.integers(-(2 ** (wb - 1)), 2 ** (wb - 1), op.weight.shape)
            layers[op.name] = LayerQuant(op.name, wb, w_int, w_scale, np.zeros(cout))
            tmp = TensorQuant(op.output, bits, signed, 1.0)
            iop = _weighted(op, QuantParams({**tensors, op.output: tmp}, layers), tmp, ins[0])
            real = conv_accumulate(iop, xs[0]) * (w_scale * ins[0].scale)
            bias = 0.5 * rng.normal(size=cout) * (real.reshape(-1, cout).std(axis=0) + 1e-3)
            layers[op.name] = LayerQuant(op.name, wb, w_int, w_scale, bias)
            real = real + bias
        elif op.kind == "add":
            real = xs[0] * ins[0].scale + xs[1] * ins[1].scale
        else:
            real = ops.real_output(op, ins, xs)
        top = np.percentile(np.abs(real) if signed else np.maximum(real, 0), 99.5)
        qmax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
        tensors[op.output] = TensorQuant(op.output, bits, signed, max(float(top), 1e-6) / qmax)
        iop = _convert_op(op, QuantParams(tensors, layers))
        vals[op.output] = _KERNELS[op.kind](iop, *xs)
    return QuantParams(tensors, layers)
