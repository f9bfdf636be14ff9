/* micromix: residual add and average pooling, any input / output bits. */
#include "mm_kernels.h"

/* The 8-bit add's constants: multipliers, clamp, shift, input signs. */
typedef struct {
    int32_t m0, m1, qmin, qmax;
    int n, as, bs;
} mm_add8;

/* a clamped to [0, 255]: one USAT on the Cortex-M (ARMv7-M has it without the DSP extension). */
#if defined(__ARM_ARCH_7M__) || defined(__ARM_ARCH_7EM__)
static inline int32_t mm_usat8(int32_t a)
{
    int32_t r;
    __asm__("usat %0, #8, %1" : "=r"(r) : "r"(a));
    return r;
}
#else
static inline int32_t mm_usat8(int32_t a) { return a < 0 ? 0 : a > 255 ? 255 : a; }
#endif

/* The add's common case: shift n <= 32 and an unsigned output over all of [0, 255]. Shifting
 * both inputs up by u = 32 - n puts the rule's shift at 32 exactly: |x| 2^u <= 255 2^23 fits
 * int32 (n >= 9), and (x 2^u + 2^31) >> 32, the rounded value, is the product sum's high word
 * plus the top bit of its low word (no carry chain: one ADD with LSR #31). So per element two
 * byte loads (LDRB / LDRSB by the input's sign: AS, BS constants), two shifts, SMULL + SMLAL,
 * the ADD, one USAT and a byte store; four elements per pass with their loads together (a run
 * of loads costs one cycle each after the first). Element i is stored after both of its inputs
 * are read, so in place over either input is safe. */
static inline int32_t mm_add_hi(int32_t x, int32_t y, int32_t m0, int32_t m1)
{
    const int64_t p = (int64_t)x * m0 + (int64_t)y * m1;
    return mm_usat8((int32_t)(p >> 32) + (int32_t)((uint32_t)p >> 31));
}
#define MM_ADD_LD(p, s, i) ((s) ? (int32_t)((const int8_t *)(p))[i] : (int32_t)(p)[i])
static MM_INLINE void mm_add_u8(const uint8_t *a, const uint8_t *b, uint8_t *out, int32_t total,
                                const mm_add8 *k, const int as, const int bs)
{
    const int32_t m0 = k->m0, m1 = k->m1;
    const int u = 32 - k->n;
    int32_t i = 0;
#define MM_ADD_V(x, y) mm_add_hi((x) * (1 << u), (y) * (1 << u), m0, m1)
    for (; i + 4 <= total; i += 4) {
        const int32_t x0 = MM_ADD_LD(a, as, i), y0 = MM_ADD_LD(b, bs, i);
        const int32_t x1 = MM_ADD_LD(a, as, i + 1), y1 = MM_ADD_LD(b, bs, i + 1);
        const int32_t x2 = MM_ADD_LD(a, as, i + 2), y2 = MM_ADD_LD(b, bs, i + 2);
        const int32_t x3 = MM_ADD_LD(a, as, i + 3), y3 = MM_ADD_LD(b, bs, i + 3);
        const int32_t v0 = MM_ADD_V(x0, y0), v1 = MM_ADD_V(x1, y1);
        const int32_t v2 = MM_ADD_V(x2, y2), v3 = MM_ADD_V(x3, y3);
        out[i] = (uint8_t)v0;
        out[i + 1] = (uint8_t)v1;
        out[i + 2] = (uint8_t)v2;
        out[i + 3] = (uint8_t)v3;
    }
    for (; i < total; i++) {
        const int32_t x = MM_ADD_LD(a, as, i), y = MM_ADD_LD(b, bs, i);
        out[i] = (uint8_t)MM_ADD_V(x, y);
    }
#undef MM_ADD_V
}

#define MM_ADD_U8(name, as, bs)                                                                   \
    static MM_NOINLINE void name(const uint8_t *a, const uint8_t *b, uint8_t *out, int32_t total, \
                                 const mm_add8 *k)                                                \
    {                                                                                             \
        mm_add_u8(a, b, out, total, k, as, bs);                                                   \
    }
