"""Fake quantizers, prepare / calibrate, and the QuantParams contract (eval output == numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from micromix.data import ImageSet
from micromix.errors import CheckpointError, PolicyError
from micromix.graph import trace
from micromix.numerics.params import QuantParams, round_half_up
from micromix.policy import Policy
from micromix.quant import ActQuant, WeightQuant, calibrate, prepare, quant_params
from micromix.quant.finetune import load_qat, save_qat


class SkipNet(nn.Module):
    """Not a zoo model: a linear bottleneck (no ReLU) added to the skip, a signed sum and pool."""

    def __init__(self, c: int = 6, classes: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, stride=2, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(c)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.pw = nn.Conv2d(c, c, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = F.relu(self.bn0(self.stem(x)))
        y = self.bn2(self.pw(F.relu6(self.bn1(self.dw(x)))))
        z = x + y  # signed: the bottleneck has no ReLU
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(z, 1), 1))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics so that the BN fold is really exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g).abs() + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.3)
    return model.eval()


def image_set(n: int = 64, size: int = 8, classes: int = 4, seed: int = 0) -> ImageSet:
    """Learnable toy data that survives global pooling: the class is a texture
    (horizontal stripes, vertical stripes, checkerboard, flat), plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    r = torch.arange(size)
    patterns = [
        (r[:, None] % 2).expand(size, size),
        (r[None, :] % 2).expand(size, size),
        (r[:, None] + r[None, :]) % 2,
        torch.zeros(size, size, dtype=torch.long),
    ]
    img = torch.randint(0, 80, (n, 1, size, size), generator=g)
    img += 150 * torch.stack([patterns[c % 4] for c in labels.tolist()])[:, None]
    return ImageSet(img.clamp(0, 255).to(torch.uint8), labels, tuple(map(str, range(classes))))


# ---- quantizers ----------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("weight_range", ["narrow", "full"])
def test_weight_codes_per_channel(bits, weight_range):
    torch.manual_seed(bits)
    w = torch.randn(6, 3, 3, 3)
    wq = WeightQuant(bits, 6, weight_range)
    wq.init_mse(w)
    codes, scale = wq.int_weight(w)
    lo, hi = (
        (-(2 ** (bits - 1)) if weight_range == "full" else -(2 ** (bits - 1) - 1)),
        2 ** (bits - 1) - 1,
    )
    assert codes.min() >= lo and codes.max() <= hi
    with torch.no_grad():
        fq = wq(w)
    for c in range(6):
        assert len(torch.unique(fq[c])) <= 2**bits
    torch.testing.assert_close(fq, codes.float() * scale.view(-1, 1, 1, 1), rtol=0, atol=1e-7)
    # training-mode forward (autograd Function) computes the very same values
    assert torch.equal(wq(w.requires_grad_()).detach(), fq)


def test_two_bit_narrow_is_ternary():
    wq = WeightQuant(2, 4, "narrow")
    wq.init_mse(torch.randn(4, 10))
    codes, _ = wq.int_weight(torch.randn(4, 10) * 3)
    assert set(codes.unique().tolist()) <= {-1, 0, 1}


@settings(max_examples=30, deadline=None)
@given(
    bits=st.sampled_from([2, 4, 8]),
    rows=st.integers(1, 9),
    cols=st.integers(1, 17),
    mode=st.sampled_from(["mse", "lsq"]),
    seed=st.integers(0, 2**16),
)
def test_per_tensor_weights_are_one_scale_times_codes(bits, rows, cols, mode, seed):
    """A per-tensor quantizer (dense layers, WeightScales("tensor")) gives every row the one
    scale s, and its forward (eval and training) is s * codes, the codes those of a float64
    oracle on that grid (up to float32 ties) although its rows differ in size by up to 10x."""
    torch.manual_seed(seed)
    w = torch.randn(rows, cols) * torch.logspace(-1, 0, rows)[:, None]
    wq = WeightQuant(bits, rows, mode=mode, per_tensor=True)
    wq.init_mse(w)
    codes, scale = wq.int_weight(w)
    assert scale.shape == (rows,) and torch.unique(scale).numel() == 1
    s = float(scale[0])
    u = w.double().numpy() / s
    want = np.clip(np.floor(u + 0.5), wq.qmin, wq.qmax)
    off = codes.numpy() != want
    assert np.all(np.abs(u[off] - np.floor(u[off]) - 0.5) < 1e-5)
    with torch.no_grad():
        fq = wq(w)
    assert torch.equal(fq, codes.float() * scale[0])
    assert torch.equal(wq(w.clone().requires_grad_()).detach(), fq)


