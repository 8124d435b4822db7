/* mcuq runtime: integer-only C99 kernels for models exported by mcuq.
 *
 * Layout: activations are NCHW with N = 1 (so channel c of a C x H x W
 * tensor starts at c * H * W; flatten is free), int8 or int16. Weights are
 * int8 in PyTorch's layout: conv [out_c][in_c / groups][k_h][k_w], fully
 * connected [out][in]. Biases are int32 (int64 for 16-bit activations) with
 * the input zero point already folded in: bias'[c] = q_bias[c] - z_in *
 * sum(w[c]), so a kernel accumulates bias' + sum(w * x) and reads padded
 * taps as the input zero point (the quantized real 0).
 *
 * Memory: caller-owned; no kernel allocates, uses float or prints. Input and
 * output of a kernel must not overlap. Tables (weights, biases,
 * multipliers, LUTs) are read through MCUQ_READ_* so that AVR builds can keep
 * them in flash (MCUQ_TABLE = PROGMEM).
 *
 * Checks: each kernel validates its arguments and returns MCUQ_ERROR_* unless
 * MCUQ_NO_CHECKS is defined (then it trusts the generated code).
 */
#ifndef MCUQ_RUNTIME_H
#define MCUQ_RUNTIME_H

#include <stdint.h>

#include "mcuq_arith.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2: mcuq_fully_connected_s8_cb takes a scratch; MCUQ_DSP_KERNELS. */
#define MCUQ_RUNTIME_VERSION 2

/* 1 where the kernels use the DSP extension's SIMD instructions (Cortex-M4,
 * M7, M33, M55; little-endian), else 0; -DMCUQ_PORTABLE_KERNELS forces the
 * portable C loops. Generated models reserve the arena bytes that only these
 * kernels use (MCUQ_FULLY_CONNECTED_CB_SCRATCH) where it is 1. Compile the
 * runtime and the models with the same flags. */
#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) && !defined(__ARM_BIG_ENDIAN) && \
    !defined(MCUQ_PORTABLE_KERNELS)
#define MCUQ_DSP_KERNELS 1
#else
#define MCUQ_DSP_KERNELS 0
#endif

typedef enum {
  MCUQ_OK = 0,
  MCUQ_ERROR_NULL = 1,     /* a required pointer is NULL */
  MCUQ_ERROR_SHAPE = 2,    /* a size or shape parameter is out of range */
  MCUQ_ERROR_ARGUMENT = 3  /* another parameter is out of range */
} mcuq_status;

#if defined(__AVR__)
#include <avr/pgmspace.h>
#define MCUQ_TABLE PROGMEM
#define MCUQ_READ_S8(p) ((int8_t)pgm_read_byte(p))
#define MCUQ_READ_U8(p) ((uint8_t)pgm_read_byte(p))
#define MCUQ_READ_S16(p) ((int16_t)pgm_read_word(p))
#define MCUQ_READ_S32(p) ((int32_t)pgm_read_dword(p))
#define MCUQ_READ_S64(p) \
  ((int64_t)(((uint64_t)pgm_read_dword((const char *)(p) + 4) << 32) | (uint64_t)pgm_read_dword(p)))
#else
#define MCUQ_TABLE
#define MCUQ_READ_S8(p) (*(p))
#define MCUQ_READ_U8(p) (*(p))
#define MCUQ_READ_S16(p) (*(p))
#define MCUQ_READ_S32(p) (*(p))
#define MCUQ_READ_S64(p) (*(p))
#endif

/* Packed 4-bit weights (W4A8): weight i is the signed nibble i & 1 (low
 * first) of byte i >> 1; the tensor is packed flat in PyTorch's layout. */
MCUQ_INLINE int32_t mcuq_nibble_s4(int32_t byte, int32_t high) {
  return ((((high ? byte >> 4 : byte) & 0x0F) ^ 8) - 8);
}
#define MCUQ_READ_S4(p, i) mcuq_nibble_s4(MCUQ_READ_S8(&(p)[(i) >> 1]), (i) & 1)