#if MM_ON_ADD8_UU
MM_ADD_U8(mm_add_u8_uu, 0, 0)
#endif
#if MM_ON_ADD8_US
MM_ADD_U8(mm_add_u8_us, 0, 1)
#endif
#if MM_ON_ADD8_SU
MM_ADD_U8(mm_add_u8_su, 1, 0)
#endif
#if MM_ON_ADD8_SS
MM_ADD_U8(mm_add_u8_ss, 1, 1)
#endif

/* Whole bytes: the tensors are contiguous runs of values, read and written directly, each
 * output byte after both of its input bytes (so in place is safe over either input). The rule
 * (a m0 + b m1 + 2^(n-1)) >> n on 32-bit words (mm_add checks 9 <= n, so that the value fits
 * one: |a|, |b| <= 255, |m| < 2^31): SMLAL onto the rounding term, then for a shift within the
 * low word the two words' bits joined, for n = 32 the high word, and past it the high word of
 * the product sum alone, the rounding term lying in it (as mm_requant: the low word adds less
 * than one unit before the flooring shift). A signed byte is (b ^ 128) - 128: no branch. Kept
 * out of mm_add so that its loops have the registers to themselves. */
#if MM_ON_ADD8_ANY
static MM_NOINLINE void mm_add_bytes(const uint8_t *a, const uint8_t *b, uint8_t *out,
                                     int32_t total, const mm_add8 *k)
{
    const int32_t m0 = k->m0, m1 = k->m1, lo_q = k->qmin, hi_q = k->qmax;
    const int32_t fa = k->as ? 128 : 0, fb = k->bs ? 128 : 0;
    const int n = k->n;
    int32_t i;
#define MM_ADD_XY const int32_t x = (a[i] ^ fa) - fa, y = (b[i] ^ fb) - fb
#define MM_ADD_PUT(v) out[i] = (uint8_t)((v) < lo_q ? lo_q : (v) > hi_q ? hi_q : (v))
    if (n > 32) {
        const int s = n - 32;
        const int32_t r = (int32_t)1 << (s - 1);
        for (i = 0; i < total; i++) {
            MM_ADD_XY;
            const int32_t v = ((int32_t)(((int64_t)x * m0 + (int64_t)y * m1) >> 32) + r) >> s;
            MM_ADD_PUT(v);
        }
    } else if (n == 32) {
        for (i = 0; i < total; i++) {
            MM_ADD_XY;
            const int32_t v = (int32_t)((((int64_t)1 << 31) + (int64_t)x * m0 + (int64_t)y * m1) >> 32);
            MM_ADD_PUT(v);
        }
    } else {
        const int64_t half = (int64_t)1 << (n - 1);
        const int up = 32 - n;
        for (i = 0; i < total; i++) {
            MM_ADD_XY;
            const int64_t acc = half + (int64_t)x * m0 + (int64_t)y * m1;
            const int32_t v = (int32_t)(((uint32_t)acc >> n) | ((uint32_t)(acc >> 32) << up));
            MM_ADD_PUT(v);
        }
    }
#undef MM_ADD_XY
#undef MM_ADD_PUT
}
#endif

#if MM_ON_ADD_ANY
/* Packed values of any width: both inputs rescaled into one 64-bit sum before the single
 * shift. */
static MM_NOINLINE void mm_add_any(const uint8_t *a, const uint8_t *b, uint8_t *out,
                                   const mm_conv_dims *d, const mm_quant_params *q)
{
    const int ab = q->in_bits, as = q->in_signed, bb = q->in2_bits, bs = q->in2_signed;
    const int ob = q->out_bits, n = q->shift[0], c = d->in_c, h = d->in_h, w = d->in_w;
    const int32_t qmin = q->qmin, qmax = q->qmax;
    const int32_t a_pix = mm_bytes(c, ab), b_pix = mm_bytes(c, bb), o_pix = mm_bytes(c, ob);
    const int64_t ma = q->mult[0], mb = q->mult[1], half = (int64_t)1 << (n - 1);
    for (int32_t p = 0; p < (int32_t)h * w; p++) {
        mm_writer wr = {out + p * o_pix, 0, 0, ob};
        const uint8_t *pa = a + p * a_pix, *pb = b + p * b_pix;
        for (int ch = 0; ch < c; ch++) {
            int64_t v = (mm_get(pa, ch, ab, as) * ma + mm_get(pb, ch, bb, bs) * mb + half) >> n;
            mm_put(&wr, v < qmin ? qmin : v > qmax ? qmax : (int32_t)v);
        }
        mm_flush(&wr);
    }
}
#endif

