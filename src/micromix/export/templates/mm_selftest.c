/* micromix host self-test: runs the test images of a data file through micromix_run and
 * compares every output byte with the numpy reference's.
 *
 *   usage: micromix_selftest selftest.bin [outputs.bin]
 *
 * selftest.bin: "MMT1", then little-endian uint32 n, input bytes, output bytes, followed by
 * n images (HWC uint8) and n expected outputs. outputs.bin receives what the C code produced.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "micromix_model.h"

static unsigned long rd32(const unsigned char *p)
{
    return (unsigned long)p[0] | ((unsigned long)p[1] << 8) | ((unsigned long)p[2] << 16) |
           ((unsigned long)p[3] << 24);
}

int main(int argc, char **argv)
{
    unsigned char head[16];
    unsigned long n, in_bytes, out_bytes, i, bad = 0;
    unsigned char *images, *expected, *got;
    FILE *f, *o = NULL;
    if (argc < 2) {
        fprintf(stderr, "usage: %s selftest.bin [outputs.bin]\n", argv[0]);
        return 2;
    }
    f = fopen(argv[1], "rb");
    if (!f || fread(head, 1, 16, f) != 16 || memcmp(head, "MMT1", 4) != 0) {
        fprintf(stderr, "%s: cannot read a micromix self-test file\n", argv[1]);
        return 2;
    }
    n = rd32(head + 4);
    in_bytes = rd32(head + 8);
    out_bytes = rd32(head + 12);
    if (in_bytes != MICROMIX_INPUT_BYTES || out_bytes != MICROMIX_OUTPUT_BYTES) {
        fprintf(stderr, "%s: made for another model (%lu/%lu bytes per image/output)\n", argv[1],
                in_bytes, out_bytes);
        return 2;
    }
    images = malloc(n * in_bytes + 1);
    expected = malloc(n * out_bytes + 1);
    got = malloc(n * out_bytes + 1);
    if (!images || !expected || !got || fread(images, 1, n * in_bytes, f) != n * in_bytes ||
        fread(expected, 1, n * out_bytes, f) != n * out_bytes) {
        fprintf(stderr, "%s: truncated\n", argv[1]);
        return 2;
    }
    fclose(f);
    for (i = 0; i < n; i++) {
#ifdef MICROMIX_STREAMED_INPUT
        /* Row by row from the image (micromix_run_copy's reader). */
        micromix_run_copy(images + i * in_bytes, (MICROMIX_OUTPUT_T *)(got + i * out_bytes));
#else
        /* As an application does: the image goes straight into the arena's input slot. */
        memcpy(micromix_input(), images + i * in_bytes, in_bytes);
        micromix_run();
        memcpy(got + i * out_bytes, micromix_output(), out_bytes);
#endif
        if (memcmp(got + i * out_bytes, expected + i * out_bytes, out_bytes) != 0) {
            if (bad < 5)
                fprintf(stderr, "image %lu: output differs from the reference\n", i);
            bad++;
        }
    }
    if (argc > 2 && ((o = fopen(argv[2], "wb")) == NULL ||
                     fwrite(got, 1, n * out_bytes, o) != n * out_bytes)) {
        fprintf(stderr, "%s: cannot write\n", argv[2]);
        return 2;
    }
    if (o)
        fclose(o);
    printf("micromix selftest: %lu/%lu images bit-identical\n", n - bad, n);
    free(images);
    free(expected);
    free(got);
    return bad ? 1 : 0;
}
