/* micromix integer kernels: shared helpers and entry points (C99, no malloc, no floats).
 *
 * Tensors are HWC with channels innermost; each pixel is a whole number of bytes; values of
 * 2, 4 or 8 bits are packed little-endian within a byte, first element in the lowest bits,
 * signed ones in two's complement. A weight row (one output channel, order kh, kw, c_in) is
 * padded to a whole byte the same way.
 *
 * Requantization: y = clamp((acc * m0 + 2^(n-1)) >> n), exactly (as with 64-bit intermediates
 * and an arithmetic right shift), i.e. round half up; shifts above 32 take an exact 32-bit
 * form (mm_requant). This is bit for bit the numpy reference.
 */
#ifndef MM_KERNELS_H
#define MM_KERNELS_H

#include <stdint.h>
#include <string.h>

/* MM_PATCH, MM_LANES, MM_SMALL_ROW, MM_SMALL_ROW_BITS, MM_DW_TAPS, MM_DW_RING(_W): written by the
 * export from ops.common.KERNEL_CONSTANTS, the one definition the memory model also reads. */
#include "mm_config.h"

/* Kernel paths compiled per model. Where a kernel has several paths, the rules below (one
 * macro each, over a layer's numbers) give the path a layer takes (MM_P_<path>, MM_P_NONE for
 * none); the kernel applies the same rule at run time. mm_paths.h, written by the export, sets
 * MM_USE_<path> to 1 where one of the model's layers takes that path (the rule on that layer's
 * numbers, evaluated by the preprocessor) and to 0 elsewhere, and the kernel files compile the
 * paths whose flag is 1; micromix_model.c checks at compile time that every call's paths are
 * there (MM_PATH_ON). A layer that reaches a path compiled out anyway stops at MM_PATH_OFF: it
 * never runs a slower path instead. The library without a model sets every flag. */
/* The sub8 path's dense one (mm_conv.c mm_s8_dense, by weight width) for a layer on 8-bit
 * inputs and 4- or 2-bit weights: one output pixel whose inputs are one run of `row` elements
 * (`whole`: a linear), rows of whole 16-byte steps, at least 16 channels in whole blocks of four
 * (oc) and the requantization MM_RQ8 (`rq8`, below), else none. */
#define MM_SUB8D(wb, row, whole, oc, rq8)                                                         \
    ((whole) && (row) % 16 == 0 && (row) <= MM_SUB8_ROW && (oc) >= 16 && (oc) % 4 == 0 && (rq8)    \
         ? ((wb) == 4 ? MM_P_SUB8D_W4 : MM_P_SUB8D_W2)                                           \
         : MM_P_NONE)
/* SUB8P's layers whose pixel pairs take one asm loop per pair (mm_conv.c mm_sub8p_d, by weight
 * width): unsigned inputs, the requantization MM_RQ8 (`rq8`), whole blocks of four channels
 * (oc) and rows of a word or more (a tail of 1-3 bytes after the words: at 2 bits its own
 * path, W2T); the others mm_sub8_px (MM_P_SUB8P). */
#define MM_SUB8PD(wb, is, row, oc, rq8)                                                           \
    (!(is) && (rq8) && (oc) % 4 == 0 && (row) >= 4                                                \
         ? ((wb) == 4 ? MM_P_SUB8PD_W4 : (row) % 4 ? MM_P_SUB8PD_W2T : MM_P_SUB8PD_W2)            \
         : MM_P_SUB8P)
#define MM_CONV_PATH(ib, wb, is, groups, in_c, row, whole, oc, rq8)                              \
    ((ib) == 8 && (wb) == 8 && (groups) == 1                                                      \
         ? ((in_c) % 4 == 0      ? MM_P_CONV8X2                                                  \
            : (row) <= MM_PATCH ? MM_P_CONV8P                                                    \
            : (in_c) > 4        ? MM_P_CONV8                                                     \
                                : MM_P_CONV_ANY)                                                 \
     : (ib) == 8 && (wb) < 8 && (groups) == 1 && (row) <= MM_SUB8_ROW                             \
         ? (MM_SUB8D(wb, row, whole, oc, rq8) != MM_P_NONE                                        \
                ? MM_SUB8D(wb, row, whole, oc, rq8)                                               \
            : (in_c) % 4 == 0 ? MM_P_SUB8X2                                                       \
            : (row) <= MM_PATCH ? MM_SUB8PD(wb, is, row, oc, rq8)                                 \
                                : MM_P_CONV_ANY)                                                  \
         : MM_P_CONV_ANY)
/* CONV8X2's pixels: under the requantization MM_RQ8 (`rq8`, below) one asm loop per pair or lone
 * pixel (mm_conv.c mm_conv8x2d, by input sign; unsigned inputs whose pixel 1 lies `step`
 * (stride x in_c) = 16 bytes after pixel 0 with that offset an immediate: U16), else
 * mm_conv8x2_px's (any requantization). Only 16: ic's 16-channel layers are 8-bit in both its
 * builds, while 32 and 64 (-0.43 M est. M4 cycles at W8/A8) would speed its layers that take
 * 4- and 2-bit weights in the mixed build at 8 bits only. */
#define MM_CONV8X2_KIND(path, is, rq8, step)                                                      \
    ((path) != MM_P_CONV8X2 ? MM_P_NONE                                                           \
     : !(rq8)               ? MM_P_CONV8X2_RQANY                                                  \
     : (is)                 ? MM_P_CONV8X2D_S                                                     \
     : (step) == 16         ? MM_P_CONV8X2D_U16                                                   \
                            : MM_P_CONV8X2D_U)
/* SUB8X2's pixel pairs on 4- or 2-bit weights, unsigned inputs, in_c a multiple of 8 (rows of
 * whole 8-byte steps) and the requantization MM_RQ8 (`rq8`): every block of four channels in one
 * asm loop (mm_conv.c mm_sub8x2d_w4: SUB8X2D_W4, SUB8X2D_W2), else mm_sub8_px's. */
#define MM_SUB8X2_KIND(path, wb, is, in_c, rq8)                                                   \
    ((path) != MM_P_SUB8X2 || (is) || (in_c) % 8 || !(rq8) ? MM_P_NONE                           \
     : (wb) == 4                                           ? MM_P_SUB8X2D_W4                     \
                                                           : MM_P_SUB8X2D_W2)
/* The path a SUB8X2 layer's sub8 pixel function and requantization (MM_SUB8_KIND, MM_SUB8_RQ)
 * see: none where SUB8X2D_W4's or SUB8X2D_W2's loops take all its pixels (mm_sub8x2d_w4), so
 * that a model whose 4- or 2-bit layers all take them compiles no mm_sub8_px code for their
 * kind (kernel .text). */
