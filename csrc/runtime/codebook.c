/* mcuq runtime: layers with codebook weights (non-uniform, eq. 3). A weight
 * is a bits-wide index into its row of int8 levels (mcuq_runtime.h,
 * mcuq_codebook_weights); the kernels decode indices into int8 weights in
 * RAM and run the int8 loops on them, so the sums are the int8 kernels'
 * integers. Convolutions decode a block of channels at a time (each weight
 * then serves every output pixel); a fully connected layer uses each weight
 * once, so it decodes two rows as it multiplies them
 * (codebook_fully_connected.c). */
#include <stdint.h>

#include "mcuq_internal.h"
#include "mcuq_runtime.h"

#ifndef MCUQ_NO_CHECKS
/* The arguments every codebook convolution takes. */
static mcuq_status check_codebook_conv(const mcuq_conv2d_params *params, const int8_t *input,
                                       const mcuq_codebook_weights *weights, const int32_t *bias,
                                       const mcuq_requant *requant, const int8_t *scratch, const int8_t *output) {
  mcuq_status status = mcuq_check_codebook(weights);
  if (status == MCUQ_OK && scratch == 0) status = MCUQ_ERROR_NULL;
  if (status == MCUQ_OK) {
    status = mcuq_check_conv2d(params, input, (const int8_t *)weights->indices, bias, requant, output, INT8_MIN,
                               INT8_MAX, 0);
  }
  return status;
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
  const mcuq_status status = mcuq_check_codebook(weights);
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

/* Output channels [first, first + count) of a layer: its requantization
 * tables from `first` on (one entry stays one entry). */
static mcuq_requant requant_from(const mcuq_requant *requant, int32_t first) {
  mcuq_requant slice = *requant;
  if (slice.per_channel) {
    slice.multiplier += first;
    slice.shift += first;
  }
  return slice;
}

mcuq_status mcuq_conv2d_s8_cb(const mcuq_conv2d_params *params, const int8_t *input,
                              const mcuq_codebook_weights *weights, const int32_t *bias, const mcuq_requant *requant,
                              int32_t block_channels, int8_t *scratch, int8_t *output) {
#ifndef MCUQ_NO_CHECKS
  mcuq_status status = check_codebook_conv(params, input, weights, bias, requant, scratch, output);
  /* Blocks of a grouped convolution would split its groups: it decodes whole. */
  if (status == MCUQ_OK && (block_channels <= 0 || (params->groups > 1 && block_channels < params->out_c))) {
    status = MCUQ_ERROR_ARGUMENT;
  }
  if (status != MCUQ_OK) return status;
#endif
  const int32_t taps = (params->in_c / params->groups) * params->k_h * params->k_w;
  const int32_t pixels = params->out_h * params->out_w;
  mcuq_conv2d_params block = *params;
  for (int32_t first = 0; first < params->out_c; first += block_channels) {
    const int32_t count = params->out_c - first < block_channels ? params->out_c - first : block_channels;
    const mcuq_requant slice = requant_from(requant, first);
    mcuq_status status_block;
    block.out_c = count;
    mcuq_decode_codebook(weights, first * taps, count * taps, scratch);
#if defined(__AVR__)
    /* The int8 kernels read their weights from flash here. */
    status_block = mcuq_conv2d_s8_ram(&block, input, scratch, bias + first, &slice, output + first * pixels);
#else
    status_block = mcuq_conv2d_im2col_s8(&block, input, scratch, bias + first, &slice, scratch + count * taps,
                                         output + first * pixels);
#endif
    if (status_block != MCUQ_OK) return status_block;
  }
  return MCUQ_OK;
}

mcuq_status mcuq_depthwise_conv2d_s8_cb(const mcuq_conv2d_params *params, const int8_t *input,
                                        const mcuq_codebook_weights *weights, const int32_t *bias,
                                        const mcuq_requant *requant, int32_t block_channels, int8_t *scratch,
                                        int8_t *output) {
#ifndef MCUQ_NO_CHECKS
  mcuq_status status = check_codebook_conv(params, input, weights, bias, requant, scratch, output);
  if (status == MCUQ_OK && (params->groups != params->in_c || params->out_c % params->in_c != 0)) {
    status = MCUQ_ERROR_SHAPE;
  }
  if (status == MCUQ_OK && block_channels <= 0) status = MCUQ_ERROR_ARGUMENT;
  if (status != MCUQ_OK) return status;
#endif
  /* Blocks of input channels, each with its depth_multiplier outputs. */
  const int32_t multiplier = params->out_c / params->in_c;
  const int32_t filter = params->k_h * params->k_w;
  const int32_t in_plane = params->in_h * params->in_w, out_plane = params->out_h * params->out_w;
  mcuq_conv2d_params block = *params;
  for (int32_t first = 0; first < params->in_c; first += block_channels) {
    const int32_t count = params->in_c - first < block_channels ? params->in_c - first : block_channels;
    const int32_t out_first = first * multiplier;
    const mcuq_requant slice = requant_from(requant, out_first);
    mcuq_status status_block;
    block.in_c = block.groups = count;
    block.out_c = count * multiplier;
    mcuq_decode_codebook(weights, out_first * filter, block.out_c * filter, scratch);
#if defined(__AVR__)
    status_block = mcuq_depthwise_conv2d_s8_ram(&block, input + first * in_plane, scratch, bias + out_first, &slice,
                                                output + out_first * out_plane);
#else
    status_block = mcuq_depthwise_conv2d_s8(&block, input + first * in_plane, scratch, bias + out_first, &slice,
                                            output + out_first * out_plane);
#endif
    if (status_block != MCUQ_OK) return status_block;
  }
  return MCUQ_OK;
}

/* The 16 levels of two's-complement nibbles (index i: ((i ^ 8) - 8)): W4A8
 * weights packed two per byte are codebook weights with this codebook. */
const int8_t mcuq_codebook_s4[16] MCUQ_TABLE = {0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1};
