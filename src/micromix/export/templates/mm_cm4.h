/* micromix: the few services the bare-metal images need (mm_cm4_startup.c). */
#ifndef MM_CM4_H
#define MM_CM4_H
#include <stdint.h>
int mm_semihost(int op, const void *arg);
void mm_puts(const char *s);
void mm_exit(int ok);
uint32_t mm_stack_used(void);
/* Writes v in decimal at p (no terminator); returns the end. No printf in these images. */
char *mm_itoa(char *p, long v);
#endif
