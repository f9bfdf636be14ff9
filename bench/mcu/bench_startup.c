/* micromix bench: startup for qemu's mps2 boards (Cortex-M3/M4/M7/M33): vector table, reset
 * handler, the marker the counting plugin splits segments at, semihosting output and exit. */
#include <stdint.h>

#include "bench.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;
int main(void);

/* The counting plugin opens a new segment each time this block runs: one instruction. */
__attribute__((naked, noinline)) void mm_mark(void) { __asm__ volatile("bx lr"); }

static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void bench_puts(const char *s) { semihost(0x04, s); }

void bench_exit(int ok)
{
    semihost(0x18, (const void *)(uintptr_t)(ok ? 0x20026 : 0x20023));
    for (;;) {
    }
}

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata)
        *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; dst++)
        *dst = 0;
#if defined(__ARM_FP)
    /* Hard-float builds may keep values in FPU registers: enable CP10/CP11 first. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb");
#endif
    bench_exit(main() == 0);
}

static void fault(void)
{
    bench_puts("bench: fault\n");
    bench_exit(0);
}

typedef void (*vector)(void);
__attribute__((section(".isr_vector"), used)) const vector bench_vectors[16] = {
    (vector)(uintptr_t)&_estack, Reset_Handler, fault, fault, fault, fault, fault, 0, 0, 0, 0,
    fault, fault, 0, fault, fault,
};
