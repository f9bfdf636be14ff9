"""Fake quantizers with straight-through gradients, one autograd Function per tensor.

Forward (training and eval alike) is exactly the QuantParams semantics of `params.py`:
q = clamp(floor(v / scale + 1/2), qmin, qmax), value = scale * q. Only the backward is an
approximation: the rounding passes gradients straight through inside the clip, and the clip
gets the gradient of the quantized value with respect to it (PACT above the clip, plus the
rounding-error term inside it, as in LSQ).

Speed: each quantizer is one Function with a hand-written backward, so autograd records one node
per tensor instead of five, and the gradient of the clip reduces to two dot products.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..numerics.params import qrange

WEIGHT_RANGES = ("narrow", "full")
# mse: per-channel clips fixed at their MSE-optimal value; lsq: learned step sizes (LSQ,
# Esser et al. 2020) started from those clips. Same bits and bytes either way.
WEIGHT_QUANTS = ("mse", "lsq")
DEFAULT_WEIGHT_RANGE = "narrow"  # measured better at 2 bits, see results/qat_accuracy.md
_MIN_CLIP = 1e-8  # a dead channel (all weights 0) must not divide by zero
# An LSQ step never falls below this fraction of its start: a grid 1024x finer than the MSE one
# saturates every weight, so no training wants it, and the bias over such a scale stays within
# 2^10 of its starting size. A power of two: 1 - it is exact, so the start is the MSE grid.
_STEP_FLOOR = 2.0**-10


def weight_qrange(bits: int, weight_range: str) -> tuple[int, int]:
    """Integer range of a weight tensor: narrow is symmetric (2 bits = ternary), full is 2^b codes."""
    if weight_range not in WEIGHT_RANGES:
        raise ValueError(f"weight_range must be one of {WEIGHT_RANGES}, got {weight_range!r}")
    m = 2 ** (bits - 1) - 1
    return (-m if weight_range == "narrow" else -m - 1), m


def fake_quant(x: torch.Tensor, scale: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """scale * clamp(floor(x / scale + 1/2), qmin, qmax), without gradients."""
    return (x / scale).add_(0.5).floor_().clamp_(qmin, qmax).mul_(scale)


class _ClipQuant(torch.autograd.Function):
    """Quantize `x` on the grid clip / qpos * [qmin, qmax]; `clip` is per tensor or per row."""

    @staticmethod
    def forward(ctx, x, clip, qmin: int, qmax: int, qpos: int):
        # The floor on the clip lives here, outside autograd: one graph node per quantizer.
        scale = clip.clamp_min(_MIN_CLIP) / qpos
        if clip.dim() == 1:  # per output channel: broadcast along dim 0
            scale = scale.view(-1, *([1] * (x.dim() - 1)))
        u = x / scale
        y = u.add(0.5).floor_().clamp_(qmin, qmax).mul_(scale)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            # u (not x) is kept: the straight-through mask is one fused kernel on it.
            ctx.save_for_backward(u, y, clip, scale)
        ctx.qrange = (qmin, qmax)
        return y

    @staticmethod
    def backward(ctx, g):
        u, y, clip, scale = ctx.saved_tensors
        # g where qmin < u < qmax, else 0: the clamp's gradient, rounding passed straight through.
        gx = torch.ops.aten.hardtanh_backward(g, u, *ctx.qrange)
        gclip = None
        if ctx.needs_input_grad[1]:
            # d y / d clip = (y - x) / clip inside the clip (rounding error), y / clip outside
            # (+1 above, -1 below a signed clip, 0 below an unsigned one); x = scale * u.
            if clip.dim() == 0:
                gclip = (_dot(g, y) - scale * _dot(gx, u)) / clip
            else:
                dims = tuple(range(1, u.dim()))
                gclip = ((g * y).sum(dims) - scale.view(-1) * (gx * u).sum(dims)) / clip
        return (gx if ctx.needs_input_grad[0] else None), gclip, None, None, None


class _StepQuant(torch.autograd.Function):
    """LSQ: quantize `x` (one row per output channel) with a learned per-row step size.

    d y / d step = q - u inside the clip (rounding error in steps), q at qmin/qmax outside; the
    step's gradient is multiplied by `gscale` = 1 / sqrt(N * qmax) (N = weights per row), LSQ's
    gradient scale that keeps the step's updates in proportion to the weights'.
    """

    @staticmethod
    def forward(ctx, x, step, qmin: int, qmax: int, gscale: float):
        scale = step.clamp_min(_MIN_CLIP).view(-1, *([1] * (x.dim() - 1)))
        u = x / scale
        y = u.add(0.5).floor_().clamp_(qmin, qmax).mul_(scale)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            ctx.save_for_backward(u, y, scale)
        ctx.qrange, ctx.gscale = (qmin, qmax), gscale
        return y

    @staticmethod
    def backward(ctx, g):
        u, y, scale = ctx.saved_tensors
        gx = torch.ops.aten.hardtanh_backward(g, u, *ctx.qrange)
        gstep = None
        if ctx.needs_input_grad[1]:
            # sum g * q - sum g_inside * u, with q = y / scale: two reductions per row.
            dims = tuple(range(1, u.dim()))
            gstep = ((g * y).sum(dims) / scale.view(-1) - (gx * u).sum(dims)) * ctx.gscale
        return (gx if ctx.needs_input_grad[0] else None), gstep, None, None, None


def lsq_grad_scale(numel_per_channel: int, qmax: int) -> float:
    """LSQ's gradient scale of a step size: 1 / sqrt(N * Q_p)."""
    return 1.0 / math.sqrt(numel_per_channel * qmax)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a.reshape(-1), b.reshape(-1))


