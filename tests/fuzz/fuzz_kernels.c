/* Fuzzer for the runtime kernels (issue 18): each input is decoded into one
 * call's shapes, parameters and data, the kernel runs, and its output must
 * equal the naive reference of tests/runtime/reference_kernels.h bit for
 * bit. Shapes and parameters are drawn inside the documented contracts of
 * mcuq_runtime.h, with a few values just outside them (a window larger
 * than its padded input, a zero point past the type): there the kernel must
 * return an error status, and nothing else happens. A mismatch aborts (the
 * fuzzer keeps the input); sanitizers catch the rest.
 *
 * One family per build, -DMCUQ_FUZZ_FAMILY=N (FAMILY_* below):
 *   conv2d          mcuq_conv2d_s8, _im2col_s8, depthwise_s8, the W4 pair and its codebook
 *                   (_cb) pair, s16 pair
 *   fully_connected mcuq_fully_connected_s8, _s8_w4, _s8_cb, _s16
 *   pool2d          max/avg pooling, s8 and s16
 *   add             mcuq_add_s8/_s16 and mcuq_sub_s8/_s16 (the same parameters)
 *   requantize      mcuq_requantize_s8/_s16
 *   lut             mcuq_lut_s8/_s16
 *   mul             mcuq_mul_s8/_s16, b the same shape or broadcast by its strides
 *   shape           mcuq_pad2d_s8/_s16, mcuq_upsample_nearest_s8/_s16
 *   softmax         mcuq_softmax_s8
 *
 * With libFuzzer:  clang -fsanitize=fuzzer,address,undefined ... (scripts/fuzz_kernels.sh)
 * Without it (-DMCUQ_FUZZ_STANDALONE): main() runs N pseudo-random inputs,
 * a cheap replay for the test suite; its last line reads
 *   fuzz_kernels <family>: N inputs, K kernel calls compared, 0 failed */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcuq_runtime.h"
#include "reference_kernels.h"

#define FAMILY_CONV2D 0
#define FAMILY_FULLY_CONNECTED 1
#define FAMILY_POOL2D 2
#define FAMILY_ADD 3
#define FAMILY_REQUANTIZE 4
#define FAMILY_LUT 5
#define FAMILY_MUL 6
#define FAMILY_SHAPE 7
#define FAMILY_SOFTMAX 8

#ifndef MCUQ_FUZZ_FAMILY
#define MCUQ_FUZZ_FAMILY FAMILY_CONV2D
#endif

#define MAX_ELEMS MCUQ_REFERENCE_MAX_ELEMS
#define MAX_CHANNELS 64

static long compared = 0;

/* ---- decoding the fuzzer's bytes ------------------------------------------- */

typedef struct {
  const uint8_t *data;
  size_t size, at;
  uint32_t filler; /* once the bytes run out: a generator seeded by them */
} reader;

static uint32_t next_byte(reader *r) {
  if (r->at < r->size) return r->data[r->at++];
  r->filler = r->filler * 1664525u + 1013904223u;
  return r->filler >> 24;
}

/* A value in [lo, hi]; uses as few bytes as the range needs. */
static int32_t take(reader *r, int32_t lo, int32_t hi) {
  const uint32_t span = (uint32_t)((int64_t)hi - lo);
  uint32_t value = 0, bits;
  for (bits = 0; bits < 32 && (span >> bits) != 0; bits += 8) value = (value << 8) | next_byte(r);
  return span == UINT32_MAX ? (int32_t)((int64_t)lo + value) : (int32_t)((int64_t)lo + value % (span + 1u));
}

/* Activation values: uniform, mostly at one end (saturation), or a mix of
 * the type's extremes, zero and its neighbours. */
static int32_t take_activation(reader *r, int32_t lo, int32_t hi, int32_t mode) {
  static const int32_t special[] = {0, 1, -1, 2, -2};
  if (mode == 1) return take(r, 0, 3) ? hi : take(r, lo, hi);
  if (mode == 2) return take(r, 0, 3) ? lo : take(r, lo, hi);
  if (mode == 3) {
    const int32_t pick = take(r, 0, 7);
    return pick == 0 ? lo : pick == 1 ? hi : pick == 2 ? hi - 1 : pick == 3 ? lo + 1 : special[pick - 3];
  }
  return take(r, lo, hi);
}

static mcuq_rounding take_rounding(reader *r) { return (mcuq_rounding)take(r, 0, 2); }

/* A multiplier and shift the exporter could emit for this rounding: the
 * multiplier in [2^30, 2^31) (exactly 2^30 for the shift rule), the shift
 * mostly where real layers put it, sometimes anywhere in the valid range. */
static void take_scaling(reader *r, mcuq_rounding rounding, int wide, int32_t *multiplier, int8_t *shift) {
  const int32_t max_shift = (wide && rounding != MCUQ_ROUND_SHIFT) ? 7 : 30;
  *multiplier = rounding == MCUQ_ROUND_SHIFT ? (1 << 30) : take(r, 1 << 30, INT32_MAX);
  *shift = (int8_t)(take(r, 0, 3) ? take(r, wide ? -24 : -14, 2) : take(r, -31, max_shift));
}

typedef struct {
  int32_t multiplier[MAX_CHANNELS];
  int8_t shift[MAX_CHANNELS];
  mcuq_requant requant;
} scaling;

static void take_requant(reader *r, int32_t channels, int wide, int32_t type_min, int32_t type_max, scaling *s) {
  int32_t c, lo, hi;
  s->requant.rounding = take_rounding(r);
  s->requant.per_channel = take(r, 0, 1);
  for (c = 0; c < (s->requant.per_channel ? channels : 1); ++c)
    take_scaling(r, s->requant.rounding, wide, &s->multiplier[c], &s->shift[c]);
  s->requant.multiplier = s->multiplier;
  s->requant.shift = s->shift;
  s->requant.zero_point = take(r, type_min, type_max);
  lo = take(r, 0, 3) ? type_min : take(r, type_min, type_max);
  hi = take(r, 0, 3) ? type_max : take(r, lo, type_max);
  s->requant.act_min = lo;
  s->requant.act_max = hi;
}

/* ---- comparing -------------------------------------------------------------- */

/* A failure stops the run: abort() for libFuzzer (it keeps the input);
 * firmware builds (tests/fuzz/mcu_fuzz_main.c) define MCUQ_FUZZ_FAIL. */
#ifndef MCUQ_FUZZ_FAIL
#define MCUQ_FUZZ_HOST 1
static void fail(const char *message) {
  fprintf(stderr, "fuzz_kernels: %s\n", message);
  abort();
}
#define MCUQ_FUZZ_FAIL(message) fail(message)
#else
void MCUQ_FUZZ_FAIL(const char *message);
#endif

static void expect(int ok, const char *what) {
  if (!ok) MCUQ_FUZZ_FAIL(what);
}

static void expect_equal(const char *kernel, const void *got, int wide, const int32_t *want, int32_t n) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    const int32_t value = wide ? ((const int16_t *)got)[i] : ((const int8_t *)got)[i];
    if (value != want[i]) {
#ifdef MCUQ_FUZZ_HOST
      static char message[160];
      snprintf(message, sizeof message, "%s differs from the reference at %ld: got %ld, want %ld", kernel, (long)i,
               (long)value, (long)want[i]);
      MCUQ_FUZZ_FAIL(message);
#else
      MCUQ_FUZZ_FAIL(kernel); /* no snprintf (nor its malloc) in firmware */
#endif
    }
  }
  ++compared;
}

