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

#if defined(__ARM_FEATURE_DSP)
/* ---- sub-byte pointwise on DSP cores (mm_pointwise_sub) ------------------------------------
 *
 * A weight word (4 packed bytes, natural layout) becomes SMLAD-ready halfword pairs with one
 * AND per field and one SXTB16 per pair: field f of every byte is masked in place at the top of
 * its byte (so the sign bit is the byte's), which scales it by 2^(8 - bits): 16 for 4-bit, 64
 * for 2-bit weights; the sum is shifted back exactly at the end. The pairs come out in the order
 * p = 2f + r (r: bytes 0 and 2, then 1 and 3), so the input pixel is unpacked once per pixel
 * into int16 in that order (mm_pw_slot); one LDR then gives one ready input pair. */
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
#define MM_SX(x)                                                                                  \
    ({                                                                                            \
        uint32_t r_;                                                                              \
        __asm__("sxtb16 %0, %1" : "=r"(r_) : "r"(x));                                             \
        r_;                                                                                       \
    })
#define MM_SXR(x)                                                                                 \
    ({                                                                                            \
        uint32_t r_;                                                                              \
        __asm__("sxtb16 %0, %1, ror #8" : "=r"(r_) : "r"(x));                                     \
        r_;                                                                                       \
    })
#define MM_SMLAD(a, b, acc) __asm__("smlad %0, %1, %2, %0" : "+r"(acc) : "r"(a), "r"(b))

/* Buffer slot of element e within a block of 4 * 8 / wb elements; lpw = log2(8 / wb) (shifts,
 * no division: this runs once per input element and pixel). */
static inline int32_t mm_pw_slot(int32_t e, int lpw)
{
    const int32_t byte = e >> lpw, f = e & ((1 << lpw) - 1);
    return 2 * (2 * f + (byte & 1)) + (byte >> 1);
}

/* Two rows against the unpacked pixel x; nw weight words each; scaled sums. */
static void mm_pws_dot2(const int16_t *x, const uint8_t *w0, const uint8_t *w1, int32_t nw,
                        int wb, int32_t *o)
{
    int32_t a0 = 0, a1 = 0;
    if (wb == 8) {
        for (int32_t i = 0; i < nw; i++, x += 4) {
            const uint32_t p0 = mm_x32(x), p1 = mm_x32(x + 2);
            const uint32_t u = mm_w32(w0 + 4 * i), v = mm_w32(w1 + 4 * i);
            MM_SMLAD(MM_SX(u), p0, a0);
            MM_SMLAD(MM_SXR(u), p1, a0);
            MM_SMLAD(MM_SX(v), p0, a1);
            MM_SMLAD(MM_SXR(v), p1, a1);
        }
    } else if (wb == 4) {
        const uint32_t m = 0xF0F0F0F0u;
        for (int32_t i = 0; i < nw; i++, x += 8) {
            const uint32_t p0 = mm_x32(x), p1 = mm_x32(x + 2), p2 = mm_x32(x + 4);
            const uint32_t p3 = mm_x32(x + 6);
            const uint32_t u = mm_w32(w0 + 4 * i), v = mm_w32(w1 + 4 * i);
            uint32_t t = (u << 4) & m;
            MM_SMLAD(MM_SX(t), p0, a0);
            MM_SMLAD(MM_SXR(t), p1, a0);
            t = u & m;
            MM_SMLAD(MM_SX(t), p2, a0);
            MM_SMLAD(MM_SXR(t), p3, a0);
            t = (v << 4) & m;
            MM_SMLAD(MM_SX(t), p0, a1);
            MM_SMLAD(MM_SXR(t), p1, a1);
            t = v & m;
            MM_SMLAD(MM_SX(t), p2, a1);
            MM_SMLAD(MM_SXR(t), p3, a1);
        }
    } else {
        const uint32_t m = 0xC0C0C0C0u;
        for (int32_t i = 0; i < nw; i++, x += 16) {
            const uint32_t u = mm_w32(w0 + 4 * i), v = mm_w32(w1 + 4 * i);
            for (int f = 0; f < 4; f++) {
                const uint32_t p0 = mm_x32(x + 4 * f), p1 = mm_x32(x + 4 * f + 2);
                const uint32_t tu = (u << (6 - 2 * f)) & m, tv = (v << (6 - 2 * f)) & m;
                MM_SMLAD(MM_SX(tu), p0, a0);
                MM_SMLAD(MM_SXR(tu), p1, a0);
                MM_SMLAD(MM_SX(tv), p0, a1);
                MM_SMLAD(MM_SXR(tv), p1, a1);
            }
        }
    }
    o[0] = a0;
    o[1] = a1;
}

void mm_pointwise_sub(const uint8_t *in, uint8_t *out, const uint8_t *w, const int32_t *bias,
                      const int32_t *mult, const int8_t *shift, int in_c, int in_w, int out_c,
                      int out_h, int out_w, int sh, int sw, int fmt, int32_t qmin, int32_t qmax,
                      int16_t *buf)
{
    const int ib = MM_FMT_IN_BITS(fmt), is = MM_FMT_IN_SIGNED(fmt), wb = MM_FMT_W_BITS(fmt);
    const int ob = MM_FMT_OUT_BITS(fmt), bk = MM_FMT_BIAS_SHIFT(fmt);
    const int lpw = wb == 8 ? 0 : wb == 4 ? 1 : 2, blk = 4 << lpw, scale = lpw ? 2 + 2 * lpw : 0;
    const int32_t in_pix = mm_bytes(in_c, ib), rb = mm_bytes(in_c, wb);
    const int32_t nblk = in_c - in_c % blk, nw = nblk / blk;
    for (int oy = 0; oy < out_h; oy++) {
        for (int ox = 0; ox < out_w; ox++) {
            const uint8_t *px = in + ((int32_t)oy * sh * in_w + (int32_t)ox * sw) * in_pix;
            mm_writer wr = {out, 0, 0, ob};
            int co = 0;
            for (int32_t e = 0; e < nblk; e++)
                buf[(e & ~(blk - 1)) + mm_pw_slot(e & (blk - 1), lpw)] =
                    (int16_t)mm_get(px, e, ib, is);
            for (int32_t e = nblk; e < in_c; e++)
                buf[e] = (int16_t)mm_get(px, e, ib, is);
            for (; co < out_c; co += 2) {
                const int two = co + 1 < out_c;
                const uint8_t *w0 = w + (int32_t)co * rb, *w1 = two ? w0 + rb : w0;
                int32_t acc[2];
                mm_pws_dot2(buf, w0, w1, nw, wb, acc);
                for (int j = 0; j <= two; j++) {
                    const uint8_t *wr0 = j ? w1 : w0;
                    int32_t a = acc[j] >> scale; /* exact: every term is a multiple */
                    for (int32_t e = nblk; e < in_c; e++)
                        a += buf[e] * mm_get(wr0, e, wb, 1);
                    mm_put(&wr, mm_requant(mm_biased(a, bias[co + j], bk), mult[co + j],
                                           shift[co + j], qmin, qmax));
                }
            }
            mm_flush(&wr);
            out = wr.p;
        }
    }
}
#endif
