/* The pooling kernels for one activation type. pool.c includes this file
 * once per type (so no include guard), after defining:
 *
 *   MCUQ_ACT                           activation type  int8_t | int16_t
 *   MCUQ_ACT_MIN/MAX                   range of MCUQ_ACT
 *   MCUQ_MAX_POOL2D, MCUQ_AVG_POOL2D   function names
 *
 * and undefines them at the end.
 */

mcuq_status MCUQ_MAX_POOL2D(const mcuq_pool2d_params *params, const MCUQ_ACT *input, MCUQ_ACT *output) {
#ifndef MCUQ_NO_CHECKS
  const mcuq_status status = check_pool2d(params, input, output, MCUQ_ACT_MIN, MCUQ_ACT_MAX);
  if (status != MCUQ_OK) return status;
#endif
  for (int32_t c = 0; c < params->channels; ++c) {
    const MCUQ_ACT *plane = input + c * params->in_h * params->in_w;
    MCUQ_ACT *out = output + c * params->out_h * params->out_w;
    for (int32_t oy = 0; oy < params->out_h; ++oy) {
      for (int32_t ox = 0; ox < params->out_w; ++ox) {
        /* Padded taps are ignored; the window is never empty (checked). */
        const pool_window w = clip_window(params, oy, ox);
        int32_t best = MCUQ_ACT_MIN;
        for (int32_t y = w.y_begin; y < w.y_end; ++y) {
          for (int32_t x = w.x_begin; x < w.x_end; ++x) {
            const int32_t value = plane[y * params->in_w + x];
            if (value > best) best = value;
          }
        }
        out[oy * params->out_w + ox] = (MCUQ_ACT)mcuq_clamp_s32(best, params->act_min, params->act_max);
      }
    }
  }
  return MCUQ_OK;
}

mcuq_status MCUQ_AVG_POOL2D(const mcuq_pool2d_params *params, const MCUQ_ACT *input, MCUQ_ACT *output) {
#ifndef MCUQ_NO_CHECKS
  const mcuq_status status = check_pool2d(params, input, output, MCUQ_ACT_MIN, MCUQ_ACT_MAX);
  if (status != MCUQ_OK) return status;
#endif
  for (int32_t c = 0; c < params->channels; ++c) {
    const MCUQ_ACT *plane = input + c * params->in_h * params->in_w;
    MCUQ_ACT *out = output + c * params->out_h * params->out_w;
    for (int32_t oy = 0; oy < params->out_h; ++oy) {
      for (int32_t ox = 0; ox < params->out_w; ++ox) {
        /* Sum in real terms (x - zero point): padded taps add 0, and count
         * in the divisor only when count_include_pad. A ceil-mode window
         * may reach past the padding; those taps never count (PyTorch). */
        const pool_window w = clip_window(params, oy, ox);
        const int32_t y0 = oy * params->stride_h - params->pad_h, x0 = ox * params->stride_w - params->pad_w;
        const int32_t y1 = y0 + params->k_h, x1 = x0 + params->k_w;
        const int32_t divisor =
            params->count_include_pad
                ? ((y1 < params->in_h + params->pad_h ? y1 : params->in_h + params->pad_h) - y0) *
                      ((x1 < params->in_w + params->pad_w ? x1 : params->in_w + params->pad_w) - x0)
                : (w.y_end - w.y_begin) * (w.x_end - w.x_begin);
        int32_t sum = 0;
        for (int32_t y = w.y_begin; y < w.y_end; ++y) {
          for (int32_t x = w.x_begin; x < w.x_end; ++x) sum += plane[y * params->in_w + x] - params->zero_point;
        }
        out[oy * params->out_w + ox] = (MCUQ_ACT)mcuq_clamp_s32(params->zero_point + mcuq_rounded_average(sum, divisor),
                                                                params->act_min, params->act_max);
      }
    }
  }
  return MCUQ_OK;
}

#undef MCUQ_ACT
#undef MCUQ_ACT_MIN
#undef MCUQ_ACT_MAX
#undef MCUQ_MAX_POOL2D
#undef MCUQ_AVG_POOL2D
