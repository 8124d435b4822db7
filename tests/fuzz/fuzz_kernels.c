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
 *   conv2d          mcuq_conv2d_s8, _im2col_s8, depthwise_s8, the W4 pair, s16 pair
 *   fully_connected mcuq_fully_connected_s8, _s8_w4, _s16
 *   pool2d          max/avg pooling, s8 and s16
 *   add             mcuq_add_s8/_s16
 *   requantize      mcuq_requantize_s8/_s16
 *   lut             mcuq_lut_s8/_s16
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

/* ---- the families ----------------------------------------------------------- */

static int8_t in8[MAX_ELEMS], out8[MAX_ELEMS], b8[MAX_ELEMS], weights[MAX_ELEMS], packed[MAX_ELEMS / 2 + 1];
static int16_t in16[MAX_ELEMS], out16[MAX_ELEMS], b16[MAX_ELEMS];
static int32_t in32[MAX_ELEMS], other32[MAX_ELEMS], want[MAX_ELEMS];

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

static void fuzz_fully_connected(reader *r) {
  scaling s;
  int32_t bias32[MAX_CHANNELS];
  int64_t bias_as64[MAX_CHANNELS], bias64[MAX_CHANNELS];
  const int32_t in_features = take(r, 1, MAX_ELEMS < 200 ? MAX_ELEMS : 200);
  const int32_t wanted = take(r, 1, 20);
  const int32_t out_features = in_features * wanted <= MAX_ELEMS ? wanted : MAX_ELEMS / in_features;
  const int32_t w_n = in_features * out_features;
  int32_t i;
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
  int32_t i, wide;
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
     * multipliers are below 1 so the sum cannot overflow. */
    p.left_shift = take(r, 0, wide ? 15 : 20);
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
    if (wide) copy16(p.size); else copy8(p.size);
    for (i = 0; i < p.size; ++i) other32[i] = wide ? b16[i] : b8[i];
    for (i = 0; i < p.size; ++i) {
      /* The header's formula, step by step. */
      const int32_t a = mcuq_scale_s32(mcuq_saturating_left_shift(in32[i] - p.a_zero_point, p.left_shift),
                                       p.a_multiplier, p.a_shift, p.rounding);
      const int32_t b = mcuq_scale_s32(mcuq_saturating_left_shift(other32[i] - p.b_zero_point, p.left_shift),
                                       p.b_multiplier, p.b_shift, p.rounding);
      want[i] = mcuq_requantize_s32(mcuq_saturate_s64_to_s32((int64_t)a + b), p.out_multiplier, p.out_shift,
                                    p.rounding, p.out_zero_point, p.act_min, p.act_max);
    }
    if (wide) {
      expect(mcuq_add_s16(&p, in16, b16, out16) == MCUQ_OK, "mcuq_add_s16 refused");
      expect_equal("mcuq_add_s16", out16, 1, want, p.size);
    } else {
      expect(mcuq_add_s8(&p, in8, b8, out8) == MCUQ_OK, "mcuq_add_s8 refused");
      expect_equal("mcuq_add_s8", out8, 0, want, p.size);
    }
  }
}

static void fuzz_requantize(reader *r) {
  mcuq_requantize_params p;
  int32_t i, wide;
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

static const char *family_name(void) {
  static const char *const names[] = {"conv2d", "fully_connected", "pool2d", "add", "requantize", "lut"};
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
    default: fuzz_lut(&r); break;
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