/* The outputs are filled with a pattern before a call of the newer
 * families; the elements past the n the kernel was to write must keep it
 * (the static buffers hide such writes from AddressSanitizer). */
#define UNTOUCHED 0x5A

static void expect_untouched(const char *kernel, const void *got, int wide, int32_t n, int32_t capacity) {
  int32_t i;
  for (i = n; i < capacity && i < n + 64; ++i) {
    const int32_t value = wide ? ((const int16_t *)got)[i] : ((const int8_t *)got)[i];
    if (value != (wide ? (int16_t)(UNTOUCHED * 0x101) : UNTOUCHED)) MCUQ_FUZZ_FAIL(kernel);
  }
}

/* ---- the families ----------------------------------------------------------- */

static int8_t in8[MAX_ELEMS], out8[MAX_ELEMS], b8[MAX_ELEMS], weights[MAX_ELEMS], packed[MAX_ELEMS / 2 + 1];
static int16_t in16[MAX_ELEMS], out16[MAX_ELEMS], b16[MAX_ELEMS];
static int32_t in32[MAX_ELEMS], other32[MAX_ELEMS], want[MAX_ELEMS];

static void clear_outputs(void) {
  memset(out8, UNTOUCHED, sizeof out8);
  memset(out16, UNTOUCHED, sizeof out16);
}

/* Random activations of both widths, int32 copies for the references. */
static void take_inputs(reader *r, int32_t n) {
  const int32_t mode = take(r, 0, 4);
  int32_t i;
  for (i = 0; i < n; ++i) in8[i] = (int8_t)take_activation(r, INT8_MIN, INT8_MAX, mode);
  for (i = 0; i < n; ++i) in16[i] = (int16_t)take_activation(r, INT16_MIN, INT16_MAX, mode);
}

static void copy8(int32_t n) {
  int32_t i;
  for (i = 0; i < n; ++i) in32[i] = in8[i];
}

static void copy16(int32_t n) {
  int32_t i;
  for (i = 0; i < n; ++i) in32[i] = in16[i];
}

/* Weights as int4 values (W4A8), packed two per byte, and their int8 copy. */
static void pack_w4(int32_t n) {
  int32_t i;
  memset(packed, 0, sizeof packed);
  for (i = 0; i < n; ++i) {
    weights[i] = (int8_t)(weights[i] >> 4); /* [-8, 7] */
    packed[i >> 1] = (int8_t)(packed[i >> 1] | ((weights[i] & 0x0F) << ((i & 1) * 4)));
  }
}

static void fuzz_conv2d(reader *r) {
  static int8_t scratch[MAX_ELEMS + 8];
  mcuq_conv2d_params p;
  scaling s;
  int32_t bias32[MAX_CHANNELS];
  int64_t bias_as64[MAX_CHANNELS], bias64[MAX_CHANNELS];
  int32_t i, in_n, out_n, w_n, span_h, span_w, depthwise, valid;
  const int32_t groups = take(r, 1, 4);
  depthwise = take(r, 0, 1);
  p.groups = groups;
  p.in_c = depthwise ? groups : groups * take(r, 1, 4);
  p.out_c = depthwise ? groups * take(r, 1, 3) : groups * take(r, 1, 4);
  p.in_h = take(r, 1, 11);
  p.in_w = take(r, 1, 11);
  p.k_h = take(r, 0, 1) ? 3 : take(r, 1, 5); /* 3x3: the fast kernels' case */
  p.k_w = take(r, 0, 3) ? p.k_h : take(r, 1, 5);
  p.stride_h = take(r, 1, 3);
  p.stride_w = take(r, 0, 1) ? p.stride_h : take(r, 1, 3);
  p.pad_h = take(r, 0, 3);
  p.pad_w = take(r, 0, 1) ? p.pad_h : take(r, 0, 3);
  p.dilation_h = take(r, 0, 3) ? 1 : take(r, 1, 3);
  p.dilation_w = take(r, 0, 3) ? 1 : take(r, 1, 3);
  span_h = p.dilation_h * (p.k_h - 1) + 1;
  span_w = p.dilation_w * (p.k_w - 1) + 1;
  p.out_h = (p.in_h + 2 * p.pad_h - span_h) / p.stride_h + 1;
  p.out_w = (p.in_w + 2 * p.pad_w - span_w) / p.stride_w + 1;
  /* Outside the contract: a window wider than the padded input. */
  valid = p.in_h + 2 * p.pad_h >= span_h && p.in_w + 2 * p.pad_w >= span_w;
  if (!valid) p.out_h = p.out_w = 1;
  in_n = p.in_c * p.in_h * p.in_w;
  out_n = p.out_c * p.out_h * p.out_w;
  w_n = p.out_c * (p.in_c / p.groups) * p.k_h * p.k_w;
  /* The reference's buffers (its padded copy of the input the largest). */
  if (p.in_c * (p.in_h + 2 * p.pad_h) * (p.in_w + 2 * p.pad_w) > MAX_ELEMS || out_n > MAX_ELEMS || w_n > MAX_ELEMS)
    return;
  take_inputs(r, in_n);
  for (i = 0; i < w_n; ++i) weights[i] = (int8_t)take(r, INT8_MIN, INT8_MAX);
  for (i = 0; i < p.out_c; ++i) {
    bias_as64[i] = bias32[i] = take(r, -(1 << 24), 1 << 24);
    bias64[i] = (int64_t)take(r, -(1 << 30), 1 << 30) * take(r, 1, 64);
  }

  /* 8-bit activations */
  p.in_zero_point = take(r, INT8_MIN, INT8_MAX);
  take_requant(r, p.out_c, 0, INT8_MIN, INT8_MAX, &s);
  if (!valid) {
    expect(mcuq_conv2d_s8(&p, in8, weights, bias32, &s.requant, out8) == MCUQ_ERROR_SHAPE,
           "mcuq_conv2d_s8 accepted a window wider than its padded input");
    return;
  }
  copy8(in_n);
  reference_conv(&p, in32, weights, bias_as64, &s.requant, 0, want);
  expect(mcuq_conv2d_s8(&p, in8, weights, bias32, &s.requant, out8) == MCUQ_OK, "mcuq_conv2d_s8 refused");
  expect_equal("mcuq_conv2d_s8", out8, 0, want, out_n);
  {
    const int32_t bytes = MCUQ_CONV2D_IM2COL_SCRATCH(p.in_c, p.groups, p.k_h, p.k_w);
    memset(scratch, 0x5A, sizeof scratch);
    expect(mcuq_conv2d_im2col_s8(&p, in8, weights, bias32, &s.requant, scratch + 4, out8) == MCUQ_OK,
           "mcuq_conv2d_im2col_s8 refused");
    expect_equal("mcuq_conv2d_im2col_s8", out8, 0, want, out_n);
    for (i = 0; i < 4; ++i)
      expect(scratch[i] == 0x5A && scratch[bytes + 4 + i] == 0x5A, "mcuq_conv2d_im2col_s8 wrote past its scratch");
  }
  if (depthwise) {
    expect(mcuq_depthwise_conv2d_s8(&p, in8, weights, bias32, &s.requant, out8) == MCUQ_OK,
           "mcuq_depthwise_conv2d_s8 refused");
    expect_equal("mcuq_depthwise_conv2d_s8", out8, 0, want, out_n);
  }
  pack_w4(w_n);
  reference_conv(&p, in32, weights, bias_as64, &s.requant, 0, want);
  expect(mcuq_conv2d_s8_w4(&p, in8, packed, bias32, &s.requant, out8) == MCUQ_OK, "mcuq_conv2d_s8_w4 refused");
  expect_equal("mcuq_conv2d_s8_w4", out8, 0, want, out_n);
  if (depthwise) {
    expect(mcuq_depthwise_conv2d_s8_w4(&p, in8, packed, bias32, &s.requant, out8) == MCUQ_OK,
           "mcuq_depthwise_conv2d_s8_w4 refused");
    expect_equal("mcuq_depthwise_conv2d_s8_w4", out8, 0, want, out_n);
  }
  {
    /* The same nibbles as codebook weights (what the exporter emits for
     * W4A8), decoded in blocks of channels. */
    const mcuq_codebook_weights cb = {(const uint8_t *)packed, mcuq_codebook_s4, 4, w_n};
    const int32_t block = p.groups > 1 ? p.out_c : take(r, 1, p.out_c);
    if (MCUQ_CONV2D_CB_SCRATCH(block, p.in_c, p.groups, p.k_h, p.k_w) <= MAX_ELEMS) {
      expect(mcuq_conv2d_s8_cb(&p, in8, &cb, bias32, &s.requant, block, scratch, out8) == MCUQ_OK,
             "mcuq_conv2d_s8_cb refused");
      expect_equal("mcuq_conv2d_s8_cb", out8, 0, want, out_n);
    }
    if (depthwise) {
      const int32_t inputs = take(r, 1, p.in_c);
      if (MCUQ_DEPTHWISE_CONV2D_CB_SCRATCH(inputs, p.out_c / p.in_c, p.k_h, p.k_w) <= MAX_ELEMS) {
        expect(mcuq_depthwise_conv2d_s8_cb(&p, in8, &cb, bias32, &s.requant, inputs, scratch, out8) == MCUQ_OK,
               "mcuq_depthwise_conv2d_s8_cb refused");
        expect_equal("mcuq_depthwise_conv2d_s8_cb", out8, 0, want, out_n);
      }
    }
  }

  /* 16-bit activations, int64 bias */
  for (i = 0; i < w_n; ++i) weights[i] = (int8_t)take(r, INT8_MIN, INT8_MAX);
  p.in_zero_point = take(r, 0, 3) ? 0 : take(r, INT16_MIN, INT16_MAX);
  take_requant(r, p.out_c, 1, INT16_MIN, INT16_MAX, &s);
  copy16(in_n);
  reference_conv(&p, in32, weights, bias64, &s.requant, 1, want);
  expect(mcuq_conv2d_s16(&p, in16, weights, bias64, &s.requant, out16) == MCUQ_OK, "mcuq_conv2d_s16 refused");
  expect_equal("mcuq_conv2d_s16", out16, 1, want, out_n);
  if (depthwise) {
    expect(mcuq_depthwise_conv2d_s16(&p, in16, weights, bias64, &s.requant, out16) == MCUQ_OK,
           "mcuq_depthwise_conv2d_s16 refused");
    expect_equal("mcuq_depthwise_conv2d_s16", out16, 1, want, out_n);
  }
}

