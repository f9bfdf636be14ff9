/* micromix: convolution, pointwise and linear kernels for every (input, weight, output) bit
 * combination in {2, 4, 8}^3.
 *
 * Per output pixel the input patch is unpacked once into int16 in the scratch buffer
 * (MM_PATCH elements, chunked beyond that) and reused by every output channel; the dot products
 * (mm_dot.c, four output channels per call) decode each weight byte once. Rows too short
 * for that go to mm_small.c, depthwise layers to mm_dw.c.
 */
#include <stddef.h>

#include "mm_kernels.h"

/* mm_dense_pt's short sub-byte rows (MM_DENSE_PT_PATH's SUB8D4_PT) of any kind. */
#define MM_USE_SUB8D4_PT_ANY                                                                      \
    (MM_USE_SUB8D4_PT_W4U || MM_USE_SUB8D4_PT_W4S || MM_USE_SUB8D4_PT_W2U || MM_USE_SUB8D4_PT_W2S)
#define MM_ON_SUB8D4_PT_ANY                                                                       \
    (MM_ON_SUB8D4_PT_W4U || MM_ON_SUB8D4_PT_W4S || MM_ON_SUB8D4_PT_W2U || MM_ON_SUB8D4_PT_W2S)

/* Slot of patch element e in the unpacked buffer. With P = 8 / w_bits weights per byte, the
 * first nblk elements (a multiple of 16 * P) are stored as P planes, element e in plane
 * e % P at position e / P, so the p-th field of consecutive weight bytes meets contiguous
 * inputs. Elements from nblk on keep their natural order. */
static inline int32_t mm_slot(int32_t e, int32_t nblk, int lp)
{
    if (e >= nblk)
        return e;
    return (e & ((1 << lp) - 1)) * (nblk >> lp) + (e >> lp);
}

#if MM_USE_CONV_ANY
static int32_t mm_dot(const int16_t *x, const uint8_t *w, int32_t n, int wbits)
{
    return wbits == 8 ? mm_dot8(x, w, n) : wbits == 4 ? mm_dot4(x, w, n) : mm_dot2(x, w, n);
}

/* Output channels c .. c+n-1 of one pixel from an unpacked patch, four at a time: one dot
 * product, one requantization and one store each. */
static void mm_channels(const int16_t *buf, const uint8_t *wrow, int32_t row, int32_t row_bytes,
                        int wb, const int32_t *bias, const int32_t *mult, const int8_t *shift,
                        int n, int bk, int32_t qmin, int32_t qmax, mm_writer *wr)
{
    int co = 0;
    for (; co + 4 <= n; co += 4, wrow += 4 * row_bytes) {
        int32_t acc[4];
        if (wb == 8)
            mm_dot8x4(buf, wrow, row_bytes, row, acc);
        else if (wb == 4)
            mm_dot4x4(buf, wrow, row_bytes, row, acc);
        else
            mm_dot2x4(buf, wrow, row_bytes, row, acc);
        for (int j = 0; j < 4; j++) {
            const int32_t v = mm_biased(acc[j], bias[co + j], bk);
            mm_put(wr, mm_requant(v, mult[co + j], shift[co + j], qmin, qmax));
        }
    }
    for (; co < n; co++, wrow += row_bytes) {
        const int32_t v = mm_biased(mm_dot(buf, wrow, row, wb), bias[co], bk);
        mm_put(wr, mm_requant(v, mult[co], shift[co], qmin, qmax));
    }
}

/* Unpack channels c0 .. c0+cn-1 of input pixel (iy, ix) as patch elements e0 .. e0+cn-1;
 * outside the image they are the zero padding (0 is the real 0 of every tensor). */
static void mm_gather(int16_t *buf, const uint8_t *in, int in_h, int in_w, int in_pix, int ib,
                      int is, int c0, int cn, int32_t e0, int32_t nblk, int lp, int iy, int ix)
{
    const uint8_t *px;
    const int aligned = ((c0 * ib) & 7) == 0;
    if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
        for (int k = 0; k < cn; k++)
            buf[mm_slot(e0 + k, nblk, lp)] = 0;
        return;
    }
    px = in + ((int32_t)iy * in_w + ix) * in_pix;
    if (aligned && (lp == 0 || e0 >= nblk)) {
        mm_unpack(buf + e0, px + ((c0 * ib) >> 3), cn, ib, is);
        return;
    }
    if (aligned && e0 == 0 && nblk <= cn) {
        /* A whole row (pointwise, linear): the planar head (nblk <= cn elements, a multiple
         * of 16) byte by byte, then the tail in natural order. Only when the row is this one
         * pixel's run: for a k x k kernel the planar head spans several pixels, which the
         * element-wise path below places one pixel at a time (reading this pixel only). */
        const uint8_t *p = px + ((c0 * ib) >> 3);
        const int32_t mb = nblk >> lp, per = 8 / ib;
        const int32_t sx = is ? 1 << (ib - 1) : 0, mask = (1 << ib) - 1;
        int32_t e = 0;
        for (int32_t k = 0; e < nblk; k++) {
            const int32_t byte = p[k];
            for (int j = 0; j < per; j++, e++)
                buf[(e & ((1 << lp) - 1)) * mb + (e >> lp)] =
                    (int16_t)((((byte >> (j * ib)) & mask) ^ sx) - sx);
        }
        if (nblk < cn)
            mm_unpack(buf + nblk, p + ((nblk * ib) >> 3), cn - nblk, ib, is);
        return;
    }
    for (int k = 0; k < cn; k++)
        buf[mm_slot(e0 + k, nblk, lp)] = (int16_t)mm_get(px, c0 + k, ib, is);
}
#endif

/* mm_pw_u's rule (mm_kernels.h) in asm up to its last halving, for sum S into D: D =
 * (smmul(S kb + bias, mult) >> (shift - 33)) + R, with kb, bias, mult and shift - 33 in
 * registers K, BIAS, MULT, SH and R an operand ("#1" or a register). The asm requantizations
 * of the fast paths below (pw8 pairs, dense blocks, conv8 pairs, sub8 pairs) write it only
 * through this; each adds its own loads and clamp. */
#define MM_RQ_ASM(D, S, K, BIAS, MULT, SH, R)                                                     \
    "mla %[" D "], %[" S "], %[" K "], %[" BIAS "]\n\t"                                         \
    "smmul %[" D "], %[" D "], %[" MULT "]\n\t"                                                 \
    "asr %[" D "], %[" D "], %[" SH "]\n\t"                                                     \
    "add %[" D "], %[" D "], " R "\n\t"

#if defined(__ARM_FEATURE_DSP)
/* Unaligned 32-bit loads are single LDRs on every core with the DSP extension. */
static inline uint32_t mm_ld32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The pointwise dot products below keep their loops in asm blocks: the registers stay as
 * planned (gcc spilled the end pointer or hoisted loads, each a few cycles per step), loads
 * are grouped (one cycle each after the first), and the loop costs one SUBS and one branch
 * per two input words (mm_pw8x4: per four, 1.625 -> 1.56 cycles per MAC on a dense layer,
 * measured). XT is the inputs' extend: uxtb16, or sxtb16 for signed inputs. */

/* One input word of mm_pw8x4: the word extended into (0, 2) and (1, 3) pairs, then the four
 * rows' words (loaded together, row r at [w + 4 r]) extended and multiplied. */
#define MM_PW8X4_WORD(XT)                                                                         \
    "ldr %[t0], [%[x]], #4\n\t"                                                                   \
    "ldr %[t1], [%[w]], #16\n\t"                                                                  \
    "ldr %[t2], [%[w], #-12]\n\t"                                                                 \
    "ldr %[t3], [%[w], #-8]\n\t"                                                                  \
    "ldr %[t4], [%[w], #-4]\n\t" XT " %[t5], %[t0]\n\t" XT " %[t0], %[t0], ror #8\n\t"           \
    MM_PW8X4_ROW("a0", "t1") MM_PW8X4_ROW("a1", "t2") MM_PW8X4_ROW("a2", "t3")                    \
        MM_PW8X4_ROW("a3", "t4")
#define MM_PW8X4_ROW(A, T)                                                                        \
    "sxtb16 %[t6], %[" T "]\n\t"                                                                  \
    "smlad %[" A "], %[t6], %[t5], %[" A "]\n\t"                                                  \
    "sxtb16 %[" T "], %[" T "], ror #8\n\t"                                                       \
    "smlad %[" A "], %[" T "], %[t0], %[" A "]\n\t"
#define MM_PW8X4_ASM(CODE)                                                                        \
    __asm__ volatile(CODE                                                                         \
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),              \
                       [x] "+r"(x), [w] "+r"(w), [k] "+r"(k), [t0] "=&r"(t0), [t1] "=&r"(t1),   \
                       [t2] "=&r"(t2), [t3] "=&r"(t3), [t4] "=&r"(t4), [t5] "=&r"(t5),          \
                       [t6] "=&r"(t6)                                                            \
                     :                                                                            \
                     : "cc", "memory")
#define MM_PW8X4_LOOP(XT)                                                                         \
    do {                                                                                          \
        if (k > 0)                                                                                \
            MM_PW8X4_ASM("1:\n\t" MM_PW8X4_WORD(XT) MM_PW8X4_WORD(XT) MM_PW8X4_WORD(XT)          \
                             MM_PW8X4_WORD(XT) "subs %[k], %[k], #1\n\t"                          \
                                               "bne 1b\n\t");                                     \
        if (two)                                                                                  \
            MM_PW8X4_ASM(MM_PW8X4_WORD(XT) MM_PW8X4_WORD(XT));                                    \
        if (odd)                                                                                  \
            MM_PW8X4_ASM(MM_PW8X4_WORD(XT));                                                      \
    } while (0)

/* Four output channels of one pixel from an interleaved weight block (mm_pointwise8); `is` is
 * a constant at every call, so each use is specialised. */
static MM_INLINE void mm_pw8x4(const uint8_t *x, const int8_t *w, int32_t n, const int is,
                               int32_t *out)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, k = n >> 4; /* four words per loop step */
    const int32_t two = (n >> 3) & 1, odd = (n >> 2) & 1, t = n & 3;
    uint32_t t0, t1, t2, t3, t4, t5, t6;
    if (is)
        MM_PW8X4_LOOP("sxtb16");
    else
        MM_PW8X4_LOOP("uxtb16");
    (void)t0, (void)t1, (void)t2, (void)t3, (void)t4, (void)t5, (void)t6;
    for (int32_t i = 0; i < t; i++) { /* the rows' tails, one after the other, at w */
        const int32_t xv = is ? (int8_t)x[i] : x[i];
        a0 += xv * w[i];
        a1 += xv * w[t + i];
        a2 += xv * w[2 * t + i];
        a3 += xv * w[3 * t + i];
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
}

#if MM_USE_PW8_FAST || MM_USE_PW8_ANY || MM_USE_PW8_ONE || MM_ON_PW8_DENSE_U ||                  \
    MM_ON_PW8_DENSE_S || MM_ON_PW8D_PT_U || MM_ON_PW8D_PT_S || MM_ON_DENSE_PT || MM_ON_PW8_PT
/* One row in natural order (the rows after the last block of four: a linear's last classes). */
static int32_t mm_pw8x1(const uint8_t *x, const int8_t *w, int32_t n, const int is)
{
    int32_t a = 0, i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t xv = mm_ld32(x + i), v = mm_ld32(w + i);
        const uint32_t xe = is ? mm_sxtb16(xv) : mm_uxtb16(xv);
        const uint32_t xo = is ? mm_sxtb16_8(xv) : mm_uxtb16_8(xv);
        a = mm_smlad(mm_sxtb16(v), xe, mm_smlad(mm_sxtb16_8(v), xo, a));
    }
    for (; i < n; i++)
        a += (is ? (int8_t)x[i] : x[i]) * w[i];
    return a;
}
#endif

/* One input word of mm_pw8_2x2: the two pixels' words extended into pairs, then each row's
 * weight word (row 0 at [w], row 1 at [w + 4]) extended once for both pixels. Fourteen
 * registers in all: the row-1 load cannot join the first three (its extend needs a register
 * they hold). */
#define MM_PW8_2X2_WORD(XT)                                                                       \
    "ldr %[t0], [%[xa]], #4\n\t"                                                                  \
    "ldr %[t1], [%[xb]], #4\n\t"                                                                  \
    "ldr %[t2], [%[w]], #16\n\t" XT " %[t3], %[t0]\n\t" XT " %[t0], %[t0], ror #8\n\t" XT        \
    " %[t4], %[t1]\n\t" XT " %[t1], %[t1], ror #8\n\t" MM_PW8_2X2_ROW("a0", "b0")                 \
    "ldr %[t2], [%[w], #-12]\n\t" MM_PW8_2X2_ROW("a1", "b1")
#define MM_PW8_2X2_ROW(A, B)                                                                      \
    "sxtb16 %[t5], %[t2]\n\t"                                                                     \
    "sxtb16 %[t2], %[t2], ror #8\n\t"                                                             \
    "smlad %[" A "], %[t5], %[t3], %[" A "]\n\t"                                                  \
    "smlad %[" B "], %[t5], %[t4], %[" B "]\n\t"                                                  \
    "smlad %[" A "], %[t2], %[t0], %[" A "]\n\t"                                                  \
    "smlad %[" B "], %[t2], %[t1], %[" B "]\n\t"
#define MM_PW8_2X2_ASM(CODE) __asm__ volatile(CODE MM_PAIR_ASM_OPERANDS)
#define MM_PW8_2X2_LOOP(XT)                                                                       \
    do {                                                                                          \
        if (k > 0)                                                                                \
            MM_PW8_2X2_ASM("1:\n\t" MM_PW8_2X2_WORD(XT) MM_PW8_2X2_WORD(XT)                      \
                           "subs %[k], %[k], #1\n\t"                                              \
                           "bne 1b\n\t");                                                         \
        if (odd)                                                                                  \
            MM_PW8_2X2_ASM(MM_PW8_2X2_WORD(XT));                                                  \
    } while (0)

/* Two pixels (xa, xb) against rows 0 and 1 of an interleaved block (row r's word k at
 * w + 16 k + 4 r): each input word's two extends serve both rows and each weight word's two
 * SXTB16 serve both pixels (8 extends per 16 MACs where mm_pw8x4 needs 10). The rows' tails
 * (t = n % 4 bytes each) sit at wt and wt + t. out: pixel a's two sums, then pixel b's. */
