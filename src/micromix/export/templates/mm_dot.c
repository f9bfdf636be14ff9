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