#define MM_SUB8_PX_PATH(path, wb, is, in_c, rq8)                                                  \
    (MM_SUB8X2_KIND(path, wb, is, in_c, rq8) != MM_P_NONE ? MM_P_NONE : (path))
/* CONV8P's pixel pairs: unsigned inputs, the requantization MM_RQ8, whole blocks of four
 * channels (oc) and rows of a word or more in mm_conv8x2d's asm loop (mm_conv.c mm_conv8p_d),
 * else mm_conv8p_px. */
#define MM_CONV8P_KIND(path, is, rq8, oc, row)                                                    \
    ((path) != MM_P_CONV8P                                      ? MM_P_NONE                       \
     : !(is) && (rq8) && (oc) % 4 == 0 && (row) >= 4 ? MM_P_CONV8P_D                            \
                                                              : MM_P_CONV8P_ANY)
/* mm_conv_small: 8-bit unsigned inputs and 8-bit weights with in_c % 4 != 0, rows of 4 to
 * MM_PATCH bytes and the fast requantization (`fast`: MM_PW_FAST) take mm_conv's CONV8P pixel
 * pairs (mm_small8p, weights as ops.conv.conv8_head lays them out; ops.conv.small8p is this
 * rule); other layers its lanes. */
#define MM_SMALL_PATH(ib, wb, is, in_c, row, fast)                                                \
    ((ib) == 8 && (wb) == 8 && !(is) && (in_c) % 4 != 0 && (row) >= 4 && (row) <= MM_PATCH &&   \
             (fast)                                                                               \
         ? MM_P_SMALL8P                                                                           \
         : MM_P_SMALL_LANES)
/* mm_pointwise_sub: 8-bit inputs take the sub8 path, its fast pixels (MM_P_PWSUB8F: pixel
 * pairs requantized in asm right after the sums) where the inputs are unsigned, in_c a
 * multiple of 4 and the requantization MM_PW_FAST (`fast`, below) or the layer one pixel
 * (npix: a linear), its dense path (MM_SUB8D) before both, SUB8P's pair loops (MM_SUB8PD's
 * rule on rows of in_c but for 2-bit tails: PWSUB8PD, the pairs straight from the input;
 * ResNet-8's strided shortcuts, signed outputs) after; 2- and 4-bit ones mm_dot.c's
 * unpacking. */
#define MM_PWSUB_PATH(ib, is, in_c, fast, npix, wb, oc, rq8)                                     \
    ((ib) != 8                                                  ? MM_P_PWSUB_PACKED               \
     : MM_SUB8D(wb, in_c, (npix) == 1, oc, rq8) != MM_P_NONE                                      \
         ? MM_SUB8D(wb, in_c, (npix) == 1, oc, rq8)                                               \
     : !(is) && (in_c) % 4 == 0 && ((fast) || (npix) == 1) ? MM_P_PWSUB8F                        \
     : MM_SUB8PD(wb, is, in_c, oc, rq8) == MM_P_SUB8PD_W4 ? MM_P_PWSUB8PD_W4                      \
     : MM_SUB8PD(wb, is, in_c, oc, rq8) == MM_P_SUB8PD_W2 ? MM_P_PWSUB8PD_W2                      \
                                                          : MM_P_PWSUB8)
/* The sub8 path's pixel function, by weight width and input signedness, for a layer on `path`
 * (on MM_P_PWSUB8F, its inputs unsigned: which width's pair code). */
#define MM_SUB8_KIND(path, wb, is)                                                                \
    ((path) == MM_P_PWSUB8F ? ((wb) == 4 ? MM_P_S8F_W4 : MM_P_S8F_W2)                            \
     : (path) != MM_P_SUB8X2 && (path) != MM_P_SUB8P && (path) != MM_P_PWSUB8 ? MM_P_NONE        \
     : (wb) == 4 ? ((is) ? MM_P_SUB8_W4S : MM_P_SUB8_W4U)                                        \
                 : ((is) ? MM_P_SUB8_W2S : MM_P_SUB8_W2U))
/* The sub8 path's requantization other than the fast unsigned one (mm_conv.c mm_s8_rq) for a
 * layer on `path`: mm_rq8x4's signed one (outputs 8-bit signed, MM_CLAMP_S8, every shift above
 * 32), else the general one. */
#define MM_SUB8_RQ(path, qmin, qmax, ob, above32)                                                 \
    ((path) != MM_P_SUB8X2 && (path) != MM_P_SUB8P && (path) != MM_P_PWSUB8 ? MM_P_NONE          \
     : MM_PW_FAST(qmin, qmax, ob, above32)                                  ? MM_P_NONE          \
     : (ob) == 8 && (above32) && MM_CLAMP_S8(qmin, qmax)                    ? MM_P_SUB8_RQS      \
                                                                            : MM_P_SUB8_RQANY)
/* mm_depthwise's group-of-four function (kernels of up to MM_DW_TAPS taps on at least four
 * channels), by input format, kernel size and, for the ring of widened rows, the input width
 * w (of the call: a patch tile's); and its single-channel path (the c % 4 leftover
 * channels, or every channel of a larger kernel). */
/* Whether the ring of widened rows fits the scratch counted for a 3x3 layer (MM_DW_RING rows
 * of 4 x min(w, MM_DW_RING_W) bytes, ops.conv.scratch_need): rows of at most MM_DW_RING_W
 * columns, or four rows of a wider one (mm_dw_3x3_w's four-row ring: up to 30 columns). */
#define MM_DW_RING_FITS(w) ((w) <= MM_DW_RING * MM_DW_RING_W / (MM_DW_RING - 1))
#define MM_DW_GROUP(is, ib, kh, kw, c, w)                                                         \
    ((c) < 4 || (kh) * (kw) > MM_DW_TAPS ? MM_P_NONE                                              \
     : (is)                              ? MM_P_DW_ANY                                            \
     : (ib) == 8 && (kh) == 3 && (kw) == 3 ? MM_P_DW_3X3_8U                                       \
     : (ib) == 8 && (kh) == 4 && (kw) == 4 ? MM_P_DW_4X4_8U                                       \
     : (ib) == 8                         ? MM_P_DW_8U                                             \
     : (kh) == 3 && (kw) == 3 && MM_DW_RING_FITS(w) ? MM_P_DW_3X3_W                               \
     : (ib) == 4                         ? MM_P_DW_4U                                             \
                                         : MM_P_DW_2U)
#define MM_DW_TAIL(c, kh, kw)                                                                     \
    ((c) % 4 != 0 || (kh) * (kw) > MM_DW_TAPS ? MM_P_DW_CHANNEL : MM_P_NONE)
/* The 3x3 windows' store of 4- and 2-bit outputs that the fast rule clamps to their whole
 * unsigned range (MM_PW_FAST), for a layer whose group path is `path` (8-bit inputs: the
 * layers of DW_3X3_W take MM_DW_DIRECT's loops). */
