"""IntegerModel: conversion, the numpy reference against an independent torch oracle, overflow
handling, and agreement with the fake-quant (QAT) model it comes from."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import require_fashion
from torch import nn

from micromix.errors import MicromixError, OverflowError32
from micromix.graph import trace
from micromix.integer import convert
from micromix.integer.convert import random_qparams
from micromix.memory import param_arrays
from micromix.models import conv_bn
from micromix.numerics.arith import requantize
from micromix.numerics.params import LayerQuant, QuantParams
from micromix.policy import Policy

FLOAT_CKPT = Path(__file__).resolve().parents[1] / "runs" / "float-mbv1-025" / "model.pt"


class TinyNet(nn.Module):
    """Every op kind and geometry the export supports, on a 16x16 grey image: stride-2 stem,
    depthwise, pointwise, a signed residual add, a grouped 5x5 conv with a bias and no BN,
    a 2x2 average pool and a linear layer on a flattened 16x2x2 map."""

    def __init__(self, relu_after_add: bool = False) -> None:
        super().__init__()
        self.stem = conv_bn(1, 8, 3, 2)
        self.dw = conv_bn(8, 8, 3, 1, groups=8)
        self.pw = conv_bn(8, 16, 1, act=None)
        self.skip = conv_bn(8, 16, 1, act=None)
        self.grouped = nn.Conv2d(16, 24, 5, 2, 2, groups=2)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(24 * 2 * 2, 10)
        self.relu_after_add = relu_after_add

    def forward(self, x):
        x = self.dw(self.stem(x))
        y = self.pw(x) + self.skip(x)
        if self.relu_after_add:
            y = F.relu(y)
        y = self.pool(F.relu(self.grouped(y)))
        return self.fc(torch.flatten(y, 1))


class OddNet(nn.Module):
    """Odd channel counts (sub-byte pixels padded to bytes), a conv whose rows exceed one
    unpacked patch (chunked, with taps that start mid-byte at 2 and 4 bits), depthwise with
    leftover channels, a pointwise layer on 13 outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(1, 41, 3, 2)
        self.big = conv_bn(41, 18, 3, 2)
        self.dw = conv_bn(18, 18, 3, 1, groups=18)
        self.pw = conv_bn(18, 13, 1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(13 * 2 * 2, 10)

    def forward(self, x):
        y = self.pool(self.pw(self.dw(self.big(self.stem(x)))))
        return self.fc(torch.flatten(y, 1))


class ComboNet(nn.Module):
    """Four chains of 27 layers on 16 channels at 4x4: depthwise 3x3, pointwise, full 3x3 and
    residual adds (y = pw(x) + x, signed). `combo_policy` gives each chain every (input bits,
    weight bits, output bits) triple in {2, 4, 8}^3 (for the adds: input, input, output)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn(1, 16, 3, 4)
        self.dw = nn.ModuleList(conv_bn(16, 16, 3, groups=16) for _ in range(27))
        self.pw = nn.ModuleList(conv_bn(16, 16, 1) for _ in range(27))
        self.full = nn.ModuleList(conv_bn(16, 16, 3) for _ in range(27))
        self.res = nn.ModuleList(conv_bn(16, 16, 1, act=None) for _ in range(27))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        for m in [*self.dw, *self.pw, *self.full]:
            x = m(x)
        for m in self.res:
            x = m(x) + x
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def combo_policy(graph) -> Policy:
    """Activation bits follow a de Bruijn sequence of {2, 4, 8} (every ordered pair once per 9
    layers) and weight bits change every 9 layers: 27 layers, all 27 triples."""
    debruijn, wbits = (2, 2, 4, 2, 8, 4, 4, 8, 8), (2, 4, 8)
    p = Policy.uniform(graph, 8)
    acts, weights = dict(p.activations), dict(p.weights)
    ops = [o for o in graph.ops if o.name != "stem.0" and o.kind == "conv"]
    for chain in range(3):  # dw, pw, full: triple (in, w, out) per layer
        for i, o in enumerate(ops[27 * chain : 27 * chain + 27]):
            acts[o.output] = debruijn[(i + 1) % 9]
            weights[o.name] = wbits[i // 9]
    acts["stem.0"] = debruijn[0]
    adds = [o for o in graph.ops if o.kind == "add"]
    for i, o in enumerate(adds):  # triple (x, pw(x), x + pw(x)) per block
        acts[o.output] = debruijn[(i + 1) % 9]
        acts[o.inputs[0]] = wbits[i // 9]  # the pw branch
    return Policy(weights, acts)


def tiny(relu_after_add: bool = False, seed: int = 0, odd: bool = False, combo: bool = False):
    torch.manual_seed(seed)
    model = (ComboNet() if combo else OddNet() if odd else TinyNet(relu_after_add)).eval()
    for m in model.modules():  # non-trivial BN statistics, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.2, 3.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model, trace(model, (1, 1, 16, 16))


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 16, 16), dtype=np.uint8)


def mixed_policy(graph, seed: int = 0, choices=(2, 4, 8)) -> Policy:
    rng = np.random.default_rng(seed)
    p = Policy.uniform(graph, 8)
    fixed = (graph.input, graph.output)
    return p.replace(
        {k: int(rng.choice(choices)) for k in p.weights},
        {k: int(rng.choice(choices)) for k in p.activations if k not in fixed},
    )


def policies(graph) -> dict[str, Policy]:
    return {
        "8/8": Policy.uniform(graph, 8),
        "4/4": Policy.uniform(graph, 4),
        "2/2": Policy.uniform(graph, 2),
        "mixed": mixed_policy(graph),
    }


# ---- the reference interpreter against a torch oracle --------------------------------------


def oracle_tensors(imodel, qp: QuantParams, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor from PyTorch layouts and ops (NCHW, original weight order, F.conv2d in
    float64, exact for these integers): independent of the reference's HWC im2col, packing
    and column permutation."""
    vals = {imodel.graph.input: torch.tensor(x, dtype=torch.float64)}
    for iop in imodel.ops:
        op, a = iop.op, iop.arrays
        xs = [vals[t] for t in op.inputs]
        if op.kind in ("conv", "linear"):
            w = torch.tensor(qp.layers[op.name].w_int, dtype=torch.float64)
            # A channel the conversion made a constant (past its clamp for every input, or
            # a zero scale) has zero weights there, and the bias is its output.
            const = np.all(iop.weight_matrix().reshape(len(w), -1) == 0, axis=1)
            w[torch.from_numpy(const)] = 0
            if op.kind == "conv":
                acc = F.conv2d(xs[0], w, None, op.stride, op.padding, 1, op.groups)
            else:
                acc = F.linear(xs[0].flatten(1), w)[:, :, None, None]
            acc = acc.numpy().astype(np.int64) * 2**iop.bias_shift + a["bias"][:, None, None]
            y = requantize(acc, a["mult"][:, None, None], a["shift"][:, None, None])
        elif op.kind == "add":
            s = int(a["shift"][0])
            acc = xs[0].numpy().astype(np.int64) * int(a["mult"][0])
            acc = acc + xs[1].numpy().astype(np.int64) * int(a["mult"][1])
            y = requantize(acc, 1, s)
        else:
            k = op.kernel[0] * op.kernel[1]
            acc = F.avg_pool2d(xs[0], op.kernel).numpy() * k
            y = requantize(np.rint(acc).astype(np.int64), a["mult"][0], a["shift"][0])
        vals[op.output] = torch.tensor(np.clip(y, iop.qmin, iop.qmax), dtype=torch.float64)
    return {k: v.numpy().astype(np.int64) for k, v in vals.items()}


@pytest.mark.parametrize(
    ("net", "name"),
    [(n, p) for n in ("tiny", "tiny-relu", "odd") for p in ("8/8", "4/4", "2/2", "mixed")]
    + [("combo", "combo")],
)
def test_reference_matches_torch_oracle(name: str, net: str) -> None:
    relu_after_add = net == "tiny-relu"
    model, g = tiny(relu_after_add, odd=net == "odd", combo=net == "combo")
    pol = combo_policy(g) if net == "combo" else policies(g)[name]
    qp = random_qparams(g, pol, seed=3)
    im = convert(qp, g, pol)
    x = images(24, seed=1)
    got = im.run_tensors(x)
    want = oracle_tensors(im, qp, x)
    for t in g.tensors:
        np.testing.assert_array_equal(got[t].transpose(0, 3, 1, 2), want[t], err_msg=t)
    # The values are not degenerate: the test would catch a wrong kernel.
    if net == "combo":  # 140 random layers lose the image, but no tensor is constant
        assert sum(len(np.unique(v)) > 1 for v in got.values()) >= 0.95 * len(got)
    else:
        assert len(np.unique(got[g.output])) > 20
    if net.startswith("tiny"):
        assert g.tensors["add"].signed != relu_after_add


def test_semantics_follow_quant_params() -> None:
    """Each integer op, fed the same integer input, reproduces the real-valued QuantParams
    semantics (round half up of the float formula) up to rare off-by-one ties."""
    model, g = tiny()
    pol = policies(g)["8/8"]
    qp = random_qparams(g, pol, seed=5)
    im = convert(qp, g, pol)
    x = images(32, seed=2)
    vals = oracle_tensors(im, qp, x)
    for iop in im.ops:
        op = iop.op
        if op.kind not in ("conv", "linear"):
            continue
        lq, t_in, t_out = qp.layers[op.name], qp.tensors[op.inputs[0]], qp.tensors[op.output]
        xin = torch.tensor(vals[op.inputs[0]], dtype=torch.float64)
        w = torch.tensor(lq.w_int, dtype=torch.float64)
        if op.kind == "conv":
            acc = F.conv2d(xin, w, None, op.stride, op.padding, 1, op.groups).numpy()
        else:
            acc = F.linear(xin.flatten(1), w).numpy()[:, :, None, None]
        real = lq.w_scale[:, None, None] * t_in.scale * acc + lq.bias[:, None, None]
        want = np.clip(np.floor(real / t_out.scale + 0.5), t_out.qmin, t_out.qmax)
        diff = np.abs(vals[op.output] - want)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.002, op.name


def test_large_multipliers_keep_the_bias_precise() -> None:
    """BN with a tiny variance makes M = w_scale * s_in / s_out large; the bias must not be
    rounded to whole accumulator steps then (that shifted outputs by up to M / 2)."""
    model, g = tiny()
    pol = Policy.uniform(g, 8)
    qp = random_qparams(g, pol, seed=1)
    lq = qp.layers["dw.0"]
    ws = lq.w_scale * 400
    qp.layers["dw.0"] = replace(lq, w_scale=ws, bias=lq.bias + 0.37 * ws)
    im = convert(qp, g, pol)
    iop = next(o for o in im.ops if o.name == "dw.0")
    m = iop.arrays["mult"] * 2.0 ** -(iop.arrays["shift"].astype(float) - iop.bias_shift)
    assert np.abs(m).max() > 1 and iop.bias_shift >= 8
    s_in, s_out = qp.tensors["stem.0"].scale, qp.tensors["dw.0"].scale
    bias_real = iop.arrays["bias"] * 2.0**-iop.bias_shift * ws * s_in
    assert np.abs(bias_real - qp.layers["dw.0"].bias).max() / s_out < 1e-3


# ---- conversion ----------------------------------------------------------------------------


def test_arrays_are_exactly_what_the_memory_model_counts() -> None:
    model, g = tiny()
    pol = mixed_policy(g, seed=4)
    im = convert(random_qparams(g, pol), g, pol)
    total = 0
    for iop, layer in zip(im.ops, im.report.layers):
        spec = param_arrays(iop.op)
        assert [(s, str(iop.arrays[s].dtype), iop.arrays[s].size) for s, _, _ in spec] == spec
        assert (iop.weights.nbytes if iop.weights is not None else 0) == layer.weight_bytes
        total += sum(a.nbytes for a in iop.arrays.values()) + layer.weight_bytes
    assert total == im.report.flash_bytes


def test_run_shapes_dtypes_and_batching() -> None:
    model, g = tiny()
    pol = policies(g)["mixed"]
    im = convert(random_qparams(g, pol), g, pol)
    x = images(7)
    y = im.run(x)
    assert y.shape == (7, 10) and y.dtype == np.int8
    np.testing.assert_array_equal(y, im.run(x, batch_size=3))
    with pytest.raises(ValueError):
        im.run(x.astype(np.float32))


def test_zero_scale_channel_outputs_its_bias() -> None:
    model, g = tiny()
    pol = Policy.uniform(g, 8)
    qp = random_qparams(g, pol)
    lq = qp.layers["pw.0"]
    ws = lq.w_scale.copy()
    ws[3] = 0.0
    qp.layers["pw.0"] = replace(lq, w_scale=ws)
    im = convert(qp, g, pol)
    out = im.run_tensors(images(5))["pw.0"][..., 3]
    t = qp.tensors["pw.0"]
    assert np.all(out == np.clip(np.floor(lq.bias[3] / t.scale + 0.5), t.qmin, t.qmax))


def test_accumulator_overflow_is_an_error_naming_the_layer() -> None:
    """A bias of 3e9 accumulator steps whose output is still inside the clamp (the output
    scale is as large as the bias) cannot be formed in int32."""
    model, g = tiny()
    pol = Policy.uniform(g, 8)
    qp = random_qparams(g, pol)
    lq = qp.layers["grouped"]
    s_in = qp.tensors[g.op("grouped").inputs[0]].scale
    bias = lq.bias.copy()
    bias[0] = 3e9 * lq.w_scale[0] * s_in
    qp.layers["grouped"] = LayerQuant(lq.name, lq.bits, lq.w_int, lq.w_scale, bias)
    qp.tensors["grouped"] = replace(qp.tensors["grouped"], scale=abs(bias[0]))
    with pytest.raises(OverflowError32, match="grouped"):
        convert(qp, g, pol)


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_a_channel_past_its_clamp_for_every_input_is_a_constant(side: float) -> None:
    """A bias so large that no dot product brings the output back inside the clamp (here 1e9
    accumulator steps, which int32 cannot hold) is the saturated code for every input, exactly
    as the real-valued formula gives, instead of an overflow; the other channels are as before."""
    model, g = tiny()
    pol = Policy.uniform(g, 8)
    qp = random_qparams(g, pol)
    before = convert(qp, g, pol).run_tensors(images(6))["grouped"]
    lq = qp.layers["grouped"]
    s_in = qp.tensors[g.op("grouped").inputs[0]].scale
    bias = lq.bias.copy()
    bias[0] = side * 1e9 * abs(lq.w_scale[0]) * s_in
    qp.layers["grouped"] = LayerQuant(lq.name, lq.bits, lq.w_int, lq.w_scale, bias)
    got = convert(qp, g, pol).run_tensors(images(6))["grouped"]
    t = qp.tensors["grouped"]
    assert np.all(got[..., 0] == (t.qmax if side > 0 else t.qmin))
    np.testing.assert_array_equal(got[..., 1:], before[..., 1:])


def test_inconsistent_inputs_are_clear_errors() -> None:
    model, g = tiny()
    qp = random_qparams(g, Policy.uniform(g, 8))
    with pytest.raises(MicromixError, match="policy says 4"):
        convert(qp, g, Policy.uniform(g, 4))
    with pytest.raises(MicromixError):
        convert(qp)


# ---- agreement with the fake-quant model ---------------------------------------------------


def _agreement_setup():
    from micromix.train import load_model

    data = require_fashion(heldout=1000)
    if FLOAT_CKPT.exists():
        model = load_model(FLOAT_CKPT)[0].eval()
    else:  # a small net from the zoo, briefly trained
        from micromix.models import create
        from micromix.train import FitRun, fit, float_recipe

        model = create("mobilenet_v1", width=0.25, resolution=28, in_channels=1, num_classes=10)
        cfg = replace(float_recipe(1), max_batches=40)
        fit(model, data.train, cfg, FitRun(progress=False))
        model.eval()
    return model, trace(model), data


@pytest.fixture(scope="module")
def agreement_setup():
    return _agreement_setup()


@pytest.mark.parametrize(
    "name",
    [
        "mixed",
        pytest.param("8/8", marks=pytest.mark.slow),
        pytest.param("4/4", marks=pytest.mark.slow),
    ],
)
def test_integer_model_agrees_with_fake_quant(agreement_setup, name: str) -> None:
    """Top-1 of the integer model against the calibrated fake-quant model it was converted
    from, on 300 test images (results/integer_agreement.md has the full 10k figures)."""
    from micromix.quant import calibrate, prepare

    model, g, data = agreement_setup
    pol = {
        "8/8": Policy.uniform(g, 8),
        "4/4": Policy.uniform(g, 4),
        "mixed": mixed_policy(g, seed=7, choices=(4, 8)),
    }[name]
    torch.manual_seed(0)
    qmodel = prepare(model, pol, g)
    calibrate(qmodel, data.train, batches=1, batch_size=64)
    qmodel.eval()
    test = data.test.take(range(300))
    with torch.no_grad():
        fq = qmodel(test.images.float() / 255).argmax(1).numpy()
    yi = convert(qmodel).run(test.images.numpy()).astype(np.int64).argmax(1)
    labels = test.labels.numpy()
    assert (fq == yi).mean() >= 0.995
    assert abs((fq == labels).mean() - (yi == labels).mean()) <= 1 / 300 + 1e-9


# ---- per-tensor dense weight scales ----------------------------------------------------------


@pytest.mark.parametrize("weight_quant", ["mse", "lsq"])
def test_per_tensor_dense_integer_model_matches_fake_quant(weight_quant: str) -> None:
    """Linears with one weight scale each (WeightScales("tensor")) at 8, 4 and 2 bits: the
    integer model stores one multiplier and one shift per layer and computes the calibrated
    fake-quant model's output codes, up to rare one-code flips at rounding ties."""
    from micromix.data import ImageSet
    from micromix.graph import WeightScales
    from micromix.quant import calibrate, prepare

    torch.manual_seed(4)
    net = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 24),
                        nn.ReLU(), nn.Linear(24, 10)).eval()  # fmt: skip
    g = trace(net, (1, 3, 4, 4), WeightScales(dense="tensor"))
    assert all(o.per_tensor for o in g.weight_ops)
    pol = Policy.uniform(g, 8).replace(weights=dict(zip([o.name for o in g.weight_ops], (8, 4, 2))))
    imgs = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (64, 3, 4, 4), np.uint8))
    q = prepare(net, pol, g, weight_quant=weight_quant)
    calibrate(q, ImageSet(imgs, torch.zeros(64, dtype=torch.long), ("0",)), batches=1,
              batch_size=64)  # fmt: skip
    q.eval()
    im = convert(q)
    for iop in im.ops:
        assert (iop.arrays["mult"].size, iop.arrays["shift"].size) == (1, 1)
        assert iop.arrays["bias"].size == iop.op.out_shape[0]
    with torch.no_grad():
        fq = q(imgs.float() / 255).double().numpy() / im.tensors[g.output].scale
    got = im.run(imgs.numpy()).astype(np.int64)
    diff = np.abs(got - np.rint(fq))
    assert len(np.unique(got)) > 20 and diff.max() <= 1 and (diff > 0).mean() < 0.01
