/* micromix: depthwise convolution (groups == channels) for every bit combination.
 *
 * Blocks of MM_LANES channels run side by side: their weights are transposed once into a
 * small stack table, and each tap then multiplies MM_LANES contiguous channels of one input
 * pixel, a fixed-length loop that gcc -O2 vectorises. Leftover channels run one at a time.
 */
#include "mm_kernels.h"

/* Lane j of a block holds channel c0 + mm_lane(j): for sub-byte inputs the lanes are in
 * planar order (first field of each byte, then the second, ...), so that unpacking a pixel
 * writes contiguous lanes, which gcc vectorises; the outputs are put back in channel order. */
static inline int mm_lane(int j, int ib)
{
    const int per = 8 / ib, nb = MM_LANES / per;
    return (j % nb) * per + j / nb;
}

static inline void mm_unpack_planar(int16_t *restrict v, const uint8_t *restrict p, int ib, int is)
{
    int16_t b[MM_LANES / 2];
    if (ib == 8) {
        mm_unpack_lanes(v, p, 8, is);
    } else if (ib == 4) {
        const int16_t sx = is ? 8 : 0;
        for (int k = 0; k < MM_LANES / 2; k++)
            b[k] = p[k];
        for (int k = 0; k < MM_LANES / 2; k++)
            v[k] = (int16_t)(((b[k] & 15) ^ sx) - sx);
        for (int k = 0; k < MM_LANES / 2; k++)
            v[MM_LANES / 2 + k] = (int16_t)(((b[k] >> 4) ^ sx) - sx);
    } else {
        const int16_t sx = is ? 2 : 0;
        for (int k = 0; k < MM_LANES / 4; k++)
            b[k] = p[k];
        for (int f = 0; f < 4; f++)
            for (int k = 0; k < MM_LANES / 4; k++)
                v[f * (MM_LANES / 4) + k] = (int16_t)((((b[k] >> (2 * f)) & 3) ^ sx) - sx);
    }
}

#if defined(__ARM_FEATURE_DSP) && MM_LANES == 8
/* DSP cores, unsigned 4- and 2-bit inputs: one tap of the eight lanes in one asm block. The
 * packed input bytes are masked into halfword pairs in place (no per-lane unpacking) and meet
 * the lane tile's int16 weight words through SMLAxy, whose operand halves pick the lanes: for
 * 4-bit inputs the pairs are lanes (0,2), (1,3), (4,6), (5,7) of the planar lane order, for
 * 2-bit inputs lanes (0,1), (2,3), (4,5), (6,7). Accumulators stay in registers. The blocks
 * read memory without saying so (every register is taken): mm_dw_block puts a compiler
 * barrier after it writes the tile, and the input tensor is not written during the call. */
/* Two blocks per tap (lanes 0-3, then 4-7): nine registers each, which every core's
 * register allocation can meet. */
#define MM_DWB_OUTS(b0, b1, b2, b3)                                                               \
    [b0] "+r"(b0), [b1] "+r"(b1), [b2] "+r"(b2), [b3] "+r"(b3), [u] "=&r"(u_), [t] "=&r"(t_),    \
        [w] "=&r"(w_)
#define MM_DWB_HALF4(px, wv, shift, ko0, ko1, b0, b1, b2, b3)                                     \
    __asm__ volatile("ldr %[u], [%[p]]\n\t" shift "and %[u], %[u], #0x0F0F0F0F\n\t"              \
                     "uxtb16 %[t], %[u]\n\tuxtb16 %[u], %[u], ror #8\n\t"                         \
                     "ldr %[w], [%[k], #" ko0 "]\n\t"                                             \
                     "smlabb %[" #b0 "], %[t], %[w], %[" #b0 "]\n\t"                              \
                     "smlabt %[" #b1 "], %[u], %[w], %[" #b1 "]\n\t"                              \
                     "ldr %[w], [%[k], #" ko1 "]\n\t"                                             \
                     "smlatb %[" #b2 "], %[t], %[w], %[" #b2 "]\n\t"                              \
                     "smlatt %[" #b3 "], %[u], %[w], %[" #b3 "]"                                  \
                     : MM_DWB_OUTS(b0, b1, b2, b3)                                                \
                     : [p] "r"(px), [k] "r"(wv))
