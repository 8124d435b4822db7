/* The convolution kernels for one activation type. conv2d.c includes this
 * file once per type (so no include guard), after defining:
 *
 *   MCUQ_ACT               activation type            int8_t  | int16_t
 *   MCUQ_ACC               accumulator and bias type  int32_t | int64_t
 *   MCUQ_ACT_MIN/MAX       range of MCUQ_ACT
 *   MCUQ_WIDE              1 for 64-bit accumulators (limits the shift)
 *   MCUQ_READ_BIAS         MCUQ_READ_S32              | MCUQ_READ_S64
 *   MCUQ_WEIGHT(w, i)      weight i of the layer: MCUQ_READ_S8(&w[i]), or
 *                          MCUQ_READ_S4(w, i) for packed 4-bit weights
 *   MCUQ_PACKED_WEIGHTS    0 (a byte per weight) or 1 (4-bit, two per byte)
 *   MCUQ_REQUANTIZE        mcuq_requantize_s32        | mcuq_requantize_s64
 *   MCUQ_REQUANTIZE_FAST(acc, multiplier, shift)   the same, inlined (hot loops)
 *   MCUQ_WINDOW_SUM, MCUQ_CONV2D, MCUQ_DEPTHWISE_CONV2D   function names
 *   MCUQ_DEPTHWISE_3X3_PAIRS(r0, in_w, count, w, bias, multiplier, shift, out)
 *                          interior 3x3 outputs of a row, stride 1, two at a
 *                          time; returns how many it wrote (0: none, the
 *                          loop here does them)
 *
 * and undefines them at the end.
 */

#if MCUQ_PACKED_WEIGHTS
#define MCUQ_NEXT_FILTER_ROW(n) (filter += (n))
#else
#define MCUQ_NEXT_FILTER_ROW(n) (weights += (n))
#endif

/* sum(w * x) over one input channel's k_h x k_w window for output position
 * (oy, ox). Taps in the padding read the input zero point (the quantized
 * real 0), since the bias has the zero point folded in. */
static MCUQ_ACC MCUQ_WINDOW_SUM(const mcuq_conv2d_params *p, const MCUQ_ACT *plane, const int8_t *weights,
                                int32_t filter, int32_t oy,
                                int32_t ox) {
  const int32_t y0 = oy * p->stride_h - p->pad_h;
  const int32_t x0 = ox * p->stride_w - p->pad_w;
  MCUQ_ACC sum = 0;
#if !MCUQ_PACKED_WEIGHTS
  weights += filter; /* byte weights: a pointer walks this filter (index 0 on) */
  filter = 0;
#endif
  if (y0 >= 0 && x0 >= 0 && y0 + (p->k_h - 1) * p->dilation_h < p->in_h &&
      x0 + (p->k_w - 1) * p->dilation_w < p->in_w) {
    /* The whole window is inside the input (most positions): no per-tap
     * bounds checks, pointers walk rows and taps. */
    const MCUQ_ACT *row = plane + y0 * p->in_w + x0;
    const int32_t row_step = p->dilation_h * p->in_w;
    for (int32_t ky = 0; ky < p->k_h; ++ky, row += row_step, MCUQ_NEXT_FILTER_ROW(p->k_w)) {
      const MCUQ_ACT *x = row;
      for (int32_t kx = 0; kx < p->k_w; ++kx, x += p->dilation_w) {
        sum += (int32_t)MCUQ_WEIGHT(weights, filter + kx) * *x;
      }
    }
    return sum;
  }
  for (int32_t ky = 0; ky < p->k_h; ++ky) {
    const int32_t y = y0 + ky * p->dilation_h;
    const int row_inside = y >= 0 && y < p->in_h;
    for (int32_t kx = 0; kx < p->k_w; ++kx) {
      const int32_t x = x0 + kx * p->dilation_w;
      const int32_t value = (row_inside && x >= 0 && x < p->in_w) ? plane[y * p->in_w + x] : p->in_zero_point;
      sum += (int32_t)MCUQ_WEIGHT(weights, filter + ky * p->k_w + kx) * value; /* |product| < 2^22 */
    }
  }
  return sum;
}