#define FC_WIDEST (MAX_ELEMS / 4 < 1024 ? MAX_ELEMS / 4 : 1024)
#define FC_GUARD 8

/* The codebook fully connected kernel on cb, its output and (it must write
 * no byte past MCUQ_FULLY_CONNECTED_CB_SCRATCH) its scratch checked. */
static void expect_fully_connected_cb(const char *kernel, int32_t in_features, int32_t out_features,
                                      const mcuq_codebook_weights *cb, const int32_t *bias, const scaling *s,
                                      int8_t *scratch) {
  const int32_t used = scratch ? MCUQ_FULLY_CONNECTED_CB_SCRATCH(cb->bits, in_features, cb->row_weights) : 0;
  int32_t i;
  for (i = 0; scratch && i < FC_GUARD; ++i) scratch[used + i] = (int8_t)(0x5A + i);
  expect(mcuq_fully_connected_s8_cb(in_features, out_features, in8, cb, bias, &s->requant, scratch, out8) == MCUQ_OK,
         kernel);
  expect_equal(kernel, out8, 0, want, out_features);
  for (i = 0; scratch && i < FC_GUARD; ++i) expect(scratch[used + i] == (int8_t)(0x5A + i), kernel);
}

static void fuzz_fully_connected(reader *r) {
  scaling s;
  int32_t bias32[MAX_CHANNELS];
  int64_t bias_as64[MAX_CHANNELS], bias64[MAX_CHANNELS];
  /* An eighth of the layers are wide (up to 1024 inputs where the buffers
   * allow: the M4's codebook rows of one channel then reach the DSP pair
   * tables); a quarter have whole groups of eight (3-bit fused rows). */
  const int32_t drawn = FC_WIDEST > 200 && take(r, 0, 7) == 0 ? take(r, 200, FC_WIDEST)
                                                              : take(r, 1, MAX_ELEMS < 200 ? MAX_ELEMS : 200);
  const int32_t in_features = drawn >= 8 && take(r, 0, 3) == 0 ? drawn / 8 * 8 : drawn;
  const int32_t wanted = take(r, 1, 20);
  const int32_t out_features = in_features * wanted <= MAX_ELEMS ? wanted : MAX_ELEMS / in_features;
  const int32_t w_n = in_features * out_features;
  static int8_t fc_scratch_bytes[2 * (FC_WIDEST > 200 ? FC_WIDEST : 200) + 3 + 3 + FC_GUARD];
  int8_t *fc_scratch;
  int32_t i, offset;
  take_inputs(r, in_features);
  for (i = 0; i < w_n; ++i) weights[i] = (int8_t)take(r, INT8_MIN, INT8_MAX);
  for (i = 0; i < out_features; ++i) {
    bias_as64[i] = bias32[i] = take(r, -(1 << 24), 1 << 24);
    bias64[i] = (int64_t)take(r, -(1 << 30), 1 << 30) * take(r, 1, 64);
  }
  take_requant(r, out_features, 0, INT8_MIN, INT8_MAX, &s);
  copy8(in_features);
  reference_fully_connected(in_features, out_features, in32, weights, bias_as64, &s.requant, 0, want);
  expect(mcuq_fully_connected_s8(in_features, out_features, in8, weights, bias32, &s.requant, out8) == MCUQ_OK,
         "mcuq_fully_connected_s8 refused");
  expect_equal("mcuq_fully_connected_s8", out8, 0, want, out_features);
  pack_w4(w_n);
  reference_fully_connected(in_features, out_features, in32, weights, bias_as64, &s.requant, 0, want);
  expect(mcuq_fully_connected_s8_w4(in_features, out_features, in8, packed, bias32, &s.requant, out8) == MCUQ_OK,
         "mcuq_fully_connected_s8_w4 refused");
  expect_equal("mcuq_fully_connected_s8_w4", out8, 0, want, out_features);
  /* The DSP pair tables' scratch (MCUQ_FULLY_CONNECTED_CB_SCRATCH), at any
   * alignment, or none. */
  offset = take(r, 0, 4);
  fc_scratch = offset == 4 ? 0 : fc_scratch_bytes + offset;
  {
    /* As codebook weights (the exporter's W4A8 path): one codebook row for
     * the layer, so long layers take the DSP pair tables. */
    const mcuq_codebook_weights cb = {(const uint8_t *)packed, mcuq_codebook_s4, 4, w_n};
    expect_fully_connected_cb("mcuq_fully_connected_s8_cb", in_features, out_features, &cb, bias32, &s, fc_scratch);
  }
  {
    /* Random 4-bit codebooks, a row per 1-3 output channels (rows change
     * between and within the kernel's row pairs) or one for the layer, or
     * 3-bit ones (fused where rows are whole groups of eight, else the
     * chunked decode). */
    static int8_t codebook[MAX_CHANNELS * 16];
    static uint8_t index[MAX_ELEMS];
    const int32_t drawn_channels = take(r, 0, 3), channels = drawn_channels ? drawn_channels : out_features;
    const int32_t bits = take(r, 0, 3) ? 4 : 3;
    const int32_t row_weights = in_features * channels;
    uint8_t *indices = (uint8_t *)packed;
    mcuq_codebook_weights cb;
    for (i = 0; i < (out_features + channels - 1) / channels * 16; ++i) codebook[i] = (int8_t)take(r, INT8_MIN, INT8_MAX);
    for (i = 0; i < w_n; ++i) {
      index[i] = (uint8_t)take(r, 0, (1 << bits) - 1);
      weights[i] = codebook[i / row_weights * (1 << bits) + index[i]];
    }
    reference_pack_indices(index, w_n, bits, indices);
    cb.indices = indices;
    cb.codebook = codebook;
    cb.bits = bits;
    cb.row_weights = row_weights;
    reference_fully_connected(in_features, out_features, in32, weights, bias_as64, &s.requant, 0, want);
    expect_fully_connected_cb("mcuq_fully_connected_s8_cb (codebooks)", in_features, out_features, &cb, bias32, &s,
                              fc_scratch);
  }
  for (i = 0; i < w_n; ++i) weights[i] = (int8_t)take(r, INT8_MIN, INT8_MAX);
  take_requant(r, out_features, 1, INT16_MIN, INT16_MAX, &s);
  copy16(in_features);
  reference_fully_connected(in_features, out_features, in32, weights, bias64, &s.requant, 1, want);
  expect(mcuq_fully_connected_s16(in_features, out_features, in16, weights, bias64, &s.requant, out16) == MCUQ_OK,
         "mcuq_fully_connected_s16 refused");
  expect_equal("mcuq_fully_connected_s16", out16, 1, want, out_features);
}

