/* mcuq runtime: layers with codebook weights (non-uniform, eq. 3). A weight
 * is a bits-wide index into its row of int8 levels (mcuq_runtime.h,
 * mcuq_codebook_weights); the kernels decode indices into int8 weights in
 * RAM and run the int8 loops on them, so the sums are the int8 kernels'
 * integers. Convolutions decode the whole layer once per call (each weight
 * then serves every output pixel); a fully connected layer uses each weight
 * once, so it decodes two rows a chunk at a time into a stack buffer. */
#include <stdint.h>

/* The decoded weights are in RAM, also on the AVR (where MCUQ_READ_S8 reads
 * flash). */
#define MCUQ_DOT_WEIGHT(p) (*(p))
#include "dot_s8.h"
#include "mcuq_internal.h"
#include "mcuq_runtime.h"

#ifndef MCUQ_NO_CHECKS
static mcuq_status check_codebook(const mcuq_codebook_weights *w) {
  if (w == 0 || w->indices == 0 || w->codebook == 0) return MCUQ_ERROR_NULL;
  if (w->bits < 1 || w->bits > 4 || w->row_weights <= 0) return MCUQ_ERROR_ARGUMENT;
  return MCUQ_OK;
}
#endif

/* Weights [first, first + count) of one codebook row (levels in `row`). A
 * bit buffer refilled a byte at a time reads each index byte once and never
 * past the last field; 4-bit fields take a byte per two weights. */
static void decode_run(const uint8_t *indices, int32_t bits, const int8_t *row, int32_t first, int32_t count,
                       int8_t *out) {
  const int32_t bit = first * bits;
  const uint8_t *p = indices + (bit >> 3);
  if (bits == 4) {
    if (bit & 4) { /* starts on a high nibble */
      *out++ = MCUQ_READ_S8(&row[MCUQ_READ_U8(p++) >> 4]);
      --count;
    }
    for (; count >= 2; count -= 2, out += 2) {
      const uint32_t v = MCUQ_READ_U8(p++);
      out[0] = MCUQ_READ_S8(&row[v & 15u]);
      out[1] = MCUQ_READ_S8(&row[v >> 4]);
    }
    if (count > 0) *out = MCUQ_READ_S8(&row[MCUQ_READ_U8(p) & 15u]);
    return;
  }
  const uint32_t mask = (1u << bits) - 1u;
  uint32_t buffer = 0;
  int32_t have = -(bit & 7); /* bits of the first byte before the first field */
  for (; count > 0; --count) {
    while (have < bits) { /* at most twice for the first field, else once */
      const uint32_t byte = MCUQ_READ_U8(p++);
      buffer = have < 0 ? byte >> -have : buffer | byte << have;
      have += 8;
    }
    *out++ = MCUQ_READ_S8(&row[buffer & mask]);
    buffer >>= bits;
    have -= bits;
  }
}

mcuq_status mcuq_decode_codebook(const mcuq_codebook_weights *weights, int32_t first, int32_t count, int8_t *out) {
#ifndef MCUQ_NO_CHECKS
  const mcuq_status status = check_codebook(weights);
  if (status != MCUQ_OK) return status;
  if (out == 0) return MCUQ_ERROR_NULL;
  if (first < 0 || count < 0) return MCUQ_ERROR_SHAPE;
#endif
  const int32_t levels = (int32_t)1 << weights->bits;
  while (count > 0) {
    const int32_t row = first / weights->row_weights;
    const int32_t end = (row + 1) * weights->row_weights;
    const int32_t run = end - first < count ? end - first : count;
    decode_run(weights->indices, weights->bits, weights->codebook + row * levels, first, run, out);
    first += run;
    count -= run;
    out += run;
  }
  return MCUQ_OK;
}

