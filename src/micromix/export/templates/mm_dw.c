/* micromix: depthwise convolution (groups == channels) for every bit combination.
 *
 * Channels run in groups of four, one group over the whole output at a time. The group's
 * weights are widened once into halfword pairs (channels 0 and 2 of the group in one word,
 * 1 and 3 in the other: a small stack table), so that each tap of each pixel is one load of
 * the four channels' inputs, two or three instructions that make halfword pairs of them, and
 * four SMLABB / SMLATT on DSP cores (plain C with the same meaning elsewhere). Accumulators
 * stay in registers; 3x3 windows inside the image are unrolled, border windows run their
 * valid taps only (the zero padding adds nothing). On DSP cores, 3x3 kernels on 8-bit unsigned
 * inputs (mm_dw_3x3) run each window in one asm block, the inside ones of an output row in a
 * loop of their own; with 8-bit outputs that the fast rule clamps to [0, 255] (the common
 * case) whole rows, and blocks of rows, run as one asm loop (mm_dw_rows), as do the inside
 * windows of each row of 4x4 kernels (mm_dw_4x4_8u). Those loops take two taps of a row at a
 * time, each channel's two inputs a halfword pair for one SMLAD against its two weights (the
 * group's pairs rearranged once: mm_dw_3x3_sides, mm_dw_pairs16), and requantize a channel
 * with one SMLAL against a 64-bit addend that holds the bias and its shift (mm_dw_addend). Tall narrow
 * layers whose output does not overlap their input run column by column (mm_dw_cols: kws's
 * 25 x 5 px). 3x3 layers on 4- and 2-bit unsigned inputs run the same loops on their packed
 * rows where every window is in them (the direct path, MM_DW_DIRECT), else on rows widened
 * into a ring (mm_dw_3x3_w's). Leftover channels (c % 4) and kernels of more than MM_DW_TAPS
 * taps run one channel at a time. Every pixel of a group is written in raster order, after its window is
 * read (the in-place contract of mm_kernels.h), except in mm_dw_cols, which runs only apart.
 */
#include <stddef.h>

#include "mm_kernels.h"

static inline uint32_t mm_dw_pair(int32_t lo, int32_t hi)
{
    return ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
}

/* The layer, as the group kernels see it. */
typedef struct {
    int32_t in_pix, out_pix, row; /* bytes per input pixel, output pixel, input row */
    int in_h, in_w, out_h, out_w, kh, kw, sh, sw, ph, pw, ib, is, ob, bk;
    int32_t qmin, qmax;
    int ox_in, n_in; /* output columns ox_in .. ox_in + n_in - 1: windows inside the width */
    int oy0, oy1;    /* the output rows a group function runs: oy0 .. oy1 - 1 */
    int ox0, ox1;    /* ... and its columns (mm_dw_group only) */
} mm_dwl;

/* Halfword pairs of the four channels' inputs at p: lo = (ch 0, ch 2), hi = (ch 1, ch 3).
 * 8-bit unsigned: UXTB16 picks bytes 0, 2 (and 1, 3 rotated); 4- and 2-bit unsigned: the
 * second byte (field pair) is moved up by an OR, then masks pick the fields in place. */
#define MM_DW_X8U(p, lo, hi)                                                                      \
    do {                                                                                          \
        uint32_t x_;                                                                              \
        memcpy(&x_, (p), 4);                                                                      \
        lo = mm_uxtb16(x_);                                                                       \
        hi = mm_uxtb16_8(x_);                                                                     \
    } while (0)
#define MM_DW_X4U(p, lo, hi)                                                                      \
    do {                                                                                          \
        uint16_t h_;                                                                              \
        uint32_t x_;                                                                              \
        memcpy(&h_, (p), 2);                                                                      \
        x_ = h_ | ((uint32_t)h_ << 8);                                                            \
        lo = x_ & 0x000F000Fu;                                                                    \
        hi = (x_ >> 4) & 0x000F000Fu;                                                             \
    } while (0)
#define MM_DW_X2U(p, lo, hi)                                                                      \
    do {                                                                                          \
        const uint32_t x_ = *(p) | ((uint32_t) * (p) << 12);                                      \
        lo = x_ & 0x00030003u;                                                                    \
        hi = (x_ >> 2) & 0x00030003u;                                                             \
    } while (0)
/* Any format (signed inputs): field by field. */
static uint32_t mm_dw_xany(const uint8_t *p, int ib, int is, uint32_t *hi)
{
    *hi = mm_dw_pair(mm_get(p, 1, ib, is), mm_get(p, 3, ib, is));
    return mm_dw_pair(mm_get(p, 0, ib, is), mm_get(p, 2, ib, is));
}
#define MM_DW_XANY(p, lo, hi) lo = mm_dw_xany((p), L->ib, L->is, &hi)

#define MM_DW_TAPC(X, P_, K_, T_)                                                                 \
    do {                                                                                          \
        uint32_t lo_, hi_, w_[2];                                                                 \
        X((P_), lo_, hi_);                                                                        \
        w_[0] = (K_)[2 * (T_)];                                                                   \
        w_[1] = (K_)[2 * (T_) + 1];                                                               \
        a0 = mm_smlabb(lo_, w_[0], a0);                                                           \
        a2 = mm_smlatt(lo_, w_[0], a2);                                                           \
        a1 = mm_smlabb(hi_, w_[1], a1);                                                           \
        a3 = mm_smlatt(hi_, w_[1], a3);                                                           \
    } while (0)

#if defined(__ARM_FEATURE_DSP)
/* DSP cores: one tap in one asm block (the input word at base r + offset o, the two weight
 * pairs at wp + 8t, the pairs made, four MACs), so that gcc neither hoists the loads nor
 * spills the pairs. The blocks read memory that nothing writes during a group's call (the
 * input tensor, and wp, written before the call). */
#define MM_DW_MACS                                                                                \
    "smlabb %[a0], %[x], %[w], %[a0]\n\tsmlatt %[a2], %[x], %[w], %[a2]\n\t"                      \
    "smlabb %[a1], %[u], %[v], %[a1]\n\tsmlatt %[a3], %[u], %[v], %[a3]"
