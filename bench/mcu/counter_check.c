/* micromix bench: a hand-counted loop that validates the counting plugin.
 * Segment 1 (from the marker to the next marker call) executes exactly:
 *   bx lr (the marker)                     1 instruction, 1 + P cycles (taken)
 *   movs r0, #100                          1, 1
 *   100 x { ldr, ldr, subs, bne }          400; loads 2 + 1 (pipelined), subs 1,
 *                                          bne 1, plus P on the 99 taken iterations
 *   bl mm_mark                             1, 1 + P
 * = 403 instructions and 3 + 1 + 100 * 5 + 99 * 2 + 3 = 705 cycles with P = 2.
 * Segment 3 runs the same instructions placed so that the second load opens a 1 KB page, where
 * qemu ends a translation block: the count must not change (the load still follows one). */
#include "bench.h"

/* The counted instructions, both placements. */
#define LOOP_BODY                                                                                 \
    "push {r4, lr}\n\t"                                                                           \
    "bl mm_mark\n\t"                                                                              \
    "movs r0, #100\n"                                                                             \
    "1:\n\t"                                                                                      \
    "ldr r1, [sp]\n\t"                                                                            \
    "ldr r2, [sp, #4]\n\t"                                                                        \
    "subs r0, r0, #1\n\t"                                                                         \
    "bne 1b\n\t"                                                                                  \
    "bl mm_mark\n\t"                                                                              \
    "pop {r4, pc}\n"

__attribute__((naked, noinline)) static void loop(void) { __asm__ volatile(LOOP_BODY); }

/* push (2 bytes), bl (4), movs (2), ldr (2) from 1014 bytes past a 1 KB boundary: the second
 * ldr is the first instruction of the next page. */
void loop_split(void);
__asm__(".syntax unified\n\t"
        ".thumb\n\t"
        ".text\n\t"
        ".balign 1024\n\t"
        ".space 1014\n\t"
        ".global loop_split\n\t"
        ".thumb_func\n"
        "loop_split:\n\t" LOOP_BODY);

int main(void)
{
    loop();
    loop_split();
    return 0;
}
