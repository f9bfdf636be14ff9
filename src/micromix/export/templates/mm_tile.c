/* micromix: moving a patch between a tensor and a patch buffer (micromix.schedule's patch
 * stage: the kernels read and write whole rows, a patch of a wider tensor is not). */
#include <string.h>

#include "mm_kernels.h"

void mm_copy_rows(uint8_t *dst, int32_t dst_row, const uint8_t *src, int32_t src_row, int rows,
                  int32_t row_bytes)
{
    for (int r = 0; r < rows; r++)
        memcpy(dst + (int32_t)r * dst_row, src + (int32_t)r * src_row, (size_t)row_bytes);
}

void mm_read_rows(mm_row_reader read_row, void *ctx, uint8_t *ring, int ring_rows,
                  int32_t row_bytes, int y0, int y1)
{
    for (int y = y0; y < y1; y++)
        read_row(ctx, y, ring + (int32_t)(y % ring_rows) * row_bytes);
}

void mm_read_rows_at(mm_row_reader read_row, void *ctx, uint8_t *dst, int32_t row_bytes, int y0,
                     int y1)
{
    for (int y = y0; y < y1; y++)
        read_row(ctx, y, dst + (int32_t)(y - y0) * row_bytes);
}