class ActQuant(nn.Module):
    """Quantizer of one activation tensor with a learned clip `alpha` (scale = alpha / qmax).

    Unsigned (PACT): the ReLU/ReLU6 it replaces becomes the clamp [0, alpha]. Signed: symmetric
    [-alpha, alpha]. While `observer` is a list, the quantizer is off: it applies the float
    activation, appends a sample of its input for calibration and returns the float value.
    """

    def __init__(
        self,
        bits: int,
        signed: bool,
        *,
        float_act: str | None = None,
        init: float = 6.0,
        learn: bool = True,
    ) -> None:
        super().__init__()
        self.bits, self.signed, self.float_act = int(bits), bool(signed), float_act
        self.qmin, self.qmax = qrange(self.bits, self.signed)
        alpha = torch.tensor(float(init))
        if learn:
            self.alpha = nn.Parameter(alpha)
        else:
            self.register_buffer("alpha", alpha)
        self.observer: list[torch.Tensor] | None = None

    @torch.no_grad()
    def set_alpha(self, value: float) -> None:
        self.alpha.fill_(value)

    def clip(self) -> torch.Tensor:
        return self.alpha.clamp_min(_MIN_CLIP)

    def scale(self) -> torch.Tensor:
        """The tensor's scale, computed exactly as the forward computes it (float32)."""
        return self.clip() / self.qmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observer is not None:
            x = _float_act(x, self.float_act)
            self.observer.append(_sample(x))
            return x
        if not torch.is_grad_enabled():  # evaluation: no mask, no saved tensors
            return fake_quant(x, self.scale(), self.qmin, self.qmax)
        return _ClipQuant.apply(x, self.alpha, self.qmin, self.qmax, self.qmax)

    def extra_repr(self) -> str:
        kind = "signed" if self.signed else "unsigned"
        return f"bits={self.bits}, {kind}, alpha={self.alpha.item():.4g}"