@pytest.mark.parametrize("mode", ["mse", "lsq"])
def test_per_tensor_8bit_grid_keeps_a_rows_outlier(mode):
    """At 8 bits a per-tensor grid spans max|w| (TFLite's int8 rule): in a 128 x 640 tensor
    (ad's size) a 12-sigma weight stays within half a step, where the tensor's least-MSE clip
    (0.42 here) would cut it. At 4 bits the MSE clip still applies (the weight is cut)."""
    torch.manual_seed(3)
    w = torch.randn(128, 640) * 0.05
    w[5, 7] = 0.6
    for bits, kept in ((8, True), (4, False)):
        wq = WeightQuant(bits, 128, mode=mode, per_tensor=True)
        wq.init_mse(w)
        codes, scale = wq.int_weight(w)
        err = abs(float(codes[5, 7]) * float(scale[5]) - 0.6)
        assert (err <= float(scale[5]) / 2 + 1e-6) == kept, (bits, err)


def test_per_tensor_lsq_step_gradient_is_the_whole_tensors():
    """LSQ's gradient of a per-tensor step: d y / d s summed over every weight of the tensor,
    scaled by 1 / sqrt(N Q_p) with N all the tensor's weights (one parameter, shape (1,))."""
    torch.manual_seed(2)
    w = torch.randn(5, 12)
    wq = WeightQuant(4, 5, mode="lsq", per_tensor=True)
    wq.init_mse(w)
    with torch.no_grad():
        wq.step_init.mul_(0.6)  # some weights outside the grid
    g = torch.randn_like(w)
    w_req = w.clone().requires_grad_(True)
    (wq(w_req) * g).sum().backward()
    s = wq.step().detach()
    assert wq.step_raw.shape == (1,)
    u = w / s
    q = torch.floor(u + 0.5).clamp(wq.qmin, wq.qmax)
    inside = (u > wq.qmin) & (u < wq.qmax)
    assert (~inside).any() and inside.any()
    want = (g * torch.where(inside, q - u, q)).sum() / (60 * 7) ** 0.5
    torch.testing.assert_close(wq.step_raw.grad, want.view(1), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w_req.grad, torch.where(inside, g, torch.zeros_like(g)))


def test_pact_clip_gradient_and_ste():
    q = ActQuant(4, signed=False, init=2.0)
    x = torch.tensor([-1.0, 0.3, 0.9, 1.7, 2.5, 4.0], requires_grad=True)
    y = q(x)
    assert torch.equal(
        y.detach(), torch.clamp(round_half_up_t(x.detach() / (2 / 15)), 0, 15) * (2 / 15)
    )
    y.sum().backward()
    # straight through inside [0, alpha], zero outside (the ReLU and the clip)
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    # two values above the clip each pull alpha up by 1; inside only rounding error remains
    assert q.alpha.grad.item() == pytest.approx(2.0, abs=0.25)
    q.alpha.grad = None
    x2 = torch.tensor([5.0, 7.0], requires_grad=True)
    (q(x2) * torch.tensor([1.0, 2.0])).sum().backward()
    assert q.alpha.grad.item() == pytest.approx(3.0)  # dL/dalpha = sum of upstream grads above


def test_signed_clip_gradient_sign():
    q = ActQuant(8, signed=True, init=1.0)
    x = torch.tensor([-3.0, 2.0])
    q(x).sum().backward()
    assert q.alpha.grad.item() == pytest.approx(0.0)  # -1 below, +1 above
    q.alpha.grad = None
    q(torch.tensor([-3.0, -2.0])).sum().backward()
    assert q.alpha.grad.item() == pytest.approx(-2.0)