/* Codebook weights (non-uniform, eq. 3): weight i is codebook[row * (1 <<
 * bits) + index_i], row = i / row_weights (the weights that share one
 * codebook row: an output channel's filter, or several channels'), index_i
 * the bits-wide field at bit i * bits of `indices`, least significant bit
 * first (a field may straddle two bytes). Levels are int8 on the layer's
 * per-channel grid, so the layer's arithmetic is int8's: a kernel decodes a
 * weight and multiply-accumulates it as an int8 one. */
typedef struct {
  const uint8_t *indices;
  const int8_t *codebook;
  int32_t bits; /* 1 to 4 */
  int32_t row_weights;
} mcuq_codebook_weights;

/* Writes weights [first, first + count) as int8 to out (RAM). */
mcuq_status mcuq_decode_codebook(const mcuq_codebook_weights *weights, int32_t first, int32_t count, int8_t *out);

/* Output scaling of a layer: per output channel multiplier and shift
 * (tables of length out_c, or of length 1 when per_channel is 0), the
 * rounding rule, the output zero point and the clamp [act_min, act_max]
 * (the quant range narrowed by a fused ReLU/ReLU6/clamp). */
typedef struct {
  const int32_t *multiplier;
  const int8_t *shift;
  int32_t per_channel;
  mcuq_rounding rounding;
  int32_t zero_point;
  int32_t act_min;
  int32_t act_max;
} mcuq_requant;

/* 2-D convolution (PyTorch semantics: zero padding in real values, so
 * padded taps read in_zero_point; out = floor((in + 2 pad - dil (k - 1) - 1)
 * / stride) + 1). groups divides in_c and out_c. */
typedef struct {
  int32_t in_c, in_h, in_w;
  int32_t out_c, out_h, out_w;
  int32_t k_h, k_w;
  int32_t stride_h, stride_w;
  int32_t pad_h, pad_w;
  int32_t dilation_h, dilation_w;
  int32_t groups;
  int32_t in_zero_point;
} mcuq_conv2d_params;

/* Generic (grouped) convolution. */
mcuq_status mcuq_conv2d_s8(const mcuq_conv2d_params *params, const int8_t *input, const int8_t *weights,
                           const int32_t *bias, const mcuq_requant *requant, int8_t *output);
/* The same as mcuq_conv2d_s8, as a blocked matrix product (faster: the
 * exporter's choice): `scratch` holds MCUQ_CONV2D_IM2COL_SCRATCH bytes, two
 * columns of input taps, and must not overlap the other arrays. */
#define MCUQ_CONV2D_IM2COL_SCRATCH(in_c, groups, k_h, k_w) (2 * ((in_c) / (groups)) * (k_h) * (k_w))
mcuq_status mcuq_conv2d_im2col_s8(const mcuq_conv2d_params *params, const int8_t *input, const int8_t *weights,
                                  const int32_t *bias, const mcuq_requant *requant, int8_t *scratch, int8_t *output);
mcuq_status mcuq_conv2d_s16(const mcuq_conv2d_params *params, const int16_t *input, const int8_t *weights,
                            const int64_t *bias, const mcuq_requant *requant, int16_t *output);
/* W4A8: weights packed two per byte (MCUQ_READ_S4); otherwise as above. */
mcuq_status mcuq_conv2d_s8_w4(const mcuq_conv2d_params *params, const int8_t *input, const int8_t *weights,
                              const int32_t *bias, const mcuq_requant *requant, int8_t *output);
mcuq_status mcuq_depthwise_conv2d_s8_w4(const mcuq_conv2d_params *params, const int8_t *input,
                                        const int8_t *weights, const int32_t *bias, const mcuq_requant *requant,
                                        int8_t *output);
/* Codebook weights (mcuq_codebook_weights): the weights of block_channels
 * output channels (depthwise: input channels, with their depth-multiplier
 * outputs) at a time are decoded into `scratch`, then run through the int8
 * kernels; each decoded weight serves every output pixel. A grouped
 * (non-depthwise) convolution takes one block of all out_c. Scratch sizes
 * in bytes below; the scratch must not overlap the other arrays. */
#define MCUQ_CONV2D_CB_SCRATCH(block_channels, in_c, groups, k_h, k_w) \
  ((block_channels) * ((in_c) / (groups)) * (k_h) * (k_w) + MCUQ_CONV2D_IM2COL_SCRATCH(in_c, groups, k_h, k_w))