#define MM_DWB_TAP4(px, wv)                                                                       \
    do {                                                                                          \
        MM_DWB_HALF4(px, wv, "", "0", "4", a0, a1, a2, a3);                                       \
        MM_DWB_HALF4(px, wv, "lsr %[u], %[u], #4\n\t", "8", "12", a4, a5, a6, a7);                \
    } while (0)
#define MM_DWB_HALF2(px, wv, s0, s1, ko0, ko1, b0, b1, b2, b3)                                    \
    __asm__ volatile("ldrh %[u], [%[p]]\n\torr %[u], %[u], %[u], lsl #8\n\t"                     \
                     "lsr %[t], %[u], #" s0 "\n\tand %[t], %[t], #0x00030003\n\t"                 \
                     "ldr %[w], [%[k], #" ko0 "]\n\t"                                             \
                     "smlabb %[" #b0 "], %[t], %[w], %[" #b0 "]\n\t"                              \
                     "smlatt %[" #b1 "], %[t], %[w], %[" #b1 "]\n\t"                              \
                     "lsr %[t], %[u], #" s1 "\n\tand %[t], %[t], #0x00030003\n\t"                 \
                     "ldr %[w], [%[k], #" ko1 "]\n\t"                                             \
                     "smlabb %[" #b2 "], %[t], %[w], %[" #b2 "]\n\t"                              \
                     "smlatt %[" #b3 "], %[t], %[w], %[" #b3 "]"                                  \
                     : MM_DWB_OUTS(b0, b1, b2, b3)                                                \
                     : [p] "r"(px), [k] "r"(wv))
#define MM_DWB_TAP2(px, wv)                                                                       \
    do {                                                                                          \
        MM_DWB_HALF2(px, wv, "0", "2", "0", "4", a0, a1, a2, a3);                                 \
        MM_DWB_HALF2(px, wv, "4", "6", "8", "12", a4, a5, a6, a7);                                \
    } while (0)
#define MM_DWB_TAP(px, wv)                                                                        \
    do {                                                                                          \
        uint32_t u_, t_, w_;                                                                      \
        if (ib == 4)                                                                              \
            MM_DWB_TAP4(px, wv);                                                                  \
        else                                                                                      \
            MM_DWB_TAP2(px, wv);                                                                  \
    } while (0)
#endif

