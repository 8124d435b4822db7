/* mcuq runtime: 2-D convolution, generic (grouped) and depthwise, for 8-bit
 * activations (int32 accumulators) and 16-bit activations (int64
 * accumulators). The loops live once in conv2d_impl.h, instantiated below
 * per activation type. */
#include <stdint.h>

#include "dot_s8.h"
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

#if MCUQ_DOT_SIMD
/* One input row's share of two neighbouring 3x3 outputs (stride 1) with
 * the DSP extension: four inputs x0..x3 in one load, SXTB16 splits them
 * into (x0, x2) and (x1, x3), halfword packs make (x0, x1) and (x1, x2), and
 * SMLAD multiplies both against the weight pair (w0, w1); SMLA*T adds
 * w2 * x2 and w2 * x3 (w2 the bottom or, with `top`, the top half of w2s). */
MCUQ_ALWAYS_INLINE void depthwise_row_pair_s8(const int8_t *row, int32_t w01, int32_t w2s, int top, int32_t *a0,
                                              int32_t *a1) {
  const uint32_t v = mcuq_load4(row);
  const int32_t even = __sxtb16(v), odd = __sxtb16(mcuq_odd_bytes(v));
  const int32_t x01 = (int32_t)(((uint32_t)even & 0xFFFFu) | ((uint32_t)odd << 16));
  const int32_t x12 = (int32_t)(((uint32_t)odd & 0xFFFFu) | ((uint32_t)even & 0xFFFF0000u));
  *a0 = __smlad(w01, x01, *a0);
  *a1 = __smlad(w01, x12, *a1);
  *a0 = top ? __smlatt(w2s, even, *a0) : __smlabt(w2s, even, *a0);
  *a1 = top ? __smlatt(w2s, odd, *a1) : __smlabt(w2s, odd, *a1);
}

MCUQ_INLINE int32_t halfwords(int32_t low, int32_t high) {
  return (int32_t)(((uint32_t)low & 0xFFFFu) | ((uint32_t)high << 16));
}

/* Interior 3x3 outputs of one depthwise row, stride 1, two per pass; r0 is
 * the top-left tap of the first. Returns how many it wrote (even). */
static int32_t depthwise_3x3_pairs_s8(const int8_t *r0, int32_t in_w, int32_t count, const int32_t *w, int32_t bias,
                                      int32_t multiplier, int shift, const mcuq_requant *shared_requant,
                                      int8_t *out) {
  /* A local copy, as in the callers: no reload after every int8_t store. */
  const mcuq_requant local = *shared_requant;
  const mcuq_requant *const requant = &local;
  const int32_t w01 = halfwords(w[0], w[1]), w34 = halfwords(w[3], w[4]), w67 = halfwords(w[6], w[7]);
  const int32_t w25 = halfwords(w[2], w[5]), w8 = w[8];
  int32_t done = 0;
  for (; done + 1 < count; done += 2, r0 += 2) {
    int32_t a0 = bias, a1 = bias;
    depthwise_row_pair_s8(r0, w01, w25, 0, &a0, &a1);
    depthwise_row_pair_s8(r0 + in_w, w34, w25, 1, &a0, &a1);
    depthwise_row_pair_s8(r0 + 2 * in_w, w67, w8, 0, &a0, &a1);
    out[done] = (int8_t)mcuq_requantize_fast_s32(a0, multiplier, shift, requant);
    out[done + 1] = (int8_t)mcuq_requantize_fast_s32(a1, multiplier, shift, requant);
  }
  return done;
}
#define MCUQ_DEPTHWISE_3X3_PAIRS_S8(r0, in_w, count, w, bias, multiplier, shift, out) \
  depthwise_3x3_pairs_s8(r0, in_w, count, w, bias, multiplier, shift, local_requant, out)
#else
#define MCUQ_DEPTHWISE_3X3_PAIRS_S8(r0, in_w, count, w, bias, multiplier, shift, out) 0
#endif

#define MCUQ_ACT int8_t
#define MCUQ_ACC int32_t
#define MCUQ_ACT_MIN INT8_MIN
#define MCUQ_ACT_MAX INT8_MAX
#define MCUQ_WIDE 0
#define MCUQ_READ_BIAS MCUQ_READ_S32
#define MCUQ_WEIGHT(w, i) MCUQ_READ_S8(&(w)[i])
#define MCUQ_PACKED_WEIGHTS 0
#define MCUQ_REQUANTIZE mcuq_requantize_s32
#define MCUQ_REQUANTIZE_FAST(acc, multiplier, shift) mcuq_requantize_fast_s32(acc, multiplier, shift, local_requant)
#define MCUQ_WINDOW_SUM conv_window_sum_s8
#define MCUQ_DEPTHWISE_3X3_PAIRS MCUQ_DEPTHWISE_3X3_PAIRS_S8
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
#define MCUQ_REQUANTIZE_FAST(acc, multiplier, shift) mcuq_requantize_fast_s32(acc, multiplier, shift, local_requant)
#define MCUQ_WINDOW_SUM conv_window_sum_s8_w4
#define MCUQ_DEPTHWISE_3X3_PAIRS MCUQ_DEPTHWISE_3X3_PAIRS_S8
#define MCUQ_CONV2D mcuq_conv2d_s8_w4
#define MCUQ_DEPTHWISE_CONV2D mcuq_depthwise_conv2d_s8_w4
#include "conv2d_impl.h"

#if defined(__AVR__)
/* int8, weights in RAM: decoded codebook weights (codebook.c). */
#define MCUQ_ACT int8_t
#define MCUQ_ACC int32_t
#define MCUQ_ACT_MIN INT8_MIN
#define MCUQ_ACT_MAX INT8_MAX
#define MCUQ_WIDE 0
#define MCUQ_READ_BIAS MCUQ_READ_S32
#define MCUQ_WEIGHT(w, i) ((w)[i])
#define MCUQ_PACKED_WEIGHTS 0
#define MCUQ_REQUANTIZE mcuq_requantize_s32
#define MCUQ_REQUANTIZE_FAST(acc, multiplier, shift) mcuq_requantize_fast_s32(acc, multiplier, shift, local_requant)
#define MCUQ_WINDOW_SUM conv_window_sum_s8_ram
#define MCUQ_DEPTHWISE_3X3_PAIRS MCUQ_DEPTHWISE_3X3_PAIRS_S8
#define MCUQ_CONV2D mcuq_conv2d_s8_ram
#define MCUQ_DEPTHWISE_CONV2D mcuq_depthwise_conv2d_s8_ram
#include "conv2d_impl.h"
#endif

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
  mcuq_requantize_s64(acc, multiplier, shift, local_requant->rounding, local_requant->zero_point, \
                      local_requant->act_min, local_requant->act_max)
#define MCUQ_WINDOW_SUM conv_window_sum_s16
#define MCUQ_DEPTHWISE_3X3_PAIRS(r0, in_w, count, w, bias, multiplier, shift, out) 0
#define MCUQ_CONV2D mcuq_conv2d_s16
#define MCUQ_DEPTHWISE_CONV2D mcuq_depthwise_conv2d_s16
#include "conv2d_impl.h"