#define MM_DW_OUT(path, qmin, qmax, ob, above32)                                                  \
    ((path) == MM_P_DW_3X3_8U && (ob) < 8 && MM_PW_FAST(qmin, qmax, ob, above32)                 \
         ? ((ob) == 4 ? MM_P_DW_OUT4 : MM_P_DW_OUT2)                                              \
         : MM_P_NONE)
/* DW_3X3_W's layers with the fast rule (MM_PW_FAST): on DSP cores the loop (mm_dw.c
 * mm_dw_rows, MM_P_DW_D<ib>_<ob>) that reads their packed ib-bit rows as they are and stores
 * ob-bit outputs, where every window of the layer lies in its runs (mm_dw_covered) and the
 * group's requantization folds (mm_dw_fold); the ring of widened rows otherwise. */
#define MM_DW_DIRECT(path, ib, qmin, qmax, ob, above32)                                           \
    ((path) != MM_P_DW_3X3_W || !MM_PW_FAST(qmin, qmax, ob, above32) ? MM_P_NONE                 \
     : (ib) == 4 ? ((ob) == 8 ? MM_P_DW_D4_8 : (ob) == 4 ? MM_P_DW_D4_4 : MM_P_DW_D4_2)           \
                 : ((ob) == 8 ? MM_P_DW_D2_8 : (ob) == 4 ? MM_P_DW_D2_4 : MM_P_DW_D2_2))
/* A depthwise layer's group weights of 4 or 2 bits (wb), widened to halfword pairs (DW_WSUB). */
#define MM_DW_WB(wb) ((wb) < 8 ? MM_P_DW_WSUB : MM_P_NONE)
/* A depthwise layer whose requantization is none of the clamped fast rules that its group
 * path's loops and stores take (MM_PW_FAST with 8-bit outputs, MM_DW_OUT's, MM_DW_DIRECT's):
 * mm_dw.c's general ones (DW_RQANY). */
#define MM_DW_RQ_PATH(path, ib, qmin, qmax, ob, above32)                                          \
    (MM_PW_FAST(qmin, qmax, ob, above32) &&                                                       \
             ((ob) == 8 || MM_DW_OUT(path, qmin, qmax, ob, above32) != MM_P_NONE ||               \
              MM_DW_DIRECT(path, ib, qmin, qmax, ob, above32) != MM_P_NONE)                       \
         ? MM_P_NONE                                                                              \
         : MM_P_DW_RQANY)
/* mm_pointwise8: one output pixel (npix, a linear) without the two-pixel code: the dense path
 * (mm_pw8_dense, by input sign) where the rows are whole words, there are 16 rows or
 * more (oc; a classifier's few rows save a few hundred cycles, not the dense code's 900 B of
 * .text in a build that has mm_pw8_one for its odd pixels anyway) and the requantization
 * MM_RQ8 (8-bit outputs, every shift above 32, a clamp to [0, 255] or to [qmin, 127] with
 * -128 <= qmin <= 0: mm_conv.c mm_rq8_kind's U and S), else mm_pw8_one; else the fast
 * requantization where the inputs are unsigned, the rows whole words and the requantization
 * MM_PW_FAST (above32: every channel's shift is above 32), else the general one. */
#define MM_PW_FAST(qmin, qmax, ob, above32) ((qmin) == 0 && (qmax) == (1 << (ob)) - 1 && (above32))
#define MM_CLAMP_U8(qmin, qmax) ((qmin) == 0 && (qmax) == 255)
#define MM_CLAMP_S8(qmin, qmax) ((qmin) >= -128 && (qmin) <= 0 && (qmax) == 127)
#define MM_RQ8(qmin, qmax, ob, above32)                                                           \
    ((ob) == 8 && (above32) && (MM_CLAMP_U8(qmin, qmax) || MM_CLAMP_S8(qmin, qmax)))
#define MM_PW8_PATH(is, row, qmin, qmax, ob, above32, npix, oc)                                   \
    ((npix) < 2 && (row) % 4 == 0 && (oc) >= 16 && MM_RQ8(qmin, qmax, ob, above32)              \
         ? ((is) ? MM_P_PW8_DENSE_S : MM_P_PW8_DENSE_U)                                          \
     : (npix) < 2                                                        ? MM_P_PW8_ONE           \
     : !(is) && (row) % 4 == 0 && MM_PW_FAST(qmin, qmax, ob, above32) ? MM_P_PW8_FAST           \
                                                                       : MM_P_PW8_ANY)
/* mm_pointwise8_widen's inputs (is, ib, row: in_c): unsigned 4-bit fields in whole words take
 * mm_conv.c mm_widen4u alone; the other formats its general widening too (PW8_WIDE_ANY). */
#define MM_PW8_WIDEN(is, ib, row) (!(is) && (ib) == 4 && (row) % 8 == 0 ? MM_P_NONE : MM_P_PW8_WIDE_ANY)
/* mm_dense_pt: a linear with one multiplier and one shift for all its channels (per-tensor
 * weight scales: ops.conv.dense_pt_path, the same rule), on 8-bit inputs: with MM_RQ8 the
 * dense asm loops with the per-tensor block end, mm_pointwise8's (8-bit weights, rows of whole
 * words, at least 16 channels, as MM_PW8_PATH's: a classifier's few rows are not worth its
 * 3 to 7 kB of .text; the rows after the last block of four one by one) or the sub8 path's
 * (4- and 2-bit weights, rows of whole 16-byte steps, channels in whole blocks of four), by
 * input sign or weight width, or on rows of whole words (short rows; any channels from four
 * on) its loop in 4-byte steps, the rows after the last block one by one (SUB8D4_PT, by weight
 * width and input sign: a classifier's one kind compiled alone); other 8-bit weights blocks of
 * four rows by mm_pw8x4 (PW8_PT: any row, requantization and output bits). Anything else one
 * output at a time on natural rows (DENSE_PT). */
#define MM_DENSE_PT_PATH(ib, is, wb, row, oc, rq8)                                                \
    ((ib) != 8 ? MM_P_DENSE_PT                                                                    \
     : (wb) == 8 && (row) % 4 == 0 && (oc) >= 16 && (rq8)                                         \
         ? ((is) ? MM_P_PW8D_PT_S : MM_P_PW8D_PT_U)                                               \
     : (wb) == 8 ? MM_P_PW8_PT                                                                    \
     : (row) % 16 == 0 && (row) <= MM_SUB8_ROW && (oc) >= 4 && (oc) % 4 == 0 && (rq8)             \
         ? ((wb) == 4 ? MM_P_SUB8D_PT_W4 : MM_P_SUB8D_PT_W2)                                      \
     : (row) % 4 == 0 && (row) <= MM_SUB8_ROW && (oc) >= 4 && (rq8)                               \
         ? ((wb) == 4 ? ((is) ? MM_P_SUB8D4_PT_W4S : MM_P_SUB8D4_PT_W4U)                          \
                      : ((is) ? MM_P_SUB8D4_PT_W2S : MM_P_SUB8D4_PT_W2U))                         \
         : MM_P_DENSE_PT)
