/* mcuq runtime: max and average 2-D pooling over each channel (PyTorch
 * semantics: floor or ceil mode, dilation 1), for 8- and 16-bit activations. The
 * loops live once in pool_impl.h, instantiated below per activation type. */
#include <stdint.h>

#include "mcuq_internal.h"
#include "mcuq_runtime.h"

/* The part of a pooling window that lies inside the input: rows
 * [y_begin, y_end), columns [x_begin, x_end). */
typedef struct {
  int32_t y_begin, y_end, x_begin, x_end;
} pool_window;

static pool_window clip_window(const mcuq_pool2d_params *p, int32_t oy, int32_t ox) {
  pool_window w;
  const int32_t y0 = oy * p->stride_h - p->pad_h;
  const int32_t x0 = ox * p->stride_w - p->pad_w;
  w.y_begin = y0 < 0 ? 0 : y0;
  w.y_end = y0 + p->k_h > p->in_h ? p->in_h : y0 + p->k_h;
  w.x_begin = x0 < 0 ? 0 : x0;
  w.x_end = x0 + p->k_w > p->in_w ? p->in_w : x0 + p->k_w;
  return w;
}

#ifndef MCUQ_NO_CHECKS

/* PyTorch's output size, or -1 where the kernel does not fit the padded
 * input. ceil_mode rounds up, but the last window must start inside the
 * input or its left padding. */
static int64_t pool_out_size(int32_t in, int32_t k, int32_t stride, int32_t pad, int ceil_mode) {
  const int64_t span = (int64_t)in + 2 * (int64_t)pad - k;
  int64_t out;
  if (span < 0) return -1;
  out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= (int64_t)in + pad) --out;
  return out;
}

/* The output size matches floor or ceil mode. */
static int pool_size_ok(int32_t out, int32_t in, int32_t k, int32_t stride, int32_t pad) {
  return out == pool_out_size(in, k, stride, pad, 0) || out == pool_out_size(in, k, stride, pad, 1);
}

static mcuq_status check_pool2d(const mcuq_pool2d_params *p, const void *input, const void *output, int32_t type_min,
                                int32_t type_max) {
  if (p == 0 || input == 0 || output == 0) return MCUQ_ERROR_NULL;
  if (p->channels <= 0 || p->in_h <= 0 || p->in_w <= 0 || p->out_h <= 0 || p->out_w <= 0 || p->k_h <= 0 ||
      p->k_w <= 0 || p->stride_h <= 0 || p->stride_w <= 0 || p->pad_h < 0 || p->pad_w < 0)
    return MCUQ_ERROR_SHAPE;
  /* PyTorch's rule pad <= k / 2 also guarantees that every window holds at
   * least one input tap (no empty max, no division by zero). */
  if (p->pad_h > p->k_h / 2 || p->pad_w > p->k_w / 2) return MCUQ_ERROR_SHAPE;
  if (!pool_size_ok(p->out_h, p->in_h, p->k_h, p->stride_h, p->pad_h) ||
      !pool_size_ok(p->out_w, p->in_w, p->k_w, p->stride_w, p->pad_w))
    return MCUQ_ERROR_SHAPE;
  if (!mcuq_in_range(p->zero_point, type_min, type_max)) return MCUQ_ERROR_ARGUMENT;
  if (!mcuq_valid_clamp(p->act_min, p->act_max, type_min, type_max)) return MCUQ_ERROR_ARGUMENT;
  return MCUQ_OK;
}

#endif /* MCUQ_NO_CHECKS */

#define MCUQ_ACT int8_t
#define MCUQ_ACT_MIN INT8_MIN
#define MCUQ_ACT_MAX INT8_MAX
#define MCUQ_MAX_POOL2D mcuq_max_pool2d_s8
#define MCUQ_AVG_POOL2D mcuq_avg_pool2d_s8
#include "pool_impl.h"

#define MCUQ_ACT int16_t
#define MCUQ_ACT_MIN INT16_MIN
#define MCUQ_ACT_MAX INT16_MAX
#define MCUQ_MAX_POOL2D mcuq_max_pool2d_s16
#define MCUQ_AVG_POOL2D mcuq_avg_pool2d_s16
#include "pool_impl.h"
