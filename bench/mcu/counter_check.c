/* micromix bench: a hand-counted loop that validates the counting plugin.
 * Segment 1 (from the marker to the next marker call) executes exactly:
 *   bx lr (the marker)                     1 instruction, 1 + P cycles (taken)
 *   movs r0, #100                          1, 1
 *   100 x { ldr, ldr, subs, bne }          400; loads 2 + 1 (pipelined), subs 1,
 *                                          bne 1, plus P on the 99 taken iterations
 *   bl mm_mark                             1, 1 + P
 * = 403 instructions and 3 + 1 + 100 * 5 + 99 * 2 + 3 = 705 cycles with P = 2.
 * Segment 3 runs the same instructions placed so that the second load opens a 1 KB page, where
 * qemu ends a translation block: the count must not change (the load still follows one).
 * Segments 5 and 7 run the loop with a 32-bit second load (ldr.w), placed naturally and so that
 * the ldr.w straddles a 1 KB page: qemu ends the block before it, and the plugin API reports
 * the first load 2 bytes longer (qemu reads the next halfword to see that it crosses); both
 * must count 403 instructions and 705 cycles as well. */
#include "bench.h"

/* The counted instructions; LOAD2 is the second load (16- or 32-bit: the same cycles). */
#define LOOP_OF(LOAD2)                                                                            \
    "push {r4, lr}\n\t"                                                                           \
    "bl mm_mark\n\t"                                                                              \
    "movs r0, #100\n"                                                                             \
    "1:\n\t"                                                                                      \
    "ldr r1, [sp]\n\t" LOAD2 "\n\t"                                                               \
    "subs r0, r0, #1\n\t"                                                                         \
    "bne 1b\n\t"                                                                                  \
    "bl mm_mark\n\t"                                                                              \
    "pop {r4, pc}\n"
#define LOOP_BODY LOOP_OF("ldr r2, [sp, #4]")
#define LOOP_BODY_W LOOP_OF("ldr.w r2, [sp, #4]")

__attribute__((naked, noinline)) static void loop(void) { __asm__ volatile(LOOP_BODY); }
__attribute__((naked, noinline)) static void loop_wide(void) { __asm__ volatile(LOOP_BODY_W); }

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

/* push (2), bl (4), movs (2), ldr (2) from 1012 bytes past a 1 KB boundary: the ldr.w starts
 * 2 bytes before the next page. */
void loop_cross(void);
__asm__(".syntax unified\n\t"
        ".thumb\n\t"
        ".text\n\t"
        ".balign 1024\n\t"
        ".space 1012\n\t"
        ".global loop_cross\n\t"
        ".thumb_func\n"
        "loop_cross:\n\t" LOOP_BODY_W);

int main(void)
{
    loop();
    loop_split();
    loop_wide();
    loop_cross();
    return 0;
}