mcuq_status mcuq_conv2d_s8_cb(const mcuq_conv2d_params *params, const int8_t *input,
                              const mcuq_codebook_weights *weights, const int32_t *bias, const mcuq_requant *requant,
                              int8_t *scratch, int8_t *output) {
#ifndef MCUQ_NO_CHECKS
  mcuq_status status = check_codebook(weights);
  if (status == MCUQ_OK && scratch == 0) status = MCUQ_ERROR_NULL;
  if (status == MCUQ_OK) {
    status = mcuq_check_conv2d(params, input, (const int8_t *)weights->indices, bias, requant, output, INT8_MIN,
                               INT8_MAX, 0);
  }
  if (status != MCUQ_OK) return status;
#endif
  const int32_t rows = params->out_c * (params->in_c / params->groups) * params->k_h * params->k_w;
  mcuq_decode_codebook(weights, 0, rows, scratch);
#if defined(__AVR__)
  /* The int8 kernels read their weights from flash here. */
  return mcuq_conv2d_s8_ram(params, input, scratch, bias, requant, output);
#else
  return mcuq_conv2d_im2col_s8(params, input, scratch, bias, requant, scratch + rows, output);
#endif
}

mcuq_status mcuq_depthwise_conv2d_s8_cb(const mcuq_conv2d_params *params, const int8_t *input,
                                        const mcuq_codebook_weights *weights, const int32_t *bias,
                                        const mcuq_requant *requant, int8_t *scratch, int8_t *output) {
#ifndef MCUQ_NO_CHECKS
  mcuq_status status = check_codebook(weights);
  if (status == MCUQ_OK && scratch == 0) status = MCUQ_ERROR_NULL;
  if (status == MCUQ_OK) {
    status = mcuq_check_conv2d(params, input, (const int8_t *)weights->indices, bias, requant, output, INT8_MIN,
                               INT8_MAX, 0);
  }
  if (status == MCUQ_OK && (params->groups != params->in_c || params->out_c % params->in_c != 0)) {
    status = MCUQ_ERROR_SHAPE;
  }
  if (status != MCUQ_OK) return status;
#endif
  mcuq_decode_codebook(weights, 0, params->out_c * params->k_h * params->k_w, scratch);
#if defined(__AVR__)
  return mcuq_depthwise_conv2d_s8_ram(params, input, scratch, bias, requant, output);
#else
  return mcuq_depthwise_conv2d_s8(params, input, scratch, bias, requant, output);
#endif
}

/* Weights decoded per pass, per row: a multiple of 4 (the DSP loops' step). */
#define MCUQ_CB_CHUNK 64

mcuq_status mcuq_fully_connected_s8_cb(int32_t in_features, int32_t out_features, const int8_t *input,
                                       const mcuq_codebook_weights *weights, const int32_t *bias,
                                       const mcuq_requant *requant, int8_t *output) {
#ifndef MCUQ_NO_CHECKS
  mcuq_status status = check_codebook(weights);
  if (status == MCUQ_OK && (input == 0 || bias == 0 || requant == 0 || output == 0)) status = MCUQ_ERROR_NULL;
  if (status == MCUQ_OK && (in_features <= 0 || out_features <= 0)) status = MCUQ_ERROR_SHAPE;
  if (status == MCUQ_OK) status = mcuq_check_requant(requant, out_features, INT8_MIN, INT8_MAX, 0);
  if (status != MCUQ_OK) return status;
#endif
  const mcuq_requant requant_copy = *requant; /* not reloaded after each int8_t store */
  const mcuq_codebook_weights w = *weights;
  int8_t rows[2][MCUQ_CB_CHUNK];
  requant = &requant_copy;
  for (int32_t o = 0; o < out_features; o += 2) {
    const int two = o + 1 < out_features;
    int32_t acc[2];
    acc[0] = MCUQ_READ_S32(&bias[o]);
    acc[1] = two ? MCUQ_READ_S32(&bias[o + 1]) : 0;
    for (int32_t i = 0; i < in_features; i += MCUQ_CB_CHUNK) {
      const int32_t n = in_features - i < MCUQ_CB_CHUNK ? in_features - i : MCUQ_CB_CHUNK;
      mcuq_decode_codebook(&w, o * in_features + i, n, rows[0]);
      if (two) {
        mcuq_decode_codebook(&w, (o + 1) * in_features + i, n, rows[1]);
        mcuq_dot_2x1_s8(rows[0], rows[1], input + i, n, acc);
      } else {
        acc[0] = mcuq_dot_1x1_s8(rows[0], input + i, n, acc[0]);
      }
    }
    for (int r = 0; r <= two; ++r) {
      output[o + r] = (int8_t)mcuq_requantize_fast_s32(acc[r], mcuq_requant_multiplier(requant, o + r),
                                                       mcuq_requant_shift(requant, o + r), requant);
    }
  }
  return MCUQ_OK;
}