/* Channels c0 .. c0+MM_LANES-1 over the whole output; sub-byte outputs fill whole bytes. */
MM_NOINLINE static void mm_dw_block(const uint8_t *in, uint8_t *out, const uint8_t *w,
                                    const int32_t *bias, const int32_t *mult,
                                    const int8_t *shift, int c0, int32_t in_pix, int32_t out_pix,
                                    int in_h, int in_w, int out_h, int out_w, int kh, int kw,
                                    int sh, int sw, int ph, int pw, int fmt, int32_t qmin,
                                    int32_t qmax, void *scratch)
{
    const int ib = MM_FMT_IN_BITS(fmt), is = MM_FMT_IN_SIGNED(fmt);
    const int wb = MM_FMT_W_BITS(fmt), ob = MM_FMT_OUT_BITS(fmt), bk = MM_FMT_BIAS_SHIFT(fmt);
    const int32_t row_bytes = mm_bytes(kh * kw, wb);
    /* Scratch: each tap's byte offset from the window's corner (int32), then the lanes'
     * weights per tap, as memory.scratch_need counts them. */
    int32_t *restrict off = (int32_t *)scratch;
    int16_t (*restrict wt)[MM_LANES] = (int16_t (*)[MM_LANES])(off + kh * kw);
    int ch[MM_LANES], sl[MM_LANES];
    int32_t bl[MM_LANES], ml[MM_LANES]; /* the lanes' parameters, in lane order */
    for (int j = 0; j < MM_LANES; j++) {
        ch[j] = c0 + mm_lane(j, ib);
        bl[j] = bias[ch[j]];
        ml[j] = mult[ch[j]];
        sl[j] = shift[ch[j]];
    }
    for (int t = 0; t < kh * kw; t++)
        for (int j = 0; j < MM_LANES; j++)
            wt[t][j] = (int16_t)mm_get(w + ch[j] * row_bytes, t, wb, 1);
    for (int ky = 0; ky < kh; ky++)
        for (int kx = 0; kx < kw; kx++)
            off[ky * kw + kx] = ((int32_t)ky * in_w + kx) * in_pix;
#if defined(__ARM_FEATURE_DSP)
    __asm__ volatile("" ::: "memory"); /* the tile is in memory before the asm blocks read it */
#endif
    in += (c0 * ib) >> 3;
    out += (c0 * ob) >> 3;
    for (int oy = 0; oy < out_h; oy++) {
        const int iy0 = oy * sh - ph;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = in_h - iy0 < kh ? in_h - iy0 : kh;
        for (int ox = 0; ox < out_w; ox++) {
            const int ix0 = ox * sw - pw;
            const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = in_w - ix0 < kw ? in_w - ix0 : kw;
            int32_t acc[MM_LANES], y[MM_LANES];
            for (int j = 0; j < MM_LANES; j++)
                acc[j] = 0;
#if defined(__ARM_FEATURE_DSP) && MM_LANES == 8
            if (!is && (ib == 4 || ib == 2)) {
                int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
                if (ky1 - ky0 == kh && kx1 - kx0 == kw) {
                    const uint8_t *corner = in + ((int32_t)iy0 * in_w + ix0) * in_pix;
                    for (int t = 0; t < kh * kw; t++)
                        MM_DWB_TAP(corner + off[t], wt[t]);
                } else {
                    for (int ky = ky0; ky < ky1; ky++)
                        for (int kx = kx0; kx < kx1; kx++)
                            MM_DWB_TAP(in + ((int32_t)(iy0 + ky) * in_w + ix0 + kx) * in_pix,
                                       wt[ky * kw + kx]);
                }
                acc[0] = a0;
                acc[1] = a1;
                acc[2] = a2;
                acc[3] = a3;
                acc[4] = a4;
                acc[5] = a5;
                acc[6] = a6;
                acc[7] = a7;
            } else
#endif
            if (ky1 - ky0 == kh && kx1 - kx0 == kw) { /* inside the image: one flat tap loop */
                const uint8_t *corner = in + ((int32_t)iy0 * in_w + ix0) * in_pix;
                if (ib == 8 && !is) { /* the common case, without a per-tap format switch */
                    for (int t = 0; t < kh * kw; t++) {
                        const uint8_t *p = corner + off[t];
                        int16_t x[MM_LANES]; /* through int16: gcc vectorises that */
                        for (int j = 0; j < MM_LANES; j++)
                            x[j] = p[j];
                        for (int j = 0; j < MM_LANES; j++)
                            acc[j] += x[j] * wt[t][j];
                    }
                } else {
                    for (int t = 0; t < kh * kw; t++) {
                        int16_t x[MM_LANES];
                        mm_unpack_planar(x, corner + off[t], ib, is);
                        for (int j = 0; j < MM_LANES; j++)
                            acc[j] += x[j] * wt[t][j];
                    }
                }
            } else {
                for (int ky = ky0; ky < ky1; ky++) {
                    for (int kx = kx0; kx < kx1; kx++) {
                        int16_t x[MM_LANES];
                        const int16_t *wv = wt[ky * kw + kx];
                        const int32_t pix = (int32_t)(iy0 + ky) * in_w + ix0 + kx;
                        mm_unpack_planar(x, in + pix * in_pix, ib, is);
                        for (int j = 0; j < MM_LANES; j++)
                            acc[j] += x[j] * wv[j];
                    }
                }
            }
            if (ib == 8) /* lanes are channels */
                for (int j = 0; j < MM_LANES; j++)
                    y[j] = mm_requant(mm_biased(acc[j], bl[j], bk), ml[j], sl[j], qmin, qmax);
            else
                for (int j = 0; j < MM_LANES; j++)
                    y[ch[j] - c0] =
                        mm_requant(mm_biased(acc[j], bl[j], bk), ml[j], sl[j], qmin, qmax);
            mm_pack_lanes(out + ((int32_t)oy * out_w + ox) * out_pix, y, ob);
        }
    }
}