/* mm_add: whole bytes in and out, a shift 9 <= n <= 32 and the output clamped to exactly
 * [0, 255] (a ReLU after the add) take a loop specialised on the two inputs' signs; other whole
 * bytes with n >= 9 the general byte loop (ADD8_ANY); anything else the packed loop (ADD_ANY). */
#define MM_ADD_PATH(ab, as, bb, bs, ob, n, qmin, qmax)                                            \
    ((ab) != 8 || (bb) != 8 || (ob) != 8 || (n) < 9 ? MM_P_ADD_ANY                               \
     : (n) > 32 || (qmin) != 0 || (qmax) != 255      ? MM_P_ADD8_ANY                              \
     : (as) ? ((bs) ? MM_P_ADD8_SS : MM_P_ADD8_SU)                                                \
            : ((bs) ? MM_P_ADD8_US : MM_P_ADD8_UU))
/* mm_avgpool: whole bytes in and out on at least four channels sum four channels a word, else
 * one channel at a time. */
#define MM_AVG_PATH(ib, ob, c) ((ib) == 8 && (ob) == 8 && (c) >= 4 ? MM_P_AVG8 : MM_P_AVG_ANY)
#include "mm_paths.h"
#ifdef MM_DEBUG
#define MM_PATH_OFF() assert(!"a layer takes a kernel path that mm_paths.h compiled out")
#elif defined(__GNUC__)
#define MM_PATH_OFF() __builtin_trap()
#else
#define MM_PATH_OFF()                                                                             \
    for (;;)                                                                                      \
        ;
#endif

/* The export picks each layer's kernel once (memory.kernel_of) and calls it directly; kernels
 * only check that choice, in debug builds (-DMM_DEBUG: the host self-test). */
#ifdef MM_DEBUG
#include <assert.h>
#define MM_ASSERT(c) assert(c)
#else
#define MM_ASSERT(c) ((void)0)
#endif

/* Flooring (arithmetic) right shift of negative values is implementation-defined in C99;
 * every compiler micromix targets does it, and this refuses to build where it is not so. */
typedef char mm_needs_arithmetic_shift[((-8 >> 1) == -4) ? 1 : -1];

/* Kernels keep their unpacked patches and weight tiles in one static scratch buffer whose
 * size the memory model computes (memory.scratch_need mirrors the layouts below); only small
 * fixed locals stay on the stack. A patch longer than MM_PATCH int16 elements is processed
 * in chunks of at most MM_PATCH elements of one pixel. */
/* Cold helpers stay out of line so the hot loops that call them keep their registers. */
#if defined(__GNUC__)
#define MM_NOINLINE __attribute__((noinline))
#else
#define MM_NOINLINE
#endif
/* Pointwise helpers that take a constant flag are forced inline so that each call is
 * specialised; the common branch of a requantization is marked as such. */
#if defined(__GNUC__)
#define MM_INLINE inline __attribute__((always_inline))
#define MM_LIKELY(c) __builtin_expect(!!(c), 1)
#else
#define MM_INLINE inline
#define MM_LIKELY(c) (c)
#endif

/* The DSP instructions the kernels use, one definition each: inline asm on cores with the DSP
 * extension, plain C with the same meaning elsewhere. _8: the operand rotated right by 8
 * first (bytes 1 and 3 instead of 0 and 2); the rotation is folded into the extend. */
#if defined(__ARM_FEATURE_DSP)
#define MM_ASM1(name, ins)                                                                        \
    static inline uint32_t name(uint32_t x)                                                       \
    {                                                                                             \
        uint32_t r;                                                                               \
        __asm__(ins : "=r"(r) : "r"(x));                                                          \
        return r;                                                                                 \
    }
