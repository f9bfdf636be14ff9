/* micromix: minimal Cortex-M startup (any core, ARMv6-M and up): vector table, reset handler (copies
 * .data, zeroes .bss, paints the stack to measure its use) and semihosting output/exit. */
#include <stdint.h>

#include "mm_cm4.h"

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _sstack, _estack;
int main(void);

/* Arm semihosting: operation in r0, argument in r1, trap with BKPT 0xAB (qemu -semihosting). */
int mm_semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void mm_puts(const char *s) { mm_semihost(0x04, s); /* SYS_WRITE0 */ }

void mm_exit(int ok)
{
    /* SYS_EXIT: ApplicationExit makes qemu exit with status 0, RunTimeErrorUnknown with 1. */
    mm_semihost(0x18, (const void *)(uintptr_t)(ok ? 0x20026 : 0x20023));
    for (;;) {
    }
}

uint32_t mm_stack_used(void)
{
    const uint32_t *p = &_sstack;
    while (p < &_estack && *p == 0xA5A5A5A5u)
        p++;
    return (uint32_t)((uintptr_t)&_estack - (uintptr_t)p);
}

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata, *sp;
    while (dst < &_edata)
        *dst++ = *src++;
    for (dst = &_sbss; dst < &_ebss; dst++)
        *dst = 0;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (dst = &_sstack; dst < sp - 16; dst++)
        *dst = 0xA5A5A5A5u;
    mm_exit(main() == 0);
}

static void mm_fault(void)
{
    mm_puts("micromix cm4: fault\n");
    mm_exit(0);
}

typedef void (*mm_vector)(void);
__attribute__((section(".isr_vector"), used)) const mm_vector mm_vectors[16] = {
    (mm_vector)(uintptr_t)&_estack, Reset_Handler, mm_fault, mm_fault, mm_fault, mm_fault,
    mm_fault, 0, 0, 0, 0, mm_fault, mm_fault, 0, mm_fault, mm_fault,
};

char *mm_itoa(char *p, long v)
{
    char tmp[12];
    int n = 0;
    unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
    if (v < 0)
        *p++ = '-';
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (n)
        *p++ = tmp[--n];
    return p;
}