/* One channel over the whole output (the few leftover channels, or kernels larger than
 * MM_MAX_TAPS); sub-byte results are OR-ed into the zeroed output. */
static void mm_dw_channel(const uint8_t *in, uint8_t *out, const uint8_t *w, int32_t b,
                          int32_t m0, int s, int ch, int32_t in_pix, int32_t out_pix, int in_h,
                          int in_w, int out_h, int out_w, int kh, int kw, int sh, int sw, int ph,
                          int pw, int fmt, int32_t qmin, int32_t qmax)
{
    const int ib = MM_FMT_IN_BITS(fmt), is = MM_FMT_IN_SIGNED(fmt);
    const int wb = MM_FMT_W_BITS(fmt), ob = MM_FMT_OUT_BITS(fmt);
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
            y = mm_requant(mm_biased(acc, b, MM_FMT_BIAS_SHIFT(fmt)), m0, s, qmin, qmax);
            if (ob == 8)
                *po = (uint8_t)y;
            else
                *po |= (uint8_t)((y & omask) << oshift);
        }
    }
}

#if defined(__ARM_FEATURE_DSP)
static inline uint32_t mm_dld32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
#define MM_DSP1(ins, x)                                                                           \
    ({                                                                                            \
        uint32_t r_;                                                                              \
        __asm__(ins : "=r"(r_) : "r"(x));                                                         \
        r_;                                                                                       \
    })
#endif

/* One tap of four channels: the input word at px, the weight word at pk (channels 0..3). */
#if defined(__ARM_FEATURE_DSP)
/* One tap of four channels in one asm block (loads, extends, four MACs): kept together, gcc
 * neither hoists the loads nor spills the halfword pairs. The input word is at base + off
 * (a register), the weight word at pk + ko (an immediate). */
#define MM_DW8_ASM(ext, xaddr)                                                                    \
    "ldr %[x], " xaddr "\n\tldr %[w], [%[k], %[kk]]\n\tsxtb16 %[t], %[w]\n\t"                    \
    "sxtb16 %[w], %[w], ror #8\n\t" ext " %[u], %[x]\n\t" ext " %[x], %[x], ror #8\n\t"           \
    "smlabb %[a0], %[u], %[t], %[a0]\n\tsmlatt %[a2], %[u], %[t], %[a2]\n\t"                      \
    "smlabb %[a1], %[x], %[w], %[a1]\n\tsmlatt %[a3], %[x], %[w], %[a3]"