def round_half_up_t(x: torch.Tensor) -> torch.Tensor:
    return torch.floor(x + 0.5)


# ---- prepare / calibrate --------------------------------------------------------------------


def test_prepare_copies_and_describes(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    before = {k: v.clone() for k, v in tiny_resnet.state_dict().items()}
    pol = Policy.uniform(g, 4)
    q = prepare(tiny_resnet, pol, g)
    assert q.graph is g and q.policy == pol
    assert all(torch.equal(before[k], v) for k, v in tiny_resnet.state_dict().items())
    with torch.no_grad():
        next(q.parameters()).add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in tiny_resnet.state_dict().items())
    # the float model's ReLUs are gone: every activation is one quantizer
    code = q.net.code
    assert "relu" not in code and code.count("act_quant") >= len(g.tensors)


def test_prepare_rejects_bad_policy(tiny_resnet):
    g = trace(tiny_resnet, (1, 1, 8, 8))
    pol = Policy.uniform(g, 4)
    with pytest.raises(PolicyError):
        prepare(tiny_resnet, pol.replace(weights={"stem": 9}), g)


def test_calibrate_sets_clips_from_data():
    model = randomize_bn(SkipNet())
    g = trace(model, (1, 1, 8, 8))
    q = prepare(model, Policy.uniform(g, 8), g)
    calibrate(q, image_set(), batches=2, batch_size=32)
    alphas = {t: q.act_quant(t).alpha.item() for t in g.tensors if t != g.input}
    assert all(0 < a < 50 for a in alphas.values()) and len(set(alphas.values())) > 1
    assert float(q.act_quant(g.input).alpha) == 1.0  # the input grid is fixed: 1/255


def test_calibrate_reestimates_bn_for_quantized_weights():
    model = randomize_bn(SkipNet())
    g = trace(model, (1, 1, 8, 8))
    q = prepare(model, Policy.uniform(g, 2, 8), g)
    ds = image_set(64)
    calibrate(q, ds, batches=1, batch_size=64)
    with torch.no_grad():
        stem = q.net.stem(ds.images.float() / 255)  # 2-bit weights, exact 8-bit input
    bn = q.net.bn0
    torch.testing.assert_close(bn.running_mean, stem.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, stem.var((0, 2, 3)), rtol=1e-3, atol=1e-5)
    assert bn.momentum == 0.1 and not q.training


