"""C calls of the kernels in mm_ops.c (pooling with padding, concat, tables, multiply)."""

from __future__ import annotations

from ..integer.model import IntOp


def _fmt(bits: int, signed: bool, out_bits: int) -> str:
    return f"MM_FMT({bits}, {int(signed)}, 0, {out_bits}, 0)"


def ops_call(iop: IntOp, a: list[str], y: str, arr: dict[str, str]) -> str | None:
    """The C statement(s) of `iop`, or None for an op the original kernels run.

    `a` are the input pointers, `y` the output pointer, `arr` the C names of its constants.
    """
    op = iop.op
    c, h, w = op.in_shape
    oc, oh, ow = op.out_shape
    lim = f"{iop.qmin}, {iop.qmax}"
    (kh, kw), (sh, sw), (ph, pw) = iop.kernel, iop.stride, iop.padding
    fmt = _fmt(iop.in_bits[0], iop.in_signed[0], iop.out_bits)
    geom = f"{c}, {h}, {w}, {oh}, {ow}, {kh}, {kw}, {sh}, {sw}, {ph}, {pw}"
    if op.kind == "maxpool":
        return f"mm_maxpool({a[0]}, {y}, {arr['mult']}, {arr['shift']}, {geom},\n               {fmt}, {lim});"
    if op.kind == "avgpool":
        if iop.padding == (0, 0) and iop.stride == iop.kernel:
            return None  # mm_avgpool: windows that tile the input
        per = int(not op.count_include_pad)
        return (
            f"mm_avgpool_pad({a[0]}, {y}, {arr['mult']}, {arr['shift']}, {geom}, {per},\n"
            f"                   {fmt}, {lim});"
        )
    if op.kind == "cat":
        parts, off = [], 0
        for i, x in enumerate(a):
            ci = op.in_shapes[i][0]
            f = _fmt(iop.in_bits[i], iop.in_signed[i], iop.out_bits)
            parts.append(
                f"mm_concat({x}, {y}, {arr['mult']} + {i}, {arr['shift']} + {i}, {ci}, {off}, "
                f"{oc}, {oh}, {ow}, {f}, {lim});"
            )
            off += ci
        return "\n    ".join(parts)
    if op.kind == "lut":
        return f"mm_lut({a[0]}, {y}, {arr['table']}, {c}, {h}, {w}, {fmt});"
    if op.kind == "mul":
        fg = _fmt(iop.in_bits[1], iop.in_signed[1], 0)
        per_pixel = int(op.in_shapes[1][1:] != (1, 1))
        return (
            f"mm_mul({a[0]}, {a[1]}, {y}, {arr['mult']}, {arr['shift']}, {c}, {h}, {w}, "
            f"{per_pixel},\n           {fmt}, {fg}, {lim});"
        )
    return None
