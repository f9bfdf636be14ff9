"""The numpy reference of max / average pooling, concat, table activations and multiply against
slow exact oracles (plain Python loops and integers), with random geometry, bits and scales."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from micromix.graph import Op
from micromix.memory import param_bytes
from micromix.numerics.arith import quantize_multiplier
from micromix.numerics.params import QuantParams, TensorQuant, qrange
from micromix.ops import get
from micromix.ops.tracing import pool_size

BITS = st.sampled_from([2, 4, 8])
SCALE = st.floats(1e-3, 1.0)


def make(kind: str, ins: list[TensorQuant], out: TensorQuant, shapes, out_shape, **attrs):
    names = [t.name for t in ins]
    op = Op(
        name="op", kind=kind, inputs=tuple(names), output="op", in_shape=shapes[0],
        out_shape=out_shape, macs=0, in_shapes=tuple(shapes), **attrs,
    )  # fmt: skip
    qp = QuantParams({**{t.name: t for t in ins}, "op": out}, {})
    return get(kind).convert(op, qp)


def codes(rng, shape, t: TensorQuant) -> np.ndarray:
    return rng.integers(t.qmin, t.qmax + 1, shape).astype(np.int64)


def requant(v: int, m0: int, n: int, lo: int, hi: int) -> int:
    return min(hi, max(lo, (v * m0 + (1 << (n - 1))) >> n))


@st.composite
def tensor_quant(draw, name: str, signed=None) -> TensorQuant:
    s = draw(st.booleans()) if signed is None else signed
    return TensorQuant(name, draw(BITS), s, draw(SCALE))


@st.composite
def windows(draw):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    h, w = (
        draw(st.integers(max(1, k[0] - 2 * p[0]), 7)),
        draw(st.integers(max(1, k[1] - 2 * p[1]), 7)),
    )
    return k, s, p, (h, w)


@settings(max_examples=60, deadline=None)
@given(
    windows(),
    st.booleans(),
    tensor_quant("x"),
    st.sampled_from([None, 2, 4, 8]),
    st.integers(0, 99),
)
def test_maxpool_matches_loops_and_torch(win, ceil, tx, out_bits, seed) -> None:
    (kh, kw), (sh, sw), (ph, pw), (h, w) = win
    oh, ow = pool_size(h, kh, sh, ph, ceil), pool_size(w, kw, sw, pw, ceil)
    # The output keeps the input's quantizer, or requantizes to other bits and scale.
    to = tx if out_bits is None else TensorQuant("op", out_bits, tx.signed, tx.scale * 1.7)
    c = 3
    iop = make("maxpool", [tx], to, [(c, h, w)], (c, oh, ow), kernel=(kh, kw), stride=(sh, sw),
               padding=(ph, pw), ceil_mode=ceil)  # fmt: skip
    x = codes(np.random.default_rng(seed), (1, h, w, c), tx)
    got = get("maxpool").run(iop, x)
    m0, n = int(iop.arrays["mult"][0]), int(iop.arrays["shift"][0])
    for oy in range(oh):
        for ox in range(ow):
            for ch in range(c):
                taps = [
                    x[0, oy * sh - ph + i, ox * sw - pw + j, ch]
                    for i in range(kh) for j in range(kw)
                    if 0 <= oy * sh - ph + i < h and 0 <= ox * sw - pw + j < w
                ]  # fmt: skip
                assert got[0, oy, ox, ch] == requant(int(max(taps)), m0, n, to.qmin, to.qmax)
    if out_bits is None:  # identity requantization: exactly torch's max pool of the codes
        t = torch.from_numpy(x.transpose(0, 3, 1, 2)).double()
        ref = F.max_pool2d(t, (kh, kw), (sh, sw), (ph, pw), ceil_mode=ceil)
        assert np.array_equal(got.transpose(0, 3, 1, 2), ref.numpy().astype(np.int64))


@settings(max_examples=60, deadline=None)
@given(windows(), st.booleans(), tensor_quant("x"), tensor_quant("op"), st.integers(0, 99))
def test_avgpool_matches_loops_and_torch(win, include_pad, tx, to, seed) -> None:
    (kh, kw), (sh, sw), (ph, pw), (h, w) = win
    oh, ow = pool_size(h, kh, sh, ph, False), pool_size(w, kw, sw, pw, False)
    include_pad = include_pad or (ph, pw) == (0, 0)
    c = 2
    iop = make("avgpool", [tx], to, [(c, h, w)], (c, oh, ow), kernel=(kh, kw), stride=(sh, sw),
               padding=(ph, pw), count_include_pad=include_pad)  # fmt: skip
    assert param_bytes(iop.op) == 5 * (1 if include_pad else kh * kw)
    x = codes(np.random.default_rng(seed), (1, h, w, c), tx)
    got = get("avgpool").run(iop, x)
    for oy in range(oh):
        for ox in range(ow):
            inside = [
                (oy * sh - ph + i, ox * sw - pw + j)
                for i in range(kh) for j in range(kw)
                if 0 <= oy * sh - ph + i < h and 0 <= ox * sw - pw + j < w
            ]  # fmt: skip
            d = kh * kw if include_pad else len(inside)
            m0, n = quantize_multiplier(tx.scale / (d * to.scale))
            for ch in range(c):
                s = sum(int(x[0, i, j, ch]) for i, j in inside)
                assert got[0, oy, ox, ch] == requant(s, m0, n, to.qmin, to.qmax)
    # Against torch's average pool of the real values: the rounding of the real mean, up to
    # the 31-bit multiplier (one step at a rounding tie).
    t = torch.from_numpy(x.transpose(0, 3, 1, 2)).double() * tx.scale
    real = F.avg_pool2d(t, (kh, kw), (sh, sw), (ph, pw), count_include_pad=include_pad)
    want = np.clip(np.floor(real.numpy() / to.scale + 0.5), to.qmin, to.qmax)
    assert np.abs(got.transpose(0, 3, 1, 2) - want).max() <= 1


@settings(max_examples=60, deadline=None)
@given(st.lists(tensor_quant("x"), min_size=2, max_size=4), tensor_quant("op"), st.integers(0, 99))
def test_concat_requantizes_each_input_to_the_output(tins, to, seed) -> None:
    rng = np.random.default_rng(seed)
    tins = [TensorQuant(f"x{i}", t.bits, t.signed, t.scale) for i, t in enumerate(tins)]
    chans = [int(rng.integers(1, 6)) for _ in tins]
    iop = make("cat", tins, to, [(c, 2, 3) for c in chans], (sum(chans), 2, 3))
    assert param_bytes(iop.op) == 5 * len(tins)
    xs = [codes(rng, (1, 2, 3, c), t) for c, t in zip(chans, tins)]
    got = get("cat").run(iop, *xs)
    col = 0
    for x, t in zip(xs, tins):
        m0, n = quantize_multiplier(t.scale / to.scale)
        for idx in np.ndindex(x.shape):
            want = requant(int(x[idx]), m0, n, to.qmin, to.qmax)
            assert got[idx[0], idx[1], idx[2], col + idx[3]] == want
        col += x.shape[3]
    # Same scale and bits: the copy is exact.
    same = make("cat", [to, TensorQuant("y", to.bits, to.signed, to.scale)], to,
                [(2, 1, 1), (3, 1, 1)], (5, 1, 1))  # fmt: skip
    a, b = codes(rng, (1, 1, 1, 2), to), codes(rng, (1, 1, 1, 3), to)
    assert np.array_equal(get("cat").run(same, a, b), np.concatenate([a, b], axis=3))


def _oracle_fn(fn: str, alpha: float, v: float) -> float:
    """PyTorch's definitions, written out with math."""
    if fn == "hardswish":
        return v * min(max(v + 3.0, 0.0), 6.0) / 6.0
    if fn == "hardsigmoid":
        return min(max(v + 3.0, 0.0), 6.0) / 6.0
    if fn == "sigmoid":
        return 1.0 / (1.0 + math.exp(-v))
    if fn == "silu":
        return v / (1.0 + math.exp(-v))
    if fn == "leaky_relu":
        return v if v >= 0 else alpha * v
    return math.tanh(v)


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(["hardswish", "hardsigmoid", "sigmoid", "silu", "leaky_relu", "tanh"]),
    st.floats(0.0, 0.5),
    tensor_quant("x"),
    tensor_quant("op"),
    st.floats(1e-3, 0.1),
)
def test_lut_is_the_rounded_function_of_every_input_code(fn, alpha, tx, to, s_in) -> None:
    tx = TensorQuant("x", tx.bits, tx.signed, s_in * 2 ** (8 - tx.bits) * 8)  # span up to ~6
    iop = make("lut", [tx], to, [(1, 1, 1)], (1, 1, 1), fn=fn, alpha=alpha)
    assert iop.arrays["table"].dtype == np.uint8 and iop.arrays["table"].size == 2**tx.bits
    assert param_bytes(iop.op, tx.bits) == 2**tx.bits
    x = np.arange(tx.qmin, tx.qmax + 1, dtype=np.int64).reshape(1, 1, -1, 1)
    got = get("lut").run(iop, x).reshape(-1)
    for q, y in zip(x.reshape(-1), got):
        r = _oracle_fn(fn, alpha, tx.scale * int(q)) / to.scale
        want = min(to.qmax, max(to.qmin, math.floor(r + 0.5)))
        # The float64 of numpy and of math may differ in the last bit: only at a tie.
        assert y == want or abs(r - math.floor(r) - 0.5) < 1e-9, (q, y, want)