def test_non_zoo_model_trains():
    torch.manual_seed(0)
    model = SkipNet()
    g = trace(model, (1, 1, 8, 8))
    pol = Policy.uniform(g, 4).replace(weights={"dw": 2}, activations={"stem": 2})
    q = prepare(model, pol, g)
    ds = image_set(128)
    calibrate(q, ds, batches=1, batch_size=64)
    opt = torch.optim.Adam(q.parameters(), lr=1e-2)
    x, y = ds.images.float() / 255, ds.labels
    q.train()
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(q(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    alpha = q.act_quant("stem").alpha
    assert alpha.grad is not None and alpha.grad.abs() > 0


# ---- the contract: eval-mode output == integer semantics of QuantParams ----------------------


def ref_conv(q_in, w_int, stride, padding, groups):
    """Integer conv (int64, exact): q_in N x C x H x W, w_int C_out x C_in/g x kh x kw."""
    n, c, h, w = q_in.shape
    co, cpg, kh, kw = w_int.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(q_in, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.zeros((n, co, oh, ow), dtype=np.int64)
    opg = co // groups
    if cpg == 1 and opg == 1:  # depthwise: one multiply per tap, all channels at once
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw]
                out += patch * w_int[None, :, 0, i, j, None, None]
        return out
    for gi in range(groups):
        xs = xp[:, gi * cpg : (gi + 1) * cpg]
        ws = w_int[gi * opg : (gi + 1) * opg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw]
                out[:, gi * opg : (gi + 1) * opg] += np.einsum(
                    "nchw,oc->nohw", patch, ws[:, :, i, j]
                )
    return out


def requant(real, tq):
    return np.clip(round_half_up(real / tq.scale), tq.qmin, tq.qmax).astype(np.int64)


def ref_op(op, qp: QuantParams, codes: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(codes, real value / out scale before rounding) of one op, from integer inputs only."""
    out = qp.tensors[op.output]
    ins = [qp.tensors[t] for t in op.inputs]
    if op.kind in ("conv", "linear"):
        lq = qp.layers[op.name]
        x = codes[op.inputs[0]]
        if op.kind == "conv":
            acc = ref_conv(x, lq.w_int, op.stride, op.padding, op.groups)
            real = (
                lq.w_scale[None, :, None, None] * ins[0].scale * acc + lq.bias[None, :, None, None]
            )
        else:
            acc = x.reshape(len(x), -1) @ lq.w_int.T
            real = lq.w_scale[None] * ins[0].scale * acc + lq.bias[None]
    elif op.kind == "add":
        real = ins[0].scale * codes[op.inputs[0]] + ins[1].scale * codes[op.inputs[1]]
    elif op.kind == "avgpool":
        x = codes[op.inputs[0]].astype(np.float64) * ins[0].scale
        n, c, h, w = x.shape
        kh, kw = op.kernel
        real = x.reshape(n, c, h // kh, kh, w // kw, kw).mean(axis=(3, 5))
    else:  # pragma: no cover
        raise AssertionError(op.kind)
    return requant(real, out), real / out.scale


def torch_codes(q, x) -> dict[str, np.ndarray]:
    """Integer codes of every activation tensor in the fake-quant model's eval forward."""
    got: dict[str, np.ndarray] = {}
    hooks = []
    for t in q.graph.tensors:
        aq = q.act_quant(t)
        scale = aq.scale().item() if t != q.graph.input else 1 / 255

        def hook(_m, _i, out, t=t, scale=scale):
            got[t] = np.rint(out.detach().double().numpy() / scale).astype(np.int64)

        hooks.append(aq.register_forward_hook(hook))
    with torch.no_grad():
        q(x)
    for h in hooks:
        h.remove()
    return got


def check_contract(model, shape, policy_fn, n=16, seed=0, weight_range="narrow"):
    g = trace(model, shape)
    q = prepare(model, policy_fn(g), g, weight_range=weight_range).eval()
    ds = image_set(64, size=g.input_shape[-1], seed=seed)
    calibrate(q, ds, batches=1, batch_size=64)
    qp = quant_params(q)
    pixels = ds.images[:n]
    x = pixels.float() / 255
    got = torch_codes(q, x)
    assert np.array_equal(got[g.input], pixels.numpy().astype(np.int64))
    flips = total = 0
    for op in g.ops:
        # Teacher-forced: each op sees the torch model's own input codes, so one float32
        # rounding flip upstream cannot hide or cause a mismatch here.
        want, u = ref_op(op, qp, got)
        have = got[op.output].reshape(want.shape)
        bad = want != have
        total += want.size
        if bad.any():
            # float32 vs float64 may only disagree where the value sits on a rounding boundary
            frac = u[bad] - np.floor(u[bad])
            assert np.all(np.abs(frac - 0.5) < 1e-4), (op.name, u[bad])
            assert np.all(np.abs(want[bad] - have[bad]) == 1)
            flips += int(bad.sum())
    assert flips <= max(1, total // 10000)
    # End to end, integers only: the logits codes equal the fake-quant model's.
    codes = {g.input: pixels.numpy().astype(np.int64)}
    for op in g.ops:
        codes[op.output] = ref_op(op, qp, codes)[0]
    assert np.array_equal(codes[g.output].reshape(n, -1), got[g.output].reshape(n, -1))
    with torch.no_grad():
        logits = q(x).double().numpy()
    np.testing.assert_allclose(logits, codes[g.output] * qp.tensors[g.output].scale, rtol=1e-6)
    return qp


@pytest.mark.parametrize("bits", [(8, 8), (4, 4), (2, 4), (4, 2)])
def test_contract_skipnet(bits):
    torch.manual_seed(1)
    model = randomize_bn(SkipNet())
    qp = check_contract(model, (1, 1, 8, 8), lambda g: Policy.uniform(g, *bits))
    assert qp.tensors["add"].signed and qp.layers["pw"].w_int.dtype == np.int64


def test_contract_tiny_resnet_mixed(tiny_resnet):
    randomize_bn(tiny_resnet, seed=3)

    def mixed(g):
        return Policy.uniform(g, 8).replace(
            weights={"stem": 2, "conv1": 4}, activations={"stem": 4, "conv2": 2}
        )

    qp = check_contract(tiny_resnet, (1, 1, 8, 8), mixed)
    assert qp.layers["conv2"].bias.shape == (5,)  # conv bias kept, no BN to fold


def test_contract_mobilenet_full_range():
    from micromix.models import create

    torch.manual_seed(0)
    m = randomize_bn(create("mobilenet_v1", width=0.1, resolution=12, in_channels=1, num_classes=4))
    qp = check_contract(m, None, lambda g: Policy.uniform(g, 2, 8), n=8, weight_range="full")
    assert min(int(lq.w_int.min()) for lq in qp.layers.values()) == -2  # the extra full code


def test_bn_folded_into_scale_and_bias():
    model = randomize_bn(SkipNet())
    g = trace(model, (1, 1, 8, 8))
    q = prepare(model, Policy.uniform(g, 8), g)
    lq = quant_params(q).layers["stem"]
    bn = model.bn0
    gamma, beta, mean, var = (
        t.detach().double().numpy() for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)
    )
    factor = gamma / np.sqrt(var + bn.eps)
    _, s = q.weight_module("stem").wq.int_weight(q.net.stem.weight)
    np.testing.assert_allclose(lq.w_scale, s.double().numpy() * factor, rtol=1e-12)
    np.testing.assert_allclose(lq.bias, beta - mean * factor, rtol=1e-12)


# ---- checkpoints -------------------------------------------------------------------------


@pytest.mark.parametrize("dense", ["channel", "tensor"])
def test_save_load_qat_round_trip(tmp_path, dense):
    """A QAT checkpoint rebuilds the same model, its classifier's weight scales (per channel
    or per tensor: WeightScales) included."""
    from micromix.graph import WeightScales
    from micromix.models import create

    m = create("mobilenet_v1", width=0.1, resolution=12, in_channels=1, num_classes=4)
    g = trace(m, scales=WeightScales(dense=dense))
    q = prepare(m, Policy.uniform(g, 4, 8), g, weight_range="narrow").eval()
    calibrate(q, image_set(32, size=12), batches=1, batch_size=32)
    save_qat(tmp_path / "q.pt", q, metrics={"acc": 1.0})
    q2, meta = load_qat(tmp_path / "q.pt")
    assert q2.policy == q.policy and q2.weight_range == "narrow" and meta["metrics"]["acc"] == 1.0
    assert q2.graph == q.graph and q2.weight_module("classifier").wq.per_tensor == (
        dense == "tensor"
    )
    x = torch.rand(2, 1, 12, 12)
    with torch.no_grad():
        assert torch.equal(q(x), q2(x))


def test_load_qat_errors(tmp_path, tiny_resnet):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_qat(bad)
    g = trace(tiny_resnet, (1, 1, 8, 8))
    q = prepare(tiny_resnet, Policy.uniform(g, 8), g)
    save_qat(tmp_path / "t.pt", q)
    with pytest.raises(CheckpointError, match="outside the zoo"):
        load_qat(tmp_path / "t.pt")
    q2, _ = load_qat(tmp_path / "t.pt", model=tiny_resnet)
    assert q2.policy == q.policy
    with pytest.raises(CheckpointError, match="do not match"):
        load_qat(tmp_path / "t.pt", model=SkipNet())
    torch.save({"kind": "micromix-model"}, tmp_path / "f.pt")
    with pytest.raises(CheckpointError, match="not a micromix QAT"):
        load_qat(tmp_path / "f.pt")


# ---- learned weight step sizes (LSQ) ---------------------------------------------------------


def test_lsq_step_gradient_matches_hand_computation():
    from micromix.quant.fakequant import WeightQuant

    torch.manual_seed(0)
    w = torch.randn(3, 2, 3, 3)
    wq = WeightQuant(4, 3, mode="lsq")
    wq.init_mse(w)
    with torch.no_grad():
        wq.step_init.mul_(0.6)  # a tighter grid: some weights fall outside it
    g = torch.randn_like(w)
    w_req = w.clone().requires_grad_(True)
    (wq(w_req) * g).sum().backward()
    qmin, qmax = wq.qmin, wq.qmax
    assert (qmin, qmax) == (-7, 7)
    s = wq.step().detach().view(-1, 1, 1, 1)
    u = w / s
    q = torch.floor(u + 0.5).clamp(qmin, qmax)
    inside = (u > qmin) & (u < qmax)
    assert (~inside).any() and inside.any()
    d_step = torch.where(inside, q - u, q)  # LSQ: d y / d s
    gscale = 1.0 / (18 * 7) ** 0.5  # N = 2 * 3 * 3 weights per channel, Q_p = 7
    want = gscale * (g * d_step).sum((1, 2, 3))
    # d step / d step_raw = 1 where step_raw = 0: the gradient is LSQ's own
    torch.testing.assert_close(wq.step_raw.grad, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w_req.grad, torch.where(inside, g, torch.zeros_like(g)))


def test_lsq_starts_at_the_mse_grid():
    from micromix.quant.fakequant import WeightQuant

    w = torch.randn(4, 8)
    mse, lsq = WeightQuant(2, 4), WeightQuant(2, 4, mode="lsq")
    mse.init_mse(w)
    lsq.init_mse(w)
    torch.testing.assert_close(lsq.scale(), mse.scale())
    with torch.no_grad():
        assert torch.equal(lsq(w), mse(w))
    assert isinstance(lsq.step_raw, nn.Parameter) and "clip" not in dict(mse.named_parameters())


def _push_steps_down(wq: WeightQuant, w: torch.Tensor, optimizer: str, lr: float, steps: int):
    """Train `wq` (and w) on a loss that shrinks every weight's magnitude: the gradient drives
    the step sizes down; yields the step sizes after every optimizer step."""
    from micromix.train import TrainConfig, make_optimizer

    w = nn.Parameter(w.clone())
    holder = nn.Module()
    holder.w, holder.wq = w, wq
    opt = make_optimizer(holder, TrainConfig(optimizer=optimizer, lr=lr, weight_decay=0.0))
    for _ in range(steps):
        opt.zero_grad()
        (wq(w) * torch.sign(w.detach())).sum().backward()
        opt.step()
        yield wq.step().detach()


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    bits=st.sampled_from([2, 4, 8]),
    optimizer=st.sampled_from(["adam", "sgd"]),
    lr=st.floats(1e-4, 0.3),
)
def test_lsq_steps_stay_positive_in_any_training_run(seed, bits, optimizer, lr):
    """Whatever the optimizer and learning rate, a learned step is never <= 0 and never reaches
    the floor that deploys a channel as zeros, even under a loss that pulls it down."""
    from micromix.quant.fakequant import _MIN_CLIP

    g = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 3, 3, 3, generator=g) * torch.rand(4, 1, 1, 1, generator=g)
    wq = WeightQuant(bits, 4, mode="lsq")
    wq.init_mse(w)
    for step in _push_steps_down(wq, w, optimizer, lr, 40):
        assert torch.isfinite(step).all() and (step > _MIN_CLIP).all(), step


def test_a_tiny_channel_keeps_its_step_above_the_floor():
    """The example hypothesis found (seed 205, 8 bits, adam, lr 0.25): a channel whose weights
    are all below 1e-3 starts at step 7.7e-6, and with a floor of s0 * 2^-10 alone one adam
    step took it to 7.5e-9, below `_MIN_CLIP`, which deploys the channel as zeros."""
    from micromix.quant.fakequant import _MIN_CLIP

    g = torch.Generator().manual_seed(205)
    w = torch.randn(4, 3, 3, 3, generator=g) * torch.rand(4, 1, 1, 1, generator=g)
    wq = WeightQuant(8, 4, mode="lsq")
    wq.init_mse(w)
    assert wq.step_init.min() < 2 * _MIN_CLIP * 2**10  # the case: s0 * 2^-10 < 2 _MIN_CLIP
    steps = list(_push_steps_down(wq, w, "adam", 0.25, 40))
    assert all((s > _MIN_CLIP).all() for s in steps)


def test_a_plain_step_parameter_would_go_negative_where_ours_does_not():
    """The oracle for the property test above: the same run with the step as a plain parameter
    (the quantizer before issue 25) crosses zero."""
    from micromix.quant.fakequant import _StepQuant

    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3)
    wq = WeightQuant(4, 4, mode="lsq")
    wq.init_mse(w)
    plain = nn.Parameter(wq.step().detach().clone())
    opt = torch.optim.SGD([plain], lr=0.3)
    for _ in range(40):
        opt.zero_grad()
        (_StepQuant.apply(w, plain, wq.qmin, wq.qmax, wq.gscale) * torch.sign(w)).sum().backward()
        opt.step()
    assert (plain <= 0).any()
    ours = list(_push_steps_down(wq, w, "sgd", 0.3, 40))[-1]
    assert (ours > 0).all()


