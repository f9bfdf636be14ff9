"""pad: zero padding of the height and width by any amounts, asymmetric too (nn.ZeroPad2d,
nn.ConstantPad2d with value 0, F.pad in constant mode with value 0): the "same" padding that
models converted from TensorFlow carry as an op of its own, with a ReLU / ReLU6 fused.

Integer semantics: the input's codes at their place, the code of the real 0 (which is 0)
around them, requantized by s_in / s_out (exactly 1 when it keeps its input's quantizer).
`Op.padding` holds the top and left amounts; the bottom and right ones are what the output
shape leaves.
"""

from __future__ import annotations

import numpy as np
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from ..ir import Op
from ..numerics.intop import IntOp
from .common import (
    finish,
    requant_params,
    rescale_op,
    same_real,
    unary_call,
)
from .registry import OpDef, register
from .tracing import Args, Fuser, chw, input_of, read_args, refuse

PAD = Args("padding", ("pad", "mode", "value"), dict(mode="constant", value=None))
PAD_MODULE = Args("padding", ("padding", "value"), dict(value=0.0))


def amounts(op: Op) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) rows and columns of zeros."""
    (top, left), (_, h, w), (_, oh, ow) = op.padding, op.in_shape, op.out_shape
    return top, oh - h - top, left, ow - w - left


def _read(fz: Fuser, node: torch.fx.Node) -> tuple[Args, tuple, object]:
    if node.op == "call_module":
        a = read_args(fz, node, PAD_MODULE)
        return PAD_MODULE, tuple(a["padding"]), a["value"]
    a = read_args(fz, node, PAD)
    if a["mode"] != "constant":
        raise refuse(fz, node, PAD, "mode", a["mode"], "only zero padding")
    return PAD, tuple(a["pad"]), a["value"]


def trace(fz: Fuser, node: torch.fx.Node) -> None:
    x = input_of(fz, node)
    spec, pad, value = _read(fz, node)
    if value not in (None, 0, 0.0):
        raise refuse(fz, node, spec, "value", value, "only zero padding: zero is the code 0")
    if len(pad) not in (2, 4) or any(not isinstance(p, int) or p < 0 for p in pad):
        raise refuse(
            fz, node, spec, "pad", pad, "it takes (left, right[, top, bottom]) of whole, "
            "non-negative amounts (height and width only)",
        )  # fmt: skip
    left, _right, top, _bottom = (*pad, 0, 0)[:4]
    c, h, w = fz.shapes[x]
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    out = chw(last)
    fz.signed[fz.name_for(node)] = act is None and fz.signed[x]
    fz.emit(
        node, nodes, last, kind="pad", inputs=(x,), in_shape=(c, h, w),
        macs=out[0] * out[1] * out[2], act=act, padding=(top, left),
    )  # fmt: skip


def run(iop: IntOp, x: np.ndarray) -> np.ndarray:
    top, bottom, left, right = amounts(iop.op)
    return finish(iop, np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0))))


C_SOURCE = r"""/* micromix: zero padding of height and width (micromix.ops.pad). d->pad_h / pad_w are the top
 * and left amounts; the output size gives the bottom and right ones. */
#include "mm_kernels.h"

void mm_pad(const uint8_t *in, uint8_t *out, const mm_conv_dims *d, const mm_quant_params *q)
{
    const int ib = q->in_bits, is = q->in_signed, ob = q->out_bits;
    const int32_t in_pix = mm_bytes(d->in_c, ib), o_pix = mm_bytes(d->out_c, ob);
    for (int oy = 0; oy < d->out_h; oy++)
        for (int ox = 0; ox < d->out_w; ox++) {
            const int iy = oy - d->pad_h, ix = ox - d->pad_w;
            const int inside = iy >= 0 && iy < d->in_h && ix >= 0 && ix < d->in_w;
            const uint8_t *px = inside ? in + ((int32_t)iy * d->in_w + ix) * in_pix : in;
            mm_writer wr = {out + ((int32_t)oy * d->out_w + ox) * o_pix, 0, 0, ob};
            for (int ch = 0; ch < d->in_c; ch++)
                mm_put(&wr, mm_requant_call(inside ? mm_get(px, ch, ib, is) : 0, q->mult[0],
                                            q->shift[0], q->qmin, q->qmax));
            mm_flush(&wr);
        }
}
"""

register(
    OpDef(
        kind="pad",
        describe="zero padding (ZeroPad2d, F.pad)",
        trace=trace,
        params=lambda op, in_bits=None: requant_params(op),
        kernel=lambda op, w_bits, in_bits: "mm_pad",
        convert=rescale_op,
        run=run,
        real=same_real,
        emit=unary_call("mm_pad"),
        keeps_grid=True,
        modules=(nn.ZeroPad2d, nn.ConstantPad2d),
        functions=(F.pad,),
        c_source=C_SOURCE,
        c_decl="void mm_pad(const uint8_t *in, uint8_t *out, const mm_conv_dims *d,\n"
        "            const mm_quant_params *q);",
    )
)