static MM_INLINE void mm_pw8_2x2(const uint8_t *xa, const uint8_t *xb, const int8_t *w,
                                 const int8_t *wt, int32_t n, const int is, int32_t *out)
{
    int32_t a0 = 0, a1 = 0, b0 = 0, b1 = 0, k = n >> 3;
    const int32_t odd = (n >> 2) & 1, t = n & 3;
    uint32_t t0, t1, t2, t3, t4, t5;
    if (is)
        MM_PW8_2X2_LOOP("sxtb16");
    else
        MM_PW8_2X2_LOOP("uxtb16");
    (void)t0, (void)t1, (void)t2, (void)t3, (void)t4, (void)t5;
    for (int32_t i = 0; i < t; i++) {
        const int32_t p = is ? (int8_t)xa[i] : xa[i], r = is ? (int8_t)xb[i] : xb[i];
        a0 += p * wt[i];
        b0 += r * wt[i];
        a1 += p * wt[t + i];
        b1 += r * wt[t + i];
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = b0;
    out[3] = b1;
}
#else
/* Portable: the input bytes are read in place, four rows share each input value. */
static inline void mm_pw8x4(const uint8_t *x, const int8_t *w, int32_t n, int is, int32_t *out)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, i;
    const int32_t n4 = n & ~3, t = n & 3;
    for (i = 0; i < n4; i++) {
        const int32_t xv = is ? (int8_t)x[i] : x[i];
        const int8_t *q = w + 4 * (i & ~3) + (i & 3);
        a0 += xv * q[0];
        a1 += xv * q[4];
        a2 += xv * q[8];
        a3 += xv * q[12];
    }
    for (i = 0; i < t; i++) {
        const int32_t xv = is ? (int8_t)x[n4 + i] : x[n4 + i];
        a0 += xv * w[4 * n4 + i];
        a1 += xv * w[4 * n4 + t + i];
        a2 += xv * w[4 * n4 + 2 * t + i];
        a3 += xv * w[4 * n4 + 3 * t + i];
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
}

static inline int32_t mm_pw8x1(const uint8_t *x, const int8_t *w, int32_t n, int is)
{
    int32_t a = 0;
    for (int32_t i = 0; i < n; i++)
        a += (is ? (int8_t)x[i] : x[i]) * w[i];
    return a;
}

/* The DSP version's sums (its layout and argument meaning) in plain C. */
static inline void mm_pw8_2x2(const uint8_t *xa, const uint8_t *xb, const int8_t *w,
                              const int8_t *wt, int32_t n, int is, int32_t *out)
{
    int32_t a0 = 0, a1 = 0, b0 = 0, b1 = 0, i;
    const int32_t n4 = n & ~3, t = n & 3;
    for (i = 0; i < n4; i++) {
        const int32_t p = is ? (int8_t)xa[i] : xa[i], r = is ? (int8_t)xb[i] : xb[i];
        const int8_t *q = w + 4 * (i & ~3) + (i & 3);
        a0 += p * q[0];
        a1 += p * q[4];
        b0 += r * q[0];
        b1 += r * q[4];
    }
    for (i = 0; i < t; i++) {
        const int32_t p = is ? (int8_t)xa[n4 + i] : xa[n4 + i];
        const int32_t r = is ? (int8_t)xb[n4 + i] : xb[n4 + i];
        a0 += p * wt[i];
        a1 += p * wt[t + i];
        b0 += r * wt[i];
        b1 += r * wt[t + i];
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = b0;
    out[3] = b1;
}
#endif

#if MM_USE_PW8_WIDE && MM_USE_PW8_WIDE_ANY
/* Widens n packed 4- or 2-bit values (from a byte boundary) to one byte each, sign-extended
 * into int8 when signed: the operand bytes mm_pw8x4 reads. A word of fields at a time
 * (mm_spread4 / mm_spread2: no per-field shift and store), the few last fields one by one. */
static MM_INLINE void mm_widen(uint8_t *d, const uint8_t *p, int32_t n, int bits, int is)
{
    int32_t e = 0;
    uint32_t x, lo, hi;
    if (bits == 4) {
        for (; e + 8 <= n; e += 8, p += 4) {
            memcpy(&x, p, 4);
            lo = mm_spread4(x & 0xFFFFu);
            hi = mm_spread4(x >> 16);
            if (is)
                lo = mm_sext_bytes(lo, 4), hi = mm_sext_bytes(hi, 4);
            memcpy(d + e, &lo, 4);
            memcpy(d + e + 4, &hi, 4);
        }
    } else {
        for (; e + 4 <= n; e += 4, p++) {
            lo = mm_spread2(*p);
            if (is)
                lo = mm_sext_bytes(lo, 2);
            memcpy(d + e, &lo, 4);
        }
    }
    for (int32_t k = 0; e < n; e++, k++)
        d[e] = (uint8_t)mm_get(p, k, bits, is);
}

#endif

#if MM_USE_PW8_WIDE
/* Unsigned 4-bit values in whole words (8 a word), k words from a, widened to bytes at o: on DSP
 * cores a halfword in four instructions, one STRD a word, in an asm loop inlined where the
 * pixels are taken (mm_pointwise8_widen: a call of the inlined mm_widen, with its format tests
 * and tail, took about 115 est. M4 cycles a pair of 8-channel pixels). */
#if defined(__ARM_FEATURE_DSP)
#define MM_SPREAD4_ASM(R)                                                                         \
    "orr " R ", " R ", " R ", lsl #8\n\tand " R ", " R ", #0x00FF00FF\n\t"                        \
    "orr " R ", " R ", " R ", lsl #4\n\tand " R ", " R ", #0x0F0F0F0F\n\t"
#endif
static MM_INLINE void mm_widen4u(uint8_t *d, const uint8_t *a, int32_t k)
{
#if defined(__ARM_FEATURE_DSP)
    const uint8_t *const e = a + 4 * k;
    uint32_t x_, y_;
    __asm__ volatile("1:\n\tldrh %[x], [%[a]], #2\n\tldrh %[y], [%[a]], #2\n\t" MM_SPREAD4_ASM(
                         "%[x]") MM_SPREAD4_ASM("%[y]") "strd %[x], %[y], [%[d]], #8\n\t"
                                                        "cmp %[a], %[e]\n\tbne 1b"
                     : [x] "=&r"(x_), [y] "=&r"(y_), [a] "+r"(a), [d] "+r"(d)
                     : [e] "r"(e)
                     : "cc", "memory");
#else
    for (int32_t t = 0; t < k; t++, a += 4, d += 8) {
        const uint32_t lo = mm_spread4(a[0] | (uint32_t)a[1] << 8);
        const uint32_t hi = mm_spread4(a[2] | (uint32_t)a[3] << 8);
        memcpy(d, &lo, 4);
        memcpy(d + 4, &hi, 4);
    }
#endif
}

#if MM_USE_PW8_WIDE_ANY
/* mm_widen of pixel a, and of pixel b (np = 2) to d + n (the pixels of other formats). */
static MM_NOINLINE void mm_widen_any(uint8_t *d, const uint8_t *a, const uint8_t *b, int32_t n,
                                     int np, int bits, int is)
{
    mm_widen(d, a, n, bits, is);
    if (np == 2)
        mm_widen(d + n, b, n, bits, is);
}
#endif

/* w4: mm_widen4u takes the values (mm_kernels.h MM_PW8_WIDEN: checked once a call); the other
 * formats' code is compiled where a layer of the model has them (PW8_WIDE_ANY). */
static MM_INLINE void mm_widen2(uint8_t *d, const uint8_t *a, const uint8_t *b, int32_t n, int np,
                                int bits, int is, int w4)
{
    if (w4) {
        mm_widen4u(d, a, n >> 3);
        if (np == 2)
            mm_widen4u(d + n, b, n >> 3);
    } else {
#if MM_USE_PW8_WIDE_ANY
        mm_widen_any(d, a, b, n, np, bits, is);
#else
        (void)b, (void)np, (void)bits, (void)is;
        MM_PATH_OFF();
#endif
    }
}

/* Whether mm_widen4u widens the layer's inputs. */
static inline int mm_widen_w4(const mm_quant_params *q, int32_t row)
{
    return MM_PW8_WIDEN(q->in_signed, q->in_bits, row) == MM_P_NONE;
}
#endif

/* One mm_pointwise8 pass: `npix` = out_h x out_w pixels of `row` contiguous input bytes,
 * in_step bytes apart within a row of pixels and in_row_step between rows, each against out_c
 * interleaved weight rows; outputs in raster order from out. With `wide` set (2 x row bytes)
 * the input pixels hold `row` packed values of in_bits (2 or 4) bits, widened to bytes there
 * two pixels at a time (mm_pointwise8_widen). */
typedef struct {
    const uint8_t *in;
    uint8_t *out;
    const int8_t *w;
    const mm_quant_params *q;
    uint8_t *wide;
    int32_t row, in_row_step, in_step;
    int out_c, out_h, out_w;
    uint8_t *ext; /* scratch the dense path may extend the input into (mm_pointwise8's) */
} mm_pw8_job;

static inline void mm_st32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* How the W8/A8 kernels (mm_conv8x2_px, mm_pw8_one) requantize a layer (checked once per
 * call): with 8-bit outputs, every shift above 32 and a clamp to [0, 255] (_U) or to
 * [qmin, 127] (_S: the symmetric signed range is [-127, 127]), mm_pw_rq's rule needs no
 * branch: one USAT or SSAT clamps and takes its last halving, a bytewise maximum raises the
 * signed bytes to qmin four at a time, and four channels of a pixel are stored as one word
 * (mm_rq8x4); else mm_conv8_rq / mm_pw_rq (about 35 cycles per output on ResNet-8's layers,
 * measured). */
enum { MM_RQ8_GENERAL, MM_RQ8_U, MM_RQ8_S, MM_RQ8_UP /* mm_conv_init only: see there */ };
static inline int mm_rq8_kind(const mm_quant_params *q, int out_c)
{
    if (q->out_bits != 8 || !mm_shifts_above32(q, out_c))
        return MM_RQ8_GENERAL;
    return MM_CLAMP_U8(q->qmin, q->qmax) ? MM_RQ8_U : MM_CLAMP_S8(q->qmin, q->qmax) ? MM_RQ8_S
                                                                             : MM_RQ8_GENERAL;
}

/* The sub8 path's requantization of a layer (mm_conv_ctx.fast): the branch-free unsigned one
 * (mm_pw_fast: outputs of any width over their whole range), else mm_rq8x4's signed one
 * (MM_RQ8_S: 8-bit outputs, as ResNet-8's convolutions before an add; path SUB8_RQS,
 * mm_kernels.h MM_SUB8_RQ), else mm_pw_rq's. */
enum { MM_S8_RQ_ANY, MM_S8_RQ_U, MM_S8_RQ_S };
static inline int mm_s8_rq(const mm_quant_params *q, int out_c)
{
    return mm_pw_fast(q, out_c)                     ? MM_S8_RQ_U
           : mm_rq8_kind(q, out_c) == MM_RQ8_S ? MM_S8_RQ_S
                                               : MM_S8_RQ_ANY;
}

#if MM_USE_CONV8X2 || MM_USE_CONV8P || MM_USE_SMALL8P || MM_USE_PW8_FAST || MM_USE_PW8_ANY || \
    MM_USE_PW8_ONE || MM_USE_SUB8_RQS || MM_USE_PW8_PT
#if defined(__ARM_FEATURE_DSP)
static inline int32_t mm_ssat8_half(int32_t a) /* a >> 1 clamped to [-128, 127] */
{
    int32_t r;
    __asm__("ssat %0, #8, %1, asr #1" : "=r"(r) : "r"(a));
    return r;
}
static inline uint32_t mm_smax8(uint32_t a, uint32_t b) /* bytewise signed maximum */
{
    uint32_t r;
    __asm__("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(a), "r"(b) : "cc");
    return r;
}
#else
static inline int32_t mm_ssat8_half(int32_t a)
{
    a >>= 1;
    return a < -128 ? -128 : a > 127 ? 127 : a;
}
static inline uint32_t mm_smax8(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    for (int i = 0; i < 32; i += 8) {
        const int32_t x = (int8_t)(a >> i), y = (int8_t)(b >> i);
        r |= (uint32_t)(uint8_t)(x > y ? x : y) << i;
    }
    return r;
}
#endif

/* What mm_rq8x4 reads of a layer. */
typedef struct {
    const int32_t *bias, *mult;
    const int8_t *shift;
    int32_t kb, qmin; /* 2^bias_shift; the clamp's lower end */
} mm_rq8p;

/* Channels co .. co + 3 of np pixels (acc[0..3] pixel 0's sums, acc[4..7] pixel 1's) under
 * MM_RQ8_U (sg = 0) or _S (sg = 1), stored as one word per pixel at o0 and o1: each channel's
 * parameters are read once for both pixels. np and sg are constants at every call. */
static MM_INLINE void mm_rq8x4(const mm_rq8p *p, int co, const int np, const int32_t *acc,
                               uint8_t *o0, uint8_t *o1, const int sg)
{
    const int32_t kb = p->kb;
    uint32_t y0 = 0, y1 = 0;
#if defined(__GNUC__)
#pragma GCC unroll 4
#endif
    for (int j = 0; j < 4; j++) {
        const int32_t b = p->bias[co + j], m = p->mult[co + j], s = p->shift[co + j] - 33;
        const int32_t v0 = (mm_smmul(acc[j] * kb + b, m) >> s) + 1;
        y0 |= (uint32_t)(sg ? mm_ssat8_half(v0) & 0xFF : mm_usat8_half(v0)) << 8 * j;
        if (np == 2) {
            const int32_t v1 = (mm_smmul(acc[4 + j] * kb + b, m) >> s) + 1;
            y1 |= (uint32_t)(sg ? mm_ssat8_half(v1) & 0xFF : mm_usat8_half(v1)) << 8 * j;
        }
    }
    if (sg) {
        const uint32_t lo = (uint32_t)(uint8_t)p->qmin * 0x01010101u;
        y0 = mm_smax8(y0, lo);
        y1 = mm_smax8(y1, lo);
    }
    mm_st32(o0, y0);
    if (np == 2)
        mm_st32(o1, y1);
}
#endif

#if MM_USE_PW8_FAST || MM_USE_PW8_ANY || MM_USE_PW8_ONE || MM_USE_PW8_PT
/* One pixel (the last of an odd count, or a linear's only one; mm_dense_pt's PW8_PT). */
static MM_NOINLINE void mm_pw8_one(const mm_pw8_job *j, const uint8_t *x, uint8_t *out)
{
    const mm_quant_params *q = j->q;
    const int32_t *const bias = q->bias, *const mult = q->mult;
    const int8_t *const shift = q->shift, *ws = j->w;
    const int is = q->in_signed, out_c = j->out_c, bk = q->bias_shift;
    const int32_t row = j->row, qmin = q->qmin, qmax = q->qmax;
    mm_writer wr = {out, 0, 0, q->out_bits};
    const mm_rq8p rp = {bias, mult, shift, (int32_t)1 << bk, qmin};
    const int kind = mm_rq8_kind(q, out_c);
    int co = 0;
    for (; co + 4 <= out_c; co += 4, ws += 4 * row) {
        int32_t acc[4];
        if (is)
            mm_pw8x4(x, ws, row, 1, acc);
        else
            mm_pw8x4(x, ws, row, 0, acc);
        if (kind != MM_RQ8_GENERAL) { /* 8-bit outputs: the writer stays on byte boundaries */
            if (kind == MM_RQ8_U)
                mm_rq8x4(&rp, co, 1, acc, wr.p, 0, 0);
            else
                mm_rq8x4(&rp, co, 1, acc, wr.p, 0, 1);
            wr.p += 4;
            continue;
        }
#if defined(__GNUC__)
#pragma GCC unroll 4
#endif
        for (int k = 0; k < 4; k++)
            acc[k] = mm_pw_rq(acc[k], bias[co + k], mult[co + k], shift[co + k], bk, qmin, qmax);
        mm_put4(&wr, acc);
    }
    for (; co < out_c; co++, ws += row)
        mm_put(&wr, mm_pw_rq(mm_pw8x1(x, ws, row, is), bias[co], mult[co], shift[co], bk, qmin,
                             qmax));
    mm_flush(&wr);
}
#endif

#if MM_USE_PW8_ANY
/* mm_pw8_2x2 out of line, for the rare layers of mm_pw8_two_w. */
static MM_NOINLINE void mm_pw8_2x2_call(const uint8_t *xa, const uint8_t *xb, const int8_t *w,
                                        const int8_t *wt, int32_t n, int is, int32_t *out)
{
    if (is)
        mm_pw8_2x2(xa, xb, w, wt, n, 1, out);
    else
        mm_pw8_2x2(xa, xb, w, wt, n, 0, out);
}

/* Two pixels, any requantization (outputs through one writer per pixel): each block of four
 * rows as two mm_pw8_2x2 (rows 0-1, rows 2-3), requantized by mm_rq8x4 where the layer's `kind`
 * (mm_rq8_kind, found once per layer) allows, else by mm_pw_rq (ResNet-8's signed 1x1
 * shortcuts: 4.06 -> 3.46 cycles per MAC, measured). */
static void mm_pw8_two_w(const mm_pw8_job *j, const uint8_t *xa, const uint8_t *xb,
                         uint8_t *oa, uint8_t *ob, int kind)
{
    const mm_quant_params *q = j->q;
    const int32_t *const bias = q->bias, *const mult = q->mult;
    const int8_t *const shift = q->shift, *ws = j->w;
    const int32_t row = j->row, wt = 16 * (row >> 2), t2 = 2 * (row & 3);
    const int32_t qmin = q->qmin, qmax = q->qmax;
    const int out_c = j->out_c, is = q->in_signed, bk = q->bias_shift;
    mm_writer wa = {oa, 0, 0, q->out_bits}, wb = {ob, 0, 0, q->out_bits};
    int co = 0;
    for (; co + 4 <= out_c; co += 4, ws += 4 * row) {
        int32_t acc[8], y[8];
        mm_pw8_2x2_call(xa, xb, ws, ws + wt, row, is, acc);
        mm_pw8_2x2_call(xa, xb, ws + 8, ws + wt + t2, row, is, acc + 4);
        if (kind != MM_RQ8_GENERAL) { /* 8-bit outputs: the writers stay on byte boundaries */
            const mm_rq8p rp = {bias + co, mult + co, shift + co, (int32_t)1 << bk, qmin};
            const int32_t ab[8] = {acc[0], acc[1], acc[4], acc[5], acc[2], acc[3], acc[6], acc[7]};
            if (kind == MM_RQ8_U)
                mm_rq8x4(&rp, 0, 2, ab, wa.p, wb.p, 0);
            else
                mm_rq8x4(&rp, 0, 2, ab, wa.p, wb.p, 1);
            wa.p += 4;
            wb.p += 4;
            continue;
        }
        for (int k = 0; k < 4; k++) { /* acc: a0 a1 b0 b1 a2 a3 b2 b3 */
            const int c = co + k, i = (k & 1) + 4 * (k >> 1);
            y[k] = mm_pw_rq(acc[i], bias[c], mult[c], shift[c], bk, qmin, qmax);
            y[4 + k] = mm_pw_rq(acc[i + 2], bias[c], mult[c], shift[c], bk, qmin, qmax);
        }
        mm_put4(&wa, y);
        mm_put4(&wb, y + 4);
    }
    for (; co < out_c; co++, ws += row) {
        mm_put(&wa, mm_pw_rq(mm_pw8x1(xa, ws, row, is), bias[co], mult[co], shift[co], bk, qmin,
                             qmax));
        mm_put(&wb, mm_pw_rq(mm_pw8x1(xb, ws, row, is), bias[co], mult[co], shift[co], bk, qmin,
                             qmax));
    }
    mm_flush(&wa);
    mm_flush(&wb);
}
#endif

/* What the fast requantization reads of the layer (the asm below: at fixed offsets). */
typedef struct {
    const int32_t *bias, *mult;
    const int8_t *shift;
    int32_t kb; /* 2^bias_shift */
} mm_pw8_rq;

#if defined(__ARM_FEATURE_DSP)

#endif

/* Two pixels of a layer with unsigned inputs, rows of whole words and outputs of ob bits,
 * unsigned over their whole range, every shift above 32 (MM_PW8_PATH's FAST):
 * every block of four rows in one asm loop (two halves of mm_pw8_2x2's words, each half's
 * requantization of two channels for both pixels, four outputs of each pixel stored at once
 * as mm_pw_st4 does), so that nothing of the loop is kept in C around an asm that takes every
 * register (a loop of two mm_pw8_2x2-and-requantize halves in C before: about 200 cycles per
 * block besides the words; now about 130, measured on kws). A half takes its row's first word
 * apart (SMUAD starts its sums), then jumps into its loop of eight words so that the first
 * pass takes the words after the last eight (a word's instructions have 32-bit encodings
 * only: 80 bytes a word; the tests take every entry); the loop ends when pixel a's input
 * pointer reaches its end, which frees the pass counter's register for the four loads of a
 * word to go together (21 cycles a word where mm_pw8_2x2 takes 22). mm_pw8f is what the loop
 * reads and advances, at fixed offsets; the rows after the last block go through mm_pw8x1. */
typedef struct {
    const int32_t *bias, *mult; /* 0, 4: advanced four channels per block */
    const int8_t *shift;        /* 8 */
    int32_t kb;                 /* 12: 2^bias_shift */
    const uint8_t *xa, *xb;     /* 16, 20: the two pixels' inputs */
    const uint8_t *xend;        /* 24: the end of pixel a's input (xa + row) */
    int32_t skip;               /* 28: bytes of the loop body the first pass skips */
    int32_t back;               /* 32: 4 row - 8, the weights' step back after half 0 */
    const uint8_t *oend;        /* 36: oa after the last block */
    uint8_t *oa, *ob;           /* 40, 44: advanced 4 x bits / 8 bytes per block */
    uint32_t lo;                /* 48: half 0's bytes (pixel a's in bits 0-15, b's above) */
    int32_t bits;               /* 52: output bits (8, 4, 2) */
    uint32_t m4;                /* 56: 2^bits - 1 in every byte */
} mm_pw8f;

#if defined(__ARM_FEATURE_DSP)
typedef char mm_pw8f_ok[offsetof(mm_pw8f, m4) == 56 ? 1 : -1]; /* the asm's offsets (32-bit) */
/* One input word of both pixels against the half's two rows: MM_PW8_2X2_WORD's arithmetic with
 * its four loads together (one cycle each after the first: the loop counts no passes, so its
 * register takes the second row's word). */
#define MM_PW8F_WORD MM_PW8F_WORD_X("")
/* ...with X after its loads: the last word of a pass loads the input's end with them and
 * compares (32-bit encodings, so that the loop's end lies 652 bytes after its start). */
#define MM_PW8F_WORD_X(X)                                                                         \
    "ldr %[t0], [%[xa]], #4\n\t"                                                                  \
    "ldr %[t1], [%[xb]], #4\n\t"                                                                  \
    "ldr %[t2], [%[w]], #16\n\t"                                                                  \
    "ldr %[t6], [%[w], #-12]\n\t" X "uxtb16 %[t3], %[t0]\n\t"                                                                     \
    "uxtb16 %[t0], %[t0], ror #8\n\t"                                                             \
    "uxtb16 %[t4], %[t1]\n\t"                                                                     \
    "uxtb16 %[t1], %[t1], ror #8\n\t" MM_PW8_2X2_ROW("a0", "b0") "sxtb16 %[t5], %[t6]\n\t"        \
    "sxtb16 %[t6], %[t6], ror #8\n\t"                                                             \
    "smlad %[a1], %[t5], %[t3], %[a1]\n\t"                                                        \
    "smlad %[b1], %[t5], %[t4], %[b1]\n\t"                                                        \
    "smlad %[a1], %[t6], %[t0], %[a1]\n\t"                                                        \
    "smlad %[b1], %[t6], %[t1], %[b1]\n\t"
/* A half's first word, its first products taken by SMUAD: the sums need no clearing. */
#define MM_PW8F_FIRST                                                                             \
    "ldr %[t0], [%[xa]], #4\n\t"                                                                  \
    "ldr %[t1], [%[xb]], #4\n\t"                                                                  \
    "ldr %[t2], [%[w]], #16\n\t"                                                                  \
    "ldr %[t6], [%[w], #-12]\n\t"                                                                 \
    "uxtb16 %[t3], %[t0]\n\t"                                                                     \
    "uxtb16 %[t0], %[t0], ror #8\n\t"                                                             \
    "uxtb16 %[t4], %[t1]\n\t"                                                                     \
    "uxtb16 %[t1], %[t1], ror #8\n\t"                                                             \
    "sxtb16 %[t5], %[t2]\n\t"                                                                     \
    "sxtb16 %[t2], %[t2], ror #8\n\t"                                                             \
    "smuad %[a0], %[t5], %[t3]\n\t"                                                               \
    "smuad %[b0], %[t5], %[t4]\n\t"                                                               \
    "smlad %[a0], %[t2], %[t0], %[a0]\n\t"                                                        \
    "smlad %[b0], %[t2], %[t1], %[b0]\n\t"                                                        \
    "sxtb16 %[t5], %[t6]\n\t"                                                                     \
    "sxtb16 %[t6], %[t6], ror #8\n\t"                                                             \
    "smuad %[a1], %[t5], %[t3]\n\t"                                                               \
    "smuad %[b1], %[t5], %[t4]\n\t"                                                               \
    "smlad %[a1], %[t6], %[t0], %[a1]\n\t"                                                        \
    "smlad %[b1], %[t6], %[t1], %[b1]\n\t"
/* mm_pw_u for both pixels' sums A and B of the channel whose bias, mult and shift are at t0,
 * t1, t2 + the offsets (t3: kb), one after the other through t4 (xa, xb and t6 hold the
 * channel's parameters; the state pointer stays in t5). */
#define MM_PW8F_RQ1(S)                                                                            \
    MM_RQ_ASM("t4", S, "t3", "xa", "xb", "t6", "#1") "usat %[" S "], #8, %[t4], asr #1\n\t"
#define MM_PW8F_RQ(A, B, O4, O1)                                                                  \
    "ldr %[xa], [%[t0], #" O4 "]\n\t"                                                             \
    "ldr %[xb], [%[t1], #" O4 "]\n\t"                                                             \
    "ldrsb %[t6], [%[t2], #" O1 "]\n\t"                                                           \
    "sub %[t6], %[t6], #33\n\t" MM_PW8F_RQ1(A) MM_PW8F_RQ1(B)
/* The state pointer (t5 on entry) waits on the stack while the words take every register;
 * above it the end of pixel a's input (the loop's exit test) and the halves' entries. */
#define MM_PW8F_PARAMS                                                                            \
    "ldr %[t5], [sp]\n\t"                                                                         \
    "ldr %[t0], [%[t5]]\n\t"                                                                      \
    "ldr %[t1], [%[t5], #4]\n\t"                                                                  \
    "ldr %[t2], [%[t5], #8]\n\t"                                                                  \
    "ldr %[t3], [%[t5], #12]\n\t"
/* A half: its pixels, its first word, a jump to its entry (stacked at sp + E, Thumb bit set):
 * into its loop (the words after the last eight first) or onto the exit test. */
#define MM_PW8F_START(E)                                                                          \
    "ldr %[xa], [%[t5], #16]\n\t"                                                                 \
    "ldr %[xb], [%[t5], #20]\n\t" MM_PW8F_FIRST "ldr pc, [sp, #" E "]\n\t"
#define MM_PW8F_LOOP(L)                                                                           \
    L ":\n\t" MM_PW8F_WORD MM_PW8F_WORD MM_PW8F_WORD MM_PW8F_WORD MM_PW8F_WORD MM_PW8F_WORD       \
        MM_PW8F_WORD MM_PW8F_WORD_X("ldr.w %[t5], [sp, #4]\n\tcmp.w %[xa], %[t5]\n\t")          \
    "bne.w " L "b\n\t"
/* The end of a block (the state at t5): the parameters four channels on; then pixel a's
 * four outputs (half 0's at [t5, #48], half 1's in a0), b's (b0) stored as mm_pw_st4 does, W
 * (the weights' step to the next block), back to 0 until oa reaches oend, else on to 9. NEXT's
 * stores and PUT's four loads run back to back (one cycle each after the first, the packing
 * after them): 2 est. M4 cycles a block fewer. */
#define MM_PW8F_NEXT                                                                               \
    "add %[t0], %[t0], #16\n\t"                                                                    \
    "add %[t1], %[t1], #16\n\t"                                                                    \
    "add %[t2], %[t2], #4\n\t"                                                                     \
    "str %[t0], [%[t5]]\n\t"                                                                       \
    "str %[t1], [%[t5], #4]\n\t"                                                                   \
    "str %[t2], [%[t5], #8]\n\t"
#define MM_PW8F_PUT(W)                                                                             \
    "ldr %[t4], [%[t5], #48]\n\t"                                                                  \
    "ldr %[t0], [%[t5], #40]\n\t"                                                                  \
    "ldr %[t1], [%[t5], #44]\n\t"                                                                  \
    "ldr %[t3], [%[t5], #52]\n\t"                                                                  \
    "pkhbt %[a1], %[t4], %[a0], lsl #16\n\t"                                                       \
    "lsr %[t4], %[t4], #16\n\t"                                                                    \
    "orr %[b1], %[t4], %[b0], lsl #16\n\t"                                                         \
    "cmp %[t3], #8\n\t"                                                                            \
    "bne 5f\n\t"                                                                                   \
    "str %[a1], [%[t0]], #4\n\t"                                                                   \
    "str %[b1], [%[t1]], #4\n\t" MM_PW8F_STEP(W)                                                    \
    "5:\n\t" /* 4- or 2-bit outputs: clamped to 2^ob - 1 (bytewise minimum), packed */             \
    "ldr %[t2], [%[t5], #56]\n\t"                                                                  \
    "usub8 %[t4], %[a1], %[t2]\n\t"                                                                \
    "sel %[a1], %[t2], %[a1]\n\t"                                                                  \
    "usub8 %[t4], %[b1], %[t2]\n\t"                                                                \
    "sel %[b1], %[t2], %[b1]\n\t"                                                                  \
    "cmp %[t3], #4\n\t"                                                                            \
    "bne 7f\n\t"                                                                                   \
    "orr %[a1], %[a1], %[a1], lsr #4\n\t"                                                          \
    "orr %[b1], %[b1], %[b1], lsr #4\n\t"                                                          \
    "and %[a1], %[a1], #0x00FF00FF\n\t"                                                            \
    "and %[b1], %[b1], #0x00FF00FF\n\t"                                                            \
    "orr %[a1], %[a1], %[a1], lsr #8\n\t"                                                          \
    "orr %[b1], %[b1], %[b1], lsr #8\n\t"                                                          \
    "strh %[a1], [%[t0]], #2\n\t"                                                                  \
    "strh %[b1], [%[t1]], #2\n\t" MM_PW8F_STEP(W)                                                   \
    "7:\n\t"                                                                                       \
    "orr %[a1], %[a1], %[a1], lsr #6\n\t"                                                          \
    "orr %[b1], %[b1], %[b1], lsr #6\n\t"                                                          \
    "and %[a1], %[a1], #0x000F000F\n\t"                                                            \
    "and %[b1], %[b1], #0x000F000F\n\t"                                                            \
    "orr %[a1], %[a1], %[a1], lsr #12\n\t"                                                         \
    "orr %[b1], %[b1], %[b1], lsr #12\n\t"                                                         \
    "strb %[a1], [%[t0]], #1\n\t"                                                                  \
    "strb %[b1], [%[t1]], #1\n\t" MM_PW8F_STEP(W)                                                   \
    "9:\n\t"
/* The end of a block after its stores, once per output width (no jump back to a shared one:
 * 3 est. M4 cycles a block of 4- or 2-bit outputs): the output pointers kept, W, then the next
 * block, or on to 9. */
#define MM_PW8F_STEP(W)                                                                           \
    "str %[t0], [%[t5], #40]\n\t"                                                                  \
    "str %[t1], [%[t5], #44]\n\t"                                                                  \
    "ldr %[t3], [%[t5], #36]\n\t"                                                                  \
    W                                                                                              \
    "cmp %[t0], %[t3]\n\t"                                                                         \
    "bne 0b\n\t"                                                                                   \
    "b 9f\n\t"
#define MM_PW8F_ASM                                                                               \
    __asm__ volatile(                                                                             \
        "sub sp, sp, #16\n\t"                                                                     \
        "str %[t5], [sp]\n\t"                                                                     \
        "ldr %[t0], [%[t5], #24]\n\t"                                                             \
        "ldr %[t1], [%[t5], #28]\n\t"                                                             \
        "adr.w %[t2], 1f\n\t"                                                                     \
        "adr.w %[t3], 2f\n\t"                                                                     \
        "add %[t2], %[t2], %[t1]\n\t"                                                             \
        "add %[t3], %[t3], %[t1]\n\t"                                                             \
        "orr %[t2], %[t2], #1\n\t"                                                                \
        "orr %[t3], %[t3], #1\n\t"                                                                \
        "str %[t0], [sp, #4]\n\t"                                                                 \
        "str %[t2], [sp, #8]\n\t"                                                                 \
        "str %[t3], [sp, #12]\n\t"                                                                \
        "0:\n\t"                                                                                  \
        "ldr %[t5], [sp]\n\t" MM_PW8F_START("8") MM_PW8F_LOOP("1") MM_PW8F_PARAMS                \
            MM_PW8F_RQ("a0", "b0", "0", "0") MM_PW8F_RQ("a1", "b1", "4", "1")                     \
        "orr %[a0], %[a0], %[a1], lsl #8\n\t"                                                     \
        "orr %[b0], %[b0], %[b1], lsl #8\n\t"                                                     \
        "orr %[a0], %[a0], %[b0], lsl #16\n\t"                                                    \
        "str %[a0], [%[t5], #48]\n\t"                                                             \
        "ldr %[t0], [%[t5], #32]\n\t"                                                             \
        "sub %[w], %[w], %[t0]\n\t" MM_PW8F_START("12") MM_PW8F_LOOP("2") MM_PW8F_PARAMS         \
            MM_PW8F_RQ("a0", "b0", "8", "2") MM_PW8F_RQ("a1", "b1", "12", "3")                    \
        "orr %[a0], %[a0], %[a1], lsl #8\n\t"                                                     \
        "orr %[b0], %[b0], %[b1], lsl #8\n\t"                                                     \
        MM_PW8F_NEXT MM_PW8F_PUT("sub %[w], %[w], #8\n\t")                                         \
        "add sp, sp, #16\n\t"                                                                      \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1), [xa] "=&r"(x0),       \
          [xb] "=&r"(x1), [w] "+r"(w), [t6] "=&r"(t6), [t0] "=&r"(t0), [t1] "=&r"(t1),            \
          [t2] "=&r"(t2), [t3] "=&r"(t3), [t4] "=&r"(t4), [t5] "+r"(p)                          \
        :                                                                                         \
        : "cc", "memory")
#endif

#if MM_USE_PW8_FAST
/* A layer's mm_pw8f: what stays from one pair of pixels to the next (mm_pw8_two8 sets the rest). */
static inline mm_pw8f mm_pw8f_layer(const mm_pw8_job *j)
{
    const mm_quant_params *q = j->q;
    const int32_t row = j->row, more = (row >> 2) - 1;
    /* the loop takes the words after the first: the skip leaves (8 - their count) % 8 words of
     * its first pass, or the whole loop (652 bytes) where there are none */
    const mm_pw8f st = {0, 0, 0, (int32_t)1 << q->bias_shift, 0, 0, 0,
                        more ? 80 * (7 - ((more - 1) & 7)) : 652, 4 * row - 8, 0, 0, 0, 0,
                        q->out_bits, (uint32_t)q->qmax * 0x01010101u};
    return st;
}

/* 4-byte aligned: the assembler's ADR offsets count from the function's section start on a
 * word boundary (with -ffunction-sections a Thumb function is otherwise 2-byte aligned, and
 * the entries would land mid-instruction). */
#if defined(__GNUC__)
__attribute__((aligned(4)))
#endif
static MM_NOINLINE void mm_pw8_two8(const mm_pw8_job *j, mm_pw8f *st, const uint8_t *xa,
                                    const uint8_t *xb, uint8_t *oa, uint8_t *ob)
{
    const mm_quant_params *q = j->q;
    const int32_t row = j->row, blocks = j->out_c >> 2;
    const int8_t *w = j->w;
    const int obits = st->bits;
    int co = 4 * blocks;
    if (blocks) {
        mm_pw8f *p = st;
        st->bias = q->bias, st->mult = q->mult, st->shift = q->shift;
        st->xa = xa, st->xb = xb, st->xend = xa + row;
        st->oend = oa + ((blocks * obits) >> 1), st->oa = oa, st->ob = ob;
#if defined(__ARM_FEATURE_DSP)
        uint32_t a0, a1, b0, b1, t0, t1, t2, t3, t4, t6;
        const uint8_t *x0, *x1; /* the asm's input pointers (xa and xb serve the rows after) */
        MM_PW8F_ASM;
        (void)a0, (void)a1, (void)b0, (void)b1, (void)t0, (void)t1, (void)t2, (void)t3;
        (void)t4, (void)t6, (void)x0, (void)x1, (void)p;
#else
        for (; p->oa != p->oend; w += 4 * row) { /* the asm's steps, portably */
            int32_t s[8];
            uint32_t ya = 0, yb = 0;
            mm_pw8_2x2(xa, xb, w, w + 4 * row, row, 0, s);
            mm_pw8_2x2(xa, xb, w + 8, w + 4 * row, row, 0, s + 4);
            for (int i = 0; i < 4; i++, p->bias++, p->mult++, p->shift++) {
                const int h = (i >> 1) * 4 + (i & 1); /* s: a0 a1 b0 b1 a2 a3 b2 b3 */
                ya |= mm_pw_u(s[h], *p->bias, *p->mult, *p->shift, p->kb) << 8 * i;
                yb |= mm_pw_u(s[h + 2], *p->bias, *p->mult, *p->shift, p->kb) << 8 * i;
            }
            p->oa = mm_pw_st4(p->oa, ya, obits, p->m4);
            p->ob = mm_pw_st4(p->ob, yb, obits, p->m4);
        }
#endif
        oa = st->oa, ob = st->ob;
    }
    if (co < j->out_c) {
        mm_writer wa = {oa, 0, 0, obits}, wb = {ob, 0, 0, obits};
        for (; co < j->out_c; co++, w += row) {
            const int32_t b = q->bias[co], m = q->mult[co], sh = q->shift[co], qx = q->qmax;
            mm_put(&wa, mm_pw_rq(mm_pw8x1(xa, w, row, 0), b, m, sh, q->bias_shift, 0, qx));
            mm_put(&wb, mm_pw_rq(mm_pw8x1(xb, w, row, 0), b, m, sh, q->bias_shift, 0, qx));
        }
        mm_flush(&wa);
        mm_flush(&wb);
    }
}
#endif

/* mm_pointwise8 and its pixels are compiled where the model runs it (a call without it fails
 * to link). */
#if MM_USE_PW8_FAST || MM_USE_PW8_ANY
/* The pixels of a job in pairs (raster order, across rows of pixels), an odd last one alone;
 * fast (with `is`, constants at each use): mm_pw8_two8, else mm_pw8_two_w. Pixel b's first
 * outputs are written before pixel a's input is read to the end (each block of rows reads it
 * again): under an overlapping (in-place) placement this kernel needs a lag of one pixel. */
static MM_INLINE void mm_pw8_pixels(const mm_pw8_job *j, const int fast, const int is)
{
    const mm_quant_params *q = j->q;
    const int32_t npix = (int32_t)j->out_h * j->out_w, row = j->row;
    const int32_t out_pix = mm_bytes(j->out_c, q->out_bits);
    const int32_t step = j->in_step, row_step = j->in_row_step;
    const int out_w = j->out_w, kind = fast ? MM_RQ8_GENERAL : mm_rq8_kind(q, j->out_c);
    const uint8_t *xr = j->in; /* the current row of input pixels */
    uint8_t *out = j->out;
    int ox = 0;
#if MM_USE_PW8_WIDE
    const int w4 = mm_widen_w4(q, row);
#endif
#if MM_USE_PW8_FAST
    mm_pw8f st = mm_pw8f_layer(j);
#endif
    for (int32_t p = 0; p + 1 < npix; p += 2, out += 2 * out_pix) {
        const uint8_t *xa = xr + (int32_t)ox * step, *xb;
        if (++ox == out_w)
            ox = 0, xr += row_step;
        xb = xr + (int32_t)ox * step;
        if (++ox == out_w)
            ox = 0, xr += row_step;
#if MM_USE_PW8_WIDE /* j->wide is set by mm_pointwise8_widen only */
        if (j->wide) {
            mm_widen2(j->wide, xa, xb, row, 2, q->in_bits, q->in_signed, w4);
            xa = j->wide;
            xb = j->wide + row;
        }
#endif
#if MM_USE_PW8_FAST
        if (fast)
            mm_pw8_two8(j, &st, xa, xb, out, out + out_pix);
#endif
#if MM_USE_PW8_ANY
        if (!fast)
            mm_pw8_two_w(j, xa, xb, out, out + out_pix, kind);
#endif
    }
    (void)is, (void)row, (void)kind;
    if (npix & 1) {
        const uint8_t *x = xr + (int32_t)ox * step;
#if MM_USE_PW8_WIDE
        if (j->wide) {
            mm_widen2(j->wide, x, x, row, 1, q->in_bits, q->in_signed, w4);
            x = j->wide;
        }
#endif
        mm_pw8_one(j, x, out);
    }
}

#if MM_USE_PW8_FAST
static MM_NOINLINE void mm_pw8_fast(const mm_pw8_job *j) { mm_pw8_pixels(j, 1, 0); }
#endif
#if MM_USE_PW8_ANY
static MM_NOINLINE void mm_pw8_any(const mm_pw8_job *j) { mm_pw8_pixels(j, 0, 0); }
#endif
#endif

#if MM_ON_PW8_DENSE_U || MM_ON_PW8_DENSE_S || MM_ON_SUB8D_W4 || MM_ON_SUB8D_W2 ||                \
    MM_ON_PW8D_PT_U || MM_ON_PW8D_PT_S || MM_ON_SUB8D_PT_W4 || MM_ON_SUB8D_PT_W2 ||              \
    MM_ON_SUB8D4_PT_ANY
/* The one-pixel dense paths (mm_pw8_dense: 8-bit weights; mm_s8_dense: 4- and 2-bit ones) run
 * their blocks of four rows in one asm loop each, the sums and each block's requantization and
 * word store right after one another, so that nothing of the loop is kept in C around an asm
 * that takes every register (mm_pw8_one: about 170 cycles per block besides the dot products,
 * spilled values reloaded). mm_pw8d is what the loops read and advance, at fixed offsets; the
 * block's end (MM_DENSE_TAIL) is one macro for both. Outputs of either clamp (mm_rq8_kind's U
 * and S) go through one unsigned saturation: S's sums are offset by 256 (rnd), so that
 * USAT gives y + 128 for its SSAT's y; the floor (qmin + 128) is an unsigned bytewise maximum
 * and flip takes the bytes back to signed. */
typedef struct {
    const int32_t *bias, *mult; /* 0, 4: advanced four channels per block */
    const int8_t *shift;        /* 8: advanced four channels per block (read as a word) */
    int32_t kb;                 /* 12: 2^bias_shift */
    uint32_t lo4;               /* 16: the floor in every byte: qmin, + 128 for S */
    const uint8_t *x;           /* 20 */
    int32_t k;                  /* 24: passes of the block's word loop */
    const uint8_t *end;         /* 28: out after the last block */
    int32_t rnd;                /* 32: 1, + 256 for S */
    uint8_t *out;               /* 36: advanced one word per block */
    uint32_t flip;              /* 40: 0x80808080 for S, else 0 */
    int32_t entry;              /* 44: code bytes the first pass skips (mm_pw8_dense) */
} mm_pw8d;

static inline mm_pw8d mm_dense_state(const mm_quant_params *q, const uint8_t *x, int32_t k,
                                     int32_t blocks, uint8_t *out, int32_t entry)
{
    const int sg = !MM_CLAMP_U8(q->qmin, q->qmax);
    const mm_pw8d st = {q->bias,
                        q->mult,
                        q->shift,
                        (int32_t)1 << q->bias_shift,
                        (uint32_t)(uint8_t)(q->qmin + 128 * sg) * 0x01010101u,
                        x,
                        k,
                        out + 4 * blocks,
                        1 + 256 * sg,
                        out,
                        sg ? 0x80808080u : 0u,
                        entry};
    return st;
}

#if defined(__ARM_FEATURE_DSP)
/* The offsets the asm reads (a negative array size fails to compile). */
typedef char mm_pw8d_ok[offsetof(mm_pw8d, out) == 36 && offsetof(mm_pw8d, entry) == 44 &&
                                sizeof(mm_pw8d) == 48
                            ? 1
                            : -1];
/* One channel of mm_pw_rq's rule up to its last halving, (smmul(a kb + bias, mult) >>
 * (shift - 33)) + rnd: B, M the bias and mult pointers, K kb, SH the shift's register (its
 * low byte), X, Y scratch, R rnd. */
#define MM_DENSE_RQ(A, B, M, K, SH, X, Y, R)                                                      \
    "ldr %[" X "], [%[" B "]], #4\n\t"                                                            \
    "ldr %[" Y "], [%[" M "]], #4\n\t" MM_RQ_ASM(A, A, K, X, Y, SH, "%[" R "]")
/* A block's end, its sums in C0..C3 (channels 0..3): the four shifts as one word (an LDR at
 * any address, which Armv7-M allows) less 33 in every byte (every shift is above 32: no
 * borrow; ASR reads a register's low byte), the
 * requantization, USAT of the halves, the floor, flip, the word store, and the branch back to
 * 1: while out is not end, with p the state's address again. B, M, SH, K, X, Y, R, Z: the
 * eight registers the sums leave free; the state's address is on the stack. */
#define MM_DENSE_TAIL(C0, C1, C2, C3, B, M, SH, K, X, Y, R, Z)                                    \
    "ldr %[p], [sp]\n\t"                                                                          \
    "ldr %[" B "], [%[p]]\n\t"                                                                    \
    "ldr %[" M "], [%[p], #4]\n\t"                                                                \
    "ldr %[" Z "], [%[p], #8]\n\t"                                                                \
    "ldr %[" K "], [%[p], #12]\n\t"                                                               \
    "ldr %[" R "], [%[p], #32]\n\t"                                                               \
    "ldr %[" SH "], [%[" Z "]], #4\n\t"                                                           \
    "str %[" Z "], [%[p], #8]\n\t"                                                                \
    "sub %[" SH "], %[" SH "], #0x21212121\n\t" MM_DENSE_RQ(C0, B, M, K, SH, X, Y, R)             \
    "lsr %[" Z "], %[" SH "], #8\n\t" MM_DENSE_RQ(C1, B, M, K, Z, X, Y, R)                        \
    "lsr %[" Z "], %[" SH "], #16\n\t" MM_DENSE_RQ(C2, B, M, K, Z, X, Y, R)                       \
    "lsr %[" Z "], %[" SH "], #24\n\t" MM_DENSE_RQ(C3, B, M, K, Z, X, Y, R)                       \
    "str %[" B "], [%[p]]\n\t" /* stores and loads in one run (pipelined) */                      \
    "str %[" M "], [%[p], #4]\n\t" MM_DENSE_STORE(C0, C1, C2, C3, K, X, Y, R, Z)
/* MM_DENSE_TAIL for a layer with one multiplier and one shift (mm_dense_pt): both read once a
 * block from their one entry (the state's mult and shift pointers stay), the shift less 33 in
 * SH for all four channels, the multiplier in M; the bias pointer advanced as there. */
#define MM_DENSE_TAIL_PT(C0, C1, C2, C3, B, M, SH, K, X, Y, R, Z)                                 \
    "ldr %[p], [sp]\n\t"                                                                          \
    "ldr %[" B "], [%[p]]\n\t"                                                                    \
    "ldr %[" M "], [%[p], #4]\n\t"                                                                \
    "ldr %[" Z "], [%[p], #8]\n\t"                                                                \
    "ldr %[" K "], [%[p], #12]\n\t"                                                               \
    "ldr %[" R "], [%[p], #32]\n\t"                                                               \
    "ldr %[" M "], [%[" M "]]\n\t"                                                                \
    "ldrsb %[" SH "], [%[" Z "]]\n\t"                                                             \
    "sub %[" SH "], %[" SH "], #33\n\t" MM_DENSE_RQ_PT(C0, B, M, K, SH, X, R)                     \
    MM_DENSE_RQ_PT(C1, B, M, K, SH, X, R) MM_DENSE_RQ_PT(C2, B, M, K, SH, X, R)                   \
    MM_DENSE_RQ_PT(C3, B, M, K, SH, X, R)                                                         \
    "str %[" B "], [%[p]]\n\t" MM_DENSE_STORE(C0, C1, C2, C3, K, X, Y, R, Z)
#define MM_DENSE_RQ_PT(A, B, M, K, SH, X, R)                                                      \
    "ldr %[" X "], [%[" B "]], #4\n\t" MM_RQ_ASM(A, A, K, X, M, SH, "%[" R "]")
/* The block's end after its requantization: USAT of the halves, the floor, flip, the word
 * store, and the branch back to 1: while out is not end. */
#define MM_DENSE_STORE(C0, C1, C2, C3, K, X, Y, R, Z)                                             \
    "ldr %[" X "], [%[p], #16]\n\t"                                                               \
    "ldr %[" Y "], [%[p], #40]\n\t"                                                               \
    "ldr %[" Z "], [%[p], #36]\n\t"                                                               \
    "ldr %[" K "], [%[p], #28]\n\t"                                                               \
    "usat %[" C0 "], #8, %[" C0 "], asr #1\n\t"                                                   \
    "usat %[" C1 "], #8, %[" C1 "], asr #1\n\t"                                                   \
    "usat %[" C2 "], #8, %[" C2 "], asr #1\n\t"                                                   \
    "usat %[" C3 "], #8, %[" C3 "], asr #1\n\t"                                                   \
    "bfi %[" C0 "], %[" C1 "], #8, #8\n\t"                                                        \
    "bfi %[" C0 "], %[" C2 "], #16, #8\n\t"                                                       \
    "bfi %[" C0 "], %[" C3 "], #24, #8\n\t"                                                       \
    "usub8 %[" R "], %[" C0 "], %[" X "]\n\t"                                                     \
    "sel %[" C0 "], %[" C0 "], %[" X "]\n\t"                                                      \
    "eor %[" C0 "], %[" C0 "], %[" Y "]\n\t"                                                      \
    "str %[" C0 "], [%[" Z "]], #4\n\t"                                                           \
    "str %[" Z "], [%[p], #36]\n\t"                                                               \
    "cmp %[" Z "], %[" K "]\n\t"                                                                  \
    "bne 1b\n\t"
#endif
#endif

#if MM_ON_PW8_DENSE_U || MM_ON_PW8_DENSE_S || MM_ON_PW8D_PT_U || MM_ON_PW8D_PT_S
/* A linear whose rows are whole words and whose requantization is mm_rq8_kind's U or S
 * (MM_PW8_PATH's dense path, by input sign): the dot products as mm_pw8x4's, MM_PW8D_N words a
 * pass, the first pass of each block entered MM_PW8D_N - words % MM_PW8D_N words in (by
 * ADD PC, so that no row length needs a loop of its own: every instruction of a word is
 * 32-bit, MM_PW8D_RAW_BYTES / MM_PW8D_EXT_BYTES of code, which the asm checks). Rows of at
 * most MM_PATCH bytes in mm_pointwise8 (MM_PW8D_EXT) first extend the input's words to SMLAD's
 * halfword pairs in the scratch (2 x row bytes: what the conv family counts for them), once
 * for all blocks instead of once per block: a word then costs one load more and two
 * extensions less. */
#define MM_PW8D_N 32
#define MM_PW8D_RAW_BYTES 92
#define MM_PW8D_EXT_BYTES 88
#define MM_PW8D_EXT(ext, row) ((ext) != 0 && (row) <= MM_PATCH)
#define MM_PW8D_S_(v) #v
#define MM_PW8D_S(v) MM_PW8D_S_(v)

/* The state of a dense call's blocks; bytes: one word's code. */
static inline mm_pw8d mm_pw8d_state(const mm_pw8_job *j, const uint8_t *x, int32_t bytes)
{
    const int32_t words = j->row >> 2;
    return mm_dense_state(j->q, x, (words + MM_PW8D_N - 1) / MM_PW8D_N, j->out_c >> 2, j->out,
                          (MM_PW8D_N - 1 - (words - 1) % MM_PW8D_N) * bytes);
}

#if defined(__ARM_FEATURE_DSP)
/* One input word against the block's four rows: mm_pw8x4's MM_PW8X4_WORD with the state
 * pointer's register as its seventh scratch (the pointer waits on the stack meanwhile); its
 * halfword pairs t5, t0 extended here (XT) or loaded (MM_PW8D_XWORD). */
#define MM_PW8D_WORD(XT)                                                                          \
    "ldr.w %[t0], [%[x]], #4\n\t"                                                                 \
    "ldr.w %[t1], [%[w]], #16\n\t"                                                                \
    "ldr.w %[t2], [%[w], #-12]\n\t"                                                               \
    "ldr.w %[t3], [%[w], #-8]\n\t"                                                                \
    "ldr.w %[t4], [%[w], #-4]\n\t" XT " %[t5], %[t0]\n\t" XT " %[t0], %[t0], ror #8\n\t"         \
    MM_PW8D_ROWS
#define MM_PW8D_XWORD                                                                             \
    "ldr.w %[t5], [%[x]], #8\n\t"                                                                 \
    "ldr.w %[t0], [%[x], #-4]\n\t"                                                                \
    "ldr.w %[t1], [%[w]], #16\n\t"                                                                \
    "ldr.w %[t2], [%[w], #-12]\n\t"                                                               \
    "ldr.w %[t3], [%[w], #-8]\n\t"                                                                \
    "ldr.w %[t4], [%[w], #-4]\n\t" MM_PW8D_ROWS
#define MM_PW8D_ROWS                                                                              \
    MM_PW8D_ROW("a0", "t1") MM_PW8D_ROW("a1", "t2") MM_PW8D_ROW("a2", "t3") MM_PW8D_ROW("a3", "t4")
#define MM_PW8D_ROW(A, T)                                                                         \
    "sxtb16 %[p], %[" T "]\n\t"                                                                   \
    "smlad %[" A "], %[p], %[t5], %[" A "]\n\t"                                                   \
    "sxtb16 %[" T "], %[" T "], ror #8\n\t"                                                       \
    "smlad %[" A "], %[" T "], %[t0], %[" A "]\n\t"
#define MM_PW8D_X4(W) W W W W
/* The blocks; W: one word's code, BYTES its size, TAIL the block's end (MM_DENSE_TAIL, or
 * MM_DENSE_TAIL_PT for one multiplier and shift). */
#define MM_PW8D_ASM(W, BYTES, TAIL)                                                               \
    __asm__ volatile(                                                                             \
        "str %[p], [sp, #-4]!\n\t" /* p is the state's address at 1: (MM_DENSE_TAIL keeps it) */ \
        "1:\n\t"                                                                                  \
        "ldr %[x], [%[p], #20]\n\t"                                                               \
        "ldr %[k], [%[p], #24]\n\t"                                                               \
        "ldr %[t0], [%[p], #44]\n\t"                                                              \
        "mov %[a0], #0\n\t"                                                                       \
        "mov %[a1], #0\n\t"                                                                       \
        "umull %[a2], %[a3], %[a0], %[a0]\n\t" /* both 0, one cycle */                            \
        "add pc, %[t0]\n\t"                                                                       \
        "nop.n\n\t" /* ADD PC reads its own address + 4: the loop starts here */                 \
        "2:\n\t" W "3:\n\t" W W W MM_PW8D_X4(W) MM_PW8D_X4(W) MM_PW8D_X4(W) MM_PW8D_X4(W)         \
            MM_PW8D_X4(W) MM_PW8D_X4(W) MM_PW8D_X4(W)                                             \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "bne 2b\n\t"                                                                              \
        ".if 3b - 2b - " MM_PW8D_S(BYTES) "\n\t"                                                  \
        ".error \"not one word's code bytes\"\n\t"                                                \
        ".endif\n\t" TAIL("a0", "a1", "a2", "a3", "t0", "t1", "t2", "t3", "x", "k", "t4", "t5")      \
        "add sp, sp, #4\n\t"                                                                      \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [x] "=&r"(xr),         \
          [k] "=&r"(k), [w] "+r"(w), [p] "+r"(p), [t0] "=&r"(t0), [t1] "=&r"(t1),               \
          [t2] "=&r"(t2), [t3] "=&r"(t3), [t4] "=&r"(t4), [t5] "=&r"(t5)                        \
        :                                                                                         \
        : "cc", "memory")
#define MM_PW8D_VARS                                                                              \
    uint32_t a0, a1, a2, a3, t0, t1, t2, t3, t4, t5;                                             \
    int32_t k;                                                                                    \
    const uint8_t *xr
#define MM_PW8D_UNUSED                                                                            \
    (void)a0, (void)a1, (void)a2, (void)a3, (void)t0, (void)t1, (void)t2, (void)t3, (void)t4,    \
        (void)t5, (void)k, (void)xr, (void)p

/* The blocks on the input extended into j->ext: (bytes 0, 2), (bytes 1, 3) of each word
 * sign- (is) or zero-extended. One function for both signs; one per block end (TAIL:
 * MM_DENSE_TAIL, or MM_DENSE_TAIL_PT for mm_dense_pt), each spelled as before the per-tensor
 * one came, so that the per-channel code is the same instructions. */
#define MM_PW8D_EXT_FN(NAME, TAIL)                                                                \
    static MM_NOINLINE void NAME(const mm_pw8_job *j, const uint8_t *x, const int is)             \
    {                                                                                             \
        typedef uint32_t mm_word_at __attribute__((aligned(1), may_alias)); /* any address */   \
        uint32_t *e = (uint32_t *)(void *)j->ext;                                                 \
        const uint8_t *const end = x + j->row;                                                    \
        const int8_t *w = j->w;                                                                   \
        for (const uint8_t *xi = x; xi != end; xi += 4, e += 2) {                                 \
            const uint32_t v = *(const mm_word_at *)(const void *)xi;                             \
            if (is)                                                                               \
                __asm__("sxtb16 %0, %2\n\tsxtb16 %1, %2, ror #8"                                  \
                        : "=&r"(e[0]), "=r"(e[1])                                                 \
                        : "r"(v));                                                                \
            else                                                                                  \
                __asm__("uxtb16 %0, %2\n\tuxtb16 %1, %2, ror #8"                                  \
                        : "=&r"(e[0]), "=r"(e[1])                                                 \
                        : "r"(v));                                                                \
        }                                                                                         \
        mm_pw8d st = mm_pw8d_state(j, j->ext, MM_PW8D_EXT_BYTES), *p = &st;                       \
        MM_PW8D_VARS;                                                                             \
        MM_PW8D_ASM(MM_PW8D_XWORD, MM_PW8D_EXT_BYTES, TAIL);                                      \
        MM_PW8D_UNUSED;                                                                           \
    }
#if MM_ON_PW8_DENSE_U || MM_ON_PW8_DENSE_S
MM_PW8D_EXT_FN(mm_pw8d_ext, MM_DENSE_TAIL)
#endif
#if MM_ON_PW8D_PT_U || MM_ON_PW8D_PT_S
MM_PW8D_EXT_FN(mm_pw8d_ext_pt, MM_DENSE_TAIL_PT)
#endif
#define MM_PW8D_BLOCKS(EXT, TAIL)                                                                 \
    do {                                                                                          \
        if (MM_PW8D_EXT(j->ext, row)) {                                                           \
            EXT(j, x, is);                                                                        \
        } else {                                                                                  \
            mm_pw8d st = mm_pw8d_state(j, x, MM_PW8D_RAW_BYTES), *p = &st;                        \
            const int8_t *w = j->w;                                                               \
            MM_PW8D_VARS;                                                                         \
            if (is)                                                                               \
                MM_PW8D_ASM(MM_PW8D_WORD("sxtb16"), MM_PW8D_RAW_BYTES, TAIL);                     \
            else                                                                                  \
                MM_PW8D_ASM(MM_PW8D_WORD("uxtb16"), MM_PW8D_RAW_BYTES, TAIL);                     \
            MM_PW8D_UNUSED;                                                                       \
        }                                                                                         \
    } while (0)
#endif

/* The dense layer: its blocks (the asm above, or portably the same steps), then the rows
 * after the last block in natural order. R: 1 where each channel has its multiplier and
 * shift, 0 where one serves all (mm_dense_pt: EXT and TAIL its own). */
#if defined(__ARM_FEATURE_DSP)
#define MM_PW8D_RUN(EXT, TAIL, R) MM_PW8D_BLOCKS(EXT, TAIL)
#else
#define MM_PW8D_RUN(EXT, TAIL, R)                                                                 \
    do {                                                                                          \
        mm_pw8d st = mm_pw8d_state(j, x, 0);                                                      \
        for (const int8_t *wb = j->w; st.out != st.end; wb += 4 * row) { /* the asm's steps */    \
            int32_t acc[4];                                                                       \
            mm_pw8x4(st.x, wb, row, is, acc);                                                     \
            for (int i = 0; i < 4; i++, st.bias++, st.mult += (R), st.shift += (R))               \
                *st.out++ = (uint8_t)mm_pw_rq(acc[i], *st.bias, *st.mult, *st.shift,              \
                                              q->bias_shift, q->qmin, q->qmax);                   \
        }                                                                                         \
    } while (0)
#endif
#define MM_PW8_DENSE_FN(NAME, EXT, TAIL, R)                                                       \
    static MM_INLINE void NAME(const mm_pw8_job *j, const uint8_t *x, const int is)               \
    {                                                                                             \
        const mm_quant_params *q = j->q;                                                          \
        const int32_t row = j->row, out_c = j->out_c, blocks = out_c >> 2;                        \
        const int8_t *wt = j->w + (int32_t)4 * blocks * row; /* the rows after the last block */ \
        if (blocks)                                                                               \
            MM_PW8D_RUN(EXT, TAIL, R);                                                            \
        for (int32_t co = 4 * blocks; co < out_c; co++, wt += row) /* in natural order */         \
            j->out[co] = (uint8_t)mm_pw_rq(mm_pw8x1(x, wt, row, is), q->bias[co],                 \
                                           q->mult[(R) * co], q->shift[(R) * co], q->bias_shift,  \
                                           q->qmin, q->qmax);                                     \
    }
#if MM_ON_PW8_DENSE_U || MM_ON_PW8_DENSE_S
MM_PW8_DENSE_FN(mm_pw8_dense, mm_pw8d_ext, MM_DENSE_TAIL, 1)
#endif
#if MM_ON_PW8D_PT_U || MM_ON_PW8D_PT_S
MM_PW8_DENSE_FN(mm_pw8_dense_pt, mm_pw8d_ext_pt, MM_DENSE_TAIL_PT, 0)
#endif
#if MM_ON_PW8_DENSE_U
static MM_NOINLINE void mm_pw8_dense_u(const mm_pw8_job *j, const uint8_t *x)
{
    mm_pw8_dense(j, x, 0);
}
#endif
#if MM_ON_PW8_DENSE_S
static MM_NOINLINE void mm_pw8_dense_s(const mm_pw8_job *j, const uint8_t *x)
{
    mm_pw8_dense(j, x, 1);
}
#endif
#if MM_ON_PW8D_PT_U
static MM_NOINLINE void mm_pw8d_pt_u(const mm_pw8_job *j, const uint8_t *x)
{
    mm_pw8_dense_pt(j, x, 0);
}
#endif
#if MM_ON_PW8D_PT_S
static MM_NOINLINE void mm_pw8d_pt_s(const mm_pw8_job *j, const uint8_t *x)
{
    mm_pw8_dense_pt(j, x, 1);
}
#endif
#endif

#if MM_USE_PW8_FAST || MM_USE_PW8_ANY || MM_USE_PW8_ONE || MM_ON_PW8_DENSE_U || \
    MM_ON_PW8_DENSE_S

/* A linear's input bytes: widened first where they are 4- or 2-bit (mm_pointwise8_widen). */
static inline const uint8_t *mm_pw8_input(const mm_pw8_job *j)
{
#if MM_USE_PW8_WIDE
    if (j->wide) {
        mm_widen2(j->wide, j->in, j->in, j->row, 1, j->q->in_bits, j->q->in_signed,
                  mm_widen_w4(j->q, j->row));
        return j->wide;
    }
#endif
    return j->in;
}

/* The fast pixels where the inputs are unsigned, the outputs unsigned over their whole range,
 * every shift above 32 (checked once per call) and the rows whole words, else mm_pw8_any
 * (signed inputs are rare: MobileNetV2's projections; one copy of the fast code is enough). */
static void mm_pw8_run(const mm_pw8_job *j)
{
    const mm_quant_params *q = j->q;
    switch (MM_PW8_PATH(q->in_signed, j->row, q->qmin, q->qmax, q->out_bits,
                        mm_shifts_above32(q, j->out_c), (int32_t)j->out_h * j->out_w, j->out_c)) {
#if MM_USE_PW8_ONE
    case MM_P_PW8_ONE: /* one output pixel (a linear): none of the pair code */
        mm_pw8_one(j, mm_pw8_input(j), j->out);
        return;
#endif
#if MM_ON_PW8_DENSE_U
    case MM_P_PW8_DENSE_U:
        mm_pw8_dense_u(j, mm_pw8_input(j));
        return;
#endif
#if MM_ON_PW8_DENSE_S
    case MM_P_PW8_DENSE_S:
        mm_pw8_dense_s(j, mm_pw8_input(j));
        return;
#endif
#if MM_USE_PW8_FAST
    case MM_P_PW8_FAST:
        mm_pw8_fast(j);
        return;
#endif
#if MM_USE_PW8_ANY
    case MM_P_PW8_ANY:
        mm_pw8_any(j);
        return;
#endif
    default:
        MM_PATH_OFF();
    }
}

void mm_pointwise8(MM_CONV_ARGS)
{
    const int32_t in_pix = d->in_c; /* 8-bit inputs: one byte per channel */
    const int8_t *ws = (const int8_t *)w;
    MM_ASSERT(MM_IS_PW8(d, q));
    /* Each output pixel's patch is one contiguous run of input bytes. */
    if (d->k_h == 1 && d->k_w == 1) {
        const mm_pw8_job j = {in, out, ws, q, 0, d->in_c,
                              (int32_t)d->stride_h * d->in_w * in_pix,
                              (int32_t)d->stride_w * in_pix, d->out_c, d->out_h, d->out_w,
                              (uint8_t *)scratch};
        mm_pw8_run(&j);
    } else {
        const mm_pw8_job j = {in, out, ws, q, 0, (int32_t)d->k_h * d->k_w * d->in_c, 0, 0,
                              d->out_c, 1, 1, (uint8_t *)scratch};
        mm_pw8_run(&j);
    }
}
#endif

#if MM_USE_PW8_WIDE
void mm_pointwise8_widen(MM_CONV_ARGS)
{
    const int32_t in_pix = mm_bytes(d->in_c, q->in_bits);
    const mm_pw8_job j = {in, out, (const int8_t *)w, q, (uint8_t *)scratch, d->in_c,
                          (int32_t)d->stride_h * d->in_w * in_pix,
                          (int32_t)d->stride_w * in_pix, d->out_c, d->out_h, d->out_w, 0};
    MM_ASSERT(MM_IS_PW8W(d, q));
    mm_pw8_run(&j);
}
#endif

/* Geometry and formats of one conv call, to keep the helper signatures short. */
typedef struct {
    const uint8_t *in, *w;
    const int32_t *bias, *mult;
    const int8_t *shift;
    int in_c, in_h, in_w, kh, kw, cin_g, cout_g, in_pix, ib, is, wb, lp, bk;
    int32_t row, row_bytes, qmin, qmax;
    int fast; /* the requantization: the sub8 path's, mm_s8_rq; the W8/A8 path's (8-bit
               * weights), mm_rq8_kind */
    int kind; /* SUB8X2's pixel function (MM_SUB8X2_KIND), where mm_sub8x2d_w4 is compiled */
} mm_conv_ctx;

#if MM_USE_CONV_ANY
/* Output channels accumulated per pass over the patch chunks (stack int32). */
#define MM_CONV_CB 64

/* Output channels of group g at one pixel when the patch is larger than MM_PATCH: each chunk
 * of the patch is unpacked once and met by up to MM_CONV_CB channels (four rows per dot call),
 * whose sums wait on the stack; before, the chunk was unpacked again for every block of four
 * channels. */
static void mm_conv_chunked(const mm_conv_ctx *k, int16_t *buf, mm_writer *wr, int g, int iy0,
                            int ix0)
{
    int32_t acc[MM_CONV_CB];
    for (int cb = 0; cb < k->cout_g; cb += MM_CONV_CB) {
        const int nc = k->cout_g - cb < MM_CONV_CB ? k->cout_g - cb : MM_CONV_CB;
        const int c = g * k->cout_g + cb;
        const uint8_t *const w0 = k->w + (int32_t)c * k->row_bytes;
        for (int j = 0; j < nc; j++)
            acc[j] = 0;
        for (int ky = 0; ky < k->kh; ky++) {
            int iy = iy0 + ky;
            if (iy < 0 || iy >= k->in_h)
                continue;
            for (int kx = 0; kx < k->kw; kx++) {
                int ix = ix0 + kx;
                if (ix < 0 || ix >= k->in_w)
                    continue;
                for (int c0 = 0; c0 < k->cin_g; c0 += MM_PATCH) {
                    int cn = k->cin_g - c0 < MM_PATCH ? k->cin_g - c0 : MM_PATCH;
                    int32_t e = (int32_t)(ky * k->kw + kx) * k->cin_g + c0;
                    int aligned = (e * k->wb) % 8 == 0;
                    int lp = aligned ? k->lp : 0;
                    int32_t nblk = aligned ? cn - cn % (16 << lp) : 0;
                    mm_gather(buf, k->in, k->in_h, k->in_w, k->in_pix, k->ib, k->is,
                              g * k->cin_g + c0, cn, 0, nblk, lp, iy, ix);
                    if (!aligned) {
                        for (int j = 0; j < nc; j++)
                            for (int t = 0; t < cn; t++)
                                acc[j] += buf[t] * mm_get(w0 + (int32_t)j * k->row_bytes, e + t,
                                                          k->wb, 1);
                        continue;
                    }
                    const uint8_t *wr0 = w0 + (e * k->wb) / 8;
                    int j = 0;
                    for (; j + 4 <= nc; j += 4, wr0 += 4 * k->row_bytes) {
                        int32_t t[4];
                        if (k->wb == 8)
                            mm_dot8x4(buf, wr0, k->row_bytes, cn, t);
                        else if (k->wb == 4)
                            mm_dot4x4(buf, wr0, k->row_bytes, cn, t);
                        else
                            mm_dot2x4(buf, wr0, k->row_bytes, cn, t);
                        acc[j] += t[0];
                        acc[j + 1] += t[1];
                        acc[j + 2] += t[2];
                        acc[j + 3] += t[3];
                    }
                    for (; j < nc; j++, wr0 += k->row_bytes)
                        acc[j] += mm_dot(buf, wr0, cn, k->wb);
                }
            }
        }
        for (int j = 0; j < nc; j++) {
            const int32_t v = mm_biased(acc[j], k->bias[c + j], k->bk);
            mm_put(wr, mm_requant(v, k->mult[c + j], k->shift[c + j], k->qmin, k->qmax));
        }
    }
}
#endif

/* ---- 8-bit inputs and weights (mm_conv's W8/A8 path) ---------------------------------------
 *
 * No unpacked patch: the input bytes and the weight rows are both HWC-ordered, so the taps of
 * one kernel row that lie inside the image are one contiguous run of kw' x in_c bytes in the
 * input and in each weight row; the taps outside are skipped (zero padding adds 0).
 *
 * in_c a multiple of 4 (mm_conv8x2): two horizontally adjacent output pixels at a time, in
 * blocks of four output channels. Weight layout (ops.conv.weight_layout): each block of four
 * rows interleaves the rows' 4-byte words (row 0 word 0, row 1 word 0, ..., row 0 word 1, ...),
 * a word never straddling two taps; rows after the last full block stay in natural order. Per
 * four input bytes and two channels: two input loads (one per pixel) and four extends, shared
 * by the two channels; two weight loads and four extends, shared by the two pixels; eight dual
 * MACs. A pixel whose window is clipped differently from its neighbour's runs alone.
 *
 * in_c not a multiple of 4, rows of at most MM_PATCH bytes (mm_conv8p, mm_conv8p_px; also
 * mm_conv_small's 8-bit layers, mm_small8p): both pixels' patches gathered as bytes, the
 * same words over the head, the row % 4 tail bytes as one shifted word.
 *
 * Other in_c (mm_conv8): one pixel, four channels (natural rows, rb bytes apart) share every
 * input load. */
/* Where the pair kernel reads one or two pixels' inputs: `rows` runs of n + tail bytes (n a
 * multiple of 4), the first at x, the next xrow bytes on; pixel 1's step bytes after pixel
 * 0's. They meet the bytes of each weight row from w0 on, the next run's wrow bytes on. In an
 * interleaved block the n-byte runs are words (4 w0 bytes from the block's start), and the
 * tail bytes come after the block's head words, row after row (head bytes per row). */
typedef struct {
    const uint8_t *x;
    int32_t step, xrow, n, tail, w0, wrow, head;
    int rows;
} mm_c8src;

/* What the pixel walks (mm_conv8x2, mm_conv8p) call for one or two pixels: mm_conv8x2_px,
 * mm_conv8p_px and mm_small8p_px (8-bit weights) or mm_sub8_px (4- and 2-bit). The walks are
 * inlined at each call, so each call is direct. */
typedef void (*mm_c8px)(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out, int32_t out_pix,
                        int ob, int out_c, int np);

#if defined(__ARM_FEATURE_DSP)
/* One step (four input bytes) in one asm block, so that gcc neither hoists the loads of the
 * next step nor spills accumulators (it did both, measured): pixel 1's input at x + step
 * (step read from memory: no register is left for it), pixel 0's at x (x += 4), two weight
 * words at w (w += 16), the inputs' halfword pairs made by `ext` (UXTB16 or SXTB16), eight
 * dual MACs. */
#define MM_C8X2X2_ASM(ext)                                                                        \
    __asm__("ldr %[re], %[st]\n\tldr %[re], [%[x], %[re]]\n\tldr %[pe], [%[x]], #4\n\t"           \
            "ldr %[v1], [%[w], #4]\n\tldr %[o], [%[w]], #16\n\t"                                  \
            ext " %[ro], %[re], ror #8\n\t" ext " %[re], %[re]\n\t"                              \
            ext " %[po], %[pe], ror #8\n\t" ext " %[pe], %[pe]\n\t"                              \
            "sxtb16 %[e], %[o]\n\tsxtb16 %[o], %[o], ror #8\n\t"                                  \
            "smlad %[a0], %[o], %[po], %[a0]\n\tsmlad %[a0], %[e], %[pe], %[a0]\n\t"              \
            "smlad %[b0], %[o], %[ro], %[b0]\n\tsmlad %[b0], %[e], %[re], %[b0]\n\t"              \
            "sxtb16 %[e], %[v1]\n\tsxtb16 %[o], %[v1], ror #8\n\t"                                \
            "smlad %[a1], %[o], %[po], %[a1]\n\tsmlad %[a1], %[e], %[pe], %[a1]\n\t"              \
            "smlad %[b1], %[o], %[ro], %[b1]\n\tsmlad %[b1], %[e], %[re], %[b1]"                  \
            : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1), [x] "+r"(x),            \
              [w] "+r"(w), [pe] "=&r"(pe_), [po] "=&r"(po_), [re] "=&r"(re_), [ro] "=&r"(ro_),    \
              [e] "=&r"(e_), [o] "=&r"(o_), [v1] "=&r"(v1_)                                       \
            : [st] "m"(step), "m"(*(const uint8_t(*)[8])x), "m"(*(const int8_t(*)[8])w))
#define MM_C8X2X2_STEP(is)                                                                        \
    do {                                                                                          \
        uint32_t pe_, po_, re_, ro_, e_, o_, v1_;                                                 \
        if (is)                                                                                   \
            MM_C8X2X2_ASM("sxtb16");                                                              \
        else                                                                                      \
            MM_C8X2X2_ASM("uxtb16");                                                              \
    } while (0)

/* Two channels x two pixels over the source's rows (s->n bytes each, a multiple of 4); w
 * points at the two channels' first words of an interleaved block, the next row wrow bytes on.
 * a[0..1] += pixel 0's sums, b[0..1] += pixel 1's. Four channels at once would need 18
 * registers (gcc spilled five accumulators, measured): two fit in the 14. Eight input bytes
 * per iteration (the loop's overhead was a fifth of its cycles at four); the accumulators stay
 * in registers across the rows. */
static MM_INLINE void mm_rows8x2x2(const mm_c8src *s, const int8_t *w, int32_t wrow,
                                   const int is, int32_t *a, int32_t *b)
{
    int32_t a0 = a[0], a1 = a[1], b0 = b[0], b1 = b[1];
    const uint8_t *x = s->x;
    const int32_t n = s->n, step = s->step, xskip = s->xrow - n, wskip = wrow - 4 * n;
    for (int rows = s->rows; rows > 0; rows--, x += xskip, w += wskip) {
        for (int32_t k = n >> 3; k > 0; k--) {
            MM_C8X2X2_STEP(is);
            MM_C8X2X2_STEP(is);
        }
        if (n & 4)
            MM_C8X2X2_STEP(is);
    }
    a[0] = a0;
    a[1] = a1;
    b[0] = b0;
    b[1] = b1;
}

static MM_INLINE void mm_run8x4(const uint8_t *x, const int8_t *w, int32_t rb, int32_t n,
                                const int is, int32_t *a)
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    const int32_t rb2 = 2 * rb, rb3 = 3 * rb;
    for (int32_t k = n >> 2; k > 0; k--, x += 4, w += 4) {
        const uint32_t xv = mm_ld32(x);
        const uint32_t xe = is ? mm_sxtb16(xv) : mm_uxtb16(xv);
        const uint32_t xo = is ? mm_sxtb16_8(xv) : mm_uxtb16_8(xv);
        uint32_t v = mm_ld32(w);
        a0 = mm_smlad(mm_sxtb16(v), xe, mm_smlad(mm_sxtb16_8(v), xo, a0));
        v = mm_ld32(w + rb);
        a1 = mm_smlad(mm_sxtb16(v), xe, mm_smlad(mm_sxtb16_8(v), xo, a1));
        v = mm_ld32(w + rb2);
        a2 = mm_smlad(mm_sxtb16(v), xe, mm_smlad(mm_sxtb16_8(v), xo, a2));
        v = mm_ld32(w + rb3);
        a3 = mm_smlad(mm_sxtb16(v), xe, mm_smlad(mm_sxtb16_8(v), xo, a3));
    }
    for (int32_t i = 0; i < (n & 3); i++) {
        const int32_t xv = is ? (int8_t)x[i] : x[i];
        a0 += xv * w[i];
        a1 += xv * w[rb + i];
        a2 += xv * w[rb2 + i];
        a3 += xv * w[rb3 + i];
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}
#else
/* Portable: the same sums in natural order. Weight byte i of row j sits at 16 (i / 4) + 4 j +
 * i % 4 in an interleaved block. */
static inline void mm_rows8x2x2(const mm_c8src *s, const int8_t *w, int32_t wrow, int is,
                                int32_t *a, int32_t *b)
{
    const uint8_t *x = s->x;
    for (int r = 0; r < s->rows; r++, x += s->xrow, w += wrow)
        for (int32_t i = 0; i < s->n; i++) {
            const int32_t xv = is ? (int8_t)x[i] : x[i];
            const int32_t yv = is ? (int8_t)x[s->step + i] : x[s->step + i];
            const int8_t *q = w + 4 * (i & ~3) + (i & 3);
            a[0] += xv * q[0];
            a[1] += xv * q[4];
            b[0] += yv * q[0];
            b[1] += yv * q[4];
        }
}

static inline void mm_run8x4(const uint8_t *x, const int8_t *w, int32_t rb, int32_t n, int is,
                             int32_t *a)
{
    for (int32_t i = 0; i < n; i++) {
        const int32_t xv = is ? (int8_t)x[i] : x[i];
        a[0] += xv * w[i];
        a[1] += xv * w[rb + i];
        a[2] += xv * w[2 * rb + i];
        a[3] += xv * w[3 * rb + i];
    }
}
#endif

static inline int32_t mm_run8x1(const uint8_t *x, const int8_t *w, int32_t n, int is)
{
    int32_t a = 0;
    for (int32_t i = 0; i < n; i++)
        a += (is ? (int8_t)x[i] : x[i]) * w[i];
    return a;
}

/* The in-image taps of one output row: kernel rows ky0 .. ky1 - 1 are inside the image, and the
 * window of a pixel whose first input column is ix0 keeps taps kx0 .. kx1 - 1 of each. */
static inline void mm_conv8_cols(const mm_conv_ctx *k, int ix0, int *kx0, int *kx1)
{
    *kx0 = ix0 < 0 ? (-ix0 < k->kw ? -ix0 : k->kw) : 0;
    *kx1 = ix0 + k->kw > k->in_w ? (k->in_w - ix0 > *kx0 ? k->in_w - ix0 : *kx0) : k->kw;
}

#if MM_USE_CONV8P || MM_USE_SMALL8P || MM_USE_SUB8P || MM_USE_SUB8PD_W4 || MM_USE_SUB8PD_W2 || \
    MM_USE_SUB8PD_W2T
/* One pixel's patch as bytes (HWC order, the zero padding as 0 bytes: 0 in either format):
 * a clipped window's whole patch zeroed a word at a time, then the window's rows inside the
 * image copied (its zeros byte by byte around each row, through calls of memset for each run,
 * cost kws's stems 850 est. M4 cycles per clipped pixel, measured). Inlined in each pixel
 * walk (a call per pixel cost the W8/A8 stems 2 %, measured). */
static MM_INLINE void mm_gather8b(uint8_t *d, const mm_conv_ctx *k, int iy0, int ix0)
{
    int kx0, kx1;
    mm_conv8_cols(k, ix0, &kx0, &kx1);
    const int32_t rowlen = (int32_t)k->kw * k->in_c, xrow = (int32_t)k->in_w * k->in_c;
    const int32_t run = (int32_t)(kx1 - kx0) * k->in_c;
    const int ky0 = iy0 < 0 ? (-iy0 < k->kh ? -iy0 : k->kh) : 0;
    const int ky1 = k->in_h - iy0 < k->kh ? k->in_h - iy0 : k->kh;
    if (run * (ky1 - ky0) != k->row) { /* clipped (mm_small8p's windows are mostly not) */
        const uint32_t zero = 0;
        int32_t e = 0;
        for (; e + 4 <= k->row; e += 4)
            memcpy(d + e, &zero, 4);
        for (; e < k->row; e++)
            d[e] = 0;
    }
    const uint8_t *p = k->in + ((int32_t)(iy0 + ky0) * k->in_w + ix0 + kx0) * k->in_c;
    d += (int32_t)ky0 * rowlen + (int32_t)kx0 * k->in_c;
    for (int ky = ky0; ky < ky1; ky++, d += rowlen, p += xrow) {
        int32_t i = 0;
        for (; i + 4 <= run; i += 4) { /* a word at a time: single unaligned LDR / STR */
            uint32_t v;
            memcpy(&v, p + i, 4);
            memcpy(d + i, &v, 4);
        }
        for (; i < run; i++)
            d[i] = p[i];
    }
}

/* The patches of two output pixels, windows from (iy0, ix0) and (iy1, ix1) (the same pixel
 * twice for a lone one), side by side from d. Where both windows lie inside the image (all
 * but the border pixels) each kernel row is copied as words with no clipping (mm_gather8b's
 * general walk cost a stem 280 cycles per pixel on 3 x 3 x 3 patches, measured). */
static MM_NOINLINE void mm_gather8b_2(uint8_t *d, const mm_conv_ctx *k, int iy0, int ix0, int iy1,
                                      int ix1)
{
    const int32_t rowlen = (int32_t)k->kw * k->in_c, xrow = (int32_t)k->in_w * k->in_c;
    const int32_t words = rowlen & ~3;
    if (ix0 < 0 || ix1 < 0 || ix0 + k->kw > k->in_w || ix1 + k->kw > k->in_w || iy0 < 0 ||
        iy1 < 0 || iy0 + k->kh > k->in_h || iy1 + k->kh > k->in_h) {
        for (int p = 0; p < 2; p++) /* one inlined copy */
            mm_gather8b(d + p * k->row, k, p ? iy1 : iy0, p ? ix1 : ix0);
        return;
    }
    uint8_t *d1 = d + k->row;
    const uint8_t *p = k->in + ((int32_t)iy0 * k->in_w + ix0) * k->in_c;
    const uint8_t *p1 = k->in + ((int32_t)iy1 * k->in_w + ix1) * k->in_c;
    for (int ky = 0; ky < k->kh; ky++, d += rowlen, d1 += rowlen, p += xrow, p1 += xrow) {
        int32_t i = 0;
        for (; i < words; i += 4) {
            uint32_t v0, v1;
            memcpy(&v0, p + i, 4);
            memcpy(&v1, p1 + i, 4);
            memcpy(d + i, &v0, 4);
            memcpy(d1 + i, &v1, 4);
        }
        for (; i < rowlen; i++) {
            const uint8_t v0 = p[i], v1 = p1[i];
            d[i] = v0;
            d1[i] = v1;
        }
    }
}
#endif

#if MM_USE_CONV8
/* Four (or the last 1-3) output channels of one pixel: the in-image taps, kernel row by row. */
static MM_NOINLINE void mm_conv8_block(const mm_conv_ctx *k, const int8_t *w, int nb, int iy0,
                                       int ix0, int32_t *acc)
{
    int kx0, kx1;
    mm_conv8_cols(k, ix0, &kx0, &kx1);
    const int32_t n = (int32_t)(kx1 - kx0) * k->in_c;
    acc[0] = acc[1] = acc[2] = acc[3] = 0;
    if (n <= 0)
        return;
    for (int ky = 0; ky < k->kh; ky++) {
        const int iy = iy0 + ky;
        if (iy < 0 || iy >= k->in_h)
            continue;
        const uint8_t *x = k->in + ((int32_t)iy * k->in_w + ix0 + kx0) * k->in_c;
        const int8_t *wr = w + (int32_t)(ky * k->kw + kx0) * k->in_c;
        if (nb == 4) {
            if (k->is)
                mm_run8x4(x, wr, k->row_bytes, n, 1, acc);
            else
                mm_run8x4(x, wr, k->row_bytes, n, 0, acc);
        } else {
            for (int j = 0; j < nb; j++)
                acc[j] += mm_run8x1(x, wr + j * k->row_bytes, n, k->is);
        }
    }
}

static void mm_conv8(const mm_conv_ctx *k, const mm_conv_dims *d, uint8_t *out, int ob)
{
    const int out_h = d->out_h, out_w = d->out_w, sh = d->stride_h, sw = d->stride_w;
    const int ph = d->pad_h, pw = d->pad_w, out_c = d->out_c;
    for (int oy = 0; oy < out_h; oy++)
        for (int ox = 0; ox < out_w; ox++) {
            mm_writer wr = {out, 0, 0, ob};
            const int8_t *w = (const int8_t *)k->w;
            for (int co = 0; co < out_c; co += 4, w += 4 * k->row_bytes) {
                const int nb = out_c - co < 4 ? out_c - co : 4;
                int32_t acc[4];
                mm_conv8_block(k, w, nb, oy * sh - ph, ox * sw - pw, acc);
                for (int j = 0; j < nb; j++)
                    mm_put(&wr, mm_pw_rq(acc[j], k->bias[co + j], k->mult[co + j],
                                         k->shift[co + j], k->bk, k->qmin, k->qmax));
            }
            mm_flush(&wr);
            out = wr.p;
        }
}
#endif

/* Requantizes the four channels co .. co + 3 of np pixels in place (acc[0..3] pixel 0's,
 * acc[4..7] pixel 1's): each channel's parameters are read once for both pixels, before any
 * output store (gcc reloaded them after every byte stored otherwise). */
static inline void mm_conv8_rq(const mm_conv_ctx *k, int co, int np, int32_t *acc)
{
    const int32_t bk = k->bk, qmin = k->qmin, qmax = k->qmax;
    for (int j = 0; j < 4; j++) {
        const int32_t b = k->bias[co + j], m = k->mult[co + j];
        const int s = k->shift[co + j];
        acc[j] = mm_pw_rq(acc[j], b, m, s, bk, qmin, qmax);
        if (np == 2)
            acc[4 + j] = mm_pw_rq(acc[4 + j], b, m, s, bk, qmin, qmax);
    }
}

#if MM_USE_CONV8X2_RQANY
/* One or two pixels (np) of one output row of a layer of the general requantization
 * (MM_CONV8X2_KIND: CONV8X2_RQANY; the others' pixels take mm_conv8x2d): every output channel,
 * written pixel by pixel per block of four channels. */
static MM_NOINLINE void mm_conv8x2_px(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                      int32_t out_pix, int ob, int out_c, int np)
{
    const int32_t rb = k->row_bytes, n = s->n, wrow = 4 * s->wrow;
    const int8_t *w = (const int8_t *)k->w + 4 * s->w0;
    mm_writer w0 = {out, 0, 0, ob}, w1 = {out + out_pix, 0, 0, ob};
    int co = 0;
    for (; co + 4 <= out_c; co += 4, w += 4 * rb) {
        int32_t acc[8]; /* set one by one: gcc made a loop of it a call of memset */
        acc[0] = acc[1] = acc[2] = acc[3] = acc[4] = acc[5] = acc[6] = acc[7] = 0;
        if (n > 0 && np == 2) {
            if (k->is) {
                mm_rows8x2x2(s, w, wrow, 1, acc, acc + 4);
                mm_rows8x2x2(s, w + 8, wrow, 1, acc + 2, acc + 6);
            } else {
                mm_rows8x2x2(s, w, wrow, 0, acc, acc + 4);
                mm_rows8x2x2(s, w + 8, wrow, 0, acc + 2, acc + 6);
            }
        } else if (n > 0) {
            const uint8_t *x = s->x;
            const int8_t *wr = w;
            for (int r = 0; r < s->rows; r++, x += s->xrow, wr += wrow) {
                int32_t t[4]; /* mm_pw8x4 reads the same interleaved block (in asm, its loads
                               * grouped: 30 -> 26 cycles per 16 MACs, measured) */
                if (k->is)
                    mm_pw8x4(x, wr, n, 1, t);
                else
                    mm_pw8x4(x, wr, n, 0, t);
                acc[0] += t[0];
                acc[1] += t[1];
                acc[2] += t[2];
                acc[3] += t[3];
            }
        }
        if (k->fast != MM_RQ8_GENERAL && k->fast != MM_RQ8_UP) { /* 8-bit: whole bytes */
            const mm_rq8p rp = {k->bias + co, k->mult + co, k->shift + co,
                                (int32_t)1 << k->bk, k->qmin};
            if (np == 2 && k->fast == MM_RQ8_U)
                mm_rq8x4(&rp, 0, 2, acc, w0.p, w1.p, 0);
            else if (np == 2)
                mm_rq8x4(&rp, 0, 2, acc, w0.p, w1.p, 1);
            else if (k->fast == MM_RQ8_U)
                mm_rq8x4(&rp, 0, 1, acc, w0.p, w1.p, 0);
            else
                mm_rq8x4(&rp, 0, 1, acc, w0.p, w1.p, 1);
            w0.p += 4;
            w1.p += 4;
            continue;
        }
        mm_conv8_rq(k, co, np, acc);
        mm_put4(&w0, acc);
        if (np == 2)
            mm_put4(&w1, acc + 4);
    }
    w = (const int8_t *)k->w + (int32_t)co * rb + s->w0;
    for (; co < out_c; co++, w += rb) /* the last out_c % 4 rows, natural order */
        for (int p = 0; p < np; p++) {
            int32_t a = 0;
            const uint8_t *x = s->x + p * s->step;
            const int8_t *wr = w;
            for (int r = 0; r < s->rows; r++, x += s->xrow, wr += s->wrow)
                a += mm_run8x1(x, wr, n + s->tail, k->is);
            a = mm_pw_rq(a, k->bias[co], k->mult[co], k->shift[co], k->bk, k->qmin, k->qmax);
            mm_put(p ? &w1 : &w0, a);
        }
    mm_flush(&w0);
    mm_flush(&w1);
}
#endif

/* CONV8X2's asm pair loop compiled (any of its kinds but the general requantization). */
#define MM_ON_C8X2D (MM_USE_CONV8X2D_U || MM_USE_CONV8X2D_S || MM_USE_CONV8X2D_U16)
#if MM_ON_C8X2D || MM_USE_CONV8P_D || MM_USE_SUB8PD_W4 || MM_USE_SUB8PD_W2 || MM_USE_SUB8PD_W2T || \
    MM_ON_PWSUB8PD_W4 || MM_ON_PWSUB8PD_W2 || MM_USE_SUB8X2D_W4 || MM_USE_SUB8X2D_W2
/* W8/A8 pixel pairs under mm_rq8_kind's U or S requantization, from the input (CONV8X2's
 * pairs: MM_CONV8X2_KIND, by input sign) or from CONV8P's byte patches (MM_CONV8P_KIND,
 * unsigned inputs): every block of four output channels in one asm loop, half a block (two
 * channels x two pixels, mm_rows8x2x2's sums, then on patches the tail words of mm_c8p_pass)
 * at a time, each half requantized and stored (a halfword per pixel) right after its sums, so
 * that nothing is kept in C around an asm that takes every register (mm_conv8x2_px spent about
 * 450 cycles per block of ResNet-8's 3 x 3 layers besides the dot products, its values spilled
 * and reloaded). mm_c8x2d is what the loop reads and advances, at fixed offsets. */
typedef struct {
    const int32_t *bias, *mult; /* 0, 4: advanced two channels per half */
    const int8_t *shift;        /* 8 */
    int32_t kb;                 /* 12: 2^bias_shift */
    uint32_t lo4;               /* 16: qmin in every byte (S) */
    const uint8_t *x;           /* 20: pixel 0's first input byte */
    int32_t n8, n4;             /* 24, 28: 8-byte steps per row, then a 4-byte one (n & 4) */
    int32_t rows;               /* 32 */
    int32_t xskip, wskip;       /* 36, 40: to the next row, past the bytes read */
    int32_t halves;             /* 44: halves left */
    int32_t sg;                 /* 48: 0 U, 1 S */
    uint8_t *out0, *out1;       /* 52, 56: advanced two bytes per half */
    const int8_t *w;            /* 60: the half's first weight word */
    int32_t adv[2];             /* 64, 68: w's advance after a block's first half, second */
    int32_t left;               /* 72: rows left */
    int32_t step;               /* 76: pixel 1's input, bytes after pixel 0's */
    const int8_t *t;            /* 80: patches: the word ending with the half's first tail */
    int32_t tadv[2];            /* 84, 88: t's advance, as adv */
    int32_t sh;                 /* 92: 8 (4 - nt) */
    int32_t nt;                 /* 96: tail bytes per row (0: none) */
    uint32_t xt[4];             /* 100: the tails' halfword pairs, pixel 0's, pixel 1's */
} mm_c8x2d;

#if defined(__ARM_FEATURE_DSP)
typedef char mm_c8x2d_ok[offsetof(mm_c8x2d, x) == 20 && offsetof(mm_c8x2d, halves) == 44 &&
                                 offsetof(mm_c8x2d, w) == 60 && offsetof(mm_c8x2d, step) == 76 &&
                                 offsetof(mm_c8x2d, xt) == 100
                             ? 1
                             : -1];
/* MM_C8X2X2_ASM's step with pixel 1's offset read from the stack ([sp, #4]). */
#define MM_C8X2D_STEP(XT) MM_C8X2D_STEPI(XT, MM_C8X2D_LD1)
/* Pixel 1's input word: at the offset read from the stack, or at an immediate one (S: the
 * layer's stride x in_c, CONV8X2D_U16: one load a step less, about 4 % of the loop). */
#define MM_C8X2D_LD1 "ldr %[re], [sp, #4]\n\tldr %[re], [%[x], %[re]]\n\t"
#define MM_C8X2D_LDI(S) "ldr %[re], [%[x], #" S "]\n\t"
#define MM_C8X2D_STEPI(XT, LD1)                                                                   \
    LD1 "ldr %[pe], [%[x]], #4\n\t"                                                               \
    "ldr %[v1], [%[w], #4]\n\t"                                                                   \
    "ldr %[o], [%[w]], #16\n\t" XT " %[ro], %[re], ror #8\n\t" XT " %[re], %[re]\n\t" XT         \
    " %[po], %[pe], ror #8\n\t" XT " %[pe], %[pe]\n\t"                                            \
    "sxtb16 %[e], %[o]\n\t"                                                                       \
    "sxtb16 %[o], %[o], ror #8\n\t"                                                               \
    "smlad %[a0], %[o], %[po], %[a0]\n\t"                                                         \
    "smlad %[a0], %[e], %[pe], %[a0]\n\t"                                                         \
    "smlad %[b0], %[o], %[ro], %[b0]\n\t"                                                         \
    "smlad %[b0], %[e], %[re], %[b0]\n\t"                                                         \
    "sxtb16 %[e], %[v1]\n\t"                                                                      \
    "sxtb16 %[o], %[v1], ror #8\n\t"                                                              \
    "smlad %[a1], %[o], %[po], %[a1]\n\t"                                                         \
    "smlad %[a1], %[e], %[pe], %[a1]\n\t"                                                         \
    "smlad %[b1], %[o], %[ro], %[b1]\n\t"                                                         \
    "smlad %[b1], %[e], %[re], %[b1]\n\t"
/* mm_rq8x4's rule up to its last halving for one channel (bias, mult, shift at pe, po, re) of
 * both pixels: (smmul(a kb + bias, mult) >> (shift - 33)) + 1; kb in ro. */
#define MM_C8X2D_RQ(A, B)                                                                         \
    "ldr %[x], [%[pe]], #4\n\t"                                                                   \
    "ldr %[w], [%[po]], #4\n\t"                                                                   \
    "ldrsb %[k], [%[re]], #1\n\t"                                                                 \
    "sub %[k], %[k], #33\n\t" MM_RQ_ASM(A, A, "ro", "x", "w", "k", "#1")                           \
        MM_RQ_ASM(B, B, "ro", "x", "w", "k", "#1")
/* One channel's requantization up to the clamp (MM_C8X2D_RQ's rule, one value). */
#define MM_C8X1D_RQ(A)                                                                            \
    "ldr %[x], [%[pe]], #4\n\t"                                                                   \
    "ldr %[w], [%[po]], #4\n\t"                                                                   \
    "ldrsb %[k], [%[re]], #1\n\t"                                                                 \
    "sub %[k], %[k], #33\n\t" MM_RQ_ASM(A, A, "ro", "x", "w", "k", "#1")
#define MM_C8X2D_SAT(OP)                                                                          \
    OP " %[a0], #8, %[a0], asr #1\n\t" OP " %[a1], #8, %[a1], asr #1\n\t" OP                      \
       " %[b0], #8, %[b0], asr #1\n\t" OP " %[b1], #8, %[b1], asr #1\n\t"
/* A half's end, after its sums in a0, a1 (pixel 0) and b0, b1 (pixel 1), e the state: their
 * requantization (MM_C8X2D_RQ), the clamp of mm_rq8_kind's U or S (sg) and a halfword store per
 * pixel, the parameter and output pointers advanced. */
#define MM_C8X2D_OUT                                                                              \
        "ldr %[pe], [%[e]]\n\t"                                                                   \
        "ldr %[po], [%[e], #4]\n\t"                                                               \
        "ldr %[re], [%[e], #8]\n\t"                                                               \
        "ldr %[ro], [%[e], #12]\n\t" MM_C8X2D_RQ("a0", "b0") MM_C8X2D_RQ("a1", "b1")              \
        "str %[pe], [%[e]]\n\t"                                                                   \
        "str %[po], [%[e], #4]\n\t"                                                               \
        "str %[re], [%[e], #8]\n\t"                                                               \
        "ldr %[k], [%[e], #48]\n\t"                                                               \
        "cmp %[k], #0\n\t"                                                                        \
        "bne 6f\n\t" MM_C8X2D_SAT("usat") "b 7f\n\t"                                              \
        "6:\n\t" MM_C8X2D_SAT("ssat") "7:\n\t"                                                    \
        "bfi %[a0], %[a1], #8, #8\n\t"                                                            \
        "bfi %[b0], %[b1], #8, #8\n\t"                                                            \
        "beq 8f\n\t" /* S: the bytes raised to qmin (signed bytewise maximum) */                 \
        "ldr %[k], [%[e], #16]\n\t"                                                               \
        "ssub8 %[x], %[a0], %[k]\n\t"                                                             \
        "sel %[a0], %[a0], %[k]\n\t"                                                              \
        "ssub8 %[x], %[b0], %[k]\n\t"                                                             \
        "sel %[b0], %[b0], %[k]\n\t"                                                              \
        "8:\n\t"                                                                                  \
        "ldr %[x], [%[e], #52]\n\t"                                                               \
        "ldr %[w], [%[e], #56]\n\t"                                                               \
        "strh %[a0], [%[x]], #2\n\t"                                                              \
        "strh %[b0], [%[w]], #2\n\t"                                                              \
        "str %[x], [%[e], #52]\n\t"                                                               \
        "str %[w], [%[e], #56]\n\t"
#define MM_C8X2D_ASM(XT, LD1)                                                                     \
    __asm__ volatile(                                                                             \
        "sub sp, sp, #8\n\t"                                                                      \
        "str %[e], [sp]\n\t"                                                                      \
        "ldr %[k], [%[e], #76]\n\t"                                                               \
        "str %[k], [sp, #4]\n\t"                                                                  \
        "1:\n\t" /* a half (e: the state, here and after every row) */                            \
        "ldr %[x], [%[e], #20]\n\t"                                                               \
        "ldr %[w], [%[e], #60]\n\t"                                                               \
        "ldr %[k], [%[e], #32]\n\t"                                                               \
        "str %[k], [%[e], #72]\n\t"                                                               \
        "mov %[a0], #0\n\t"                                                                       \
        "mov %[a1], #0\n\t"                                                                       \
        "mov %[b0], #0\n\t"                                                                       \
        "mov %[b1], #0\n\t"                                                                       \
        "2:\n\t" /* a row (e: the state): n & 8 out of line, then 16 bytes an iteration */      \
        "ldr %[k], [%[e], #24]\n\t"                                                               \
        "lsrs %[k], %[k], #1\n\t"                                                                 \
        "bcs 12f\n\t"                                                                             \
        "beq 4f\n\t"                                                                              \
        "3:\n\t" MM_C8X2D_STEPI(XT, LD1) MM_C8X2D_STEPI(XT, LD1)                                              \
        "13:\n\t" MM_C8X2D_STEPI(XT, LD1) MM_C8X2D_STEPI(XT, LD1)                                             \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "bne 3b\n\t"                                                                              \
        "4:\n\t"                                                                                  \
        "ldr %[e], [sp]\n\t"                                                                      \
        "ldr %[k], [%[e], #28]\n\t"                                                               \
        "cmp %[k], #0\n\t"                                                                        \
        "bne 10f\n\t" /* out of line: rows of whole 8-byte steps fall through */                \
        "5:\n\t"                                                                                  \
        "ldr %[k], [%[e], #36]\n\t"                                                               \
        "add %[x], %[x], %[k]\n\t"                                                                \
        "ldr %[k], [%[e], #40]\n\t"                                                               \
        "add %[w], %[w], %[k]\n\t"                                                                \
        "ldr %[k], [%[e], #72]\n\t"                                                               \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "str %[k], [%[e], #72]\n\t"                                                               \
        "bne 2b\n\t" MM_C8X2D_OUT                                                                 \
        "ldr %[k], [%[e], #44]\n\t" /* w += adv[halves & 1] */                                   \
        "ldr %[x], [%[e], #60]\n\t"                                                               \
        "and %[w], %[k], #1\n\t"                                                                  \
        "add %[w], %[e], %[w], lsl #2\n\t"                                                        \
        "ldr %[w], [%[w], #64]\n\t"                                                               \
        "add %[x], %[x], %[w]\n\t"                                                                \
        "str %[x], [%[e], #60]\n\t"                                                               \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "str %[k], [%[e], #44]\n\t"                                                               \
        "bne 1b\n\t"                                                                              \
        "b 11f\n\t"                                                                               \
        "10:\n\t" MM_C8X2D_STEPI(XT, LD1) "ldr %[e], [sp]\n\t"                                        \
        "b 5b\n\t"                                                                                \
        "12:\n\t" /* n & 8: the loop's second half first, one more iteration */                 \
        "add %[k], %[k], #1\n\t"                                                                  \
        "b 13b\n\t"                                                                               \
        "11:\n\t"                                                                                 \
        "add sp, sp, #8\n\t"                                                                      \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1), [x] "=&r"(x_),         \
          [w] "=&r"(w_), [pe] "=&r"(pe), [po] "=&r"(po), [re] "=&r"(re), [ro] "=&r"(ro),        \
          [o] "=&r"(o), [v1] "=&r"(v1), [k] "=&r"(k_), [e] "+r"(e)                              \
        :                                                                                         \
        : "cc", "memory")
