/* micromix: minimal firmware for the fit verdict. It is what an application needs around the
 * library: startup (mm_cm4_startup.c) and a main that fills micromix_input(), calls
 * micromix_run() (with a streamed input: hands micromix_run_rows a row reader) and reads
 * micromix_output(). It is linked against the chip's memory map.
 * Under qemu the "sensor" is a file read with semihosting (mm_input.bin: images, HWC uint8,
 * one after the other), so no test data is linked into the image; every output vector is
 * printed (one line per image, parsed by micromix's build.py), then the peak stack. */
#include <stdint.h>
#include <string.h>

#include "micromix_model.h"
#include "mm_cm4.h"

/* Semihosting SYS_OPEN / SYS_READ: the next image straight into the arena's input slot. */
static int mm_open_input(void)
{
    static const char name[] = "mm_input.bin";
    const uint32_t args[3] = {(uint32_t)(uintptr_t)name, 1 /* "rb" */, sizeof(name) - 1};
    return mm_semihost(0x01, args);
}

static int mm_read_bytes(int fd, uint8_t *dst, uint32_t n)
{
    const uint32_t args[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)dst, n};
    return fd >= 0 && mm_semihost(0x06, args) == 0; /* returns the bytes NOT read */
}

#ifdef MICROMIX_STREAMED_INPUT
/* The application's row reader: each row straight from the host file into the arena. */
static void mm_file_row(void *ctx, int y, uint8_t *dst)
{
    (void)y; /* asked for in order */
    mm_read_bytes(*(int *)ctx, dst, MICROMIX_INPUT_W * MICROMIX_INPUT_C);
}

/* Semihosting SYS_FLEN: how many images the file holds (no row is read ahead). */
static long mm_images(int fd)
{
    const uint32_t args[1] = {(uint32_t)fd};
    return fd < 0 ? 0 : mm_semihost(0x0C, args) / MICROMIX_INPUT_BYTES;
}
#endif

int main(void)
{
    static char line[24];
    int fd = mm_open_input(), i = 0;
#ifdef MICROMIX_STREAMED_INPUT
    for (long n = mm_images(fd); i < n;) {
        const MICROMIX_OUTPUT_T *y;
        char *p = line;
        micromix_run_rows(mm_file_row, &fd);
#else
    while (mm_read_bytes(fd, micromix_input(), MICROMIX_INPUT_BYTES)) {
        const MICROMIX_OUTPUT_T *y;
        char *p = line;
        micromix_run();
#endif
        y = micromix_output();
        memcpy(p, "logits ", 7);
        p = mm_itoa(p + 7, i++);
        *p++ = ':';
        *p = 0;
        mm_puts(line);
        for (int k = 0; k < MICROMIX_OUTPUT_BYTES; k++) {
            p = line;
            *p++ = ' ';
            p = mm_itoa(p, y[k]);
            *p = 0;
            mm_puts(line);
        }
        mm_puts("\n");
    }
    {
        char *p = line;
        memcpy(p, "stack ", 6);
        p = mm_itoa(p + 6, (long)mm_stack_used());
        memcpy(p, "\nmismatches 0\n", 15);
        mm_puts(line);
    }
    return fd < 0;
}