#define MCUQ_DEPTHWISE_CONV2D_CB_SCRATCH(block_channels, depth_multiplier, k_h, k_w) \
  ((block_channels) * (depth_multiplier) * (k_h) * (k_w))
mcuq_status mcuq_conv2d_s8_cb(const mcuq_conv2d_params *params, const int8_t *input,
                              const mcuq_codebook_weights *weights, const int32_t *bias, const mcuq_requant *requant,
                              int32_t block_channels, int8_t *scratch, int8_t *output);
mcuq_status mcuq_depthwise_conv2d_s8_cb(const mcuq_conv2d_params *params, const int8_t *input,
                                        const mcuq_codebook_weights *weights, const int32_t *bias,
                                        const mcuq_requant *requant, int32_t block_channels, int8_t *scratch,
                                        int8_t *output);
/* W4A8 weights as codebook weights: {packed weights, mcuq_codebook_s4, 4,
 * row_weights = all of them} run W4A8 layers through the kernels above. */
extern const int8_t mcuq_codebook_s4[16] MCUQ_TABLE;

/* Depthwise: groups == in_c, out_c a multiple of in_c (channel multiplier);
 * output channel o reads input channel o / (out_c / in_c). */
mcuq_status mcuq_depthwise_conv2d_s8(const mcuq_conv2d_params *params, const int8_t *input,
                                     const int8_t *weights, const int32_t *bias, const mcuq_requant *requant,
                                     int8_t *output);
mcuq_status mcuq_depthwise_conv2d_s16(const mcuq_conv2d_params *params, const int16_t *input,
                                      const int8_t *weights, const int64_t *bias, const mcuq_requant *requant,
                                      int16_t *output);

/* Transposed convolution (PyTorch's ConvTranspose2d, groups 1): out = (in -
 * 1) stride - 2 pad + dilation (k - 1) + 1 + output_padding (output_padding
 * below the stride or the dilation). Weights [out_c][in_c][k_h][k_w] (the
 * exporter transposes PyTorch's layout); the bias is q_bias itself, not
 * folded: a transposed convolution's outputs gather different numbers of
 * taps, so each tap reads (x - in_zero_point). params->groups must be 1. */
mcuq_status mcuq_conv_transpose2d_s8(const mcuq_conv2d_params *params, const int8_t *input, const int8_t *weights,
                                     const int32_t *bias, const mcuq_requant *requant, int8_t *output);
mcuq_status mcuq_conv_transpose2d_s16(const mcuq_conv2d_params *params, const int16_t *input, const int8_t *weights,
                                      const int64_t *bias, const mcuq_requant *requant, int16_t *output);

/* y[o] = requant(bias[o] + sum_i w[o][i] * x[i]), o < out_features. */
mcuq_status mcuq_fully_connected_s8(int32_t in_features, int32_t out_features, const int8_t *input,
                                    const int8_t *weights, const int32_t *bias, const mcuq_requant *requant,
                                    int8_t *output);
mcuq_status mcuq_fully_connected_s8_w4(int32_t in_features, int32_t out_features, const int8_t *input,
                                       const int8_t *weights, const int32_t *bias, const mcuq_requant *requant,
                                       int8_t *output);
/* Codebook weights: each weight is used once, so two rows are decoded as
 * they are multiplied. Rows of whole bytes within one codebook row (4-bit:
 * an even in_features; 3-bit: a multiple of 8) decode each field through
 * the row's levels; other rows are decoded 64 weights at a time into a
 * stack buffer and multiplied as int8 ones. Where MCUQ_DSP_KERNELS,
 * MCUQ_FULLY_CONNECTED_CB_SCRATCH is not 0 (rows of whole bytes, codebook
 * rows of at least 384 weights for 4 bits, 192 for 3) and scratch is given,
 * two products take one SMLAD through tables of index pairs (stack: 2 KB
 * for 4 bits, 512 B for 3) and the inputs paired once in the scratch (bytes
 * below; elsewhere it is left untouched). scratch may be NULL. */
#define MCUQ_FULLY_CONNECTED_CB_SCRATCH(bits, in_features, row_weights)                             \
  ((((bits) == 4 && (in_features) % 2 == 0) || ((bits) == 3 && (in_features) % 8 == 0)) &&         \
           (row_weights) % (in_features) == 0 && (row_weights) >= ((bits) == 4 ? 384 : 192)            \
       ? 2 * (in_features) + 3                                                                      \
       : 0)
