/* micromix: the few services the bare-metal self-test needs (mm_cm4_startup.c). */
#ifndef MM_CM4_H
#define MM_CM4_H
#include <stdint.h>
void mm_puts(const char *s);
void mm_exit(int ok);
uint32_t mm_stack_used(void);
#endif
