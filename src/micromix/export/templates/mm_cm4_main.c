/* micromix: bare-metal self-test, a TEST-ONLY image on the qemu board's own memory map (its
 * embedded test images need not fit the chip). Runs the embedded test images, prints every
 * output vector (one line per image, parsed by micromix's build.py) and compares it with the
 * reference. */
#include <stdint.h>
#include <string.h>

#include "micromix_model.h"
#include "mm_cm4.h"

extern const int mm_test_count;
extern const uint8_t mm_test_images[], mm_test_expected[];

int main(void)
{
    static MICROMIX_OUTPUT_T out[MICROMIX_OUTPUT_BYTES];
    static char line[16 + 5 * MICROMIX_OUTPUT_BYTES];
    int bad = 0;
    for (int i = 0; i < mm_test_count; i++) {
        char *p = line;
#ifdef MICROMIX_STREAMED_INPUT
        micromix_run_copy(mm_test_images + (long)i * MICROMIX_INPUT_BYTES, out);
#else
        memcpy(micromix_input(), mm_test_images + (long)i * MICROMIX_INPUT_BYTES,
               MICROMIX_INPUT_BYTES);
        micromix_run();
        memcpy(out, micromix_output(), MICROMIX_OUTPUT_BYTES);
#endif
        bad += memcmp(out, mm_test_expected + (long)i * MICROMIX_OUTPUT_BYTES,
                      MICROMIX_OUTPUT_BYTES) != 0;
        memcpy(p, "logits ", 7);
        p = mm_itoa(p + 7, i);
        *p++ = ':';
        for (int k = 0; k < MICROMIX_OUTPUT_BYTES; k++) {
            *p++ = ' ';
            p = mm_itoa(p, out[k]);
        }
        *p++ = '\n';
        *p = 0;
        mm_puts(line);
    }
    {
        char *p = line;
        memcpy(p, "stack ", 6);
        p = mm_itoa(p + 6, (long)mm_stack_used());
        memcpy(p, "\nmismatches ", 12);
        p = mm_itoa(p + 12, bad);
        *p++ = '\n';
        *p = 0;
        mm_puts(line);
    }
    return bad != 0;
}