mcuq_status MCUQ_CONV2D(const mcuq_conv2d_params *params, const MCUQ_ACT *input, const int8_t *weights,
                        const MCUQ_ACC *bias, const mcuq_requant *requant, MCUQ_ACT *output) {
#ifndef MCUQ_NO_CHECKS
  const mcuq_status status =
      mcuq_check_conv2d(params, input, weights, bias, requant, output, MCUQ_ACT_MIN, MCUQ_ACT_MAX, MCUQ_WIDE);
  if (status != MCUQ_OK) return status;
#endif
  const int32_t in_plane = params->in_h * params->in_w;
  const int32_t out_plane = params->out_h * params->out_w;
  const int32_t filter_plane = params->k_h * params->k_w;
  const int32_t group_in_c = params->in_c / params->groups;
  const int32_t group_out_c = params->out_c / params->groups;
  for (int32_t o = 0; o < params->out_c; ++o) {
    /* Output channel o sees only the input channels of its group; its
     * filter is weights[o][group_in_c][k_h][k_w]. */
    const MCUQ_ACT *group_input = input + (o / group_out_c) * group_in_c * in_plane;
    const int32_t filter = o * group_in_c * filter_plane; /* index of its first weight */
    const MCUQ_ACC b = MCUQ_READ_BIAS(&bias[o]);
    const int32_t multiplier = mcuq_requant_multiplier(requant, o);
    const int shift = mcuq_requant_shift(requant, o);
    MCUQ_ACT *out = output + o * out_plane;
    for (int32_t oy = 0; oy < params->out_h; ++oy) {
      for (int32_t ox = 0; ox < params->out_w; ++ox) {
        MCUQ_ACC acc = b;
        for (int32_t c = 0; c < group_in_c; ++c) {
          acc += MCUQ_WINDOW_SUM(params, group_input + c * in_plane, weights, filter + c * filter_plane, oy, ox);
        }
        /* The clamp range fits MCUQ_ACT (checked), so the cast is exact. */
        out[oy * params->out_w + ox] = (MCUQ_ACT)MCUQ_REQUANTIZE(
            acc, multiplier, shift, requant->rounding, requant->zero_point, requant->act_min, requant->act_max);
      }
    }
  }
  return MCUQ_OK;
}

