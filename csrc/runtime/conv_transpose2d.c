/* mcuq runtime: 2-D transposed convolution (PyTorch's ConvTranspose2d,
 * groups 1), for 8-bit activations (int32 accumulators) and 16-bit
 * activations (int64 accumulators).
 *
 * Gathered per output: out[o][y][x] = bias[o] + sum over the taps (i, ky, kx)
 * with y + pad_h - ky * dilation_h = iy * stride_h for an input row iy
 * (likewise for x) of w[o][i][ky][kx] * (in[i][iy][ix] - in_zero_point).
 * Unlike a convolution, the number of taps varies from output to output, so
 * the input zero point is subtracted per tap instead of being folded into
 * the bias. Weights are [out_c][in_c][k_h][k_w] (the exporter transposes
 * PyTorch's [in_c][out_c][k_h][k_w]). */
#include <stdint.h>

#include "mcuq_internal.h"
#include "mcuq_runtime.h"

#ifndef MCUQ_NO_CHECKS
/* PyTorch's output size without output_padding; out may exceed it by less
 * than the stride or the dilation (output_padding). */
static int conv_transpose_size_ok(int32_t in, int32_t out, int32_t k, int32_t stride, int32_t pad, int32_t dilation) {
  const int64_t base = ((int64_t)in - 1) * stride - 2 * (int64_t)pad + (int64_t)dilation * (k - 1) + 1;
  const int64_t extra = (int64_t)out - base;
  return base > 0 && extra >= 0 && extra < (stride > dilation ? stride : dilation);
}

static mcuq_status check_conv_transpose2d(const mcuq_conv2d_params *p, const void *input, const int8_t *weights,
                                          const void *bias, const mcuq_requant *requant, const void *output,
                                          int32_t type_min, int32_t type_max, int wide) {
  if (p == 0 || input == 0 || weights == 0 || bias == 0 || requant == 0 || output == 0) return MCUQ_ERROR_NULL;
  if (p->in_c <= 0 || p->in_h <= 0 || p->in_w <= 0 || p->out_c <= 0 || p->out_h <= 0 || p->out_w <= 0 || p->k_h <= 0 ||
      p->k_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 || p->pad_h < 0 || p->pad_w < 0 || p->dilation_h <= 0 ||
      p->dilation_w <= 0 || p->groups != 1)
    return MCUQ_ERROR_SHAPE;
  if (!conv_transpose_size_ok(p->in_h, p->out_h, p->k_h, p->stride_h, p->pad_h, p->dilation_h) ||
      !conv_transpose_size_ok(p->in_w, p->out_w, p->k_w, p->stride_w, p->pad_w, p->dilation_w))
    return MCUQ_ERROR_SHAPE;
  if (!mcuq_in_range(p->in_zero_point, type_min, type_max)) return MCUQ_ERROR_ARGUMENT;
  return mcuq_check_requant(requant, p->out_c, type_min, type_max, wide);
}
#endif

/* The input index a tap reads along one axis, or -1 where none does. */
static int32_t source_index(int32_t out, int32_t tap, int32_t stride, int32_t pad, int32_t dilation, int32_t in) {
  const int32_t t = out + pad - tap * dilation;
  if (t < 0 || t % stride != 0) return -1;
  return t / stride < in ? t / stride : -1;
}

/* One definition per activation type: T the type, ACC the accumulator, READ_BIAS
 * its table read, REQUANTIZE the matching requantization. */
#define MCUQ_CONV_TRANSPOSE2D(NAME, T, BIAS_T, ACC, READ_BIAS, REQUANTIZE, TYPE_MIN, TYPE_MAX, WIDE)                \
  mcuq_status NAME(const mcuq_conv2d_params *p, const T *input, const int8_t *weights, const BIAS_T *bias,          \
                   const mcuq_requant *requant, T *output) {                                                          \
    MCUQ_RETURN_IF_INVALID(check_conv_transpose2d(p, input, weights, bias, requant, output, TYPE_MIN, TYPE_MAX,     \
                                                  WIDE));                                                            \
    for (int32_t o = 0; o < p->out_c; ++o) {                                                                        \
      const int32_t multiplier = mcuq_requant_multiplier(requant, o);                                                \
      const int shift = mcuq_requant_shift(requant, o);                                                              \
      for (int32_t y = 0; y < p->out_h; ++y) {                                                                      \
        for (int32_t x = 0; x < p->out_w; ++x) {                                                                    \
          ACC acc = READ_BIAS(&bias[o]);                                                                             \
          for (int32_t ky = 0; ky < p->k_h; ++ky) {                                                                 \
            const int32_t iy = source_index(y, ky, p->stride_h, p->pad_h, p->dilation_h, p->in_h);                   \
            if (iy < 0) continue;                                                                                    \
            for (int32_t kx = 0; kx < p->k_w; ++kx) {                                                               \
              const int32_t ix = source_index(x, kx, p->stride_w, p->pad_w, p->dilation_w, p->in_w);                 \
              if (ix < 0) continue;                                                                                  \
              for (int32_t i = 0; i < p->in_c; ++i) {                                                               \
                const int32_t w = MCUQ_READ_S8(&weights[((o * p->in_c + i) * p->k_h + ky) * p->k_w + kx]);          \
                acc += (ACC)w * (input[(i * p->in_h + iy) * p->in_w + ix] - p->in_zero_point);                       \
              }                                                                                                      \
            }                                                                                                        \
          }                                                                                                          \
          *output++ = (T)REQUANTIZE(acc, multiplier, shift, requant->rounding, requant->zero_point,                  \
                                    requant->act_min, requant->act_max);                                             \
        }                                                                                                            \
      }                                                                                                              \
    }                                                                                                                \
    return MCUQ_OK;                                                                                                  \
  }

MCUQ_CONV_TRANSPOSE2D(mcuq_conv_transpose2d_s8, int8_t, int32_t, int32_t, MCUQ_READ_S32, mcuq_requantize_s32, INT8_MIN,
                      INT8_MAX, 0)
MCUQ_CONV_TRANSPOSE2D(mcuq_conv_transpose2d_s16, int16_t, int64_t, int64_t, MCUQ_READ_S64, mcuq_requantize_s64,
                      INT16_MIN, INT16_MAX, 1)