mcuq_status mcuq_fully_connected_s8_cb(int32_t in_features, int32_t out_features, const int8_t *input,
                                       const mcuq_codebook_weights *weights, const int32_t *bias,
                                       const mcuq_requant *requant, int8_t *scratch, int8_t *output);
mcuq_status mcuq_fully_connected_s16(int32_t in_features, int32_t out_features, const int16_t *input,
                                     const int8_t *weights, const int64_t *bias, const mcuq_requant *requant,
                                     int16_t *output);

/* Pooling over each channel (PyTorch semantics, floor or ceil mode: out_h
 * and out_w say which; dilation 1). Max: padded taps are ignored. Average:
 * out = zero_point + mcuq_rounded_average(sum over valid taps of
 * (x - zero_point), divisor), divisor the window's taps inside the padded
 * input (k_h * k_w but for a ceil-mode window's overhang) when
 * count_include_pad, else the number of valid taps; then clamped to
 * [act_min, act_max]. Output keeps the input's qparams. */
typedef struct {
  int32_t channels, in_h, in_w, out_h, out_w;
  int32_t k_h, k_w, stride_h, stride_w, pad_h, pad_w;
  int32_t count_include_pad;
  int32_t zero_point;
  int32_t act_min, act_max;
} mcuq_pool2d_params;

mcuq_status mcuq_max_pool2d_s8(const mcuq_pool2d_params *params, const int8_t *input, int8_t *output);
mcuq_status mcuq_max_pool2d_s16(const mcuq_pool2d_params *params, const int16_t *input, int16_t *output);
mcuq_status mcuq_avg_pool2d_s8(const mcuq_pool2d_params *params, const int8_t *input, int8_t *output);
mcuq_status mcuq_avg_pool2d_s16(const mcuq_pool2d_params *params, const int16_t *input, int16_t *output);

/* Residual add of two tensors with their own qparams (TFLite's scheme):
 *   a' = scale((a - a_zero_point) << left_shift, a_multiplier, a_shift)
 *   b' likewise, out = requantize(a' + b', output multiplier/shift)
 * with scale/requantize from mcuq_arith.h under `rounding`. */
typedef struct {
  int32_t size;
  int32_t left_shift;
  int32_t a_zero_point, a_multiplier, a_shift;
  int32_t b_zero_point, b_multiplier, b_shift;
  int32_t out_zero_point, out_multiplier, out_shift;
  mcuq_rounding rounding;
  int32_t act_min, act_max;
} mcuq_add_params;

mcuq_status mcuq_add_s8(const mcuq_add_params *params, const int8_t *a, const int8_t *b, int8_t *output);
mcuq_status mcuq_add_s16(const mcuq_add_params *params, const int16_t *a, const int16_t *b, int16_t *output);
/* a - b, the same scheme with the scaled inputs subtracted. */
mcuq_status mcuq_sub_s8(const mcuq_add_params *params, const int8_t *a, const int8_t *b, int8_t *output);
mcuq_status mcuq_sub_s16(const mcuq_add_params *params, const int16_t *a, const int16_t *b, int16_t *output);

/* Elementwise product (TFLite's MUL): out = requantize((a - a_zero_point) *
 * (b - b_zero_point)) with multiplier * 2^(shift - 31) = s_a s_b / s_out;
 * int8 in int32 (mcuq_requantize_s32), int16 in int64 (mcuq_requantize_s64,
 * the 16x8 rule). `a` and the output are outer x inner elements (C x H * W);
 * element (o, i) reads b[o * b_outer_stride + i * b_inner_stride], so `b`
 * may broadcast: strides (inner, 1) the same shape, (1, 0) one value per
 * channel (a squeeze-and-excitation gate), (0, 1) one value per pixel
 * (spatial attention), (0, 0) one value. */
typedef struct {
  int32_t outer, inner;
  int32_t b_outer_stride, b_inner_stride;
  int32_t a_zero_point, b_zero_point;
  int32_t multiplier, shift;
  mcuq_rounding rounding;
  int32_t out_zero_point, act_min, act_max;
} mcuq_mul_params;

