"""C99 source generation for an IntegerModel.

The generated folder holds the deployable library in lib/ (micromix_model.h/.c: zero-copy
entry points and one static arena; micromix_weights.c: exactly the arrays the memory model
counts, nothing else; the kernels, copied templates; a Makefile and a CMakeLists.txt) and,
beside it, the host self-test and the test-only Cortex-M4 image built from it. Sizes and
arena offsets come from the IntegerModel's MemoryReport; nothing here computes a size.
"""

from __future__ import annotations

import re
import shutil
import struct
from importlib import resources
from pathlib import Path

import numpy as np

from ..integer.arith import pack_bits
from ..integer.model import IntegerModel, IntOp
from ..memory import is_pointwise_sub as memory_pointwise_sub
from ..memory import kernel_constant, kernel_of, param_arrays
from .cgen_ops import ops_call

# Files of the export that are not part of the library: the self-test harness, the bare-metal
# images and the library's own build files. Every other mm_*.c / mm_*.h template is a kernel
# file and goes into the library (so a new kernel file is picked up without a list to edit).
HARNESS_FILES = frozenset(
    {
        "Makefile",
        "mm_selftest.c",
        "mm_cm4.h",
        "mm_cm4_main.c",
        "mm_cm4_startup.c",
        "mm_an386.ld",
        "mm_fw_main.c",
        "Makefile.lib",
        "CMakeLists.txt",
        "arm-none-eabi.cmake",
    }
)
HOST_FILES = ("mm_selftest.c", "Makefile")
CM4_FILES = ("mm_cm4.h", "mm_cm4_main.c", "mm_cm4_startup.c", "mm_an386.ld")
LIB_DIR = "lib"  # the deployable library, beside the harness in the export folder


def kernel_files() -> tuple[str, ...]:
    """Every kernel template (mm_*.c and mm_*.h that are not harness files), sorted."""
    names = (p.name for p in resources.files("micromix.export").joinpath("templates").iterdir())
    return tuple(
        sorted(n for n in names if re.fullmatch(r"mm_\w+\.[ch]", n) and n not in HARNESS_FILES)
    )


KERNEL_FILES = kernel_files()
CTYPES = {"int32": "int32_t", "int8": "int8_t", "uint8": "uint8_t"}

SELFTEST_MAGIC = b"MMT1"


def template(name: str) -> str:
    return resources.files("micromix.export").joinpath("templates", name).read_text()


def c_name(step: int, op_name: str, suffix: str) -> str:
    """C identifier of one constant array; the step number keeps it unique."""
    return f"mm_L{step:02d}_{re.sub(r'[^0-9A-Za-z]', '_', op_name)}_{suffix}"


def is_pointwise8(iop: IntOp) -> bool:
    """The kernels' MM_IS_PW8: an 8-bit-input, 8-bit-weight conv or linear whose patch is one
    contiguous run of input bytes (1x1 without padding, or a window covering the whole input)
    runs mm_pointwise8, which reads its weights in the interleaved order of `kernel_layout`.
    So does MM_IS_PW8S: a 1x1 layer with 8-bit weights and 2/4-bit inputs of 32 to MM_PATCH
    channels (the kernel widens each input pixel to bytes first)."""
    op = iop.op
    if op.kind not in ("conv", "linear") or iop.groups != 1:
        return False
    if (iop.w_bits or 8) != 8 or tuple(iop.padding) != (0, 0):
        return False
    (kh, kw), (c, h, w), (_, oh, ow) = iop.kernel, op.in_shape, op.out_shape
    if iop.in_bits[0] != 8:  # MM_IS_PW8S: 2/4-bit inputs widened to bytes per pixel
        return (kh, kw) == (1, 1) and 32 <= c <= kernel_constant("MM_PATCH")
    return (kh, kw) == (1, 1) or ((kh, kw) == (h, w) and (oh, ow) == (1, 1))


def is_pointwise_sub(iop: IntOp) -> bool:
    """The kernels' MM_IS_PWSUB (memory.is_pointwise_sub): mm_pointwise_sub on every core,
    which reads its weight rows in blocks of four (`kernel_layout`)."""
    return memory_pointwise_sub(iop.op, iop.w_bits)


