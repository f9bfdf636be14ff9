/* micromix bench: services of bench_startup.c. */
#ifndef MM_BENCH_H
#define MM_BENCH_H
void mm_mark(void);
void bench_puts(const char *s);
void bench_exit(int ok);
#endif
