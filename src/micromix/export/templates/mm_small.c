/* micromix: convolutions whose weight rows are short (MM_IS_SMALL: at most 16 bytes and
 * MM_SMALL_ROW elements), such as a stem on a grey image or a pointwise layer on 8 channels.
 *
 * A dot product per output channel would be too short to vectorise, so output channels run
 * in lanes instead: a block of MM_LANES channels has its weights transposed once into a
 * scratch tile, and every patch element is multiplied with the whole block at once. Layers on
 * 8-bit unsigned inputs and weights with in_c % 4 != 0 (MM_SMALL_PATH: a stem on a grey image)
 * run mm_conv.c's CONV8P pixel pairs instead (mm_small8p), in 2 row bytes of the same scratch.
 */
#include "mm_kernels.h"

#if MM_USE_SMALL_LANES
static void mm_small_lanes(MM_CONV_ARGS)
{
    const int ib = q->in_bits, is = q->in_signed, wb = q->w_bits, ob = q->out_bits;
    const int bk = q->bias_shift, in_c = d->in_c, in_h = d->in_h, in_w = d->in_w;
    const int out_c = d->out_c, out_h = d->out_h, out_w = d->out_w, kh = d->k_h, kw = d->k_w;
    const int sh = d->stride_h, sw = d->stride_w, ph = d->pad_h, pw = d->pad_w;
    const int32_t *const bias = q->bias, *const mult = q->mult;
    const int8_t *const shift = q->shift;
    const int32_t qmin = q->qmin, qmax = q->qmax;
    const int32_t row = (int32_t)kh * kw * in_c, row_bytes = mm_bytes(row, wb);
    const int32_t in_pix = mm_bytes(in_c, ib), out_pix = mm_bytes(out_c, ob);
    /* Scratch: each tap's byte offset from the window's corner (int32), the weight tile
     * (row x lanes) and the unpacked patch (row), as memory.scratch_need counts them. */
    int32_t *restrict off = (int32_t *)scratch;
    int16_t (*restrict tile)[MM_LANES] = (int16_t (*)[MM_LANES])(off + kh * kw);
    int16_t *restrict x = (int16_t *)(tile + row);
    for (int ky = 0; ky < kh; ky++)
        for (int kx = 0; kx < kw; kx++)
            off[ky * kw + kx] = ((int32_t)ky * in_w + kx) * in_pix;
    for (int c0 = 0; c0 < out_c; c0 += MM_LANES) {
        for (int t = 0; t < row; t++)
            for (int j = 0; j < MM_LANES; j++)
                tile[t][j] = (int16_t)mm_get(w + (c0 + j) * row_bytes, t, wb, 1);
        for (int oy = 0; oy < out_h; oy++) {
            const int iy0 = oy * sh - ph;
            for (int ox = 0; ox < out_w; ox++) {
                const int ix0 = ox * sw - pw;
                const int inside = iy0 >= 0 && ix0 >= 0 && iy0 + kh <= in_h && ix0 + kw <= in_w;
                const uint8_t *corner = in + ((int32_t)iy0 * in_w + ix0) * in_pix;
                int32_t acc[MM_LANES];
                for (int ky = 0, t = 0; ky < kh; ky++) {
                    for (int kx = 0; kx < kw; kx++, t++) {
                        const int iy = iy0 + ky, ix = ix0 + kx;
                        if (inside || (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w)) {
                            const uint8_t *p = corner + off[t];
                            if (ib == 8 && in_c == 1) /* a grey stem: one byte per tap */
                                x[t] = is ? (int8_t)p[0] : p[0];
                            else
                                mm_unpack(x + t * in_c, p, in_c, ib, is);
                        } else {
                            for (int c = 0; c < in_c; c++)
                                x[t * in_c + c] = 0;
                        }
                    }
                }
#if defined(__ARM_FEATURE_DSP) && MM_LANES == 8
                {
                    /* Each tile row is four words of two lanes: SMLABB / SMLABT multiply the
                     * patch element with both halves, one asm block per element (loads and the
                     * eight MACs together, accumulators in registers). */
                    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
                    for (int t = 0; t < row; t++) {
                        const int32_t xt = x[t];
                        uint32_t p_, q_;
                        __asm__ volatile(
                            "ldrd %[p], %[q], [%[tp]]\n\t"
                            "smlabb %[a0], %[x], %[p], %[a0]\n\tsmlabt %[a1], %[x], %[p], %[a1]\n\t"
                            "smlabb %[a2], %[x], %[q], %[a2]\n\tsmlabt %[a3], %[x], %[q], %[a3]\n\t"
                            "ldrd %[p], %[q], [%[tp], #8]\n\t"
                            "smlabb %[a4], %[x], %[p], %[a4]\n\tsmlabt %[a5], %[x], %[p], %[a5]\n\t"
                            "smlabb %[a6], %[x], %[q], %[a6]\n\tsmlabt %[a7], %[x], %[q], %[a7]"
                            : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
                              [a4] "+r"(a4), [a5] "+r"(a5), [a6] "+r"(a6), [a7] "+r"(a7),
                              [p] "=&r"(p_), [q] "=&r"(q_)
                            : [x] "r"(xt), [tp] "r"(tile[t]), "m"(*(const int16_t(*)[8])tile[t]));
                    }
                    acc[0] = a0;
                    acc[1] = a1;
                    acc[2] = a2;
                    acc[3] = a3;
                    acc[4] = a4;
                    acc[5] = a5;
                    acc[6] = a6;
                    acc[7] = a7;
                }
#else
                for (int j = 0; j < MM_LANES; j++)
                    acc[j] = 0;
                for (int t = 0; t < row; t++)
                    for (int j = 0; j < MM_LANES; j++)
                        acc[j] += x[t] * tile[t][j];
#endif
                for (int j = 0; j < MM_LANES; j++)
                    acc[j] = mm_requant(mm_biased(acc[j], bias[c0 + j], bk), mult[c0 + j],
                                        shift[c0 + j], qmin, qmax);
                mm_pack_lanes(out + ((int32_t)oy * out_w + ox) * out_pix + ((c0 * ob) >> 3), acc,
                              ob);
            }
        }
    }
}
#endif

/* The lanes, or (MM_SMALL_PATH) mm_conv.c's CONV8P pixel pairs for 8-bit rows off the words;
 * each only where the model has a layer that takes it (mm_paths.h). */
void mm_conv_small(MM_CONV_ARGS)
{
    MM_ASSERT(MM_IS_SMALL(d, q) && !MM_IS_PW8(d, q) && !MM_IS_PW8W(d, q) && !MM_IS_PWSUB(d, q));
    switch (MM_SMALL_PATH(q->in_bits, q->w_bits, q->in_signed, d->in_c,
                          (int32_t)d->k_h * d->k_w * d->in_c, mm_pw_fast(q, d->out_c))) {
#if MM_USE_SMALL8P
    case MM_P_SMALL8P:
        mm_small8p(in, out, w, d, q, scratch);
        return;
#endif
#if MM_USE_SMALL_LANES
    case MM_P_SMALL_LANES:
        mm_small_lanes(in, out, w, d, q, scratch);
        return;
#endif
    default:
        (void)in, (void)out, (void)w, (void)scratch;
        MM_PATH_OFF();
        return;
    }
}