/* PyTorch's pooled size: ceil mode rounds up, but its last window must
 * start inside the input or its left padding. */
static int32_t pool_size(int32_t in, int32_t k, int32_t stride, int32_t pad, int32_t ceil_mode) {
  const int32_t span = in + 2 * pad - k;
  int32_t out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad) --out;
  return out;
}

static void fuzz_pool2d(reader *r) {
  mcuq_pool2d_params p;
  int32_t n, valid, wide, ceil_mode;
  p.channels = take(r, 1, 5);
  p.in_h = take(r, 1, 12);
  p.in_w = take(r, 1, 12);
  p.k_h = take(r, 0, 1) ? 3 : take(r, 1, 5); /* 3x3: the common window */
  p.k_w = take(r, 0, 3) ? p.k_h : take(r, 1, 5);
  p.stride_h = take(r, 1, 4);
  p.stride_w = take(r, 0, 1) ? p.stride_h : take(r, 1, 4);
  p.pad_h = take(r, 0, p.k_h / 2); /* PyTorch: padding at most half the kernel */
  p.pad_w = take(r, 0, p.k_w / 2);
  p.count_include_pad = take(r, 0, 1);
  ceil_mode = take(r, 0, 1);
  valid = p.in_h + 2 * p.pad_h >= p.k_h && p.in_w + 2 * p.pad_w >= p.k_w;
  p.out_h = pool_size(p.in_h, p.k_h, p.stride_h, p.pad_h, ceil_mode);
  p.out_w = pool_size(p.in_w, p.k_w, p.stride_w, p.pad_w, ceil_mode);
  if (!valid) p.out_h = p.out_w = 1;
  n = p.channels * p.in_h * p.in_w;
  if (n > MAX_ELEMS || p.channels * p.out_h * p.out_w > MAX_ELEMS) return;
  take_inputs(r, n);
  for (wide = 0; wide <= 1; ++wide) {
    const int32_t lo = wide ? INT16_MIN : INT8_MIN, hi = wide ? INT16_MAX : INT8_MAX;
    const int32_t out_n = p.channels * p.out_h * p.out_w;
    int32_t average;
    p.zero_point = take(r, lo, hi);
    p.act_min = take(r, 0, 3) ? lo : take(r, lo, hi);
    p.act_max = take(r, 0, 3) ? hi : take(r, p.act_min, hi);
    if (wide) copy16(n); else copy8(n);
    for (average = 0; average <= 1; ++average) {
      const char *name = wide ? (average ? "mcuq_avg_pool2d_s16" : "mcuq_max_pool2d_s16")
                              : (average ? "mcuq_avg_pool2d_s8" : "mcuq_max_pool2d_s8");
      void *out = wide ? (void *)out16 : (void *)out8;
      const mcuq_status status =
          wide ? (average ? mcuq_avg_pool2d_s16(&p, in16, out16) : mcuq_max_pool2d_s16(&p, in16, out16))
               : (average ? mcuq_avg_pool2d_s8(&p, in8, out8) : mcuq_max_pool2d_s8(&p, in8, out8));
      if (!valid) {
        expect(status == MCUQ_ERROR_SHAPE, "a pooling kernel accepted a window wider than its padded input");
        continue;
      }
      expect(status == MCUQ_OK, name);
      reference_pool(&p, average, in32, want);
      expect_equal(name, out, wide, want, out_n);
    }
  }
}