@settings(max_examples=40, deadline=None)
@given(tensor_quant("x"), tensor_quant("g"), tensor_quant("op"), st.booleans(), st.integers(0, 99))
def test_multiply_by_a_gate(tx, tg, to, per_pixel, seed) -> None:
    rng = np.random.default_rng(seed)
    gshape = (3, 2, 4) if per_pixel else (3, 1, 1)
    iop = make("mul", [tx, tg], to, [(3, 2, 4), gshape], (3, 2, 4))
    x = codes(rng, (2, 2, 4, 3), tx)
    g = codes(rng, (2, *gshape[1:], 3), tg)
    got = get("mul").run(iop, x, g)
    m0, n = quantize_multiplier(tx.scale * tg.scale / to.scale)
    for i, yy, xx, c in np.ndindex(got.shape):
        gv = g[i, yy, xx, c] if per_pixel else g[i, 0, 0, c]
        assert got[i, yy, xx, c] == requant(int(x[i, yy, xx, c]) * int(gv), m0, n, to.qmin, to.qmax)


def test_lut_table_is_indexed_by_raw_bits_and_sign_extended() -> None:
    tx = TensorQuant("x", 4, True, 0.5)
    to = TensorQuant("op", 4, True, 0.25)
    iop = make("lut", [tx], to, [(1, 1, 1)], (1, 1, 1), fn="leaky_relu", alpha=0.25)
    # code -3 (raw 13): leaky_relu(-1.5) = -0.375 -> -1.5 steps -> round half up: -1
    assert get("lut").run(iop, np.array([[[[-3]]]]))[0, 0, 0, 0] == -1
    assert iop.arrays["table"][13] == 255  # -1 as a byte
    assert qrange(4, True) == (-7, 7)
    assert get("lut").run(iop, np.array([[[[7]]]]))[0, 0, 0, 0] == 7  # 3.5 / 0.25 = 14, clamped