#define MM_C8X2D_RUN(st, XT, LD1)                                                                 \
    do {                                                                                          \
        void *e = &(st);                                                                          \
        uint32_t a0, a1, b0, b1, x_, w_, pe, po, re, ro, o, v1, k_;                               \
        MM_C8X2D_ASM(XT, LD1);                                                                    \
        (void)a0, (void)a1, (void)b0, (void)b1, (void)x_, (void)w_, (void)pe, (void)po;           \
        (void)re, (void)ro, (void)o, (void)v1, (void)k_, (void)e;                                 \
    } while (0)
#elif MM_ON_C8X2D || MM_USE_CONV8P_D
/* The asm's steps, portably (every half of every block; `is`: signed inputs). */
static void mm_c8x2d_c(mm_c8x2d *st, const mm_conv_ctx *k, const int is)
{
    const int32_t n = 8 * st->n8 + st->n4, nt = st->nt;
    for (; st->halves > 0; st->halves--) {
        int32_t a[2] = {0, 0}, b[2] = {0, 0};
        const uint8_t *x = st->x;
        const int8_t *w = st->w;
        for (int r = 0; r < st->rows; r++, x += n + st->xskip, w += 4 * n + st->wskip)
            for (int32_t i = 0; i < n; i++) {
                const int32_t xv = is ? (int8_t)x[i] : x[i];
                const int32_t yv = is ? (int8_t)x[st->step + i] : x[st->step + i];
                const int8_t *q = w + 4 * (i & ~3) + (i & 3);
                a[0] += xv * q[0];
                a[1] += xv * q[4];
                b[0] += yv * q[0];
                b[1] += yv * q[4];
            }
        for (int32_t i = 0; i < nt; i++) { /* patches: one row, its tail after the head */
            const int8_t *q = st->t + 4 - nt + i;
            a[0] += st->x[n + i] * q[0];
            a[1] += st->x[n + i] * q[nt];
            b[0] += st->x[st->step + n + i] * q[0];
            b[1] += st->x[st->step + n + i] * q[nt];
        }
        for (int c = 0; c < 2; c++, st->bias++, st->mult++, st->shift++) {
            st->out0[c] = (uint8_t)mm_pw_rq(a[c], *st->bias, *st->mult, *st->shift, k->bk,
                                            k->qmin, k->qmax);
            st->out1[c] = (uint8_t)mm_pw_rq(b[c], *st->bias, *st->mult, *st->shift, k->bk,
                                            k->qmin, k->qmax);
        }
        st->out0 += 2;
        st->out1 += 2;
        st->w += st->adv[st->halves & 1];
        st->t += st->tadv[st->halves & 1];
    }
}
#endif