static void fuzz_add(reader *r) {
  mcuq_add_params p;
  int32_t i, wide, subtract;
  p.size = take(r, 1, MAX_ELEMS < 300 ? MAX_ELEMS : 300);
  take_inputs(r, p.size);
  for (i = 0; i < p.size; ++i) b8[i] = (int8_t)take(r, INT8_MIN, INT8_MAX);
  for (i = 0; i < p.size; ++i) b16[i] = (int16_t)take(r, INT16_MIN, INT16_MAX);
  for (wide = 0; wide <= 1; ++wide) {
    const int32_t lo = wide ? INT16_MIN : INT8_MIN, hi = wide ? INT16_MAX : INT8_MAX;
    int32_t multiplier;
    int8_t shift;
    p.rounding = take_rounding(r);
    /* TFLite's headroom is 20 bits for int8, 15 for int16; the input
     * multipliers are below 1 so the sum cannot overflow. Sometimes any
     * headroom the kernels take (up to 31 bits: the shift saturates), and
     * -1 or 32, outside it (refused). */
    p.left_shift = take(r, 0, 7) ? take(r, 0, wide ? 15 : 20) : take(r, -1, 32);
    take_scaling(r, p.rounding, 0, &multiplier, &shift);
    p.a_multiplier = multiplier;
    p.a_shift = shift > 0 ? -shift : shift;
    take_scaling(r, p.rounding, 0, &multiplier, &shift);
    p.b_multiplier = multiplier;
    p.b_shift = shift > 0 ? -shift : shift;
    take_scaling(r, p.rounding, 0, &multiplier, &shift);
    p.out_multiplier = multiplier;
    p.out_shift = shift;
    p.a_zero_point = take(r, lo, hi);
    p.b_zero_point = take(r, lo, hi);
    p.out_zero_point = take(r, lo, hi);
    p.act_min = take(r, 0, 3) ? lo : take(r, lo, hi);
    p.act_max = take(r, 0, 3) ? hi : take(r, p.act_min, hi);
    if (p.left_shift < 0 || p.left_shift > 31) {
      expect((wide ? mcuq_add_s16(&p, in16, b16, out16) : mcuq_add_s8(&p, in8, b8, out8)) == MCUQ_ERROR_ARGUMENT,
             "an add kernel accepted a left shift outside [0, 31]");
      expect((wide ? mcuq_sub_s16(&p, in16, b16, out16) : mcuq_sub_s8(&p, in8, b8, out8)) == MCUQ_ERROR_ARGUMENT,
             "a sub kernel accepted a left shift outside [0, 31]");
      continue;
    }
    if (wide) copy16(p.size); else copy8(p.size);
    for (i = 0; i < p.size; ++i) other32[i] = wide ? b16[i] : b8[i];
    for (subtract = 0; subtract <= 1; ++subtract) {
      const char *name =
          wide ? (subtract ? "mcuq_sub_s16" : "mcuq_add_s16") : (subtract ? "mcuq_sub_s8" : "mcuq_add_s8");
      void *out = wide ? (void *)out16 : (void *)out8;
      mcuq_status status;
      reference_add(&p, subtract, in32, other32, want);
      clear_outputs();
      status = wide ? (subtract ? mcuq_sub_s16(&p, in16, b16, out16) : mcuq_add_s16(&p, in16, b16, out16))
                    : (subtract ? mcuq_sub_s8(&p, in8, b8, out8) : mcuq_add_s8(&p, in8, b8, out8));
      expect(status == MCUQ_OK, name);
      expect_equal(name, out, wide, want, p.size);
      expect_untouched(name, out, wide, p.size, MAX_ELEMS);
    }
  }
}

/* gemmlowp's SaturatingRoundingDoublingHighMul as written there: a nudge by
 * the product's sign, then a division that truncates. mcuq's (mcuq_arith.h)
 * is one add and one shift, and on DSP cores a QADD without the compare. */
