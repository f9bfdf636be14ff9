"""upsample: nearest-neighbour upsampling by whole factors (nn.Upsample / UpsamplingNearest2d,
F.interpolate with mode "nearest" or "nearest-exact"), the decoder and feature-pyramid op,
with a ReLU / ReLU6 fused.

Integer semantics: output pixel (y, x) is input pixel (y // f_h, x // f_w), requantized by
s_in / s_out (exactly 1, 2^30 >> 30, when it keeps its input's quantizer). The factors are
out / in of each side; the Op records no extra field for them.
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

INTERPOLATE = Args(
    "upsampling",
    ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias"),
    dict(size=None, scale_factor=None, mode="nearest", align_corners=None,
         recompute_scale_factor=None, antialias=False),
)  # fmt: skip


def factors(op: Op) -> tuple[int, int]:
    """(f_h, f_w): how many output rows and columns each input pixel fills."""
    return op.out_shape[1] // op.in_shape[1], op.out_shape[2] // op.in_shape[2]


def trace(fz: Fuser, node: torch.fx.Node) -> None:
    x = input_of(fz, node)
    a = read_args(fz, node, INTERPOLATE)
    if a["mode"] not in ("nearest", "nearest-exact"):
        raise refuse(fz, node, INTERPOLATE, "mode", a["mode"], "only nearest upsampling")
    if a.get("antialias"):
        raise refuse(fz, node, INTERPOLATE, "antialias", True, "only nearest upsampling")
    c, h, w = fz.shapes[x]
    nodes = [node]
    last, act = fz.absorb_act(node, nodes)
    out = chw(last)
    if out[1] < h or out[2] < w or out[1] % h or out[2] % w:
        raise refuse(
            fz, node, INTERPOLATE, "output size", out[1:],
            f"it must be a whole multiple of the input's {h}x{w}",
        )  # fmt: skip
    fz.signed[fz.name_for(node)] = act is None and fz.signed[x]
    fz.emit(
        node, nodes, last, kind="upsample", inputs=(x,), in_shape=(c, h, w),
        macs=out[0] * out[1] * out[2], act=act,
    )  # fmt: skip


def run(iop: IntOp, x: np.ndarray) -> np.ndarray:
    fh, fw = factors(iop.op)
    return finish(iop, x.repeat(fh, axis=1).repeat(fw, axis=2))


C_SOURCE = r"""/* micromix: nearest-neighbour upsampling by whole factors (micromix.ops.upsample). */
#include "mm_kernels.h"

void mm_upsample(const uint8_t *in, uint8_t *out, const mm_conv_dims *d, const mm_quant_params *q)
{
    const int ib = q->in_bits, is = q->in_signed, ob = q->out_bits;
    const int32_t in_pix = mm_bytes(d->in_c, ib), o_pix = mm_bytes(d->out_c, ob);
    const int fy = d->out_h / d->in_h, fx = d->out_w / d->in_w;
    for (int oy = 0; oy < d->out_h; oy++)
        for (int ox = 0; ox < d->out_w; ox++) {
            const uint8_t *px = in + ((int32_t)(oy / fy) * d->in_w + ox / fx) * in_pix;
            mm_writer wr = {out + ((int32_t)oy * d->out_w + ox) * o_pix, 0, 0, ob};
            for (int ch = 0; ch < d->in_c; ch++)
                mm_put(&wr, mm_requant_call(mm_get(px, ch, ib, is), q->mult[0], q->shift[0],
                                            q->qmin, q->qmax));
            mm_flush(&wr);
        }
}
"""

register(
    OpDef(
        kind="upsample",
        describe="nearest upsampling by whole factors",
        trace=trace,
        params=lambda op, in_bits=None: requant_params(op),
        kernel=lambda op, w_bits, in_bits: "mm_upsample",
        convert=rescale_op,
        run=run,
        real=same_real,
        emit=unary_call("mm_upsample"),
        keeps_grid=True,
        patch_fill=lambda op: None,  # its receptive field is not a window: no patches
        modules=(nn.Upsample,),
        functions=(F.interpolate,),
        c_source=C_SOURCE,
        c_decl="void mm_upsample(const uint8_t *in, uint8_t *out, const mm_conv_dims *d,\n"
        "                 const mm_quant_params *q);",
    )
)