void mm_add(const uint8_t *a, const uint8_t *b, uint8_t *out, const mm_conv_dims *d,
            const mm_quant_params *q)
{
    const int ab = q->in_bits, as = q->in_signed, bb = q->in2_bits, bs = q->in2_signed;
    const int ob = q->out_bits, n = q->shift[0];
    const mm_add8 k = {q->mult[0], q->mult[1], q->qmin, q->qmax, n, as, bs};
    const int32_t total = (int32_t)d->in_h * d->in_w * d->in_c;
    (void)a, (void)b, (void)out, (void)d, (void)k, (void)total; /* a build without adds */
    switch (MM_ADD_PATH(ab, as, bb, bs, ob, n, q->qmin, q->qmax)) {
#if MM_ON_ADD8_UU
    case MM_P_ADD8_UU:
        mm_add_u8_uu(a, b, out, total, &k);
        return;
#endif
#if MM_ON_ADD8_US
    case MM_P_ADD8_US:
        mm_add_u8_us(a, b, out, total, &k);
        return;
#endif
#if MM_ON_ADD8_SU
    case MM_P_ADD8_SU:
        mm_add_u8_su(a, b, out, total, &k);
        return;
#endif
#if MM_ON_ADD8_SS
    case MM_P_ADD8_SS:
        mm_add_u8_ss(a, b, out, total, &k);
        return;
#endif
#if MM_ON_ADD8_ANY
    case MM_P_ADD8_ANY:
        mm_add_bytes(a, b, out, total, &k);
        return;
#endif
#if MM_ON_ADD_ANY
    case MM_P_ADD_ANY:
        mm_add_any(a, b, out, d, q);
        return;
#endif
    default:
        MM_PATH_OFF();
    }
}

#if MM_ON_AVG8
/* Unsigned bytes added into the halfword lanes of a word: lanes 0 and 2 (mm_uxtab16), 1 and 3
 * (mm_uxtab16_8: the bytes rotated right by 8 first). */