#define MM_DW_OUTS                                                                                \
    [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "=&r"(x_), [u] "=&r"(u_),     \
        [w] "=&r"(w_), [v] "=&r"(v_)
#define MM_DW_ASM(ld, pairs, R_, O_, K_, T_, ...)                                                 \
    do {                                                                                          \
        uint32_t x_, u_, w_, v_;                                                                  \
        __asm__ volatile(ld " %[x], [%[r], %[o]]\n\tldr %[w], [%[k], %[kw]]\n\t"                  \
                            "ldr %[v], [%[k], %[kv]]\n\t" pairs MM_DW_MACS                        \
                         : MM_DW_OUTS                                                             \
                         : [r] "r"(R_), [o] "r"(O_), [k] "r"(K_), [kw] "I"(8 * (T_)),             \
                           [kv] "I"(8 * (T_) + 4) __VA_ARGS__);                                   \
    } while (0)
#define MM_DW_T8U(R_, O_, K_, T_)                                                                 \
    MM_DW_ASM("ldr", "uxtb16 %[u], %[x], ror #8\n\tuxtb16 %[x], %[x]\n\t", R_, O_, K_, T_, )
/* A tap of 8-bit unsigned inputs at ADDR against the pairs of tap T at k, in an asm block
 * (mm_dw_edge_3x3_8u's). */
#define MM_DW_9T(ADDR, T)                                                                         \
    "ldr %[x], " ADDR "\n\tldr %[w], [%[k], #(8 * " #T ")]\n\t"                                   \
    "ldr %[v], [%[k], #(8 * " #T " + 4)]\n\tuxtb16 %[u], %[x], ror #8\n\tuxtb16 %[x], %[x]\n\t"  \
    MM_DW_MACS "\n\t"
#define MM_DW_SMUAD(A, X, W) "smuad %[" A "], %[" X "], %[" W "]\n\t"
#define MM_DW_SMLAD(A, X, W) "smlad %[" A "], %[" X "], %[" W "], %[" A "]\n\t"
/* Two taps, their inputs at [r] and [r, ip] and their weights four words from byte O of k on,
 * Y the fifth scratch register, MORE a load into x in the second burst of loads. */
#define MM_DW_PAIR(MAC, O, Y, MORE)                                                               \
    "ldr %[x], [%[r]]\n\tldr %[" Y "], [%[r], %[ip]]\n\tldr %[w], [%[k], #" O "]\n\t"         \
    "ldr %[v], [%[k], #" O " + 4]\n\tpkhbt %[u], %[x], %[" Y "], lsl #16\n\t"                  \
    "pkhtb %[" Y "], %[" Y "], %[x], asr #16\n\tuxtb16 %[x], %[u]\n\t"                          \
    "uxtb16 %[u], %[u], ror #8\n\t" MAC("a0", "x", "w") MAC("a1", "u", "v")                    \
    "ldr %[w], [%[k], #" O " + 8]\n\tldr %[v], [%[k], #" O " + 12]\n\t" MORE                    \
    "uxtb16 %[u], %[" Y "]\n\tuxtb16 %[" Y "], %[" Y "], ror #8\n\t" MAC("a2", "u", "w")         \
    MAC("a3", Y, "v")
/* One channel's fast rule clamped to [0, 2^B - 1] by USAT #B (MM_DW_RQU8's at B = 8) in its
 * SMLAL form: the addend's words at OL, OH, the multiplier at OM, the shift at ON. Exact: with
 * acc' = (acc << bk) + b, floor((acc' m + 2^(s-1)) / 2^s) = floor((acc m + C) / 2^(s - bk)) for
 * C = floor((b m + 2^(s-1)) / 2^bk), and floor(x / 2^(32 + n)) = floor(x / 2^32) >> n. */
#define MM_DW_RQK_(A, OL, OH, OM, ON, B)                                                          \
    "ldr %[x], [%[q], #" OL "]\n\tldr %[u], [%[q], #" OH "]\n\tldr %[w], [%[q], #" OM "]\n\t"      \
    "ldr %[v], [%[q], #" ON "]\n\tsmlal %[x], %[u], %[" A "], %[w]\n\t"                          \
    "asr %[" A "], %[u], %[v]\n\tusat %[" A "], #" B ", %[" A "]\n\t"
#define MM_DW_RQK(A, OL, OH, OM, ON) MM_DW_RQK_(A, OL, OH, OM, ON, "8")
#define MM_DW_RQK4(A, OL, OH, OM, ON) MM_DW_RQK_(A, OL, OH, OM, ON, "4")
#define MM_DW_RQK2(A, OL, OH, OM, ON) MM_DW_RQK_(A, OL, OH, OM, ON, "2")
/* The four channels' MM_DW_RQK (mm_dwq's cl, ch, m, n2). */
#define MM_DW_RQ4L(J)                                                                             \
    J("a0", "64", "80", "16", "96")                                                               \
    J("a1", "68", "84", "20", "100") J("a2", "72", "88", "24", "104") J("a3", "76", "92", "28", "108")
/* A row's third tap's inputs read as F reads them (MM_DW_PROW, in mm_dw_rows' loops):
 * LD F's load of the four channels' inputs, SPLIT_F their halfword pairs, x = (ch 0, ch 2)
 * and u = (ch 1, ch 3). 8: MM_DW_9T's; 4- and 2-bit unsigned fields (the packed rows of
 * mm_dw_3x3_w's direct path): the group's halfword or byte, moved up by an OR so that one AND
 * with an immediate picks each pair in place, channels 1 and 3 times 2^4 or 2^2 (mm_dw_fold
 * takes that out of their bias shift: no shift, no mask register in the loop). */
#define MM_DW_LD_8 "ldr"
#define MM_DW_SPLIT_8 "uxtb16 %[u], %[x], ror #8\n\tuxtb16 %[x], %[x]\n\t"
#define MM_DW_LD_4 "ldrh"
#define MM_DW_SPLIT_4                                                                             \
    "orr %[x], %[x], %[x], lsl #8\n\tand %[u], %[x], #0x00F000F0\n\tand %[x], %[x], #0x000F000F\n\t"
#define MM_DW_LD_2 "ldrb"
#define MM_DW_SPLIT_2                                                                             \
    "orr %[x], %[x], %[x], lsl #12\n\tand %[u], %[x], #0x000C000C\n\tand %[x], %[x], #0x00030003\n\t"
/* MM_DW_PAIR for F-bit packed inputs (F = 4, 2): the two taps' fields one word (the first in
 * the low half), each channel's pair picked by an AND with an immediate (channels 2 and 3
 * after a shift by 2F), channels 1 and 3 times 2^F as in MM_DW_SPLIT_F. */
#define MM_DW_PAIRS(LD, SH, M0, M1, MAC, O, Y, MORE)                                              \
    LD " %[x], [%[r]]\n\t" LD " %[" Y "], [%[r], %[ip]]\n\tldr %[w], [%[k], #" O "]\n\t"         \
    "ldr %[v], [%[k], #" O " + 4]\n\torr %[" Y "], %[x], %[" Y "], lsl #16\n\t"                 \
    "and %[x], %[" Y "], #" M0 "\n\tand %[u], %[" Y "], #" M1 "\n\t" MAC("a0", "x", "w")         \
    MAC("a1", "u", "v") "ldr %[w], [%[k], #" O " + 8]\n\tldr %[v], [%[k], #" O " + 12]\n\t" MORE \
    "lsr %[" Y "], %[" Y "], #" SH "\n\tand %[u], %[" Y "], #" M0 "\n\t"                          \
    "and %[" Y "], %[" Y "], #" M1 "\n\t" MAC("a2", "u", "w") MAC("a3", Y, "v")
#define MM_DW_PAIR_8 MM_DW_PAIR
#define MM_DW_PAIR_4(MAC, O, Y, MORE)                                                             \
    MM_DW_PAIRS("ldrh", "8", "0x000F000F", "0x00F000F0", MAC, O, Y, MORE)
#define MM_DW_PAIR_2(MAC, O, Y, MORE)                                                             \
    MM_DW_PAIRS("ldrb", "4", "0x00030003", "0x000C000C", MAC, O, Y, MORE)
#define MM_DW_T4U(R_, O_, K_, T_)                                                                 \
    MM_DW_ASM("ldrh",                                                                             \
              "orr %[x], %[x], %[x], lsl #8\n\tand %[u], %[m], %[x], lsr #4\n\t"                  \
              "and %[x], %[x], %[m]\n\t",                                                         \
              R_, O_, K_, T_, , [m] "r"(mask))
#define MM_DW_T2U(R_, O_, K_, T_)                                                                 \
    MM_DW_ASM("ldrb",                                                                             \
              "orr %[x], %[x], %[x], lsl #12\n\tand %[u], %[m], %[x], lsr #2\n\t"                 \
              "and %[x], %[x], %[m]\n\t",                                                         \
              R_, O_, K_, T_, , [m] "r"(mask))
#else
#define MM_DW_T8U(R_, O_, K_, T_) MM_DW_TAPC(MM_DW_X8U, (R_) + (O_), K_, T_)
#define MM_DW_T4U(R_, O_, K_, T_) MM_DW_TAPC(MM_DW_X4U, (R_) + (O_), K_, T_)
#define MM_DW_T2U(R_, O_, K_, T_) MM_DW_TAPC(MM_DW_X2U, (R_) + (O_), K_, T_)
#endif
#define MM_DW_TANY(R_, O_, K_, T_) MM_DW_TAPC(MM_DW_XANY, (R_) + (O_), K_, T_)

/* The most columns of a layer that mm_dw_cols runs (its runs kept for all its groups). */
#define MM_DW_COLS 5

/* A group's requantization (mm_requant's rule): for shifts above 32 (fast) the 32-bit form
 * with the rounding term r and the shift n - 32 precomputed per channel, else mm_requant. */
typedef struct {
    int32_t b[4], m[4], r[4], n[4]; /* the asm below reads these at fixed offsets */
    /* The fast rule as one SMLAL (mm_dw_rows, mm_dw_run4x4; where fold is set: mm_dw_addend):
     * per channel the 64-bit addend (b m + 2^(s-1)) >> bk (low, high word) and the shift
     * s - bk - 32 of the high word; with the bias and its shift folded in, a pixel's four
     * channels take 8 cycles each, not 10, and no bias shift load. */
    int32_t cl[4], ch[4], n2[4];
    int fold;
    int32_t bk, lo, hi; /* the bias shift, the clamp range */
    const int8_t *s;
    int fast; /* 0: mm_requant; 1: the fast rule; 2: the fast rule, clamp [0, 255]; 3: the fast
               * rule, 4- or 2-bit outputs clamped to their whole unsigned range */
    /* The state of mm_dw_rows' loop (DSP cores), kept here so that its asm reaches it from
     * q, the one base register it has left: the next output pixel, the pixels left in the
     * run, the input and output steps between pixels, the run's weight tables; the rows left,
     * the row's first input byte, the step between rows, the run (4 x its index), the first
     * table; each run's first window (bytes into the row) and window count. */
    uint8_t *o;
    int32_t cnt, step, opx;
    const uint32_t *k;
    int32_t rows;
    const uint8_t *row;
    int32_t rstep;
    const uint32_t *kt;
    int32_t roff[3], rn[3];
    /* mm_dw_rows' loop: the input step from a window's last tap row to the next window's
     * first (step - 2 row), the current run's last output pixel + opx, the next run, and the
     * row's non-empty runs (table, first window's byte offset in the row, windows) up to a
     * run of none, which holds the output pointer's step to the next row's first pixel and
     * (as an address) the next row's first run: mm_dw_runs_of's row (0, its own first run);
     * mm_dw_cols' columns as rows, four records each, up to MM_DW_COLS (kept for every
     * group) */
    int32_t adv;
    uint8_t *end;
    const struct mm_dwrun *run;
    struct mm_dwrun {
        int32_t k, off, n; /* k: the table's byte offset from kt */
    } runs[4 * MM_DW_COLS];
    int inside; /* mm_dw_runs_of */
    int apart;  /* the layer's input and output do not overlap */
    int covered; /* mm_dw_covered of the layer, once a layer (mm_dw_cols asks it every group) */
    int fib; /* the bits of the inputs mm_dw_rows reads: 8, or the packed 4 or 2 (direct path) */
    int ccols;   /* runs holds mm_dw_cols' runs of the whole layer (the same for every group) */
} mm_dwq;

typedef char mm_dwq_rq4l_ok[offsetof(mm_dwq, m) == 16 && offsetof(mm_dwq, cl) == 64 &&
                                   offsetof(mm_dwq, ch) == 80 && offsetof(mm_dwq, n2) == 96
                               ? 1
                               : -1];

#if defined(__ARM_FEATURE_DSP) && (MM_USE_DW_3X3_8U || MM_USE_DW_3X3_W || MM_USE_DW_4X4_8U)
#define MM_DW_FOLDS 1
#else
#define MM_DW_FOLDS 0
#endif
#if MM_DW_FOLDS
/* Whether a loop of mm_dw_3x3_w's direct path is compiled (MM_DW_DIRECT). */
#define MM_DW_DIRECT_ON                                                                           \
    (MM_USE_DW_D4_8 || MM_USE_DW_D4_4 || MM_USE_DW_D4_2 || MM_USE_DW_D2_8 || MM_USE_DW_D2_4 ||    \
     MM_USE_DW_D2_2)
/* Channel j's MM_DW_RQK addend (its shift s above 32): (b m + 2^(s-1)) >> f with f the bias
 * shift bk, or s - 32 where that is less (M >= 1/2: the high word alone would not hold the
 * result). Returns whether all of bk is folded in; a channel where it is not is right only if
 * its weights are all zero (mm_dw_zero_w: a constant output, multiplier 2^30, shift 30 + bk,
 * sums 0 whatever its inputs). */
static MM_INLINE int mm_dw_addend(mm_dwq *q, int j, int bk)
{
    const int s = q->s[j], f = s - 32 < bk ? s - 32 : bk; /* 0 .. 31 */
    const int64_t p = (int64_t)q->b[j] * q->m[j];
    uint32_t lo = (uint32_t)p;
    int32_t hi = (int32_t)(p >> 32) + ((int32_t)1 << (s - 33)); /* + 2^(s-1) */
    if (f) {
        lo = (lo >> f) | ((uint32_t)hi << (32 - f));
        hi >>= f;
    }
    q->cl[j] = (int32_t)lo;
    q->ch[j] = hi;
    q->n2[j] = s - f - 32;
    return f == bk;
}

/* The group's addends (q's fast rule set up) for its weight pairs wp (taps of them): whether
 * mm_dw_rows can requantize the group. Where a channel's bias shift is not all folded in
 * (M >= 1/2), by d = bk - f bits: right as it is with all-zero weights; else, if `scale` (the
 * row loops alone requantize every pixel: no window sees the other rules) and d <= 7, its
 * weights are scaled by 2^d (|w| 2^7 fits the halfword; the sums fit int32 as acc 2^bk does),
 * which folds the rest in. Channels 1 and 3 with sums 2^e times theirs (the direct path's
 * MM_DW_SPLIT_4 / _2, e = 4 or 2) take bias shift bk - e (acc 2^bk = (acc 2^e) 2^(bk - e)),
 * none below 0. Nothing is changed where it returns 0 (every channel is checked first). */
static MM_NOINLINE int mm_dw_fold(mm_dwq *q, uint32_t *wp, int taps, int scale, int e)
{
    int all = 1, d[4];
    e = MM_DW_DIRECT_ON ? e : 0; /* a constant where no direct loop is compiled */
    if (q->bk < e)
        return 0;
    for (int j = 0; j < 4; j++)
        all &= mm_dw_addend(q, j, j & 1 ? q->bk - e : q->bk);
    if (all) /* the common case: every bias shift folded in */
        return 1;
    for (int j = 0; j < 4; j++) /* the bits not folded in, where above 0 */
        d[j] = (j & 1 ? q->bk - e : q->bk) - (q->s[j] - 32);
    for (int j = 0; j < 4; j++) { /* a channel that cannot fold is right with zero weights only */
        uint32_t any = 0;
        for (int t = 0; d[j] > 0 && !(scale && d[j] <= 7) && t < taps; t++)
            any |= wp[2 * t + (j & 1)] >> (16 * (j >> 1)) & 0xFFFFu;
        if (any)
            return 0;
    }
    for (int j = 0; scale && j < 4; j++) { /* then the others' weights scaled by 2^d */
        const int sh = 16 * (j >> 1);
        for (int t = 0; d[j] > 0 && d[j] <= 7 && t < taps; t++) {
            uint32_t *const w = wp + 2 * t + (j & 1);
            const int32_t v = (int16_t)(*w >> sh);
            *w = (*w & ~(0xFFFFu << sh)) | (((uint32_t)(v * (1 << d[j])) & 0xFFFFu) << sh);
        }
    }
    return 1;
}

/* The fewest whole 4x4 windows in a row that mm_dw_run4x4 takes: fewer, the calls for the
 * border windows cost more than the loop saves (VWW's 3 x 3 px layer: 134 k -> 150 k est. M4
 * cycles, measured). */
#define MM_DW_RUN4X4 4

/* mm_dw_rows' runs of a row, r = 0 and 2: one pixel on each side as a whole window (its first
 * column 0, in_w - 3), or none. */
static int mm_dw_side_run(const mm_dwl *L, int r)
{
    const int e1 = L->ox_in + L->n_in;
    return r == 0 ? L->ox_in == 1 && L->pw == 1
                  : e1 == L->out_w - 1 && e1 * L->sw - L->pw == L->in_w - 2;
}

/* The last output row whose window lies inside the height (-1: none). */
static int mm_dw_inside(const mm_dwl *L)
{
    return L->in_h >= 3 ? (L->in_h - 3 + L->ph) / L->sh : -1;
}

/* Whether every output pixel of a 3x3 layer lies in a run of mm_dw_rows: in a row of whole
 * windows (a top row whose window starts one row up, the rows inside, a bottom row whose
 * window ends one row down) and a column of its runs. */
static int mm_dw_covered(const mm_dwl *L)
{
    const int out_h = L->out_h, top = L->ph == 1, b = mm_dw_inside(L);
    const int bottom = b + 2 == out_h && (out_h - 1) * L->sh - L->ph == L->in_h - 2;
    return L->n_in > 0 && L->in_h >= 3 && L->ph <= 1 && b >= top && (b + 1 == out_h || bottom) &&
           L->ox_in == mm_dw_side_run(L, 0) &&
           L->ox_in + L->n_in + mm_dw_side_run(L, 2) == L->out_w;
}

/* mm_dw_rows' loops, by the bits of the inputs they read and of their outputs. */
#define MM_DW_LOOP(ib, ob) ((ib) * 16 + (ob))
/* The loop of mm_dw_rows that takes the group's rule (fast 2 or 3) on q->fib-bit inputs and
 * ob-bit outputs, where it is compiled; else 0. */
static int mm_dw_loop(const mm_dwq *q, int ob)
{
    const int lp = (q->fast == 2 && ob == 8) || q->fast == 3 ? MM_DW_LOOP(q->fib, ob) : 0;
    return lp == MM_DW_LOOP(8, 8) || (lp == MM_DW_LOOP(8, 4) && MM_USE_DW_OUT4) ||
                   (lp == MM_DW_LOOP(8, 2) && MM_USE_DW_OUT2) ||
                   (lp == MM_DW_LOOP(4, 8) && MM_USE_DW_D4_8) ||
                   (lp == MM_DW_LOOP(4, 4) && MM_USE_DW_D4_4) ||
                   (lp == MM_DW_LOOP(4, 2) && MM_USE_DW_D4_2) ||
                   (lp == MM_DW_LOOP(2, 8) && MM_USE_DW_D2_8) ||
                   (lp == MM_DW_LOOP(2, 4) && MM_USE_DW_D2_4) ||
                   (lp == MM_DW_LOOP(2, 2) && MM_USE_DW_D2_2)
               ? lp
               : 0;
}

/* Whether, and on which inputs, mm_dw_rows takes the group (its fast rule set up: q->fold,
 * q->fib): the packed ib-bit rows of the direct path (direct: ib, else 8) where its loop is
 * compiled and the group's sums (channels 1 and 3 2^ib times theirs) fold, else bytes (8-bit
 * inputs, or the ring's widened rows), scaling the weights only where every window is the
 * loops' (cover). */
static MM_INLINE void mm_dw_loops_of(mm_dwq *q, uint32_t *wp, int taps, int ob, int cover,
                                     int direct)
{
    q->fib = direct;
    q->fold = direct != 8 && mm_dw_loop(q, ob) && mm_dw_fold(q, wp, taps, 1, direct);
    if (!q->fold) {
        q->fib = 8;
        q->fold = mm_dw_fold(q, wp, taps, cover && mm_dw_loop(q, ob), 0);
    }
}
#endif

static MM_NOINLINE void mm_dw_requant4(const mm_dwl *L, const mm_dwq *q, const int32_t *acc, int32_t *y)
{
    for (int j = 0; j < 4; j++)
        y[j] = mm_requant(mm_biased(acc[j], q->b[j], L->bk), q->m[j], q->s[j], L->qmin,
                          L->qmax);
}

#if defined(__ARM_FEATURE_DSP)
/* The fast rule for the four outputs in one asm block: shifts, bias, SMMLA (the high word of
 * the product plus the rounding term), shift, clamp; gcc kept reloading q otherwise. */
#define MM_DW_RQJ(A, OB, OM, OR, ON)                                                              \
    MM_DW_RQJ_(A, OB, OM, OR, ON)                                                                 \
    "cmp %[" A "], %[lo]\n\tit lt\n\tmovlt %[" A "], %[lo]\n\t"                                   \
    "cmp %[" A "], %[hi]\n\tit gt\n\tmovgt %[" A "], %[hi]\n\t"
/* A channel's four parameters in four loads in a row (one cycle each after the first). */
#define MM_DW_RQJ_(A, OB, OM, OR, ON)                                                             \
    "ldr %[t], [%[q], #" OB "]\n\tldr %[u], [%[q], #" OM "]\n\tldr %[v], [%[q], #" OR "]\n\t"      \
    "ldr %[y], [%[q], #" ON "]\n\tlsl %[" A "], %[" A "], %[bk]\n\tadd %[" A "], %[" A "], %[t]\n\t" \
    "smmla %[" A "], %[" A "], %[u], %[v]\n\tasr %[" A "], %[" A "], %[y]\n\t"
/* The clamp to [0, 255] (8-bit unsigned outputs) is one USAT. */
#define MM_DW_RQU8(A, OB, OM, OR, ON) MM_DW_RQJ_(A, OB, OM, OR, ON) "usat %[" A "], #8, %[" A "]\n\t"
#define MM_DW_RQ4(J)                                                                              \
    J("a0", "0", "16", "32", "48")                                                                \
    J("a1", "4", "20", "36", "52") J("a2", "8", "24", "40", "56") J("a3", "12", "28", "44", "60")
#define MM_DW_RQOUT                                                                               \
    [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [t] "=&r"(t_), [u] "=&r"(u_),     \
        [v] "=&r"(v_), [y] "=&r"(y_)
#define MM_DW_REQ4U8()                                                                            \
    do {                                                                                          \
        uint32_t t_, u_, v_, y_;                                                                  \
        __asm__(MM_DW_RQ4(MM_DW_RQU8)                                                             \
                : MM_DW_RQOUT                                                                     \
                : [q] "r"(q), [bk] "r"(q->bk), "m"(*q));                                          \
    } while (0)
/* 4- and 2-bit unsigned outputs over their whole range: the clamp is one USAT too. */
#define MM_DW_RQU4(A, OB, OM, OR, ON)                                                             \
    MM_DW_RQJ_(A, OB, OM, OR, ON) "usat %[" A "], #4, %[" A "]\n\t"
#define MM_DW_RQU2(A, OB, OM, OR, ON)                                                             \
    MM_DW_RQJ_(A, OB, OM, OR, ON) "usat %[" A "], #2, %[" A "]\n\t"
#define MM_DW_REQ4US(J)                                                                           \
    do {                                                                                          \
        uint32_t t_, u_, v_, y_;                                                                  \
        __asm__(MM_DW_RQ4(J) : MM_DW_RQOUT : [q] "r"(q), [bk] "r"(q->bk), "m"(*q));               \
    } while (0)
#define MM_DW_REQ4U4() MM_DW_REQ4US(MM_DW_RQU4)
#define MM_DW_REQ4U2() MM_DW_REQ4US(MM_DW_RQU2)
#define MM_DW_REQ4()                                                                              \
    do {                                                                                          \
        uint32_t t_, u_, v_, y_;                                                                  \
        __asm__(MM_DW_RQ4(MM_DW_RQJ)                                                              \
                : MM_DW_RQOUT                                                                     \
                : [q] "r"(q), [bk] "r"(q->bk), [lo] "r"(q->lo), [hi] "r"(q->hi), "m"(*q)          \
                : "cc");                                                                          \
    } while (0)
#else
#define MM_DW_RQ(a, j)                                                                            \
    do {                                                                                          \
        const int32_t v_ =                                                                        \
            mm_smmla((uint32_t)mm_biased(a, q->b[j], q->bk), (uint32_t)q->m[j],                   \
                        q->r[j]) >>                                                               \
            q->n[j];                                                                              \
        a = v_ < q->lo ? q->lo : v_ > q->hi ? q->hi : v_;                                         \
    } while (0)
#define MM_DW_REQ4()                                                                              \
    do {                                                                                          \
        MM_DW_RQ(a0, 0);                                                                          \
        MM_DW_RQ(a1, 1);                                                                          \
        MM_DW_RQ(a2, 2);                                                                          \
        MM_DW_RQ(a3, 3);                                                                          \
    } while (0)
#define MM_DW_REQ4U8() MM_DW_REQ4()
#define MM_DW_REQ4U4() MM_DW_REQ4()
#define MM_DW_REQ4U2() MM_DW_REQ4()
#endif

/* The input formats of the group kernel, each a specialisation of mm_dw_group. */
enum { MM_DW_8U, MM_DW_4U, MM_DW_2U, MM_DW_ANY };

/* One tap for the format `fmt` (a constant at each use: the other branches fold away). */
#define MM_DW_TAP(fmt, R_, O_, K_, T_)                                                           \
    do {                                                                                          \
        if ((fmt) == MM_DW_8U)                                                                   \
            MM_DW_T8U(R_, O_, K_, T_);                                                            \
        else if ((fmt) == MM_DW_4U)                                                              \
            MM_DW_T4U(R_, O_, K_, T_);                                                            \
        else if ((fmt) == MM_DW_2U)                                                              \
            MM_DW_T2U(R_, O_, K_, T_);                                                            \
        else                                                                                      \
            MM_DW_TANY(R_, O_, K_, T_);                                                           \
    } while (0)

/* The 3x3 windows' stores of 4- and 2-bit outputs (MM_DW_OUT's, and the direct path's where
 * its groups take the ring instead). */
#define MM_DW_OUT4_ON (MM_USE_DW_OUT4 || MM_USE_DW_D4_4 || MM_USE_DW_D2_4)
#define MM_DW_OUT2_ON (MM_USE_DW_OUT2 || MM_USE_DW_D4_2 || MM_USE_DW_D2_2)
/* The group's four sums a0 .. a3 of one pixel requantized and stored at out (locals of the
 * group kernels: L, q, ob). */
#define MM_DW_PUT(fmt)                                                                            \
    do {                                                                                          \
        if ((fmt) == MM_DW_8U && q->fast == 2) {                                                  \
            MM_DW_REQ4U8();                                                                       \
        } else if (MM_DW_OUT4_ON && q->fast == 3 && ob == 4) { /* else the clamp below */        \
            MM_DW_REQ4U4();                                                                       \
        } else if (MM_DW_OUT2_ON && q->fast == 3 && ob == 2) {                                    \
            MM_DW_REQ4U2();                                                                       \
        } else if (q->fast && ((fmt) != MM_DW_8U || MM_USE_DW_RQANY)) {                           \
            MM_DW_REQ4();                                                                         \
        } else if (MM_USE_DW_RQANY) {                                                             \
            int32_t acc_[4] = {a0, a1, a2, a3}, y_[4];                                            \
            mm_dw_requant4(L, q, acc_, y_);                                                       \
            a0 = y_[0];                                                                           \
            a1 = y_[1];                                                                           \
            a2 = y_[2];                                                                           \
            a3 = y_[3];                                                                           \
        } else { /* the other rules are compiled where a layer has them (DW_RQANY) */             \
            MM_PATH_OFF();                                                                        \
        }                                                                                         \
        if (ob == 8) {                                                                            \
            out[0] = (uint8_t)a0;                                                                 \
            out[1] = (uint8_t)a1;                                                                 \
            out[2] = (uint8_t)a2;                                                                 \
            out[3] = (uint8_t)a3;                                                                 \
        } else if (ob == 4) {                                                                     \
            out[0] = (uint8_t)((a0 & 15) | ((uint32_t)a1 << 4));                                  \
            out[1] = (uint8_t)((a2 & 15) | ((uint32_t)a3 << 4));                                  \
        } else {                                                                                  \
            out[0] = (uint8_t)((a0 & 3) | ((a1 & 3) << 2) | ((a2 & 3) << 4) | ((uint32_t)a3 << 6)); \
        }                                                                                         \
    } while (0)

/* One group of four channels over the whole output: in and out point at the group's first
 * byte of pixel 0, wp holds the taps' weight pairs. Windows inside the image are told by one
 * unsigned compare of the window's first column (lim is 0 on rows that need padding). Forced
 * inline into one function per input format (`fmt` a constant): signed inputs (rare) get no
 * unrolled code, 8-bit unsigned ones a USAT clamp to [0, 255]. */
static MM_INLINE void mm_dw_group(const mm_dwl *L, const uint8_t *in, uint8_t *out0,
                                  const uint32_t *wp, const mm_dwq *q, const int fmt)
{
    const int32_t ip = L->in_pix, ip2 = 2 * ip, ip3 = 3 * ip, rs = L->row, step = L->sw * ip;
    const int kh = L->kh, kw = L->kw, ob = L->ob, unroll = fmt != MM_DW_ANY;
    const uint32_t mask = fmt == MM_DW_4U ? 0x000F000Fu : fmt == MM_DW_2U ? 0x00030003u : 0;
    const int32_t zero = 0;
    (void)mask;
    for (int oy = L->oy0; oy < L->oy1; oy++) {
        const int iy0 = oy * L->sh - L->ph;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = L->in_h - iy0 < kh ? L->in_h - iy0 : kh;
        const uint32_t n_in = unroll && kh == 3 && kw == 3 && ky0 == 0 && ky1 == 3 ? L->n_in : 0;
        int32_t px = (int32_t)iy0 * rs + (int32_t)(L->ox0 * L->sw - L->pw) * ip; /* corner */
        uint8_t *out = out0 + ((int32_t)oy * L->out_w + L->ox0) * L->out_pix;
        for (int ox = L->ox0; ox < L->ox1; ox++, out += L->out_pix, px += step) {
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            if ((uint32_t)(ox - L->ox_in) < n_in) {
                const uint8_t *r = in + px;
                MM_DW_TAP(fmt, r, zero, wp, 0);
                MM_DW_TAP(fmt, r, ip, wp, 1);
                MM_DW_TAP(fmt, r, ip2, wp, 2);
                r += rs;
                MM_DW_TAP(fmt, r, zero, wp, 3);
                MM_DW_TAP(fmt, r, ip, wp, 4);
                MM_DW_TAP(fmt, r, ip2, wp, 5);
                r += rs;
                MM_DW_TAP(fmt, r, zero, wp, 6);
                MM_DW_TAP(fmt, r, ip, wp, 7);
                MM_DW_TAP(fmt, r, ip2, wp, 8);
            } else {
                const int ix0 = ox * L->sw - L->pw, kx0 = ix0 < 0 ? -ix0 : 0,
                          kx1 = L->in_w - ix0 < kw ? L->in_w - ix0 : kw;
                if (unroll && kh == 3 && kw == 3) { /* each valid row's valid taps */
                    for (int ky = kx0 < kx1 ? ky0 : ky1; ky < ky1; ky++) {
                        const uint32_t *wr = wp + 6 * ky;
                        int32_t o = px + (int32_t)ky * rs;
                        if (kx0 == 0)
                            MM_DW_TAP(fmt, in, o, wr, 0);
                        o += ip;
                        if (kx0 <= 1 && kx1 >= 2)
                            MM_DW_TAP(fmt, in, o, wr, 1);
                        o += ip;
                        if (kx1 == 3)
                            MM_DW_TAP(fmt, in, o, wr, 2);
                    }
                } else if (unroll && kw == 4 && kx0 == 0 && kx1 == 4) {
                    /* rows of a 4-wide kernel inside the width (the stride-2 layers of an
                     * imported TFLite MobileNet: TF's one-sided padding made a 4x4 kernel):
                     * four taps in a row, no loop (VWW 96x96: 8.2 -> 5.8 est. M4 cycles per
                     * MAC, measured) */
                    for (int ky = ky0; ky < ky1; ky++) {
                        const uint8_t *r = in + (px + (int32_t)ky * rs);
                        const uint32_t *wr = wp + 8 * ky;
                        MM_DW_TAP(fmt, r, zero, wr, 0);
                        MM_DW_TAP(fmt, r, ip, wr, 1);
                        MM_DW_TAP(fmt, r, ip2, wr, 2);
                        MM_DW_TAP(fmt, r, ip3, wr, 3);
                    }
                } else {
                    for (int ky = ky0; ky < ky1; ky++) {
                        const uint8_t *r = in + (px + (int32_t)ky * rs + (int32_t)kx0 * ip);
                        for (int kx = kx0; kx < kx1; kx++, r += ip)
                            MM_DW_TAP(fmt, r, zero, wp + 2 * (ky * kw + kx), 0);
                    }
                }
            }
            MM_DW_PUT(fmt);
        }
    }
}

#if MM_USE_DW_3X3_W
typedef char mm_dw_ring_is_five_rows[MM_DW_RING == 5 ? 1 : -1];

/* Row p of the group's four 4- or 2-bit channels as one byte per channel at d and at d2 (its
 * copy in the ring of mm_dw_3x3_w, or d again; word aligned: the scratch is int32), two pixels
 * a step. On DSP cores the pairs in one asm loop (two loads, the spreads of mm_spread4 /
 * mm_spread2 with immediate masks, two STRD; gcc's loop took about 18 cycles a pixel, this one
 * 11): the demo's four layers on 4- and 2-bit inputs 2.3 k to 4.4 k est. M4 cycles faster each,
 * measured. */
#if defined(__ARM_FEATURE_DSP)
#define MM_DW_SPREAD4(R)                                                                          \
    "orr " R ", " R ", " R ", lsl #8\n\tand " R ", " R ", #0x00FF00FF\n\t"                        \
    "orr " R ", " R ", " R ", lsl #4\n\tand " R ", " R ", #0x0F0F0F0F\n\t"
#define MM_DW_SPREAD2(R)                                                                          \
    "orr " R ", " R ", " R ", lsl #12\n\torr " R ", " R ", " R ", lsl #6\n\t"                     \
    "and " R ", " R ", #0x03030303\n\t"
#define MM_DW_WIDEN_ASM(LD, SPREAD)                                                               \
    __asm__ volatile("1:\n\t" LD " %[a], [%[p]]\n\t" LD " %[b], [%[p], %[ip]]\n\t"                \
                     "add %[p], %[p], %[ip], lsl #1\n\t" SPREAD("%[a]") SPREAD("%[b]")            \
                     "strd %[a], %[b], [%[d]], #8\n\tstrd %[a], %[b], [%[e]], #8\n\t"             \
                     "subs %[n], %[n], #1\n\tbne 1b"                                              \
                     : [a] "=&r"(a_), [b] "=&r"(b_), [p] "+r"(p), [d] "+r"(d), [e] "+r"(d2),      \
                       [n] "+r"(n)                                                                \
                     : [ip] "r"(ip)                                                               \
                     : "cc", "memory")
#endif
static void mm_dw_widen_row(const mm_dwl *L, const uint8_t *p, uint8_t *d, uint8_t *d2)
{
    const int32_t ip = L->in_pix;
    int32_t n = L->in_w >> 1; /* pixel pairs */
#if defined(__ARM_FEATURE_DSP)
    uint32_t a_, b_;
    if (n > 0 && L->ib == 4)
        MM_DW_WIDEN_ASM("ldrh", MM_DW_SPREAD4);
    else if (n > 0)
        MM_DW_WIDEN_ASM("ldrb", MM_DW_SPREAD2);
#else
    uint32_t *const a = (uint32_t *)(void *)d, *const b = (uint32_t *)(void *)d2;
    for (int32_t x = 0; x < 2 * n; x += 2, p += 2 * ip) { /* the four stores in a row (STRD) */
        const uint32_t u = L->ib == 4 ? mm_spread4(p[0] | (uint32_t)p[1] << 8) : mm_spread2(p[0]);
        const uint32_t v =
            L->ib == 4 ? mm_spread4(p[ip] | (uint32_t)p[ip + 1] << 8) : mm_spread2(p[ip]);
        a[x] = u, a[x + 1] = v, b[x] = u, b[x + 1] = v;
    }
    d += 8 * n, d2 += 8 * n;
#endif
    if (L->in_w & 1) {
        const uint32_t u = L->ib == 4 ? mm_spread4(p[0] | (uint32_t)p[1] << 8) : mm_spread2(p[0]);
        memcpy(d, &u, 4);
        memcpy(d2, &u, 4);
    }
}

/* Words n of the ring from s to d (d below s, no overlap: mm_dw_3x3_w's four-row ring). On DSP
 * cores two words a step in asm (newlib-nano's memcpy goes byte by byte, and gcc turns a
 * plain loop back into a memcpy call). */
static void mm_dw_ring_copy(uint32_t *d, const uint32_t *s, int32_t n)
{
#if defined(__ARM_FEATURE_DSP)
    if (n >= 2) {
        uint32_t a_, b_;
        int32_t m_ = n & ~1;
        __asm__ volatile("1:\n\tldrd %[a], %[b], [%[s]], #8\n\tstrd %[a], %[b], [%[d]], #8\n\t"
                         "subs %[m], %[m], #2\n\tbgt 1b"
                         : [a] "=&r"(a_), [b] "=&r"(b_), [s] "+r"(s), [d] "+r"(d), [m] "+r"(m_)
                         :
                         : "cc", "memory");
    }
    if (n & 1)
        *d = *s;
#else
    memcpy(d, s, (size_t)n * 4);
#endif
}

/* The ring of mm_dw_3x3_w: the layer as it is (packed rows from in), the ring and its row
 * bytes, the next input row to widen, the four-row ring's top row, the last first row of a
 * window inside the height, whether rows are short enough for the five-row ring. */
typedef struct mm_dwr {
    const mm_dwl *L;
    const uint8_t *in;
    uint8_t *ring;
    int32_t rs;
    int next, first, last, five;
} mm_dwr;

/* Output row oy's input rows widened into the ring (the ones not widened yet); returns the base
 * pointer that puts them where the 8-bit code reads input row lo .. lo + 2 (lo: the output row's
 * first row, moved inside the image as the 8-bit code moves it). Rows of at most MM_DW_RING_W
 * columns: MM_DW_RING = 5 ring rows, row y at ring row y % 3, and rows with y % 3 < 2 again at
 * y % 3 + 3. Wider rows (the counted scratch holds four of them, MM_DW_GROUP): four ring rows,
 * row y at ring row y - first; when an output row's rows would run past the fourth, the rows it
 * keeps (at most two) are copied to the top first (widening them again could read inputs
 * already overwritten in place). A row is widened before any output pixel that reads it is
 * written, so running in place holds as it does for the 8-bit code (which reads the same rows
 * later). */
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__) && MM_DW_DIRECT_ON
/* on DSP cores with the direct path the ring serves its groups that it cannot take only: out of
 * line and optimized for size (cold), 400 B less .text in the demo's mixed build */
__attribute__((noinline, cold))
#endif
static const uint8_t *mm_dw_ring_rows(mm_dwr *g, int oy)
{
    const mm_dwl *const L = g->L;
    const int in_h = L->in_h, iy0 = oy * L->sh - L->ph, five = g->five;
    const int lo = iy0 < 0 ? 0 : iy0 > g->last ? g->last : iy0, hi = lo + 3 < in_h ? lo + 3 : in_h;
    const int32_t rs = g->rs;
    uint8_t *const ring = g->ring;
    if (!five && hi - g->first > MM_DW_RING - 1) { /* rows lo .. next - 1 to the top */
        if (g->next > lo)
            mm_dw_ring_copy((uint32_t *)(void *)ring,
                            (const uint32_t *)(void *)(ring + (int32_t)(lo - g->first) * rs),
                            (int32_t)(g->next - lo) * L->in_w);
        else
            g->next = lo;
        g->first = lo;
    }
    for (; g->next < hi; g->next++) {
        const int r = five ? g->next % 3 : g->next - g->first;
        uint8_t *const d = ring + r * rs;
        mm_dw_widen_row(L, g->in + (int32_t)g->next * L->row, d, five && r < 2 ? d + 3 * rs : d);
    }
    /* input row y at ring row lo % 3 + y - lo (y - first): an address outside the ring for rows
     * the output row does not read, formed as an integer (never dereferenced) */
    return (const uint8_t *)((uintptr_t)ring +
                             (uintptr_t)((int32_t)(five ? lo % 3 - lo : -g->first) * rs));
}
#endif

#if defined(__ARM_FEATURE_DSP) && (MM_USE_DW_3X3_8U || MM_USE_DW_3X3_W)
/* One kernel row's taps TAPS (MM_DW_9T's) into a0 .. a3: the row's inputs at r, its weight
 * pairs at k. */
#define MM_DW_ROW_8U(TAPS, R_, IP_, K_)                                                           \
    do {                                                                                          \
        uint32_t x_, u_, w_, v_;                                                                  \
        __asm__ volatile(TAPS                                                                     \
                         : MM_DW_OUTS                                                             \
                         : [r] "r"(R_), [ip] "r"(IP_), [k] "r"(K_));                              \
    } while (0)

/* Output pixels ox0 .. ox1 - 1 of row oy whose 3x3 windows cross the border (8-bit unsigned
 * inputs): the valid kernel rows, each row's taps inside the image (kx0 .. kx1 - 1, any
 * padding) one asm block each, read from the row's first column inside on. (A block per
 * case of taps took 228 B more .text, which the demo's mixed build, at 24,576 B, could not
 * pay for mm_dw_rows' pairs; the demo's W8/A8 build 5.2 k est. M4 cycles slower, measured.) */
static MM_NOINLINE void mm_dw_edge_3x3_8u(const mm_dwl *L, const uint8_t *in, uint8_t *out,
                                          const uint32_t *wp, const mm_dwq *q, int oy, int ox0,
                                          int ox1)
{
    const int32_t ip = L->in_pix, rs = L->row;
    const int ob = L->ob, iy0 = oy * L->sh - L->ph;
    const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = L->in_h - iy0 < 3 ? L->in_h - iy0 : 3;
    out += ((int32_t)oy * L->out_w + ox0) * L->out_pix;
    for (int ox = ox0; ox < ox1; ox++, out += L->out_pix) {
        const int ix0 = ox * L->sw - L->pw;
        const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = L->in_w - ix0 < 3 ? L->in_w - ix0 : 3;
        const int taps = kx0 < kx1 && ky0 < ky1 ? 4 * kx0 + kx1 : 0; /* the columns inside */
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        if (taps) {
            const uint8_t *r = in + (int32_t)(iy0 + ky0) * rs + (int32_t)(ix0 + kx0) * ip;
            const uint32_t *k = wp + 6 * ky0;
            for (int ky = ky0; ky < ky1; ky++, r += rs, k += 6) { /* each valid tap */
                const uint8_t *p = r;
                if (kx0 == 0) {
                    MM_DW_ROW_8U(MM_DW_9T("[%[r]]", 0), p, ip, k);
                    p += ip;
                }
                if (kx0 <= 1 && kx1 >= 2) {
                    MM_DW_ROW_8U(MM_DW_9T("[%[r]]", 1), p, ip, k);
                    p += ip;
                }
                if (kx1 == 3)
                    MM_DW_ROW_8U(MM_DW_9T("[%[r]]", 2), p, ip, k);
            }
        }
        MM_DW_PUT(MM_DW_8U);
    }
}


/* mm_dw_3x3's weight tables: the pairs moved one column left (zeros in the right column),
 * as they are, moved one column right; each with a row of zeros before and after it, so that
 * a table from its second row on is the kernel moved one row up, and from the zeros before
 * it one row down. A row of a table is six words: its first two taps' weights as one
 * halfword pair per channel (channels 0 .. 3: SMLAD's operands), then the third tap's pairs
 * (channels 0 and 2, 1 and 3). */
#define MM_DW_KT 30

/* One kernel row of mm_dw_rows on F-bit inputs (its table row at byte O from k, its inputs at
 * r): the first two taps' inputs made halfword pairs per channel (MM_DW_PAIR_F: PKHBT / PKHTB,
 * UXTB16 for bytes, ANDs for the direct path's packed fields) for two SMLADs a channel pair
 * (MAC: MM_DW_SMUAD on the window's first row: products, not sums), the third tap as
 * MM_DW_9T's; q is the fifth scratch register (its value on the stack). 28 cycles a row on
 * bytes, not 30: kws's 25 x 5 px layers 298,928 -> 290,563 est. M4 cycles each, measured
 * (with mm_dw_3x3_sides' pairing). */
#define MM_DW_PROW(F, MAC, O)                                                                     \
    MM_DW_PAIR_##F(MAC, O, "q", MM_DW_LD_##F " %[x], [%[r], %[ip], lsl #1]\n\t")               \
    "ldr %[w], [%[k], #" O " + 16]\n\tldr %[v], [%[k], #" O " + 20]\n\t" MM_DW_SPLIT_##F      \
    MM_DW_MACS "\n\t"

/* Rows of whole 3x3 windows of F-bit unsigned inputs with B-bit outputs (8, 4 or 2) clamped to
 * [0, 2^B - 1] by the fast rule (B < 8: MM_DW_OUT's), in one asm loop, its state in q (14
 * registers: gcc kept the loop's pointers and counts on the stack and reloaded them around
 * smaller asm blocks): q->rows rows from q->row on, q->rstep bytes apart, each the non-empty
 * runs of mm_dw_runs_of as q->runs (n windows from off on, step bytes apart, against the table
 * k; a run of none ends the row), the pixels stored from o on, opx apart. Each pixel: the
 * window (its first tap products, not sums: no zeroing), the requantization (RQK: MM_DW_RQK's
 * for B), the four outputs packed B bits apart (S1 .. S3: B, 2B, 3B) and stored by ST (str,
 * strh, strb), the step; a run ends at its last pixel's end address (set up by one MLA).
 * Sub-byte outputs in this loop instead of a C loop around asm blocks: the demo's
 * 4-bit-output layers 309,075 -> 292,043 and 328,939 -> 313,675 est. M4 cycles, measured. Run
 * records and the output pointer in a register, not a run index and a stored count: kws's
 * 25 x 5 px layers 333,870 -> 325,867 est. M4 cycles each, measured. */
#define MM_DW_ROWS_ASM(F, RQK, S1, S2, S3, ST)                                                     \
    __asm__ volatile(                                                                             \
        /* q kept on the stack (MM_DW_PROW's scratch); the next run: its table, first window   \
         * and end, or the row's end */                                                         \
        "sub sp, sp, #8\n\tstr %[q], [sp]\n\t"                                                 \
        "3:\n\tldr %[x], [%[q], %[orun]]\n\tldr %[v], [%[x], #8]\n\tcmp %[v], #0\n\tbeq 5f\n\t"   \
        "ldr %[k], [%[x]]\n\tldr %[w], [%[x], #4]\n\tldr %[r], [%[q], %[orow]]\n\t"               \
        "ldr %[u], [%[q], %[oopx]]\n\tldr %[a0], [%[q], %[okt]]\n\tadd %[x], %[x], #12\n\t"       \
        "str %[x], [%[q], %[orun]]\n\tadd %[k], %[k], %[a0]\n\t"                                   \
        "mla %[v], %[v], %[u], %[o]\n\tstr %[v], [%[q], %[oend]]\n\tadd %[r], %[r], %[w]\n\t"     \
        /* the run's pixels */                                                                  \
        "1:\n\t" MM_DW_PROW(F, MM_DW_SMUAD, "0") "add %[r], %[r], %[rs]\n\t"                   \
        MM_DW_PROW(F, MM_DW_SMLAD, "24") "add %[r], %[r], %[rs]\n\t"                          \
        MM_DW_PROW(F, MM_DW_SMLAD, "48") "ldr %[q], [sp]\n\t" MM_DW_RQ4L(RQK)                 \
        "orr %[a0], %[a0], %[a1], lsl #" S1 "\n\torr %[a0], %[a0], %[a2], lsl #" S2 "\n\t"         \
        "orr %[a0], %[a0], %[a3], lsl #" S3 "\n\tldr %[u], [%[q], %[oopx]]\n\t"                   \
        "ldr %[w], [%[q], %[oadv]]\n\tldr %[v], [%[q], %[oend]]\n\t" ST " %[a0], [%[o]]\n\t"      \
        "add %[o], %[o], %[u]\n\tadd %[r], %[r], %[w]\n\tcmp %[o], %[v]\n\tbne 1b\n\tb 3b\n\t"    \
        /* the row's runs done: the next row, if any */                                         \
        "5:\n\tldr %[v], [%[q], %[orows]]\n\tsubs %[v], %[v], #1\n\tbeq 4f\n\t"                   \
        "ldr %[w], [%[q], %[orow]]\n\tldr %[u], [%[q], %[orstep]]\n\tstr %[v], [%[q], %[orows]]\n\t" \
        "ldr %[a0], [%[x]]\n\tldr %[x], [%[x], #4]\n\tadd %[w], %[w], %[u]\n\t"                  \
        "add %[o], %[o], %[a0]\n\tstr %[w], [%[q], %[orow]]\n\t"                                  \
        "str %[x], [%[q], %[orun]]\n\tb 3b\n\t4:\n\tadd sp, sp, #8"                                \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [x] "=&r"(x_),          \
          [u] "=&r"(u_), [w] "=&r"(w_), [v] "=&r"(v_), [r] "=&r"(r), [k] "=&r"(k), [o] "+&r"(o),  \
          [q] "+&r"(q)                                                                            \
        : [ip] "r"(ip), [rs] "r"(rs), [oopx] "n"(offsetof(mm_dwq, opx)),                          \
          [oadv] "n"(offsetof(mm_dwq, adv)), [oend] "n"(offsetof(mm_dwq, end)),                   \
          [orun] "n"(offsetof(mm_dwq, run)),                                                      \
          [orows] "n"(offsetof(mm_dwq, rows)), [orow] "n"(offsetof(mm_dwq, row)),                 \
          [orstep] "n"(offsetof(mm_dwq, rstep)), [okt] "n"(offsetof(mm_dwq, kt))                  \
        : "cc", "memory")

/* The loop for F-bit inputs and B-bit outputs (its RQK and packing). */
#define MM_DW_ROWS_8(F) MM_DW_ROWS_ASM(F, MM_DW_RQK, "8", "16", "24", "str")
#define MM_DW_ROWS_4(F) MM_DW_ROWS_ASM(F, MM_DW_RQK4, "4", "8", "12", "strh")
#define MM_DW_ROWS_2(F) MM_DW_ROWS_ASM(F, MM_DW_RQK2, "2", "4", "6", "strb")

/* lp: the loop (MM_DW_LOOP; a constant at each use: one loop per format compiled); q->kt:
 * the rows' tables. */
static MM_INLINE void mm_dw_rows(mm_dwq *q, int32_t ip, int32_t rs, const int lp)
{
    uint32_t a0, a1, a2, a3, x_, u_, w_, v_;
    const uint8_t *r;
    const uint32_t *k;
    uint8_t *o = q->o;
    if (lp == MM_DW_LOOP(8, 8))
        MM_DW_ROWS_8(8);
#if MM_USE_DW_OUT4
    else if (lp == MM_DW_LOOP(8, 4))
        MM_DW_ROWS_4(8);
#endif
#if MM_USE_DW_OUT2
    else if (lp == MM_DW_LOOP(8, 2))
        MM_DW_ROWS_2(8);
#endif
#if MM_USE_DW_D4_8
    else if (lp == MM_DW_LOOP(4, 8))
        MM_DW_ROWS_8(4);
#endif
#if MM_USE_DW_D4_4
    else if (lp == MM_DW_LOOP(4, 4))
        MM_DW_ROWS_4(4);
#endif
#if MM_USE_DW_D4_2
    else if (lp == MM_DW_LOOP(4, 2))
        MM_DW_ROWS_2(4);
#endif
#if MM_USE_DW_D2_8
    else if (lp == MM_DW_LOOP(2, 8))
        MM_DW_ROWS_8(2);
#endif
#if MM_USE_DW_D2_4
    else if (lp == MM_DW_LOOP(2, 4))
        MM_DW_ROWS_4(2);
#endif
#if MM_USE_DW_D2_2
    else if (lp == MM_DW_LOOP(2, 2))
        MM_DW_ROWS_2(2);
#endif
}


/* The record that ends a row of runs at d: the output pointer's step to the next row, the
 * next row's first run (mm_dw_rows reads the address as a word: DSP cores are 32-bit). */
static void mm_dw_row_end(struct mm_dwrun *d, int32_t ostep, const struct mm_dwrun *next)
{
    d->k = ostep;
    d->off = (int32_t)(uintptr_t)next;
    d->n = 0;
}

/* The runs of whole 3x3 windows of each output row of mm_dw_3x3, into q (once per group:
 * mm_dw_3x3_w's calls of mm_dw_3x3_rows, one per output row, share them): run r has rn[r]
 * windows whose first columns start roff[r] bytes into the row and step apart, against the
 * weight pairs k + MM_DW_KT r; the steps of mm_dw_rows, and the last output row whose window
 * lies inside the height. */
static void mm_dw_runs_of(const mm_dwl *L, mm_dwq *q)
{
    const int e0 = L->ox_in;
    if (q->ccols) /* all set for an earlier group */
        return;
    q->roff[0] = 0;
    q->roff[1] = (int32_t)(e0 * L->sw - L->pw) * L->in_pix;
    q->roff[2] = (int32_t)(L->in_w - 3) * L->in_pix;
    q->rn[0] = mm_dw_side_run(L, 0);
    q->rn[1] = L->n_in;
    q->rn[2] = mm_dw_side_run(L, 2);
    struct mm_dwrun *d = q->runs;
    for (int r = 0; q->fold && r < 3; r++)
        if (q->rn[r] > 0) { /* mm_dw_rows' records of the non-empty runs */
            d->k = 4 * MM_DW_KT * r;
            d->off = q->roff[r];
            d->n = q->rn[r];
            d++;
        }
    mm_dw_row_end(d, 0, q->runs);
    q->step = L->sw * L->in_pix;
    q->adv = q->step - 2 * L->row;
    q->opx = L->out_pix;
    q->rstep = L->sh * L->row;
    q->inside = mm_dw_inside(L);
}

/* mm_dw_rows for the loop lp (mm_dw_loop's; one call site per loop: the loops are large). */
#define MM_DW_ROWS_CASE(IB, OB)                                                                   \
    case MM_DW_LOOP(IB, OB):                                                                      \
        mm_dw_rows(q, ip, rs, MM_DW_LOOP(IB, OB));                                                \
        return;
static MM_NOINLINE void mm_dw_rows_of(mm_dwq *q, int32_t ip, int32_t rs, int lp)
{
    switch (lp) {
#if MM_USE_DW_OUT4
        MM_DW_ROWS_CASE(8, 4)
#endif
#if MM_USE_DW_OUT2
        MM_DW_ROWS_CASE(8, 2)
#endif
#if MM_USE_DW_D4_8
        MM_DW_ROWS_CASE(4, 8)
#endif
#if MM_USE_DW_D4_4
        MM_DW_ROWS_CASE(4, 4)
#endif
#if MM_USE_DW_D4_2
        MM_DW_ROWS_CASE(4, 2)
#endif
#if MM_USE_DW_D2_8
        MM_DW_ROWS_CASE(2, 8)
#endif
#if MM_USE_DW_D2_4
        MM_DW_ROWS_CASE(2, 4)
#endif
#if MM_USE_DW_D2_2
        MM_DW_ROWS_CASE(2, 2)
#endif
    default:
        mm_dw_rows(q, ip, rs, MM_DW_LOOP(8, 8));
    }
}

/* The whole output of mm_dw_3x3_rows column by column (fob: mm_dw_rows' loop, kl:
 * the first table), where its input and output do not overlap (column order breaks the
 * in-place contract) and every pixel lies in a run of mm_dw_runs_of's columns and of rows
 * (a top row, the rows inside, a bottom row): returns 0 (nothing done) otherwise. A column
 * is up to three runs and a row end, a row of a tall narrow image three runs and a row end
 * (kws's 25 x 5 px layers: 325,540 -> 302,452 est. M4 cycles each, measured), on layers of
 * up to MM_DW_COLS columns: one mm_dw_rows call, the columns its rows, on runs relative to
 * the group's input and tables, built for the first group and kept for the others (kws's
 * layers, measured: 302,418 -> 298,928 est. M4 cycles each for the kept runs, then 290,563 ->
 * 286,765 for one call a group, not one a column). */
static int mm_dw_cols(const mm_dwl *L, const uint8_t *in, uint8_t *out, const uint32_t *kl,
                      mm_dwq *q, int fob)
{
    const int out_h = L->out_h, out_w = L->out_w, in_h = L->in_h, sh = L->sh;
    const int e0 = L->ox_in, e1 = e0 + L->n_in, top = L->ph == 1, b = q->inside;
    const int bottom = b + 2 == out_h;
    const int32_t rs = L->row, ip = L->in_pix;
    if (!q->apart || L->oy0 != 0 || L->oy1 != out_h || 4 * out_w >= 3 * out_h || !q->covered ||
        out_w > MM_DW_COLS)
        return 0;
    q->step = sh * rs;
    q->adv = q->step - 2 * rs;
    q->opx = out_w * L->out_pix;
    q->kt = kl;
    q->row = in;
    q->rstep = 0; /* the runs hold their columns' offsets */
    for (int ox = 0; !q->ccols && ox < out_w; ox++) {
        const int h = ox < e0 ? 0 : ox < e1 ? 1 : 2; /* its run in a row */
        const int32_t cx = q->roff[h] + (h == 1 ? (int32_t)(ox - e0) * L->sw * ip : 0);
        struct mm_dwrun *d = q->runs + 4 * ox;
        if (top) { /* input rows 0 .. 2, the kernel moved one row up */
            d->k = 4 * MM_DW_KT * h + 24;
            d->off = cx;
            d->n = 1;
            d++;
        }
        d->k = 4 * MM_DW_KT * h;
        d->off = (int32_t)(top * sh - L->ph) * rs + cx;
        d->n = b - top + 1;
        d++;
        if (bottom) { /* the last three rows, the kernel moved one row down */
            d->k = 4 * MM_DW_KT * h - 24;
            d->off = (int32_t)(in_h - 3) * rs + cx;
            d->n = 1;
            d++;
        }
        /* from the column's end (out_h pixels down) to the next one's top */
        mm_dw_row_end(d, L->out_pix - out_h * q->opx, q->runs + 4 * (ox + 1));
    }
    q->ccols = 1;
    q->run = q->runs;
    q->o = out;
    q->rows = out_w;
    mm_dw_rows_of(q, ip, rs, fob);
    return 1;
}

/* mm_dw_3x3's three MM_DW_KT tables k: their zeros, the same for every group (the tables
 * are cleared once per layer), and the rows made from the group's own pairs, which
 * mm_depthwise widens straight before them (MM_DW_KC: the 3x3 kernel's pairs as they are,
 * tap after tap, as mm_dw_edge_3x3_8u reads them; larger kernels' pairs run over the tables,
 * unused then: MM_DW_K3 words in all). Only rows are written per group (the demo's 2 x 2 px
 * layer: 118,982 -> 104,070 est. M4 cycles, measured), and only for groups the row loops take
 * (mm_dw_fold set). */
#define MM_DW_KC(k) ((k) - 18)
#define MM_DW_KTAB(wp) ((wp) + 18)
#define MM_DW_K3 (18 + 3 * MM_DW_KT > 2 * MM_DW_TAPS ? 18 + 3 * MM_DW_KT : 2 * MM_DW_TAPS)
static void mm_dw_3x3_sides(uint32_t *k)
{
    const uint32_t *t = MM_DW_KC(k);
    /* per row: its taps' pairs (a, b: channels 0 and 2, 1 and 3) to the middle table's
     * SMLAD pairs (taps 0 1, PKHBT / PKHTB) and third tap, the right table's (- 0: the middle
     * pairs moved up a halfword, then tap 1), the left one's (taps 1 2; its third stays 0),
     * in asm (gcc made masks and ORs of it: 63 cycles a row, not 41) */
    for (uint32_t *l = k + 6; l < k + 24; l += 6, t += 6) {
        uint32_t a0, b0, a1, b1, a2, b2, x, y;
        __asm__ volatile(
            "ldr %[a0], [%[t]]\n\tldr %[b0], [%[t], #4]\n\tldr %[a1], [%[t], #8]\n\t"
            "ldr %[b1], [%[t], #12]\n\tldr %[a2], [%[t], #16]\n\tldr %[b2], [%[t], #20]\n\t"
            "str %[a2], [%[l], %[c] + 16]\n\tstr %[b2], [%[l], %[c] + 20]\n\t"
            "str %[a1], [%[l], %[r] + 16]\n\tstr %[b1], [%[l], %[r] + 20]\n\t"
            "pkhbt %[x], %[a0], %[a1], lsl #16\n\tpkhbt %[y], %[b0], %[b1], lsl #16\n\t"
            "str %[x], [%[l], %[c]]\n\tstr %[y], [%[l], %[c] + 4]\n\t"
            "lsl %[x], %[x], #16\n\tlsl %[y], %[y], #16\n\t"
            "str %[x], [%[l], %[r]]\n\tstr %[y], [%[l], %[r] + 4]\n\t"
            "pkhtb %[x], %[a1], %[a0], asr #16\n\tpkhtb %[y], %[b1], %[b0], asr #16\n\t"
            "str %[x], [%[l], %[c] + 8]\n\tstr %[y], [%[l], %[c] + 12]\n\t"
            "lsl %[x], %[x], #16\n\tlsl %[y], %[y], #16\n\t"
            "str %[x], [%[l], %[r] + 8]\n\tstr %[y], [%[l], %[r] + 12]\n\t"
            "pkhbt %[x], %[a1], %[a2], lsl #16\n\tpkhbt %[y], %[b1], %[b2], lsl #16\n\t"
            "str %[x], [%[l]]\n\tstr %[y], [%[l], #4]\n\t"
            "pkhtb %[x], %[a2], %[a1], asr #16\n\tpkhtb %[y], %[b2], %[b1], asr #16\n\t"
            "str %[x], [%[l], #8]\n\tstr %[y], [%[l], #12]"
            : [a0] "=&r"(a0), [b0] "=&r"(b0), [a1] "=&r"(a1), [b1] "=&r"(b1), [a2] "=&r"(a2),
              [b2] "=&r"(b2), [x] "=&r"(x), [y] "=&r"(y)
            : [t] "r"(t), [l] "r"(l), [c] "I"(4 * MM_DW_KT), [r] "I"(8 * MM_DW_KT)
            : "memory");
    }
}

/* Output rows L->oy0 .. L->oy1 - 1 against the tables k (mm_dw_3x3_k). Out of line where
 * mm_dw_3x3_w calls it too: inlined into both, the 8-bit and widened layers of the demo's mixed
 * build took 85 k fewer cycles, but the kernel .text grew 2.8 KB (to 25.5 KB), measured. */
static void mm_dw_3x3_rows(const mm_dwl *L, const uint8_t *in, uint8_t *out, const uint32_t *k,
                           mm_dwq *q)
{
    const int e0 = L->ox_in, e1 = e0 + L->n_in, out_w = L->out_w, in_h = L->in_h;
    const int left = q->rn[0], right = q->rn[2], inside = q->inside;
    const int fob = q->fold ? mm_dw_loop(q, L->ob) : 0; /* the loop */
    const uint32_t *const kl = k + 6, *const kc = MM_DW_KC(k);
    if (fob && mm_dw_cols(L, in, out, kl, q, fob))
        return;
    for (int oy = L->oy0; oy < L->oy1; oy++) {
        const int iy0 = oy * L->sh - L->ph;
        /* the first of the three input rows read, and the kernel row it meets */
        const int top = iy0 == -1 && in_h >= 3, bottom = iy0 == in_h - 2 && in_h >= 3 && iy0 > 0;
        /* rows of no whole window, and rows that mm_dw_rows cannot requantize (fob 0: rare,
         * and window by window costs little .text) */
        if (((iy0 < 0 || iy0 + 3 > in_h) && !top && !bottom) || L->n_in == 0 || !fob) {
            mm_dw_edge_3x3_8u(L, in, out, kc, q, oy, 0, out_w);
            continue;
        }
        if (!left)
            mm_dw_edge_3x3_8u(L, in, out, kc, q, oy, 0, e0);
        const uint8_t *const row = in + (int32_t)(top ? 0 : bottom ? in_h - 3 : iy0) * L->row;
        const uint32_t *const kt = kl + (top ? 6 : bottom ? -6 : 0);
        uint8_t *const o = out + ((int32_t)oy * out_w + e0 - left) * L->out_pix;
        {
            /* rows whose windows all lie inside the height: one block, when the runs cover
             * the whole width */
            const int block = left && right && !top && !bottom;
            const int last = !block ? oy : inside < L->oy1 ? inside : L->oy1 - 1;
            q->o = o;
            q->row = row;
            q->kt = kt;
            q->rows = last - oy + 1;
            q->run = q->runs;
            mm_dw_rows_of(q, L->in_pix, L->row, fob);
            oy = last;
        }
        if (!right)
            mm_dw_edge_3x3_8u(L, in, out, kc, q, oy, e1, out_w);
    }
}

/* 3x3 windows of 8-bit unsigned inputs (DSP cores). Each output row runs three runs of windows
 * (mm_dw_runs_of, in mm_dw_rows' loop): a first pixel whose window has one column outside on
 * the left (ix0 == -1), the windows inside, and a last pixel with one column outside on the
 * right (ix0 == in_w - 2). Windows with one column or row outside read the three columns and
 * rows inside the image, against the weights moved over by one (MM_DW_KT tables). Other
 * border windows (padding above 1, images narrower than 3), and layers whose requantization
 * the loop does not take, go through mm_dw_edge_3x3_8u, a window at a time. Pixels in raster
 * order, each stored after its window is read. */
/* The same for the 4- and 2-bit unsigned inputs of DW_3X3_W: read packed (q->fib, the direct
 * path) or, with `widen`, widened into the ring (mm_dw_3x3_w's), an output row a call (its rows
 * widened before it). One call site of mm_dw_3x3_rows, so that gcc inlines it as where
 * DW_3X3_8U alone is compiled, and no ring in it (out of line, called for both paths, and with
 * the ring's rows inside, it took the 8-bit layers of the demo's mixed build 3 to 9 k est. M4
 * cycles more each than the W8/A8 build's, measured). */
static MM_INLINE void mm_dw_3x3(const mm_dwl *L, const uint8_t *in, uint8_t *out,
                                const uint32_t *wp, mm_dwq *q, uint8_t *ring, int widen)
{
    const int end = L->oy1;
    int oy = L->oy0, n = end - oy; /* output rows a call */
#if MM_USE_DW_3X3_W
    mm_dwl W;
    mm_dwr g;
    if (widen) { /* the 8-bit code on the ring's rows */
        const mm_dwr g0 = {L, in, ring, 4 * (int32_t)L->in_w, 0, 0,
                           L->in_h > 3 ? L->in_h - 3 : 0, L->in_w <= MM_DW_RING_W};
        g = g0;
        W = *L;
        W.in_pix = 4;
        W.row = g.rs;
        L = &W;
        n = 1;
        q->ccols = 0; /* runs of widened rows, not a direct group's mm_dw_cols' */
    }
#else
    (void)ring, (void)widen;
#endif
    mm_dw_runs_of(L, q);
    for (; oy < end; oy += n) {
#if MM_USE_DW_3X3_W
        if (widen) { /* the rows it reads widened first; in puts them in place */
            in = mm_dw_ring_rows(&g, oy);
            W.oy0 = oy;
            W.oy1 = oy + 1;
        }
#endif
        mm_dw_3x3_rows(L, in, out, MM_DW_KTAB(wp), q);
    }
}
#endif

/* The group functions, one per path of MM_DW_GROUP, each compiled where the model takes it
 * (mm_paths.h); out of line, as the group loop calls them. On cores without the DSP
 * extension the 3x3 windows of 8-bit unsigned inputs take the 8-bit unsigned group code. */
#if MM_USE_DW_8U || MM_USE_DW_4X4_8U ||                                                        \
    ((MM_USE_DW_3X3_8U || MM_USE_DW_3X3_W) && !defined(__ARM_FEATURE_DSP))
static MM_NOINLINE void mm_dw_8u(const mm_dwl *L, const uint8_t *in, uint8_t *out,
                                 const uint32_t *wp, const mm_dwq *q)
{
    mm_dw_group(L, in, out, wp, q, MM_DW_8U);
}
#endif

#if defined(__ARM_FEATURE_DSP) && MM_USE_DW_4X4_8U
/* A row of a 4x4 kernel as two MM_DW_PAIRs (MAC: MM_DW_SMUAD on the window's first row), the
 * second two columns on, its weights at byte O of k (mm_dw_pairs' layout), then NEXT (to the
 * next row: rs, the row less the two columns). */
#define MM_DW_16ROW(MAC, O, NEXT)                                                                 \
    MM_DW_PAIR(MAC, O, "y", "") "add %[r], %[r], %[ip], lsl #1\n\t"                             \
        MM_DW_PAIR(MM_DW_SMLAD, O " + 16", "y", "") NEXT
#define MM_DW_16NEXT "add %[r], %[r], %[rs]\n\t"

/* The 16 taps' pairs at t (tap after tap) as mm_dw_run4x4 reads them at d: each two taps'
 * SMLAD pairs, channel after channel (18 cycles two taps, not 20: vww's 4x4 layer on 48 x 48
 * px, dwconv6, 602,098 -> 572,080 est. M4 cycles, measured). */
static void mm_dw_pairs16(uint32_t *d, const uint32_t *t)
{
    for (const uint32_t *const e = t + 32; t < e; t += 4, d += 4) {
        uint32_t a0, b0, a1, b1, x, y;
        __asm__ volatile("ldr %[a0], [%[t]]\n\tldr %[b0], [%[t], #4]\n\tldr %[a1], [%[t], #8]\n\t"
                         "ldr %[b1], [%[t], #12]\n\tpkhbt %[x], %[a0], %[a1], lsl #16\n\t"
                         "pkhbt %[y], %[b0], %[b1], lsl #16\n\tpkhtb %[a1], %[a1], %[a0], asr #16\n\t"
                         "pkhtb %[b1], %[b1], %[b0], asr #16\n\tstr %[x], [%[d]]\n\t"
                         "str %[y], [%[d], #4]\n\tstr %[a1], [%[d], #8]\n\tstr %[b1], [%[d], #12]"
                         : [a0] "=&r"(a0), [b0] "=&r"(b0), [a1] "=&r"(a1), [b1] "=&r"(b1),
                           [x] "=&r"(x), [y] "=&r"(y)
                         : [t] "r"(t), [d] "r"(d)
                         : "memory");
    }
}

/* q->cnt >= 1 whole 4x4 windows of 8-bit unsigned inputs with 8-bit outputs clamped to
 * [0, 255] by the fast rule (mm_dw_rows' pixel, 16 taps): the first at c, the next q->step
 * bytes after the previous one's last tap row (its third column), stored from q->o on, opx
 * apart; weight pairs at q->k (mm_dw_pairs16's). */
static MM_INLINE void mm_dw_run4x4(mm_dwq *q, const uint8_t *c, int32_t ip, int32_t rs2)
{
    uint32_t a0, a1, a2, a3, x_, u_, w_, v_, y_;
    const uint32_t *k = q->k;
    __asm__ volatile(
        "1:\n\t" MM_DW_16ROW(MM_DW_SMUAD, "0", MM_DW_16NEXT)
            MM_DW_16ROW(MM_DW_SMLAD, "32", MM_DW_16NEXT) MM_DW_16ROW(MM_DW_SMLAD, "64", MM_DW_16NEXT)
                MM_DW_16ROW(MM_DW_SMLAD, "96", "") MM_DW_RQ4L(MM_DW_RQK)
        "orr %[a0], %[a0], %[a1], lsl #8\n\torr %[a0], %[a0], %[a2], lsl #16\n\t"
        "orr %[a0], %[a0], %[a3], lsl #24\n\tldr %[x], [%[q], %[oo]]\n\t"
        "ldr %[u], [%[q], %[oopx]]\n\tldr %[w], [%[q], %[ostep]]\n\t"
        "ldr %[v], [%[q], %[ocnt]]\n\tstr %[a0], [%[x]]\n\t"
        "add %[x], %[x], %[u]\n\tsubs %[v], %[v], #1\n\tstr %[x], [%[q], %[oo]]\n\t"
        "str %[v], [%[q], %[ocnt]]\n\tadd %[r], %[r], %[w]\n\tbne 1b"
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [x] "=&r"(x_),
          [u] "=&r"(u_), [w] "=&r"(w_), [v] "=&r"(v_), [y] "=&r"(y_), [r] "+&r"(c), [k] "+&r"(k)
        : [ip] "r"(ip), [rs] "r"(rs2), [q] "r"(q), [oo] "n"(offsetof(mm_dwq, o)),
          [oopx] "n"(offsetof(mm_dwq, opx)), [ostep] "n"(offsetof(mm_dwq, step)),
          [ocnt] "n"(offsetof(mm_dwq, cnt))
        : "cc", "memory");
}

/* 4x4 windows of 8-bit unsigned inputs (DSP cores; the stride-2 layers of an imported TFLite
 * MobileNet: TF's one-sided padding made them 4x4 with padding 1): with 8-bit outputs that
 * the fast rule clamps to [0, 255], the windows inside the image, row by row, in
 * mm_dw_run4x4; the others (and every window of other layers) in mm_dw_8u, in raster order. */
static void mm_dw_4x4_8u(const mm_dwl *L, const uint8_t *in, uint8_t *out, const uint32_t *wp,
                         mm_dwq *q)
{
    const int32_t ip = L->in_pix, rs = L->row;
    const int out_w = L->out_w, xa = L->ox_in, xb = xa + L->n_in;
    if (q->fast != 2 || !q->fold || L->ob != 8 || xb - xa < MM_DW_RUN4X4) {
        mm_dw_8u(L, in, out, wp, q);
        return;
    }
    mm_dwl B = *L; /* the border windows' rows and columns */
    q->opx = L->out_pix;
    q->step = L->sw * ip - 3 * rs - 2 * ip; /* from the last row's third column */
    for (int oy = L->oy0; oy < L->oy1; oy++) {
        const int iy0 = oy * L->sh - L->ph;
        B.oy0 = oy;
        B.oy1 = oy + 1;
        B.ox0 = 0;
        B.ox1 = out_w;
        if (iy0 < 0 || iy0 + 4 > L->in_h) {
            mm_dw_8u(&B, in, out, wp, q);
            continue;
        }
        if (xa > 0) {
            B.ox1 = xa;
            mm_dw_8u(&B, in, out, wp, q);
        }
        q->o = out + ((int32_t)oy * out_w + xa) * L->out_pix;
        q->cnt = xb - xa;
        q->k = wp + 32; /* mm_dw_pairs16's */
        mm_dw_run4x4(q, in + (int32_t)iy0 * rs + (int32_t)(xa * L->sw - L->pw) * ip, ip,
                     rs - 2 * ip);
        if (xb < out_w) {
            B.ox0 = xb;
            B.ox1 = out_w;
            mm_dw_8u(&B, in, out, wp, q);
        }
    }
}
#endif

#if MM_USE_DW_4U
static MM_NOINLINE void mm_dw_4u(const mm_dwl *L, const uint8_t *in, uint8_t *out,
                                 const uint32_t *wp, const mm_dwq *q)
{
    mm_dw_group(L, in, out, wp, q, MM_DW_4U);
}
#endif

#if MM_USE_DW_2U
static MM_NOINLINE void mm_dw_2u(const mm_dwl *L, const uint8_t *in, uint8_t *out,
                                 const uint32_t *wp, const mm_dwq *q)
{
    mm_dw_group(L, in, out, wp, q, MM_DW_2U);
}
#endif

#if MM_USE_DW_ANY
static MM_NOINLINE void mm_dw_any(const mm_dwl *L, const uint8_t *in, uint8_t *out,
                                  const uint32_t *wp, const mm_dwq *q)
{
    mm_dw_group(L, in, out, wp, q, MM_DW_ANY);
}
#endif

#if MM_USE_DW_3X3_W && !defined(__ARM_FEATURE_DSP)
/* 3x3 windows of 4- and 2-bit unsigned inputs: the 8-bit code (mm_dw_3x3_rows on DSP cores:
 * mm_dw_3x3, mm_dw_8u here) on the group's four channels widened to bytes, each input row
 * once, into a ring of 4 x in_w byte rows in the scratch (mm_dw_ring_rows), row by row. On DSP
 * cores one call of mm_dw_3x3_rows for the whole output, which widens each output row's rows
 * before it (a call per output row: the demo's 4-bit 14 x 14 x 32 layer 309,227 -> 299,233
 * est. M4 cycles, measured), where the layer's packed rows are not read as they are (the
 * direct path, MM_DW_DIRECT). */
static MM_NOINLINE void mm_dw_3x3_w(const mm_dwl *L, const uint8_t *in, uint8_t *out,
                                    const uint32_t *wp, mm_dwq *q, uint8_t *ring)
{
    mm_dwl W = *L;
    mm_dwr g = {L, in, ring, 4 * (int32_t)L->in_w, 0, 0, L->in_h > 3 ? L->in_h - 3 : 0,
                L->in_w <= MM_DW_RING_W};
    W.in_pix = 4;
    W.row = g.rs;
    for (int oy = L->oy0; oy < L->oy1; oy++) {
        const uint8_t *const base = mm_dw_ring_rows(&g, oy);
        W.oy0 = oy;
        W.oy1 = oy + 1;
        mm_dw_8u(&W, base, out, wp, q);
    }
}
#endif

/* mm_depthwise is compiled where a layer of the model runs it (a call without it fails to
 * link). */
#if MM_USE_DW_3X3_8U || MM_USE_DW_8U || MM_USE_DW_4U || MM_USE_DW_2U || MM_USE_DW_ANY ||          \
    MM_USE_DW_CHANNEL || MM_USE_DW_3X3_W || MM_USE_DW_4X4_8U
/* One group of four channels on the path MM_DW_GROUP gives the layer (ring: the scratch). */
static void mm_dw_path(int path, const mm_dwl *L, const uint8_t *in, uint8_t *out,
                       const uint32_t *wp, mm_dwq *q, uint8_t *ring)
{
    /* no group path: channels one by one */
    (void)L, (void)in, (void)out, (void)wp, (void)q, (void)ring;
#if defined(__ARM_FEATURE_DSP) && (MM_USE_DW_3X3_8U || MM_USE_DW_3X3_W)
    if (path == MM_P_DW_3X3_8U || path == MM_P_DW_3X3_W) {
        mm_dw_3x3(L, in, out, wp, q, ring, path == MM_P_DW_3X3_W && q->fib == 8);
        return;
    }
#endif
    switch (path) {
#if MM_USE_DW_3X3_W && !defined(__ARM_FEATURE_DSP)
    case MM_P_DW_3X3_W:
        mm_dw_3x3_w(L, in, out, wp, q, ring);
        return;
#endif
#if MM_USE_DW_3X3_8U && !defined(__ARM_FEATURE_DSP)
    case MM_P_DW_3X3_8U:
        mm_dw_8u(L, in, out, wp, q);
        return;
#endif
#if MM_USE_DW_4X4_8U
    case MM_P_DW_4X4_8U:
#if defined(__ARM_FEATURE_DSP)
        mm_dw_4x4_8u(L, in, out, wp, q);
#else
        mm_dw_8u(L, in, out, wp, q);
#endif
        return;
#endif
#if MM_USE_DW_8U
    case MM_P_DW_8U:
        mm_dw_8u(L, in, out, wp, q);
        return;
#endif
#if MM_USE_DW_4U
    case MM_P_DW_4U:
        mm_dw_4u(L, in, out, wp, q);
        return;
#endif
#if MM_USE_DW_2U
    case MM_P_DW_2U:
        mm_dw_2u(L, in, out, wp, q);
        return;
#endif
#if MM_USE_DW_ANY
    case MM_P_DW_ANY:
        mm_dw_any(L, in, out, wp, q);
        return;
#endif
    default:
        MM_PATH_OFF();
    }
}

#if MM_USE_DW_CHANNEL
/* One channel over the whole output (the few leftover channels, or kernels larger than
 * MM_DW_TAPS); sub-byte results are OR-ed into the zeroed output. */
static void mm_dw_channel(const uint8_t *in, uint8_t *out, const uint8_t *w, int32_t b,
                          int32_t m0, int s, int ch, int32_t in_pix, int32_t out_pix, int in_h,
                          int in_w, int out_h, int out_w, int kh, int kw, int sh, int sw, int ph,
                          int pw, const mm_quant_params *q)
{
    const int ib = q->in_bits, is = q->in_signed, wb = q->w_bits, ob = q->out_bits;
    const int32_t qmin = q->qmin, qmax = q->qmax;
    const int32_t obyte = (ch * ob) >> 3, oshift = (ch * ob) & 7, omask = (1 << ob) - 1;
    const uint8_t *wk = w + ch * mm_bytes(kh * kw, wb);
    for (int oy = 0; oy < out_h; oy++) {
        const int iy0 = oy * sh - ph;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = in_h - iy0 < kh ? in_h - iy0 : kh;
        for (int ox = 0; ox < out_w; ox++) {
            const int ix0 = ox * sw - pw;
            const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = in_w - ix0 < kw ? in_w - ix0 : kw;
            uint8_t *po = out + ((int32_t)oy * out_w + ox) * out_pix + obyte;
            int32_t acc = 0, y;
            for (int ky = ky0; ky < ky1; ky++)
                for (int kx = kx0; kx < kx1; kx++)
                    acc += mm_get(in + ((int32_t)(iy0 + ky) * in_w + ix0 + kx) * in_pix, ch, ib,
                                  is) * mm_get(wk, ky * kw + kx, wb, 1);
            y = mm_requant(mm_biased(acc, b, q->bias_shift), m0, s, qmin, qmax);
            if (ob == 8)
                *po = (uint8_t)y;
            else
                *po |= (uint8_t)((y & omask) << oshift);
        }
    }
}

#endif

void mm_depthwise(MM_CONV_ARGS)
{
    const int ib = q->in_bits, is = q->in_signed, wb = q->w_bits, ob = q->out_bits;
    const int c = d->in_c, in_h = d->in_h, in_w = d->in_w, out_h = d->out_h, out_w = d->out_w;
    const int kh = d->k_h, kw = d->k_w, sh = d->stride_h, sw = d->stride_w;
    const int ph = d->pad_h, pw = d->pad_w;
    const int32_t qmin = q->qmin, qmax = q->qmax;
    const int32_t in_pix = mm_bytes(c, ib), out_pix = mm_bytes(c, ob);
    const int taps = kh * kw;
    const int32_t row_bytes = mm_bytes(taps, wb);
    const int grouped = taps <= MM_DW_TAPS ? c - c % 4 : 0;
    /* first column whose window starts inside (ix0 >= 0), first one past the last whose
     * window ends inside (ix0 + kw <= in_w) */
    const int ox_in = (pw + sw - 1) / sw, ox_end = in_w >= kw ? (in_w - kw + pw) / sw + 1 : 0;
    const mm_dwl L = {in_pix, out_pix, in_pix * in_w, in_h, in_w, out_h, out_w, kh, kw,
                      sh, sw, ph, pw, ib, is, ob, q->bias_shift, qmin, qmax, ox_in, ox_end > ox_in ? (ox_end < out_w ? ox_end : out_w) - ox_in : 0,
                      0, out_h, 0, out_w};
    const int path = MM_DW_GROUP(is, ib, kh, kw, c, in_w);
    const int per = 8 / wb, wsh = 8 - wb;
    const uint32_t top = wb == 8 ? 0xFFFFFFFFu : wb == 4 ? 0xF0F0F0F0u : 0xC0C0C0C0u;
#if defined(__ARM_FEATURE_DSP)
    /* a field low in each byte, and its sign bit */
    const uint32_t low = top >> wsh, sgn = low ^ (low >> 1 & low);
#endif
#if defined(__ARM_FEATURE_DSP) && (MM_USE_DW_3X3_8U || MM_USE_DW_3X3_W)
    /* The group's weights as halfword pairs, tap after tap: on DSP cores inside mm_dw_3x3's
     * tables (MM_DW_KC), whatever the kernel (a path-dependent pointer made gcc copy the
     * set-up below once per path: 330 B more .text), after them; the groups of 3x3 kernels
     * that the row loops take fill the tables (mm_dw_3x3_sides). */
    uint32_t k3[MM_DW_K3];
    uint32_t *const wp = k3;
    memset(MM_DW_KTAB(k3), 0, 3 * MM_DW_KT * sizeof *k3);
#elif defined(__ARM_FEATURE_DSP) && MM_USE_DW_4X4_8U
    uint32_t wp[2 * MM_DW_TAPS + 32]; /* as below, then mm_dw_pairs16's */
#else
    uint32_t wp[2 * MM_DW_TAPS]; /* the group's weights as halfword pairs, tap after tap */
#endif
    mm_dwq rq;
    int ch;
    rq.ccols = 0;
    rq.apart = (uintptr_t)(out + (int32_t)out_h * out_w * out_pix) <= (uintptr_t)in ||
               (uintptr_t)(in + (int32_t)in_h * L.row) <= (uintptr_t)out;
#if MM_DW_FOLDS
    /* 3x3 layers whose every window mm_dw_rows takes, where the group's rule lets it */
    rq.covered = mm_dw_covered(&L);
    const int cover = taps == 9 && path != MM_P_DW_4X4_8U && rq.covered;
    /* whether the row loops run (mm_dw_4x4_8u: on rows of 4 whole windows or more), so that
     * the group's addends are worth their set-up (VWW's 6 x 6 px 4x4 layer: 143,062 -> 136,983
     * est. M4 cycles, measured) */
    const int rows = path == MM_P_DW_4X4_8U ? L.n_in >= MM_DW_RUN4X4 : L.n_in > 0;
    /* 4- and 2-bit unsigned inputs of a covered 3x3 layer: the group may read them packed in
     * mm_dw_rows (mm_dw_3x3_w's direct path, no ring) */
    const int direct = MM_DW_DIRECT_ON && path == MM_P_DW_3X3_W && cover ? ib : 8;
#endif
    MM_ASSERT(d->groups == c && d->out_c == c);
    if (!MM_USE_DW_WSUB && wb != 8 && grouped) /* 4- and 2-bit weights: where a layer has them */
        MM_PATH_OFF();
    for (ch = 0; ch < grouped; ch += 4) {
        /* Byte j of word k holds channel j's taps k * per ..., the first in the top bits:
         * masked in place (SXTB16) they are the weights times 2^(8 - wb), shifted back. */
        const uint8_t *g = w + ch * row_bytes;
        for (int t = 0; wb == 8 && t < taps; t++, g += 4) { /* one tap per word */
            uint32_t word;
            memcpy(&word, g, 4);
            wp[2 * t] = mm_sxtb16(word);
            wp[2 * t + 1] = mm_sxtb16_8(word);
        }
        for (int t = 0; MM_USE_DW_WSUB && wb != 8 && t < taps; g += 4) { /* DW_WSUB */
            uint32_t word;
            memcpy(&word, g, 4);
            for (int f = 0; f < per && t < taps; f++, t++) {
#if defined(__ARM_FEATURE_DSP)
                /* the fields low in each byte, sign-extended by (u ^ h) - h bytewise (SSUB8):
                 * 8 instructions a tap, not 20 (kws mixed, 4- and 2-bit weights: 3.5 k est. M4
                 * cycles a layer) */
                const uint32_t u = word >> (wsh - f * wb) & low;
                uint32_t v;
                __asm__("ssub8 %0, %1, %2" : "=r"(v) : "r"(u ^ sgn), "r"(sgn) : "cc");
#else
                const uint32_t v = (word << (f * wb)) & top;
#endif
                const uint32_t p0 = mm_sxtb16(v), p1 = mm_sxtb16_8(v);
#if defined(__ARM_FEATURE_DSP)
                wp[2 * t] = p0;
                wp[2 * t + 1] = p1;
#else
                wp[2 * t] = mm_dw_pair((int16_t)(p0 & 0xFFFFu) >> wsh, (int32_t)p0 >> (16 + wsh));
                wp[2 * t + 1] = mm_dw_pair((int16_t)(p1 & 0xFFFFu) >> wsh, (int32_t)p1 >> (16 + wsh));
#endif
            }
        }
        rq.s = q->shift + ch;
        rq.bk = L.bk;
        rq.lo = qmin;
        rq.hi = qmax;
        rq.fast = 1;
        for (int j = 0; j < 4; j++) {
            rq.b[j] = q->bias[ch + j];
            rq.m[j] = q->mult[ch + j];
            rq.fast &= rq.s[j] > 32;
            rq.n[j] = rq.s[j] - 32;
            rq.r[j] = rq.fast ? (int32_t)1 << (rq.s[j] - 33) : 0;
        }
        if (rq.fast && qmin == 0 && qmax == 255)
            rq.fast = 2;
        else if (rq.fast && qmin == 0 && (ob == 4 || ob == 2) && qmax == (1 << ob) - 1)
            rq.fast = 3;
        rq.fold = 0;
        rq.fib = 8;
#if MM_DW_FOLDS
        if (rq.fast && rows) /* the row loops' rule; they alone run on a covered layer */
            mm_dw_loops_of(&rq, wp, taps, ob, cover, direct);
#endif
#if defined(__ARM_FEATURE_DSP) && (MM_USE_DW_3X3_8U || MM_USE_DW_3X3_W)
        if (taps == 9 && rq.fold) /* after mm_dw_fold, which may scale the pairs */
            mm_dw_3x3_sides(MM_DW_KTAB(k3));
#endif
#if defined(__ARM_FEATURE_DSP) && MM_USE_DW_4X4_8U
        if (path == MM_P_DW_4X4_8U && rq.fold) /* mm_dw_run4x4's, after mm_dw_fold too */
            mm_dw_pairs16(wp + 32, wp);
#endif
        mm_dw_path(path, &L, in + ((ch * ib) >> 3), out + ((ch * ob) >> 3), wp, &rq,
                   (uint8_t *)scratch);
    }
    if (MM_DW_TAIL(c, kh, kw) == MM_P_NONE)
        return;
#if MM_USE_DW_CHANNEL
    if (ob != 8 && grouped < c) /* the single-channel tail ORs its bits in */
        for (int32_t p = 0; p < (int32_t)out_h * out_w; p++)
            memset(out + p * out_pix + ((grouped * ob) >> 3), 0,
                   (size_t)(out_pix - ((grouped * ob) >> 3)));
    for (; ch < c; ch++)
        mm_dw_channel(in, out, w, q->bias[ch], q->mult[ch], q->shift[ch], ch, in_pix, out_pix, in_h, in_w,
                      out_h, out_w, kh, kw, sh, sw, ph, pw, q);
#else
    MM_PATH_OFF();
#endif
}
#endif