#define MM_ASM2(name, ins)                                                                        \
    static inline int32_t name(uint32_t a, uint32_t b, int32_t c)                                 \
    {                                                                                             \
        int32_t r;                                                                                \
        __asm__(ins " %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));                        \
        return r;                                                                                 \
    }
MM_ASM1(mm_uxtb16, "uxtb16 %0, %1")
MM_ASM1(mm_uxtb16_8, "uxtb16 %0, %1, ror #8")
MM_ASM1(mm_sxtb16, "sxtb16 %0, %1")
MM_ASM1(mm_sxtb16_8, "sxtb16 %0, %1, ror #8")
MM_ASM2(mm_smlad, "smlad")
MM_ASM2(mm_smlabb, "smlabb")
MM_ASM2(mm_smlatt, "smlatt")
MM_ASM2(mm_smmla, "smmla") /* c + the high word of a * b */
static inline uint32_t mm_ssub16(uint32_t a, uint32_t b) /* halfword-wise a - b */
{
    uint32_t r;
    __asm__("ssub16 %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline int32_t mm_smmul(int32_t a, int32_t b) /* the high word of a * b */
{
    int32_t r;
    __asm__("smmul %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline int32_t mm_usat8_half(int32_t a) /* a >> 1 clamped to [0, 255] */
{
    int32_t r;
    __asm__("usat %0, #8, %1, asr #1" : "=r"(r) : "r"(a));
    return r;
}
static inline uint32_t mm_umin8(uint32_t a, uint32_t b) /* bytewise unsigned minimum */
{
    uint32_t r;
    __asm__("usub8 %0, %1, %2\n\tsel %0, %2, %1" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}
/* The operands of the pixel-pair asm loops (mm_conv.c MM_PW8_2X2_ASM, mm_dot.c MM_PWS8_LOOP):
 * rows 0 and 1 of pixel xa summed in a0, a1 and of pixel xb in b0, b1, the weight pointer w,
 * the word count k and six scratch registers t0..t5, named alike at both call sites. */
#define MM_PAIR_ASM_OPERANDS                                                                      \
    : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1), [xa] "+r"(xa), [xb] "+r"(xb), \
      [w] "+r"(w), [k] "+r"(k), [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3),  \
      [t4] "=&r"(t4), [t5] "=&r"(t5)                                                              \
    :                                                                                             \
    : "cc", "memory"
#else
static inline uint32_t mm_uxtb16(uint32_t x) { return x & 0x00FF00FFu; }
static inline uint32_t mm_uxtb16_8(uint32_t x) { return (x >> 8) & 0x00FF00FFu; }
static inline uint32_t mm_sxtb16(uint32_t x)
{
    return (uint32_t)(uint16_t)(int8_t)(x & 0xFFu) | ((uint32_t)(int8_t)((x >> 16) & 0xFFu) << 16);
}
static inline uint32_t mm_sxtb16_8(uint32_t x) { return mm_sxtb16(x >> 8); }
static inline int32_t mm_smlabb(uint32_t a, uint32_t b, int32_t c)
{
    return c + (int16_t)(a & 0xFFFFu) * (int16_t)(b & 0xFFFFu);
}
static inline int32_t mm_smlatt(uint32_t a, uint32_t b, int32_t c)
{
    return c + (int16_t)(a >> 16) * (int16_t)(b >> 16);
}
static inline int32_t mm_smlad(uint32_t a, uint32_t b, int32_t c)
{
    return mm_smlatt(a, b, mm_smlabb(a, b, c));
}
static inline int32_t mm_smmla(uint32_t a, uint32_t b, int32_t c)
{
    return c + (int32_t)(((int64_t)(int32_t)a * (int32_t)b) >> 32);
}
static inline uint32_t mm_ssub16(uint32_t a, uint32_t b)
{
    return ((a - b) & 0xFFFFu) | (((a >> 16) - (b >> 16)) << 16);
}
static inline int32_t mm_smmul(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b) >> 32);
}
static inline int32_t mm_usat8_half(int32_t a)
{
    a >>= 1;
    return a < 0 ? 0 : a > 255 ? 255 : a;
}
static inline uint32_t mm_umin8(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    for (int i = 0; i < 32; i += 8) {
        const uint32_t x = (a >> i) & 255u, y = (b >> i) & 255u;
        r |= (x < y ? x : y) << i;
    }
    return r;
}
#endif

static inline int32_t mm_bytes(int32_t elems, int bits) { return (elems * bits + 7) >> 3; }

/* Element i of a packed run (2, 4 or 8 bits). */
static inline int32_t mm_get(const uint8_t *p, int32_t i, int bits, int is_signed)
{
    int32_t bit = i * bits;
    int32_t v = (p[bit >> 3] >> (bit & 7)) & ((1 << bits) - 1);
    return is_signed ? v - ((v >> (bits - 1)) << bits) : v;
}

/* Unpacks n values of a packed run that starts on a byte boundary into int16, natural order.
 * The 8-bit loops run over a multiple of 16 first: gcc -O2 vectorises those. */
static inline void mm_unpack(int16_t *restrict d, const uint8_t *restrict p, int32_t n, int bits,
                             int is_signed)
{
    int32_t k = 0;
    if (bits == 8) {
        const int32_t m = n & ~15;
        if (is_signed) {
            const int8_t *restrict ps = (const int8_t *)p;
            for (; k < m; k++)
                d[k] = ps[k];
            for (; k < n; k++)
                d[k] = ps[k];
        } else {
            for (; k < m; k++)
                d[k] = p[k];
            for (; k < n; k++)
                d[k] = p[k];
        }
    } else if (bits == 4) {
        const int32_t sx = is_signed ? 8 : 0; /* (v ^ 8) - 8 sign-extends a 4-bit field */
        for (; 2 * k + 1 < n; k++) {
            d[2 * k] = (int16_t)(((p[k] & 15) ^ sx) - sx);
            d[2 * k + 1] = (int16_t)(((p[k] >> 4) ^ sx) - sx);
        }
        if (2 * k < n)
            d[2 * k] = (int16_t)(((p[k] & 15) ^ sx) - sx);
    } else {
        const int32_t sx = is_signed ? 2 : 0;
        for (; 4 * k + 3 < n; k++) {
            d[4 * k] = (int16_t)(((p[k] & 3) ^ sx) - sx);
            d[4 * k + 1] = (int16_t)((((p[k] >> 2) & 3) ^ sx) - sx);
            d[4 * k + 2] = (int16_t)((((p[k] >> 4) & 3) ^ sx) - sx);
            d[4 * k + 3] = (int16_t)(((p[k] >> 6) ^ sx) - sx);
        }
        for (int32_t i = 4 * k; i < n; i++)
            d[i] = (int16_t)((((p[k] >> (2 * (i - 4 * k))) & 3) ^ sx) - sx);
    }
}

/* Sub-byte fields to bytes, four at a time (field k of the input in byte k of the result):
 * mm_spread4 the four 4-bit fields of h's low halfword, mm_spread2 the four 2-bit fields of
 * b's low byte; mm_sext_bytes sign-extends such bytes of `bits`-bit fields into int8 (per byte
 * ((f ^ s) + 0x80 - s) ^ 0x80 with s = 2^(bits-1): no byte carries into the next). */
static inline uint32_t mm_spread4(uint32_t h)
{
    h = (h | h << 8) & 0x00FF00FFu;
    return (h | h << 4) & 0x0F0F0F0Fu;
}

static inline uint32_t mm_spread2(uint32_t b)
{
    b |= b << 12; /* then b | b << 6 is b | b << 6 | b << 12 | b << 18 */
    return (b | b << 6) & 0x03030303u;
}

static inline uint32_t mm_sext_bytes(uint32_t v, int bits)
{
    const uint32_t s = 0x01010101u << (bits - 1);
    return ((v ^ s) + (0x80808080u - s)) ^ 0x80808080u;
}

/* Lane blocks: MM_LANES channels side by side (small convolutions). MM_LANES values of 2, 4
 * or 8 bits are always whole bytes. */

static inline void mm_unpack_lanes(int16_t *restrict v, const uint8_t *restrict p, int bits,
                                   int is_signed)
{
    if (bits == 8) {
        if (is_signed)
            for (int j = 0; j < MM_LANES; j++)
                v[j] = (int8_t)p[j];
        else
            for (int j = 0; j < MM_LANES; j++)
                v[j] = p[j];
    } else if (bits == 4) {
        const int sx = is_signed ? 8 : 0;
        for (int k = 0; k < MM_LANES / 2; k++) {
            v[2 * k] = (int16_t)(((p[k] & 15) ^ sx) - sx);
            v[2 * k + 1] = (int16_t)(((p[k] >> 4) ^ sx) - sx);
        }
    } else {
        const int sx = is_signed ? 2 : 0;
        for (int k = 0; k < MM_LANES / 4; k++)
            for (int f = 0; f < 4; f++)
                v[4 * k + f] = (int16_t)((((p[k] >> (2 * f)) & 3) ^ sx) - sx);
    }
}

static inline void mm_pack_lanes(uint8_t *p, const int32_t *y, int bits)
{
    if (bits == 8) {
        for (int j = 0; j < MM_LANES; j++)
            p[j] = (uint8_t)y[j];
    } else if (bits == 4) {
        for (int k = 0; k < MM_LANES / 2; k++)
            p[k] = (uint8_t)((y[2 * k] & 15) | ((y[2 * k + 1] & 15) << 4));
    } else {
        for (int k = 0; k < MM_LANES / 4; k++)
            p[k] = (uint8_t)((y[4 * k] & 3) | ((y[4 * k + 1] & 3) << 2) |
                             ((y[4 * k + 2] & 3) << 4) | ((y[4 * k + 3] & 3) << 6));
    }
}

/* The value requantized for a conv output: the dot product in units of 2^-k plus the bias.
 * A fractional bias keeps its precision when a channel's multiplier is large; the converter
 * picks k so that this never leaves int32. */
static inline int32_t mm_biased(int32_t dot, int32_t bias, int k)
{
    return dot * ((int32_t)1 << k) + bias;
}

/* The exact rule above. For shift >= 32 (every multiplier below 1: the common case) it runs in
 * 32-bit arithmetic on the high word of the product (SMULL, add, ASR), which is exact: the
 * rounding term 2^(n-1) falls in the high word, and the low word only adds less than one unit
 * before the flooring shift (integer/arith.py requantize_hi32 is the same form in numpy). */
static inline int32_t mm_requant(int32_t acc, int32_t m0, int shift, int32_t qmin, int32_t qmax)
{
    int32_t v;
    if (shift > 32) {
        const int32_t hi = (int32_t)(((int64_t)acc * m0) >> 32);
        v = (hi + ((int32_t)1 << (shift - 33))) >> (shift - 32);
    } else {
        const int64_t w = ((int64_t)acc * m0 + ((int64_t)1 << (shift - 1))) >> shift;
        if (w < qmin)
            return qmin;
        if (w > qmax)
            return qmax;
        return (int32_t)w;
    }
    return v < qmin ? qmin : v > qmax ? qmax : v;
}

/* mm_requant for the pointwise kernels: the common case (shift > 32) inline, its rounding as
 * ((hi >> (k - 1)) + 1) >> 1, which equals (hi + 2^(k-1)) >> k for k >= 1 (hi = q 2^(k-1) + r
 * with 0 <= r < 2^(k-1): both are floor((q + 1) / 2)), one instruction fewer per output; the
 * rare case out of line (mm_dot.c; its 64-bit shift is long code). */
int32_t mm_requant_call(int32_t acc, int32_t m0, int shift, int32_t qmin, int32_t qmax);
static MM_INLINE int32_t mm_pw_rq(int32_t acc, int32_t b, int32_t m0, int s, int bk,
                                  int32_t qmin, int32_t qmax)
{
    acc = mm_biased(acc, b, bk);
    if (MM_LIKELY(s > 32)) {
        const int32_t hi = (int32_t)(((int64_t)acc * m0) >> 32);
        const int32_t v = ((hi >> (s - 33)) + 1) >> 1;
        return v < qmin ? qmin : v > qmax ? qmax : v;
    }
    return mm_requant_call(acc, m0, s, qmin, qmax);
}

/* Sequential writer of packed values: whole bytes only, so a pixel's padding bits are zero
 * and nothing outside the output tensor is ever touched. */
typedef struct {
    uint8_t *p;
    uint32_t cur;
    int pos, bits;
} mm_writer;

static inline void mm_put(mm_writer *w, int32_t v)
{
    if (w->bits == 8) {
        *w->p++ = (uint8_t)v;
        return;
    }
    w->cur |= ((uint32_t)v & ((1u << w->bits) - 1u)) << w->pos;
    w->pos += w->bits;
    if (w->pos == 8) {
        *w->p++ = (uint8_t)w->cur;
        w->cur = 0;
        w->pos = 0;
    }
}

static inline void mm_flush(mm_writer *w)
{
    if (w->pos) {
        *w->p++ = (uint8_t)w->cur;
        w->cur = 0;
        w->pos = 0;
    }
}

/* Four requantized outputs at once when the writer sits on a byte boundary (the groups of four
 * channels of the pointwise kernels: 4 x 8, 4 x 4 or 4 x 2 bits are whole bytes). Same bytes as
 * four mm_put, a shift and an OR per value instead of a bit-position update each. */
static inline void mm_put4(mm_writer *w, const int32_t *a)
{
    const int ob = w->bits;
    uint32_t v;
    if (MM_LIKELY(ob == 8)) { /* whole bytes, no packing; kept inline (the old layout) */
        w->p[0] = (uint8_t)a[0];
        w->p[1] = (uint8_t)a[1];
        w->p[2] = (uint8_t)a[2];
        w->p[3] = (uint8_t)a[3];
        w->p += 4;
        return;
    }
    v = ((uint32_t)a[0] & ((1u << ob) - 1u)) | (((uint32_t)a[1] & ((1u << ob) - 1u)) << ob) |
        (((uint32_t)a[2] & ((1u << ob) - 1u)) << 2 * ob) | ((uint32_t)a[3] << 3 * ob);
    w->p[0] = (uint8_t)v;
    if (ob == 4) {
        w->p[1] = (uint8_t)(v >> 8);
        w->p += 2;
    } else {
        w->p += 1;
    }
}

/* The fast requantization of the pointwise kernels, for a layer whose every shift is above 32
 * and whose outputs are unsigned over their whole range [0, 2^ob - 1] (the common case,
 * checked once per call: mm_pw_fast): mm_pw_rq's rule with no branch, clamped to [0, 255] by
 * one USAT (mm_pw_u; kb = 2^bias_shift), then to 2^ob - 1 four outputs at a time as they are
 * packed and stored (mm_pw_st4: y holds them in its bytes, m4 is 2^ob - 1 in every byte). */
static MM_INLINE uint32_t mm_pw_u(int32_t acc, int32_t b, int32_t m0, int s, int32_t kb)
{
    return (uint32_t)mm_usat8_half((mm_smmul(acc * kb + b, m0) >> (s - 33)) + 1);
}

static MM_INLINE uint8_t *mm_pw_st4(uint8_t *o, uint32_t y, int ob, uint32_t m4)
{
    if (MM_LIKELY(ob == 8)) {
        memcpy(o, &y, 4);
        return o + 4;
    }
    y = mm_umin8(y, m4);
    if (ob == 4) {
        uint16_t h;
        y = (y | y >> 4) & 0x00FF00FFu; /* (y0 | y1 << 4) in byte 0, (y2 | y3 << 4) in byte 2 */
        h = (uint16_t)(y | y >> 8);      /* both in one halfword: one STRH */
        memcpy(o, &h, 2);
        return o + 2;
    }
    y = (y | y >> 6) & 0x000F000Fu;
    o[0] = (uint8_t)(y | y >> 12);
    return o + 1;
}

/* Dot products of an unpacked patch x with n weights packed from the start of w (mm_dot.c).
 * For 4- and 2-bit weights x holds its first (n & ~(16 * P - 1)) elements as P planes. */
int32_t mm_dot8(const int16_t *x, const uint8_t *w, int32_t n);
void mm_dot8x4(const int16_t *x, const uint8_t *w, int32_t row_bytes, int32_t n, int32_t *out);
int32_t mm_dot4(const int16_t *x, const uint8_t *w, int32_t n);
void mm_dot4x4(const int16_t *x, const uint8_t *w, int32_t row_bytes, int32_t n, int32_t *out);
int32_t mm_dot2(const int16_t *x, const uint8_t *w, int32_t n);
void mm_dot2x4(const int16_t *x, const uint8_t *w, int32_t row_bytes, int32_t n, int32_t *out);

/* ---- conv and linear layers ----------------------------------------------------------------
 * Every conv kernel takes the same arguments: the input and output tensors, the packed weights
 * (in the order ops.conv.weight_layout gives for that kernel), the layer's geometry, its number
 * formats and per-channel parameters, and the shared scratch buffer. The export builds the two
 * structs at the call site (they are immediates of the call, not model constants). A linear on
 * a C x H x W input is an H x W convolution with a 1 x 1 output. */
typedef struct { /* int16: the per-call copy gcc makes of these stays small (cgen checks) */
    int16_t in_c, in_h, in_w, out_c, out_h, out_w;
    int16_t k_h, k_w, stride_h, stride_w, pad_h, pad_w, groups;
} mm_conv_dims;

/* Requantization of each output channel c: mm_requant(mm_biased(dot, bias[c], bias_shift),
 * mult[c], shift[c], qmin, qmax); the input's bits and signedness, the weights' and the
 * output's bits. Ops without weights leave bias and w_bits 0; in2_bits / in2_signed are the
 * second input's (the add's b, the multiply's gate). Every kernel takes its geometry as an
 * mm_conv_dims and its numbers as an mm_quant_params, both built at the call site. */
typedef struct {
    const int32_t *bias, *mult;
    const int8_t *shift;
    int32_t qmin, qmax;
    uint8_t in_bits, in_signed, w_bits, out_bits, bias_shift;
    uint8_t in2_bits, in2_signed;
    uint8_t above32; /* every channel's shift is above 32 (ops.common.shifts_above32) */
} mm_quant_params;

/* Every channel's shift is above 32 (MM_PW_FAST's above32): the export's fact, checked
 * against the n shifts in debug builds only (the loop cost about 9 cycles a channel). */
static inline int mm_shifts_above32(const mm_quant_params *q, int n)
{
#ifdef MM_DEBUG
    int all = 1;
    for (int c = 0; c < n; c++)
        all &= q->shift[c] > 32;
    MM_ASSERT(all == q->above32);
#endif
    (void)n;
    return q->above32;
}

static inline int mm_pw_fast(const mm_quant_params *q, int n)
{
    return MM_PW_FAST(q->qmin, q->qmax, q->out_bits, mm_shifts_above32(q, n));
}

#define MM_CONV_ARGS                                                                              \
    const uint8_t *in, uint8_t *out, const uint8_t *w, const mm_conv_dims *d,                     \
        const mm_quant_params *q, void *scratch

/* The rules memory.kernel_of applies, checked here in debug builds only. */
#define MM_IS_PW8(d, q)                                                                           \
    ((d)->groups == 1 && (q)->in_bits == 8 && (q)->w_bits == 8 && (d)->pad_h == 0 &&              \
     (d)->pad_w == 0 &&                                                                           \
     (((d)->k_h == 1 && (d)->k_w == 1) || ((d)->k_h == (d)->in_h && (d)->k_w == (d)->in_w &&      \
                                           (d)->out_h == 1 && (d)->out_w == 1)))
/* MM_IS_PW8W: what mm_pointwise8_widen needs of a call (its scratch holds two pixels of at most
 * MM_PATCH channels), not when the export takes it (from 4 channels: ops.conv._pointwise8
 * alone, the kernel's name in the call is that fact). */
#define MM_IS_PW8W(d, q)                                                                          \
    ((d)->groups == 1 && (q)->in_bits < 8 && (q)->w_bits == 8 && (d)->k_h == 1 &&                 \
     (d)->k_w == 1 && (d)->pad_h == 0 && (d)->pad_w == 0 && (d)->in_c <= MM_PATCH)
#define MM_IS_SUB8(d, q) ((q)->in_bits == 8 && (q)->w_bits < 8 && (d)->groups == 1)
#define MM_IS_PWSUB(d, q)                                                                         \
    ((d)->groups == 1 && (q)->w_bits < 8 && (d)->k_h == 1 && (d)->k_w == 1 && (d)->pad_h == 0 &&  \
     (d)->pad_w == 0 && (d)->in_c <= MM_PATCH &&                                                  \
     ((d)->in_c * (q)->w_bits >= 32 || (MM_IS_SUB8(d, q) && (d)->in_c >= 4)))
#define MM_IS_SMALL(d, q)                                                                         \
    ((d)->groups == 1 && (int32_t)(d)->k_h * (d)->k_w * (d)->in_c <= MM_SMALL_ROW &&              \
     (int32_t)(d)->k_h * (d)->k_w * (d)->in_c * (q)->w_bits <= MM_SMALL_ROW_BITS &&               \
     (d)->out_c % MM_LANES == 0 && !MM_IS_SUB8(d, q))

/* MM_IS_PW8: 8-bit inputs and weights whose patch is one contiguous run of input bytes (1x1
 * without padding, or a window over the whole input), read straight from the input tensor
 * (mm_conv.c; SMLAD dual MACs where the core has the DSP extension). Weight layout: each block
 * of four rows interleaves 4-byte runs (row 0 bytes 0-3, row 1 bytes 0-3, ..., row 0 bytes
 * 4-7, ...), then the rows' last row % 4 bytes one row after the other; rows past the last full
 * block stay in natural order. No scratch. */
void mm_pointwise8(MM_CONV_ARGS);

/* 1x1 layers with 8-bit weights and 2- or 4-bit inputs of 4 to MM_PATCH channels (from 4
 * channels this beats the lane kernel: ops.conv._pointwise8; MM_IS_PW8W): mm_pointwise8
 * on input pixels widened to one byte per channel in the scratch, two at a time (2 x in_c
 * bytes: what the memory model counts for these layers). */
void mm_pointwise8_widen(MM_CONV_ARGS);

/* MM_IS_PWSUB: 1x1 layers (and linears on a 1 x 1 input) with 4- or 2-bit weights on at least
 * one weight word (32 / w_bits; on 8-bit inputs 4 channels) and at most MM_PATCH input
 * channels (from 8 channels at 4 bits and 16 at 2 bits this beats the lane kernel on
 * Cortex-M4, measured): each input pixel is
 * unpacked once into the scratch (in_c int16), the packed weights are expanded in registers
 * (mm_dot.c; SMLAD on DSP cores). Weight layout: each block of four rows interleaves the rows'
 * 4-byte words (row 0 word 0, row 1 word 0, ..., row 0 word 1, ...) over the first
 * nblk = in_c - in_c % (32 / w_bits) elements, then each row's remaining bytes, row after row;
 * rows after the last full block stay in natural order (mm_dot.c, mm_pointwise_sub_packed).
 * On 8-bit inputs the pixels go in pairs, read in place (no unpacking), through mm_conv.c's
 * sub8 path, its weights ops.conv.channel_packed; unsigned ones of whole words with the fast
 * requantization (and linears) on its fast pixels (MM_PWSUB_PATH: MM_P_PWSUB8F). */
void mm_pointwise_sub(MM_CONV_ARGS);
void mm_pointwise_sub_packed(MM_CONV_ARGS);

/* MM_IS_SMALL: weight rows shorter than one vector of dot product (stems, pointwise layers on
 * few channels): output channels in lanes instead (mm_small.c); not 4- and 2-bit weights on
 * 8-bit inputs (MM_IS_SUB8: mm_conv's and mm_pointwise_sub's sub8 path is faster). */
void mm_conv_small(MM_CONV_ARGS);
void mm_small8p(MM_CONV_ARGS); /* mm_conv.c: mm_conv_small's MM_P_SMALL8P */

/* Depthwise convolution (groups == in_c == out_c), any kernel size (mm_dw.c). Kernels of up
 * to MM_DW_TAPS taps run four channels at a time, their weights stored in groups of four
 * channels (ops.conv.depthwise_layout: same bytes); larger kernels read natural rows. 3x3
 * kernels on 4- and 2-bit unsigned inputs read them packed (DSP cores, MM_DW_DIRECT) or widen
 * them into a ring of MM_DW_RING rows of 4 x in_w bytes in the scratch (what the memory model
 * counts for 3x3 layers); no other scratch. */
void mm_depthwise(MM_CONV_ARGS);

/* Any other convolution: any kernel, stride, zero padding and groups (mm_conv.c). */
void mm_conv(MM_CONV_ARGS);

/* A linear (one output pixel, a window over its whole input) whose channels share one
 * multiplier and one shift (q->mult[0], q->shift[0]: per-tensor weight scales), any bits
 * (mm_conv.c; MM_DENSE_PT_PATH). Weights as its path reads them: mm_pointwise8's interleaved
 * blocks (8-bit weights on 8-bit inputs), the sub8 path's channel_packed ones, else natural
 * rows. No scratch but mm_pointwise8's
 * extended input (2 x row bytes, row <= MM_PATCH: what the layer's family counts). */
void mm_dense_pt(MM_CONV_ARGS);

/* ---- mm_eltwise.c, mm_ops.c: ops without weights (micromix.ops.<kind> is each one's
 * reference). d: in C, H, W (of the first input), out C, H, W, the window's kernel, stride and
 * padding; q: mult / shift, clamp and bits. ------------------------------------------------ */

/* add: out = clamp((a * m[0] + b * m[1] + 2^(n-1)) >> n), n = shift[0]; b's bits in in2_*. */
void mm_add(const uint8_t *a, const uint8_t *b, uint8_t *out, const mm_conv_dims *d,
            const mm_quant_params *q);

/* avgpool over windows that tile the input (stride = kernel, no padding). */
void mm_avgpool(const uint8_t *in, uint8_t *out, const mm_conv_dims *d, const mm_quant_params *q);

/* avgpool with any stride and zero padding. per_count = 0: one multiplier (the divisor is the
 * window size, padded zeros included); 1: multiplier n - 1 for a window with n taps inside the
 * input (count_include_pad=False). */
void mm_avgpool_pad(const uint8_t *in, uint8_t *out, const mm_conv_dims *d,
                    const mm_quant_params *q, int per_count);

/* maxpool with any window, stride and padding (padded taps never win). */
void mm_maxpool(const uint8_t *in, uint8_t *out, const mm_conv_dims *d, const mm_quant_params *q);

/* One input of a channel concat: its d->in_c channels, requantized by mult[0] / shift[0], go
 * to channels [c_off, c_off + in_c) of every output pixel (d->out_c channels). */
void mm_concat(const uint8_t *in, uint8_t *out, const mm_conv_dims *d, const mm_quant_params *q,
               int c_off);

/* out = table[raw bits of the input code], one table byte per input code. */
void mm_lut(const uint8_t *in, uint8_t *out, const uint8_t *table, const mm_conv_dims *d,
            const mm_quant_params *q);

/* out = clamp(requant(x * g)); g (bits in in2_*) is one value per channel (g_per_pixel = 0, an
 * N x C x 1 x 1 gate) or a map of x's shape (g_per_pixel = 1). */
void mm_mul(const uint8_t *x, const uint8_t *g, uint8_t *out, const mm_conv_dims *d,
            const mm_quant_params *q, int g_per_pixel);

/* mm_tile.c: `rows` rows of `row_bytes` bytes from src (rows `src_row` bytes apart) to dst
 * (rows `dst_row` apart): a patch into or out of a tensor. The two never overlap. */
void mm_copy_rows(uint8_t *dst, int32_t dst_row, const uint8_t *src, int32_t src_row, int rows,
                  int32_t row_bytes);

/* mm_tile.c: a streamed input's rows y0..y1-1, each asked of read_row once, into a ring of
 * `ring_rows` rows (row y in slot y mod ring_rows; micromix.schedule.ring_rows sizes it). */
typedef void (*mm_row_reader)(void *ctx, int y, uint8_t *dst);
void mm_read_rows(mm_row_reader read_row, void *ctx, uint8_t *ring, int ring_rows,
                  int32_t row_bytes, int y0, int y1);
/* ... and rows y0..y1-1 one after the other at dst (a line buffer). */
void mm_read_rows_at(mm_row_reader read_row, void *ctx, uint8_t *dst, int32_t row_bytes, int y0,
                     int y1);

/* Writing over the input: the schedule may place an op's output so that it overlaps an input
 * that dies at that op (ops.common.window_overlap). mm_depthwise (groups of four channels, or a
 * single-channel tail at 8 bits), mm_add, mm_lut and mm_mul allow it: they write each output
 * pixel in raster order, after reading every input byte it depends on. A kernel that wrote an
 * output pixel earlier, or cleared several pixels ahead, would break that contract. */

/* The kernels that op modules of micromix.ops carry themselves (mm_op_<kind>.c). */
#include "mm_registry.h"

#endif