static int32_t gemmlowp_high_mul(int32_t a, int32_t b) {
  const int64_t ab = (int64_t)a * b;
  const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : 1 - ((int64_t)1 << 30);
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

static int32_t take_high_mul_operand(reader *r) {
  static const int32_t edges[] = {INT32_MIN, INT32_MIN + 1, -(1 << 30), -1, 0, 1, 1 << 30, INT32_MAX};
  return take(r, 0, 3) ? take(r, INT32_MIN, INT32_MAX) : edges[take(r, 0, 7)];
}

static void fuzz_requantize(reader *r) {
  mcuq_requantize_params p;
  int32_t i, wide;
  for (i = 0; i < 16; ++i) {
    const int32_t a = take_high_mul_operand(r), b = take_high_mul_operand(r);
    expect(mcuq_sat_rounding_doubling_high_mul(a, b) == gemmlowp_high_mul(a, b),
           "mcuq_sat_rounding_doubling_high_mul differs from gemmlowp's");
    ++compared;
  }
  p.size = take(r, 1, MAX_ELEMS < 300 ? MAX_ELEMS : 300);
  take_inputs(r, p.size);
  for (wide = 0; wide <= 1; ++wide) {
    const int32_t lo = wide ? INT16_MIN : INT8_MIN, hi = wide ? INT16_MAX : INT8_MAX;
    int32_t multiplier;
    int8_t shift;
    p.rounding = take_rounding(r);
    take_scaling(r, p.rounding, 0, &multiplier, &shift);
    p.multiplier = multiplier;
    p.shift = shift;
    p.in_zero_point = take(r, lo, hi + 1); /* hi + 1: outside the type, must be refused */
    p.out_zero_point = take(r, lo, hi);
    p.act_min = take(r, 0, 3) ? lo : take(r, lo, hi);
    p.act_max = take(r, 0, 3) ? hi : take(r, p.act_min, hi);
    if (p.in_zero_point > hi) {
      expect((wide ? mcuq_requantize_s16(&p, in16, out16) : mcuq_requantize_s8(&p, in8, out8)) ==
                 MCUQ_ERROR_ARGUMENT,
             "a requantize kernel accepted a zero point outside its type");
      continue;
    }
    if (wide) copy16(p.size); else copy8(p.size);
    for (i = 0; i < p.size; ++i)
      want[i] = mcuq_requantize_s32(in32[i] - p.in_zero_point, p.multiplier, p.shift, p.rounding, p.out_zero_point,
                                    p.act_min, p.act_max);
    if (wide) {
      expect(mcuq_requantize_s16(&p, in16, out16) == MCUQ_OK, "mcuq_requantize_s16 refused");
      expect_equal("mcuq_requantize_s16", out16, 1, want, p.size);
    } else {
      expect(mcuq_requantize_s8(&p, in8, out8) == MCUQ_OK, "mcuq_requantize_s8 refused");
      expect_equal("mcuq_requantize_s8", out8, 0, want, p.size);
    }
  }
}

static void fuzz_lut(reader *r) {
  static int8_t table8[256];
  static int16_t table16[513];
  const int32_t size = take(r, 1, MAX_ELEMS < 400 ? MAX_ELEMS : 400);
  mcuq_lut_s16_params p16;
  int32_t i;
  take_inputs(r, size);
  for (i = 0; i < 256; ++i) table8[i] = (int8_t)take(r, INT8_MIN, INT8_MAX);
  for (i = 0; i < 513; ++i) table16[i] = (int16_t)(take(r, 0, 3) ? take(r, INT16_MIN, INT16_MAX) : (i - 256) * 128);
  p16.size = size;
  p16.step_shift = take(r, 0, 1) ? 7 : take(r, 0, 8); /* 8: outside the contract, refused */
  p16.start = take(r, 0, 1) ? -32768 : take(r, INT16_MIN, INT16_MAX);
  copy8(size);
  for (i = 0; i < size; ++i) want[i] = table8[in32[i] + 128];
  expect(mcuq_lut_s8(size, table8, in8, out8) == MCUQ_OK, "mcuq_lut_s8 refused");
  expect_equal("mcuq_lut_s8", out8, 0, want, size);
  copy16(size);
  if (p16.step_shift > 7) {
    expect(mcuq_lut_s16(&p16, table16, in16, out16) == MCUQ_ERROR_ARGUMENT, "mcuq_lut_s16 accepted step_shift 8");
    return;
  }
  for (i = 0; i < size; ++i) want[i] = reference_lut_s16(table16, p16.start, p16.step_shift, in32[i]);
  expect(mcuq_lut_s16(&p16, table16, in16, out16) == MCUQ_OK, "mcuq_lut_s16 refused");
  expect_equal("mcuq_lut_s16", out16, 1, want, size);
}

/* Elementwise product. b's layout by its strides: the same shape (inner,
 * 1), a per-channel gate (1, 0), a per-pixel map (0, 1), one value (0, 0),
 * and the two other pairs the contract allows, (1, 1) and (inner, 0); b
 * sits at the end of its buffer, so a read past it leaves the array.
 * Outside the contract: an outer stride of inner + 1, an inner stride of 2,
 * no rows (refused as shapes); a shift one past the rule's range (31, or 8
 * for the int16 product's int64 rule), a zero point past the type (refused
 * as arguments). */
#define INNER (-1)      /* p.inner */
#define PAST_INNER (-2) /* p.inner + 1 */
static const int32_t layouts[16][2] = {{INNER, 1}, {INNER, 1}, {INNER, 1},      {INNER, 1}, {1, 0}, {1, 0},
                                       {1, 0},     {0, 1},     {0, 1},          {0, 1},     {0, 0}, {1, 1},
                                       {INNER, 0}, {PAST_INNER, 1}, {INNER, 2}, {0, 1}};

static void fuzz_mul(reader *r) {
  mcuq_mul_params p;
  int32_t i, n, b_n, wide, layout, bad_shape, mode;
  const int8_t *b_s8;
  const int16_t *b_s16;
  p.inner = take(r, 0, 3) ? take(r, 1, 64) : take(r, 1, 400);
  if (p.inner > MAX_ELEMS) p.inner = MAX_ELEMS;
  p.outer = take(r, 1, 16);
  if (p.outer * p.inner > MAX_ELEMS) p.outer = MAX_ELEMS / p.inner;
  n = p.outer * p.inner;
  /* (outer stride, inner stride) by layout, INNER for p.inner: 0-3 the same
   * shape, 4-6 a gate, 7-9 a map, 10 one value, 11-12 the other pairs;
   * 13-15 outside the contract */
  layout = take(r, 0, 15);
  p.b_outer_stride = layouts[layout][0] == INNER        ? p.inner
                     : layouts[layout][0] == PAST_INNER ? p.inner + 1
                                                        : layouts[layout][0];
  p.b_inner_stride = layouts[layout][1];
  if (layout == 15) p.outer = 0;
  bad_shape = layout >= 13;
  b_n = bad_shape ? 1 : (p.outer - 1) * p.b_outer_stride + (p.inner - 1) * p.b_inner_stride + 1;
  take_inputs(r, n);
  mode = take(r, 0, 4);
  b_s8 = b8 + MAX_ELEMS - b_n;
  b_s16 = b16 + MAX_ELEMS - b_n;
  for (i = 0; i < b_n; ++i) b8[MAX_ELEMS - b_n + i] = (int8_t)take_activation(r, INT8_MIN, INT8_MAX, mode);
  for (i = 0; i < b_n; ++i) b16[MAX_ELEMS - b_n + i] = (int16_t)take_activation(r, INT16_MIN, INT16_MAX, mode);
  for (wide = 0; wide <= 1; ++wide) {
    const int32_t lo = wide ? INT16_MIN : INT8_MIN, hi = wide ? INT16_MAX : INT8_MAX;
    const char *name = wide ? "mcuq_mul_s16" : "mcuq_mul_s8";
    void *out = wide ? (void *)out16 : (void *)out8;
    int32_t multiplier, bad_argument;
    int8_t shift;
    mcuq_status status;
    p.rounding = take_rounding(r);
    take_scaling(r, p.rounding, wide, &multiplier, &shift);
    p.multiplier = multiplier;
    p.shift = shift;
    /* int16 layers are mostly symmetric (zero points 0) */
    p.a_zero_point = wide && take(r, 0, 1) ? 0 : take(r, lo, hi);
    p.b_zero_point = wide && take(r, 0, 1) ? 0 : take(r, lo, hi);
    p.out_zero_point = wide && take(r, 0, 1) ? 0 : take(r, lo, hi);
    p.act_min = take(r, 0, 3) ? lo : take(r, lo, hi);
    p.act_max = take(r, 0, 3) ? hi : take(r, p.act_min, hi);
    bad_argument = take(r, 0, 15);
    if (bad_argument == 0) p.shift = (wide && p.rounding != MCUQ_ROUND_SHIFT) ? 8 : 31;
    if (bad_argument == 1) p.b_zero_point = hi + 1;
    clear_outputs();
    status = wide ? mcuq_mul_s16(&p, in16, b_s16, out16) : mcuq_mul_s8(&p, in8, b_s8, out8);
    if (bad_shape) {
      expect(status == MCUQ_ERROR_SHAPE, "a mul kernel accepted strides or rows outside its contract");
      continue;
    }
    if (bad_argument <= 1) {
      expect(status == MCUQ_ERROR_ARGUMENT, "a mul kernel accepted a shift or zero point outside its contract");
      continue;
    }
    expect(status == MCUQ_OK, name);
    if (wide) copy16(n); else copy8(n);
    for (i = 0; i < b_n; ++i) other32[i] = wide ? b_s16[i] : b_s8[i];
    reference_mul(&p, in32, other32, wide, want);
    expect_equal(name, out, wide, want, n);
    expect_untouched(name, out, wide, n, MAX_ELEMS);
  }
}

/* Padding and upsampling, int8 and int16. Pads of 0 to 4 on each side
 * (often equal; any of them 0, as a causal Conv1d's left-only pad), factors
 * of 1 to 4 (mostly 2). Outside the contract: a negative pad or factor, a plane of
 * no rows, a padded or upsampled size past int32, a pad value past the
 * type: refused. */
static void fuzz_shape(reader *r) {
  mcuq_pad2d_params pad;
  mcuq_upsample_params up;
  int32_t n, out_n, plane, wide, bad;
  /* padding */
  pad.in_h = take(r, 1, 12);
  pad.in_w = take(r, 1, 12);
  pad.top = take(r, 0, 4);
  pad.bottom = take(r, 0, 1) ? pad.top : take(r, 0, 4);
  pad.left = take(r, 0, 1) ? pad.top : take(r, 0, 4);
  pad.right = take(r, 0, 1) ? pad.left : take(r, 0, 4);
  plane = (pad.in_h + pad.top + pad.bottom) * (pad.in_w + pad.left + pad.right);
  pad.channels = take(r, 1, 5);
  if (pad.channels * plane > MAX_ELEMS) pad.channels = MAX_ELEMS / plane;
  bad = take(r, 0, 31);
  if (bad == 0) pad.left = -1;
  if (bad == 1) pad.bottom = -take(r, 1, 3);
  if (bad == 2) pad.in_h = 0;
  if (bad == 3) pad.top = pad.bottom = 1 << 30; /* past int32 */
  if (bad == 4) pad.channels = 0;
  n = pad.channels * pad.in_h * pad.in_w;
  out_n = pad.channels * plane;
  if (pad.channels > 0) {
    take_inputs(r, n);
    for (wide = 0; wide <= 1; ++wide) {
      const int32_t lo = wide ? INT16_MIN : INT8_MIN, hi = wide ? INT16_MAX : INT8_MAX;
      const char *name = wide ? "mcuq_pad2d_s16" : "mcuq_pad2d_s8";
      void *out = wide ? (void *)out16 : (void *)out8;
      const int32_t value_kind = take(r, 0, 15);
      mcuq_status status;
      pad.value = value_kind == 0 ? hi + 1 : value_kind == 1 ? lo - 1 : take(r, lo, hi);
      clear_outputs();
      status = wide ? mcuq_pad2d_s16(&pad, in16, out16) : mcuq_pad2d_s8(&pad, in8, out8);
      if (bad <= 4) {
        expect(status == MCUQ_ERROR_SHAPE, "a pad kernel accepted a shape outside its contract");
        continue;
      }
      if (value_kind <= 1) {
        expect(status == MCUQ_ERROR_ARGUMENT, "a pad kernel accepted a value outside its type");
        continue;
      }
      expect(status == MCUQ_OK, name);
      if (wide) copy16(n); else copy8(n);
      reference_pad2d(&pad, in32, want);
      expect_equal(name, out, wide, want, out_n);
      expect_untouched(name, out, wide, out_n, MAX_ELEMS);
    }
  }

  /* upsampling */
  up.in_h = take(r, 1, 10);
  up.in_w = take(r, 1, 10);
  up.factor_h = take(r, 0, 1) ? 2 : take(r, 1, 4);
  up.factor_w = take(r, 0, 1) ? up.factor_h : take(r, 1, 4);
  plane = up.in_h * up.factor_h * up.in_w * up.factor_w;
  up.channels = take(r, 1, 5);
  if (up.channels * plane > MAX_ELEMS) up.channels = MAX_ELEMS / plane;
  if (up.channels == 0) return;
  bad = take(r, 0, 31);
  if (bad == 0) up.factor_w = 0;
  if (bad == 1) up.factor_h = -take(r, 1, 2);
  if (bad == 2) up.in_w = 0;
  if (bad == 3) up.factor_h = 1 << 16, up.factor_w = 1 << 15; /* past int32 */
  n = up.channels * up.in_h * up.in_w;
  out_n = up.channels * plane;
  take_inputs(r, n > 0 ? n : 1);
  for (wide = 0; wide <= 1; ++wide) {
    const char *name = wide ? "mcuq_upsample_nearest_s16" : "mcuq_upsample_nearest_s8";
    void *out = wide ? (void *)out16 : (void *)out8;
    mcuq_status status;
    clear_outputs();
    status = wide ? mcuq_upsample_nearest_s16(&up, in16, out16) : mcuq_upsample_nearest_s8(&up, in8, out8);
    if (bad <= 3) {
      expect(status == MCUQ_ERROR_SHAPE, "an upsampling kernel accepted a shape outside its contract");
      continue;
    }
    expect(status == MCUQ_OK, name);
    if (wide) copy16(n); else copy8(n);
    reference_upsample_nearest(&up, in32, want);
    expect_equal(name, out, wide, want, out_n);
    expect_untouched(name, out, wide, out_n, MAX_ELEMS);
  }
}

/* An exp table: mostly the exporter's shape (2^15 at 0, decaying
 * geometrically by a drawn ratio, often close to 1), sometimes any
 * non-increasing table, sometimes arbitrary int32 entries (the kernel holds
 * them to [0, 2^15]; a row whose entries are all 0 then has no sum and is
 * refused), sometimes zeros but for a few entries. */
static void take_exp_table(reader *r, int32_t *table) {
  const int32_t kind = take(r, 0, 7);
  int32_t d;
  if (kind <= 4) {
    const int64_t ratio = kind <= 2 ? take(r, 50000, 65535) : take(r, 0, 65535);
    table[0] = 32768;
    for (d = 1; d < 256; ++d) table[d] = (int32_t)((table[d - 1] * ratio + 32768) >> 16);
  } else if (kind == 5) {
    table[0] = take(r, 0, 1) ? 32768 : take(r, 1, 32768);
    for (d = 1; d < 256; ++d) {
      const int32_t step = take(r, 0, 1023);
      table[d] = table[d - 1] > step ? table[d - 1] - step : 0;
    }
  } else if (kind == 6) {
    for (d = 0; d < 256; ++d)
      table[d] = take(r, 0, 1) ? take(r, INT32_MIN, INT32_MAX) : take(r, -2, 32770);
  } else {
    for (d = 0; d < 256; ++d) table[d] = 0;
    int32_t k;
    for (k = take(r, 0, 3); k > 0; --k) {
      d = take(r, 0, 255); /* drawn before the entry: the order is the decoding's */
      table[d] = take(r, -1, 40000);
    }
  }
}

/* Rows whose exp sum is 2^17 exactly: three maxima, entries 2^15 - j and j
 * (j odd, drawn small), the rest 0 (the table is patched to match), in a
 * shuffled order. p = j 2^16 / 2^17 is then half-way between two integers,
 * where the rounding of the quotient shows. */
static void take_tie_rows(reader *r, int32_t *table, mcuq_softmax_params *p) {
  const int32_t j = 2 * take(r, 0, 255) + 1;
  const int32_t d_rest = take(r, 1, 85), d_big = 85 + take(r, 1, 85), d_small = 170 + take(r, 1, 85);
  const int32_t top = INT8_MAX; /* every d up to 255 in the row */
  int32_t row, k;
  table[0] = 32768;
  table[d_big] = 32768 - j;
  table[d_small] = j;
  table[d_rest] = 0;
  p->rows = take(r, 1, 4);
  p->depth = take(r, 5, 16);
  if (p->rows * p->depth > MAX_ELEMS) p->rows = MAX_ELEMS / p->depth;
  for (row = 0; row < p->rows; ++row) {
    int8_t *x = in8 + row * p->depth;
    for (k = 0; k < p->depth; ++k)
      x[k] = (int8_t)(k < 3 ? top : k == 3 ? top - d_big : k == 4 ? top - d_small : top - d_rest);
    for (k = p->depth - 1; k > 0; --k) { /* Fisher-Yates */
      const int32_t other = take(r, 0, k);
      const int8_t swap = x[k];
      x[k] = x[other];
      x[other] = swap;
    }
  }
}

/* A softmax call and its reference; `refusal` the status an argument
 * outside the contract must get (MCUQ_OK: none). */
static void compare_softmax(const mcuq_softmax_params *p, const int32_t *table, const int8_t *input,
                            const int32_t *input32, int8_t *output, int32_t *expected, int32_t capacity,
                            mcuq_status refusal) {
  mcuq_status status, want_status;
  int32_t n;
  memset(output, UNTOUCHED, (size_t)capacity);
  status = mcuq_softmax_s8(p, table, input, output);
  if (refusal != MCUQ_OK) {
    expect(status == refusal, "mcuq_softmax_s8 accepted an argument outside its contract");
    return;
  }
  n = p->rows * p->depth;
  want_status = reference_softmax(p, table, input32, expected);
  if (want_status != MCUQ_OK) {
    expect(status == MCUQ_ERROR_ARGUMENT, "mcuq_softmax_s8 accepted a row whose exp sum is not positive");
    return;
  }
  expect(status == MCUQ_OK, "mcuq_softmax_s8 refused");
  expect_equal("mcuq_softmax_s8", output, 0, expected, n);
  expect_untouched("mcuq_softmax_s8", output, 0, n, capacity);
}

/* Softmax: rows x depth, two output qparams per input (the same table and
 * data). Outside the contract: no depth, a zero point past int8, a shift of
 * 31 (refused); on the host also depths near the 65535 limit (the int32
 * sum's bound: every entry 2^15), 65536 and rows whose product with the
 * depth passes int32 (refused). */
static void fuzz_softmax(reader *r) {
  static int32_t table[256];
  mcuq_softmax_params p;
  int32_t call;
  take_exp_table(r, table);
  p.rows = take(r, 1, 8);
  p.depth = take(r, 0, 3) ? take(r, 1, 40) : take(r, 1, 1000);
  if (p.rows * p.depth > MAX_ELEMS) p.depth = MAX_ELEMS / p.rows;
#ifdef MCUQ_FUZZ_HOST
  if (take(r, 0, 31) == 0) {
    static int8_t big_in[65536], big_out[65536];
    static int32_t big_in32[65536], big_want[65536];
    const int32_t mode = take(r, 0, 3);
    int32_t i, top;
    p.rows = 1;
    p.depth = take(r, 0, 3) ? take(r, 65000, 65535) : take(r, 65536, 65540);
    top = take(r, INT8_MIN, INT8_MAX);
    /* mostly the row's maximum (table[0] each), as the worst-case sum */
    for (i = 0; i < 65536; ++i)
      big_in32[i] = big_in[i] = (int8_t)(mode == 0 ? top : mode == 1 && take(r, 0, 15) ? top : take(r, INT8_MIN, top));
    p.rounding = take_rounding(r);
    {
      int32_t multiplier;
      int8_t shift;
      take_scaling(r, p.rounding, 0, &multiplier, &shift);
      p.multiplier = multiplier;
      p.shift = shift;
    }
    p.out_zero_point = take(r, INT8_MIN, INT8_MAX);
    p.act_min = INT8_MIN;
    p.act_max = INT8_MAX;
    compare_softmax(&p, table, big_in, big_in32, big_out, big_want, 65536,
                    p.depth > 65535 ? MCUQ_ERROR_SHAPE : MCUQ_OK);
    p.depth = take(r, 2, 65535); /* rows up to 2^30 + 1 */
    p.rows = INT32_MAX / p.depth + 1;
    compare_softmax(&p, table, big_in, big_in32, big_out, big_want, 0, MCUQ_ERROR_SHAPE);
    return;
  }
#endif
  if (take(r, 0, 7) == 0) {
    take_tie_rows(r, table, &p);
  } else {
    take_inputs(r, p.rows * p.depth);
  }
  copy8(p.rows * p.depth);
  for (call = 0; call < 2; ++call) {
    int32_t multiplier;
    int8_t shift;
    const int32_t bad = take(r, 0, 15);
    mcuq_status refusal = MCUQ_OK;
    p.rounding = take_rounding(r);
    take_scaling(r, p.rounding, 0, &multiplier, &shift);
    p.multiplier = multiplier;
    /* sometimes an output scale near 2^-16, where each step of p shows */
    p.shift = take(r, 0, 3) ? shift : take(r, 0, 1);
    /* the usual output: scale 1/256, zero point -128 */
    p.out_zero_point = take(r, 0, 1) ? INT8_MIN : take(r, INT8_MIN, INT8_MAX);
    p.act_min = take(r, 0, 3) ? INT8_MIN : take(r, INT8_MIN, INT8_MAX);
    p.act_max = take(r, 0, 3) ? INT8_MAX : take(r, p.act_min, INT8_MAX);
    if (bad == 0) p.out_zero_point = INT8_MAX + 1, refusal = MCUQ_ERROR_ARGUMENT;
    if (bad == 1) p.shift = 31, refusal = MCUQ_ERROR_ARGUMENT;
    if (bad == 2) {
      const int32_t depth = p.depth;
      p.depth = 0;
      compare_softmax(&p, table, in8, in32, out8, want, MAX_ELEMS, MCUQ_ERROR_SHAPE);
      p.depth = depth;
      continue;
    }
    compare_softmax(&p, table, in8, in32, out8, want, MAX_ELEMS, refusal);
  }
}

static const char *family_name(void) {
  static const char *const names[] = {"conv2d", "fully_connected", "pool2d", "add",    "requantize",
                                      "lut",    "mul",             "shape",  "softmax"};
  return names[MCUQ_FUZZ_FAMILY];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  reader r;
  size_t i;
  r.data = data;
  r.size = size;
  r.at = 0;
  r.filler = 2166136261u;
  for (i = 0; i < size; ++i) r.filler = (r.filler ^ data[i]) * 16777619u;
  switch (MCUQ_FUZZ_FAMILY) {
    case FAMILY_CONV2D: fuzz_conv2d(&r); break;
    case FAMILY_FULLY_CONNECTED: fuzz_fully_connected(&r); break;
    case FAMILY_POOL2D: fuzz_pool2d(&r); break;
    case FAMILY_ADD: fuzz_add(&r); break;
    case FAMILY_REQUANTIZE: fuzz_requantize(&r); break;
    case FAMILY_LUT: fuzz_lut(&r); break;
    case FAMILY_MUL: fuzz_mul(&r); break;
    case FAMILY_SHAPE: fuzz_shape(&r); break;
    default: fuzz_softmax(&r); break;
  }
  return 0;
}

/* n inputs of pseudo-random bytes and lengths: the fuzzers' replay in the
 * test suite, on the host and on emulated MCUs. Returns the kernel calls
 * compared (each failure has stopped the run). */
long mcuq_fuzz_replay(long n);
long mcuq_fuzz_replay(long n) {
  static uint8_t bytes[2048];
  uint32_t state = 20261204u;
  long k;
  for (k = 0; k < n; ++k) {
    size_t size, i;
    state = state * 1664525u + 1013904223u;
    size = (state >> 8) % sizeof bytes;
    for (i = 0; i < size; ++i) {
      state = state * 1664525u + 1013904223u;
      bytes[i] = (uint8_t)(state >> 24);
    }
    LLVMFuzzerTestOneInput(bytes, size);
  }
  return compared;
}

const char *mcuq_fuzz_family(void);
const char *mcuq_fuzz_family(void) { return family_name(); }

#ifdef MCUQ_FUZZ_STANDALONE
int main(int argc, char **argv) {
  const long n = argc > 1 ? atol(argv[1]) : 2000;
  const long calls = mcuq_fuzz_replay(n);
  printf("fuzz_kernels %s: %ld inputs, %ld kernel calls compared, 0 failed\n", family_name(), n, calls);
  return 0;
}
#endif