mcuq_status MCUQ_DEPTHWISE_CONV2D(const mcuq_conv2d_params *params, const MCUQ_ACT *input, const int8_t *weights,
                                  const MCUQ_ACC *bias, const mcuq_requant *requant, MCUQ_ACT *output) {
#ifndef MCUQ_NO_CHECKS
  mcuq_status status =
      mcuq_check_conv2d(params, input, weights, bias, requant, output, MCUQ_ACT_MIN, MCUQ_ACT_MAX, MCUQ_WIDE);
  if (status == MCUQ_OK) status = check_depthwise(params);
  if (status != MCUQ_OK) return status;
#endif
  const int32_t in_plane = params->in_h * params->in_w;
  const int32_t out_plane = params->out_h * params->out_w;
  const int32_t filter_plane = params->k_h * params->k_w;
  const int32_t depth_multiplier = params->out_c / params->in_c;
  /* Local copies: the compiler need not reload them after every output
   * store (a store through an int8_t pointer may alias anything else). */
  const mcuq_requant requant_copy = *requant;
  const mcuq_conv2d_params params_copy = *params;
  const mcuq_requant *const local_requant = &requant_copy;
  params = &params_copy;
  /* Output positions whose whole window lies inside the input. */
  int32_t y_lo, y_hi, x_lo, x_hi;
  conv_interior(params->in_h, params->out_h, params->k_h, params->stride_h, params->pad_h, params->dilation_h, &y_lo,
                &y_hi);
  conv_interior(params->in_w, params->out_w, params->k_w, params->stride_w, params->pad_w, params->dilation_w, &x_lo,
                &x_hi);
  const int fast_3x3 = params->k_h == 3 && params->k_w == 3 && params->dilation_h == 1 && params->dilation_w == 1;
  const int32_t in_w = params->in_w, stride_w = params->stride_w;
  for (int32_t o = 0; o < params->out_c; ++o) {
    /* One group per input channel: output channel o filters input channel
     * o / depth_multiplier with weights[o][1][k_h][k_w]. */
    const MCUQ_ACT *plane = input + (o / depth_multiplier) * in_plane;
    const int32_t filter = o * filter_plane;
    const MCUQ_ACC b = MCUQ_READ_BIAS(&bias[o]);
    const int32_t multiplier = mcuq_requant_multiplier(requant, o);
    const int shift = mcuq_requant_shift(requant, o);
    /* 3x3: the nine weights stay in registers for the channel. */
    int32_t w[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    int32_t zero_weight_sum = 0; /* z * sum(w): what the border taps outside the input add */
    if (fast_3x3) {
      for (int32_t i = 0; i < 9; ++i) {
        w[i] = MCUQ_WEIGHT(weights, filter + i);
        zero_weight_sum += w[i] * params->in_zero_point;
      }
    }
    MCUQ_ACT *out = output + o * out_plane;
    for (int32_t oy = 0; oy < params->out_h; ++oy) {
      MCUQ_ACT *out_row = out + oy * params->out_w;
      const int row_inside = oy >= y_lo && oy < y_hi;
      const int32_t y0 = oy * params->stride_h - params->pad_h;
      for (int32_t ox = 0; ox < params->out_w; ++ox) {
        MCUQ_ACC acc;
        if (!fast_3x3) {
          acc = b + MCUQ_WINDOW_SUM(params, plane, weights, filter, oy, ox);
        } else if (row_inside && ox == x_lo && x_lo < x_hi) {
          /* The row's interior: every tap inside, pointers walk the rows. */
          const MCUQ_ACT *r0 = plane + y0 * in_w + (x_lo * stride_w - params->pad_w);
          if (stride_w == 1) { /* pairs of outputs through the DSP extension, where there is one */
            const int32_t done = MCUQ_DEPTHWISE_3X3_PAIRS(r0, in_w, x_hi - x_lo, w, b, multiplier, shift, out_row + ox);
            ox += done;
            r0 += done;
          }
          for (; ox < x_hi; ++ox, r0 += stride_w) {
            const MCUQ_ACT *r1 = r0 + in_w, *r2 = r1 + in_w;
            /* Nine products of |w x| < 2^22: the sum fits int32. */
            const int32_t sum = w[0] * r0[0] + w[1] * r0[1] + w[2] * r0[2] + w[3] * r1[0] + w[4] * r1[1] +
                                w[5] * r1[2] + w[6] * r2[0] + w[7] * r2[1] + w[8] * r2[2];
            out_row[ox] = (MCUQ_ACT)MCUQ_REQUANTIZE_FAST(b + sum, multiplier, shift);
          }
          --ox;
          continue;
        } else {
          /* A border position: taps outside the input read the zero point z,
           * so the sum is z * sum(w) plus w * (x - z) over the taps inside,
           * written out tap by tap (constant indices: w stays in registers). */
          const int32_t x0 = ox * stride_w - params->pad_w, z = params->in_zero_point;
          const int col0 = x0 >= 0 && x0 < in_w, col1 = x0 + 1 >= 0 && x0 + 1 < in_w;
          const int col2 = x0 + 2 >= 0 && x0 + 2 < in_w;
          int32_t sum = zero_weight_sum;
          for (int32_t ky = 0; ky < 3; ++ky) {
            if (y0 + ky < 0 || y0 + ky >= params->in_h) continue;
            const MCUQ_ACT *row = plane + (y0 + ky) * in_w;
            if (col0) sum += w[3 * ky] * ((int32_t)row[x0] - z);
            if (col1) sum += w[3 * ky + 1] * ((int32_t)row[x0 + 1] - z);
            if (col2) sum += w[3 * ky + 2] * ((int32_t)row[x0 + 2] - z);
          }
          acc = b + sum;
        }
        out_row[ox] = (MCUQ_ACT)MCUQ_REQUANTIZE_FAST(acc, multiplier, shift);
      }
    }
  }
  return MCUQ_OK;
}

#undef MCUQ_ACT
#undef MCUQ_ACC
#undef MCUQ_ACT_MIN
#undef MCUQ_ACT_MAX
#undef MCUQ_WIDE
#undef MCUQ_READ_BIAS
#undef MCUQ_WEIGHT
#undef MCUQ_PACKED_WEIGHTS
#undef MCUQ_NEXT_FILTER_ROW
#undef MCUQ_REQUANTIZE
#undef MCUQ_REQUANTIZE_FAST
#undef MCUQ_WINDOW_SUM
#undef MCUQ_DEPTHWISE_3X3_PAIRS
#undef MCUQ_CONV2D
#undef MCUQ_DEPTHWISE_CONV2D
