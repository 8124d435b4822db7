/* Naive reference kernels for the runtime's tests and fuzzers: the
 * documented formulas of mcuq_runtime.h, written with other loop orders and
 * no blocking, on int32 copies of the activations, so they share nothing
 * with the kernels but the scalar arithmetic of mcuq_arith.h (tested on its
 * own against TFLite's rules). Header-only, static; buffers sized by
 * MCUQ_REFERENCE_MAX_ELEMS. */
#ifndef MCUQ_REFERENCE_KERNELS_H
#define MCUQ_REFERENCE_KERNELS_H

#include <stdint.h>

#include "mcuq_arith.h"
#include "mcuq_runtime.h"

#ifndef MCUQ_REFERENCE_MAX_ELEMS
#define MCUQ_REFERENCE_MAX_ELEMS 4096
#endif

/* Codebook indices as mcuq_codebook_weights stores them: index i `bits`
 * wide at bit i * bits, least significant bit first. packed needs
 * (n * bits + 7) / 8 + 1 bytes (a last field may spill into the extra one,
 * which stays 0). */
static inline void reference_pack_indices(const uint8_t *index, int32_t n, int32_t bits, uint8_t *packed) {
  int32_t i;
  for (i = 0; i < (n * bits + 7) / 8 + 1; ++i) packed[i] = 0;
  for (i = 0; i < n; ++i) {
    const uint32_t field = (uint32_t)index[i] << ((i * bits) % 8);
    packed[i * bits / 8] = (uint8_t)(packed[i * bits / 8] | (field & 0xFFu));
    packed[i * bits / 8 + 1] = (uint8_t)(packed[i * bits / 8 + 1] | (field >> 8));
  }
}

/* Direct formula with another loop order: pad the input explicitly, then
 * for each (output channel, input channel of its group, tap) add the tap's
 * contribution to every output position. wide: 16-bit activations. */
static inline void reference_conv(const mcuq_conv2d_params *p, const int32_t *input, const int8_t *weights,
                           const int64_t *bias, const mcuq_requant *r, int wide, int32_t *output) {
  static int32_t padded[MCUQ_REFERENCE_MAX_ELEMS];
  static int64_t acc[MCUQ_REFERENCE_MAX_ELEMS];
  const int32_t ph = p->in_h + 2 * p->pad_h, pw = p->in_w + 2 * p->pad_w;
  const int32_t cin = p->in_c / p->groups, cout = p->out_c / p->groups;
  int32_t c, y, x, o, i, ky, kx, oy, ox;
  for (c = 0; c < p->in_c; ++c)
    for (y = 0; y < ph; ++y)
      for (x = 0; x < pw; ++x) {
        const int32_t iy = y - p->pad_h, ix = x - p->pad_w;
        const int inside = iy >= 0 && iy < p->in_h && ix >= 0 && ix < p->in_w;
        padded[(c * ph + y) * pw + x] = inside ? input[(c * p->in_h + iy) * p->in_w + ix] : p->in_zero_point;
      }
  for (o = 0; o < p->out_c; ++o)
    for (i = 0; i < p->out_h * p->out_w; ++i) acc[o * p->out_h * p->out_w + i] = bias[o];
  for (o = 0; o < p->out_c; ++o)
    for (i = 0; i < cin; ++i) {
      const int32_t c_in = (o / cout) * cin + i;
      for (ky = 0; ky < p->k_h; ++ky)
        for (kx = 0; kx < p->k_w; ++kx) {
          const int32_t w = weights[((o * cin + i) * p->k_h + ky) * p->k_w + kx];
          for (oy = 0; oy < p->out_h; ++oy)
            for (ox = 0; ox < p->out_w; ++ox) {
              const int32_t y_ = oy * p->stride_h + ky * p->dilation_h;
              const int32_t x_ = ox * p->stride_w + kx * p->dilation_w;
              acc[(o * p->out_h + oy) * p->out_w + ox] += (int64_t)w * padded[(c_in * ph + y_) * pw + x_];
            }
        }
    }
  for (o = 0; o < p->out_c; ++o) {
    const int32_t t = r->per_channel ? o : 0;
    for (i = 0; i < p->out_h * p->out_w; ++i) {
      const int64_t a = acc[o * p->out_h * p->out_w + i];
      output[o * p->out_h * p->out_w + i] =
          wide ? mcuq_requantize_s64(a, r->multiplier[t], r->shift[t], r->rounding, r->zero_point, r->act_min,
                                     r->act_max)
               : mcuq_requantize_s32((int32_t)a, r->multiplier[t], r->shift[t], r->rounding, r->zero_point, r->act_min,
                                     r->act_max);
    }
  }
}

