/* micromix: max and padded average pooling, channel concat, table activations and the
 * channel-wise multiply, any input / output bits (their op modules in micromix.ops are the
 * reference). */
#include "mm_kernels.h"

/* Sets element i of a packed run to v, leaving the other bits of its byte as they are. */
static inline void mm_set(uint8_t *p, int32_t i, int bits, int32_t v)
{
    if (bits == 8) {
        p[i] = (uint8_t)v;
        return;
    }
    const int32_t bit = i * bits;
    const uint8_t mask = (uint8_t)(((1u << bits) - 1u) << (bit & 7));
    p[bit >> 3] = (uint8_t)((p[bit >> 3] & ~mask) | (((uint32_t)v << (bit & 7)) & mask));
}

/* The rows [*k0, *k1) of a window starting at i0 that lie inside [0, n). */
static inline void mm_clip_window(int i0, int k, int n, int *k0, int *k1)
{
    *k0 = i0 < 0 ? -i0 : 0;
    *k1 = i0 + k > n ? n - i0 : k;
}

void mm_maxpool(const uint8_t *in, uint8_t *out, const mm_conv_dims *d, const mm_quant_params *q)
{
    const int ib = q->in_bits, is = q->in_signed, ob = q->out_bits, c = d->in_c;
    const int in_h = d->in_h, in_w = d->in_w, out_h = d->out_h, out_w = d->out_w;
    const int kh = d->k_h, kw = d->k_w, sh = d->stride_h, sw = d->stride_w;
    const int ph = d->pad_h, pw = d->pad_w;
    const int32_t *mult = q->mult, qmin = q->qmin, qmax = q->qmax;
    const int8_t *shift = q->shift;
    const int32_t in_pix = mm_bytes(c, ib), o_pix = mm_bytes(c, ob);
    for (int oy = 0; oy < out_h; oy++) {
        const int iy0 = oy * sh - ph;
        int ky0, ky1;
        mm_clip_window(iy0, kh, in_h, &ky0, &ky1);
        for (int ox = 0; ox < out_w; ox++) {
            const int ix0 = ox * sw - pw;
            int kx0, kx1;
            mm_clip_window(ix0, kw, in_w, &kx0, &kx1);
            mm_writer wr = {out + ((int32_t)oy * out_w + ox) * o_pix, 0, 0, ob};
            for (int ch = 0; ch < c; ch++) {
                /* Padded taps are skipped: they never win (PyTorch pads with -inf). */
                int32_t m = INT32_MIN;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++) {
                        const int32_t pix = (int32_t)(iy0 + ky) * in_w + ix0 + kx;
                        const int32_t v = mm_get(in + pix * in_pix, ch, ib, is);
                        m = v > m ? v : m;
                    }
                mm_put(&wr, mm_requant_call(m, mult[0], shift[0], qmin, qmax));
            }
            mm_flush(&wr);
        }
    }
}

/* Average pooling with any stride and zero padding. per_count = 0: one multiplier (the
 * divisor is the window size, padded zeros included); 1: multiplier n - 1 for a window with
 * n taps inside the input (count_include_pad=False). */
void mm_avgpool_pad(const uint8_t *in, uint8_t *out, const mm_conv_dims *d,
                    const mm_quant_params *q, int per_count)
{
    const int ib = q->in_bits, is = q->in_signed, ob = q->out_bits, c = d->in_c;
    const int in_h = d->in_h, in_w = d->in_w, out_h = d->out_h, out_w = d->out_w;
    const int kh = d->k_h, kw = d->k_w, sh = d->stride_h, sw = d->stride_w;
    const int ph = d->pad_h, pw = d->pad_w;
    const int32_t *mult = q->mult, qmin = q->qmin, qmax = q->qmax;
    const int8_t *shift = q->shift;
    const int32_t in_pix = mm_bytes(c, ib), o_pix = mm_bytes(c, ob);
    for (int oy = 0; oy < out_h; oy++) {
        const int iy0 = oy * sh - ph;
        int ky0, ky1;
        mm_clip_window(iy0, kh, in_h, &ky0, &ky1);
        for (int ox = 0; ox < out_w; ox++) {
            const int ix0 = ox * sw - pw;
            int kx0, kx1;
            mm_clip_window(ix0, kw, in_w, &kx0, &kx1);
            const int n = per_count ? (ky1 - ky0) * (kx1 - kx0) - 1 : 0;
            mm_writer wr = {out + ((int32_t)oy * out_w + ox) * o_pix, 0, 0, ob};
            for (int ch = 0; ch < c; ch++) {
                int32_t sum = 0;
                for (int ky = ky0; ky < ky1; ky++)
                    for (int kx = kx0; kx < kx1; kx++)
                        sum += mm_get(in + ((int32_t)(iy0 + ky) * in_w + ix0 + kx) * in_pix,
                                      ch, ib, is);
                mm_put(&wr, mm_requant_call(sum, mult[n], shift[n], qmin, qmax));
            }
            mm_flush(&wr);
        }
    }
}

