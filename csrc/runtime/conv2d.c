/* mcuq runtime: 2-D convolution, generic (grouped) and depthwise, for 8-bit
 * activations (int32 accumulators) and 16-bit activations (int64
 * accumulators). The loops live once in conv2d_impl.h, instantiated below
 * per activation type. */
#include <stdint.h>

#include "mcuq_internal.h"
#include "mcuq_runtime.h"

#ifndef MCUQ_NO_CHECKS

/* PyTorch's output size, or -1 where the (dilated) kernel does not fit the
 * padded input. Computed in 64 bits so absurd parameters cannot overflow. */
static int64_t conv_out_size(int32_t in, int32_t k, int32_t stride, int32_t pad, int32_t dilation) {
  const int64_t span = (int64_t)in + 2 * (int64_t)pad - (int64_t)dilation * (k - 1) - 1;
  return span < 0 ? -1 : span / stride + 1;
}

/* Checks shared by every convolution kernel and type; depthwise adds its own. */
mcuq_status mcuq_check_conv2d(const mcuq_conv2d_params *p, const void *input, const int8_t *weights, const void *bias,
                                const mcuq_requant *requant, const void *output, int32_t type_min, int32_t type_max,
                                int wide) {
  if (p == 0 || input == 0 || weights == 0 || bias == 0 || requant == 0 || output == 0) return MCUQ_ERROR_NULL;
  if (p->in_c <= 0 || p->in_h <= 0 || p->in_w <= 0 || p->out_c <= 0 || p->out_h <= 0 || p->out_w <= 0 || p->k_h <= 0 ||
      p->k_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 || p->pad_h < 0 || p->pad_w < 0 || p->dilation_h <= 0 ||
      p->dilation_w <= 0 || p->groups <= 0)
    return MCUQ_ERROR_SHAPE;
  if (p->in_c % p->groups != 0 || p->out_c % p->groups != 0) return MCUQ_ERROR_SHAPE;
  if (conv_out_size(p->in_h, p->k_h, p->stride_h, p->pad_h, p->dilation_h) != p->out_h ||
      conv_out_size(p->in_w, p->k_w, p->stride_w, p->pad_w, p->dilation_w) != p->out_w)
    return MCUQ_ERROR_SHAPE;
  /* Padded taps read the zero point as an activation value. */
  if (!mcuq_in_range(p->in_zero_point, type_min, type_max)) return MCUQ_ERROR_ARGUMENT;
  return mcuq_check_requant(requant, p->out_c, type_min, type_max, wide);
}

static mcuq_status check_depthwise(const mcuq_conv2d_params *p) {
  return (p->groups == p->in_c && p->out_c % p->in_c == 0) ? MCUQ_OK : MCUQ_ERROR_SHAPE;
}

#endif /* MCUQ_NO_CHECKS */

/* [lo, hi): the output positions along one axis whose window (k taps,
 * dilated) lies inside the input; lo == hi where there is none. */
static void conv_interior(int32_t in, int32_t out, int32_t k, int32_t stride, int32_t pad, int32_t dilation,
                          int32_t *lo, int32_t *hi) {
  const int32_t last = in - 1 + pad - (k - 1) * dilation; /* o * stride <= last */
  *lo = (pad + stride - 1) / stride;
  *hi = last < 0 ? 0 : last / stride + 1;
  if (*hi > out) *hi = out;
  if (*hi < *lo) *hi = *lo;
}

#define MCUQ_ACT int8_t
#define MCUQ_ACC int32_t
#define MCUQ_ACT_MIN INT8_MIN
#define MCUQ_ACT_MAX INT8_MAX
#define MCUQ_WIDE 0
#define MCUQ_READ_BIAS MCUQ_READ_S32
#define MCUQ_WEIGHT(w, i) MCUQ_READ_S8(&(w)[i])
#define MCUQ_PACKED_WEIGHTS 0
#define MCUQ_REQUANTIZE mcuq_requantize_s32
#define MCUQ_REQUANTIZE_FAST(acc, multiplier, shift) mcuq_requantize_fast_s32(acc, multiplier, shift, requant)
#define MCUQ_WINDOW_SUM conv_window_sum_s8
#define MCUQ_CONV2D mcuq_conv2d_s8
#define MCUQ_DEPTHWISE_CONV2D mcuq_depthwise_conv2d_s8
#include "conv2d_impl.h"

/* int8 activations, 4-bit weights packed two per byte (W4A8). */
#define MCUQ_ACT int8_t
#define MCUQ_ACC int32_t
#define MCUQ_ACT_MIN INT8_MIN
#define MCUQ_ACT_MAX INT8_MAX
#define MCUQ_WIDE 0
#define MCUQ_READ_BIAS MCUQ_READ_S32
#define MCUQ_WEIGHT(w, i) MCUQ_READ_S4(w, i)
#define MCUQ_PACKED_WEIGHTS 1
#define MCUQ_REQUANTIZE mcuq_requantize_s32
#define MCUQ_REQUANTIZE_FAST(acc, multiplier, shift) mcuq_requantize_fast_s32(acc, multiplier, shift, requant)
#define MCUQ_WINDOW_SUM conv_window_sum_s8_w4
#define MCUQ_CONV2D mcuq_conv2d_s8_w4
#define MCUQ_DEPTHWISE_CONV2D mcuq_depthwise_conv2d_s8_w4
#include "conv2d_impl.h"

#define MCUQ_ACT int16_t
#define MCUQ_ACC int64_t
#define MCUQ_ACT_MIN INT16_MIN
#define MCUQ_ACT_MAX INT16_MAX
#define MCUQ_WIDE 1
#define MCUQ_READ_BIAS MCUQ_READ_S64
#define MCUQ_WEIGHT(w, i) MCUQ_READ_S8(&(w)[i])
#define MCUQ_PACKED_WEIGHTS 0
#define MCUQ_REQUANTIZE mcuq_requantize_s64
#define MCUQ_REQUANTIZE_FAST(acc, multiplier, shift)                                                       \
  mcuq_requantize_s64(acc, multiplier, shift, requant->rounding, requant->zero_point, requant->act_min, \
                      requant->act_max)
#define MCUQ_WINDOW_SUM conv_window_sum_s16
#define MCUQ_CONV2D mcuq_conv2d_s16
#define MCUQ_DEPTHWISE_CONV2D mcuq_depthwise_conv2d_s16
#include "conv2d_impl.h"