/* y[o] = requant(bias[o] + sum_i w[o][i] * x[i]), columns outermost. */
static inline void reference_fully_connected(int32_t in_features, int32_t out_features, const int32_t *input,
                                      const int8_t *weights, const int64_t *bias, const mcuq_requant *r, int wide,
                                      int32_t *output) {
  static int64_t acc[MCUQ_REFERENCE_MAX_ELEMS];
  int32_t i, o;
  for (o = 0; o < out_features; ++o) acc[o] = bias[o];
  for (i = 0; i < in_features; ++i)
    for (o = 0; o < out_features; ++o) acc[o] += (int64_t)weights[o * in_features + i] * input[i];
  for (o = 0; o < out_features; ++o) {
    const int32_t t = r->per_channel ? o : 0;
    output[o] = wide ? mcuq_requantize_s64(acc[o], r->multiplier[t], r->shift[t], r->rounding, r->zero_point,
                                           r->act_min, r->act_max)
                     : mcuq_requantize_s32((int32_t)acc[o], r->multiplier[t], r->shift[t], r->rounding,
                                           r->zero_point, r->act_min, r->act_max);
  }
}

/* Pooling as PyTorch defines it (floor or ceil mode, as out_h and out_w
 * say): every tap of the window is visited; max ignores padded taps,
 * average divides by the taps inside the padded input (count_include_pad)
 * or by the valid taps. */
static inline void reference_pool(const mcuq_pool2d_params *p, int average, const int32_t *input, int32_t *output) {
  int32_t c, oy, ox, ky, kx;
  for (c = 0; c < p->channels; ++c)
    for (oy = 0; oy < p->out_h; ++oy)
      for (ox = 0; ox < p->out_w; ++ox) {
        int32_t best = INT32_MIN, sum = 0, valid = 0, padded = 0, value;
        for (ky = 0; ky < p->k_h; ++ky)
          for (kx = 0; kx < p->k_w; ++kx) {
            const int32_t y = oy * p->stride_h - p->pad_h + ky, x = ox * p->stride_w - p->pad_w + kx;
            padded += y < p->in_h + p->pad_h && x < p->in_w + p->pad_w;
            if (y < 0 || y >= p->in_h || x < 0 || x >= p->in_w) continue;
            value = input[(c * p->in_h + y) * p->in_w + x];
            best = value > best ? value : best;
            sum += value - p->zero_point;
            ++valid;
          }
        value = average ? p->zero_point + mcuq_rounded_average(sum, p->count_include_pad ? padded : valid) : best;
        output[(c * p->out_h + oy) * p->out_w + ox] = mcuq_clamp_s32(value, p->act_min, p->act_max);
      }
}

/* The int16 table: 513 samples 2^shift levels apart from `start`, flat
 * outside them, linear in between (rounded half up), in 64-bit arithmetic. */
static inline int32_t reference_lut_s16(const int16_t *table, int32_t start, int32_t shift, int32_t x) {
  const int64_t step = (int64_t)1 << shift;
  int64_t offset = (int64_t)x - start, index, fraction;
  if (offset < 0) offset = 0;
  if (offset > 512 * step) offset = 512 * step;
  index = offset / step;
  fraction = offset % step;
  if (index == 512) return table[512];
  {
    const int64_t base = table[index], next = table[index + 1];
    const int64_t scaled = (next - base) * fraction + step / 2;
    /* floor division: the kernel's arithmetic shift */
    return (int32_t)(base + (scaled >= 0 ? scaled / step : -((-scaled + step - 1) / step)));
  }
}

/* Residual add or subtract (subtract: a' - b'), TFLite's scheme as the
 * header writes it: each input's offset value shifted left by left_shift
 * (saturated), scaled to the common scale, the two combined in 64 bits and
 * saturated to int32, then requantized to the output. */
static inline void reference_add(const mcuq_add_params *p, int subtract, const int32_t *a, const int32_t *b,
                                 int32_t *output) {
  int32_t i;
  for (i = p->size - 1; i >= 0; --i) {
    const int32_t a_ = mcuq_scale_s32(mcuq_saturating_left_shift(a[i] - p->a_zero_point, p->left_shift),
                                      p->a_multiplier, p->a_shift, p->rounding);
    const int32_t b_ = mcuq_scale_s32(mcuq_saturating_left_shift(b[i] - p->b_zero_point, p->left_shift),
                                      p->b_multiplier, p->b_shift, p->rounding);
    const int64_t combined = subtract ? (int64_t)a_ - (int64_t)b_ : (int64_t)a_ + (int64_t)b_;
    output[i] = mcuq_requantize_s32(mcuq_saturate_s64_to_s32(combined), p->out_multiplier, p->out_shift,
                                    p->rounding, p->out_zero_point, p->act_min, p->act_max);
  }
}