mcuq_status mcuq_mul_s8(const mcuq_mul_params *params, const int8_t *a, const int8_t *b, int8_t *output);
mcuq_status mcuq_mul_s16(const mcuq_mul_params *params, const int16_t *a, const int16_t *b, int16_t *output);

/* out[i] = requantize(in[i] - in_zero_point) to new qparams; concatenation
 * writes each input through it into its slice of the output. */
typedef struct {
  int32_t size;
  int32_t in_zero_point;
  int32_t multiplier, shift;
  mcuq_rounding rounding;
  int32_t out_zero_point, act_min, act_max;
} mcuq_requantize_params;

mcuq_status mcuq_requantize_s8(const mcuq_requantize_params *params, const int8_t *input, int8_t *output);
mcuq_status mcuq_requantize_s16(const mcuq_requantize_params *params, const int16_t *input, int16_t *output);

/* Softmax over the last dimension (rows x depth int8 levels, depth at most
 * 65535): exp_table[d] = round(2^15 exp(-s_in d)) for d = max(row) - x in
 * [0, 255] (the exporter's table, entries in [0, 2^15], entry 0 = 2^15);
 * p = round(exp_table[d] 2^16 / row sum), requantized by multiplier * 2^(shift
 * - 31) = 2^-16 / s_out, plus out_zero_point, clamped to [act_min, act_max].
 * A row whose table entries sum to 0 or less (a table not the exporter's)
 * returns MCUQ_ERROR_ARGUMENT, with the rows before it written. */
typedef struct {
  int32_t rows, depth;
  int32_t multiplier, shift;
  mcuq_rounding rounding;
  int32_t out_zero_point, act_min, act_max;
} mcuq_softmax_params;

mcuq_status mcuq_softmax_s8(const mcuq_softmax_params *params, const int32_t *exp_table, const int8_t *input,
                            int8_t *output);

/* Constant padding of each channel's plane: `top` rows above, `bottom`
 * below, `left` and `right` columns, filled with `value` (the zero point:
 * the real 0 of PyTorch's zero padding); output (in_h + top + bottom) x
 * (in_w + left + right) per channel, the input's qparams. */
typedef struct {
  int32_t channels, in_h, in_w;
  int32_t top, bottom, left, right;
  int32_t value;
} mcuq_pad2d_params;

mcuq_status mcuq_pad2d_s8(const mcuq_pad2d_params *params, const int8_t *input, int8_t *output);
mcuq_status mcuq_pad2d_s16(const mcuq_pad2d_params *params, const int16_t *input, int16_t *output);

/* Nearest-neighbour upsampling by integer factors: out[c][y][x] =
 * in[c][y / factor_h][x / factor_w] (PyTorch's "nearest" and
 * "nearest-exact" agree there), the input's qparams. */
typedef struct {
  int32_t channels, in_h, in_w;
  int32_t factor_h, factor_w;
} mcuq_upsample_params;

mcuq_status mcuq_upsample_nearest_s8(const mcuq_upsample_params *params, const int8_t *input, int8_t *output);
mcuq_status mcuq_upsample_nearest_s16(const mcuq_upsample_params *params, const int16_t *input, int16_t *output);

/* Elementwise activation as a 256-entry table: out[i] = table[in[i] + 128]. */
mcuq_status mcuq_lut_s8(int32_t size, const int8_t *table, const int8_t *input, int8_t *output);
/* 16-bit activations: 513 entries, table[k] the output at input level
 * start + k * 2^step_shift (step_shift in [0, 7]). An input x reads the
 * samples around offset = clamp(x - start, 0, 512 * 2^step_shift) and
 * interpolates linearly, base + ((next - base) * (offset mod 2^step_shift)
 * + 2^step_shift / 2) >> step_shift, base = table[offset >> step_shift]
 * (table[512] at the last offset). start -32768 with step_shift 7 spans the
 * whole int16 range (TFLite's scheme); the exporter narrows the window to
 * the inputs where the function is not flat, so a steep sigmoid keeps 512
 * segments on its slope instead of a few. */
typedef struct {
  int32_t size;
  int32_t start;
  int32_t step_shift;
} mcuq_lut_s16_params;

mcuq_status mcuq_lut_s16(const mcuq_lut_s16_params *params, const int16_t *table, const int16_t *input,
                         int16_t *output);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MCUQ_RUNTIME_H */