class WeightQuant(nn.Module):
    """Per-output-channel symmetric weight quantizer.

    scale_c = clip_c / (2^(b-1) - 1); codes in `weight_qrange(bits, weight_range)`. The clip is
    set per channel to the value of least quantization error (`init_mse`); it stays fixed unless
    `learn_clip`, which measured worse (results/qat_accuracy.md): with Adam its steps are as
    large as the weights' own and the grid drifts while the weights adapt to it.

    `mode="lsq"`: the per-channel step size (= scale) is learned with LSQ's gradient
    (`_StepQuant`), initialised from the MSE clip. It is positive by construction:
    see `step()`, where `step_raw` (0 at the start) is the parameter the optimizer sees.
    d step / d step_raw is 1 at the start, so the updates are LSQ's own there, and they shrink
    in proportion as the step nears its floor, which it therefore never reaches; a plain step
    parameter could cross 0 (issue 25: a channel with step -0.0004 was deployed as zeros). `scale()` and `int_weight` read whichever the mode keeps, so
    the integer conversion is the same for both.

    A channel whose scale is at the floor `_MIN_CLIP` (a dead channel, or a step that
    underflowed) is deployed as a zero-scale channel: codes 0, scale 0, so the conversion gives
    it its bias and nothing else instead of dividing the bias by 1e-8.

    `per_tensor`: one clip / step for the whole tensor (it starts at max|w| at 8 bits, as
    TFLite's, else at the MSE clip over all weights; LSQ's gradient scale is over all of them),
    shared by every row; `scale()` and `int_weight` still give one (equal) scale per row, so
    the conversion reads both kinds alike.
    """

    def __init__(
        self,
        bits: int,
        channels: int,
        weight_range: str = DEFAULT_WEIGHT_RANGE,
        *,
        learn_clip: bool = False,
        mode: str = "mse",
        per_tensor: bool = False,
    ) -> None:
        super().__init__()
        if mode not in WEIGHT_QUANTS:
            raise ValueError(f"weight quantizer mode must be one of {WEIGHT_QUANTS}, got {mode!r}")
        self.bits, self.weight_range, self.mode = int(bits), weight_range, mode
        self.qmin, self.qmax = weight_qrange(self.bits, weight_range)
        self.gscale = 1.0
        self.rows, self.per_tensor = channels, bool(per_tensor)
        channels = 1 if per_tensor else channels  # the learned / fixed grids
        if mode == "lsq":
            self.step_raw = nn.Parameter(torch.zeros(channels))
            self.register_buffer("step_init", torch.ones(channels) / self.qmax)
        elif learn_clip:
            self.clip = nn.Parameter(torch.ones(channels))
        else:
            self.register_buffer("clip", torch.ones(channels))

    def step(self) -> torch.Tensor:
        """LSQ's step sizes, differentiable in `step_raw`: s0 * (f + (1 - f) e^(r / ((1 - f) s0)))
        with s0 = step_init, r = step_raw, f = eps (2^-10), raised to 2 `_MIN_CLIP` / s0 for a
        channel so small that s0 * eps would lie below twice the floor (at most 1/2). Above
        s0 * f however far r falls, so the floor `_MIN_CLIP` is never reached from any start
        above 4 `_MIN_CLIP` (a tiny channel at 8 bits, s0 = 7.7e-6, reached 7.5e-9 with eps
        alone); d step / d r = 1 at r = 0."""
        s0 = self.step_init
        f = (2 * _MIN_CLIP / s0).clamp(_STEP_FLOOR, 0.5)  # exactly eps for any usable channel
        keep = 1.0 - f
        # The cap only guards exp against overflow (a step e^30 times its start is no grid).
        grow = torch.exp((self.step_raw / (keep * s0)).clamp_max(30.0))
        return s0 * (f + keep * grow)

    def _per_row(self, t: torch.Tensor) -> torch.Tensor:
        """`t` (one value per grid) as one value per row: a per-tensor grid's autograd sums
        the rows' gradients into its one value."""
        return t.expand(self.rows) if self.per_tensor else t

    def _floor_and_raw(self) -> tuple[float, torch.Tensor]:
        if self.mode == "lsq":
            return _MIN_CLIP, self._per_row(self.step())
        return _MIN_CLIP / self.qmax, self._per_row(self.clip) / self.qmax

    def scale(self) -> torch.Tensor:
        floor, raw = self._floor_and_raw()
        return raw.clamp_min(floor)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():
            q, scale = self._grid(w)
            return q.mul_(scale.view(-1, *([1] * (w.dim() - 1))))
        if self.mode == "lsq":
            step = self._per_row(self.step())
            return _StepQuant.apply(w, step, self.qmin, self.qmax, self.gscale)
        return _ClipQuant.apply(w, self._per_row(self.clip), self.qmin, self.qmax, self.qmax)

    @torch.no_grad()
    def _grid(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(float codes, per-channel scale) of the deployed weights; floor-clamped channels get
        codes 0 and scale 0."""
        floor, raw = self._floor_and_raw()
        live = raw > floor
        scale = raw.clamp_min(floor)
        view = scale.view(-1, *([1] * (w.dim() - 1)))
        q = (w / view).add_(0.5).floor_().clamp_(self.qmin, self.qmax)
        q.mul_(live.view_as(view).to(q.dtype))
        return q, torch.where(live, scale, torch.zeros_like(scale))

    @torch.no_grad()
    def int_weight(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(integer codes, per-channel scale) such that forward(w) == scale * codes."""
        q, scale = self._grid(w)
        return q.to(torch.int64), scale

    @torch.no_grad()
    def init_mse(self, w: torch.Tensor, steps: int = 46) -> None:
        """Set each channel's clip (a per-tensor quantizer's one clip) to the fraction of
        max|w| (0.1 .. 1) with the least error."""
        flat = w.detach().reshape(1 if self.per_tensor else w.shape[0], -1)
        if self.per_tensor and self.qmax >= 127:
            # As TFLite's int8 weights: the whole range. The tensor's least-MSE clip cuts the
            # few largest weights, which carry the rows they sit in (MLPerf Tiny's ad,
            # calibrated only: mean output error 1.75 against the float file at the MSE clip,
            # 1.11 at max|w|; TFLite's own int8 file 0.69). Sub-byte grids still need the clip.
            clips = flat.abs().amax(1).clamp_min(_MIN_CLIP)
        else:
            clips = _mse_clips(flat, self.qmin, self.qmax, steps)
        self._set_clips(clips)
        if self.mode == "lsq":
            self.gscale = lsq_grad_scale(flat.shape[1], self.qmax)
            # For Adam, which cancels the gradient scale: train.make_optimizer scales the
            # step's learning rate by it instead.
            self.step_raw.lr_scale = self.gscale

    def _set_clips(self, clips: torch.Tensor, rows: torch.Tensor | None = None) -> None:
        rows = torch.arange(len(clips), device=clips.device) if rows is None else rows
        if self.mode == "lsq":
            self.step_init[rows] = clips[rows] / self.qmax
            self.step_raw.data[rows] = 0.0
        else:
            self.clip.data[rows] = clips[rows]

    @torch.no_grad()
    def dead_channels(self, w: torch.Tensor) -> list[int]:
        """Channels deployed as all-zero codes although their float weights are not all zero."""
        q, _ = self._grid(w)
        flat_q, flat_w = q.reshape(len(q), -1), w.detach().reshape(len(q), -1)
        dead = (flat_q == 0).all(1) & (flat_w != 0).any(1)
        return dead.nonzero().view(-1).tolist()

    @torch.no_grad()
    def repair(self, w: torch.Tensor) -> list[int]:
        """Re-initialise the grid of every `dead_channels` channel from its float weights
        (the MSE clip `init_mse` starts from); returns those channels."""
        rows = self.dead_channels(w)
        if self.per_tensor:  # one grid: small rows may round to 0 on it; repaired when all do
            if len(rows) < (w.detach().reshape(len(w), -1) != 0).any(1).sum():
                return []
            self.init_mse(w)
            return rows
        if rows:
            flat = w.detach().reshape(w.shape[0], -1)
            idx = torch.tensor(rows, device=flat.device)
            self._set_clips(_mse_clips(flat, self.qmin, self.qmax), idx)
        return rows

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints from before the positive parametrization hold the step itself (`step`):
        # it becomes step_init with step_raw = 0, the same grid; a step <= 0 becomes the floor,
        # which deploys as a zero-scale channel, as such a channel was deployed (as zeros).
        old = state_dict.pop(prefix + "step", None)
        if old is not None and self.mode == "lsq":
            state_dict.setdefault(prefix + "step_init", old.clamp_min(_MIN_CLIP))
            state_dict.setdefault(prefix + "step_raw", torch.zeros_like(old))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        per = ", per-tensor" if self.per_tensor else ""
        return f"bits={self.bits}, range={self.weight_range} [{self.qmin}, {self.qmax}], {self.mode}{per}"


def _mse_clips(flat: torch.Tensor, qmin: int, qmax: int, steps: int = 46) -> torch.Tensor:
    """Per row, the fraction of max|w| (0.1 .. 1) whose grid has the least squared error."""
    top = flat.abs().amax(1).clamp_min(_MIN_CLIP)
    best_err = torch.full_like(top, float("inf"))
    best = top.clone()
    for f in torch.linspace(0.1, 1.0, steps).tolist():
        clip = top * f
        s = (clip / qmax)[:, None]
        err = (fake_quant(flat, s, qmin, qmax) - flat).pow_(2).sum(1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, clip, best)
    return best


def conv_args(conv: nn.Conv2d) -> tuple:
    """Constructor arguments that rebuild `conv`'s geometry (for drop-in replacements)."""
    return (
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
        conv.padding_mode,
    )


class QConv2d(nn.Conv2d):
    """A Conv2d whose weight is fake-quantized per output channel; same parameter names."""

    def __init__(
        self,
        conv: nn.Conv2d,
        bits: int,
        weight_range: str,
        learn_clip: bool = False,
        mode: str = "mse",
    ) -> None:
        w = conv.weight
        super().__init__(*conv_args(conv), device=w.device, dtype=w.dtype)
        self.weight, self.bias = conv.weight, conv.bias
        self.wq = WeightQuant(
            bits, conv.out_channels, weight_range, learn_clip=learn_clip, mode=mode
        )
        self.wq.to(w.device)
        self.wq.init_mse(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.wq(self.weight), self.bias)


class QLinear(nn.Linear):
    """A Linear whose weight is fake-quantized per output row (or with one scale for the whole
    tensor: `per_tensor`); same parameter names."""

    def __init__(
        self,
        lin: nn.Linear,
        bits: int,
        weight_range: str,
        learn_clip: bool = False,
        mode: str = "mse",
        per_tensor: bool = False,
    ) -> None:
        w = lin.weight
        super().__init__(
            lin.in_features, lin.out_features, lin.bias is not None, device=w.device, dtype=w.dtype
        )
        self.weight, self.bias = lin.weight, lin.bias
        self.wq = WeightQuant(
            bits, lin.out_features, weight_range, learn_clip=learn_clip, mode=mode,
            per_tensor=per_tensor,
        )  # fmt: skip
        self.wq.to(w.device)
        self.wq.init_mse(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.wq(self.weight), self.bias)


def quantize_weight_module(
    m: nn.Module,
    bits: int,
    weight_range: str,
    learn_clip: bool = False,
    mode: str = "mse",
    per_tensor: bool = False,
) -> nn.Module:
    """The fake-quant replacement of a Conv2d or Linear; `per_tensor`: one weight scale for
    the tensor (dense layers: micromix.graph.WeightScales)."""
    if isinstance(m, nn.Conv2d):
        if per_tensor:
            raise ValueError("per-tensor weight scales are for dense layers only")
        return QConv2d(m, bits, weight_range, learn_clip, mode)
    if isinstance(m, nn.Linear):
        return QLinear(m, bits, weight_range, learn_clip, mode, per_tensor)
    raise TypeError(f"cannot quantize the weights of {type(m).__name__}")


def _float_act(x: torch.Tensor, act: str | None) -> torch.Tensor:
    if act == "relu":
        return F.relu(x)
    if act == "relu6":
        return F.relu6(x)
    return x


_SAMPLE = 1 << 16


def _sample(x: torch.Tensor) -> torch.Tensor:
    """A fixed-size deterministic sample of a tensor's values (calibration statistics)."""
    flat = x.detach().reshape(-1)
    if flat.numel() <= _SAMPLE:
        return flat.float().cpu()
    g = torch.Generator(device="cpu").manual_seed(flat.numel())
    idx = torch.randint(flat.numel(), (_SAMPLE,), generator=g).to(flat.device)
    # Keep the extreme value too: a clip below the true maximum must be a choice, not an accident.
    return torch.cat([flat[idx], flat.abs().max().view(1)]).float().cpu()