/* Elementwise product with b broadcast by its strides: flat output index e
 * is (o, i) = (e / inner, e % inner) and reads b[o * b_outer_stride + i *
 * b_inner_stride]; the product of the offset values in int64, requantized
 * by the int32 rule (8-bit, where it fits int32) or the int64 rule (wide). */
static inline void reference_mul(const mcuq_mul_params *p, const int32_t *a, const int32_t *b, int wide,
                                 int32_t *output) {
  const int32_t n = p->outer * p->inner;
  int32_t e;
  for (e = 0; e < n; ++e) {
    const int32_t o = e / p->inner, i = e % p->inner;
    const int64_t b_value = b[o * p->b_outer_stride + i * p->b_inner_stride];
    const int64_t product = ((int64_t)a[e] - p->a_zero_point) * (b_value - p->b_zero_point);
    output[e] = wide ? mcuq_requantize_s64(product, p->multiplier, p->shift, p->rounding, p->out_zero_point,
                                           p->act_min, p->act_max)
                     : mcuq_requantize_s32((int32_t)product, p->multiplier, p->shift, p->rounding,
                                           p->out_zero_point, p->act_min, p->act_max);
  }
}

/* Constant padding: the whole output filled with the value first, then
 * every input element copied to its place, shifted by (top, left). */
static inline void reference_pad2d(const mcuq_pad2d_params *p, const int32_t *input, int32_t *output) {
  const int32_t out_h = p->in_h + p->top + p->bottom, out_w = p->in_w + p->left + p->right;
  int32_t e, c, y, x;
  for (e = 0; e < p->channels * out_h * out_w; ++e) output[e] = p->value;
  for (c = 0; c < p->channels; ++c)
    for (x = 0; x < p->in_w; ++x)
      for (y = 0; y < p->in_h; ++y)
        output[(c * out_h + y + p->top) * out_w + x + p->left] = input[(c * p->in_h + y) * p->in_w + x];
}

/* Nearest upsampling: each output element reads its source by division. */
static inline void reference_upsample_nearest(const mcuq_upsample_params *p, const int32_t *input,
                                              int32_t *output) {
  const int32_t out_h = p->in_h * p->factor_h, out_w = p->in_w * p->factor_w;
  int32_t e;
  for (e = 0; e < p->channels * out_h * out_w; ++e) {
    const int32_t c = e / (out_h * out_w), y = e / out_w % out_h, x = e % out_w;
    output[e] = input[(c * p->in_h + y / p->factor_h) * p->in_w + x / p->factor_w];
  }
}

/* Softmax rows as the header defines them: d = max(row) - x, e = the table
 * entry at d held to [0, 2^15], p = e 2^16 / sum rounded to nearest (ties
 * up: a remainder of at least half the divisor rounds up), requantized.
 * Returns MCUQ_ERROR_ARGUMENT for a row whose sum is not positive (rows
 * before it are written), else MCUQ_OK. */
static inline mcuq_status reference_softmax(const mcuq_softmax_params *p, const int32_t *exp_table,
                                            const int32_t *input, int32_t *output) {
  int32_t row, k;
  for (row = 0; row < p->rows; ++row) {
    const int32_t *x = input + row * p->depth;
    int32_t max = x[0];
    int64_t sum = 0;
    for (k = 1; k < p->depth; ++k)
      if (x[k] > max) max = x[k];
    for (k = p->depth - 1; k >= 0; --k) {
      const int32_t t = exp_table[max - x[k]];
      sum += t < 0 ? 0 : t > 32768 ? 32768 : t;
    }
    if (sum <= 0) return MCUQ_ERROR_ARGUMENT;
    for (k = 0; k < p->depth; ++k) {
      const int32_t t = exp_table[max - x[k]];
      const int64_t numerator = (int64_t)(t < 0 ? 0 : t > 32768 ? 32768 : t) * 65536;
      const int64_t quotient = numerator / sum, remainder = numerator % sum;
      const int32_t probability = (int32_t)(quotient + (2 * remainder >= sum ? 1 : 0));
      output[row * p->depth + k] = mcuq_requantize_s32(probability, p->multiplier, p->shift, p->rounding,
                                                       p->out_zero_point, p->act_min, p->act_max);
    }
  }
  return MCUQ_OK;
}

#endif /* MCUQ_REFERENCE_KERNELS_H */
