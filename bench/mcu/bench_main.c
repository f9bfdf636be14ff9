/* micromix bench: one inference between two markers; the generated model calls the marker
 * before every step (bench/mcu_cost.py rewrites its MM_STEP_BEGIN), so each layer is one
 * segment of the counting plugin. Checks the output against the numpy reference. */
#include <string.h>

#include "bench.h"
#include "micromix_model.h"

extern const unsigned char bench_image[], bench_expected[];

int main(void)
{
    static MICROMIX_OUTPUT_T out[MICROMIX_OUTPUT_BYTES];
    mm_mark();
    micromix_run_copy(bench_image, out);
    mm_mark();
    if (memcmp(out, bench_expected, MICROMIX_OUTPUT_BYTES) != 0) {
        bench_puts("bench: mismatch\n");
        return 1;
    }
    bench_puts("bench: ok\n");
    return 0;
}