def interleave4(rows: np.ndarray, head: int) -> np.ndarray:
    """Rows (one per output channel, bytes) in blocks of four: the first `head` bytes (a
    multiple of 4) of the block's rows as 4-byte words, word after word and row after row within
    a word; then each row's remaining bytes, row after row. Rows after the last full block stay
    as they are. A permutation of the bytes."""
    cout = rows.shape[0]
    blocks = []
    for b in range(cout // 4):
        r = rows[4 * b : 4 * b + 4]
        blocks.append(r[:, :head].reshape(4, head // 4, 4).transpose(1, 0, 2).reshape(-1))
        blocks.append(r[:, head:].reshape(-1))
    blocks.append(rows[cout - cout % 4 :].reshape(-1))
    return np.concatenate(blocks)


def depthwise_layout(iop: IntOp) -> np.ndarray | None:
    """mm_depthwise's weight bytes, or None where it reads natural rows (kernels above
    MM_DW_TAPS taps). Channels in groups of four: a group is row_bytes words; byte j of word
    k holds channel j's taps k * per .. k * per + per - 1 (per = 8 // w_bits), the first in
    the top bits; the last c % 4 channels keep their natural rows. Same byte count."""
    op = iop.op
    if op.kind != "conv" or kernel_of(op, iop.w_bits or 8) != "depthwise":
        return None
    (kh, kw), c, wb = iop.kernel, op.out_shape[0], iop.w_bits
    taps = kh * kw
    if taps > kernel_constant("MM_DW_TAPS"):
        return None
    per, c4 = 8 // wb, c - c % 4
    words = -(-taps // per)
    vals = np.zeros((c, words * per), dtype=np.int64)
    vals[:, :taps] = iop.weight_matrix().reshape(c, taps)
    g = vals[:c4].reshape(c4 // 4, 4, words, per).transpose(0, 2, 1, 3)[..., ::-1]
    head = pack_bits(g.reshape(-1, per), wb, signed=True).reshape(-1)
    tail = np.asarray(iop.weights, dtype=np.uint8).reshape(c, -1)[c4:].reshape(-1)
    return np.concatenate([head, tail])


def kernel_layout(iop: IntOp) -> np.ndarray:
    """The packed weight bytes in the order the kernel reads them (same bytes, same count).

    mm_depthwise: see depthwise_layout.
    mm_pointwise8: each block of four rows interleaves 4-byte runs (row 0 bytes 0-3, row 1
    bytes 0-3, row 2, row 3, then bytes 4-7 of each ...), followed by the last row % 4 bytes of
    each row, row after row; rows after the last full block stay as they are.
    mm_pointwise_sub (MM_IS_PWSUB): the same over the bytes of the whole blocks of 32 / w_bits
    elements. Other kernels read the natural row order.
    """
    w = np.asarray(iop.weights, dtype=np.uint8)
    dw = depthwise_layout(iop)
    if dw is not None:
        assert dw.size == w.size
        return dw.reshape(w.shape)
    cout = iop.op.out_shape[0]
    rows = w.reshape(cout, -1)
    if is_pointwise_sub(iop):  # words over the whole blocks of 32 / w_bits elements
        c = iop.op.in_shape[0]
        flat = interleave4(rows, (c - c % (32 // iop.w_bits)) * iop.w_bits // 8)
    elif is_pointwise8(iop):
        flat = interleave4(rows, rows.shape[1] - rows.shape[1] % 4)
    else:
        return w
    assert flat.size == w.size
    return flat.reshape(w.shape)


def const_arrays(imodel: IntegerModel) -> list[tuple[str, str, np.ndarray]]:
    """(C name, C type, values) of every constant, int32 arrays first, then the byte arrays.

    That order leaves no alignment padding between arrays (each int32 array is a multiple of
    4 bytes), so the section is exactly the memory model's FLASH figure.
    """
    out = []
    for step, iop in enumerate(imodel.ops):
        if iop.weights is not None:
            out.append((c_name(step, iop.name, "w"), "uint8", kernel_layout(iop)))
        for suffix, ctype, count in param_arrays(iop.op, iop.in_bits[0]):
            a = iop.arrays[suffix]
            if a.shape != (count,) or a.dtype != np.dtype(ctype):
                raise ValueError(f"parameter {suffix} of {iop.name} has shape {a.shape}, {a.dtype}")
            out.append((c_name(step, iop.name, suffix), ctype, a))
    return sorted(out, key=lambda t: t[1] != "int32")  # stable: schedule order within a type


def _literal(v: int, ctype: str) -> str:
    # -2^31 is not an int literal in C (it is the negation of a too-large one).
    return "(-2147483647 - 1)" if ctype == "int32" and v == -(2**31) else str(v)


def _array_c(name: str, ctype: str, values: np.ndarray) -> str:
    vals = [_literal(int(v), ctype) for v in values.reshape(-1)]
    lines = [", ".join(vals[i : i + 16]) for i in range(0, len(vals), 16)]
    align = "MM_ALIGN4" if ctype == "int32" else "MM_ALIGN1"
    body = ",\n    ".join(lines)
    return f"const {CTYPES[ctype]} {name}[{len(vals)}] {align} = {{\n    {body}\n}};\n"


def weights_sources(imodel: IntegerModel) -> tuple[str, str]:
    """(micromix_weights.h, micromix_weights.c)."""
    arrays = const_arrays(imodel)
    total = sum(a.nbytes for _, _, a in arrays)
    if total != imodel.report.flash_bytes:  # the export never computes its own sizes
        raise ValueError(
            f"constants {total} B differ from the memory model's FLASH {imodel.report.flash_bytes} B"
        )
    decls = "\n".join(f"extern const {CTYPES[t]} {n}[{a.size}];" for n, t, a in arrays)
    h = f"""/* Generated by micromix: the model's constant arrays ({total} bytes = the memory model's FLASH). */
#ifndef MICROMIX_WEIGHTS_H
#define MICROMIX_WEIGHTS_H
#include <stdint.h>

/* Natural alignment only: gcc would otherwise over-align large arrays (padding FLASH). */
#if defined(__GNUC__)
#define MM_ALIGN4 __attribute__((aligned(4)))
#define MM_ALIGN1 __attribute__((aligned(1)))
#else
#define MM_ALIGN4
#define MM_ALIGN1
#endif

{decls}

#endif
"""
    c = (
        "/* Generated by micromix: packed weights (rows padded to bytes, little-endian within a\n"
        " * byte) and the integer parameters of every op. Nothing else is constant data. */\n"
        '#include "micromix_weights.h"\n\n' + "\n".join(_array_c(n, t, a) for n, t, a in arrays)
    )
    return h, c


def _fmt(in_bits: int, in_signed: bool, w_bits: int, out_bits: int, bias_shift: int = 0) -> str:
    return f"MM_FMT({in_bits}, {int(in_signed)}, {w_bits}, {out_bits}, {bias_shift})"


def _call(step: int, iop: IntOp, offsets: dict[str, int], sizes: dict[str, int]) -> str:
    op = iop.op
    # MM_IN / MM_OUT are the arena pointers, or exact-size heap copies in guarded builds.
    a = [f"MM_IN(a + {offsets[t]}, {sizes[t]})" for t in op.inputs]
    y = f"MM_OUT(a + {offsets[op.output]}, {sizes[op.output]})"
    arr = {s: c_name(step, op.name, s) for s, _, _ in param_arrays(op, iop.in_bits[0])}
    new = ops_call(iop, a, y, arr)  # pooling with padding, concat, tables, multiply
    if new is not None:
        return new
    lim = f"{iop.qmin}, {iop.qmax}"
    c, h, w = op.in_shape
    oc, oh, ow = op.out_shape
    if op.kind in ("conv", "linear"):
        (kh, kw), (sh, sw), (ph, pw) = iop.kernel, iop.stride, iop.padding
        fmt = _fmt(iop.in_bits[0], iop.in_signed[0], iop.w_bits or 8, iop.out_bits, iop.bias_shift)
        kernel = kernel_of(op, iop.w_bits or 8)
        if kernel == "small":
            # What mm_conv would pick (MM_IS_SMALL), called directly so no stack frames nest.
            return (
                f"mm_conv_small({a[0]}, {y}, {c_name(step, op.name, 'w')}, {arr['bias']}, "
                f"{arr['mult']}, {arr['shift']},\n                  {c}, {h}, {w}, {oc}, {oh}, "
                f"{ow}, {kh}, {kw}, {sh}, {sw}, {ph}, {pw}, {fmt}, {lim}, s);"
            )
        if kernel == "depthwise":
            return (
                f"mm_depthwise({a[0]}, {y}, {c_name(step, op.name, 'w')}, {arr['bias']}, "
                f"{arr['mult']}, {arr['shift']},\n                 {c}, {h}, {w}, {oh}, {ow}, "
                f"{kh}, {kw}, {sh}, {sw}, {ph}, {pw}, {fmt}, {lim}, s);"
            )
        return (
            f"mm_conv({a[0]}, {y}, {c_name(step, op.name, 'w')}, {arr['bias']}, {arr['mult']}, "
            f"{arr['shift']},\n            {c}, {h}, {w}, {oc}, {oh}, {ow}, {kh}, {kw}, {sh}, {sw}, "
            f"{ph}, {pw}, {iop.groups}, {fmt}, {lim}, s);"
        )
    if op.kind == "add":
        fa = _fmt(iop.in_bits[0], iop.in_signed[0], 0, iop.out_bits)
        fb = _fmt(iop.in_bits[1], iop.in_signed[1], 0, 0)
        return (
            f"mm_add({a[0]}, {a[1]}, {y}, {arr['mult']}, {arr['shift']}, {c}, {h}, {w},\n"
            f"           {fa}, {fb}, {lim});"
        )
    if op.kind == "avgpool":
        (kh, kw) = iop.kernel
        fmt = _fmt(iop.in_bits[0], iop.in_signed[0], 0, iop.out_bits)
        return (
            f"mm_avgpool({a[0]}, {y}, {arr['mult']}, {arr['shift']}, {c}, {h}, {w}, {oh}, {ow}, "
            f"{kh}, {kw},\n               {fmt}, {lim});"
        )
    raise ValueError(f"no C kernel for op kind {op.kind}")


def _describe(step: int, iop: IntOp) -> str:
    op = iop.op
    bits = (
        "".join(f"{'s' if s else 'u'}{b} " for b, s in zip(iop.in_bits, iop.in_signed))
        + f"-> {'s' if iop.out_signed else 'u'}{iop.out_bits}"
    )
    wb = f", w{iop.w_bits}" if iop.w_bits else ""
    geo = ""
    if op.kind == "conv":
        geo = f" {op.kernel[0]}x{op.kernel[1]}/{op.stride[0]}" + (" dw" if op.is_depthwise else "")
    # Layer names come from the user's model: sanitized so a name cannot end the comment.
    return comment_text(
        f"{step} {op.name}: {op.kind}{geo} {op.in_shape} -> {op.out_shape}, {bits}{wb}"
    )


def comment_text(text: str) -> str:
    """`text` made safe inside a C block comment: printable ASCII on one line, and no comment
    delimiters (`*/` would end the comment and let the rest of a layer name become code)."""
    s = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    while "*/" in s or "/*" in s:
        s = s.replace("*/", "*_/").replace("/*", "/_*")
    return s


def model_sources(imodel: IntegerModel) -> tuple[str, str]:
    """(micromix_model.h, micromix_model.c)."""
    g, rep = imodel.graph, imodel.report
    c, h, w = imodel.input_shape
    oc, oh, ow = imodel.output_shape
    in_bytes, out_bytes = rep.tensor_bytes[g.input], rep.tensor_bytes[g.output]
    if in_bytes != c * h * w or out_bytes != oc * oh * ow:  # both are 8-bit by policy
        raise ValueError("the network input and logits must be 8-bit")
    otype = "int8_t" if imodel.output_signed else "uint8_t"
    header = f"""/* Generated by micromix: integer-only {len(imodel.ops)}-op network. */
#ifndef MICROMIX_MODEL_H
#define MICROMIX_MODEL_H
#include <stdint.h>

#define MICROMIX_INPUT_C {c}
#define MICROMIX_INPUT_H {h}
#define MICROMIX_INPUT_W {w}
#define MICROMIX_INPUT_BYTES {in_bytes}
#define MICROMIX_OUTPUT_BYTES {out_bytes} /* {oc} x {oh} x {ow}, HWC */
#define MICROMIX_OUTPUT_T {otype}
#define MICROMIX_ARENA_BYTES {rep.arena_bytes} /* activations: one static arena */
#define MICROMIX_SCRATCH_BYTES {rep.scratch_bytes} /* the kernels' shared scratch buffer */
#define MICROMIX_RAM_BYTES {rep.ram_bytes} /* the memory model's RAM: arena + scratch */
#define MICROMIX_FLASH_BYTES {rep.flash_bytes} /* the memory model's FLASH: all constant arrays */
#define MICROMIX_MACS {sum(o.macs for o in g.ops)}

/* Zero-copy I/O. The input and the output are slots of the static arena (so the input frame
 * is inside MICROMIX_RAM_BYTES and the application needs no buffer of its own):
 *   1. write one image into micromix_input(): MICROMIX_INPUT_BYTES bytes, uint8, H x W x C
 *      (channels innermost, raw pixels 0..255, the same scaling as in training);
 *   2. micromix_run() reads it there and writes the outputs in place (it overwrites the input);
 *   3. read MICROMIX_OUTPUT_BYTES outputs from micromix_output(); they stay valid until the
 *      next image is written (input and output may share arena bytes).
 * Not reentrant: all activations live in one static arena. micromix_run returns 0. */
uint8_t *micromix_input(void);
const MICROMIX_OUTPUT_T *micromix_output(void);
int micromix_run(void);

/* Convenience: copies `image` (H x W x C) into the input slot, runs, copies the outputs to
 * `logits`. Costs the caller's own MICROMIX_INPUT_BYTES image buffer beside the arena. */
int micromix_run_copy(const uint8_t *image, MICROMIX_OUTPUT_T *logits);

#endif
"""
    steps = []
    for step, iop in enumerate(imodel.ops):
        out = iop.op.output
        steps.append(
            f"    /* {_describe(step, iop)} */\n    MM_STEP_BEGIN();\n"
            f"    {_call(step, iop, rep.offsets, rep.tensor_bytes)}\n"
            f"    mm_unguard();\n"
            f"    MM_STEP_END({step}, {rep.offsets[out]}, {rep.tensor_bytes[out]});"
        )
    body = "\n".join(steps)
    source = f"""/* Generated by micromix. Arena plan (byte offsets) from the memory model:
{chr(10).join(f" *   {comment_text(n)}: {rep.offsets[n]} + {rep.tensor_bytes[n]}" for n in g.tensors)}
 */
#include <string.h>

#include "micromix_model.h"
#include "micromix_weights.h"
#include "mm_kernels.h"

#ifdef MICROMIX_GUARD_TENSORS
#include "mm_guard.h" /* test builds: every tensor an exact-size heap block per step */
#else
#define MM_IN(p, len) (p)
#define MM_OUT(p, len) (p)
#define mm_unguard()
#endif

#ifdef MICROMIX_CHECK_WRITES
#define MM_SCRATCH_GUARD 16 /* words past the scratch that no kernel may write */
#define MM_GUARD_WORD 0x5A5A5A5A
#else
#define MM_SCRATCH_GUARD 0
#endif

static uint8_t micromix_arena[MICROMIX_ARENA_BYTES];
/* int32 words keep the kernels' int32 tables aligned. */
static int32_t micromix_scratch[MICROMIX_SCRATCH_BYTES / 4 + MM_SCRATCH_GUARD];

#ifdef MICROMIX_CHECK_WRITES
/* Test builds only (-DMICROMIX_CHECK_WRITES): each kernel may change the bytes of its own
 * output tensor and nothing else in the arena, and nothing past the memory model's scratch
 * size; a shadow copy of the arena and a guard after the scratch prove it. */
#include <stdio.h>
#include <stdlib.h>
static uint8_t mm_shadow[MICROMIX_ARENA_BYTES];
static void MM_STEP_BEGIN(void)
{{
    memcpy(mm_shadow, micromix_arena, MICROMIX_ARENA_BYTES);
    for (int i = 0; i < MM_SCRATCH_GUARD; i++)
        micromix_scratch[MICROMIX_SCRATCH_BYTES / 4 + i] = MM_GUARD_WORD;
}}
static void MM_STEP_END(int step, long off, long len)
{{
    for (long i = 0; i < MICROMIX_ARENA_BYTES; i++)
        if ((i < off || i >= off + len) && mm_shadow[i] != micromix_arena[i]) {{
            fprintf(stderr, "step %d wrote arena byte %ld outside its output\\n", step, i);
            abort();
        }}
    for (int i = 0; i < MM_SCRATCH_GUARD; i++)
        if (micromix_scratch[MICROMIX_SCRATCH_BYTES / 4 + i] != MM_GUARD_WORD) {{
            fprintf(stderr, "step %d wrote past the %d scratch bytes\\n", step,
                    MICROMIX_SCRATCH_BYTES);
            abort();
        }}
}}
#else
#define MM_STEP_BEGIN()
#define MM_STEP_END(step, off, len)
#endif

uint8_t *micromix_input(void) {{ return micromix_arena + {rep.offsets[g.input]}; }}

const MICROMIX_OUTPUT_T *micromix_output(void)
{{
    return (const MICROMIX_OUTPUT_T *)(micromix_arena + {rep.offsets[g.output]});
}}

int micromix_run(void)
{{
    uint8_t *const a = micromix_arena;
    void *const s = micromix_scratch;
{body}
    return 0;
}}

int micromix_run_copy(const uint8_t *image, MICROMIX_OUTPUT_T *logits)
{{
    memcpy(micromix_input(), image, MICROMIX_INPUT_BYTES);
    micromix_run();
    memcpy(logits, micromix_output(), MICROMIX_OUTPUT_BYTES);
    return 0;
}}
"""
    return header, source


def hwc(images: np.ndarray) -> np.ndarray:
    """uint8 N x C x H x W -> N x H x W x C, the C entry point's layout."""
    return np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 2, 3, 1))


def outputs_bytes(outputs: np.ndarray) -> np.ndarray:
    """Reference outputs (N, C) or (N, C, H, W) as the bytes micromix_run writes (HWC)."""
    y = np.asarray(outputs)
    if y.ndim == 4:
        y = y.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(y.reshape(len(y), -1)).view(np.uint8)


def selftest_bytes(images: np.ndarray, outputs: np.ndarray) -> bytes:
    x, y = hwc(images).reshape(len(images), -1), outputs_bytes(outputs)
    head = SELFTEST_MAGIC + struct.pack("<III", len(x), x.shape[1], y.shape[1])
    return head + x.tobytes() + y.tobytes()


def testdata_source(images: np.ndarray, outputs: np.ndarray) -> str:
    """mm_testdata.c: images and expected outputs embedded for the bare-metal self-test."""
    x, y = hwc(images).reshape(-1), outputs_bytes(outputs).reshape(-1)
    return (
        "/* Generated by micromix: test images (HWC) and the numpy reference's outputs. */\n"
        "#include <stdint.h>\n\n"
        f"const int mm_test_count = {len(images)};\n"
        + _array_c("mm_test_images", "uint8", x).replace(" MM_ALIGN1", "")
        + _array_c("mm_test_expected", "uint8", y).replace(" MM_ALIGN1", "")
    )


def library_files(imodel: IntegerModel) -> dict[str, str]:
    """The deployable library: model, weights, kernels, their build files; no main, no data."""
    files: dict[str, str] = {}
    files["micromix_model.h"], files["micromix_model.c"] = model_sources(imodel)
    files["micromix_weights.h"], files["micromix_weights.c"] = weights_sources(imodel)
    for name in kernel_files():
        files[name] = template(name)
    files["Makefile"] = template("Makefile.lib")
    files["CMakeLists.txt"] = template("CMakeLists.txt")
    files["cmake/arm-none-eabi.cmake"] = template("arm-none-eabi.cmake")
    return files


def library_files_names(files: dict) -> list[str]:
    return [
        k[len(LIB_DIR) + 1 :] for k in files if k.startswith(LIB_DIR + "/") and k.endswith(".c")
    ]


def write_sources(
    imodel: IntegerModel,
    out_dir: Path,
    images: np.ndarray,
    outputs: np.ndarray,
    *,
    cm4: bool,
    cm4_images: int = 8,
) -> list[Path]:
    """Write the library into `out_dir/lib/` and the self-test harness (host, and with `cm4`
    the test-only Cortex-M4 image) beside it in `out_dir`; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str | bytes] = {f"{LIB_DIR}/{k}": v for k, v in library_files(imodel).items()}
    for name in HOST_FILES + (CM4_FILES if cm4 else ()):
        files[name] = template(name)
    files["selftest.bin"] = selftest_bytes(images, outputs)
    if cm4:
        k = min(cm4_images, len(images))
        files["mm_testdata.c"] = testdata_source(images[:k], outputs[:k])
    shutil.rmtree(out_dir / LIB_DIR, ignore_errors=True)  # files of an older export
    for name in library_files_names(files):  # an older flat export would shadow lib/ in make
        (out_dir / name).unlink(missing_ok=True)
    written = []
    for name, content in files.items():
        p = out_dir / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
        written.append(p)
    for old in ("build", "firmware"):  # stale objects and images of an older export
        shutil.rmtree(out_dir / old, ignore_errors=True)
    return written
