/* micromix: dot products of an unpacked int16 patch with packed weight rows.
 *
 * Kept in their own file on purpose: compiled on their own these loops are vectorised by
 * gcc -O2 (inlined into the loops of mm_conv.c the vectoriser gives up). The main loops run
 * over a count that is a multiple of 16 by construction (n & ~15), so they need no scalar
 * epilogue, which is what -O2's cost model requires. The x4 versions take four consecutive
 * weight rows (row_bytes apart) and load x once for all four.
 *
 * For 4- and 2-bit weights, x holds its first nblk = 16 * P * floor(n / (16 * P)) elements
 * as P = 8 / bits planes (see mm_slot in mm_conv.c): weight byte i multiplies x[i], x[m + i],
 * ... (m = nblk / P), so each field of a weight byte meets a contiguous run of x.
 */
#include "mm_kernels.h"

#define MM_S4(b, s) ((int16_t)(((((b) >> (s)) & 15) ^ 8) - 8)) /* signed 4-bit field */
#define MM_S2(b, s) ((int16_t)(((((b) >> (s)) & 3) ^ 2) - 2))  /* signed 2-bit field */

int32_t mm_dot8(const int16_t *x, const uint8_t *w, int32_t n)
{
    const int8_t *ws = (const int8_t *)w;
    const int32_t m = n & ~15;
    int32_t acc = 0, i;
    for (i = 0; i < m; i++)
        acc += x[i] * ws[i];
    for (; i < n; i++)
        acc += x[i] * ws[i];
    return acc;
}

#if defined(__ARM_FEATURE_DSP)
static inline uint32_t mm_dot_ld32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Four inputs per step: their int16 pairs (0, 1) and (2, 3) regrouped as (0, 2) and (1, 3)
 * (PKHBT / PKHTB, shared by the four rows) meet each row's weight word extended by SXTB16
 * (bytes 0, 2) and SXTB16 ror 8 (bytes 1, 3): two SMLAD per row instead of four SMLABB and
 * four byte loads. */