#if defined(__ARM_FEATURE_DSP)
static inline uint32_t mm_uxtab16(uint32_t acc, uint32_t x)
{
    uint32_t r;
    __asm__("uxtab16 %0, %1, %2" : "=r"(r) : "r"(acc), "r"(x));
    return r;
}
static inline uint32_t mm_uxtab16_8(uint32_t acc, uint32_t x)
{
    uint32_t r;
    __asm__("uxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(acc), "r"(x));
    return r;
}
#else
static inline uint32_t mm_uxtab16(uint32_t acc, uint32_t x)
{
    return ((acc + (x & 0xFFu)) & 0xFFFFu) | (((acc >> 16) + (x >> 16 & 0xFFu)) << 16);
}
static inline uint32_t mm_uxtab16_8(uint32_t acc, uint32_t x) { return mm_uxtab16(acc, x >> 8); }
#endif

/* The sums of four channels (the bytes at p) over n pixels in_pix bytes apart, added into
 * s[0..3]: each pixel one word load (flip: 0x80 per byte makes signed bytes unsigned) and two
 * lane adds, flushed into s every 256 pixels, before a lane can pass 65535 (257 x 255). */
static MM_NOINLINE void mm_avg_lanes(const uint8_t *p, int32_t n, int32_t in_pix, uint32_t flip,
                                   int32_t *s)
{
#if defined(__ARM_FEATURE_DSP)
    /* With DSP four pixels a pass of one asm loop (four loads back to back: they pipeline;
     * kws's 125-pixel pool 20,558 -> 14.7 k est. M4 cycles), up to 64 passes a flush; the
     * last 0 - 3 pixels one at a time (no pair loop: the demo's mixed build has 54 B of
     * .text to spare). */
    while (n > 0) {
        int32_t k = n >> 2 < 64 ? n >> 2 : 64, m = n < 4 ? n : 0;
        uint32_t l02 = 0, l13 = 0, a, b, c, e;
        const int32_t s2 = 2 * in_pix, s3 = 3 * in_pix;
        n -= 4 * k + m;
        if (k)
            __asm__ volatile("1:\n\t"
                             "ldr %[a], [%[p]]\n\t"
                             "ldr %[b], [%[p], %[s1]]\n\t"
                             "ldr %[c], [%[p], %[s2]]\n\t"
                             "ldr %[e], [%[p], %[s3]]\n\t"
                             "add %[p], %[p], %[s1], lsl #2\n\t"
                             "eor %[a], %[a], %[f]\n\t"
                             "eor %[b], %[b], %[f]\n\t"
                             "eor %[c], %[c], %[f]\n\t"
                             "eor %[e], %[e], %[f]\n\t"
                             "uxtab16 %[l02], %[l02], %[a]\n\t"
                             "uxtab16 %[l13], %[l13], %[a], ror #8\n\t"
                             "uxtab16 %[l02], %[l02], %[b]\n\t"
                             "uxtab16 %[l13], %[l13], %[b], ror #8\n\t"
                             "uxtab16 %[l02], %[l02], %[c]\n\t"
                             "uxtab16 %[l13], %[l13], %[c], ror #8\n\t"
                             "uxtab16 %[l02], %[l02], %[e]\n\t"
                             "uxtab16 %[l13], %[l13], %[e], ror #8\n\t"
                             "subs %[k], %[k], #1\n\t"
                             "bne 1b"
                             : [p] "+r"(p), [k] "+r"(k), [l02] "+r"(l02), [l13] "+r"(l13),
                               [a] "=&r"(a), [b] "=&r"(b), [c] "=&r"(c), [e] "=&r"(e)
                             : [s1] "r"(in_pix), [s2] "r"(s2), [s3] "r"(s3), [f] "r"(flip)
                             : "cc", "memory");
        for (; m > 0; m--, p += in_pix) {
            memcpy(&a, p, 4);
            a ^= flip;
            l02 = mm_uxtab16(l02, a);
            l13 = mm_uxtab16_8(l13, a);
        }
#else
    while (n > 0) {
        int32_t m = n < 256 ? n : 256;
        uint32_t l02 = 0, l13 = 0, x, y;
        n -= m;
        for (; m >= 2; m -= 2, p += 2 * in_pix) {
            memcpy(&x, p, 4);
            memcpy(&y, p + in_pix, 4);
            x ^= flip;
            y ^= flip;
            l02 = mm_uxtab16(mm_uxtab16(l02, x), y);
            l13 = mm_uxtab16_8(mm_uxtab16_8(l13, x), y);
        }
        if (m) {
            memcpy(&x, p, 4);
            x ^= flip;
            l02 = mm_uxtab16(l02, x);
            l13 = mm_uxtab16_8(l13, x);
            p += in_pix;
        }
#endif
        s[0] += (int32_t)(l02 & 0xFFFFu);
        s[1] += (int32_t)(l13 & 0xFFFFu);
        s[2] += (int32_t)(l02 >> 16);
        s[3] += (int32_t)(l13 >> 16);
    }
}
#endif

/* The paths of mm_avgpool (MM_AVG_PATH), each compiled only where a layer takes it. Windows
 * tile the input: out_h * kh rows are read, the rest is cropped. */
#define MM_AVG_ARGS                                                                               \
    const uint8_t *in, uint8_t *out, const mm_conv_dims *d, const mm_quant_params *q, int32_t qmin
#if MM_ON_AVG8
/* Whole bytes, four channels a word (mm_avg_lanes), in_c >= 4. */
static MM_NOINLINE void mm_avg8(MM_AVG_ARGS)
{
    const int is = q->in_signed, c = d->in_c, in_w = d->in_w, out_h = d->out_h, out_w = d->out_w;
    const int kh = d->k_h, kw = d->k_w, s0 = q->shift[0];
    const int32_t m0 = q->mult[0], qmax = q->qmax;
    /* A shift s <= 32 (a window's 1/n multiplier) takes mm_pw_rq's 32-bit form on the sum
     * scaled by 2^(33 - s): (sum 2^u m0 + 2^(s+u-1)) >> (s + u) is the same value, and
     * |sum| < 256 kh kw <= 2^(s-2) keeps sum 2^u below 2^31. */
    const int up = s0 <= 32 && s0 >= 24 && kh * kw <= 1 << (s0 - 10) ? 33 - s0 : 0;
    /* signed bytes summed as x ^ 128 = x + 128, the 128 per tap taken off after */
    const uint32_t flip = is ? 0x80808080u : 0;
    const int32_t off = is ? 128 * kh * kw : 0, row = (int32_t)in_w * c;
    /* where the window spans whole input rows they are one run of pixels */
    const int rows = kw == in_w ? 1 : kh, run = kw == in_w ? kh * kw : kw;
    for (int oy = 0; oy < out_h; oy++) {
        for (int ox = 0; ox < out_w; ox++) {
            const uint8_t *p0 = in + ((int32_t)oy * kh * in_w + (int32_t)ox * kw) * c;
            uint8_t *po = out + ((int32_t)oy * out_w + ox) * c;
            /* groups of four channels, the last one ending at channel c - 1 (it may redo up to
             * three channels of the one before: the output is not the input) */
            for (int ch = 0;; ch = ch + 8 > c ? c - 4 : ch + 4) {
                int32_t sum[4] = {0, 0, 0, 0};
                for (int ky = 0; ky < rows; ky++)
                    mm_avg_lanes(p0 + ky * row + ch, run, c, flip, sum);
                for (int j = 0; j < 4; j++)
                    po[ch + j] = (uint8_t)mm_pw_rq((sum[j] - off) * (1 << up), 0, m0, s0 + up, 0,
                                                   qmin, qmax);
                if (ch + 4 >= c)
                    break;
            }
        }
    }
}
#endif

#if MM_ON_AVG_ANY
/* Any bits: one channel at a time through mm_get / mm_put. */
static MM_NOINLINE void mm_avg_any(MM_AVG_ARGS)
{
    const int ib = q->in_bits, is = q->in_signed, ob = q->out_bits, c = d->in_c;
    const int in_w = d->in_w, out_h = d->out_h, out_w = d->out_w, kh = d->k_h, kw = d->k_w;
    const int32_t in_pix = mm_bytes(c, ib), o_pix = mm_bytes(c, ob);
    for (int oy = 0; oy < out_h; oy++) {
        for (int ox = 0; ox < out_w; ox++) {
            mm_writer wr = {out + ((int32_t)oy * out_w + ox) * o_pix, 0, 0, ob};
            for (int ch = 0; ch < c; ch++) {
                int32_t sum = 0;
                for (int ky = 0; ky < kh; ky++)
                    for (int kx = 0; kx < kw; kx++)
                        sum += mm_get(in + ((int32_t)(oy * kh + ky) * in_w + ox * kw + kx) * in_pix,
                                      ch, ib, is);
                mm_put(&wr, mm_requant_call(sum, q->mult[0], q->shift[0], qmin, q->qmax));
            }
            mm_flush(&wr);
        }
    }
}
#endif

void mm_avgpool(const uint8_t *in, uint8_t *out, const mm_conv_dims *d, const mm_quant_params *q)
{
    int32_t qmin = q->qmin;
#ifdef MM_TEST_FAULT_READ_PAST_INPUT
    /* Test hook (tests/test_export_guard.py): a one-byte read past the input, which the
     * guarded self-test must catch. Never defined in a real build. */
    const int32_t in_bytes = (int32_t)d->in_h * d->in_w * mm_bytes(d->in_c, q->in_bits);
    if (((volatile const uint8_t *)in)[in_bytes] == 7)
        qmin++;
#endif
#ifdef MM_TEST_FAULT_WRITE_BEFORE_OUTPUT
    /* Test hook (tests/test_export.py): a write to the byte before the output, which the
     * -DMICROMIX_CHECK_WRITES self-test must catch. Never defined in a real build. */
    out[-1] ^= 0x5A;
#endif
    switch (MM_AVG_PATH(q->in_bits, q->out_bits, d->in_c)) {
#if MM_ON_AVG8
    case MM_P_AVG8:
        mm_avg8(in, out, d, q, qmin);
        return;
#endif
#if MM_ON_AVG_ANY
    case MM_P_AVG_ANY:
        mm_avg_any(in, out, d, q, qmin);
        return;
#endif
    default:
        (void)in;
        (void)out;
        (void)qmin;
        MM_PATH_OFF();
    }
}