/* The state of a pair's blocks: rows of n input bytes (n8, n4) from x, the weights of the
 * first block from w (its next row wrow bytes on, after the 4 n bytes read), pixel 1's input
 * `step` bytes after pixel 0's and its output at out + out_pix; blocks of four channels from
 * the first. */
static MM_INLINE void mm_c8x2d_init(mm_c8x2d *st, const mm_conv_ctx *k, const uint8_t *x,
                                    const int8_t *w, int32_t n, int32_t step, uint8_t *out,
                                    int32_t out_pix)
{
    st->bias = k->bias;
    st->mult = k->mult;
    st->shift = k->shift;
    st->kb = (int32_t)1 << k->bk;
    st->lo4 = (uint32_t)(uint8_t)k->qmin * 0x01010101u;
    st->x = x;
    st->n8 = n >> 3;
    st->n4 = n & 4;
    st->rows = 1;
    st->sg = k->fast == MM_RQ8_S;
    st->out0 = out;
    st->out1 = out + out_pix;
    st->w = w;
    st->adv[0] = 8;
    st->adv[1] = 4 * k->row_bytes - 8;
    st->step = step;
    st->t = w; /* no tails (CONV8X2) */
    st->tadv[0] = st->tadv[1] = 0;
    st->nt = 0;
}

#if MM_ON_C8X2D
/* imm: pixel 1's offset as an immediate (16; 0: read from the stack). */
static MM_INLINE void mm_c8x2d_go(mm_c8x2d *st, const mm_conv_ctx *k, const int is,
                                  const int imm)
{
#if defined(__ARM_FEATURE_DSP)
    (void)k;
    if (is)
        MM_C8X2D_RUN(*st, "sxtb16", MM_C8X2D_LD1);
    else if (imm == 16)
        MM_C8X2D_RUN(*st, "uxtb16", MM_C8X2D_LDI("16"));
    else
        MM_C8X2D_RUN(*st, "uxtb16", MM_C8X2D_LD1);
#else
    (void)imm;
    mm_c8x2d_c(st, k, is);
#endif
}

/* A lone pixel of CONV8X2D (a clipped border, an odd last one): its blocks of four channels in
 * one asm loop as the pairs' (mm_c8x2d's state: halves counts blocks, adv[0] is a block's
 * bytes, out0 the output), four channels a step (four weight words, one input word), the
 * block's four outputs requantized, clamped and stored as a word (mm_conv8x2_px's C, which
 * the layers of the general requantization keep, cost about 1.9 est. M4 cycles per MAC of
 * ic's lone pixels, against 1.5 in the pair loop). */
#if defined(__ARM_FEATURE_DSP)
#define MM_C8X1D_W(W, A)                                                                          \
    "sxtb16 %[e], %[" W "]\n\t"                                                                   \
    "smlad %[" A "], %[e], %[pe], %[" A "]\n\t"                                                   \
    "sxtb16 %[" W "], %[" W "], ror #8\n\t"                                                       \
    "smlad %[" A "], %[" W "], %[po], %[" A "]\n\t"
#define MM_C8X1D_STEP(XT)                                                                         \
    "ldr %[pe], [%[x]], #4\n\t"                                                                   \
    "ldr %[re], [%[w], #4]\n\t"                                                                   \
    "ldr %[ro], [%[w], #8]\n\t"                                                                   \
    "ldr %[v1], [%[w], #12]\n\t"                                                                  \
    "ldr %[o], [%[w]], #16\n\t" XT " %[po], %[pe], ror #8\n\t" XT " %[pe], %[pe]\n\t"          \
        MM_C8X1D_W("o", "a0") MM_C8X1D_W("re", "a1") MM_C8X1D_W("ro", "b0")                   \
            MM_C8X1D_W("v1", "b1")
#define MM_C8X1D_ASM(XT)                                                                          \
    __asm__ volatile(                                                                             \
        "sub sp, sp, #8\n\t"                                                                      \
        "str %[e], [sp]\n\t"                                                                      \
        "1:\n\t" /* a block (e: the state, here and after every row) */                           \
        "ldr %[x], [%[e], #20]\n\t"                                                               \
        "ldr %[w], [%[e], #60]\n\t"                                                               \
        "ldr %[k], [%[e], #32]\n\t"                                                               \
        "str %[k], [%[e], #72]\n\t"                                                               \
        "mov %[a0], #0\n\t"                                                                       \
        "mov %[a1], #0\n\t"                                                                       \
        "mov %[b0], #0\n\t"                                                                       \
        "mov %[b1], #0\n\t"                                                                       \
        "2:\n\t" /* a row: n & 8 out of line, then 16 bytes an iteration */                       \
        "ldr %[k], [%[e], #24]\n\t"                                                               \
        "lsrs %[k], %[k], #1\n\t"                                                                 \
        "bcs 12f\n\t"                                                                             \
        "beq 4f\n\t"                                                                              \
        "3:\n\t" MM_C8X1D_STEP(XT) MM_C8X1D_STEP(XT)                                              \
        "13:\n\t" MM_C8X1D_STEP(XT) MM_C8X1D_STEP(XT)                                             \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "bne 3b\n\t"                                                                              \
        "4:\n\t"                                                                                  \
        "ldr %[e], [sp]\n\t"                                                                      \
        "ldr %[k], [%[e], #28]\n\t"                                                               \
        "cmp %[k], #0\n\t"                                                                        \
        "bne 10f\n\t"                                                                             \
        "5:\n\t"                                                                                  \
        "ldr %[k], [%[e], #36]\n\t"                                                               \
        "add %[x], %[x], %[k]\n\t"                                                                \
        "ldr %[k], [%[e], #40]\n\t"                                                               \
        "add %[w], %[w], %[k]\n\t"                                                                \
        "ldr %[k], [%[e], #72]\n\t"                                                               \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "str %[k], [%[e], #72]\n\t"                                                               \
        "bne 2b\n\t"                                                                              \
        "ldr %[pe], [%[e]]\n\t"                                                                   \
        "ldr %[po], [%[e], #4]\n\t"                                                               \
        "ldr %[re], [%[e], #8]\n\t"                                                               \
        "ldr %[ro], [%[e], #12]\n\t" MM_C8X1D_RQ("a0") MM_C8X1D_RQ("a1") MM_C8X1D_RQ("b0")      \
            MM_C8X1D_RQ("b1")                                                                     \
        "str %[pe], [%[e]]\n\t"                                                                   \
        "str %[po], [%[e], #4]\n\t"                                                               \
        "str %[re], [%[e], #8]\n\t"                                                               \
        "ldr %[k], [%[e], #48]\n\t"                                                               \
        "cmp %[k], #0\n\t"                                                                        \
        "bne 6f\n\t" MM_C8X2D_SAT("usat") "b 7f\n\t"                                            \
        "6:\n\t" MM_C8X2D_SAT("ssat") "7:\n\t"                                                  \
        "bfi %[a0], %[a1], #8, #8\n\t"                                                            \
        "bfi %[a0], %[b0], #16, #8\n\t"                                                           \
        "bfi %[a0], %[b1], #24, #8\n\t"                                                           \
        "beq 8f\n\t" /* S: the bytes raised to qmin (signed bytewise maximum) */                 \
        "ldr %[k], [%[e], #16]\n\t"                                                               \
        "ssub8 %[x], %[a0], %[k]\n\t"                                                             \
        "sel %[a0], %[a0], %[k]\n\t"                                                              \
        "8:\n\t"                                                                                  \
        "ldr %[x], [%[e], #52]\n\t"                                                               \
        "str %[a0], [%[x]], #4\n\t"                                                               \
        "str %[x], [%[e], #52]\n\t"                                                               \
        "ldr %[x], [%[e], #60]\n\t" /* the next block's weights */                               \
        "ldr %[w], [%[e], #64]\n\t"                                                               \
        "add %[x], %[x], %[w]\n\t"                                                                \
        "str %[x], [%[e], #60]\n\t"                                                               \
        "ldr %[k], [%[e], #44]\n\t"                                                               \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "str %[k], [%[e], #44]\n\t"                                                               \
        "bne 1b\n\t"                                                                              \
        "b 11f\n\t"                                                                               \
        "10:\n\t" MM_C8X1D_STEP(XT) "ldr %[e], [sp]\n\t"                                        \
        "b 5b\n\t"                                                                                \
        "12:\n\t" /* n & 8: the loop's second half first, one more iteration */                 \
        "add %[k], %[k], #1\n\t"                                                                  \
        "b 13b\n\t"                                                                               \
        "11:\n\t"                                                                                 \
        "add sp, sp, #8\n\t"                                                                      \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1), [x] "=&r"(x_),         \
          [w] "=&r"(w_), [pe] "=&r"(pe), [po] "=&r"(po), [re] "=&r"(re), [ro] "=&r"(ro),        \
          [o] "=&r"(o), [v1] "=&r"(v1), [k] "=&r"(k_), [e] "+r"(e)                              \
        :                                                                                         \
        : "cc", "memory")
#define MM_C8X1D_RUN(st, XT)                                                                      \
    do {                                                                                          \
        void *e = &(st);                                                                          \
        uint32_t a0, a1, b0, b1, x_, w_, pe, po, re, ro, o, v1, k_;                               \
        MM_C8X1D_ASM(XT);                                                                         \
        (void)a0, (void)a1, (void)b0, (void)b1, (void)x_, (void)w_, (void)pe, (void)po;           \
        (void)re, (void)ro, (void)o, (void)v1, (void)k_, (void)e;                                 \
    } while (0)
#else
/* The asm's sums, portably (every block; `is`: signed inputs). */
static void mm_c8x1d_c(mm_c8x2d *st, const mm_conv_ctx *k, const int is)
{
    const int32_t n = 8 * st->n8 + st->n4;
    for (; st->halves > 0; st->halves--, st->w += st->adv[0]) {
        const uint8_t *x = st->x;
        const int8_t *w = st->w;
        int32_t a[4] = {0, 0, 0, 0};
        for (int r = 0; r < st->rows; r++, x += n + st->xskip, w += 4 * n + st->wskip)
            for (int32_t i = 0; i < n; i++)
                for (int c = 0; c < 4; c++)
                    a[c] += (is ? (int8_t)x[i] : x[i]) * w[4 * (i & ~3) + 4 * c + (i & 3)];
        for (int c = 0; c < 4; c++, st->bias++, st->mult++, st->shift++)
            st->out0[c] = (uint8_t)mm_pw_rq(a[c], *st->bias, *st->mult, *st->shift, k->bk,
                                            k->qmin, k->qmax);
        st->out0 += 4;
    }
}
#endif

static MM_INLINE void mm_c8x1d_go(mm_c8x2d *st, const mm_conv_ctx *k, const int is)
{
#if defined(__ARM_FEATURE_DSP)
    (void)k;
    if (is)
        MM_C8X1D_RUN(*st, "sxtb16");
    else
        MM_C8X1D_RUN(*st, "uxtb16");
#else
    mm_c8x1d_c(st, k, is);
#endif
}
#endif
#endif

#if MM_ON_C8X2D
/* CONV8X2's pairs and lone pixels (np), the rows after the last block (out_c % 4, natural
 * order) one by one; imm as mm_c8x2d_go's. */
static MM_INLINE void mm_conv8x2d(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                  int32_t out_pix, int out_c, const int is, int np,
                                  const int imm)
{
    const int32_t rb = k->row_bytes, blocks = out_c >> 2, n = s->n > 0 ? s->n : 0;
    if (blocks) {
        mm_c8x2d st;
        mm_c8x2d_init(&st, k, s->x, (const int8_t *)k->w + 4 * s->w0, n, s->step, out, out_pix);
        st.rows = n > 0 && s->rows > 0 ? s->rows : 1; /* an empty window: sums of 0 */
        st.xskip = s->xrow - n;
        st.wskip = 4 * s->wrow - 4 * n;
        if (np == 2) {
            st.halves = 2 * blocks;
            mm_c8x2d_go(&st, k, is, imm);
        } else {
            st.halves = blocks;
            st.adv[0] = 4 * rb;
            mm_c8x1d_go(&st, k, is);
        }
    }
    const int8_t *w = (const int8_t *)k->w + (int32_t)(4 * blocks) * rb + s->w0;
    for (int co = 4 * blocks; co < out_c; co++, w += rb)
        for (int p = 0; p < np; p++) {
            int32_t a = 0;
            const uint8_t *x = s->x + p * s->step;
            const int8_t *wr = w;
            for (int r = 0; r < s->rows; r++, x += s->xrow, wr += s->wrow)
                a += mm_run8x1(x, wr, n + s->tail, is);
            out[p * out_pix + co] = (uint8_t)mm_pw_rq(a, k->bias[co], k->mult[co], k->shift[co],
                                                     k->bk, k->qmin, k->qmax);
        }
}

#if MM_USE_CONV8X2D_U
static MM_NOINLINE void mm_conv8x2d_u(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                      int32_t out_pix, int ob, int out_c, int np)
{
    (void)ob; /* 8-bit outputs (MM_RQ8) */
    mm_conv8x2d(k, s, out, out_pix, out_c, 0, np, 0);
}
#endif
#if MM_USE_CONV8X2D_U16 /* pixel 1 16 bytes after pixel 0 (MM_CONV8X2_KIND) */
static MM_NOINLINE void mm_conv8x2d_u16(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                        int32_t out_pix, int ob, int out_c, int np)
{
    (void)ob;
    mm_conv8x2d(k, s, out, out_pix, out_c, 0, np, 16);
}
#endif
#if MM_USE_CONV8X2D_S
static MM_NOINLINE void mm_conv8x2d_s(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                      int32_t out_pix, int ob, int out_c, int np)
{
    (void)ob; /* 8-bit outputs (MM_RQ8) */
    mm_conv8x2d(k, s, out, out_pix, out_c, 1, np, 0);
}
#endif
#endif