void mm_dot8x4(const int16_t *x, const uint8_t *w, int32_t rb, int32_t n, int32_t *out)
{
    const int8_t *w0 = (const int8_t *)w;
    const int32_t rb2 = 2 * rb, rb3 = 3 * rb;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, i = 0;
    for (int32_t k = n >> 2; k > 0; k--, i += 4) {
        const uint32_t x01 = mm_dot_ld32(x + i), x23 = mm_dot_ld32(x + i + 2);
        const uint32_t xe = (x01 & 0xFFFFu) | (x23 << 16), xo = (x01 >> 16) | (x23 & 0xFFFF0000u);
        uint32_t v = mm_dot_ld32(w0 + i);
        a0 = mm_smlad(mm_sxtb16(v), xe, mm_smlad(mm_sxtb16_8(v), xo, a0));
        v = mm_dot_ld32(w0 + rb + i);
        a1 = mm_smlad(mm_sxtb16(v), xe, mm_smlad(mm_sxtb16_8(v), xo, a1));
        v = mm_dot_ld32(w0 + rb2 + i);
        a2 = mm_smlad(mm_sxtb16(v), xe, mm_smlad(mm_sxtb16_8(v), xo, a2));
        v = mm_dot_ld32(w0 + rb3 + i);
        a3 = mm_smlad(mm_sxtb16(v), xe, mm_smlad(mm_sxtb16_8(v), xo, a3));
    }
    for (; i < n; i++) {
        a0 += x[i] * w0[i];
        a1 += x[i] * w0[rb + i];
        a2 += x[i] * w0[rb2 + i];
        a3 += x[i] * w0[rb3 + i];
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
}
#else
void mm_dot8x4(const int16_t *x, const uint8_t *w, int32_t rb, int32_t n, int32_t *out)
{
    const int8_t *w0 = (const int8_t *)w, *w1 = w0 + rb, *w2 = w1 + rb, *w3 = w2 + rb;
    const int32_t m = n & ~15;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, i;
    for (i = 0; i < m; i++) {
        /* int16 operands: gcc recognises each line as a dot product (pmaddwd on x86). */
        const int16_t v = x[i], u0 = w0[i], u1 = w1[i], u2 = w2[i], u3 = w3[i];
        a0 += v * u0;
        a1 += v * u1;
        a2 += v * u2;
        a3 += v * u3;
    }
    for (; i < n; i++) {
        a0 += x[i] * w0[i];
        a1 += x[i] * w1[i];
        a2 += x[i] * w2[i];
        a3 += x[i] * w3[i];
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
}
#endif

/* Tail of a 4-bit row: weights from element 2 * k0 on, x in natural order, whole bytes first. */
static int32_t mm_tail4(const int16_t *x, const uint8_t *w, int32_t k0, int32_t n)
{
    int32_t acc = 0, k;
    for (k = k0; 2 * k + 1 < n; k++)
        acc += x[2 * k] * MM_S4(w[k], 0) + x[2 * k + 1] * MM_S4(w[k], 4);
    if (2 * k < n)
        acc += x[2 * k] * MM_S4(w[k], 0);
    return acc;
}

static int32_t mm_tail2(const int16_t *x, const uint8_t *w, int32_t k0, int32_t n)
{
    int32_t acc = 0, k;
    for (k = k0; 4 * k + 3 < n; k++)
        acc += x[4 * k] * MM_S2(w[k], 0) + x[4 * k + 1] * MM_S2(w[k], 2) +
               x[4 * k + 2] * MM_S2(w[k], 4) + x[4 * k + 3] * MM_S2(w[k], 6);
    for (int32_t i = 4 * k; i < n; i++)
        acc += x[i] * MM_S2(w[k], 2 * (i - 4 * k));
    return acc;
}

int32_t mm_dot4(const int16_t *x, const uint8_t *w, int32_t n)
{
    const int32_t m = (n >> 1) & ~15; /* weight bytes in the planar part */
    const int16_t *xh = x + m;
    int32_t acc = 0, i;
    for (i = 0; i < m; i++)
        acc += x[i] * MM_S4(w[i], 0) + xh[i] * MM_S4(w[i], 4);
    return acc + mm_tail4(x, w, m, n);
}

#if defined(__ARM_FEATURE_DSP)
/* Sub-byte rows on DSP cores. Each field of a weight word is masked in place at the top of its
 * byte (field f of 4-bit weights: (v << 4 (1 - f)) & 0xF0F0F0F0), where SXTB16 reads it as an
 * int8 holding the weight times 2^(8 - bits); the int16 inputs of the matching plane are
 * regrouped into (0, 2) and (1, 3) pairs (as in mm_dot8x4) and two SMLAD per field add
 * four products. The scaled sum is exact and shifted back at the end: |x| <= 255, |w| <= 8
 * and n <= MM_PATCH keep it below 2^24 before the scale of 16 (4-bit) or 64 (2-bit). */
static MM_INLINE void mm_pk(uint32_t a, uint32_t b, uint32_t *lo, uint32_t *hi)
{
    *lo = (a & 0xFFFFu) | (b << 16); /* PKHBT: the low halves of a and b */
    *hi = (a >> 16) | (b & 0xFFFF0000u); /* PKHTB: the high halves */
}

static MM_INLINE void mm_pairs(const int16_t *p, uint32_t *e, uint32_t *o)
{
    mm_pk(mm_dot_ld32(p), mm_dot_ld32(p + 2), e, o);
}

static MM_INLINE int32_t mm_field(uint32_t f, uint32_t e, uint32_t o, int32_t acc)
{
    return mm_smlad(mm_sxtb16(f), e, mm_smlad(mm_sxtb16_8(f), o, acc));
}

void mm_dot4x4(const int16_t *x, const uint8_t *w, int32_t rb, int32_t n, int32_t *out)
{
    const uint8_t *w0 = w, *w1 = w0 + rb, *w2 = w1 + rb, *w3 = w2 + rb;
    const int32_t m = (n >> 1) & ~15;
    const int16_t *xh = x + m;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (int32_t i = 0; i < m; i += 4) {
        uint32_t le, lo, he, ho, v;
        mm_pairs(x + i, &le, &lo);
        mm_pairs(xh + i, &he, &ho);
        v = mm_dot_ld32(w0 + i);
        a0 = mm_field((v << 4) & 0xF0F0F0F0u, le, lo, mm_field(v & 0xF0F0F0F0u, he, ho, a0));
        v = mm_dot_ld32(w1 + i);
        a1 = mm_field((v << 4) & 0xF0F0F0F0u, le, lo, mm_field(v & 0xF0F0F0F0u, he, ho, a1));
        v = mm_dot_ld32(w2 + i);
        a2 = mm_field((v << 4) & 0xF0F0F0F0u, le, lo, mm_field(v & 0xF0F0F0F0u, he, ho, a2));
        v = mm_dot_ld32(w3 + i);
        a3 = mm_field((v << 4) & 0xF0F0F0F0u, le, lo, mm_field(v & 0xF0F0F0F0u, he, ho, a3));
    }
    /* The natural-order rest, a word (eight inputs) at a time: byte b holds inputs 2b (low)
     * and 2b + 1 (high), so the low fields meet (x0, x4), (x2, x6), the high (x1, x5), (x3, x7). */
    int32_t k = m;
    for (; 2 * k + 8 <= n; k += 4) {
        const int16_t *p = x + 2 * k;
        uint32_t el, eh, ol, oh, v;
        mm_pk(mm_dot_ld32(p), mm_dot_ld32(p + 4), &el, &eh);
        mm_pk(mm_dot_ld32(p + 2), mm_dot_ld32(p + 6), &ol, &oh);
        v = mm_dot_ld32(w0 + k);
        a0 = mm_field((v << 4) & 0xF0F0F0F0u, el, ol, mm_field(v & 0xF0F0F0F0u, eh, oh, a0));
        v = mm_dot_ld32(w1 + k);
        a1 = mm_field((v << 4) & 0xF0F0F0F0u, el, ol, mm_field(v & 0xF0F0F0F0u, eh, oh, a1));
        v = mm_dot_ld32(w2 + k);
        a2 = mm_field((v << 4) & 0xF0F0F0F0u, el, ol, mm_field(v & 0xF0F0F0F0u, eh, oh, a2));
        v = mm_dot_ld32(w3 + k);
        a3 = mm_field((v << 4) & 0xF0F0F0F0u, el, ol, mm_field(v & 0xF0F0F0F0u, eh, oh, a3));
    }
    out[0] = (a0 >> 4) + mm_tail4(x, w0, k, n);
    out[1] = (a1 >> 4) + mm_tail4(x, w1, k, n);
    out[2] = (a2 >> 4) + mm_tail4(x, w2, k, n);
    out[3] = (a3 >> 4) + mm_tail4(x, w3, k, n);
}
#else
void mm_dot4x4(const int16_t *x, const uint8_t *w, int32_t rb, int32_t n, int32_t *out)
{
    const uint8_t *w0 = w, *w1 = w0 + rb, *w2 = w1 + rb, *w3 = w2 + rb;
    const int32_t m = (n >> 1) & ~15;
    const int16_t *xh = x + m;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, i;
    for (i = 0; i < m; i++) {
        const int16_t p = x[i], q = xh[i];
        a0 += p * MM_S4(w0[i], 0) + q * MM_S4(w0[i], 4);
        a1 += p * MM_S4(w1[i], 0) + q * MM_S4(w1[i], 4);
        a2 += p * MM_S4(w2[i], 0) + q * MM_S4(w2[i], 4);
        a3 += p * MM_S4(w3[i], 0) + q * MM_S4(w3[i], 4);
    }
    out[0] = a0 + mm_tail4(x, w0, m, n);
    out[1] = a1 + mm_tail4(x, w1, m, n);
    out[2] = a2 + mm_tail4(x, w2, m, n);
    out[3] = a3 + mm_tail4(x, w3, m, n);
}
#endif

int32_t mm_dot2(const int16_t *x, const uint8_t *w, int32_t n)
{
    const int32_t m = (n >> 2) & ~15;
    const int16_t *x1 = x + m, *x2 = x + 2 * m, *x3 = x + 3 * m;
    int32_t acc = 0, i;
    for (i = 0; i < m; i++)
        acc += x[i] * MM_S2(w[i], 0) + x1[i] * MM_S2(w[i], 2) + x2[i] * MM_S2(w[i], 4) +
               x3[i] * MM_S2(w[i], 6);
    return acc + mm_tail2(x, w, m, n);
}

#if defined(__ARM_FEATURE_DSP)
/* Four planes, two rows at a time, one plane's input pairs live at a time. */
void mm_dot2x4(const int16_t *x, const uint8_t *w, int32_t rb, int32_t n, int32_t *out)
{
    const int32_t m = (n >> 2) & ~15;
    for (int r = 0; r < 4; r += 2) {
        const uint8_t *wa = w + r * rb, *wb = wa + rb;
        int32_t a = 0, b = 0;
        for (int32_t i = 0; i < m; i += 4) {
            /* field by field: one plane's pairs live at a time (no spills) */
            const uint32_t va = mm_dot_ld32(wa + i), vb = mm_dot_ld32(wb + i);
            for (int f = 0; f < 4; f++) {
                uint32_t e, o;
                mm_pairs(x + f * m + i, &e, &o);
                a = mm_field((va << (6 - 2 * f)) & 0xC0C0C0C0u, e, o, a);
                b = mm_field((vb << (6 - 2 * f)) & 0xC0C0C0C0u, e, o, b);
            }
        }
        /* Natural order, sixteen inputs a word: field f of byte b holds input 4b + f, so
         * field f meets (x[f], x[8 + f]) and (x[4 + f], x[12 + f]). */
        int32_t k = m;
        for (; 4 * k + 16 <= n; k += 4) {
            const int16_t *q = x + 4 * k;
            const uint32_t va = mm_dot_ld32(wa + k), vb = mm_dot_ld32(wb + k);
            for (int h = 0; h < 2; h++) { /* fields 2h and 2h + 1 share their four loads */
                uint32_t e0, e1, o0, o1;
                const int s0 = 6 - 4 * h, s1 = 4 - 4 * h;
                mm_pk(mm_dot_ld32(q + 2 * h), mm_dot_ld32(q + 8 + 2 * h), &e0, &e1);
                mm_pk(mm_dot_ld32(q + 4 + 2 * h), mm_dot_ld32(q + 12 + 2 * h), &o0, &o1);
                a = mm_field((va << s0) & 0xC0C0C0C0u, e0, o0, a);
                b = mm_field((vb << s0) & 0xC0C0C0C0u, e0, o0, b);
                a = mm_field((va << s1) & 0xC0C0C0C0u, e1, o1, a);
                b = mm_field((vb << s1) & 0xC0C0C0C0u, e1, o1, b);
            }
        }
        out[r] = (a >> 6) + mm_tail2(x, wa, k, n);
        out[r + 1] = (b >> 6) + mm_tail2(x, wb, k, n);
    }
}
#else
void mm_dot2x4(const int16_t *x, const uint8_t *w, int32_t rb, int32_t n, int32_t *out)
{
    const uint8_t *w0 = w, *w1 = w0 + rb, *w2 = w1 + rb, *w3 = w2 + rb;
    const int32_t m = (n >> 2) & ~15;
    const int16_t *x1 = x + m, *x2 = x + 2 * m, *x3 = x + 3 * m;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, i;
    for (i = 0; i < m; i++) {
        const int16_t p = x[i], q = x1[i], r = x2[i], s = x3[i];
        a0 += p * MM_S2(w0[i], 0) + q * MM_S2(w0[i], 2) + r * MM_S2(w0[i], 4) + s * MM_S2(w0[i], 6);
        a1 += p * MM_S2(w1[i], 0) + q * MM_S2(w1[i], 2) + r * MM_S2(w1[i], 4) + s * MM_S2(w1[i], 6);
        a2 += p * MM_S2(w2[i], 0) + q * MM_S2(w2[i], 2) + r * MM_S2(w2[i], 4) + s * MM_S2(w2[i], 6);
        a3 += p * MM_S2(w3[i], 0) + q * MM_S2(w3[i], 2) + r * MM_S2(w3[i], 4) + s * MM_S2(w3[i], 6);
    }
    out[0] = a0 + mm_tail2(x, w0, m, n);
    out[1] = a1 + mm_tail2(x, w1, m, n);
    out[2] = a2 + mm_tail2(x, w2, m, n);
    out[3] = a3 + mm_tail2(x, w3, m, n);
}
#endif

#if defined(__ARM_FEATURE_DSP)
/* ---- sub-byte pointwise on DSP cores (mm_pointwise_sub) ------------------------------------
 *
 * Only 4- or 2-bit weights on 2- or 4-bit inputs come here (8-bit weights with sub-byte inputs
 * take MM_IS_PW8W, whose rule is checked first; 8-bit inputs mm_conv.c's sub8 path). A weight
 * word (4 packed bytes, natural layout) becomes SMLAD-ready halfword pairs with one AND per
 * field and one SXTB16 per pair: field f of every byte is masked in place at the top of its
 * byte (so the sign bit is the byte's), which scales it by
 * 2^(8 - bits): 16 for 4-bit, 64 for 2-bit weights; the sum is shifted back exactly at the end.
 * The pairs come out in the order p = 2f + r (r: bytes 0 and 2, then 1 and 3), so the input
 * pixel is unpacked once per pixel into int16 in that order (mm_pw_fill); one LDR then gives
 * one ready input pair, shared by two weight rows. */
static inline uint32_t mm_x32(const int16_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint32_t mm_w32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Buffer slot of element e within a block of 4 * 8 / wb elements; lpw = log2(8 / wb) (shifts,
 * no division: this runs once per input element and pixel). */
static inline int32_t mm_pw_slot(int32_t e, int lpw)
{
    const int32_t byte = e >> lpw, f = e & ((1 << lpw) - 1);
    return 2 * (2 * f + (byte & 1)) + (byte >> 1);
}

static inline void mm_st32(int16_t *p, uint32_t v) { memcpy(p, &v, 4); }

/* Input pixel px -> the pair-ordered buffer of mm_pws_dot2 for the first nblk elements (a
 * multiple of blk). With equal input and weight bits the fields of the 4 input bytes of a block
 * sit exactly where the weight's fields do, so pair (f, r) is one shift and one AND of the
 * input word (two more for signed inputs). Other pairs go element by element. */
static MM_NOINLINE void mm_pw_fill(int16_t *buf, const uint8_t *px, int32_t nblk, int ib,
                                   int is, int wb, int lpw)
{
    const int32_t nw = nblk >> (2 + lpw);
    if (ib == wb && wb == 4) {
        const uint32_t m = 0x000F000Fu, s = is ? 0x00080008u : 0;
        for (int32_t k = 0; k < nw; k++, buf += 8) {
            const uint32_t W = mm_w32(px + 4 * k);
            mm_st32(buf, mm_ssub16(((W >> 0) & m) ^ s, s));
            mm_st32(buf + 2, mm_ssub16(((W >> 8) & m) ^ s, s));
            mm_st32(buf + 4, mm_ssub16(((W >> 4) & m) ^ s, s));
            mm_st32(buf + 6, mm_ssub16(((W >> 12) & m) ^ s, s));
        }
        return;
    }
    if (ib == wb && wb == 2) {
        const uint32_t m = 0x00030003u, s = is ? 0x00020002u : 0;
        for (int32_t k = 0; k < nw; k++, buf += 16) {
            const uint32_t W = mm_w32(px + 4 * k);
            for (int f = 0; f < 4; f++) {
                mm_st32(buf + 4 * f, mm_ssub16(((W >> (2 * f)) & m) ^ s, s));
                mm_st32(buf + 4 * f + 2, mm_ssub16(((W >> (2 * f + 8)) & m) ^ s, s));
            }
        }
        return;
    }
    {
        const int blk = 4 << lpw;
        for (int32_t e = 0; e < nblk; e++)
            buf[(e & ~(blk - 1)) + mm_pw_slot(e & (blk - 1), lpw)] = (int16_t)mm_get(px, e, ib, is);
    }
}

/* One weight row's word, loaded from [p + off], against the input pairs of one field step: an
 * AND that brings the field to the top of each byte, two SXTB16 and two SMLAD. One asm block,
 * load included, so that the compiler keeps this order and reloads the word for the next
 * field (left to itself it hoisted every load and spilled the pairs). The weights are
 * constants no store can change. */
#define MM_FIELD(acc, p, off, mk, sh, q0, q1)                                                     \
    do {                                                                                          \
        uint32_t t_, s_;                                                                          \
        __asm__("ldr %[T], [%[P], #" #off "]\n\t"                                                 \
                "and %[T], %[M], %[T], lsl #" #sh "\n\t"                                          \
                "sxtb16 %[S], %[T]\n\t"                                                           \
                "smlad %[A], %[S], %[X0], %[A]\n\t"                                               \
                "sxtb16 %[S], %[T], ror #8\n\t"                                                   \
                "smlad %[A], %[S], %[X1], %[A]"                                                   \
                : [A] "+r"(acc), [T] "=&r"(t_), [S] "=&r"(s_)                                     \
                : [M] "r"(mk), [P] "r"(p), [X0] "r"(q0), [X1] "r"(q1));                           \
    } while (0)

/* The same for two rows (words at p + oa and p + ob), both words loaded first: back-to-back
 * loads pipeline (one cycle each after the first) where a load between multiplies costs two. */
#define MM_FIELD2(acca, accb, p, oa, ob, mk, sh, q0, q1)                                          \
    do {                                                                                          \
        uint32_t u_, v_, s_;                                                                      \
        __asm__("ldr %[U], [%[P], #" #oa "]\n\t"                                                  \
                "ldr %[V], [%[P], #" #ob "]\n\t"                                                  \
                "and %[U], %[M], %[U], lsl #" #sh "\n\t"                                          \
                "and %[V], %[M], %[V], lsl #" #sh "\n\t"                                          \
                "sxtb16 %[S], %[U]\n\t"                                                           \
                "smlad %[A], %[S], %[X0], %[A]\n\t"                                               \
                "sxtb16 %[S], %[U], ror #8\n\t"                                                   \
                "smlad %[A], %[S], %[X1], %[A]\n\t"                                               \
                "sxtb16 %[S], %[V]\n\t"                                                           \
                "smlad %[B], %[S], %[X0], %[B]\n\t"                                               \
                "sxtb16 %[S], %[V], ror #8\n\t"                                                   \
                "smlad %[B], %[S], %[X1], %[B]"                                                   \
                : [A] "+r"(acca), [B] "+r"(accb), [U] "=&r"(u_), [V] "=&r"(v_), [S] "=&r"(s_)     \
                : [M] "r"(mk), [P] "r"(p), [X0] "r"(q0), [X1] "r"(q1));                           \
    } while (0)

/* One field step of the four rows of an interleaved block (row j's word at p + 4j). */
#define MM_FIELD4(p, m, sh, q0, q1)                                                               \
    do {                                                                                          \
        const uint32_t x0_ = (q0), x1_ = (q1);                                                    \
        MM_FIELD2(a0, a1, p, 0, 4, m, sh, x0_, x1_);                                              \
        MM_FIELD2(a2, a3, p, 8, 12, m, sh, x0_, x1_);                                             \
    } while (0)

/* Four rows of an interleaved block against the unpacked pixel x (nw words per row): per field,
 * one pair of input loads shared by the four rows. Sums scaled by 2^(8 - wb). */
static inline void mm_pws_dot4(const int16_t *x, const uint8_t *w, int32_t nw, int wb,
                               int32_t *o)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const uint8_t *const end = w + 16 * nw;
    if (wb == 4) {
        const uint32_t m = 0xF0F0F0F0u;
        for (; w < end; w += 16, x += 8) {
            MM_FIELD4(w, m, 4, mm_x32(x), mm_x32(x + 2));
            MM_FIELD4(w, m, 0, mm_x32(x + 4), mm_x32(x + 6));
        }
    } else {
        const uint32_t m = 0xC0C0C0C0u;
        for (; w < end; w += 16, x += 16) {
            MM_FIELD4(w, m, 6, mm_x32(x), mm_x32(x + 2));
            MM_FIELD4(w, m, 4, mm_x32(x + 4), mm_x32(x + 6));
            MM_FIELD4(w, m, 2, mm_x32(x + 8), mm_x32(x + 10));
            MM_FIELD4(w, m, 0, mm_x32(x + 12), mm_x32(x + 14));
        }
    }
    o[0] = a0;
    o[1] = a1;
    o[2] = a2;
    o[3] = a3;
}

/* One row in natural order (the rows after the last block of four); scaled like mm_pws_dot4. */
static int32_t mm_pws_dot1(const int16_t *x, const uint8_t *w, int32_t nw, int wb)
{
    int32_t a0 = 0;
    const uint8_t *const end = w + 4 * nw;
    const uint32_t m = wb == 4 ? 0xF0F0F0F0u : 0xC0C0C0C0u;
    for (; w < end; w += 4) {
        if (wb == 4) {
            MM_FIELD(a0, w, 0, m, 4, mm_x32(x), mm_x32(x + 2));
            MM_FIELD(a0, w, 0, m, 0, mm_x32(x + 4), mm_x32(x + 6));
            x += 8;
        } else {
            MM_FIELD(a0, w, 0, m, 6, mm_x32(x), mm_x32(x + 2));
            MM_FIELD(a0, w, 0, m, 4, mm_x32(x + 4), mm_x32(x + 6));
            MM_FIELD(a0, w, 0, m, 2, mm_x32(x + 8), mm_x32(x + 10));
            MM_FIELD(a0, w, 0, m, 0, mm_x32(x + 12), mm_x32(x + 14));
            x += 16;
        }
    }
    return a0;
}
#define MM_PWS_SCALE(wb) ((wb) == 4 ? 4 : 6) /* the fields sit at the top of their bytes */
#else
/* ---- sub-byte pointwise, portable: the pixel unpacked in natural order, the weight rows
 * read in their layout (row j of an interleaved block: word i at 16 i + 4 j). */
#define MM_PWS_SCALE(wb) 0

/* One row whose word i sits at w + ws * i. */
static int32_t mm_pws_row(const int16_t *x, const uint8_t *w, int32_t ws, int32_t nw, int wb)
{
    const int per = 8 / wb, mask = (1 << wb) - 1, sx = 1 << (wb - 1);
    int32_t acc = 0;
    for (int32_t i = 0; i < nw; i++, w += ws)
        for (int b = 0; b < 4; b++, x += per)
            for (int f = 0; f < per; f++)
                acc += x[f] * ((((w[b] >> (f * wb)) & mask) ^ sx) - sx);
    return acc;
}

/* The four rows of an interleaved block together: each input value is read once for the
 * four weight fields it meets (the x4 dot products' scheme). */
static void mm_pws_dot4(const int16_t *x, const uint8_t *w, int32_t nw, int wb, int32_t *o)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (int32_t i = 0; i < 4 * nw; i++, w += (i & 3) ? 1 : 13) {
        const int32_t u0 = w[0], u1 = w[4], u2 = w[8], u3 = w[12];
        if (wb == 4) {
            for (int f = 0; f < 8; f += 4, x++) {
                a0 += *x * MM_S4(u0, f);
                a1 += *x * MM_S4(u1, f);
                a2 += *x * MM_S4(u2, f);
                a3 += *x * MM_S4(u3, f);
            }
        } else {
            for (int f = 0; f < 8; f += 2, x++) {
                a0 += *x * MM_S2(u0, f);
                a1 += *x * MM_S2(u1, f);
                a2 += *x * MM_S2(u2, f);
                a3 += *x * MM_S2(u3, f);
            }
        }
    }
    o[0] = a0;
    o[1] = a1;
    o[2] = a2;
    o[3] = a3;
}

static int32_t mm_pws_dot1(const int16_t *x, const uint8_t *w, int32_t nw, int wb)
{
    return mm_pws_row(x, w, 4, nw, wb);
}
#endif

/* Adds k rows' tails, scaled like their sums: elements nblk .. n - 1 (natural order in x),
 * row j's packed from t + j * tb on. */
static MM_NOINLINE void mm_pws_tails(const int16_t *x, const uint8_t *t, int32_t tb, int k,
                                     int32_t nblk, int32_t n, int wb, int scale, int32_t *acc)
{
    for (int j = 0; j < k; j++, t += tb) {
        int32_t a = 0;
        for (int32_t e = nblk; e < n; e++)
            a += x[e] * mm_get(t, e - nblk, wb, 1);
        acc[j] += a * (1 << scale); /* fits: |sums| stay below 2^24 (MM_PATCH inputs) */
    }
}

/* mm_pointwise_sub on 2- and 4-bit inputs (mm_conv.c's mm_pointwise_sub calls it). */
void mm_pointwise_sub_packed(MM_CONV_ARGS)
{
    const int ib = q->in_bits, is = q->in_signed, wb = q->w_bits, ob = q->out_bits;
    const int bk = q->bias_shift, scale = MM_PWS_SCALE(wb), in_c = d->in_c, in_w = d->in_w;
    const int out_c = d->out_c, out_h = d->out_h, out_w = d->out_w;
    const int sh = d->stride_h, sw = d->stride_w;
    const int32_t *const bias = q->bias, *const mult = q->mult;
    const int8_t *const shift = q->shift;
    const int32_t qmin = q->qmin, qmax = q->qmax;
    int16_t *const buf = (int16_t *)scratch;
    const int lpw = wb == 4 ? 1 : 2, blk = 4 << lpw;
    const int32_t in_pix = mm_bytes(in_c, ib), rb = mm_bytes(in_c, wb);
    const int32_t nblk = in_c - in_c % blk, nw = nblk / blk, tb = rb - 4 * nw;
    const int fast = mm_pw_fast(q, out_c);
    const int32_t kb = (int32_t)1 << bk;
    const uint32_t m4 = (uint32_t)qmax * 0x01010101u;
    MM_ASSERT(ib < 8);
    for (int oy = 0; oy < out_h; oy++) {
        for (int ox = 0; ox < out_w; ox++) {
            const uint8_t *px = in + ((int32_t)oy * sh * in_w + (int32_t)ox * sw) * in_pix;
            const uint8_t *wp = w;
            mm_writer wr;
            int co = 0;
#if defined(__ARM_FEATURE_DSP)
            mm_pw_fill(buf, px, nblk, ib, is, wb, lpw);
            for (int32_t e = nblk; e < in_c; e++)
                buf[e] = (int16_t)mm_get(px, e, ib, is);
#else
            (void)lpw;
            mm_unpack(buf, px, in_c, ib, is);
#endif
            for (; co + 4 <= out_c; co += 4, wp += 4 * rb) {
                int32_t acc[4];
                mm_pws_dot4(buf, wp, nw, wb, acc);
                if (tb)
                    mm_pws_tails(buf, wp + 16 * nw, tb, 4, nblk, in_c, wb, scale, acc);
                if (MM_LIKELY(fast)) { /* >> scale is exact: every term is a multiple */
                    uint32_t y = 0;
#if defined(__GNUC__)
#pragma GCC unroll 4
#endif
                    for (int j = 0; j < 4; j++)
                        y |= mm_pw_u(acc[j] >> scale, bias[co + j], mult[co + j], shift[co + j],
                                     kb) << 8 * j;
                    out = mm_pw_st4(out, y, ob, m4);
                    continue;
                }
#if defined(__GNUC__)
#pragma GCC unroll 4
#endif
                for (int j = 0; j < 4; j++)
                    acc[j] = mm_pw_rq(acc[j] >> scale, bias[co + j], mult[co + j], shift[co + j],
                                      bk, qmin, qmax);
                wr = (mm_writer){out, 0, 0, ob};
                mm_put4(&wr, acc);
                out = wr.p;
            }
            wr = (mm_writer){out, 0, 0, ob}; /* blocks of four outputs are whole bytes */
            for (; co < out_c; co++, wp += rb) {
                int32_t acc = mm_pws_dot1(buf, wp, nw, wb);
                if (tb)
                    mm_pws_tails(buf, wp + 4 * nw, 0, 1, nblk, in_c, wb, scale, &acc);
                mm_put(&wr, mm_pw_rq(acc >> scale, bias[co], mult[co], shift[co], bk, qmin, qmax));
            }
            mm_flush(&wr);
            out = wr.p;
        }
    }
}

/* mm_requant out of line, for the rare shifts <= 32 of mm_pw_rq (its 64-bit shift is long). */
MM_NOINLINE int32_t mm_requant_call(int32_t acc, int32_t m0, int s, int32_t qmin, int32_t qmax)
{
    return mm_requant(acc, m0, s, qmin, qmax);
}