@pytest.mark.parametrize("include_pad", [True, False])
def test_avg_pool2d_3x3_stride1_pad1_agrees_with_fake_quant(include_pad: bool) -> None:
    """Issue 10's case: F.avg_pool2d(y, 3, stride=1, padding=1) used to become a 1x1 pool (up
    to 168 output steps off); now the integer model follows the fake-quant model."""
    from micromix.graph import trace
    from micromix.integer import convert
    from micromix.policy import Policy
    from micromix.quant import prepare

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 6, 3, padding=1)
            self.fc = torch.nn.Linear(6 * 8 * 8, 10)

        def forward(self, x):
            y = F.relu(self.conv(x))
            y = F.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=include_pad)
            return self.fc(torch.flatten(y, 1))

    torch.manual_seed(0)
    model = Net().eval()
    g = trace(model, (1, 1, 8, 8))
    pool = g.ops[1]
    assert (pool.kernel, pool.padding, pool.count_include_pad) == ((3, 3), (1, 1), include_pad)
    qmodel = prepare(model, Policy.uniform(g, 8), g).eval()
    for t in g.tensors:
        if t != g.input:
            qmodel.act_quant(t).set_alpha(2.0)
    x = torch.randint(0, 256, (32, 1, 8, 8), dtype=torch.uint8)
    vals = convert(qmodel).run_tensors(x.numpy())
    with torch.no_grad():
        y = F.relu(qmodel.net.conv(qmodel.act_quant("input")(x.float() / 255)))
        y = qmodel.act_quant("conv")(y)
        pooled = qmodel.act_quant("avg_pool2d")(
            F.avg_pool2d(y, 3, stride=1, padding=1, count_include_pad=include_pad)
        )
        want = torch.floor(pooled / qmodel.act_quant("avg_pool2d").scale() + 0.5).numpy()
    got = vals["avg_pool2d"].transpose(0, 3, 1, 2)
    assert np.abs(got - want).max() <= 1
    # Input and output share one scale here, so the exact mean is S / d (window sum S over d
    # counted taps): any difference is a rounding tie, which float32 may round down.
    codes = torch.from_numpy(vals["conv"].transpose(0, 3, 1, 2)).double()
    window_sum = F.avg_pool2d(codes, 3, 1, 1, divisor_override=1).numpy()
    ones = torch.ones(1, 1, 8, 8, dtype=torch.float64)
    d = F.avg_pool2d(ones, 3, 1, 1, count_include_pad=include_pad, divisor_override=1).numpy()
    d = np.full_like(d, 9.0) if include_pad else d
    tie = np.isclose(2 * window_sum % (2 * d), d)
    assert not np.any((got != want) & ~tie)
    if include_pad:
        assert np.array_equal(got, want)  # an odd divisor has no ties


def test_max_pool_keeps_its_input_quantizer_when_the_bits_match() -> None:
    """Same bits: the fake-quant model shares the input's quantizer, and the integer pool's
    requantization is exactly the identity. Other bits: a quantizer and multiplier of its own."""
    from user_models.maxpool_cnn import INPUT_SHAPE, MaxPoolCNN

    from micromix.graph import trace
    from micromix.integer import convert
    from micromix.policy import Policy
    from micromix.quant import prepare

    torch.manual_seed(0)
    model = MaxPoolCNN().eval()
    g = trace(model, (1, *INPUT_SHAPE))
    for bits, shared in ((4, True), (2, False)):
        pol = Policy.uniform(g, 4).replace(activations={"pool1": bits})
        q = prepare(model, pol, g).eval()
        assert (q.act_targets["pool1"] == q.act_targets["conv1"]) is shared
        pool = next(i for i in convert(q).ops if i.name == "pool1")
        identity = (list(pool.arrays["mult"]), list(pool.arrays["shift"])) == ([2**30], [30])
        assert identity is shared