#define MM_DW8_OUTS                                                                               \
    [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [x] "=&r"(x_), [w] "=&r"(w_),    \
        [t] "=&r"(t_), [u] "=&r"(u_)
typedef struct {
    char b[4];
} mm_word;
#define MM_DW8_TAPR(ext, base, off, pk, ko)                                                       \
    __asm__ volatile(MM_DW8_ASM(ext, "[%[p], %[o]]")                                             \
                     : MM_DW8_OUTS                                                                \
                     : [p] "r"(base), [o] "r"(off), [k] "r"(pk), [kk] "I"(ko),                    \
                       "m"(*(const mm_word *)((base) + (off))), "m"(*(const mm_word *)((pk) + (ko))))
#define MM_DW8_TAP0(ext, base, pk, ko)                                                            \
    __asm__ volatile(MM_DW8_ASM(ext, "[%[p]]")                                                   \
                     : MM_DW8_OUTS                                                                \
                     : [p] "r"(base), [k] "r"(pk), [kk] "I"(ko), "m"(*(const mm_word *)(base)),   \
                       "m"(*(const mm_word *)((pk) + (ko))))
/* A whole 3x3 window inside the image: rows rs bytes apart, pixels c apart. */
#define MM_DW8_3X3(ext)                                                                           \
    do {                                                                                          \
        MM_DW8_TAP0(ext, r, pk, 0);                                                               \
        MM_DW8_TAPR(ext, r, c, pk, 4);                                                            \
        MM_DW8_TAPR(ext, r, c2, pk, 8);                                                           \
        r += rs;                                                                                  \
        MM_DW8_TAP0(ext, r, pk, 12);                                                              \
        MM_DW8_TAPR(ext, r, c, pk, 16);                                                           \
        MM_DW8_TAPR(ext, r, c2, pk, 20);                                                          \
        r += rs;                                                                                  \
        MM_DW8_TAP0(ext, r, pk, 24);                                                              \
        MM_DW8_TAPR(ext, r, c, pk, 28);                                                           \
        MM_DW8_TAPR(ext, r, c2, pk, 32);                                                          \
    } while (0)
#define MM_DW8_TAPS(px, pk)                                                                       \
    do {                                                                                          \
        if (is)                                                                                   \
            MM_DW8_TAP0("sxtb16", px, pk, 0);                                                     \
        else                                                                                      \
            MM_DW8_TAP0("uxtb16", px, pk, 0);                                                     \
    } while (0)
#else
#define MM_DW8_TAPS(px, pk)                                                                       \
    do {                                                                                          \
        const uint8_t *p_ = (px);                                                                 \
        const int8_t *k_ = (pk);                                                                  \
        if (is) {                                                                                 \
            a0 += (int8_t)p_[0] * k_[0];                                                          \
            a1 += (int8_t)p_[1] * k_[1];                                                          \
            a2 += (int8_t)p_[2] * k_[2];                                                          \
            a3 += (int8_t)p_[3] * k_[3];                                                          \
        } else {                                                                                  \
            a0 += p_[0] * k_[0];                                                                  \
            a1 += p_[1] * k_[1];                                                                  \
            a2 += p_[2] * k_[2];                                                                  \
            a3 += p_[3] * k_[3];                                                                  \
        }                                                                                         \
    } while (0)
#endif

/* The four results of channel group ch, requantized, stored in channel order. */
#define MM_DW8_EMIT()                                                                             \
    do {                                                                                          \
        const int32_t y0 = mm_requant(mm_biased(a0, bias[ch], bk), mult[ch], shift[ch], qmin, qmax); \
        const int32_t y1 =                                                                        \
            mm_requant(mm_biased(a1, bias[ch + 1], bk), mult[ch + 1], shift[ch + 1], qmin, qmax); \
        const int32_t y2 =                                                                        \
            mm_requant(mm_biased(a2, bias[ch + 2], bk), mult[ch + 2], shift[ch + 2], qmin, qmax); \
        const int32_t y3 =                                                                        \
            mm_requant(mm_biased(a3, bias[ch + 3], bk), mult[ch + 3], shift[ch + 3], qmin, qmax); \
        if (ob == 8) {                                                                            \
            o[0] = (uint8_t)y0;                                                                   \
            o[1] = (uint8_t)y1;                                                                   \
            o[2] = (uint8_t)y2;                                                                   \
            o[3] = (uint8_t)y3;                                                                   \
            o += 4;                                                                               \
        } else {                                                                                  \
            mm_put(&wr, y0);                                                                      \
            mm_put(&wr, y1);                                                                      \
            mm_put(&wr, y2);                                                                      \
            mm_put(&wr, y3);                                                                      \
        }                                                                                         \
    } while (0)

/* 8-bit inputs and weights, channels a multiple of 4 (MM_IS_DW8): weights grouped by four
 * channels (the export reorders them, same bytes): group g holds, tap after tap, the four
 * channels' weights, so one word is a tap of four channels, as is one word of an input pixel.
 * Pixel by pixel, four channels at a time, accumulators in registers; windows inside the image
 * of a 3x3 kernel are unrolled. On DSP cores the products come from SMLABB / SMLATT on
 * halfword pairs (UXTB16 / SXTB16 with the rotation folded in). */
static void mm_dw8(const uint8_t *in, uint8_t *out, const uint8_t *w, const int32_t *bias,
                   const int32_t *mult, const int8_t *shift, int c, int in_h, int in_w,
                   int out_h, int out_w, int kh, int kw, int sh, int sw, int ph, int pw, int fmt,
                   int32_t qmin, int32_t qmax)
{
    const int is = MM_FMT_IN_SIGNED(fmt), ob = MM_FMT_OUT_BITS(fmt), bk = MM_FMT_BIAS_SHIFT(fmt);
    const int taps = kh * kw;
    const int32_t rs = (int32_t)in_w * c, c2 = 2 * c;
    for (int oy = 0; oy < out_h; oy++) {
        const int iy0 = oy * sh - ph;
        const int ky0 = iy0 < 0 ? -iy0 : 0, ky1 = in_h - iy0 < kh ? in_h - iy0 : kh;
        for (int ox = 0; ox < out_w; ox++) {
            const int ix0 = ox * sw - pw;
            const int kx0 = ix0 < 0 ? -ix0 : 0, kx1 = in_w - ix0 < kw ? in_w - ix0 : kw;
            const int inside = kh == 3 && kw == 3 && ky0 == 0 && kx0 == 0 && ky1 == 3 && kx1 == 3;
            mm_writer wr = {out, 0, 0, ob};
            const int8_t *pk = (const int8_t *)w;
            uint8_t *o = out;
            if (inside) {
                const uint8_t *const r0 = in + ((int32_t)iy0 * in_w + ix0) * c;
                for (int ch = 0; ch < c; ch += 4, pk += 36) {
                    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                    const uint8_t *r = r0 + ch;
#if defined(__ARM_FEATURE_DSP)
                    uint32_t x_, w_, t_, u_;
                    if (is)
                        MM_DW8_3X3("sxtb16");
                    else
                        MM_DW8_3X3("uxtb16");
#else
                    for (int t = 0; t < 9; t++)
                        MM_DW8_TAPS(r + (t / 3) * rs + (t % 3) * c, pk + 4 * t);
                    (void)c2;
#endif
                    MM_DW8_EMIT();
                }
            } else {
                for (int ch = 0; ch < c; ch += 4, pk += 4 * taps) {
                    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                    for (int ky = ky0; ky < ky1; ky++) {
                        const uint8_t *px = in + ((int32_t)(iy0 + ky) * in_w + ix0 + kx0) * c + ch;
                        const int8_t *pt = pk + 4 * (ky * kw + kx0);
                        for (int kx = kx0; kx < kx1; kx++, px += c, pt += 4) {
#if defined(__ARM_FEATURE_DSP)
                            uint32_t x_, w_, t_, u_;
#endif
                            MM_DW8_TAPS(px, pt);
                        }
                    }
                    MM_DW8_EMIT();
                }
            }
            if (ob == 8) {
                out = o;
            } else {
                mm_flush(&wr);
                out = wr.p;
            }
        }
    }
}

void mm_depthwise(const uint8_t *in, uint8_t *out, const uint8_t *w, const int32_t *bias,
                  const int32_t *mult, const int8_t *shift, int c, int in_h, int in_w,
                  int out_h, int out_w, int kh, int kw, int sh, int sw, int ph, int pw, int fmt,
                  int32_t qmin, int32_t qmax, void *scratch)
{
    const int ib = MM_FMT_IN_BITS(fmt), ob = MM_FMT_OUT_BITS(fmt);
    const int32_t in_pix = mm_bytes(c, ib), out_pix = mm_bytes(c, ob);
    const int blocked = kh * kw <= MM_MAX_TAPS ? c - c % MM_LANES : 0;
    int ch;
    if (MM_IS_DW8(c, ib, MM_FMT_W_BITS(fmt))) {
        mm_dw8(in, out, w, bias, mult, shift, c, in_h, in_w, out_h, out_w, kh, kw, sh, sw, ph, pw,
               fmt, qmin, qmax);
        return;
    }
    if (ob != 8 && blocked < c) /* the single-channel tail ORs its bits in */
        for (int32_t p = 0; p < (int32_t)out_h * out_w; p++)
            memset(out + p * out_pix + ((blocked * ob) >> 3), 0,
                   (size_t)(out_pix - ((blocked * ob) >> 3)));
    for (ch = 0; ch < blocked; ch += MM_LANES)
        mm_dw_block(in, out, w, bias, mult, shift, ch, in_pix, out_pix, in_h, in_w, out_h, out_w,
                    kh, kw, sh, sw, ph, pw, fmt, qmin, qmax, scratch);
    for (; ch < c; ch++)
        mm_dw_channel(in, out, w, bias[ch], mult[ch], shift[ch], ch, in_pix, out_pix, in_h, in_w,
                      out_h, out_w, kh, kw, sh, sw, ph, pw, fmt, qmin, qmax);
}