#if MM_USE_CONV8P || MM_USE_SMALL8P
static inline uint32_t mm_c8p_ld(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

#if MM_USE_CONV8P_ANY || MM_USE_SMALL8P
/* Channels c, c + 1 of a pair of CONV8P's patches (pixel 1's `step` bytes after pixel 0's at
 * x): the n head bytes as words against the block's interleaved words from w, then the tail
 * (nt = row % 4 bytes): the word ending with each row's tail bytes (t: row c's, row c + 1's nt
 * bytes on) shifted down by sh, against the patches' tail words, extended once per pair (xt:
 * pixel 0's even and odd halves, then pixel 1's). Pixel 0's sums go to acc[0..1], pixel 1's
 * to acc[4..5]. The sums live in registers only here: the block loop around it keeps little
 * else live (gcc spilled them between the head and the tail otherwise, measured). */
static MM_INLINE void mm_c8p_pass(const uint8_t *x, const int8_t *w, int32_t n, int32_t step,
                                  const int8_t *t, int32_t nt, const uint32_t *xt, const int is,
                                  int32_t *acc)
{
    int32_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
#if defined(__ARM_FEATURE_DSP)
    /* one word a step: stems' rows are short, and so must their code be (unrolled, the
     * pair kernel's register allocation around it came out worse, measured) */
    for (int32_t k = n >> 2; k > 0; k--)
        MM_C8X2X2_STEP(is);
#else
    for (int32_t i = 0; i < n; i++) {
        const int32_t xv = is ? (int8_t)x[i] : x[i];
        const int32_t yv = is ? (int8_t)x[step + i] : x[step + i];
        const int8_t *q = w + 4 * (i & ~3) + (i & 3);
        a0 += xv * q[0];
        a1 += xv * q[4];
        b0 += yv * q[0];
        b1 += yv * q[4];
    }
#endif
    if (nt) {
        const int sh = 8 * (4 - nt);
        const uint32_t v0 = mm_c8p_ld(t) >> sh, v1 = mm_c8p_ld(t + nt) >> sh;
        const uint32_t e0 = mm_sxtb16(v0), o0 = mm_sxtb16_8(v0);
        const uint32_t e1 = mm_sxtb16(v1), o1 = mm_sxtb16_8(v1);
        a0 = mm_smlad(e0, xt[0], mm_smlad(o0, xt[1], a0));
        b0 = mm_smlad(e0, xt[2], mm_smlad(o0, xt[3], b0));
        a1 = mm_smlad(e1, xt[0], mm_smlad(o1, xt[1], a1));
        b1 = mm_smlad(e1, xt[2], mm_smlad(o1, xt[3], b1));
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[4] = b0;
    acc[5] = b1;
}

/* Row j's sum in a block of four interleaved rows (n head bytes as words, then nt tail bytes
 * per row; a natural row: n = 0, nt = row, j = 0). */
static int32_t mm_c8p_wsum(const int8_t *w, int32_t n, int32_t nt, int j)
{
    int32_t a = 0;
    for (int32_t i = 0; i < n; i++)
        a += w[4 * (i & ~3) + 4 * j + (i & 3)];
    for (int32_t i = 0; i < nt; i++)
        a += w[4 * n + j * nt + i];
    return a;
}

/* The pixel function of CONV8P (mm_conv) and SMALL8P (mm_small8p), through their pixel walk
 * mm_conv8p: one or two pixels, pixel 1's patch row bytes after pixel 0's at s->x; a lone
 * pixel runs as a pair of itself (step 0, both written to the same place). Per block of four
 * channels two mm_c8p_pass (the patches' tail words extended once per pair), then mm_pw_u /
 * mm_pw_st4 (mm_pw_fast) or, through the writers, any requantization; the rows after the last
 * block (all of them when the head has no word: rows under 4 bytes are natural) one by one.
 * `lean` (SMALL8P, whose rule admits only unsigned inputs, mm_pw_fast outputs, heads of a word
 * or more and whole blocks) compiles none of the rest: the demo's mixed build holds it within
 * its kernel .text. The general pixel function (mm_conv8x2_px, 5.6 kB) kept the sums in
 * memory and extended the tails per block (754 -> about 450 cycles per block of ResNet-8's
 * stem, measured). */
static MM_INLINE void mm_c8p_pixels(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                    int32_t out_pix, int ob, int out_c, int np, const int lean)
{
    const int32_t row = k->row, n = s->n, nt = s->tail, step = np == 2 ? row : 0;
    const int is = !lean && k->is;
    uint8_t *const x = (uint8_t *)s->x; /* the scratch's two patches (mm_gather8b_2) */
    const int8_t *w = (const int8_t *)k->w;
    mm_writer w0 = {out, 0, 0, ob}, w1 = {np == 2 ? out + out_pix : out, 0, 0, ob};
    uint32_t xt[4] = {0, 0, 0, 0};
    if (is) /* signed inputs as offset binary, x + 128 (so one unsigned pass serves both): each
             * sum is 128 x its row's sum too much, taken off below (padding: 0 -> 128 too) */
        for (int32_t i = 0; i < 2 * row; i++)
            x[i] ^= 0x80;
    if (nt && n) { /* each patch's last word, shifted down to its tail bytes */
        const int sh = 8 * (4 - nt);
        const uint32_t v0 = mm_c8p_ld(x + row - 4) >> sh, v1 = mm_c8p_ld(x + step + row - 4) >> sh;
        xt[0] = mm_uxtb16(v0);
        xt[1] = mm_uxtb16_8(v0);
        xt[2] = mm_uxtb16(v1);
        xt[3] = mm_uxtb16_8(v1);
    }
    const int32_t kb = (int32_t)1 << k->bk;
    const uint32_t m4 = (uint32_t)((1 << ob) - 1) * 0x01010101u;
    for (int co = 0; co < out_c; co += 4) {
        const int nb = out_c - co < 4 ? out_c - co : 4;
        int32_t acc[8];
        if (lean || (n >= 4 && nb == 4)) {
            const int8_t *t = w + 4 * n + nt - 4; /* n >= 4 head bytes precede the tails */
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
            for (int h = 0; h < 4; h += 2) /* channels (0, 1), then (2, 3): one copy (also the
                                            * faster: 1,622 k -> 1,532 k on ResNet-8's stem) */
                mm_c8p_pass(x, w + 4 * h, n, step, t + h * nt, nt, xt, 0, acc + h);
            for (int j = 0; is && j < 4; j++) {
                const int32_t c = 128 * mm_c8p_wsum(w, n, nt, j);
                acc[j] -= c;
                acc[4 + j] -= c;
            }
            if (lean || k->fast == MM_RQ8_U || k->fast == MM_RQ8_UP) { /* mm_pw_fast: 4
                                                                 * outputs, whole bytes */
                uint32_t y0 = 0, y1 = 0;
                for (int j = 0; j < 4; j++) {
                    const int32_t b = k->bias[co + j], m = k->mult[co + j], sc = k->shift[co + j];
                    y0 |= mm_pw_u(acc[j], b, m, sc, kb) << 8 * j;
                    y1 |= mm_pw_u(acc[4 + j], b, m, sc, kb) << 8 * j;
                }
                w0.p = mm_pw_st4(w0.p, y0, ob, m4);
                w1.p = mm_pw_st4(w1.p, y1, ob, m4);
                w += 4 * row;
                continue;
            }
        }
        if (lean)
            continue;
        if (n < 4 || nb < 4) { /* natural rows: the last out_c % 4, or all of rows under 4 bytes */
            for (int j = 0; j < nb; j++) {
                const int8_t *r = w + j * row;
                const int32_t c = is ? 128 * mm_c8p_wsum(r, 0, row, 0) : 0;
                acc[j] = mm_run8x1(x, r, row, 0) - c;
                acc[4 + j] = mm_run8x1(x + step, r, row, 0) - c;
            }
        }
        for (int j = 0; j < nb; j++) /* any requantization, through the writers */
            for (int p = 0; p < 2; p++)
                mm_put(p ? &w1 : &w0, mm_pw_rq(acc[4 * p + j], k->bias[co + j], k->mult[co + j],
                                               k->shift[co + j], k->bk, k->qmin, k->qmax));
        w += nb * row;
    }
    mm_flush(&w0);
    mm_flush(&w1);
}

#if MM_USE_CONV8P_ANY
static MM_NOINLINE void mm_conv8p_px(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                     int32_t out_pix, int ob, int out_c, int np)
{
    mm_c8p_pixels(k, s, out, out_pix, ob, out_c, np, 0);
}
#endif
#if MM_USE_SMALL8P
static MM_NOINLINE void mm_small8p_px(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                      int32_t out_pix, int ob, int out_c, int np)
{
    mm_c8p_pixels(k, s, out, out_pix, ob, out_c, np, 1);
}
#endif
#endif
#endif

#if MM_USE_CONV8X2 || MM_USE_SUB8X2
/* The pair kernel over the whole output, straight from the input (in_c % 4 == 0). It writes
 * pixel ox + 1's bytes of a channel block before it reads pixel ox's window again for the next
 * block: run over its own input, it needs the schedule to keep one more output pixel's window
 * alive (lag 1). */
static MM_INLINE void mm_conv8x2(const mm_conv_ctx *k, const mm_conv_dims *d, uint8_t *out,
                                 int ob, mm_c8px px)
{
    const int out_h = d->out_h, out_w = d->out_w, sh = d->stride_h, sw = d->stride_w;
    const int ph = d->pad_h, pw = d->pad_w, out_c = d->out_c;
    const int32_t out_pix = mm_bytes(out_c, ob);
    mm_c8src s;
    s.step = (int32_t)sw * k->in_c;
    s.xrow = (int32_t)k->in_w * k->in_c;
    s.wrow = (int32_t)k->kw * k->in_c;
    s.tail = 0;
    s.head = k->row;
    for (int oy = 0; oy < out_h; oy++) {
        const int iy0 = oy * sh - ph;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = k->in_h - iy0 < k->kh ? k->in_h - iy0 : k->kh;
        s.rows = ky1 - ky0;
        for (int ox = 0; ox < out_w;) {
            const int ix0 = ox * sw - pw;
            int kx0, kx1, np = 1;
            mm_conv8_cols(k, ix0, &kx0, &kx1);
            if (ox + 1 < out_w) {
                int nx0, nx1;
                mm_conv8_cols(k, ix0 + sw, &nx0, &nx1);
                np = nx0 == kx0 && nx1 == kx1 ? 2 : 1;
            }
            s.x = k->in + ((int32_t)(iy0 + ky0) * k->in_w + ix0 + kx0) * k->in_c;
            s.n = (int32_t)(kx1 - kx0) * k->in_c;
            s.w0 = (int32_t)(ky0 * k->kw + kx0) * k->in_c;
            px(k, &s, out, out_pix, ob, out_c, np);
            out += np * out_pix;
            ox += np;
        }
    }
}
#endif

#if MM_USE_CONV8P || MM_USE_SMALL8P || MM_USE_SUB8P || MM_USE_SUB8PD_W4 || MM_USE_SUB8PD_W2 || \
    MM_USE_SUB8PD_W2T
/* The pair kernel on patches (in_c % 4 != 0, rows of at most MM_PATCH bytes: stems on 1 or 3
 * channels): each pixel's patch is gathered as bytes into the scratch, two pixels side by
 * side (2 row bytes: what the memory model counts for the int16 patch), then met by the first
 * row - row % 4 bytes of each weight row as words and the rest as a shifted word. Pairs in
 * raster order, across rows, the last pixel of an odd count gathered twice (mm_sub8_px too:
 * kws's 2-bit stem 980 k -> 929 k est. M4 cycles, against pairs within a row); `across` 2
 * (mm_small8p) gathers with the general walk, 1 with mm_gather8b_2. Pixels are written after
 * both patches are gathered: in place, lag 0 would do (mm_conv counts 2). */
static MM_INLINE void mm_conv8p(const mm_conv_ctx *k, const mm_conv_dims *d, uint8_t *buf,
                                uint8_t *out, int ob, mm_c8px px, const int across)
{
    const int out_h = d->out_h, out_w = d->out_w, sh = d->stride_h, sw = d->stride_w;
    const int ph = d->pad_h, pw = d->pad_w, out_c = d->out_c;
    const int32_t out_pix = mm_bytes(out_c, ob);
    mm_c8src s;
    s.x = buf;
    s.step = k->row;
    s.xrow = 0;
    s.n = k->row & ~3;
    s.tail = k->row & 3;
    s.w0 = 0;
    s.wrow = 0;
    s.head = s.n;
    s.rows = 1;
    for (int oy = 0; oy < out_h; oy++)
        for (int ox = 0; ox < out_w;) {
            /* pairs in raster order, the last pixel of an odd row with the next row's first
             * (kws's 5-pixel rows ran a fifth of their pixels alone, measured); the very last
             * pixel alone, gathered twice */
            const int wrap = ox + 1 == out_w, np = !wrap || oy + 1 < out_h ? 2 : 1;
            const int oy1 = np == 1 ? oy : oy + wrap, ox1 = np == 1 ? ox : wrap ? 0 : ox + 1;
            if (across == 2) /* mm_small8p: the general gather (its rows are short), no copy
                              * of mm_gather8b_2 in its build */
                for (int p = 0; p < 2; p++)
                    mm_gather8b(buf + p * k->row, k, (p ? oy1 : oy) * sh - ph,
                                (p ? ox1 : ox) * sw - pw);
            else
                mm_gather8b_2(buf, k, oy * sh - ph, ox * sw - pw, oy1 * sh - ph, ox1 * sw - pw);
            px(k, &s, out, out_pix, ob, out_c, np);
            out += np * out_pix;
            ox += np;
            if (wrap && np == 2) { /* the next row's first pixel is done */
                oy++;
                ox = 1;
            }
        }
}
#endif

#if MM_USE_SUB8X2 || MM_USE_SUB8P || MM_USE_PWSUB8 || MM_USE_PWSUB8F || MM_USE_SUB8D_W4 || \
    MM_USE_SUB8D_W2 || MM_USE_SUB8D_PT_W4 || MM_USE_SUB8D_PT_W2 || MM_USE_SUB8PD_W4 ||    \
    MM_USE_SUB8PD_W2 || MM_USE_SUB8D4_PT_ANY || MM_USE_SUB8PD_W2T || MM_ON_PWSUB8PD_W4 ||  \
    MM_ON_PWSUB8PD_W2
/* ---- 4- and 2-bit weights on 8-bit inputs: the sub8 path (mm_conv, mm_pointwise_sub) -----
 *
 * Weights channel_packed (ops.conv): a byte holds one element of two (4-bit) or four (2-bit)
 * channels of a block of four, the top field two's complement, the others offset binary
 * (w + 8, w + 2). SXTB16 of a weight word, and UXTB16 of the word masked to its low fields,
 * are halfword weights with no shift, and SMLAD adds these sums (X: the pixel's inputs summed
 * over the same elements, U = S + 2 X):
 *   4-bit, channels (c, c + 1): A = 16 S1 + S0 + 8 X (raw), B = S0 + 8 X (& 0x0F0F0F0F);
 *   2-bit: A = 64 S3 + 16 U2 + 4 U1 + U0 (raw), B = 16 U2 + 4 U1 + U0 (& 0x3F3F3F3F),
 *          C = 4 U1 + U0 (& 0x0F0F0F0F), D = U0 (& 0x03030303);
 * so S1 = (A - B) / 16, S0 = B - 8 X; S3 = (A - B) / 64, U2 = (B - C) / 16, U1 = (C - D) / 4,
 * U0 = D, every division exact. Each weight byte is an int8, so the sums are bounded as
 * with 8-bit weights (rows of at most MM_SUB8_ROW elements stay in int32). Per word of 8 or 16
 * weights: one load, at most one AND per sum and two extends, shared by two pixels, where 8-bit
 * weights take two loads and four extends per 8 weights. */

/* Sum k (0 .. 3) of one pixel's four: the word itself (k = 0) or masked to its low fields. */
static inline uint32_t mm_s8_mask(int wb, int k)
{
    static const uint32_t m4[2] = {0, 0x0F0F0F0Fu};
    static const uint32_t m2[4] = {0, 0x3F3F3F3Fu, 0x0F0F0F0Fu, 0x03030303u};
    return wb == 4 ? m4[k & 1] : m2[k];
}

static inline uint32_t mm_s8_ld(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

#if defined(__ARM_FEATURE_DSP)
static inline uint32_t mm_usada8(uint32_t a, uint32_t acc) /* acc + the four bytes of a */
{
    uint32_t r;
    __asm__("usada8 %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(0u), "r"(acc));
    return r;
}

/* The step of two pixels (pixel a's input word at xa, b's at xb, extended into pairs in t0, t3
 * and t1, t4), one weight word at w (w += GS) in t2: two sums each, the first in a0 / b0, the
 * second in a1 / b1. The weight word is masked in place: 2-bit pass 2's second mask (0x03) is
 * within its first (0x0F). */
#define MM_S8_SUM2(DECODE, A, B)                                                                  \
    DECODE(e) "smlad %[" A "], %[t5], %[t0], %[" A "]\n\t"                                        \
              "smlad %[" B "], %[t5], %[t1], %[" B "]\n\t" DECODE(o)                              \
              "smlad %[" A "], %[t5], %[t3], %[" A "]\n\t"                                        \
              "smlad %[" B "], %[t5], %[t4], %[" B "]\n\t"
#define MM_S8_RAW_e "sxtb16 %[t5], %[t2]\n\t"
#define MM_S8_RAW_o "sxtb16 %[t5], %[t2], ror #8\n\t"
#define MM_S8_LOW_e "uxtb16 %[t5], %[t2]\n\t"
#define MM_S8_LOW_o "uxtb16 %[t5], %[t2], ror #8\n\t"
#define MM_S8_RAW(h) MM_S8_RAW_##h
#define MM_S8_LOW(h) MM_S8_LOW_##h
#define MM_S8_AND(M) "and %[t2], %[t2], #" M "\n\t"
#define MM_S8_STEP2(XT, GS, SUMS)                                                                 \
    "ldr %[t0], [%[xa]], #4\n\t"                                                                  \
    "ldr %[t1], [%[xb]], #4\n\t"                                                                  \
    "ldr %[t2], [%[w]], #" GS "\n\t" XT " %[t3], %[t0], ror #8\n\t" XT " %[t0], %[t0]\n\t" XT     \
    " %[t4], %[t1], ror #8\n\t" XT " %[t1], %[t1]\n\t" SUMS
/* pass 0: 4-bit, one pair's words (8 bytes a group); 1: 2-bit sums A, B; 2: C, D. */
#define MM_S8_PASS0                                                                               \
    MM_S8_SUM2(MM_S8_RAW, "a0", "b0") MM_S8_AND("0x0F0F0F0F") MM_S8_SUM2(MM_S8_LOW, "a1", "b1")
#define MM_S8_PASS1                                                                               \
    MM_S8_SUM2(MM_S8_RAW, "a0", "b0") MM_S8_AND("0x3F3F3F3F") MM_S8_SUM2(MM_S8_LOW, "a1", "b1")
#define MM_S8_PASS2                                                                               \
    MM_S8_AND("0x0F0F0F0F") MM_S8_SUM2(MM_S8_LOW, "a0", "b0") MM_S8_AND("0x03030303")             \
        MM_S8_SUM2(MM_S8_LOW, "a1", "b1")
/* The groups of a run of n bytes (k: n on entry): one step if n & 4 (out of line, OOL: rows of
 * whole 8-byte steps take no branch there), two if n & 8, then the loop, four steps an
 * iteration; the shifts of n leave each condition in the flags, which the steps keep. Unsigned
 * inputs (the common case) take RUN4; signed ones RUN2 (one step if n & 4, then two an
 * iteration: less code). */
#define MM_S8_RUN4(STEP)                                                                          \
    "lsrs %[k], %[k], #3\n\t"                                                                     \
    "bcs 7f\n"                                                                                    \
    "2:\n\t"                                                                                      \
    "lsrs %[k], %[k], #1\n\t"                                                                     \
    "bcc 3f\n\t" STEP STEP "3:\n\t"                                                               \
    "beq 4f\n"                                                                                    \
    "1:\n\t" STEP STEP STEP STEP "subs %[k], %[k], #1\n\t"                                        \
    "bne 1b\n"                                                                                    \
    "4:\n\t"
#define MM_S8_RUN4_OOL(STEP) "7:\n\t" STEP "b 2b\n"
#define MM_S8_RUN2(STEP)                                                                          \
    "lsrs %[k], %[k], #3\n\t"                                                                     \
    "bcs 7f\n"                                                                                    \
    "2:\n\t"                                                                                      \
    "beq 4f\n"                                                                                    \
    "1:\n\t" STEP STEP "subs %[k], %[k], #1\n\t"                                                  \
    "bne 1b\n"                                                                                    \
    "4:\n\t"
#define MM_S8_RUN2_OOL(STEP) "7:\n\t" STEP "b 2b\n"

/* What mm_s8_two's asm reads (at fixed offsets from its address, checked by mm_s8_rows_ok):
 * every register is in use in the loop, so the rows' counter and skips stay in memory. */
typedef struct {
    const uint8_t *xa, *xb, *w;
    int32_t n, rows, xskip, wskip;
} mm_s8_rows;
typedef char mm_s8_rows_ok[offsetof(mm_s8_rows, n) == 12 && offsetof(mm_s8_rows, wskip) == 24
                               ? 1
                               : -1];

/* The source's rows in one asm block: the run of each (RUN), then the next row (xskip, wskip
 * bytes on) while the counter in memory lasts; the ctx's address on the stack ([sp]). */
#define MM_S8_ROWS_ASM(RUN, OOL)                                                                  \
    __asm__ volatile("push {%[k]}\n\t"                                                            \
                     "ldr %[xa], [%[k]]\n\t"                                                      \
                     "ldr %[xb], [%[k], #4]\n\t"                                                  \
                     "ldr %[w], [%[k], #8]\n\t"                                                   \
                     "mov %[a0], #0\n\t"                                                          \
                     "mov %[a1], #0\n\t"                                                          \
                     "mov %[b0], #0\n\t"                                                          \
                     "mov %[b1], #0\n"                                                            \
                     "ldr %[k], [%[k], #12]\n"                                                   \
                     "5:\n\t" RUN "ldr %[k], [sp]\n\t"                                           \
                     "ldr %[t0], [%[k], #16]\n\t"                                                 \
                     "subs %[t0], %[t0], #1\n\t"                                                  \
                     "beq 6f\n\t"                                                                 \
                     "str %[t0], [%[k], #16]\n\t"                                                 \
                     "ldr %[t1], [%[k], #20]\n\t"                                                 \
                     "ldr %[t2], [%[k], #24]\n\t"                                                 \
                     "ldr %[k], [%[k], #12]\n\t"                                                  \
                     "add %[xa], %[xa], %[t1]\n\t"                                                \
                     "add %[xb], %[xb], %[t1]\n\t"                                                \
                     "add %[w], %[w], %[t2]\n\t"                                                  \
                     "b 5b\n" OOL                                                                 \
                     "6:\n\t"                                                                     \
                     "add sp, sp, #4\n\t"                                                         \
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1),          \
                       [xa] "=&r"(xa), [xb] "=&r"(xb), [w] "=&r"(wr), [k] "+&r"(k),             \
                       [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3),          \
                       [t4] "=&r"(t4), [t5] "=&r"(t5)                                            \
                     :                                                                            \
                     : "cc", "memory")
#define MM_S8_ROWS_PASS(RUN, XT, pass)                                                            \
    do {                                                                                          \
        if (pass == 0)                                                                            \
            MM_S8_ROWS_ASM(RUN(MM_S8_STEP2(XT, "8", MM_S8_PASS0)),                                \
                           RUN##_OOL(MM_S8_STEP2(XT, "8", MM_S8_PASS0)));                         \
        else if (pass == 1)                                                                       \
            MM_S8_ROWS_ASM(RUN(MM_S8_STEP2(XT, "4", MM_S8_PASS1)),                                \
                           RUN##_OOL(MM_S8_STEP2(XT, "4", MM_S8_PASS1)));                         \
        else                                                                                      \
            MM_S8_ROWS_ASM(RUN(MM_S8_STEP2(XT, "4", MM_S8_PASS2)),                                \
                           RUN##_OOL(MM_S8_STEP2(XT, "4", MM_S8_PASS2)));                         \
    } while (0)

/* Two pixels over the source's rows: pass 0 (4-bit, one pair's words), 1 (2-bit sums A, B) or
 * 2 (C, D); w at the block's first group of the run, the next row wskip bytes after this one's
 * last. q: pixel a's two sums, then pixel b's. */
static MM_INLINE void mm_s8_two(const mm_c8src *s, const uint8_t *w, int32_t wskip,
                                const int is, const int pass, int32_t *q)
{
    mm_s8_rows c = {s->x, s->x + s->step, w, s->n, s->rows, s->xrow - s->n, wskip};
    mm_s8_rows *k = &c;
    uint32_t a0, a1, b0, b1, xa, xb, wr, t0, t1, t2, t3, t4, t5;
    if (c.rows <= 0) {
        q[0] = q[1] = q[2] = q[3] = 0;
        return;
    }
    if (is)
        MM_S8_ROWS_PASS(MM_S8_RUN2, "sxtb16", pass);
    else
        MM_S8_ROWS_PASS(MM_S8_RUN4, "uxtb16", pass);
    (void)xa, (void)xb, (void)wr, (void)k, (void)t0, (void)t1, (void)t2, (void)t3, (void)t4;
    (void)t5;
    q[0] = (int32_t)a0;
    q[1] = (int32_t)a1;
    q[2] = (int32_t)b0;
    q[3] = (int32_t)b1;
}

/* One pixel: the input word at x extended into pe, po; a sum from the weight word in W (raw,
 * or masked in place by M first). 4-bit: the two pairs' words loaded together (v, u). */
#define MM_S8_RAW1(W, A)                                                                          \
    "sxtb16 %[e], %[" W "]\n\t"                                                                   \
    "smlad %[" A "], %[e], %[pe], %[" A "]\n\t"                                                   \
    "sxtb16 %[e], %[" W "], ror #8\n\t"                                                           \
    "smlad %[" A "], %[e], %[po], %[" A "]\n\t"
#define MM_S8_LOW1(M, W, A)                                                                       \
    "and %[" W "], %[" W "], #" M "\n\t"                                                          \
    "uxtb16 %[e], %[" W "]\n\t"                                                                   \
    "smlad %[" A "], %[e], %[pe], %[" A "]\n\t"                                                   \
    "uxtb16 %[e], %[" W "], ror #8\n\t"                                                           \
    "smlad %[" A "], %[e], %[po], %[" A "]\n\t"
#define MM_S8_EXT1(XT) XT " %[po], %[pe], ror #8\n\t" XT " %[pe], %[pe]\n\t"
#define MM_S8_ONE4(XT)                                                                            \
    "ldr %[pe], [%[x]], #4\n\t"                                                                   \
    "ldr %[v], [%[w]], #8\n\t"                                                                    \
    "ldr %[u], [%[w], #-4]\n\t" MM_S8_EXT1(XT) MM_S8_RAW1("v", "a0")                               \
        MM_S8_LOW1("0x0F0F0F0F", "v", "a1") MM_S8_RAW1("u", "a2")                                  \
            MM_S8_LOW1("0x0F0F0F0F", "u", "a3")
#define MM_S8_ONE2(XT)                                                                            \
    "ldr %[pe], [%[x]], #4\n\t"                                                                   \
    "ldr %[v], [%[w]], #4\n\t" MM_S8_EXT1(XT) MM_S8_RAW1("v", "a0")                                \
        MM_S8_LOW1("0x3F3F3F3F", "v", "a1") MM_S8_LOW1("0x0F0F0F0F", "v", "a2")                   \
            MM_S8_LOW1("0x03030303", "v", "a3")
#define MM_S8_ONE_ASM(CODE)                                                                       \
    __asm__ volatile("cmp %[k], #0\n\t"                                                            \
                     "beq 2f\n"                                                                    \
                     "1:\n\t" CODE CODE "subs %[k], %[k], #1\n\t"                                 \
                     "bne 1b\n"                                                                    \
                     "2:\n\t"                                                                     \
                     "tst %[n], #4\n\t"                                                           \
                     "beq 3f\n\t" CODE "3:\n\t"                                                   \
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "+r"(x),   \
                       [w] "+r"(w), [k] "+r"(k), [pe] "=&r"(pe), [po] "=&r"(po), [e] "=&r"(e),    \
                       [v] "=&r"(v), [u] "=&r"(u)                                                 \
                     : [n] "r"(n)                                                                 \
                     : "cc", "memory")

/* One pixel's four sums over the source's rows, two groups an iteration (k), then one (n & 4). */
static MM_INLINE void mm_s8_one(const mm_c8src *s, const uint8_t *w, int32_t wskip, const int is,
                                const int wb, int32_t *q)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const uint8_t *x = s->x;
    const int32_t n = s->n, xskip = s->xrow - n;
    uint32_t pe, po, e, v, u;
    for (int rows = s->rows; rows > 0; rows--, x += xskip, w += wskip) {
        int32_t k = n >> 3;
        if (n < 4)
            continue;
        if (wb == 4 && is)
            MM_S8_ONE_ASM(MM_S8_ONE4("sxtb16"));
        else if (wb == 4)
            MM_S8_ONE_ASM(MM_S8_ONE4("uxtb16"));
        else if (is)
            MM_S8_ONE_ASM(MM_S8_ONE2("sxtb16"));
        else
            MM_S8_ONE_ASM(MM_S8_ONE2("uxtb16"));
    }
    (void)pe, (void)po, (void)e, (void)v, (void)u;
    q[0] = a0;
    q[1] = a1;
    q[2] = a2;
    q[3] = a3;
}
#else
static inline uint32_t mm_usada8(uint32_t a, uint32_t acc)
{
    return acc + (a & 255u) + ((a >> 8) & 255u) + ((a >> 16) & 255u) + (a >> 24);
}

/* (not for mm_sub8p_d alone) */
#if MM_USE_SUB8X2 || MM_USE_SUB8P || MM_USE_PWSUB8 || MM_USE_PWSUB8F || MM_USE_SUB8D_W4 || \
    MM_USE_SUB8D_W2 || MM_USE_SUB8D_PT_W4 || MM_USE_SUB8D_PT_W2 || MM_USE_SUB8D4_PT_ANY
/* Portable: the same sums by the same halfword arithmetic (mm_kernels.h's plain-C SXTB16 and
 * SMLAD), one pixel at a time. Sum k of a pixel reads the word at w + wo(k) (4-bit: sums 2
 * and 3 from the second pair's word), groups gs bytes apart. */
static void mm_s8_pixel(const uint8_t *x, const mm_c8src *s, const uint8_t *w, int32_t wskip,
                        int is, int wb, int k0, int nk, int32_t *q)
{
    const int32_t gs = wb == 4 ? 8 : 4;
    for (int k = 0; k < nk; k++)
        q[k] = 0;
    for (int r = 0; r < s->rows; r++, x += s->xrow, w += (s->n >> 2) * gs + wskip)
        for (int32_t i = 0; i < s->n; i += 4) {
            const uint32_t xv = mm_s8_ld(x + i);
            const uint32_t xe = is ? mm_sxtb16(xv) : mm_uxtb16(xv);
            const uint32_t xo = is ? mm_sxtb16_8(xv) : mm_uxtb16_8(xv);
            for (int k = 0; k < nk; k++) {
                const int kk = k0 + k;
                const uint32_t raw = mm_s8_ld(w + i / 4 * gs + (wb == 4 ? 4 * (kk >> 1) : 0));
                const uint32_t m = mm_s8_mask(wb, kk), v = m ? raw & m : raw;
                q[k] = mm_smlad(mm_sxtb16(v), xe, mm_smlad(mm_sxtb16_8(v), xo, q[k]));
            }
        }
}

#if MM_USE_SUB8X2 || MM_USE_SUB8P || MM_USE_PWSUB8 || MM_USE_PWSUB8F /* the pair paths' */
static void mm_s8_two(const mm_c8src *s, const uint8_t *w, int32_t wskip, int is, int pass,
                      int32_t *q)
{
    const int wb = pass == 0 ? 4 : 2, k0 = pass == 0 ? 0 : 2 * (pass - 1);
    mm_s8_pixel(s->x, s, w, wskip, is, wb, k0, 2, q);
    mm_s8_pixel(s->x + s->step, s, w, wskip, is, wb, k0, 2, q + 2);
}
#endif

static void mm_s8_one(const mm_c8src *s, const uint8_t *w, int32_t wskip, int is, int wb,
                      int32_t *q)
{
    mm_s8_pixel(s->x, s, w, wskip, is, wb, 0, 4, q);
}
#endif
#endif

/* X: pixel p's inputs summed over the source's rows (n bytes each, a multiple of 4); signed
 * inputs as their unsigned codes (the sign bit flipped), less 128 each. */
static MM_INLINE int32_t mm_s8_xsum(const mm_c8src *s, int p, const int is)
{
    const uint8_t *x = s->x + p * s->step;
    const uint32_t flip = is ? 0x80808080u : 0;
    uint32_t t = 0;
    for (int r = 0; r < s->rows; r++, x += s->xrow) {
        int32_t i = 0;
        for (; i + 16 <= s->n; i += 16) { /* four loads in a row: one cycle each after the first */
            const uint32_t v0 = mm_s8_ld(x + i), v1 = mm_s8_ld(x + i + 4);
            const uint32_t v2 = mm_s8_ld(x + i + 8), v3 = mm_s8_ld(x + i + 12);
            t = mm_usada8(v1 ^ flip, mm_usada8(v0 ^ flip, t));
            t = mm_usada8(v3 ^ flip, mm_usada8(v2 ^ flip, t));
        }
        for (; i < s->n; i += 4)
            t = mm_usada8(mm_s8_ld(x + i) ^ flip, t);
    }
    return (int32_t)t - (is ? 128 * s->n * s->rows : 0);
}

static inline int32_t mm_s8_div(int32_t a, int32_t b, int k) /* (a - b) / 2^k, exact */
{
    return (int32_t)((uint32_t)a - (uint32_t)b) >> k;
}

/* The four channels' dot products from one pixel's sums q (4-bit: A, B of the pair (0, 1),
 * then of (2, 3); 2-bit: A, B, C, D) and its input sum x. */
static MM_INLINE void mm_s8_dots(const int32_t *q, int32_t x, const int wb, int32_t *s)
{
    if (wb == 4) {
        s[0] = q[1] - 8 * x;
        s[1] = mm_s8_div(q[0], q[1], 4);
        s[2] = q[3] - 8 * x;
        s[3] = mm_s8_div(q[2], q[3], 4);
    } else {
        s[0] = q[3] - 2 * x;
        s[1] = mm_s8_div(q[2], q[3], 2) - 2 * x;
        s[2] = mm_s8_div(q[1], q[2], 4) - 2 * x;
        s[3] = mm_s8_div(q[0], q[1], 6);
    }
}

/* The sub8 path's generic pixels (mm_conv, and mm_pointwise_sub off its fast path). */
#if MM_USE_SUB8X2 || MM_USE_SUB8P || MM_USE_PWSUB8
/* Adds the tail elements of np pixels (t bytes of the form of channel_packed at tb; the
 * inputs at x8, step bytes apart) to their four dot products each (acc: four per pixel). */
static MM_NOINLINE void mm_s8_tails(const uint8_t *x8, int32_t step, const uint8_t *tb,
                                    int32_t t, int wb, int is, int np, int32_t *acc)
{
    for (int p = 0; p < np; p++, x8 += step, acc += 4)
        for (int32_t i = 0; i < t; i++) {
            const int32_t v = is ? (int8_t)x8[i] : x8[i], b = tb[i];
            if (wb == 4) {
                const int32_t c = tb[t + i];
                acc[0] += v * ((b & 15) - 8);
                acc[1] += v * ((int8_t)b >> 4);
                acc[2] += v * ((c & 15) - 8);
                acc[3] += v * ((int8_t)c >> 4);
            } else {
                acc[0] += v * ((b & 3) - 2);
                acc[1] += v * (((b >> 2) & 3) - 2);
                acc[2] += v * (((b >> 4) & 3) - 2);
                acc[3] += v * ((int8_t)b >> 6);
            }
        }
}

#if MM_ON_SUB8_RQANY
/* The general requantization (mm_pw_rq) of np pixels' four outputs of channels co .. co + 3,
 * written at o[p] (whole bytes): the layers the fast rule cannot take, out of line. */
static MM_NOINLINE void mm_s8_put_any(const mm_conv_ctx *k, int co, int np, int ob,
                                      int32_t *acc, uint8_t **o)
{
    for (int p = 0; p < np; p++, acc += 4) {
        mm_writer wr = {o[p], 0, 0, ob};
        for (int j = 0; j < 4; j++)
            acc[j] = mm_pw_rq(acc[j], k->bias[co + j], k->mult[co + j], k->shift[co + j], k->bk,
                              k->qmin, k->qmax);
        mm_put4(&wr, acc);
        o[p] = wr.p;
    }
}
#endif

#if MM_USE_SUB8_RQS
/* MM_S8_RQ_S: mm_rq8x4 of np pixels' four outputs of channels co .. co + 3 (8-bit, signed),
 * written at o[p], out of line. */
static MM_NOINLINE void mm_s8_put_s(const mm_conv_ctx *k, int co, int np, const int32_t *acc,
                                    uint8_t **o)
{
    const mm_rq8p rp = {k->bias, k->mult, k->shift, (int32_t)1 << k->bk, k->qmin};
    if (np == 2) {
        mm_rq8x4(&rp, co, 2, acc, o[0], o[1], 1);
        o[1] += 4;
    } else {
        mm_rq8x4(&rp, co, 1, acc, o[0], o[0], 1);
    }
    o[0] += 4;
}
#endif

/* The last out_c % 4 rows from channel co on (natural packed rows at w), np pixels, outputs
 * from o[p] on: a weight byte at a time, out of line (few rows). Each run starts on a byte:
 * its first element is 0 (patches) or a multiple of in_c, itself a multiple of 4. */
static MM_NOINLINE void mm_s8_rest(const mm_conv_ctx *k, const mm_c8src *s, const uint8_t *w,
                                   int co, int out_c, int np, int ob, uint8_t **o)
{
    const int wb = k->wb, is = k->is, per = 8 / wb, sx = 1 << (wb - 1), mask = (1 << wb) - 1;
    const int32_t n = s->n + s->tail;
    mm_writer w0 = {o[0], 0, 0, ob}, w1 = {o[1], 0, 0, ob};
    for (; co < out_c; co++, w += k->row_bytes)
        for (int p = 0; p < np; p++) {
            int32_t a = 0;
            const uint8_t *x = s->x + p * s->step, *wr = w + s->w0 / per;
            for (int r = 0; r < s->rows; r++, x += s->xrow, wr = w + (s->w0 + r * s->wrow) / per)
                for (int32_t i = 0; i < n; i += per, wr++)
                    for (int f = 0; f < per && i + f < n; f++) {
                        const int32_t v = is ? (int8_t)x[i + f] : x[i + f];
                        a += v * ((((*wr >> (f * wb)) & mask) ^ sx) - sx);
                    }
            a = mm_pw_rq(a, k->bias[co], k->mult[co], k->shift[co], k->bk, k->qmin, k->qmax);
            mm_put(p ? &w1 : &w0, a);
        }
    mm_flush(&w0);
    mm_flush(&w1);
}

/* One pixel's four sums (a clipped border pixel, an odd last one, a linear): out of line, one
 * copy of each loop. */
static MM_NOINLINE void mm_s8_one_call(const mm_c8src *s, const uint8_t *w, int32_t wskip, int is,
                                       int wb, int32_t *q)
{
    if (wb == 4)
        mm_s8_one(s, w, wskip, is, 4, q);
    else
        mm_s8_one(s, w, wskip, is, 2, q);
}

/* Raw sums of one block of four channels for np pixels (q: four per pixel). The pair loops are
 * inlined into each specialised caller, once (4-bit: the same loop for both pairs). */
static MM_INLINE void mm_s8_block(const mm_c8src *s, const uint8_t *w, int32_t wskip, const int is,
                                  const int wb, int np, int32_t *q)
{
    int32_t h[4];
    if (np == 1) {
        mm_s8_one_call(s, w, wskip, is, wb, q);
        q[4] = q[5] = q[6] = q[7] = 0; /* unused (mm_sub8_pxt reads them all) */
        return;
    }
    if (wb == 4) { /* pairs (0, 1) and (2, 3): one loop, twice */
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
        for (int half = 0; half < 2; half++)
            mm_s8_two(s, w + 4 * half, wskip, is, 0, half ? h : q);
    } else { /* sums A, B and C, D */
        mm_s8_two(s, w, wskip, is, 1, q);
        mm_s8_two(s, w, wskip, is, 2, h);
    }
    /* q: a's A B, b's A B; h: the next two of each: make them a's four, then b's */
    q[4] = q[2], q[5] = q[3];
    q[2] = h[0], q[3] = h[1], q[6] = h[2], q[7] = h[3];
}

/* mm_sub8_px for one weight width and input signedness (constants: each use specialised).
 * The layer's fields and the source are read into locals once: the output stores (bytes) could
 * alias them. */
static MM_INLINE void mm_sub8_pxt(const mm_conv_ctx *k, const mm_c8src *src, uint8_t *out,
                                  int32_t out_pix, int ob, int out_c, int np, const int wb,
                                  const int is)
{
    const mm_c8src sc = *src, *const s = &sc; /* a local copy: no store aliases it */
    const int bpe = wb / 2, fast = k->fast; /* bpe: block bytes per element */
    const int32_t *const bias = k->bias, *const mult = k->mult;
    const int8_t *const shift = k->shift;
    const int32_t kb = (int32_t)1 << k->bk, blk = 4 * k->row_bytes;
    const int32_t wskip = (s->wrow - s->n) * bpe, tail = s->tail;
    const uint32_t m4 = (uint32_t)k->qmax * 0x01010101u;
    const uint8_t *w = k->w;
    uint8_t *o[2] = {out, out + out_pix};
    const int32_t xs0 = mm_s8_xsum(s, 0, is), xs1 = np == 2 ? mm_s8_xsum(s, 1, is) : 0;
    int co = 0;
    for (; co + 4 <= out_c; co += 4, w += blk) {
        int32_t q[8], acc[8];
        mm_s8_block(s, w + s->w0 * bpe, wskip, is, wb, np, q);
        mm_s8_dots(q, xs0, wb, acc);
        mm_s8_dots(q + 4, xs1, wb, acc + 4); /* unused when np == 1 */
        if (tail)
            mm_s8_tails(s->x + s->n, s->step, w + s->head * bpe, tail, wb, is, np, acc);
        if (MM_LIKELY(fast == MM_S8_RQ_U) && np == 2) { /* the parameters read once for both */
            uint32_t y0 = 0, y1 = 0;
#if defined(__GNUC__)
#pragma GCC unroll 4
#endif
            for (int j = 0; j < 4; j++) {
                const int32_t b = bias[co + j], m = mult[co + j];
                const int sh = shift[co + j];
                y0 |= mm_pw_u(acc[j], b, m, sh, kb) << 8 * j;
                y1 |= mm_pw_u(acc[4 + j], b, m, sh, kb) << 8 * j;
            }
            o[0] = mm_pw_st4(o[0], y0, ob, m4);
            o[1] = mm_pw_st4(o[1], y1, ob, m4);
        } else if (MM_LIKELY(fast == MM_S8_RQ_U)) {
            uint32_t y0 = 0;
#if defined(__GNUC__)
#pragma GCC unroll 4
#endif
            for (int j = 0; j < 4; j++)
                y0 |= mm_pw_u(acc[j], bias[co + j], mult[co + j], shift[co + j], kb) << 8 * j;
            o[0] = mm_pw_st4(o[0], y0, ob, m4);
        } else if (fast == MM_S8_RQ_S) {
#if MM_USE_SUB8_RQS
            mm_s8_put_s(k, co, np, acc, o);
#else
            MM_PATH_OFF();
#endif
        } else {
#if MM_ON_SUB8_RQANY
            mm_s8_put_any(k, co, np, ob, acc, o);
#else
            MM_PATH_OFF();
#endif
        }
    }
    if (co < out_c)
        mm_s8_rest(k, s, w, co, out_c, np, ob, o);
}

/* One or two pixels (np) of the sub8 path, every output channel, block by block as
 * mm_conv8x2_px (the same pixel walks call it: mm_conv8x2, mm_conv8p, mm_sub8_pointwise): both
 * pixels' outputs of a block are written before the next block reads their windows again,
 * which the kernels' in-place lag of 2 allows. */
static MM_NOINLINE void mm_sub8_px(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                   int32_t out_pix, int ob, int out_c, int np)
{
    (void)s, (void)out, (void)out_pix, (void)ob, (void)out_c, (void)np; /* no kind compiled */
    switch (k->wb == 4 ? (k->is ? MM_P_SUB8_W4S : MM_P_SUB8_W4U)
                       : (k->is ? MM_P_SUB8_W2S : MM_P_SUB8_W2U)) { /* MM_SUB8_KIND */
#if MM_USE_SUB8_W4S
    case MM_P_SUB8_W4S:
        mm_sub8_pxt(k, s, out, out_pix, ob, out_c, np, 4, 1);
        return;
#endif
#if MM_USE_SUB8_W4U
    case MM_P_SUB8_W4U:
        mm_sub8_pxt(k, s, out, out_pix, ob, out_c, np, 4, 0);
        return;
#endif
#if MM_USE_SUB8_W2S
    case MM_P_SUB8_W2S:
        mm_sub8_pxt(k, s, out, out_pix, ob, out_c, np, 2, 1);
        return;
#endif
#if MM_USE_SUB8_W2U
    case MM_P_SUB8_W2U:
        mm_sub8_pxt(k, s, out, out_pix, ob, out_c, np, 2, 0);
        return;
#endif
    default:
        MM_PATH_OFF();
    }
}
#endif

#if MM_USE_SUB8X2D_W4 || MM_USE_SUB8X2D_W2
/* SUB8X2's pixel pairs on 4-bit weights (MM_SUB8X2_KIND: unsigned inputs, the requantization
 * MM_RQ8): every block of four channels in one asm loop, as mm_conv8x2d's (the rows of the
 * window, then each half's requantization, clamp and halfword stores in asm), a half being one
 * channel pair's words (mm_s8_two's pass 0 steps, pixel b's inputs through a pointer of its
 * own). Both sums of a pixel start at -8 X (its inputs' sum): A = 16 S1 + S0 and B = S0, so
 * the pair's outputs are B and (A - B) / 16, with no correction in C (mm_sub8_px spent about
 * 300 est. M4 cycles per block of ic's layers besides its sums, its values through memory).
 * 2-bit weights (SUB8X2D_W2: one word of four channels' fields a step, each half reading the
 * same words; the sums A .. D of mm_s8_dots): half 0 sums C (& 0x0F0F0F0F) and D (& 0x03030303)
 * from -10 X and -2 X, so that D is channel 0 and (C - D) / 4 channel 1, and keeps C; half 1
 * sums A (the word) and B (& 0x3F3F3F3F) from -42 X: channel 2 is (B - C) / 16, channel 3
 * (A - B) / 64 (one AND a step there: 1.5 a step, not 2, where the halves shared no sum). */
typedef struct {
    mm_c8x2d c; /* adv: the pair's words 4 bytes on, then the next block's */
    int32_t sa, sb; /* 116, 120: -8 X of pixel a, of pixel b (2-bit: -10 X) */
    int32_t ta, tb, ua, ub; /* 124 .. 136, 2-bit: -2 X, then -42 X, of pixel a, of b */
    int32_t ca, cb;         /* 140, 144, 2-bit: half 0's C of pixel a, of b */
} mm_s8x2d;

#if defined(__ARM_FEATURE_DSP)
typedef char mm_s8x2d_ok[offsetof(mm_s8x2d, sa) == 116 && offsetof(mm_s8x2d, ca) == 140 ? 1
                                                                                           : -1];
/* MM_S8_STEP2's pass 0 in mm_c8x2d's names: pixel a's inputs at x, b's at v1; the weight
 * word (w += GS) first masked by M0 (none: "") into the sums a0, b0 (SXTB16), then by M1 into
 * a1, b1 (UXTB16; M1 within M0). */
#define MM_S8X2D_STEPM(GS, M0, M1)                                                                \
    "ldr %[pe], [%[x]], #4\n\t"                                                                   \
    "ldr %[re], [%[v1]], #4\n\t"                                                                  \
    "ldr %[o], [%[w]], #" GS "\n\t"                                                               \
    "uxtb16 %[po], %[pe], ror #8\n\t"                                                             \
    "uxtb16 %[pe], %[pe]\n\t"                                                                     \
    "uxtb16 %[ro], %[re], ror #8\n\t"                                                             \
    "uxtb16 %[re], %[re]\n\t" M0 "sxtb16 %[e], %[o]\n\t"                                         \
    "smlad %[a0], %[e], %[pe], %[a0]\n\t"                                                         \
    "smlad %[b0], %[e], %[re], %[b0]\n\t"                                                         \
    "sxtb16 %[e], %[o], ror #8\n\t"                                                               \
    "smlad %[a0], %[e], %[po], %[a0]\n\t"                                                         \
    "smlad %[b0], %[e], %[ro], %[b0]\n\t"                                                         \
    "and %[o], %[o], #" M1 "\n\t"                                                                 \
    "uxtb16 %[e], %[o]\n\t"                                                                       \
    "smlad %[a1], %[e], %[pe], %[a1]\n\t"                                                         \
    "smlad %[b1], %[e], %[re], %[b1]\n\t"                                                         \
    "uxtb16 %[e], %[o], ror #8\n\t"                                                               \
    "smlad %[a1], %[e], %[po], %[a1]\n\t"                                                         \
    "smlad %[b1], %[e], %[ro], %[b1]\n\t"
#define MM_S8X2D_STEP MM_S8X2D_STEPM("8", "", "0x0F0F0F0F")
/* A half's sums into its channels: c + 1 ((a0 - a1) >> S0 into a0, b0), then c (a1, b1; R1:
 * their shift, if any). */
#define MM_S8X2D_DIFF(S0, R1)                                                                     \
    "sub %[a0], %[a0], %[a1]\n\t"                                                                 \
    "asr %[a0], %[a0], #" S0 "\n\t"                                                               \
    "sub %[b0], %[b0], %[b1]\n\t"                                                                 \
    "asr %[b0], %[b0], #" S0 "\n\t" R1
/* A half's end: channel c (a1, b1) and c + 1 (a0, b0) requantized (MM_C8X2D_RQ), clamped (U or
 * S: sg) and stored, a halfword per pixel. */
#define MM_S8X2D_OUT                                                                              \
    "ldr %[pe], [%[e]]\n\t"                                                                       \
    "ldr %[po], [%[e], #4]\n\t"                                                                   \
    "ldr %[re], [%[e], #8]\n\t"                                                                   \
    "ldr %[ro], [%[e], #12]\n\t" MM_C8X2D_RQ("a1", "b1") MM_C8X2D_RQ("a0", "b0")              \
    "str %[pe], [%[e]]\n\t"                                                                       \
    "str %[po], [%[e], #4]\n\t"                                                                   \
    "str %[re], [%[e], #8]\n\t"                                                                   \
    "ldr %[k], [%[e], #48]\n\t"                                                                   \
    "cmp %[k], #0\n\t"                                                                            \
    "bne 6f\n\t" MM_C8X2D_SAT("usat") "b 7f\n\t"                                                \
    "6:\n\t" MM_C8X2D_SAT("ssat") "7:\n\t"                                                      \
    "bfi %[a1], %[a0], #8, #8\n\t"                                                                \
    "bfi %[b1], %[b0], #8, #8\n\t"                                                                \
    "beq 8f\n\t" /* S: the bytes raised to qmin (signed bytewise maximum) */                   \
    "ldr %[k], [%[e], #16]\n\t"                                                                   \
    "ssub8 %[x], %[a1], %[k]\n\t"                                                                 \
    "sel %[a1], %[a1], %[k]\n\t"                                                                  \
    "ssub8 %[x], %[b1], %[k]\n\t"                                                                 \
    "sel %[b1], %[b1], %[k]\n\t"                                                                  \
    "8:\n\t"                                                                                      \
    "ldr %[x], [%[e], #52]\n\t"                                                                   \
    "ldr %[w], [%[e], #56]\n\t"                                                                   \
    "strh %[a1], [%[x]], #2\n\t"                                                                  \
    "strh %[b1], [%[w]], #2\n\t"                                                                  \
    "str %[x], [%[e], #52]\n\t"                                                                   \
    "str %[w], [%[e], #56]\n\t"
/* A half's sums: a0, b0 from the words at OA, OB of the state, a1, b1 from A1, B1. */
#define MM_S8X2D_START(OA, OB, A1, B1)                                                            \
    "ldr %[a0], [%[e], #" OA "]\n\t"                                                              \
    "ldr %[b0], [%[e], #" OB "]\n\t" A1 B1
#define MM_S8X2D_MOV1 "mov %[a1], %[a0]\n\t" "mov %[b1], %[b0]\n\t"
/* A half's rows on STEP (e: the state, here and after every row): 16 bytes an iteration, n & 8
 * entering it at its middle (12f, out of line). */
#define MM_S8X2D_ROWS(STEP)                                                                       \
    "2:\n\t"                                                                                      \
    "ldr %[k], [%[e], #24]\n\t"                                                                   \
    "lsrs %[k], %[k], #1\n\t"                                                                     \
    "bcs 12f\n\t"                                                                                 \
    "beq 4f\n\t"                                                                                  \
    "3:\n\t" STEP STEP "13:\n\t" STEP STEP                                                        \
    "subs %[k], %[k], #1\n\t"                                                                     \
    "bne 3b\n\t"                                                                                  \
    "4:\n\t"                                                                                      \
    "ldr %[e], [sp]\n\t"                                                                          \
    "ldr %[k], [%[e], #36]\n\t"                                                                   \
    "add %[x], %[x], %[k]\n\t"                                                                    \
    "add %[v1], %[v1], %[k]\n\t"                                                                  \
    "ldr %[k], [%[e], #40]\n\t"                                                                   \
    "add %[w], %[w], %[k]\n\t"                                                                    \
    "ldr %[k], [%[e], #72]\n\t"                                                                   \
    "subs %[k], %[k], #1\n\t"                                                                     \
    "str %[k], [%[e], #72]\n\t"                                                                   \
    "bne 2b\n\t"
/* SUB8X2D_W2's channel 2: (B - C) >> 4, C kept by half 0. */
#define MM_S8X2D_C2                                                                               \
    "ldr %[k], [%[e], #140]\n\t"                                                                  \
    "sub %[a1], %[a1], %[k]\n\t"                                                                  \
    "asr %[a1], %[a1], #4\n\t"                                                                    \
    "ldr %[k], [%[e], #144]\n\t"                                                                  \
    "sub %[b1], %[b1], %[k]\n\t"                                                                  \
    "asr %[b1], %[b1], #4\n\t"
/* SUB8X2D_W4's half: both sums from -8 X, A = 16 S1 + S0 and B = S0. */
#define MM_S8X2D_HALF4                                                                            \
    MM_S8X2D_START("116", "120", MM_S8X2D_MOV1, "") MM_S8X2D_ROWS(MM_S8X2D_STEP)                  \
        MM_S8X2D_DIFF("4", "")
/* SUB8X2D_W2's halves (mm_s8x2d), by the parity of the halves left: a block's first (even)
 * channels 0, 1 (its own rows, and their n & 8 entry, out of line here), its second 2, 3. */
#define MM_S8X2D_HALF2                                                                            \
    "ldr %[k], [%[e], #44]\n\t"                                                                   \
    "tst %[k], #1\n\t"                                                                            \
    "bne 15f\n\t" MM_S8X2D_START("116", "120", "ldr %[a1], [%[e], #124]\n\t",                    \
                                 "ldr %[b1], [%[e], #128]\n\t")                                   \
        MM_S8X2D_ROWS(MM_S8X2D_STEPM("4", "and %[o], %[o], #0x0F0F0F0F\n\t", "0x03030303"))      \
            "str %[a0], [%[e], #140]\n\t"                                                         \
    "str %[b0], [%[e], #144]\n\t" MM_S8X2D_DIFF("2", "") "b 16f\n\t"                             \
    "12:\n\t"                                                                                     \
    "add %[k], %[k], #1\n\t"                                                                      \
    "b 13b\n\t"                                                                                   \
    "15:\n\t" MM_S8X2D_START("132", "136", MM_S8X2D_MOV1, "")                                     \
        MM_S8X2D_ROWS(MM_S8X2D_STEPM("4", "", "0x3F3F3F3F"))                                     \
            MM_S8X2D_DIFF("6", MM_S8X2D_C2) "16:\n\t"
/* mm_c8x2d's loop (MM_C8X2D_ASM; rows of whole 8-byte steps: in_c % 8 == 0, MM_SUB8X2_KIND)
 * on HALF (MM_S8X2D_HALF4, MM_S8X2D_HALF2), then MM_S8X2D_OUT. */
#define MM_S8X2D_ASM(HALF)                                                                        \
    __asm__ volatile(                                                                             \
        "sub sp, sp, #8\n\t"                                                                      \
        "str %[e], [sp]\n\t"                                                                      \
        "1:\n\t" /* a half (e: the state, here and after every row) */                            \
        "ldr %[x], [%[e], #20]\n\t"                                                               \
        "ldr %[k], [%[e], #76]\n\t"                                                               \
        "ldr %[w], [%[e], #60]\n\t"                                                               \
        "add %[v1], %[x], %[k]\n\t"                                                               \
        "ldr %[k], [%[e], #32]\n\t"                                                               \
        "str %[k], [%[e], #72]\n\t" HALF MM_S8X2D_OUT                                             \
        "ldr %[k], [%[e], #44]\n\t" /* w += adv[halves & 1] */                                   \
        "ldr %[x], [%[e], #60]\n\t"                                                               \
        "and %[w], %[k], #1\n\t"                                                                  \
        "add %[w], %[e], %[w], lsl #2\n\t"                                                        \
        "ldr %[w], [%[w], #64]\n\t"                                                               \
        "add %[x], %[x], %[w]\n\t"                                                                \
        "str %[x], [%[e], #60]\n\t"                                                               \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "str %[k], [%[e], #44]\n\t"                                                               \
        "bne 1b\n\t"                                                                              \
        "b 11f\n\t"                                                                               \
        "12:\n\t" /* n & 8: the loop's second half first, one more iteration */                 \
        "add %[k], %[k], #1\n\t"                                                                  \
        "b 13b\n\t"                                                                               \
        "11:\n\t"                                                                                 \
        "add sp, sp, #8\n\t"                                                                      \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1), [x] "=&r"(x_),         \
          [w] "=&r"(w_), [pe] "=&r"(pe), [po] "=&r"(po), [re] "=&r"(re), [ro] "=&r"(ro),        \
          [o] "=&r"(o), [v1] "=&r"(v1), [k] "=&r"(k_), [e] "+r"(e)                              \
        :                                                                                         \
        : "cc", "memory")
#endif

#if defined(__ARM_FEATURE_DSP)
/* A lone pixel (a clipped border, an odd last one): the same sums for all four channels of a
 * block at once (both pair words a step), the block's outputs stored as a word (mm_sub8_px's
 * lone pixels cost about 2 est. M4 cycles per MAC of ic's layers). MM_C8X1D_ASM's loop. */
#define MM_S8X1D_W(W, A, B)                                                                       \
    "sxtb16 %[e], %[" W "]\n\t"                                                                   \
    "smlad %[" A "], %[e], %[pe], %[" A "]\n\t"                                                   \
    "sxtb16 %[e], %[" W "], ror #8\n\t"                                                           \
    "smlad %[" A "], %[e], %[po], %[" A "]\n\t"                                                   \
    "and %[" W "], %[" W "], #0x0F0F0F0F\n\t"                                                     \
    "uxtb16 %[e], %[" W "]\n\t"                                                                   \
    "smlad %[" B "], %[e], %[pe], %[" B "]\n\t"                                                   \
    "uxtb16 %[" W "], %[" W "], ror #8\n\t"                                                       \
    "smlad %[" B "], %[" W "], %[po], %[" B "]\n\t"
#define MM_S8X1D_STEP                                                                             \
    "ldr %[pe], [%[x]], #4\n\t"                                                                   \
    "ldr %[v1], [%[w], #4]\n\t"                                                                   \
    "ldr %[o], [%[w]], #8\n\t"                                                                    \
    "uxtb16 %[po], %[pe], ror #8\n\t"                                                             \
    "uxtb16 %[pe], %[pe]\n\t" MM_S8X1D_W("o", "a0", "a1") MM_S8X1D_W("v1", "b0", "b1")
/* SUB8X2D_W4's sums from -8 X (channels 0 .. 3: a1, a0, b1, b0). */
#define MM_S8X1D_START4                                                                           \
    "ldr %[a0], [%[e], #116]\n\t"                                                                 \
    "mov %[a1], %[a0]\n\t"                                                                        \
    "mov %[b0], %[a0]\n\t"                                                                        \
    "mov %[b1], %[a0]\n\t"
#define MM_S8X1D_DIFF4                                                                            \
    "sub %[a0], %[a0], %[a1]\n\t"                                                                 \
    "asr %[a0], %[a0], #4\n\t"                                                                    \
    "sub %[b0], %[b0], %[b1]\n\t"                                                                 \
    "asr %[b0], %[b0], #4\n\t"
/* SUB8X2D_W2's lone pixel: one word of four channels a step, its four sums (mm_s8x2d) A, B
 * (b0, b1) from -42 X, C (a0) from -10 X and D (a1) from -2 X, the masks one within another. */
#define MM_S8X1D_SUM(XT, A)                                                                       \
    XT " %[e], %[o]\n\t"                                                                           \
    "smlad %[" A "], %[e], %[pe], %[" A "]\n\t" XT " %[e], %[o], ror #8\n\t"                      \
    "smlad %[" A "], %[e], %[po], %[" A "]\n\t"
#define MM_S8X1D_STEP2                                                                            \
    "ldr %[pe], [%[x]], #4\n\t"                                                                   \
    "ldr %[o], [%[w]], #4\n\t"                                                                    \
    "uxtb16 %[po], %[pe], ror #8\n\t"                                                             \
    "uxtb16 %[pe], %[pe]\n\t" MM_S8X1D_SUM("sxtb16", "b0")                                         \
    "and %[o], %[o], #0x3F3F3F3F\n\t" MM_S8X1D_SUM("uxtb16", "b1")                                 \
    "and %[o], %[o], #0x0F0F0F0F\n\t" MM_S8X1D_SUM("uxtb16", "a0")                                 \
    "and %[o], %[o], #0x03030303\n\t" MM_S8X1D_SUM("uxtb16", "a1")
#define MM_S8X1D_START2                                                                           \
    "ldr %[a0], [%[e], #116]\n\t"                                                                 \
    "ldr %[a1], [%[e], #124]\n\t"                                                                 \
    "ldr %[b0], [%[e], #132]\n\t"                                                                 \
    "mov %[b1], %[b0]\n\t"
/* Channel 3: (A - B) / 64, 2: (B - C) / 16, 1: (C - D) / 4, 0: D. */
#define MM_S8X1D_DIFF2                                                                            \
    "sub %[b0], %[b0], %[b1]\n\t"                                                                 \
    "asr %[b0], %[b0], #6\n\t"                                                                    \
    "sub %[b1], %[b1], %[a0]\n\t"                                                                 \
    "asr %[b1], %[b1], #4\n\t"                                                                    \
    "sub %[a0], %[a0], %[a1]\n\t"                                                                 \
    "asr %[a0], %[a0], #2\n\t"
/* A lone pixel's loop on STEP, the sums from START, into its channels by DIFF. */
#define MM_S8X1D_ASM(STEP, START, DIFF)                                                           \
    __asm__ volatile(                                                                             \
        "sub sp, sp, #8\n\t"                                                                      \
        "str %[e], [sp]\n\t"                                                                      \
        "1:\n\t" /* a block (e: the state, here and after every row) */                           \
        "ldr %[x], [%[e], #20]\n\t"                                                               \
        "ldr %[w], [%[e], #60]\n\t"                                                               \
        "ldr %[k], [%[e], #32]\n\t"                                                               \
        "str %[k], [%[e], #72]\n\t"                                                               \
        START                                                                                     \
        "2:\n\t" /* a row: n & 8 entering the loop at its middle */                               \
        "ldr %[k], [%[e], #24]\n\t"                                                               \
        "lsrs %[k], %[k], #1\n\t"                                                                 \
        "bcs 12f\n\t"                                                                             \
        "beq 4f\n\t"                                                                              \
        "3:\n\t" STEP STEP                                                                        \
        "13:\n\t" STEP STEP                                                                       \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "bne 3b\n\t"                                                                              \
        "4:\n\t"                                                                                  \
        "ldr %[e], [sp]\n\t"                                                                      \
        "ldr %[k], [%[e], #36]\n\t"                                                               \
        "add %[x], %[x], %[k]\n\t"                                                                \
        "ldr %[k], [%[e], #40]\n\t"                                                               \
        "add %[w], %[w], %[k]\n\t"                                                                \
        "ldr %[k], [%[e], #72]\n\t"                                                               \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "str %[k], [%[e], #72]\n\t"                                                               \
        "bne 2b\n\t"                                                                              \
        DIFF /* channels 0 .. 3: a1, a0, b1, b0 */                                                \
        "ldr %[pe], [%[e]]\n\t"                                                                   \
        "ldr %[po], [%[e], #4]\n\t"                                                               \
        "ldr %[re], [%[e], #8]\n\t"                                                               \
        "ldr %[ro], [%[e], #12]\n\t" MM_C8X1D_RQ("a1") MM_C8X1D_RQ("a0") MM_C8X1D_RQ("b1")      \
            MM_C8X1D_RQ("b0")                                                                     \
        "str %[pe], [%[e]]\n\t"                                                                   \
        "str %[po], [%[e], #4]\n\t"                                                               \
        "str %[re], [%[e], #8]\n\t"                                                               \
        "ldr %[k], [%[e], #48]\n\t"                                                               \
        "cmp %[k], #0\n\t"                                                                        \
        "bne 6f\n\t" MM_C8X2D_SAT("usat") "b 7f\n\t"                                            \
        "6:\n\t" MM_C8X2D_SAT("ssat") "7:\n\t"                                                  \
        "bfi %[a1], %[a0], #8, #8\n\t"                                                            \
        "bfi %[a1], %[b1], #16, #8\n\t"                                                           \
        "bfi %[a1], %[b0], #24, #8\n\t"                                                           \
        "beq 8f\n\t" /* S: the bytes raised to qmin (signed bytewise maximum) */                 \
        "ldr %[k], [%[e], #16]\n\t"                                                               \
        "ssub8 %[x], %[a1], %[k]\n\t"                                                             \
        "sel %[a1], %[a1], %[k]\n\t"                                                              \
        "8:\n\t"                                                                                  \
        "ldr %[x], [%[e], #52]\n\t"                                                               \
        "str %[a1], [%[x]], #4\n\t"                                                               \
        "str %[x], [%[e], #52]\n\t"                                                               \
        "ldr %[x], [%[e], #60]\n\t" /* the next block's weights */                               \
        "ldr %[w], [%[e], #64]\n\t"                                                               \
        "add %[x], %[x], %[w]\n\t"                                                                \
        "str %[x], [%[e], #60]\n\t"                                                               \
        "ldr %[k], [%[e], #44]\n\t"                                                               \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "str %[k], [%[e], #44]\n\t"                                                               \
        "bne 1b\n\t"                                                                              \
        "b 11f\n\t"                                                                               \
        "12:\n\t" /* n & 8: the loop's second half first, one more iteration */                 \
        "add %[k], %[k], #1\n\t"                                                                  \
        "b 13b\n\t"                                                                               \
        "11:\n\t"                                                                                 \
        "add sp, sp, #8\n\t"                                                                      \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1), [x] "=&r"(x_),         \
          [w] "=&r"(w_), [pe] "=&r"(pe), [po] "=&r"(po), [re] "=&r"(re), [ro] "=&r"(ro),        \
          [o] "=&r"(o), [v1] "=&r"(v1), [k] "=&r"(k_), [e] "+r"(e)                              \
        :                                                                                         \
        : "cc", "memory")

/* The np pixels' start values, -8 X each (a call: one copy of mm_s8_xsum's loops, .text). */
static MM_NOINLINE void mm_s8x2d_start(const mm_c8src *s, int32_t *sa, int np)
{
    for (int p = 0; p < np; p++)
        sa[p] = -8 * mm_s8_xsum(s, p, 0);
}
#endif

#if !defined(__ARM_FEATURE_DSP)
/* The asm loops' sums, portably: np pixels' blocks of four channels (4-bit: the pairs' words 4
 * bytes apart in each 8-byte group; 2-bit: a byte an element; each byte's top field signed, the
 * others offset binary). */
static void mm_s8x2d_c(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out, int32_t out_pix,
                       int32_t blocks, int np)
{
    const int bpe = k->wb / 2; /* block bytes per element */
    for (int p = 0; p < np; p++)
        for (int32_t b = 0; b < blocks; b++) {
            const uint8_t *x = s->x + p * s->step;
            const uint8_t *w = k->w + b * 4 * k->row_bytes + bpe * s->w0;
            int32_t a[4] = {0, 0, 0, 0};
            for (int r = 0; r < s->rows; r++, x += s->xrow, w += bpe * s->wrow)
                for (int32_t i = 0; i < s->n; i++)
                    for (int h = 0; h < 2; h++) {
                        const uint8_t v = bpe == 2 ? w[8 * (i >> 2) + 4 * h + (i & 3)] : w[i];
                        if (bpe == 2) {
                            a[2 * h] += x[i] * ((v & 15) - 8);
                            a[2 * h + 1] += x[i] * ((int8_t)v >> 4);
                        } else {
                            a[2 * h] += x[i] * (((v >> 4 * h) & 3) - 2);
                            a[2 * h + 1] += x[i] * (h ? (int8_t)v >> 6 : ((v >> 2) & 3) - 2);
                        }
                    }
            for (int c = 0; c < 4; c++)
                out[p * out_pix + 4 * b + c] =
                    (uint8_t)mm_pw_rq(a[c], k->bias[4 * b + c], k->mult[4 * b + c],
                                      k->shift[4 * b + c], k->bk, k->qmin, k->qmax);
        }
}
#endif

/* One or two pixels (np) of a SUB8X2 layer in a build that has SUB8X2D_W4 or SUB8X2D_W2: on a
 * layer of that kind (k->kind) its blocks in the asm loops (portable builds mm_s8x2d_c), the
 * rows after the last block of four by mm_s8_rest; those layers need nothing of mm_sub8_px
 * (MM_SUB8_PX_PATH), which takes the other layers. */
static MM_NOINLINE void mm_sub8x2d_w4(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                      int32_t out_pix, int ob, int out_c, int np)
{
    const int32_t blocks = out_c >> 2;
    const int w2 = k->kind == MM_P_SUB8X2D_W2; /* a block row's bytes per element: 2 - w2 */
    uint8_t *o2[2] = {out + 4 * blocks, out + (np == 2 ? out_pix : 0) + 4 * blocks};
    if (k->kind != MM_P_SUB8X2D_W4 && !w2) {
        mm_sub8_px(k, s, out, out_pix, ob, out_c, np);
        return;
    }
    if (blocks > 0) {
#if defined(__ARM_FEATURE_DSP)
        const int32_t n = s->n > 0 && s->rows > 0 ? s->n : 0;
        mm_s8x2d st;
        void *e = &st;
        uint32_t a0, a1, b0, b1, x_, w_, pe, po, re, ro, o, v1, k_;
        mm_c8x2d_init(&st.c, k, s->x, (const int8_t *)k->w + (2 - w2) * s->w0, n,
                      np == 2 ? s->step : 0, out, np == 2 ? out_pix : 0);
        st.c.sg = k->qmax != 255; /* MM_RQ8: the clamp U is [0, 255], S's tops at 127 */
        st.c.rows = n > 0 ? s->rows : 1; /* an empty window: sums of 0 */
        st.c.xskip = s->xrow - n;
        st.c.wskip = (2 - w2) * (s->wrow - n);
        mm_s8x2d_start(s, &st.sa, np);
#if MM_USE_SUB8X2D_W2
        if (w2) { /* -10 X, -2 X, -42 X from -8 X */
            if (np == 1)
                st.sb = 0;
            st.ta = st.sa / 4, st.tb = st.sb / 4;
            st.sa += st.ta, st.sb += st.tb;
            st.ua = 4 * st.sa + st.ta, st.ub = 4 * st.sb + st.tb;
            if (np == 2) {
                st.c.halves = 2 * blocks;
                st.c.adv[0] = 0;
                st.c.adv[1] = 4 * k->row_bytes;
                MM_S8X2D_ASM(MM_S8X2D_HALF2);
            } else {
                st.c.halves = blocks;
                st.c.adv[0] = 4 * k->row_bytes;
                MM_S8X1D_ASM(MM_S8X1D_STEP2, MM_S8X1D_START2, MM_S8X1D_DIFF2);
            }
        }
#endif
#if MM_USE_SUB8X2D_W4
        if (!w2 && np == 2) {
            st.c.halves = 2 * blocks;
            st.c.adv[0] = 4;
            st.c.adv[1] = 4 * k->row_bytes - 4;
            MM_S8X2D_ASM(MM_S8X2D_HALF4);
        } else if (!w2) {
            st.c.halves = blocks;
            st.c.adv[0] = 4 * k->row_bytes;
            MM_S8X1D_ASM(MM_S8X1D_STEP, MM_S8X1D_START4, MM_S8X1D_DIFF4);
        }
#endif
        (void)a0, (void)a1, (void)b0, (void)b1, (void)x_, (void)w_, (void)pe, (void)po;
        (void)re, (void)ro, (void)o, (void)v1, (void)k_, (void)e;
#else
        mm_s8x2d_c(k, s, out, out_pix, blocks, np);
#endif
    }
    if (out_c & 3)
        mm_s8_rest(k, s, k->w + blocks * 4 * k->row_bytes, 4 * blocks, out_c, np, ob, o2);
}
#endif


#if MM_ON_SUB8D_W4 || MM_ON_SUB8D_W2 || MM_ON_SUB8D_PT_W4 || MM_ON_SUB8D_PT_W2 ||                 \
    MM_ON_SUB8D4_PT_ANY
/* One pixel whose n inputs (a multiple of 16; of 4 on SUB8D4_PT) are one contiguous run (a
 * linear; MM_SUB8D) on channel_packed rows, whole blocks of four, the requantization MM_RQ8:
 * the blocks in one asm loop, each block's sums (MM_S8_ONE4 / MM_S8_ONE2), corrections, requantization and word store
 * right after one another, as mm_pw8_dense does for 8-bit weights (mm_sub8_px's and
 * mm_s8f_one's per-block calls and sums through memory cost about 90 cycles a block), and
 * the masked sums without UXTB16 (MM_S8D_LO). The sums start
 * at multiples of the pixel's input sum X (once per pixel, as the 1x1 pairs), so that the
 * corrections are differences and exact shifts only. mm_s8d is what the loop reads and
 * advances, at fixed offsets. */
typedef struct {
    mm_pw8d d;        /* 0: the blocks' state (k: 16-byte steps of the input) */
    int32_t start[4]; /* 48: the sums' starting values */
} mm_s8d;

#if defined(__ARM_FEATURE_DSP)
/* The offsets the asm reads (a negative array size fails to compile). */
typedef char mm_s8d_ok[offsetof(mm_s8d, d.out) == 36 && offsetof(mm_s8d, start) == 48 ? 1 : -1];
/* 4-bit: a0, a1 = A, B of channels (0, 1), a2, a3 of (2, 3): channel 0 in a1, 1 in a0, 2 in
 * a3, 3 in a2 afterwards. 2-bit: a0..a3 = A, B, C, D: channel j in a(3 - j) afterwards. */
#define MM_S8D_FIX4                                                                               \
    "sub %[a0], %[a0], %[a1]\n\t"                                                                 \
    "asr %[a0], %[a0], #4\n\t"                                                                    \
    "sub %[a2], %[a2], %[a3]\n\t"                                                                 \
    "asr %[a2], %[a2], #4\n\t"
#define MM_S8D_FIX2                                                                               \
    "sub %[a0], %[a0], %[a1]\n\t"                                                                 \
    "asr %[a0], %[a0], #6\n\t"                                                                    \
    "sub %[a1], %[a1], %[a2]\n\t"                                                                 \
    "asr %[a1], %[a1], #4\n\t"                                                                    \
    "sub %[a2], %[a2], %[a3]\n\t"                                                                 \
    "asr %[a2], %[a2], #2\n\t"
/* One 4-byte group of the input against the block. A masked sum (MM_S8_LOW1's) takes its
 * halfwords straight from an AND with 0x00MM00MM, the odd ones from the word shifted right by 8
 * and ANDed with the same mask held in a register (MR): no UXTB16, one instruction less. The
 * registers free in the loop hold the masks (t5; 2-bit also p, u: set by MM_S8D_MASKS2). */
#define MM_S8D_LO(M, MR, W, A)                                                                    \
    "and %[e], %[" W "], #" M "\n\t"                                                              \
    "smlad %[" A "], %[e], %[pe], %[" A "]\n\t"                                                   \
    "and %[e], %[" MR "], %[" W "], lsr #8\n\t"                                                   \
    "smlad %[" A "], %[e], %[po], %[" A "]\n\t"
#define MM_S8D_ONE4(XT)                                                                           \
    "ldr %[pe], [%[x]], #4\n\t"                                                                   \
    "ldr %[v], [%[w]], #8\n\t"                                                                    \
    "ldr %[u], [%[w], #-4]\n\t" MM_S8_EXT1(XT) MM_S8_RAW1("v", "a0")                               \
        MM_S8D_LO("0x000F000F", "t5", "v", "a1") MM_S8_RAW1("u", "a2")                            \
            MM_S8D_LO("0x000F000F", "t5", "u", "a3")
#define MM_S8D_ONE2(XT)                                                                           \
    "ldr %[pe], [%[x]], #4\n\t"                                                                   \
    "ldr %[v], [%[w]], #4\n\t" MM_S8_EXT1(XT) MM_S8_RAW1("v", "a0")                                \
        MM_S8D_LO("0x003F003F", "p", "v", "a1") MM_S8D_LO("0x000F000F", "t5", "v", "a2")          \
            MM_S8D_LO("0x00030003", "u", "v", "a3")
#define MM_S8D_MASKS4 "mov %[t5], #0x000F000F\n\t"
#define MM_S8D_MASKS2                                                                             \
    MM_S8D_MASKS4 "mov %[p], #0x003F003F\n\t"                                                     \
                  "mov %[u], #0x00030003\n\t"
/* A block's sums: CODE, one 4-byte group of the input against the block, four an iteration
 * (k: the 16-byte steps). */
#define MM_S8D_LOOP16(CODE)                                                                       \
    "2:\n\t" CODE CODE CODE CODE "subs %[k], %[k], #1\n\t"                                        \
    "bne 2b\n\t"
/* Rows of whole words (MM_DENSE_PT_PATH's SUB8D4_PT; k: the groups): one group if k is odd,
 * then two an iteration; the shift of k leaves both conditions in the flags, which CODE
 * keeps. */
#define MM_S8D_LOOP4(CODE)                                                                        \
    "lsrs %[k], %[k], #1\n\t"                                                                     \
    "bcc 3f\n\t" CODE "3:\n\t"                                                                    \
    "beq 4f\n"                                                                                    \
    "2:\n\t" CODE CODE "subs %[k], %[k], #1\n\t"                                                  \
    "bne 2b\n"                                                                                    \
    "4:\n\t"
/* The loop over blocks; the state's address on the stack. LOOP(CODE): a block's sums
 * (MM_S8D_LOOP16 or MM_S8D_LOOP4); MASKS: CODE's mask registers; C0..C3: the registers of
 * channels 0..3 after FIX; TAIL: MM_DENSE_TAIL, or MM_DENSE_TAIL_PT (one multiplier). */
#define MM_S8D_ASM(LOOP, CODE, MASKS, FIX, C0, C1, C2, C3, TAIL)                                  \
    __asm__ volatile(                                                                             \
        "str %[p], [sp, #-4]!\n\t" /* p is the state's address at 1: (MM_DENSE_TAIL keeps it) */ \
        "1:\n\t"                                                                                  \
        "ldr %[x], [%[p], #20]\n\t"                                                               \
        "ldr %[k], [%[p], #24]\n\t"                                                               \
        "ldr %[a0], [%[p], #48]\n\t"                                                              \
        "ldr %[a1], [%[p], #52]\n\t"                                                              \
        "ldr %[a2], [%[p], #56]\n\t"                                                              \
        "ldr %[a3], [%[p], #60]\n\t" MASKS LOOP(CODE) FIX                                          \
            TAIL(C0, C1, C2, C3, "pe", "po", "e", "v", "x", "k", "u", "t5")                        \
        "add sp, sp, #4\n\t"                                                                      \
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [x] "=&r"(xr),         \
          [k] "=&r"(k), [w] "+r"(w), [p] "+r"(p), [pe] "=&r"(pe), [po] "=&r"(po),               \
          [e] "=&r"(e), [v] "=&r"(v), [u] "=&r"(u), [t5] "=&r"(t5)                               \
        :                                                                                         \
        : "cc", "memory")
#endif

/* pt: the layer's one multiplier and shift (mm_dense_pt), else one per channel; d4: rows of
 * whole words (MM_S8D_LOOP4, the input sign d4 - 1), else of whole 16-byte steps. */
static MM_INLINE void mm_s8_dense(const uint8_t *x, const uint8_t *w, int32_t n,
                                  const mm_quant_params *q, int out_c, uint8_t *out, const int wb,
                                  const int pt, const int d4)
{
    const int is = d4 ? d4 - 1 : q->in_signed;
    const mm_c8src s = {x, 0, n, n, 0, 0, n, n, 1};
    const int32_t xs = mm_s8_xsum(&s, 0, is);
    const uint32_t ux = (uint32_t)xs;
    const mm_s8d st0 = {
        mm_dense_state(q, x, d4 ? n >> 2 : n >> 4, out_c >> 2, out, 0),
        {(int32_t)(0u - (wb == 4 ? 8u : 42u) * ux), (int32_t)(0u - (wb == 4 ? 8u : 42u) * ux),
         (int32_t)(0u - (wb == 4 ? 8u : 10u) * ux), (int32_t)(0u - (wb == 4 ? 8u : 2u) * ux)}};
    mm_s8d st = st0;
#if defined(__ARM_FEATURE_DSP)
    mm_s8d *p = &st;
    uint32_t a0, a1, a2, a3, pe, po, e, v, u, t5;
    int32_t k;
    const uint8_t *xr;
#define MM_S8D_FOUR(LOOP, TAIL)                                                                   \
    do {                                                                                          \
        if (wb == 4 && is)                                                                        \
            MM_S8D_ASM(LOOP, MM_S8D_ONE4("sxtb16"), MM_S8D_MASKS4, MM_S8D_FIX4, "a1", "a0", "a3", \
                       "a2", TAIL);                                                               \
        else if (wb == 4)                                                                         \
            MM_S8D_ASM(LOOP, MM_S8D_ONE4("uxtb16"), MM_S8D_MASKS4, MM_S8D_FIX4, "a1", "a0", "a3", \
                       "a2", TAIL);                                                               \
        else if (is)                                                                              \
            MM_S8D_ASM(LOOP, MM_S8D_ONE2("sxtb16"), MM_S8D_MASKS2, MM_S8D_FIX2, "a3", "a2", "a1", \
                       "a0", TAIL);                                                               \
        else                                                                                      \
            MM_S8D_ASM(LOOP, MM_S8D_ONE2("uxtb16"), MM_S8D_MASKS2, MM_S8D_FIX2, "a3", "a2", "a1", \
                       "a0", TAIL);                                                               \
    } while (0)
    if (d4)
        MM_S8D_FOUR(MM_S8D_LOOP4, MM_DENSE_TAIL_PT);
    else if (pt)
        MM_S8D_FOUR(MM_S8D_LOOP16, MM_DENSE_TAIL_PT);
    else
        MM_S8D_FOUR(MM_S8D_LOOP16, MM_DENSE_TAIL);
#undef MM_S8D_FOUR
    (void)a0, (void)a1, (void)a2, (void)a3, (void)pe, (void)po, (void)e, (void)v, (void)u;
    (void)t5, (void)k, (void)xr, (void)p;
#else
    const int32_t blk = 4 * mm_bytes(n, wb);
    mm_pw8d *b = &st.d;
    for (; b->out != b->end; w += blk) { /* the asm's steps, portably */
        int32_t sums[4], d[4];
        mm_s8_one(&s, w, 0, is, wb, sums);
        mm_s8_dots(sums, xs, wb, d);
        for (int i = 0; i < 4; i++, b->bias++, b->mult += !pt, b->shift += !pt)
            *b->out++ = (uint8_t)mm_pw_rq(d[i], *b->bias, *b->mult, *b->shift, q->bias_shift,
                                          q->qmin, q->qmax);
    }
#endif
}
#if MM_ON_SUB8D_W4
static MM_NOINLINE void mm_s8d_w4(const uint8_t *x, const uint8_t *w, int32_t n,
                                  const mm_quant_params *q, int out_c, uint8_t *out)
{
    mm_s8_dense(x, w, n, q, out_c, out, 4, 0, 0);
}
#endif
#if MM_ON_SUB8D_W2
static MM_NOINLINE void mm_s8d_w2(const uint8_t *x, const uint8_t *w, int32_t n,
                                  const mm_quant_params *q, int out_c, uint8_t *out)
{
    mm_s8_dense(x, w, n, q, out_c, out, 2, 0, 0);
}
#endif
#if MM_ON_SUB8D_PT_W4
static MM_NOINLINE void mm_s8d_pt_w4(const uint8_t *x, const uint8_t *w, int32_t n,
                                     const mm_quant_params *q, int out_c, uint8_t *out)
{
    mm_s8_dense(x, w, n, q, out_c, out, 4, 1, 0);
}
#endif
#if MM_ON_SUB8D_PT_W2
static MM_NOINLINE void mm_s8d_pt_w2(const uint8_t *x, const uint8_t *w, int32_t n,
                                     const mm_quant_params *q, int out_c, uint8_t *out)
{
    mm_s8_dense(x, w, n, q, out_c, out, 2, 1, 0);
}
#endif
#endif
#endif

#if MM_USE_SUB8PD_W4 || MM_USE_SUB8PD_W2 || MM_USE_SUB8PD_W2T || MM_USE_CONV8P_D || \
    MM_ON_PWSUB8PD_W4 || MM_ON_PWSUB8PD_W2
/* SUB8P's pairs under MM_SUB8PD (unsigned inputs, the requantization MM_RQ8, whole blocks
 * of four channels, rows of a word or more and a 0-3 byte tail; and mm_pointwise_sub's,
 * PWSUB8PD): mm_conv8p_d's loop on channel_packed weights, a block's two halves (channels
 * 0, 1 and 2, 3, two pixels each) as two copies of the row loop (2-bit: their fields' masks
 * differ; 4-bit: one copy, MM_S8P_W4_ASM; four steps an iteration), each half requantized
 * and stored right after its sums as mm_c8x2d's (MM_S8P_OUT). A weight word's fields are
 * taken in place: an offset-binary field by one AND with 0x00MM00MM of the word (elements 0,
 * 2) and of the word shifted right by 8 (elements 1, 3), halfwords that SMLAD meets with the
 * inputs' UXTB16 pairs; the top field (two's complement) by SXTB16 of the word masked to
 * it. So each sum is 2^f (S + o X) (f the field's shift, o its offset, X the pixel's input
 * sum): it starts at -2^f o X (start[], per half and pixel) and is shifted down by f before
 * the requantization.
 * kws's 2-bit stem: 928 k est. M4 cycles on mm_sub8_px (calls, sums through memory, C
 * requantization) -> 777 k, against 862 k for its W8/A8 stem on mm_conv8p_d, measured. */
typedef struct {
    mm_c8x2d c;        /* halves (44): blocks left (4-bit: halves); adv: w's after each half */
    int32_t start[8];  /* 116: half 0's a0, a1, b0, b1; 132: half 1's */
    int32_t n;         /* 148: the row's bytes in whole words (the tail's after them) */
} mm_s8p;

#if defined(__ARM_FEATURE_DSP)
typedef char mm_s8p_ok[offsetof(mm_s8p, start) == 116 && offsetof(mm_s8p, n) == 148 ? 1 : -1];
/* Both pixels' input words extended (as MM_C8X2D_STEP), the weight word in o (w += GS). */
#define MM_S8P_IN(GS)                                                                             \
    "ldr %[re], [sp, #4]\n\t"                                                                     \
    "ldr %[re], [%[x], %[re]]\n\t"                                                                \
    "ldr %[pe], [%[x]], #4\n\t"                                                                   \
    "ldr %[o], [%[w]], #" GS "\n\t"                                                               \
    "uxtb16 %[ro], %[re], ror #8\n\t"                                                             \
    "uxtb16 %[re], %[re]\n\t"                                                                     \
    "uxtb16 %[po], %[pe], ror #8\n\t"                                                             \
    "uxtb16 %[pe], %[pe]\n\t"                                                                     \
    "lsr %[v1], %[o], #8\n\t"
/* An offset-binary field (mask M = 0x00MM00MM) into sums A (pixel 0) and B (pixel 1). */
#define MM_S8P_OB(M, A, B)                                                                        \
    "and %[e], %[o], #" M "\n\t"                                                                  \
    "smlad %[" A "], %[e], %[pe], %[" A "]\n\t"                                                   \
    "smlad %[" B "], %[e], %[re], %[" B "]\n\t"                                                   \
    "and %[e], %[v1], #" M "\n\t"                                                                 \
    "smlad %[" A "], %[e], %[po], %[" A "]\n\t"                                                   \
    "smlad %[" B "], %[e], %[ro], %[" B "]\n\t"
/* The top field (two's complement, mask M in every byte): o is spent. */
#define MM_S8P_TOP(M, A, B)                                                                       \
    "and %[o], %[o], #" M "\n\t"                                                                  \
    "sxtb16 %[e], %[o]\n\t"                                                                       \
    "smlad %[" A "], %[e], %[pe], %[" A "]\n\t"                                                   \
    "smlad %[" B "], %[e], %[re], %[" B "]\n\t"                                                   \
    "sxtb16 %[e], %[o], ror #8\n\t"                                                               \
    "smlad %[" A "], %[e], %[po], %[" A "]\n\t"                                                   \
    "smlad %[" B "], %[e], %[ro], %[" B "]\n\t"
/* A half's row: its steps (n bytes: one if n & 4, two if n & 8, then four an iteration; the
 * shifts of n leave each condition in the flags, which the steps keep), e the state again
 * after them. */
#define MM_S8P_ROW(STEP)                                                                          \
    "ldr %[k], [%[e], #148]\n\t"                                                                  \
    "lsrs %[k], %[k], #3\n\t"                                                                     \
    "bcc 2f\n\t" STEP "2:\n\t"                                                                    \
    "lsrs %[k], %[k], #1\n\t"                                                                     \
    "bcc 3f\n\t" STEP STEP "3:\n\t"                                                               \
    "beq 4f\n"                                                                                    \
    "5:\n\t" STEP STEP STEP STEP "subs %[k], %[k], #1\n\t"                                        \
    "bne 5b\n"                                                                                    \
    "4:\n\t"                                                                                      \
    "ldr %[e], [sp]\n\t"
/* One half: its sums from start[] (S: the offset of its first), the row (MM_S8P_ROW), FIX (the
 * shifts), the end (MM_S8P_OUT, labels L6 and L8), then ADV. */
#define MM_S8P_HALF(STEP, S0, S1, S2, S3, FIX, L6, L8, ADV)                                       \
    "ldr %[x], [%[e], #20]\n\t"                                                                   \
    "ldr %[w], [%[e], #60]\n\t"                                                                   \
    "ldr %[a0], [%[e], #" S0 "]\n\t"                                                              \
    "ldr %[a1], [%[e], #" S1 "]\n\t"                                                              \
    "ldr %[b0], [%[e], #" S2 "]\n\t"                                                              \
    "ldr %[b1], [%[e], #" S3 "]\n\t" MM_S8P_ROW(STEP) FIX MM_S8P_OUT(L6, L8) ADV
/* MM_C8X2D_OUT with the clamp S out of line (MM_S8P_SOUT, at L6, back to L8): the clamp U
 * (a stem's) takes no branch. */
#define MM_S8P_OUT(L6, L8)                                                                        \
    "ldr %[pe], [%[e]]\n\t"                                                                       \
    "ldr %[po], [%[e], #4]\n\t"                                                                   \
    "ldr %[re], [%[e], #8]\n\t"                                                                   \
    "ldr %[ro], [%[e], #12]\n\t" MM_C8X2D_RQ("a0", "b0") MM_C8X2D_RQ("a1", "b1")                  \
    "str %[pe], [%[e]]\n\t"                                                                       \
    "str %[po], [%[e], #4]\n\t"                                                                   \
    "str %[re], [%[e], #8]\n\t"                                                                   \
    "ldr %[k], [%[e], #48]\n\t"                                                                   \
    "cmp %[k], #0\n\t"                                                                            \
    "bne " L6 "f\n\t" MM_C8X2D_SAT("usat")                                                        \
    "bfi %[a0], %[a1], #8, #8\n\t"                                                                \
    "bfi %[b0], %[b1], #8, #8\n\t" L8 ":\n\t"                                                     \
    "ldr %[x], [%[e], #52]\n\t"                                                                   \
    "ldr %[w], [%[e], #56]\n\t"                                                                   \
    "strh %[a0], [%[x]], #2\n\t"                                                                  \
    "strh %[b0], [%[w]], #2\n\t"                                                                  \
    "str %[x], [%[e], #52]\n\t"                                                                   \
    "str %[w], [%[e], #56]\n\t"
#define MM_S8P_SOUT(L6, L8)                                                                       \
    L6 ":\n\t" MM_C8X2D_SAT("ssat")                                                               \
    "bfi %[a0], %[a1], #8, #8\n\t"                                                                \
    "bfi %[b0], %[b1], #8, #8\n\t"                                                                \
    "ldr %[k], [%[e], #16]\n\t" /* the bytes raised to qmin (signed bytewise maximum) */          \
    "ssub8 %[x], %[a0], %[k]\n\t"                                                                 \
    "sel %[a0], %[a0], %[k]\n\t"                                                                  \
    "ssub8 %[x], %[b0], %[k]\n\t"                                                                 \
    "sel %[b0], %[b0], %[k]\n\t"                                                                  \
    "b " L8 "b\n\t"
/* w += adv[j] (of the state at e). */
#define MM_S8P_ADV(J)                                                                             \
    "ldr %[x], [%[e], #60]\n\t"                                                                   \
    "ldr %[w], [%[e], #" J "]\n\t"                                                                \
    "add %[x], %[x], %[w]\n\t"                                                                    \
    "str %[x], [%[e], #60]\n\t"
#define MM_S8P_ASM(HALF0, HALF1)                                                                  \
    __asm__ volatile(                                                                             \
        "sub sp, sp, #8\n\t"                                                                      \
        "str %[e], [sp]\n\t"                                                                      \
        "ldr %[k], [%[e], #76]\n\t"                                                               \
        "str %[k], [sp, #4]\n\t"                                                                  \
        "1:\n\t" HALF0 HALF1                                                                      \
        "ldr %[k], [%[e], #44]\n\t"                                                               \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "str %[k], [%[e], #44]\n\t"                                                               \
        "bne 1b\n\t"                                                                              \
        "add sp, sp, #8\n\t"                                                                      \
        "b 9f\n\t" MM_S8P_SOUT("16", "18") MM_S8P_SOUT("26", "28") "9:\n\t" MM_S8P_OPERANDS)
#define MM_S8P_OPERANDS                                                                           \
    : [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1), [x] "=&r"(x_),             \
      [w] "=&r"(w_), [pe] "=&r"(pe), [po] "=&r"(po), [re] "=&r"(re), [ro] "=&r"(ro),            \
      [o] "=&r"(o), [v1] "=&r"(v1), [k] "=&r"(k_), [e] "+r"(e)                                  \
    :                                                                                             \
    : "cc", "memory"
/* 2-bit: half 0 fields 0, 1 (offset binary, shifts 0, 2), half 1 fields 2 (offset binary,
 * shift 4) and 3 (top, shift 6), both on the same words (adv[0] = 0: no advance after half 0).
 * 4-bit: each half one channel pair's words (8 bytes a group): the low field offset binary,
 * the top one shifted by 4. T: the rows' tail step (SUB8PD_W2T; "": none). */
#define MM_S8P_W2_F0 MM_S8P_OB("0x00030003", "a0", "b0") MM_S8P_OB("0x000C000C", "a1", "b1")
#define MM_S8P_W2_F1 MM_S8P_OB("0x00300030", "a0", "b0") MM_S8P_TOP("0xC0C0C0C0", "a1", "b1")
#define MM_S8P_W2_HALF0_(T)                                                                       \
    MM_S8P_HALF(MM_S8P_IN("4") MM_S8P_W2_F0, "116", "120", "124", "128",                          \
                T "asr %[a1], %[a1], #2\n\tasr %[b1], %[b1], #2\n\t", "16", "18", "")
#define MM_S8P_W2_HALF1_(T)                                                                       \
    MM_S8P_HALF(MM_S8P_IN("4") MM_S8P_W2_F1, "132", "136", "140", "144",                          \
                T "asr %[a0], %[a0], #4\n\tasr %[b0], %[b0], #4\n\t"                              \
                  "asr %[a1], %[a1], #6\n\tasr %[b1], %[b1], #6\n\t",                             \
                "26", "28", MM_S8P_ADV("68"))
#define MM_S8P_W2_HALF0 MM_S8P_W2_HALF0_("")
#define MM_S8P_W2_HALF1 MM_S8P_W2_HALF1_("")
/* The 2-bit tail step (FIELDS: the half's): the block's word after the head words (w where
 * the row ends: the nt tail bytes, then the block's zero bytes) against the patches' tail
 * words extended once per pair (xt, zeros above the tail). */
#define MM_S8P_W2_TAIL(FIELDS)                                                                    \
    "ldr %[pe], [%[e], #100]\n\t"                                                                 \
    "ldr %[po], [%[e], #104]\n\t"                                                                 \
    "ldr %[re], [%[e], #108]\n\t"                                                                 \
    "ldr %[ro], [%[e], #112]\n\t"                                                                 \
    "ldr %[o], [%[w]]\n\t"                                                                        \
    "lsr %[v1], %[o], #8\n\t" FIELDS "ldr %[e], [sp]\n\t"
#define MM_S8P_W4_FIELDS MM_S8P_OB("0x000F000F", "a0", "b0") MM_S8P_TOP("0xF0F0F0F0", "a1", "b1")
/* 4-bit: both halves one copy of the code (their fields the same, only their starts and
 * advances differ: by the halves left's parity, h, the state's halves counting both), then
 * the rows' tails (nt bytes, 0: none) as one more step: the word ending with the half's tail
 * bytes (t) shifted down to them (zeros above), against the patches' tail words extended
 * once per pair (xt); t advanced by tadv[h] with w. One copy: a copy of the half is about
 * 0.8 kB (seven steps of 84 B, its end and tail), and ic's mixed kernel .text has 24,436 B
 * of 24,576 with one (ResNet-8's stem: 1,377 k est. M4 cycles, its W8/A8 stem 1,280 k). */
#define MM_S8P_W4_TAIL                                                                            \
    "ldr %[k], [%[e], #96]\n\t"                                                                   \
    "cmp %[k], #0\n\t"                                                                            \
    "beq 7f\n\t"                                                                                  \
    "ldr %[x], [%[e], #80]\n\t"                                                                   \
    "ldr %[v1], [%[e], #92]\n\t"                                                                  \
    "ldr %[pe], [%[e], #100]\n\t"                                                                 \
    "ldr %[po], [%[e], #104]\n\t"                                                                 \
    "ldr %[re], [%[e], #108]\n\t"                                                                 \
    "ldr %[ro], [%[e], #112]\n\t"                                                                 \
    "ldr %[o], [%[x]]\n\t"                                                                        \
    "lsr %[o], %[o], %[v1]\n\t"                                                                   \
    "lsr %[v1], %[o], #8\n\t" MM_S8P_W4_FIELDS "ldr %[e], [sp]\n\t"                               \
    "7:\n\t"
#define MM_S8P_W4_ASM                                                                             \
    __asm__ volatile(                                                                             \
        "sub sp, sp, #8\n\t"                                                                      \
        "str %[e], [sp]\n\t"                                                                      \
        "ldr %[k], [%[e], #76]\n\t"                                                               \
        "str %[k], [sp, #4]\n\t"                                                                  \
        "ldr %[k], [%[e], #44]\n\t"                                                               \
        "ldr %[w], [%[e], #60]\n\t"                                                               \
        "1:\n\t" /* a half (k: the halves left, w: its weights), its sums from start[4 h] */     \
        "ldr %[x], [%[e], #20]\n\t"                                                               \
        "and %[k], %[k], #1\n\t"                                                                  \
        "add %[k], %[e], %[k], lsl #4\n\t"                                                        \
        "ldr %[a0], [%[k], #116]\n\t"                                                             \
        "ldr %[a1], [%[k], #120]\n\t"                                                             \
        "ldr %[b0], [%[k], #124]\n\t"                                                             \
        "ldr %[b1], [%[k], #128]\n\t" MM_S8P_ROW(MM_S8P_IN("8") MM_S8P_W4_FIELDS) MM_S8P_W4_TAIL  \
        "asr %[a1], %[a1], #4\n\t"                                                                \
        "asr %[b1], %[b1], #4\n\t" MM_S8P_OUT("16", "18")                                         \
        "ldr %[k], [%[e], #44]\n\t" /* w += adv[h], t += tadv[h]: the next half's k and w */     \
        "ldr %[w], [%[e], #60]\n\t"                                                               \
        "ldr %[po], [%[e], #80]\n\t"                                                              \
        "and %[x], %[k], #1\n\t"                                                                  \
        "add %[x], %[e], %[x], lsl #2\n\t"                                                        \
        "ldr %[pe], [%[x], #64]\n\t"                                                              \
        "ldr %[x], [%[x], #84]\n\t"                                                               \
        "add %[w], %[w], %[pe]\n\t"                                                               \
        "add %[po], %[po], %[x]\n\t"                                                              \
        "str %[w], [%[e], #60]\n\t"                                                               \
        "str %[po], [%[e], #80]\n\t"                                                              \
        "subs %[k], %[k], #1\n\t"                                                                 \
        "str %[k], [%[e], #44]\n\t"                                                               \
        "bne 1b\n\t"                                                                              \
        "add sp, sp, #8\n\t"                                                                      \
        "b 9f\n\t" MM_S8P_SOUT("16", "18") "9:\n\t" MM_S8P_OPERANDS)
#define MM_S8P_RUN(st, HALF0, HALF1) MM_S8P_RUN_ASM(st, MM_S8P_ASM(HALF0, HALF1))
#define MM_S8P_RUN_ASM(st, ASM)                                                                   \
    do {                                                                                          \
        void *e = &(st);                                                                          \
        uint32_t a0, a1, b0, b1, x_, w_, pe, po, re, ro, o, v1, k_;                               \
        ASM;                                                                                      \
        (void)a0, (void)a1, (void)b0, (void)b1, (void)x_, (void)w_, (void)pe, (void)po;           \
        (void)re, (void)ro, (void)o, (void)v1, (void)k_, (void)e;                                 \
    } while (0)
#elif MM_USE_SUB8PD_W4 || MM_USE_SUB8PD_W2 || MM_USE_SUB8PD_W2T || MM_ON_PWSUB8PD_W4 || \
    MM_ON_PWSUB8PD_W2
/* The asm's sums, portably: field j of element i (byte i of its group's word; 4-bit: the
 * half's pair word; a tail's: byte i - n of the half's tail bytes, ending where t's word
 * ends), its masked value (the top field's as an int8). */
static void mm_s8p_c(mm_s8p *st, const mm_conv_ctx *k, const int wb)
{
    const int32_t n = 8 * st->c.n8 + st->c.n4, nt = st->c.nt;
    for (; st->c.halves > 0; st->c.halves--)
        for (int h = 0; h < 2; h++) {
            const int f0 = wb == 4 ? 0 : 4 * h, f1 = wb == 4 ? 4 : 4 * h + 2; /* field shifts */
            const int top = wb == 4 || h == 1, m = wb == 4 ? 15 : 3;
            int32_t a[2] = {st->start[4 * h], st->start[4 * h + 1]};
            int32_t b[2] = {st->start[4 * h + 2], st->start[4 * h + 3]};
            for (int32_t i = 0; i < n + nt; i++) {
                const int32_t g = (wb == 4 ? 8 : 4) * (i >> 2) + (i & 3);
                const uint8_t wv = (const uint8_t)(i >= n ? st->c.t[4 - nt + i - n] : st->c.w[g]);
                const int32_t v0 = wv & (m << f0);
                const int32_t v1 = top ? (int8_t)(wv & (m << f1)) : wv & (m << f1);
                const int32_t x0 = st->c.x[i], x1 = st->c.x[st->c.step + i];
                a[0] += x0 * v0;
                a[1] += x0 * v1;
                b[0] += x1 * v0;
                b[1] += x1 * v1;
            }
            for (int c = 0; c < 2; c++, st->c.bias++, st->c.mult++, st->c.shift++) {
                const int f = c ? f1 : f0;
                st->c.out0[c] = (uint8_t)mm_pw_rq(a[c] >> f, *st->c.bias, *st->c.mult,
                                                  *st->c.shift, k->bk, k->qmin, k->qmax);
                st->c.out1[c] = (uint8_t)mm_pw_rq(b[c] >> f, *st->c.bias, *st->c.mult,
                                                  *st->c.shift, k->bk, k->qmin, k->qmax);
            }
            st->c.out0 += 2;
            st->c.out1 += 2;
            st->c.w += st->c.adv[h];
            st->c.t += st->c.tadv[h];
        }
}
#endif

#if MM_USE_CONV8P_D
#if defined(__ARM_FEATURE_DSP)
/* The patches' tails (mm_c8p_pass's: nt = 0 branches past), e holding the state, as
 * MM_S8P_HALF's FIX: t advanced by tadv[j] (J its offset), label L. */
#define MM_C8P_TAIL(J, L)                                                                         \
    "ldr %[k], [%[e], #96]\n\t"                                                                   \
    "cmp %[k], #0\n\t"                                                                            \
    "beq " L "f\n\t"                                                                              \
    "ldr %[x], [%[e], #80]\n\t"                                                                   \
    "ldr %[re], [%[e], #92]\n\t"                                                                  \
    "ldr %[o], [%[x]]\n\t"                                                                        \
    "ldr %[v1], [%[x], %[k]]\n\t"                                                                 \
    "ldr %[pe], [%[e], #100]\n\t"                                                                 \
    "ldr %[po], [%[e], #104]\n\t"                                                                 \
    "ldr %[ro], [%[e], #112]\n\t"                                                                 \
    "lsr %[o], %[o], %[re]\n\t"                                                                   \
    "lsr %[v1], %[v1], %[re]\n\t"                                                                 \
    "ldr %[re], [%[e], #108]\n\t"                                                                 \
    "sxtb16 %[w], %[o]\n\t"                                                                       \
    "sxtb16 %[o], %[o], ror #8\n\t"                                                               \
    "smlad %[a0], %[w], %[pe], %[a0]\n\t"                                                         \
    "smlad %[a0], %[o], %[po], %[a0]\n\t"                                                         \
    "smlad %[b0], %[w], %[re], %[b0]\n\t"                                                         \
    "smlad %[b0], %[o], %[ro], %[b0]\n\t"                                                         \
    "sxtb16 %[w], %[v1]\n\t"                                                                      \
    "sxtb16 %[o], %[v1], ror #8\n\t"                                                              \
    "smlad %[a1], %[w], %[pe], %[a1]\n\t"                                                         \
    "smlad %[a1], %[o], %[po], %[a1]\n\t"                                                         \
    "smlad %[b1], %[w], %[re], %[b1]\n\t"                                                         \
    "smlad %[b1], %[o], %[ro], %[b1]\n\t"                                                         \
    "ldr %[k], [%[e], #" J "]\n\t"                                                                \
    "add %[x], %[x], %[k]\n\t"                                                                    \
    "str %[x], [%[e], #80]\n\t" L ":\n\t"
#endif

/* CONV8P's pairs under MM_CONV8P_KIND (unsigned inputs, the requantization MM_RQ8, whole
 * blocks of four channels, rows of a word or more): the head of the two patches as one row of
 * words, then the tails (a lone pixel: a pair of itself, written once). On DSP cores
 * mm_sub8p_d's loop (MM_S8P_ASM) with mm_c8x2d's step, its sums from 0: a block's two halves
 * as two copies (their advances fixed), four steps an iteration after one if n & 4 and two if
 * n & 8, the clamp S out of line (mm_c8x2d's loop, for rows of any count, took 135 est. M4
 * cycles per half besides its steps on kws's stem, measured). */
static MM_NOINLINE void mm_conv8p_d(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                    int32_t out_pix, int ob, int out_c, int np)
{
    const int32_t row = k->row, n = s->n, nt = s->tail, step = np == 2 ? row : 0;
    mm_s8p st;
    (void)ob;
    mm_c8x2d_init(&st.c, k, s->x, (const int8_t *)k->w, n, step, out, np == 2 ? out_pix : 0);
    st.c.t = (const int8_t *)k->w + 4 * n + nt - 4;
    st.c.tadv[0] = 2 * nt;
    st.c.tadv[1] = 4 * row - 2 * nt;
    st.c.sh = 8 * (4 - nt);
    st.c.nt = nt;
    if (nt) { /* each patch's last word, shifted down to its tail bytes */
        const uint32_t v0 = mm_c8p_ld(s->x + row - 4) >> st.c.sh;
        const uint32_t v1 = mm_c8p_ld(s->x + step + row - 4) >> st.c.sh;
        st.c.xt[0] = mm_uxtb16(v0);
        st.c.xt[1] = mm_uxtb16_8(v0);
        st.c.xt[2] = mm_uxtb16(v1);
        st.c.xt[3] = mm_uxtb16_8(v1);
    }
#if defined(__ARM_FEATURE_DSP)
    st.c.halves = out_c >> 2;
    st.n = n;
    for (int j = 0; j < 8; j++)
        st.start[j] = 0;
    MM_S8P_RUN(st,
               MM_S8P_HALF(MM_C8X2D_STEP("uxtb16"), "116", "120", "124", "128",
                           MM_C8P_TAIL("84", "19"), "16", "18", MM_S8P_ADV("64")),
               MM_S8P_HALF(MM_C8X2D_STEP("uxtb16"), "132", "136", "140", "144",
                           MM_C8P_TAIL("88", "29"), "26", "28", MM_S8P_ADV("68")));
#else
    st.c.halves = out_c >> 1;
    mm_c8x2d_c(&st.c, k, 0);
#endif
}
#endif

#if MM_USE_SUB8PD_W4 || MM_USE_SUB8PD_W2 || MM_USE_SUB8PD_W2T || MM_ON_PWSUB8PD_W4 || \
    MM_ON_PWSUB8PD_W2
/* One or two pixels (np; a lone one as a pair of itself, written once) of SUB8P on the byte
 * patches at s->x (pixel 1's s->step bytes on: mm_pointwise_sub's pairs run straight from its
 * input), every block of four channels; rows may end in a tail (s->tail bytes after s->n:
 * 4-bit, and 2-bit where `tail`, SUB8PD_W2T, compiled apart so that the 2-bit rows of whole
 * words take no test for it). Start values: field j's offset o_j (2-bit: 2; 4-bit: 8; the top
 * field's: 0) times 2^f. */
static MM_INLINE void mm_sub8p_d(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                 int32_t out_pix, int out_c, int np, const int wb, const int tail)
{
    const int32_t n = s->n, nt = s->tail, step = np == 2 ? s->step : 0;
    uint32_t t0 = 0, t1 = 0; /* the pixels' input sums: one short loop (mm_s8_xsum's, inlined
                              * for each pixel, took 250 B of ic's mixed kernel .text) */
    for (int32_t i = 0; i < n; i += 4) {
        t0 = mm_usada8(mm_s8_ld(s->x + i), t0);
        t1 = mm_usada8(mm_s8_ld(s->x + step + i), t1);
    }
    int32_t x0 = (int32_t)t0, x1 = (int32_t)t1;
    static const int8_t off[2][4] = {{2, 8, 32, 0}, {8, 0, 8, 0}}; /* 2-bit, 4-bit */
    const int8_t *const o = off[wb == 4];
    mm_s8p st;
    mm_c8x2d_init(&st.c, k, s->x, (const int8_t *)k->w, n, step, out, np == 2 ? out_pix : 0);
    st.c.sg = k->qmax != 255; /* MM_RQ8: the clamp U is [0, 255], S's tops at 127 */
    st.c.halves = out_c >> 2;
    st.n = n;
    st.c.adv[0] = wb == 4 ? 4 : 0;
    st.c.adv[1] = 4 * k->row_bytes - st.c.adv[0];
    if (tail && nt) { /* each patch's last word, shifted down to its tail bytes */
        const int sh = 8 * (4 - nt);
        const uint32_t v0 = mm_s8_ld(s->x + n + nt - 4) >> sh;
        const uint32_t v1 = mm_s8_ld(s->x + step + n + nt - 4) >> sh;
        x0 += (int32_t)mm_usada8(v0, 0);
        x1 += (int32_t)mm_usada8(v1, 0);
        st.c.xt[0] = mm_uxtb16(v0);
        st.c.xt[1] = mm_uxtb16_8(v0);
        st.c.xt[2] = mm_uxtb16(v1);
        st.c.xt[3] = mm_uxtb16_8(v1);
        /* the word ending with the tails' bytes: 4-bit pair (0, 1)'s, then (2, 3)'s; 2-bit
         * the block's, for both halves */
        st.c.t = (const int8_t *)k->w + (wb == 4 ? 2 * n : n) + nt - 4;
        st.c.tadv[0] = wb == 4 ? nt : 0;
        st.c.tadv[1] = 4 * k->row_bytes - st.c.tadv[0];
        st.c.sh = sh;
        st.c.nt = nt;
    }
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 2; j++) {
            st.start[4 * h + j] = -o[2 * h + j] * x0;
            st.start[4 * h + 2 + j] = -o[2 * h + j] * x1;
        }
#if defined(__ARM_FEATURE_DSP)
    if (wb == 4) {
        st.c.halves = 2 * (out_c >> 2);
        MM_S8P_RUN_ASM(st, MM_S8P_W4_ASM);
    } else if (tail)
        MM_S8P_RUN(st, MM_S8P_W2_HALF0_(MM_S8P_W2_TAIL(MM_S8P_W2_F0)),
                   MM_S8P_W2_HALF1_(MM_S8P_W2_TAIL(MM_S8P_W2_F1)));
    else
        MM_S8P_RUN(st, MM_S8P_W2_HALF0, MM_S8P_W2_HALF1);
#else
    mm_s8p_c(&st, k, wb);
#endif
}

#if MM_USE_SUB8PD_W4 || MM_ON_PWSUB8PD_W4
static MM_NOINLINE void mm_sub8p_d4(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                    int32_t out_pix, int ob, int out_c, int np)
{
    (void)ob;
    mm_sub8p_d(k, s, out, out_pix, out_c, np, 4, 1);
}
#endif
#if MM_USE_SUB8PD_W2 || MM_ON_PWSUB8PD_W2
static MM_NOINLINE void mm_sub8p_d2(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                    int32_t out_pix, int ob, int out_c, int np)
{
    (void)ob;
    mm_sub8p_d(k, s, out, out_pix, out_c, np, 2, 0);
}
#endif
#if MM_USE_SUB8PD_W2T
static MM_NOINLINE void mm_sub8p_t2(const mm_conv_ctx *k, const mm_c8src *s, uint8_t *out,
                                    int32_t out_pix, int ob, int out_c, int np)
{
    (void)ob;
    mm_sub8p_d(k, s, out, out_pix, out_c, np, 2, 1);
}
#endif
#endif
#endif

#if MM_USE_PWSUB8F
/* ---- mm_pointwise_sub's fast sub8 path: 8-bit unsigned inputs, in_c a multiple of 4, the
 * fast requantization (MM_PW_FAST) ---------------------------------------------------------
 *
 * The same sums as the sub8 path (channel_packed weights), but every pixel pair of a layer
 * and every block of four channels of each in one asm loop (MM_S8F_ASM, as mm_pw8_two8's
 * blocks: its state, mm_s8f, at fixed offsets in one register throughout; each pair's walk,
 * outputs and input sums in the asm too; each half's loop of eight words entered part-way and
 * ended by pixel a's input pointer; the corrections and mm_pw_u's requantization on the
 * registers the loop leaves; mm_pw8_two8's block end): no sums through memory, no per-block
 * or per-pair code in C. 4-bit: each half of a block of four channels is a channel pair,
 * (A, B) -> s0 = B - 8 X, s1 = (A - B) / 16. 2-bit: pass 2 (C, D) -> channels 0, 1
 * (s0 = D - 2 X, s1 = (C - D) / 4 - 2 X), keeping C for pass 1 (A, B) -> channels 2, 3
 * (s2 = (B - C) / 16 - 2 X, s3 = (A - B) / 64). The divisions are exact (shifts); the X terms
 * are the sums' starting values (MM_S8F_FIX4). */

/* Natural packed rows (the out_c % 4 rows after the last block) against one pixel: n elements,
 * a multiple of 4, so every weight byte is whole. */
static int32_t mm_s8f_row(const uint8_t *x, const uint8_t *w, int32_t n, int wb)
{
    int32_t a = 0;
    if (wb == 4)
        for (int32_t i = 0; i < n; i += 2, w++) {
            const int32_t b = (int8_t)*w; /* (b << 28) >> 28: the low field sign-extended */
            a += x[i] * ((int32_t)((uint32_t)b << 28) >> 28) + x[i + 1] * (b >> 4);
        }
    else
        for (int32_t i = 0; i < n; i += 4, w++) {
            const int32_t b = (int8_t)*w;
            a += x[i] * ((int32_t)((uint32_t)b << 30) >> 30) +
                 x[i + 1] * ((int32_t)((uint32_t)b << 28) >> 30) +
                 x[i + 2] * ((int32_t)((uint32_t)b << 26) >> 30) + x[i + 3] * (b >> 6);
        }
    return a;
}

/* The rows from channel co on (natural rows at w) of one pixel, through mm_pw_rq, written at
 * o; returns nothing: the last outputs of the pixel. */
static MM_NOINLINE void mm_s8f_rest(const mm_pw8_job *j, const uint8_t *w, int co,
                                    const uint8_t *x, uint8_t *o)
{
    const mm_quant_params *q = j->q;
    const int32_t rb = mm_bytes(j->row, q->w_bits);
    mm_writer wr = {o, 0, 0, q->out_bits};
    for (; co < j->out_c; co++, w += rb)
        mm_put(&wr, mm_pw_rq(mm_s8f_row(x, w, j->row, q->w_bits), q->bias[co], q->mult[co],
                             q->shift[co], q->bias_shift, q->qmin, q->qmax));
    mm_flush(&wr);
}

/* What the pair asm reads and advances (mm_s8f_pairs), at fixed offsets from its address (the
 * state register, t5, stays in one register throughout: the word loop needs no counter, as
 * mm_pw8_two8's): mm_pw8f's fields (skip: the steps the first pass of a half skips; back: the
 * weights' step back after half 0), then what the sub8 rule adds, then the walk over the
 * pairs (the asm takes each pair's pixels, outputs and input sums itself: gcc kept the C walk
 * around an asm that takes every register in memory, about 230 cycles a pair). A call's
 * pairs start at p.ob (pixel a's outputs) and end where p.ob reaches `last`: where the blocks
 * take every output channel, a pair's pixel b ends where the next pair starts. */
typedef struct {
    mm_pw8f p;                    /* 0 .. 59 */
    uint32_t entry[2];            /* 60, 64: each half's loop entry (Thumb bit set) */
    int32_t start[6];             /* 68: the halves' starting sums (MM_S8F_XS4, MM_S8F_XS2) */
    int32_t cs[2];                /* 92, 96: 2-bit: pass 2's C' sums of pixels a and b */
    const uint8_t *cur;           /* 100: the next pair's first pixel */
    int32_t left;                 /* 104: the output pixels left in cur's row (from cur on) */
    int32_t out_w;                /* 108 */
    int32_t step, wrap;           /* 112, 116: a pixel's input step; a row end's extra step */
    const uint8_t *last;          /* 120: ob after the call's last pair */
    int32_t out_pix;              /* 124: a pixel's output bytes */
    int32_t oblk;                 /* 128: the bytes of a pixel's outputs in blocks of four */
    const int32_t *bias0, *mult0; /* 132, 136: the layer's parameters (each pair's start) */
    const int8_t *shift0;         /* 140 */
    const uint8_t *w0;            /* 144: the weights */
    int32_t n;                    /* 148: a pixel's input bytes */
} mm_s8f;

/* The walk's next pixel (raster order across rows of output pixels, mm_pointwise8's). */
static inline const uint8_t *mm_s8f_next(mm_s8f *c)
{
    const uint8_t *x = c->cur;
    c->cur += c->step;
    if (--c->left == 0)
        c->left = c->out_w, c->cur += c->wrap;
    return x;
}

#if defined(__ARM_FEATURE_DSP)
typedef char mm_s8f_ok[offsetof(mm_s8f, entry) == 60 && offsetof(mm_s8f, start) == 68 &&
                               offsetof(mm_s8f, cs) == 92 && offsetof(mm_s8f, cur) == 100 &&
                               offsetof(mm_s8f, n) == 148
                           ? 1
                           : -1];
/* MM_S8_STEP2's word of both pixels (t6 takes the weights: t5 holds the state), with X after
 * its loads (the last step of a pass: the exit test). A sum's halfword weights come from the
 * ones of the sum before, masked in place (each mask within the one before, and a halfword's
 * low bits are its byte's whatever the extension): one instruction a pair of weights where
 * masking the word and extending it took two (20 cycles a word of 4-bit weights where
 * MM_S8_PASS0 takes 21). MM_S8F_HALF: one half (even or odd bytes) of the weight word, E its
 * halfwords (extended, or masked straight from the word), M1 (0: none, F: & 0x0F) before the
 * first sum, M2 before the second. */
#define MM_S8F_MUL(A, B, XA, XB)                                                                  \
    "smlad %[" A "], %[t6], %[" XA "], %[" A "]\n\t"                                             \
    "smlad %[" B "], %[t6], %[" XB "], %[" B "]\n\t"
#define MM_S8F_MASK(M) "and %[t6], %[t6], #" M "\n\t"
#define MM_S8F_MASK1_0 ""
#define MM_S8F_MASK1_F MM_S8F_MASK("0x000F000F")
/* One half of the weight word (E: its extension; XA, XB: the pixels' inputs of that half). */
#define MM_S8F_HALF(E, XA, XB, M1, M2)                                                            \
    E MM_S8F_MASK1_##M1 MM_S8F_MUL("a0", "b0", XA, XB) MM_S8F_MASK(M2)                           \
        MM_S8F_MUL("a1", "b1", XA, XB)
/* pass 0: 4-bit raw, & 0x0F; 1: 2-bit raw, & 0x3F; 2: 2-bit & 0x0F, & 0x03 */
#define MM_S8F_PASS0                                                                              \
    MM_S8F_HALF("sxtb16 %[t6], %[t2]\n\t", "t0", "t1", 0, "0x000F000F")                          \
        MM_S8F_HALF("sxtb16 %[t6], %[t2], ror #8\n\t", "t3", "t4", 0, "0x000F000F")
#define MM_S8F_PASS1                                                                              \
    MM_S8F_HALF("sxtb16 %[t6], %[t2]\n\t", "t0", "t1", 0, "0x003F003F")                          \
        MM_S8F_HALF("sxtb16 %[t6], %[t2], ror #8\n\t", "t3", "t4", 0, "0x003F003F")
#define MM_S8F_PASS2                                                                              \
    MM_S8F_HALF("and %[t6], %[t2], #0x000F000F\n\t", "t0", "t1", 0, "0x00030003")                \
        MM_S8F_HALF("uxtb16 %[t6], %[t2], ror #8\n\t", "t3", "t4", F, "0x00030003")
#define MM_S8F_STEP(GS, SUMS, X)                                                                  \
    "ldr %[t0], [%[xa]], #4\n\t"                                                                  \
    "ldr %[t1], [%[xb]], #4\n\t"                                                                  \
    "ldr %[t2], [%[w]], #" GS "\n\t" X "uxtb16 %[t3], %[t0], ror #8\n\t"                          \
    "uxtb16 %[t0], %[t0]\n\t"                                                                     \
    "uxtb16 %[t4], %[t1], ror #8\n\t"                                                             \
    "uxtb16 %[t1], %[t1]\n\t" SUMS
/* A half's loop of eight words, entered part-way (entry[h]: the first pass takes the words
 * after the last eight); label L1 after its first word measures a word's bytes (every word the
 * same instructions); it ends when pixel a's input reaches its end ([t5, #24]). */
#define MM_S8F_LOOP(L, GS, SUMS)                                                                  \
    L ":\n\t" MM_S8F_STEP(GS, SUMS, "") L "1:\n\t" MM_S8F_STEP(GS, SUMS, "")                      \
        MM_S8F_STEP(GS, SUMS, "") MM_S8F_STEP(GS, SUMS, "") MM_S8F_STEP(GS, SUMS, "")             \
            MM_S8F_STEP(GS, SUMS, "") MM_S8F_STEP(GS, SUMS, "")                                   \
                MM_S8F_STEP(GS, SUMS, "ldr.w %[t6], [%[t5], #24]\n\tcmp.w %[xa], %[t6]\n\t")    \
    "bne.w " L "b\n\t"
/* entry[h] (offset E) = loop L + skip words' bytes, Thumb bit set. */
#define MM_S8F_ENTRY(L, E)                                                                        \
    "adr.w %[t1], " L "f\n\t"                                                                     \
    "adr.w %[t2], " L "1f\n\t"                                                                    \
    "sub %[t2], %[t2], %[t1]\n\t"                                                                 \
    "mla %[t1], %[t2], %[t0], %[t1]\n\t"                                                          \
    "orr %[t1], %[t1], #1\n\t"                                                                    \
    "str %[t1], [%[t5], #" E "]\n\t"
/* A half's pixels and starting sums (S0: the state's offset of its a0); then (after the
 * caller's one instruction or none) into its loop. */
#define MM_S8F_START(S0, S1, S2, S3)                                                              \
    "ldr %[xa], [%[t5], #16]\n\t"                                                                 \
    "ldr %[xb], [%[t5], #20]\n\t"                                                                 \
    "ldr %[a0], [%[t5], #" S0 "]\n\t"                                                             \
    "ldr %[a1], [%[t5], #" S1 "]\n\t"                                                             \
    "ldr %[b0], [%[t5], #" S2 "]\n\t"                                                             \
    "ldr %[b1], [%[t5], #" S3 "]\n\t"
/* The corrections of a pixel's two sums in P (the first) and Q (the second): the sums start
 * at multiples of the pixel's input sum X (MM_S8F_XS4, XS2), so that the X terms need no code
 * here: 4-bit A' = B' = -8 X; 2-bit C' = -10 X, D' = -2 X, A' = B' = -42 X, so that
 * B' = s0 and (A' - B') / 16 = s1; D' = s0, (C' - D') / 4 = U1 - 2 X = s1,
 * (B' - C') / 16 = U2 - 2 X = s2, (A' - B') / 64 = s3 (U1 = (C - D) / 4, U2 = (B - C) / 16).
 * Each difference is the true one (an int32 even where a started sum wraps) and a multiple of
 * the divisor, so each shift is exact. Afterwards Q holds channel c's value, P channel c + 1's.
 * 2-bit: pass 2 stores both pixels' C' (MM_S8F_KEEPC, at 92 and 96: its stores run on with
 * the requantization's loads), pass 1 loads them into t4 and t6 after those loads
 * (MM_S8F_GETC) and takes them off B' (MM_S8F_FIX2H). */
#define MM_S8F_FIX4(P, Q)                                                                         \
    "sub %[" P "], %[" P "], %[" Q "]\n\t"                                                        \
    "asr %[" P "], %[" P "], #4\n\t"
#define MM_S8F_KEEPC                                                                              \
    "str %[a0], [%[t5], #92]\n\t"                                                                 \
    "str %[b0], [%[t5], #96]\n\t" 
#define MM_S8F_FIX2L(P, Q)                                                                        \
    "sub %[" P "], %[" P "], %[" Q "]\n\t"                                                        \
    "asr %[" P "], %[" P "], #2\n\t"
#define MM_S8F_GETC                                                                               \
    "ldr %[t4], [%[t5], #92]\n\t"                                                                 \
    "ldr %[t6], [%[t5], #96]\n\t" 
#define MM_S8F_FIX2H(P, Q, C)                                                                     \
    "sub %[" P "], %[" P "], %[" Q "]\n\t"                                                        \
    "sub %[" Q "], %[" Q "], %[" C "]\n\t"                                                        \
    "asr %[" P "], %[" P "], #6\n\t"                                                              \
    "asr %[" Q "], %[" Q "], #4\n\t"
/* The requantization's parameters (mm_pw8_two8's t0 .. t3). */
#define MM_S8F_PARAMS                                                                             \
    "ldr %[t0], [%[t5]]\n\t"                                                                      \
    "ldr %[t1], [%[t5], #4]\n\t"                                                                  \
    "ldr %[t2], [%[t5], #8]\n\t"                                                                  \
    "ldr %[t3], [%[t5], #12]\n\t"
/* A half's requantization (channels at offsets O0 / P0 and O1 / P1 of bias and mult / shift):
 * pixel a's two output bytes in a0, b's in b0. */
#define MM_S8F_RQ(O0, P0, O1, P1)                                                                 \
    MM_PW8F_RQ("a1", "b1", O0, P0) MM_PW8F_RQ("a0", "b0", O1, P1)                                 \
    "orr %[a0], %[a1], %[a0], lsl #8\n\t"                                                         \
    "orr %[b0], %[b1], %[b0], lsl #8\n\t"
/* D = the walk's pixel after S (mm_s8f_next; t4: the pixels left in S's row, t2: step,
 * t3: wrap). */
#define MM_S8F_WALK(D, S)                                                                         \
    "add %[" D "], %[" S "], %[t2]\n\t"                                                           \
    "subs %[t4], %[t4], #1\n\t"                                                                   \
    "itt eq\n\t"                                                                                  \
    "ldreq %[t4], [%[t5], #108]\n\t"                                                              \
    "addeq %[" D "], %[" D "], %[t3]\n\t"
/* A pair's start (t1: where the last pair's ob ended): its outputs (oa = t1, ob, oend), its
 * pixels (xa, xb: the walk one on), the parameters and the weights (w) back at the first
 * channel. */
#define MM_S8F_PAIR                                                                               \
    "ldr %[t0], [%[t5], #124]\n\t"                                                                \
    "ldr %[t6], [%[t5], #128]\n\t"                                                                \
    "ldr %[xa], [%[t5], #100]\n\t"                                                                \
    "ldr %[t4], [%[t5], #104]\n\t"                                                                \
    "ldr %[t2], [%[t5], #112]\n\t"                                                                \
    "ldr %[t3], [%[t5], #116]\n\t"                                                                \
    "str %[t1], [%[t5], #40]\n\t"                                                                 \
    "add %[t6], %[t6], %[t1]\n\t"                                                                 \
    "add %[t0], %[t0], %[t1]\n\t"                                                                 \
    "str %[t6], [%[t5], #36]\n\t"                                                                 \
    "str %[t0], [%[t5], #44]\n\t" MM_S8F_WALK("xb", "xa") MM_S8F_WALK("t0", "xb")                 \
    "str %[xa], [%[t5], #16]\n\t"                                                                 \
    "str %[xb], [%[t5], #20]\n\t"                                                                 \
    "str %[t0], [%[t5], #100]\n\t"                                                                \
    "str %[t4], [%[t5], #104]\n\t"                                                                \
    "ldr %[t0], [%[t5], #132]\n\t"                                                                \
    "ldr %[t1], [%[t5], #136]\n\t"                                                                \
    "ldr %[t2], [%[t5], #140]\n\t"                                                                \
    "ldr %[w], [%[t5], #144]\n\t"                                                                 \
    "str %[t0], [%[t5]]\n\t"                                                                      \
    "str %[t1], [%[t5], #4]\n\t"                                                                  \
    "str %[t2], [%[t5], #8]\n\t"
/* Both pixels' input sums X (n bytes each, a multiple of 4) into a0 and b0: the first word
 * of each, the second where n / 4 is even, then two of each a step; t6 = 0 afterwards; the
 * end of pixel a's input (the word loops' exit test) to the state. */
#define MM_S8F_X1(A, B)                                                                           \
    "ldr %[t2], [%[xa]], #4\n\t"                                                                  \
    "ldr %[t3], [%[xb]], #4\n\t" A B
#define MM_S8F_XSUMS                                                                              \
    "ldr %[t0], [%[t5], #148]\n\t"                                                                \
    "mov %[t6], #0\n\t"                                                                           \
    "add %[t1], %[xa], %[t0]\n\t"                                                                 \
    "str %[t1], [%[t5], #24]\n\t"                                                                 \
    MM_S8F_X1("usad8 %[a0], %[t2], %[t6]\n\t", "usad8 %[b0], %[t3], %[t6]\n\t")                   \
    "tst %[t0], #4\n\t"                                                                           \
    "bne 4f\n\t"                                                                                  \
    MM_S8F_X1("usada8 %[a0], %[t2], %[t6], %[a0]\n\t", "usada8 %[b0], %[t3], %[t6], %[b0]\n\t")   \
    "4:\n\t"                                                                                      \
    "cmp %[xa], %[t1]\n\t"                                                                        \
    "beq 5f\n\t"                                                                                  \
    "3:\n\t"                                                                                      \
    "ldr %[t2], [%[xa]], #4\n\t"                                                                  \
    "ldr %[t3], [%[xa]], #4\n\t"                                                                  \
    "ldr %[t4], [%[xb]], #4\n\t"                                                                  \
    "ldr %[a1], [%[xb]], #4\n\t"                                                                  \
    "usada8 %[a0], %[t2], %[t6], %[a0]\n\t"                                                       \
    "usada8 %[a0], %[t3], %[t6], %[a0]\n\t"                                                       \
    "usada8 %[b0], %[t4], %[t6], %[b0]\n\t"                                                       \
    "usada8 %[b0], %[a1], %[t6], %[b0]\n\t"                                                       \
    "cmp %[xa], %[t1]\n\t"                                                                        \
    "bne 3b\n\t"                                                                                  \
    "5:\n\t"
/* The starting sums from X (a0, b0; t6 = 0), as MM_S8F_FIX4 / FIX2L / FIX2H take them:
 * 4-bit: -8 X for every sum of both halves (at 68 and 76); 2-bit: half 0 (pass 2) -10 X and
 * -2 X (68 .. 80), half 1 (pass 1) -42 X = -2 X + 4 (-10 X) for both sums (84, 88). */
#define MM_S8F_XS4                                                                                \
    "sub %[a0], %[t6], %[a0], lsl #3\n\t"                                                         \
    "sub %[b0], %[t6], %[b0], lsl #3\n\t"                                                         \
    "str %[a0], [%[t5], #68]\n\t"                                                                 \
    "str %[b0], [%[t5], #76]\n\t"
#define MM_S8F_XS2                                                                                \
    "sub %[a1], %[t6], %[a0], lsl #1\n\t"                                                         \
    "sub %[b1], %[t6], %[b0], lsl #1\n\t"                                                         \
    "add %[a0], %[a1], %[a1], lsl #2\n\t"                                                         \
    "add %[b0], %[b1], %[b1], lsl #2\n\t"                                                         \
    "str %[a0], [%[t5], #68]\n\t"                                                                 \
    "str %[a1], [%[t5], #72]\n\t"                                                                 \
    "str %[b0], [%[t5], #76]\n\t"                                                                 \
    "str %[b1], [%[t5], #80]\n\t"                                                                 \
    "add %[a0], %[a1], %[a0], lsl #2\n\t"                                                         \
    "add %[b0], %[b1], %[b0], lsl #2\n\t"                                                         \
    "str %[a0], [%[t5], #84]\n\t"                                                                 \
    "str %[b0], [%[t5], #88]\n\t"
/* Every pair of the walk (8: its start, sums and starting sums XS), every block of a pair
 * (0): half 0 (S0: its starting sums' loads; its loop: SUMS0's words; PRE0 before the
 * parameters' loads, FIX0 after), its bytes to the state, the weights back, half 1
 * (likewise); then mm_pw8_two8's block end (W: the weights to the next block; t1: ob
 * afterwards); then (9) the next pair until ob reaches the call's last. */
#define MM_S8F_ASM(GS, XS, S0, SUMS0, PRE0, FIX0, S1, SUMS1, PRE1, FIX1, W)                       \
    __asm__ volatile("ldr %[t0], [%[t5], #28]\n\t" MM_S8F_ENTRY("1", "60") MM_S8F_ENTRY("2", "64") \
                     "ldr %[t1], [%[t5], #44]\n\t"                                               \
                     "8:\n\t" MM_S8F_PAIR MM_S8F_XSUMS XS "0:\n\t" S0                             \
                     "ldr pc, [%[t5], #60]\n\t" MM_S8F_LOOP("1", GS, SUMS0) PRE0 MM_S8F_PARAMS   \
                         FIX0 MM_S8F_RQ("0", "0", "4", "1")                                       \
                     "orr %[a0], %[a0], %[b0], lsl #16\n\t"                                       \
                     "str %[a0], [%[t5], #48]\n\t"                                                \
                     "ldr %[t0], [%[t5], #32]\n\t" S1 "sub %[w], %[w], %[t0]\n\t"                \
                     "ldr pc, [%[t5], #64]\n\t" MM_S8F_LOOP("2", GS, SUMS1) PRE1 MM_S8F_PARAMS    \
                         FIX1 MM_S8F_RQ("8", "2", "12", "3") MM_PW8F_NEXT MM_PW8F_PUT(W)          \
                     "ldr %[t0], [%[t5], #120]\n\t"                                               \
                     "cmp %[t1], %[t0]\n\t"                                                       \
                     "bne 8b\n\t"                                                                 \
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1),          \
                       [xa] "=&r"(x0), [xb] "=&r"(x1), [w] "=&r"(w), [t6] "=&r"(t6),            \
                       [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3),          \
                       [t4] "=&r"(t4), [t5] "+r"(p)                                              \
                     :                                                                            \
                     : "cc", "memory")
#else
/* Portable: one half's sums (mm_s8_two), corrections (mm_s8_dots) and requantization. */
static inline uint32_t mm_s8f_half(const uint8_t *xa, const uint8_t *xb, const uint8_t *w,
                                   int32_t n, const mm_pw8_rq *rq, int c, int32_t sa,
                                   int32_t sb, int32_t *cs, int pass)
{
    const mm_c8src s = {xa, (int32_t)(xb - xa), n, n, 0, 0, n, n, 1};
    int32_t q[4], d[8], r[4];
    const int wb = pass == 0 ? 4 : 2, h = pass == 1 ? 2 : 0; /* h: the channels' first sum */
    uint32_t y = 0;
    mm_s8_two(&s, w, 0, 0, pass, q);
    if (wb == 4) { /* (A, B) of each pixel as mm_s8_dots' pair (0, 1) */
        const int32_t qa[4] = {q[0], q[1], 0, 0}, qb[4] = {q[2], q[3], 0, 0};
        mm_s8_dots(qa, sa, 4, d);
        mm_s8_dots(qb, sb, 4, d + 4);
    } else { /* 2-bit: A, B from pass 1, C, D from pass 2 */
        const int32_t qa[4] = {pass == 1 ? q[0] : 0, pass == 1 ? q[1] : 0,
                               pass == 1 ? cs[0] : q[0], pass == 1 ? 0 : q[1]};
        const int32_t qb[4] = {pass == 1 ? q[2] : 0, pass == 1 ? q[3] : 0,
                               pass == 1 ? cs[1] : q[2], pass == 1 ? 0 : q[3]};
        mm_s8_dots(qa, sa, 2, d);
        mm_s8_dots(qb, sb, 2, d + 4);
        if (pass == 2)
            cs[0] = q[0], cs[1] = q[2];
    }
    r[0] = d[h], r[1] = d[h + 1], r[2] = d[4 + h], r[3] = d[5 + h];
    for (int i = 0; i < 4; i++) {
        const int ch = c + (i & 1);
        y |= mm_pw_u(r[i], rq->bias[ch], rq->mult[ch], rq->shift[ch], rq->kb) << 8 * i;
    }
    return y;
}
#endif

#if !defined(__ARM_FEATURE_DSP)
/* The input sum of a pixel (n bytes, a multiple of 4, unsigned). */
static int32_t mm_s8f_xsum(const uint8_t *x, int32_t n)
{
    uint32_t t = 0;
    for (int32_t i = 0; i < n; i += 4)
        t = mm_usada8(mm_s8_ld(x + i), t);
    return (int32_t)t;
}
#endif

/* The pairs of the walk from st->cur on until p.ob reaches st->last, every block of four
 * output channels of each (the rows after the last block are the caller's): in one asm loop
 * (MM_S8F_ASM: each pair's pixels, outputs and input sums, then every block's two halves of
 * two channels, each half's words, corrections and requantization; four outputs of each
 * pixel stored at once as mm_pw_st4 does), or its steps portably. Both pixels' outputs of a
 * block are written before the next block reads their inputs again (lag 2, as the sub8
 * path). */
static MM_INLINE void mm_s8f_pairs(const mm_pw8_job *j, mm_s8f *st, const int wb)
{
#if defined(__ARM_FEATURE_DSP)
    uint32_t a0, a1, b0, b1, t0, t1, t2, t3, t4, t6;
    const uint8_t *x0, *x1, *w; /* the asm's input and weight pointers */
    mm_s8f *p = st;
    if (wb == 4)
        MM_S8F_ASM("8", MM_S8F_XS4, MM_S8F_START("68", "68", "76", "76"), MM_S8F_PASS0, "",
                   MM_S8F_FIX4("a0", "a1") MM_S8F_FIX4("b0", "b1"),
                   MM_S8F_START("68", "68", "76", "76"), MM_S8F_PASS0, "",
                   MM_S8F_FIX4("a0", "a1") MM_S8F_FIX4("b0", "b1"), "sub %[w], %[w], #4\n\t");
    else
        MM_S8F_ASM("4", MM_S8F_XS2, MM_S8F_START("68", "72", "76", "80"), MM_S8F_PASS2,
                   MM_S8F_KEEPC, MM_S8F_FIX2L("a0", "a1") MM_S8F_FIX2L("b0", "b1"),
                   MM_S8F_START("84", "84", "88", "88"), MM_S8F_PASS1, "",
                   MM_S8F_GETC MM_S8F_FIX2H("a0", "a1", "t4") MM_S8F_FIX2H("b0", "b1", "t6"),
                   "");
    (void)a0, (void)a1, (void)b0, (void)b1, (void)t0, (void)t1, (void)t2, (void)t3;
    (void)t4, (void)t6, (void)x0, (void)x1, (void)w, (void)p, (void)j;
#else
    const int32_t n = st->n;
    mm_pw8f *p = &st->p;
    (void)j;
    do {
        const uint8_t *xa = mm_s8f_next(st), *xb = mm_s8f_next(st), *w = st->w0;
        p->xa = xa, p->xb = xb, p->oa = p->ob, p->oend = p->ob + st->oblk;
        p->ob += st->out_pix;
        p->bias = st->bias0, p->mult = st->mult0, p->shift = st->shift0;
        const int32_t sa = mm_s8f_xsum(xa, n), sb = mm_s8f_xsum(xb, n);
        for (; p->oa != p->oend; w += 4 * mm_bytes(n, wb)) { /* the asm's steps, portably */
            const mm_pw8_rq rq = {p->bias, p->mult, p->shift, p->kb};
            uint32_t y[2];
            for (int h = 0; h < 2; h++) /* 4-bit: pass 0 at w, w + 4; 2-bit: pass 2, then 1 */
                y[h] = mm_s8f_half(xa, xb, w + (wb == 4 ? 4 * h : 0), n, &rq, 2 * h, sa, sb,
                                   st->cs, wb == 4 ? 0 : 2 - h);
            p->oa = mm_pw_st4(p->oa, (y[0] & 0xFFFFu) | y[1] << 16, p->bits, p->m4);
            p->ob = mm_pw_st4(p->ob, y[0] >> 16 | (y[1] & 0xFFFF0000u), p->bits, p->m4);
            p->bias += 4, p->mult += 4, p->shift += 4;
        }
    } while (p->ob != st->last);
#endif
}

/* One pixel (an odd last one, or a linear's only one, whose requantization may be the general
 * one: `fast` says which): mm_s8_one's four sums per block, the corrections in C. */
static MM_INLINE void mm_s8f_one(const mm_pw8_job *j, const uint8_t *x, uint8_t *o,
                                 const int fast)
{
    const mm_quant_params *q = j->q;
    const int32_t n = j->row, wb = q->w_bits, blk = 4 * mm_bytes(n, wb);
    const mm_c8src s = {x, 0, n, n, 0, 0, n, n, 1};
    const int32_t xs = mm_s8_xsum(&s, 0, 0), kb = (int32_t)1 << q->bias_shift;
    const int32_t *const bias = q->bias, *const mult = q->mult;
    const int8_t *const shift = q->shift;
    const uint32_t m4 = (uint32_t)q->qmax * 0x01010101u;
    const uint8_t *w = (const uint8_t *)j->w;
    int co = 0;
    for (; co + 4 <= j->out_c; co += 4, w += blk) {
        int32_t sums[4], d[4];
        uint32_t y = 0;
        if (wb == 4)
            mm_s8_one(&s, w, 0, 0, 4, sums);
        else
            mm_s8_one(&s, w, 0, 0, 2, sums);
        mm_s8_dots(sums, xs, wb, d);
        if (fast) {
#if defined(__GNUC__)
#pragma GCC unroll 4
#endif
            for (int i = 0; i < 4; i++)
                y |= mm_pw_u(d[i], bias[co + i], mult[co + i], shift[co + i], kb) << 8 * i;
            o = mm_pw_st4(o, y, q->out_bits, m4);
        } else {
            mm_writer wr = {o, 0, 0, q->out_bits};
#if defined(__GNUC__)
#pragma GCC unroll 4
#endif
            for (int i = 0; i < 4; i++)
                d[i] = mm_pw_rq(d[i], bias[co + i], mult[co + i], shift[co + i], q->bias_shift,
                                q->qmin, q->qmax);
            mm_put4(&wr, d);
            o = wr.p;
        }
    }
    if (co < j->out_c)
        mm_s8f_rest(j, w, co, x, o);
}

/* mm_s8f_one specialised: the fast requantization, and the general one (linears only). */
static MM_NOINLINE void mm_s8f_one_u(const mm_pw8_job *j, const uint8_t *x, uint8_t *o)
{
    mm_s8f_one(j, x, o, 1);
}
static MM_NOINLINE void mm_s8f_one_w(const mm_pw8_job *j, const uint8_t *x, uint8_t *o)
{
    mm_s8f_one(j, x, o, 0);
}

/* The pixels of a job in pairs (mm_s8f_pairs: in one call where the blocks of four take
 * every output channel, else one pair a call, then its rows after the last block), an odd
 * last one alone (as every pixel where out_c < 4); one copy of the pair code per weight
 * width. */
static MM_INLINE void mm_s8f_pixels(const mm_pw8_job *j, const int wb)
{
    const mm_quant_params *q = j->q;
    const int32_t npix = (int32_t)j->out_h * j->out_w, n = j->row, blocks = j->out_c >> 2;
    const int32_t out_pix = mm_bytes(j->out_c, q->out_bits);
    const uint8_t *rest = (const uint8_t *)j->w + 4 * blocks * mm_bytes(n, wb);
    const int whole = 4 * blocks == j->out_c; /* no rows after the blocks: every pair at once */
    int32_t p = 0;
    /* the layer's constant fields: the first pass of a half skips (8 - words % 8) % 8 words */
    mm_s8f st = {{0, 0, 0, (int32_t)1 << q->bias_shift, 0, 0, 0, (8 - ((n >> 2) & 7)) & 7,
                  wb == 4 ? 2 * n - 4 : n, 0, 0, 0, 0, q->out_bits,
                  (uint32_t)q->qmax * 0x01010101u},
                 {0, 0}, {0}, {0, 0}, j->in, j->out_w, j->out_w, j->in_step,
                 j->in_row_step - (int32_t)j->out_w * j->in_step, 0, out_pix,
                 (blocks * q->out_bits) >> 1, q->bias, q->mult, q->shift,
                 (const uint8_t *)j->w, n};
    for (; blocks && p + 1 < npix; p += whole ? npix & ~1 : 2) { /* one call of the pair code */
        st.p.ob = j->out + p * out_pix;
        st.last = whole ? j->out + (npix & ~1) * out_pix : st.p.ob + out_pix + st.oblk;
        mm_s8f_pairs(j, &st, wb);
        if (!whole) {
            mm_s8f_rest(j, rest, 4 * blocks, st.p.xa, st.p.oa);
            mm_s8f_rest(j, rest, 4 * blocks, st.p.xb, st.p.ob);
        }
    }
    for (; p < npix; p++)
        mm_s8f_one_u(j, mm_s8f_next(&st), j->out + p * out_pix);
}

/* The pair code of the weight widths the model's layers on this path take (MM_SUB8_KIND). */
/* 4-byte aligned: the asm's ADR entries count from a word boundary (as mm_pw8_two8's). */
#if defined(__GNUC__)
#define MM_S8F_ALIGN __attribute__((aligned(4)))
#else
#define MM_S8F_ALIGN
#endif
#if MM_USE_S8F_W4
MM_S8F_ALIGN static MM_NOINLINE void mm_s8f_pixels4(const mm_pw8_job *j) { mm_s8f_pixels(j, 4); }
#endif
#if MM_USE_S8F_W2
MM_S8F_ALIGN static MM_NOINLINE void mm_s8f_pixels2(const mm_pw8_job *j) { mm_s8f_pixels(j, 2); }
#endif

static void mm_sub8_pointwise_fast(const uint8_t *in, uint8_t *out, const uint8_t *w,
                                   const mm_conv_dims *d, const mm_quant_params *q, int fast)
{
    const mm_pw8_job j = {in, out, (const int8_t *)w, q, 0, d->in_c,
                          (int32_t)d->stride_h * d->in_w * d->in_c,
                          (int32_t)d->stride_w * d->in_c, d->out_c, d->out_h, d->out_w, 0};
    if ((int32_t)d->out_h * d->out_w == 1 && fast)
        mm_s8f_one_u(&j, in, out);
    else if ((int32_t)d->out_h * d->out_w == 1) /* a linear: any requantization */
        mm_s8f_one_w(&j, in, out);
#if MM_USE_S8F_W4
    else if (q->w_bits == 4)
        mm_s8f_pixels4(&j);
#endif
#if MM_USE_S8F_W2
    else if (q->w_bits == 2)
        mm_s8f_pixels2(&j);
#endif
    else
        MM_PATH_OFF();
}
#endif

#if MM_USE_PWSUB8 || MM_ON_PWSUB8PD_W4 || MM_ON_PWSUB8PD_W2
/* mm_pointwise_sub on 8-bit inputs: the output pixels in pairs, raster order across rows of
 * pixels, an odd last one alone; each pair is a one-row source, run by px (mm_sub8_px, or
 * SUB8P's pair loops: PWSUB8PD). */
static MM_INLINE void mm_sub8_pointwise(const uint8_t *in, uint8_t *out, const uint8_t *w,
                                       const mm_conv_dims *d, const mm_quant_params *q,
                                       mm_c8px px)
{
    const int in_c = d->in_c, out_c = d->out_c, out_w = d->out_w, ob = q->out_bits;
    const int32_t npix = (int32_t)d->out_h * out_w, out_pix = mm_bytes(out_c, ob);
    const int32_t step = (int32_t)d->stride_w * in_c;
    const int32_t row_step = (int32_t)d->stride_h * d->in_w * in_c;
    const mm_conv_ctx k = {in, w, q->bias, q->mult, q->shift, in_c, d->in_h, d->in_w, 1, 1, in_c,
                           out_c, in_c, 8, q->in_signed, q->w_bits, 0, q->bias_shift, in_c,
                           mm_bytes(in_c, q->w_bits), q->qmin, q->qmax, mm_s8_rq(q, out_c),
                           MM_P_NONE};
    const uint8_t *xr = in;
    int ox = 0;
    mm_c8src s = {in, 0, 0, in_c & ~3, in_c & 3, 0, 0, in_c & ~3, 1};
    for (int32_t p = 0; p < npix; p += 2) {
        const int np = p + 1 < npix ? 2 : 1;
        s.x = xr + (int32_t)ox * step;
        if (++ox == out_w)
            ox = 0, xr += row_step;
        if (np == 2) {
            s.step = (int32_t)(xr + (int32_t)ox * step - s.x);
            if (++ox == out_w)
                ox = 0, xr += row_step;
        }
        px(&k, &s, out, out_pix, ob, out_c, np);
        out += np * out_pix;
    }
}
#endif

#if MM_USE_PWSUB8 || MM_USE_PWSUB8F || MM_USE_PWSUB_PACKED || MM_USE_SUB8D_W4 || \
    MM_USE_SUB8D_W2 || MM_ON_PWSUB8PD_W4 || MM_ON_PWSUB8PD_W2
/* 8-bit inputs take the sub8 path (ops.conv.sub8_path: channel_packed weights), 2- and 4-bit
 * ones mm_dot.c's unpacking kernel; defined here so that mm_dot.c calls nothing back. */
void mm_pointwise_sub(MM_CONV_ARGS)
{
    /* the shift loop of mm_pw_fast only where the fast path can take the layer */
    const int fast =
        q->in_bits == 8 && !q->in_signed && d->in_c % 4 == 0 && mm_pw_fast(q, d->out_c);
#if MM_USE_SUB8D_W4 || MM_USE_SUB8D_W2 || MM_ON_PWSUB8PD_W4 || MM_ON_PWSUB8PD_W2 /* as mm_conv */
    const int rq8 = q->in_bits == 8 && q->w_bits < 8 &&
                    MM_RQ8(q->qmin, q->qmax, q->out_bits, mm_shifts_above32(q, d->out_c));
#else
    const int rq8 = 0;
#endif
    MM_ASSERT(MM_IS_PWSUB(d, q));
    switch (MM_PWSUB_PATH(q->in_bits, q->in_signed, d->in_c, fast, (int32_t)d->out_h * d->out_w,
                          q->w_bits, d->out_c, rq8)) {
#if MM_USE_SUB8D_W4
    case MM_P_SUB8D_W4:
        (void)scratch;
        mm_s8d_w4(in, w, d->in_c, q, d->out_c, out);
        return;
#endif
#if MM_USE_SUB8D_W2
    case MM_P_SUB8D_W2:
        (void)scratch;
        mm_s8d_w2(in, w, d->in_c, q, d->out_c, out);
        return;
#endif
#if MM_USE_PWSUB8F
    case MM_P_PWSUB8F:
        (void)scratch;
        mm_sub8_pointwise_fast(in, out, w, d, q, fast);
        return;
#endif
#if MM_USE_PWSUB8
    case MM_P_PWSUB8:
        (void)scratch;
        mm_sub8_pointwise(in, out, w, d, q, mm_sub8_px);
        return;
#endif
#if MM_ON_PWSUB8PD_W4
    case MM_P_PWSUB8PD_W4:
        (void)scratch;
        mm_sub8_pointwise(in, out, w, d, q, mm_sub8p_d4);
        return;
#endif
#if MM_ON_PWSUB8PD_W2
    case MM_P_PWSUB8PD_W2:
        (void)scratch;
        mm_sub8_pointwise(in, out, w, d, q, mm_sub8p_d2);
        return;
#endif
#if MM_USE_PWSUB_PACKED
    case MM_P_PWSUB_PACKED:
        mm_pointwise_sub_packed(in, out, w, d, q, scratch);
        return;
#endif
    default:
        MM_PATH_OFF();
    }
}
#endif

#if MM_USE_CONV8X2 || MM_USE_CONV8P || MM_USE_CONV8 || MM_USE_CONV_ANY || MM_USE_SUB8X2 || \
    MM_USE_SUB8P || MM_USE_SMALL8P || MM_USE_SUB8D_W4 || MM_USE_SUB8D_W2 || MM_USE_SUB8PD_W4 || \
    MM_USE_SUB8PD_W2 || MM_USE_SUB8PD_W2T
/* The conv context of one call (mm_conv, mm_small8p). With 8-bit weights, `fast` is the
 * layer's mm_rq8_kind, or MM_RQ8_UP where that is general but mm_pw_fast holds (unsigned
 * outputs over their whole range at 4 or 2 bits: CONV8P's pixel function packs them). */
static MM_INLINE void mm_conv_init(mm_conv_ctx *k, const uint8_t *in, const uint8_t *w,
                                   const mm_conv_dims *d, const mm_quant_params *q, const int rq)
{
    k->in = in;
    k->w = w;
    k->bias = q->bias;
    k->mult = q->mult;
    k->shift = q->shift;
    k->in_c = d->in_c;
    k->in_h = d->in_h;
    k->in_w = d->in_w;
    k->kh = d->k_h;
    k->kw = d->k_w;
    k->cin_g = d->in_c / d->groups;
    k->cout_g = d->out_c / d->groups;
    k->ib = q->in_bits;
    k->is = q->in_signed;
    k->wb = q->w_bits;
    k->lp = k->wb == 8 ? 0 : k->wb == 4 ? 1 : 2;
    k->bk = q->bias_shift;
    k->in_pix = mm_bytes(d->in_c, k->ib);
    k->row = (int32_t)k->kh * k->kw * k->cin_g;
    k->row_bytes = mm_bytes(k->row, k->wb);
    k->qmin = q->qmin;
    k->qmax = q->qmax;
    k->fast = !rq                                      ? MM_RQ8_UP /* mm_small8p: its rule's */
              : k->wb < 8                                ? (k->ib == 8 ? mm_s8_rq(q, d->out_c) : 0)
              : mm_rq8_kind(q, d->out_c) != MM_RQ8_GENERAL ? mm_rq8_kind(q, d->out_c)
              : mm_pw_fast(q, d->out_c)                    ? MM_RQ8_UP
                                                           : MM_RQ8_GENERAL;
}
#endif

#if MM_USE_SMALL8P
/* mm_conv_small's layers on 8-bit inputs and weights with in_c % 4 != 0 (MM_SMALL_PATH: a stem
 * on a grey image) take CONV8P's pixel pairs over byte patches (2 row bytes of the scratch,
 * within the lane kernel's): 903 k -> 473 k estimated M4 cycles on the demo's 1 -> 8 channel
 * 3 x 3 stem, measured. Its pairs write both pixels after gathering both patches, so in place
 * it needs lag 0 only (mm_conv_small's). */
void mm_small8p(MM_CONV_ARGS)
{
    mm_conv_ctx k;
    mm_conv_init(&k, in, w, d, q, 0);
    mm_conv8p(&k, d, (uint8_t *)scratch, out, q->out_bits, mm_small8p_px, 2);
}
#endif

/* Compiled where a layer of the model runs it (a call without it fails to link). */
#if MM_USE_CONV8X2 || MM_USE_CONV8P || MM_USE_CONV8 || MM_USE_CONV_ANY || \
    MM_USE_SUB8X2 || MM_USE_SUB8P || MM_USE_SUB8D_W4 || MM_USE_SUB8D_W2 || MM_USE_SUB8PD_W4 || \
    MM_USE_SUB8PD_W2 || MM_USE_SUB8PD_W2T
void mm_conv(MM_CONV_ARGS)
{
    mm_conv_ctx k;
    int16_t *const buf = (int16_t *)scratch; /* min(row, MM_PATCH) elements, or a chunk */
    const int ob = q->out_bits, in_h = d->in_h, in_w = d->in_w, kh = d->k_h, kw = d->k_w;
    const int out_h = d->out_h, out_w = d->out_w, sh = d->stride_h, sw = d->stride_w;
    const int ph = d->pad_h, pw = d->pad_w, groups = d->groups;
    const int32_t *const bias = q->bias, *const mult = q->mult;
    const int8_t *const shift = q->shift;
    const int32_t qmin = q->qmin, qmax = q->qmax, out_pix = mm_bytes(d->out_c, ob);
    MM_ASSERT(!MM_IS_PW8(d, q) && !MM_IS_PWSUB(d, q) && !MM_IS_SMALL(d, q));
    mm_conv_init(&k, in, w, d, q, 1);
    /* W8/A8: two pixels at a time, from the input (in_c % 4 == 0) or from byte patches; long
     * rows of other in_c one pixel at a time (MM_CONV_PATH); each path only where the model
     * has a layer that takes it (mm_paths.h). */
    /* A linear (one output pixel whose window is the whole input) on the sub8 path: the dense
     * one (MM_SUB8D) where its requantization is MM_RQ8, and SUB8P's pairs in one loop
     * (MM_SUB8PD) under the same (the shift loop only then). A model none of whose layers
     * takes them leaves both 0 (the rule then gives no layer those paths): no code for them
     * (kernel .text). */
#if MM_USE_SUB8D_W4 || MM_USE_SUB8D_W2 /* (a model with SUB8PD alone: 554 B less) */
    const int whole = kh == in_h && kw == in_w && ph == 0 && pw == 0 && out_h == 1 && out_w == 1;
#else
    const int whole = 0;
#endif
#if MM_USE_SUB8D_W4 || MM_USE_SUB8D_W2 || MM_USE_SUB8PD_W4 || MM_USE_SUB8PD_W2 ||                \
    MM_USE_SUB8PD_W2T
    const int rq8 = k.ib == 8 && k.wb < 8 && MM_RQ8(qmin, qmax, ob, mm_shifts_above32(q, d->out_c));
#else
    const int rq8 = 0;
#endif
    switch (MM_CONV_PATH(k.ib, k.wb, k.is, groups, k.in_c, k.row, whole, d->out_c, rq8)) {
#if MM_USE_SUB8D_W4
    case MM_P_SUB8D_W4:
        mm_s8d_w4(in, w, k.row, q, d->out_c, out);
        return;
#endif
#if MM_USE_SUB8D_W2
    case MM_P_SUB8D_W2:
        mm_s8d_w2(in, w, k.row, q, d->out_c, out);
        return;
#endif
#if MM_USE_CONV8X2
    case MM_P_CONV8X2: /* its pairs by MM_CONV8X2_KIND */
        switch (MM_CONV8X2_KIND(MM_P_CONV8X2, k.is, k.fast == MM_RQ8_U || k.fast == MM_RQ8_S,
                                (int32_t)sw * k.in_c)) {
#if MM_USE_CONV8X2D_U
        case MM_P_CONV8X2D_U:
            mm_conv8x2(&k, d, out, ob, mm_conv8x2d_u);
            return;
#endif
#if MM_USE_CONV8X2D_U16
        case MM_P_CONV8X2D_U16:
            mm_conv8x2(&k, d, out, ob, mm_conv8x2d_u16);
            return;
#endif
#if MM_USE_CONV8X2D_S
        case MM_P_CONV8X2D_S:
            mm_conv8x2(&k, d, out, ob, mm_conv8x2d_s);
            return;
#endif
#if MM_USE_CONV8X2_RQANY
        case MM_P_CONV8X2_RQANY:
            mm_conv8x2(&k, d, out, ob, mm_conv8x2_px);
            return;
#endif
        default:
            MM_PATH_OFF();
            return;
        }
#endif
#if MM_USE_CONV8P
    case MM_P_CONV8P: /* its pairs by MM_CONV8P_KIND */
        switch (MM_CONV8P_KIND(MM_P_CONV8P, k.is, k.fast == MM_RQ8_U || k.fast == MM_RQ8_S,
                               d->out_c, k.row)) {
#if MM_USE_CONV8P_D
        case MM_P_CONV8P_D:
            mm_conv8p(&k, d, (uint8_t *)scratch, out, ob, mm_conv8p_d, 1);
            return;
#endif
#if MM_USE_CONV8P_ANY
        case MM_P_CONV8P_ANY:
            mm_conv8p(&k, d, (uint8_t *)scratch, out, ob, mm_conv8p_px, 1);
            return;
#endif
        default:
            MM_PATH_OFF();
            return;
        }
#endif
#if MM_USE_CONV8
    case MM_P_CONV8:
        mm_conv8(&k, d, out, ob);
        return;
#endif
#if MM_USE_SUB8X2 /* 4- and 2-bit weights on 8-bit inputs: the same pixel walks */
    case MM_P_SUB8X2:
#if MM_USE_SUB8X2D_W4 || MM_USE_SUB8X2D_W2 /* one copy of the walk: the kind through the ctx */
        k.kind = MM_SUB8X2_KIND(MM_P_SUB8X2, k.wb, k.is, k.in_c,
                                MM_RQ8(qmin, qmax, ob, mm_shifts_above32(q, d->out_c)));
        mm_conv8x2(&k, d, out, ob, mm_sub8x2d_w4);
#else
        mm_conv8x2(&k, d, out, ob, mm_sub8_px);
#endif
        return;
#endif
#if MM_USE_SUB8PD_W4
    case MM_P_SUB8PD_W4:
        mm_conv8p(&k, d, (uint8_t *)scratch, out, ob, mm_sub8p_d4, 1);
        return;
#endif
#if MM_USE_SUB8PD_W2
    case MM_P_SUB8PD_W2:
        mm_conv8p(&k, d, (uint8_t *)scratch, out, ob, mm_sub8p_d2, 1);
        return;
#endif
#if MM_USE_SUB8PD_W2T
    case MM_P_SUB8PD_W2T:
        mm_conv8p(&k, d, (uint8_t *)scratch, out, ob, mm_sub8p_t2, 1);
        return;
#endif
#if MM_USE_SUB8P
    case MM_P_SUB8P:
        mm_conv8p(&k, d, (uint8_t *)scratch, out, ob, mm_sub8_px, 1);
        return;
#endif
#if MM_USE_CONV_ANY
    case MM_P_CONV_ANY:
        break;
#endif
    default:
        MM_PATH_OFF();
        return;
    }
#if MM_USE_CONV_ANY
    for (int oy = 0; oy < out_h; oy++) {
        for (int ox = 0; ox < out_w; ox++) {
            mm_writer wr = {out + ((int32_t)oy * out_w + ox) * out_pix, 0, 0, ob};
            int iy0 = oy * sh - ph, ix0 = ox * sw - pw;
            for (int g = 0; g < groups; g++) {
                if (k.row > MM_PATCH) {
                    mm_conv_chunked(&k, buf, &wr, g, iy0, ix0);
                    continue;
                }
                {
                    int32_t nblk = k.row - k.row % (16 << k.lp);
                    const uint8_t *wrow = w + (int32_t)g * k.cout_g * k.row_bytes;
                    for (int ky = 0; ky < kh; ky++)
                        for (int kx = 0; kx < kw; kx++)
                            mm_gather(buf, in, in_h, in_w, k.in_pix, k.ib, k.is, g * k.cin_g,
                                      k.cin_g, (ky * kw + kx) * k.cin_g, nblk, k.lp, iy0 + ky,
                                      ix0 + kx);
                    mm_channels(buf, wrow, k.row, k.row_bytes, k.wb, bias + g * k.cout_g,
                                mult + g * k.cout_g, shift + g * k.cout_g, k.cout_g, k.bk, qmin,
                                qmax, &wr);
                }
            }
            mm_flush(&wr);
        }
    }
#else
    (void)buf, (void)in_h, (void)in_w, (void)kh, (void)kw, (void)out_h, (void)out_w, (void)sh;
    (void)sw, (void)ph, (void)pw, (void)bias, (void)mult, (void)shift, (void)qmin, (void)qmax;
    (void)out_pix;
#endif
}
#endif

#if MM_USE_DENSE_PT || MM_USE_PW8D_PT_U || MM_USE_PW8D_PT_S || MM_USE_SUB8D_PT_W4 ||            \
    MM_USE_SUB8D_PT_W2 || MM_USE_PW8_PT || MM_USE_SUB8D4_PT_ANY
/* ---- mm_dense_pt: linears whose channels share one multiplier and one shift ---------------
 * (per-tensor weight scales, as TFLite's int8 fully connected layers: the layer stores one
 * mult and one shift instead of one per channel). The fast paths are mm_pointwise8's and the
 * sub8 path's dense asm loops with MM_DENSE_TAIL_PT; DENSE_PT takes everything else. */
#if MM_USE_PW8_PT
/* PW8_PT: 8-bit weights on 8-bit inputs (mm_pointwise8's interleaved blocks) off the dense
 * loop's rule: mm_pw8_one (compiled for mm_pointwise8's odd pixels anyway) on each block of
 * four channels, given four copies of the one multiplier and shift (on the stack, as its own
 * sums), any requantization and output bits. A block's outputs start on a byte. */
static MM_NOINLINE void mm_dense_pt8(const uint8_t *x, const int8_t *w, int32_t row,
                                     const mm_quant_params *q, int out_c, uint8_t *out)
{
    const int32_t m = q->mult[0], m4[4] = {m, m, m, m};
    const int8_t s = q->shift[0], s4[4] = {s, s, s, s};
    mm_quant_params qb = *q;
    qb.mult = m4;
    qb.shift = s4;
    for (int co = 0; co < out_c; co += 4) {
        const mm_pw8_job j = {x, out, w + co * row, &qb, 0, row, 0, 0,
                              out_c - co < 4 ? out_c - co : 4, 1, 1, 0};
        qb.bias = q->bias + co;
        mm_pw8_one(&j, x, out + co * q->out_bits / 8);
    }
}
#endif

#if MM_USE_DENSE_PT || MM_USE_SUB8D4_PT_ANY
/* A natural row of n 4- or 2-bit weights against n 8-bit inputs (one contiguous run): each
 * weight byte's fields sign-extended by a shift pair, lowest field first. */
static MM_INLINE int32_t mm_dense_dot8(const uint8_t *x, const uint8_t *w, int32_t n, int wb,
                                       int is)
{
    int32_t acc = 0, i = 0;
#define MM_X(k) (is ? (int32_t)(int8_t)x[i + (k)] : (int32_t)x[i + (k)])
    if (wb == 4)
        for (; i + 2 <= n; i += 2, w++) {
            const uint32_t b = (uint32_t)*w << 24;
            acc += ((int32_t)(b << 4) >> 28) * MM_X(0) + ((int32_t)b >> 28) * MM_X(1);
        }
    else
        for (; i + 4 <= n; i += 4, w++) {
            const uint32_t b = (uint32_t)*w << 24;
            acc += ((int32_t)(b << 6) >> 30) * MM_X(0) + ((int32_t)(b << 4) >> 30) * MM_X(1) +
                   ((int32_t)(b << 2) >> 30) * MM_X(2) + ((int32_t)b >> 30) * MM_X(3);
        }
    for (int f = 0; i < n; f++, i++) /* the fields of the row's last, partly used byte */
        acc += ((int32_t)(((uint32_t)*w << 24) << (8 - wb - f * wb)) >> (32 - wb)) * MM_X(0);
#undef MM_X
    return acc;
}
#endif

#if MM_USE_SUB8D4_PT_ANY
/* SUB8D4_PT (rows of n whole words' elements, 8-bit outputs): the blocks of four in the sub8
 * dense loop's 4-byte steps, then the rows after the last block (natural packed rows) one at
 * a time (a few classes). */
static MM_INLINE void mm_s8d4_pt(const uint8_t *x, const uint8_t *w, int32_t n,
                                 const mm_quant_params *q, int out_c, uint8_t *out, const int wb,
                                 const int is)
{
    const int32_t rb = n * wb / 8;
    int co = out_c & ~3;
    mm_s8_dense(x, w, n, q, co, out, wb, 1, 1 + is);
    for (w += co * rb; co < out_c; co++, w += rb)
        out[co] = (uint8_t)mm_pw_rq(mm_dense_dot8(x, w, n, wb, is), q->bias[co], q->mult[0],
                                    q->shift[0], q->bias_shift, q->qmin, q->qmax);
}
#define MM_S8D4_PT_FN(NAME, WB, IS)                                                               \
    static MM_NOINLINE void NAME(const uint8_t *x, const uint8_t *w, int32_t n,                   \
                                 const mm_quant_params *q, int out_c, uint8_t *out)               \
    {                                                                                             \
        mm_s8d4_pt(x, w, n, q, out_c, out, WB, IS);                                               \
    }
#if MM_USE_SUB8D4_PT_W4U
MM_S8D4_PT_FN(mm_s8d4_pt_w4u, 4, 0)
#endif
#if MM_USE_SUB8D4_PT_W4S
MM_S8D4_PT_FN(mm_s8d4_pt_w4s, 4, 1)
#endif
#if MM_USE_SUB8D4_PT_W2U
MM_S8D4_PT_FN(mm_s8d4_pt_w2u, 2, 0)
#endif
#if MM_USE_SUB8D4_PT_W2S
MM_S8D4_PT_FN(mm_s8d4_pt_w2s, 2, 1)
#endif
#endif

#if MM_USE_DENSE_PT
/* One output at a time, any input, weight and output bits, natural rows: the input's pixels
 * (in_h x in_w of in_c channels, each padded to whole bytes) are the row's taps in order; 8-bit
 * inputs (one contiguous run) by mm_pw8x1 or mm_dense_dot8. */
static MM_NOINLINE void mm_dense_pt_any(const uint8_t *in, uint8_t *out, const uint8_t *w,
                                        const mm_conv_dims *d, const mm_quant_params *q)
{
    const int ib = q->in_bits, is = q->in_signed, wb = q->w_bits;
    const int32_t pix = mm_bytes(d->in_c, ib), npix = (int32_t)d->in_h * d->in_w;
    const int32_t row = npix * d->in_c, row_bytes = mm_bytes(row, wb);
    mm_writer wr = {out, 0, 0, q->out_bits};
    for (int co = 0; co < d->out_c; co++, w += row_bytes) {
        int32_t acc = 0, k = 0;
        if (ib == 8 && wb == 8)
            acc = mm_pw8x1(in, (const int8_t *)w, row, is);
        else if (ib == 8)
            acc = mm_dense_dot8(in, w, row, wb, is);
        else
            for (int32_t p = 0; p < npix; p++)
                for (int c = 0; c < d->in_c; c++, k++)
                    acc += mm_get(in + p * pix, c, ib, is) * mm_get(w, k, wb, 1);
        mm_put(&wr, mm_pw_rq(acc, q->bias[co], q->mult[0], q->shift[0], q->bias_shift, q->qmin,
                             q->qmax));
    }
    mm_flush(&wr);
}
#endif

void mm_dense_pt(MM_CONV_ARGS)
{
    const int32_t row = (int32_t)d->k_h * d->k_w * d->in_c;
    const int rq8 = MM_RQ8(q->qmin, q->qmax, q->out_bits, mm_shifts_above32(q, 1));
    const int path = MM_DENSE_PT_PATH(q->in_bits, q->in_signed, q->w_bits, row, d->out_c, rq8);
#if MM_USE_PW8D_PT_U || MM_USE_PW8D_PT_S
    const mm_pw8_job j = {in, out, (const int8_t *)w, q, 0, row, 0, 0, d->out_c, 1, 1,
                          (uint8_t *)scratch};
#endif
    (void)scratch;
    switch (path) {
#if MM_USE_PW8D_PT_U
    case MM_P_PW8D_PT_U:
        mm_pw8d_pt_u(&j, in);
        return;
#endif
#if MM_USE_PW8D_PT_S
    case MM_P_PW8D_PT_S:
        mm_pw8d_pt_s(&j, in);
        return;
#endif
#if MM_USE_SUB8D_PT_W4
    case MM_P_SUB8D_PT_W4:
        mm_s8d_pt_w4(in, w, row, q, d->out_c, out);
        return;
#endif
#if MM_USE_SUB8D_PT_W2
    case MM_P_SUB8D_PT_W2:
        mm_s8d_pt_w2(in, w, row, q, d->out_c, out);
        return;
#endif
#if MM_USE_SUB8D4_PT_W4U
    case MM_P_SUB8D4_PT_W4U:
        mm_s8d4_pt_w4u(in, w, row, q, d->out_c, out);
        return;
#endif
#if MM_USE_SUB8D4_PT_W4S
    case MM_P_SUB8D4_PT_W4S:
        mm_s8d4_pt_w4s(in, w, row, q, d->out_c, out);
        return;
#endif
#if MM_USE_SUB8D4_PT_W2U
    case MM_P_SUB8D4_PT_W2U:
        mm_s8d4_pt_w2u(in, w, row, q, d->out_c, out);
        return;
#endif
#if MM_USE_SUB8D4_PT_W2S
    case MM_P_SUB8D4_PT_W2S:
        mm_s8d4_pt_w2s(in, w, row, q, d->out_c, out);
        return;
#endif
#if MM_USE_PW8_PT
    case MM_P_PW8_PT:
        mm_dense_pt8(in, (const int8_t *)w, row, q, d->out_c, out);
        return;
#endif
#if MM_USE_DENSE_PT
    case MM_P_DENSE_PT:
        mm_dense_pt_any(in, out, w, d, q);
        return;
#endif
    default:
        MM_PATH_OFF();
    }
}
#endif
