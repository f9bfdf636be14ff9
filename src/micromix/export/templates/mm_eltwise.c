/* micromix: residual add and average pooling, any input / output bits. */
#include "mm_kernels.h"

void mm_add(const uint8_t *a, const uint8_t *b, uint8_t *out, const mm_conv_dims *d,
            const mm_quant_params *q)
{
    const int ab = q->in_bits, as = q->in_signed, bb = q->in2_bits, bs = q->in2_signed;
    const int ob = q->out_bits, n = q->shift[0], c = d->in_c, h = d->in_h, w = d->in_w;
    const int32_t *mult = q->mult, qmin = q->qmin, qmax = q->qmax;
    const int32_t a_pix = mm_bytes(c, ab), b_pix = mm_bytes(c, bb), o_pix = mm_bytes(c, ob);
    const int64_t ma = mult[0], mb = mult[1], half = (int64_t)1 << (n - 1);
    if (ab == 8 && bb == 8 && ob == 8) {
        /* Whole bytes: the tensors are contiguous runs of values, read and written directly.
         * Each output byte is written after both of its input bytes are read, so in place is
         * safe over either input. */
        const int32_t total = (int32_t)h * w * c, m0 = mult[0], m1 = mult[1];
        if (n > 32) {
            /* A shift past the low word (multipliers below 1/2): the high word of the 64-bit
             * sum (SMULL, SMLAL) rounded and shifted is exactly the rule below, as in
             * mm_requant (the low word adds less than one unit before the flooring shift). */
            const int k = n - 32;
            const int32_t r = (int32_t)1 << (k - 1);
            for (int32_t i = 0; i < total; i++) {
                const int32_t x = as ? (int8_t)a[i] : a[i], y = bs ? (int8_t)b[i] : b[i];
                const int32_t hi = (int32_t)(((int64_t)x * m0 + (int64_t)y * m1) >> 32);
                const int32_t v = (hi + r) >> k;
                out[i] = (uint8_t)(v < qmin ? qmin : v > qmax ? qmax : v);
            }
        } else {
            for (int32_t i = 0; i < total; i++) {
                const int32_t x = as ? (int8_t)a[i] : a[i], y = bs ? (int8_t)b[i] : b[i];
                const int64_t v = ((int64_t)x * m0 + (int64_t)y * m1 + half) >> n;
                out[i] = (uint8_t)(v < qmin ? qmin : v > qmax ? qmax : (int32_t)v);
            }
        }
        return;
    }
    for (int32_t p = 0; p < (int32_t)h * w; p++) {
        mm_writer wr = {out + p * o_pix, 0, 0, ob};
        const uint8_t *pa = a + p * a_pix, *pb = b + p * b_pix;
        for (int ch = 0; ch < c; ch++) {
            /* Both inputs are rescaled into one 64-bit sum before the single shift. */
            int64_t v = (mm_get(pa, ch, ab, as) * ma + mm_get(pb, ch, bb, bs) * mb + half) >> n;
            mm_put(&wr, v < qmin ? qmin : v > qmax ? qmax : (int32_t)v);
        }
        mm_flush(&wr);
    }
}

void mm_avgpool(const uint8_t *in, uint8_t *out, const mm_conv_dims *d, const mm_quant_params *q)
{
    const int ib = q->in_bits, is = q->in_signed, ob = q->out_bits, c = d->in_c;
    const int in_h = d->in_h, in_w = d->in_w, out_h = d->out_h, out_w = d->out_w;
    const int kh = d->k_h, kw = d->k_w;
    const int32_t *mult = q->mult, qmax = q->qmax;
    const int8_t *shift = q->shift;
    int32_t qmin = q->qmin;
    const int32_t in_pix = mm_bytes(c, ib), o_pix = mm_bytes(c, ob);
    (void)in_h; /* windows tile the input: out_h * kh rows are read, the rest is cropped */
#ifdef MM_TEST_FAULT_READ_PAST_INPUT
    /* Test hook (tests/test_export_guard.py): a one-byte read past the input, which the
     * guarded self-test must catch. Never defined in a real build. */
    if (((volatile const uint8_t *)in)[(int32_t)in_h * in_w * in_pix] == 7) qmin++;
#endif
#ifdef MM_TEST_FAULT_WRITE_BEFORE_OUTPUT
    /* Test hook (tests/test_export.py): a write to the byte before the output, which the
     * -DMICROMIX_CHECK_WRITES self-test must catch. Never defined in a real build. */
    out[-1] ^= 0x5A;
#endif
    if (ib == 8 && ob == 8) { /* whole bytes: read and write them directly */
        /* A shift s <= 32 (a window's 1/n multiplier) takes mm_pw_rq's 32-bit form on the sum
         * scaled by 2^(33 - s): (sum 2^u m0 + 2^(s+u-1)) >> (s + u) is the same value, and
         * |sum| < 256 kh kw <= 2^(s-2) keeps sum 2^u below 2^31. */
        const int s0 = shift[0];
        const int up = s0 <= 32 && s0 >= 24 && kh * kw <= 1 << (s0 - 10) ? 33 - s0 : 0;
        for (int oy = 0; oy < out_h; oy++) {
            for (int ox = 0; ox < out_w; ox++) {
                const uint8_t *p0 = in + ((int32_t)oy * kh * in_w + (int32_t)ox * kw) * in_pix;
                uint8_t *po = out + ((int32_t)oy * out_w + ox) * o_pix;
                for (int ch = 0; ch < c; ch++) {
                    int32_t sum = 0;
                    for (int ky = 0; ky < kh; ky++) {
                        const uint8_t *p = p0 + (int32_t)ky * in_w * in_pix + ch;
                        for (int kx = 0; kx < kw; kx++, p += in_pix)
                            sum += is ? (int8_t)*p : *p;
                    }
                    po[ch] =
                        (uint8_t)mm_pw_rq(sum * (1 << up), 0, mult[0], s0 + up, 0, qmin, qmax);
                }
            }
        }
        return;
    }
    for (int oy = 0; oy < out_h; oy++) {
        for (int ox = 0; ox < out_w; ox++) {
            mm_writer wr = {out + ((int32_t)oy * out_w + ox) * o_pix, 0, 0, ob};
            for (int ch = 0; ch < c; ch++) {
                int32_t sum = 0;
                for (int ky = 0; ky < kh; ky++)
                    for (int kx = 0; kx < kw; kx++)
                        sum += mm_get(in + ((int32_t)(oy * kh + ky) * in_w + ox * kw + kx) * in_pix,
                                      ch, ib, is);
                mm_put(&wr, mm_requant_call(sum, mult[0], shift[0], qmin, qmax));
            }
            mm_flush(&wr);
        }
    }
}
