/* mcuq runtime: int8 convolution as a blocked matrix product.
 *
 * Two output pixels at a time, the input taps each one reads (its window
 * over the group's channels, in the weights' [c][k_h][k_w] order; padded
 * taps hold the input zero point) are copied into the caller's scratch as
 * two contiguous columns; then each pair of output channels takes the dot
 * products of its two filter rows with both columns (dot_s8.h), so every
 * load of a weight or an input feeds two multiplies, four per pair of
 * loads with the DSP extension. The copy costs a few instructions per tap
 * and serves every output channel of the group. Same integers as
 * mcuq_conv2d_s8, which stays as the reference (tests compare them). */
#include <stdint.h>

#include "dot_s8.h"
#include "mcuq_internal.h"
#include "mcuq_runtime.h"

/* The taps output pixel (oy, ox) reads from the group's channels, in filter
 * order, into col. */
static void gather_column(const mcuq_conv2d_params *p, const int8_t *input, int32_t channels, int32_t oy, int32_t ox,
                          int8_t *col) {
  const int32_t y0 = oy * p->stride_h - p->pad_h;
  const int32_t x0 = ox * p->stride_w - p->pad_w;
  const int32_t in_plane = p->in_h * p->in_w;
  if (y0 >= 0 && x0 >= 0 && y0 + (p->k_h - 1) * p->dilation_h < p->in_h &&
      x0 + (p->k_w - 1) * p->dilation_w < p->in_w) {
    const int8_t *plane = input + y0 * p->in_w + x0;
    const int32_t row_step = p->dilation_h * p->in_w;
    if (p->k_w == 1 && p->k_h == 1) { /* 1x1: one tap per channel */
      for (int32_t c = 0; c < channels; ++c, plane += in_plane) *col++ = *plane;
      return;
    }
    for (int32_t c = 0; c < channels; ++c, plane += in_plane) {
      const int8_t *row = plane;
      for (int32_t ky = 0; ky < p->k_h; ++ky, row += row_step) {
        const int8_t *x = row;
        for (int32_t kx = 0; kx < p->k_w; ++kx, x += p->dilation_w) *col++ = *x;
      }
    }
    return;
  }
  const int8_t zero = (int8_t)p->in_zero_point;
  for (int32_t c = 0; c < channels; ++c) {
    const int8_t *plane = input + c * in_plane;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
      const int32_t y = y0 + ky * p->dilation_h;
      const int row_inside = y >= 0 && y < p->in_h;
      for (int32_t kx = 0; kx < p->k_w; ++kx) {
        const int32_t x = x0 + kx * p->dilation_w;
        *col++ = (row_inside && x >= 0 && x < p->in_w) ? plane[y * p->in_w + x] : zero;
      }
    }
  }
}

/* Inlined, except at -Os on cores without the DSP extension: there the
 * requantization's registers crowd the dot products' (M0 all five layers at
 * -Os 18.21 -> 17.88 instructions per MAC, M3 9.32 -> 8.52, RV32 9.93 ->
 * 9.33), where at -O2 the call costs more than it frees. */
#if MCUQ_DSP_KERNELS || !defined(__OPTIMIZE_SIZE__)
MCUQ_ALWAYS_INLINE
#else
static MCUQ_NOINLINE
#endif
int8_t requantize_channel(int32_t acc, const mcuq_requant *requant, int32_t channel) {
  return (int8_t)mcuq_requantize_fast_s32(acc, mcuq_requant_multiplier(requant, channel),
                                          mcuq_requant_shift(requant, channel), requant);
}

mcuq_status mcuq_conv2d_im2col_s8(const mcuq_conv2d_params *params, const int8_t *input, const int8_t *weights,
                                  const int32_t *bias, const mcuq_requant *requant, int8_t *scratch, int8_t *output) {
#ifndef MCUQ_NO_CHECKS
  if (scratch == 0) return MCUQ_ERROR_NULL;
  {
    const mcuq_status status = mcuq_check_conv2d(params, input, weights, bias, requant, output, INT8_MIN, INT8_MAX, 0);
    if (status != MCUQ_OK) return status;
  }
#endif
  const int32_t group_in_c = params->in_c / params->groups;
  const int32_t group_out_c = params->out_c / params->groups;
  const int32_t taps = group_in_c * params->k_h * params->k_w; /* one filter row */
  const int32_t pixels = params->out_h * params->out_w;
  const int32_t in_plane = params->in_h * params->in_w;
  int8_t *col0 = scratch, *col1 = scratch + taps;
  /* A local copy: no reload after every output store (int8_t stores may
   * alias anything). */
  const mcuq_requant requant_copy = *requant;
  const mcuq_conv2d_params params_copy = *params;
  requant = &requant_copy;
  params = &params_copy;
  for (int32_t g = 0; g < params->groups; ++g) {
    const int8_t *group_input = input + g * group_in_c * in_plane;
    const int32_t first = g * group_out_c, end = first + group_out_c;
    for (int32_t pixel = 0; pixel < pixels; pixel += 2) {
      const int two = pixel + 1 < pixels;
      gather_column(params, group_input, group_in_c, pixel / params->out_w, pixel % params->out_w, col0);
      if (two) gather_column(params, group_input, group_in_c, (pixel + 1) / params->out_w, (pixel + 1) % params->out_w, col1);
      int8_t *out = output + pixel;
      int32_t o = first;
      for (; o + 1 < end; o += 2) {
        const int8_t *w0 = weights + o * taps;
        int32_t acc[4];
        acc[0] = acc[1] = MCUQ_READ_S32(&bias[o]);
        acc[2] = acc[3] = MCUQ_READ_S32(&bias[o + 1]);
        if (two) {
          mcuq_dot_2x2_s8(w0, col0, taps, taps, acc); /* rows o, o + 1; columns col0, col1 = col0 + taps */
          out[o * pixels + 1] = requantize_channel(acc[1], requant, o);
          out[(o + 1) * pixels + 1] = requantize_channel(acc[3], requant, o + 1);
        } else {
          acc[1] = acc[2];
          mcuq_dot_2x1_s8(w0, w0 + taps, col0, taps, acc);
          acc[2] = acc[1];
        }
        out[o * pixels] = requantize_channel(acc[0], requant, o);
        out[(o + 1) * pixels] = requantize_channel(acc[2], requant, o + 1);
      }
      if (o < end) { /* an odd channel count */
        const int8_t *w = weights + o * taps;
        const int32_t b = MCUQ_READ_S32(&bias[o]);
        out[o * pixels] = requantize_channel(mcuq_dot_1x1_s8(w, col0, taps, b), requant, o);
        if (two) out[o * pixels + 1] = requantize_channel(mcuq_dot_1x1_s8(w, col1, taps, b), requant, o);
      }
    }
  }
  return MCUQ_OK;
}
