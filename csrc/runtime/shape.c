/* mcuq runtime: layers that move activations without arithmetic: constant
 * padding with the zero point and nearest-neighbour upsampling by integer
 * factors. The output keeps the input's qparams, so the float model's zero
 * padding and repeated values are exact on the quantized grid. */
#include <stdint.h>

#include "mcuq_internal.h"
#include "mcuq_runtime.h"

#ifndef MCUQ_NO_CHECKS
/* channels x rows x columns (each positive, below 2^62) fits int32, so
 * every index the kernels compute does; divisions, never a product that
 * could overflow. */
static int fits_int32(int32_t channels, int64_t rows, int64_t columns) {
  if (rows > INT32_MAX / channels) return 0;
  return columns <= INT32_MAX / (channels * rows);
}

static mcuq_status check_pad2d(const mcuq_pad2d_params *p, const void *input, const void *output, int32_t type_min,
                               int32_t type_max) {
  if (p == 0 || input == 0 || output == 0) return MCUQ_ERROR_NULL;
  if (p->channels <= 0 || p->in_h <= 0 || p->in_w <= 0 || p->top < 0 || p->bottom < 0 || p->left < 0 ||
      p->right < 0)
    return MCUQ_ERROR_SHAPE;
  if (!fits_int32(p->channels, (int64_t)p->in_h + p->top + p->bottom, (int64_t)p->in_w + p->left + p->right))
    return MCUQ_ERROR_SHAPE;
  if (!mcuq_in_range(p->value, type_min, type_max)) return MCUQ_ERROR_ARGUMENT;
  return MCUQ_OK;
}

static mcuq_status check_upsample(const mcuq_upsample_params *p, const void *input, const void *output) {
  if (p == 0 || input == 0 || output == 0) return MCUQ_ERROR_NULL;
  if (p->channels <= 0 || p->in_h <= 0 || p->in_w <= 0 || p->factor_h <= 0 || p->factor_w <= 0)
    return MCUQ_ERROR_SHAPE;
  if (!fits_int32(p->channels, (int64_t)p->in_h * p->factor_h, (int64_t)p->in_w * p->factor_w)) return MCUQ_ERROR_SHAPE;
  return MCUQ_OK;
}
#endif

/* One definition per activation type: T the type, NAME the suffix. */
#define MCUQ_SHAPE_KERNELS(T, NAME, TYPE_MIN, TYPE_MAX)                                                                \
  mcuq_status mcuq_pad2d_##NAME(const mcuq_pad2d_params *p, const T *input, T *output) {                               \
    int32_t out_h, out_w;                                                                                              \
    MCUQ_RETURN_IF_INVALID(check_pad2d(p, input, output, TYPE_MIN, TYPE_MAX));                                         \
    out_h = p->in_h + p->top + p->bottom;                                                                              \
    out_w = p->in_w + p->left + p->right;                                                                              \
    for (int32_t c = 0; c < p->channels; ++c) {                                                                        \
      for (int32_t y = 0; y < out_h; ++y) {                                                                            \
        const int32_t in_y = y - p->top;                                                                               \
        const int row_inside = in_y >= 0 && in_y < p->in_h;                                                            \
        for (int32_t x = 0; x < out_w; ++x) {                                                                          \
          const int32_t in_x = x - p->left;                                                                            \
          *output++ = row_inside && in_x >= 0 && in_x < p->in_w ? input[in_y * p->in_w + in_x] : (T)p->value;          \
        }                                                                                                              \
      }                                                                                                                \
      input += p->in_h * p->in_w;                                                                                      \
    }                                                                                                                  \
    return MCUQ_OK;                                                                                                    \
  }                                                                                                                    \
                                                                                                                       \
  mcuq_status mcuq_upsample_nearest_##NAME(const mcuq_upsample_params *p, const T *input, T *output) {                 \
    MCUQ_RETURN_IF_INVALID(check_upsample(p, input, output));                                                          \
    for (int32_t c = 0; c < p->channels; ++c) {                                                                        \
      for (int32_t y = 0; y < p->in_h; ++y) {                                                                          \
        const T *row = input + (c * p->in_h + y) * p->in_w;                                                            \
        for (int32_t repeat = 0; repeat < p->factor_h; ++repeat) {                                                     \
          for (int32_t x = 0; x < p->in_w; ++x) {                                                                      \
            for (int32_t k = 0; k < p->factor_w; ++k) *output++ = row[x];                                              \
          }                                                                                                            \
        }                                                                                                              \
      }                                                                                                                \
    }                                                                                                                  \
    return MCUQ_OK;                                                                                                    \
  }

MCUQ_SHAPE_KERNELS(int8_t, s8, INT8_MIN, INT8_MAX)
MCUQ_SHAPE_KERNELS(int16_t, s16, INT16_MIN, INT16_MAX)