def test_floor_clamped_channel_deploys_as_zero_scale_and_converts():
    """An LSQ checkpoint from before the positive parametrization, with a negative step in one
    channel (issue 25), loads; that channel gets codes 0 and scale 0, so the conversion gives it
    its bias instead of refusing an int32 overflow, and the integer model agrees with
    fake-quant."""
    from micromix.integer import convert

    torch.manual_seed(0)
    model = randomize_bn(SkipNet())
    g = trace(model, (1, 1, 8, 8))
    q = prepare(model, Policy.uniform(g, 8), g, weight_quant="lsq").eval()
    calibrate(q, image_set(64), batches=1, batch_size=64)
    # the old format: the step itself under `step`, nothing else
    old = {k: v for k, v in q.state_dict().items() if not k.endswith(("step_raw", "step_init"))}
    for op in g.weight_ops:
        old[f"net.{op.name}.wq.step"] = q.weight_module(op.name).wq.step().detach().clone()
    old["net.pw.wq.step"][1] = -4e-4  # as in the user's run
    q.load_state_dict(old)
    m = q.weight_module("pw")
    w_int, scale = m.wq.int_weight(m.weight)
    assert scale[1] == 0 and (w_int[1] == 0).all() and (scale[[0, 2]] > 0).all()
    lq = quant_params(q).layers["pw"]
    assert lq.w_scale[1] == 0 and lq.bias[1] != 0  # BN's shift stays: the channel is its bias
    x = image_set(200, seed=3).images
    with torch.no_grad():
        fq = q(x.float() / 255).argmax(1).numpy()
    assert (convert(q).run(x.numpy()).argmax(1) == fq).mean() >= 0.99


def test_repair_gives_an_all_zero_channel_its_mse_grid_back():
    from micromix.quant.prepare import repair_dead_channels

    torch.manual_seed(0)
    model = SkipNet()
    g = trace(model, (1, 1, 8, 8))
    q = prepare(model, Policy.uniform(g, 4), g, weight_quant="lsq")
    m = q.weight_module("dw")
    start = m.wq.step().detach().clone()
    with torch.no_grad():
        m.wq.step_raw[2] = 5 * m.weight[2].abs().max()  # a grid past all of its weights
    assert m.wq.dead_channels(m.weight) == [2]
    assert repair_dead_channels(q) == {"dw": [2]}
    assert m.wq.dead_channels(m.weight) == [] and repair_dead_channels(q) == {}
    torch.testing.assert_close(m.wq.step().detach(), start)
