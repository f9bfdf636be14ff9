/* micromix: guarded test builds only (-DMICROMIX_GUARD_TENSORS, with -fsanitize=address).
 * Each step reads its inputs from and writes its output to heap blocks of exactly the
 * tensor's size, copied from and back to the arena, so AddressSanitizer reports any byte a
 * kernel reads or writes outside a tensor. Included by micromix_model.c in those builds. */
#ifndef MM_GUARD_H
#define MM_GUARD_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct {
    uint8_t *arena, *block;
    long len;
    int out;
} mm_guard[64]; /* blocks of one step (a concat has many inputs) */
static int mm_guards;

static uint8_t *mm_guarded(uint8_t *p, long len, int out)
{
    uint8_t *b = malloc((size_t)len);
    if (b == NULL || mm_guards == 64)
        abort();
    memcpy(b, p, (size_t)len);
    mm_guard[mm_guards].arena = p;
    mm_guard[mm_guards].block = b;
    mm_guard[mm_guards].len = len;
    mm_guard[mm_guards++].out = out;
    return b;
}

static void mm_unguard(void)
{
    while (mm_guards > 0) {
        mm_guards--;
        if (mm_guard[mm_guards].out)
            memcpy(mm_guard[mm_guards].arena, mm_guard[mm_guards].block,
                   (size_t)mm_guard[mm_guards].len);
        free(mm_guard[mm_guards].block);
    }
}

#define MM_IN(p, len) mm_guarded((p), (len), 0)
#define MM_OUT(p, len) mm_guarded((p), (len), 1)
#endif