/* One input of a channel concat: its c channels, requantized to the output's scale and bits,
 * go to channels [c_off, c_off + c) of every output pixel (c_total channels). The part that
 * ends the pixel also clears the pixel's padding bits. */
void mm_concat(const uint8_t *in, uint8_t *out, const mm_conv_dims *d, const mm_quant_params *q,
               int c_off)
{
    const int ib = q->in_bits, is = q->in_signed, ob = q->out_bits;
    const int c = d->in_c, c_total = d->out_c, h = d->out_h, w = d->out_w;
    const int32_t *mult = q->mult, qmin = q->qmin, qmax = q->qmax;
    const int8_t *shift = q->shift;
    const int32_t in_pix = mm_bytes(c, ib), o_pix = mm_bytes(c_total, ob);
    const int32_t end_bit = (int32_t)c_total * ob;
    for (int32_t p = 0; p < (int32_t)h * w; p++) {
        const uint8_t *pi = in + p * in_pix;
        uint8_t *po = out + p * o_pix;
        for (int ch = 0; ch < c; ch++) {
            const int32_t v = mm_requant_call(mm_get(pi, ch, ib, is), mult[0], shift[0], qmin, qmax);
            mm_set(po, c_off + ch, ob, v);
        }
        if (c_off + c == c_total && (end_bit & 7))
            po[end_bit >> 3] &= (uint8_t)((1u << (end_bit & 7)) - 1u);
    }
}

/* out = table[raw bits of the input code], one table byte per input code. */
void mm_lut(const uint8_t *in, uint8_t *out, const uint8_t *table, const mm_conv_dims *d,
            const mm_quant_params *q)
{
    const int ib = q->in_bits, ob = q->out_bits, c = d->in_c, h = d->in_h, w = d->in_w;
    const int32_t in_pix = mm_bytes(c, ib), o_pix = mm_bytes(c, ob);
    for (int32_t p = 0; p < (int32_t)h * w; p++) {
        mm_writer wr = {out + p * o_pix, 0, 0, ob};
        for (int ch = 0; ch < c; ch++)
            mm_put(&wr, table[mm_get(in + p * in_pix, ch, ib, 0)]);
        mm_flush(&wr);
    }
}

/* out = clamp(requant(x * g)); g is one value per channel (g_per_pixel = 0, an N x C x 1 x 1
 * gate) or a map of x's shape (g_per_pixel = 1). */
void mm_mul(const uint8_t *x, const uint8_t *g, uint8_t *out, const mm_conv_dims *d,
            const mm_quant_params *q, int g_per_pixel)
{
    const int xb = q->in_bits, xs = q->in_signed, gb = q->in2_bits, gs = q->in2_signed;
    const int ob = q->out_bits, c = d->in_c, h = d->in_h, w = d->in_w;
    const int32_t *mult = q->mult, qmin = q->qmin, qmax = q->qmax;
    const int8_t *shift = q->shift;
    const int32_t x_pix = mm_bytes(c, xb), g_pix = mm_bytes(c, gb), o_pix = mm_bytes(c, ob);
    for (int32_t p = 0; p < (int32_t)h * w; p++) {
        const uint8_t *px = x + p * x_pix, *pg = g + (g_per_pixel ? p * g_pix : 0);
        mm_writer wr = {out + p * o_pix, 0, 0, ob};
        for (int ch = 0; ch < c; ch++)
            mm_put(&wr, mm_requant_call(mm_get(px, ch, xb, xs) * mm_get(pg, ch, gb, gs), mult[0],
                                   shift[0], qmin, qmax));
        mm_flush(&wr);
    }
}
