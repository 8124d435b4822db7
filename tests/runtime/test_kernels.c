/* Host tests of the mcuq runtime kernels: small hand-checked cases, the
 * grouped and depthwise convolutions against a naive reference written here
 * with another loop order, and the argument checks.
 *
 * Exits 1 on any failure; the last line reads
 *   test_kernels: N checks, F failed
 * The error-code tests are skipped when built with -DMCUQ_NO_CHECKS. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mcuq_internal.h"
#include "mcuq_runtime.h"
#include "reference_kernels.h"

static long checks = 0, failures = 0;

static void check_eq(long long got, long long want, const char *what, int line) {
  ++checks;
  if (got != want) {
    ++failures;
    fprintf(stderr, "test_kernels.c:%d: FAIL %s: got %lld, want %lld\n", line, what, got, want);
  }
}

#define CHECK_EQ(got, want) check_eq((long long)(got), (long long)(want), #got, __LINE__)
#define COUNT(a) ((int32_t)(sizeof(a) / sizeof((a)[0])))

/* Compares two int arrays of any element types as one check, reporting the
 * first mismatch. */
#define CHECK_ARRAY(got, want, n) check_array_at(__LINE__, #got, (n), (got), (want))
#define check_array_at(line, name, n, got, want)                                                            \
  do {                                                                                                      \
    int32_t i_, bad_ = -1;                                                                                  \
    for (i_ = 0; i_ < (n) && bad_ < 0; ++i_)                                                                \
      if ((long long)(got)[i_] != (long long)(want)[i_]) bad_ = i_;                                         \
    ++checks;                                                                                               \
    if (bad_ >= 0) {                                                                                        \
      ++failures;                                                                                           \
      fprintf(stderr, "test_kernels.c:%d: FAIL %s[%ld]: got %lld, want %lld\n", (line), (name), (long)bad_, \
              (long long)(got)[bad_], (long long)(want)[bad_]);                                             \
    }                                                                                                       \
  } while (0)

/* Deterministic pseudo-random numbers (LCG) for the reference comparisons. */
static uint32_t rng_state = 12345u;
static int32_t rand_range(int32_t lo, int32_t hi) {
  rng_state = rng_state * 1664525u + 1013904223u;
  return lo + (int32_t)((rng_state >> 8) % (uint32_t)(hi - lo + 1));
}

static const int32_t ONE_MULT = 1 << 30; /* multiplier 2^30: M = 2^(shift - 1) */

static mcuq_requant make_requant(const int32_t *multiplier, const int8_t *shift, int32_t per_channel,
                                 mcuq_rounding rounding, int32_t zero_point, int32_t act_min, int32_t act_max) {
  mcuq_requant r;
  r.multiplier = multiplier;
  r.shift = shift;
  r.per_channel = per_channel;
  r.rounding = rounding;
  r.zero_point = zero_point;
  r.act_min = act_min;
  r.act_max = act_max;
  return r;
}

static mcuq_conv2d_params make_conv(int32_t in_c, int32_t in_h, int32_t in_w, int32_t out_c, int32_t k_h, int32_t k_w,
                                    int32_t stride_h, int32_t stride_w, int32_t pad_h, int32_t pad_w,
                                    int32_t dilation_h, int32_t dilation_w, int32_t groups, int32_t in_zero_point) {
  mcuq_conv2d_params p;
  p.in_c = in_c;
  p.in_h = in_h;
  p.in_w = in_w;
  p.out_c = out_c;
  p.k_h = k_h;
  p.k_w = k_w;
  p.stride_h = stride_h;
  p.stride_w = stride_w;
  p.pad_h = pad_h;
  p.pad_w = pad_w;
  p.dilation_h = dilation_h;
  p.dilation_w = dilation_w;
  p.groups = groups;
  p.in_zero_point = in_zero_point;
  /* PyTorch's output size formula. */
  p.out_h = (in_h + 2 * pad_h - dilation_h * (k_h - 1) - 1) / stride_h + 1;
  p.out_w = (in_w + 2 * pad_w - dilation_w * (k_w - 1) - 1) / stride_w + 1;
  return p;
}

static mcuq_pool2d_params make_pool(int32_t channels, int32_t in_h, int32_t in_w, int32_t k, int32_t stride,
                                    int32_t pad, int32_t count_include_pad, int32_t zero_point, int32_t act_min,
                                    int32_t act_max) {
  mcuq_pool2d_params p;
  p.channels = channels;
  p.in_h = in_h;
  p.in_w = in_w;
  p.k_h = p.k_w = k;
  p.stride_h = p.stride_w = stride;
  p.pad_h = p.pad_w = pad;
  p.out_h = (in_h + 2 * pad - k) / stride + 1;
  p.out_w = (in_w + 2 * pad - k) / stride + 1;
  p.count_include_pad = count_include_pad;
  p.zero_point = zero_point;
  p.act_min = act_min;
  p.act_max = act_max;
  return p;
}

/* ---- convolution: a hand-computed case ------------------------------------ */

/* 1 channel, 5x5 input, 3x3 kernel, stride 2, padding 1 -> 3x3. Padded taps
 * read the input zero point 3. Window sums (without bias), by hand:
 *   out(0,0): pad row 3*(1+0-1) = 0; row 0 [3 1 2].[2 1 0] = 7;
 *             row 1 [3 -1 -2].[0 -1 1] = -1                        ->  6
 *   out(0,1) 6, out(0,2) 21, out(1,0) 11, out(1,1) 4, out(1,2) -4,
 *   out(2,0) 4, out(2,1) 3, out(2,2) -4
 * bias -11 -> acc -5 -5 10 / 0 -7 -15 / -7 -8 -15; M = 0.5 (2^30, shift 0),
 * output zero point -2. */
/* clang-format off */
static const int8_t hand_input[25] = { 1,  2,  3,  4,  5,
                                      -1, -2, -3, -4, -5,
                                       0,  1,  0,  1,  0,
                                       2,  2,  2,  2,  2,
                                      -3,  0,  3,  0, -3};
static const int8_t hand_weights[9] = {1,  0, -1,
                                       2,  1,  0,
                                       0, -1,  1};
/* clang-format on */

static void test_conv_by_hand(void) {
  const mcuq_conv2d_params p = make_conv(1, 5, 5, 1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 3);
  const int32_t bias[1] = {-11};
  const int32_t mult[1] = {ONE_MULT};
  const int8_t shift[1] = {0};
  int8_t out[9];
  CHECK_EQ(p.out_h, 3);
  CHECK_EQ(p.out_w, 3);
  {
    /* Double (and single) rounding: ties toward +inf, -2.5 -> -2. */
    const int8_t want[9] = {-4, -4, 3, -2, -5, -9, -5, -6, -9};
    mcuq_requant r = make_requant(mult, shift, 0, MCUQ_ROUND_DOUBLE, -2, -128, 127);
    CHECK_EQ(mcuq_conv2d_s8(&p, hand_input, hand_weights, bias, &r, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 9);
    r.rounding = MCUQ_ROUND_SINGLE;
    CHECK_EQ(mcuq_conv2d_s8(&p, hand_input, hand_weights, bias, &r, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 9);
    /* The depthwise kernel computes the same for one channel. */
    r.rounding = MCUQ_ROUND_DOUBLE;
    CHECK_EQ(mcuq_depthwise_conv2d_s8(&p, hand_input, hand_weights, bias, &r, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 9);
  }
  {
    /* Power-of-two rule: ties away from zero, -2.5 -> -3. */
    const int8_t want[9] = {-5, -5, 3, -2, -6, -10, -6, -6, -10};
    const mcuq_requant r = make_requant(mult, shift, 0, MCUQ_ROUND_SHIFT, -2, -128, 127);
    CHECK_EQ(mcuq_conv2d_s8(&p, hand_input, hand_weights, bias, &r, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 9);
  }
  {
    /* Fused ReLU-like clamp [-5, 0]. */
    const int8_t want[9] = {-4, -4, 0, -2, -5, -5, -5, -5, -5};
    const mcuq_requant r = make_requant(mult, shift, 0, MCUQ_ROUND_DOUBLE, -2, -5, 0);
    CHECK_EQ(mcuq_conv2d_s8(&p, hand_input, hand_weights, bias, &r, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 9);
  }
  {
    /* 16-bit activations: the same sums; M = 0.5 through the int64 rule
     * (reduced multiplier 2^14, ties toward +inf). */
    int16_t in16[25], out16[9];
    const int64_t bias64[1] = {-11};
    const int16_t want[9] = {-4, -4, 3, -2, -5, -9, -5, -6, -9};
    const mcuq_requant r = make_requant(mult, shift, 0, MCUQ_ROUND_DOUBLE, -2, -32768, 32767);
    int32_t i;
    for (i = 0; i < 25; ++i) in16[i] = hand_input[i];
    CHECK_EQ(mcuq_conv2d_s16(&p, in16, hand_weights, bias64, &r, out16), MCUQ_OK);
    CHECK_ARRAY(out16, want, 9);
    CHECK_EQ(mcuq_depthwise_conv2d_s16(&p, in16, hand_weights, bias64, &r, out16), MCUQ_OK);
    CHECK_ARRAY(out16, want, 9);
  }
}

/* ---- convolution: against a naive reference ------------------------------- */

#define MAX_ELEMS MCUQ_REFERENCE_MAX_ELEMS

/* Runs one convolution shape through the generic kernel (and the depthwise
 * one where the shape is depthwise), 8- and 16-bit, against the reference. */
static void compare_conv(const mcuq_conv2d_params *p, mcuq_rounding rounding, int32_t per_channel) {
  static int8_t in8[MAX_ELEMS], out8[MAX_ELEMS], weights[MAX_ELEMS];
  static int16_t in16[MAX_ELEMS], out16[MAX_ELEMS];
  static int32_t in32[MAX_ELEMS], want[MAX_ELEMS];
  int32_t bias32[64], mult[64];
  int64_t bias8_as64[64], bias64[64];
  int8_t shift8[64], shift16[64];
  const int32_t in_n = p->in_c * p->in_h * p->in_w, out_n = p->out_c * p->out_h * p->out_w;
  const int32_t w_n = p->out_c * (p->in_c / p->groups) * p->k_h * p->k_w;
  const int depthwise = p->groups == p->in_c && p->out_c % p->in_c == 0;
  mcuq_requant r;
  int32_t i, unclamped = 0;
  if (in_n > MAX_ELEMS || out_n > MAX_ELEMS || w_n > MAX_ELEMS || p->out_c > 64) {
    fprintf(stderr, "compare_conv: shape too large for the test buffers\n");
    ++failures;
    return;
  }
  for (i = 0; i < w_n; ++i) weights[i] = (int8_t)rand_range(-128, 127);
  for (i = 0; i < p->out_c; ++i) {
    bias8_as64[i] = bias32[i] = rand_range(-20000, 20000);
    bias64[i] = (int64_t)rand_range(-20000, 20000) * 200;
    mult[i] = rand_range(1 << 30, 0x7FFFFFFF);
    shift8[i] = (int8_t)rand_range(-12, -7);
    shift16[i] = (int8_t)rand_range(-18, -10);
  }

  /* 8-bit activations */
  for (i = 0; i < in_n; ++i) in32[i] = in8[i] = (int8_t)rand_range(-128, 127);
  r = make_requant(mult, shift8, per_channel, rounding, rand_range(-10, 10), -128, 127);
  reference_conv(p, in32, weights, bias8_as64, &r, 0, want);
  memset(out8, 0x55, sizeof out8);
  CHECK_EQ(mcuq_conv2d_s8(p, in8, weights, bias32, &r, out8), MCUQ_OK);
  CHECK_ARRAY(out8, want, out_n);
  {
    /* The blocked kernel, its scratch sized by the public macro and fenced
     * by guard bytes it must not touch. */
    static int8_t scratch[MAX_ELEMS + 8];
    const int32_t bytes = MCUQ_CONV2D_IM2COL_SCRATCH(p->in_c, p->groups, p->k_h, p->k_w);
    memset(scratch, 0x5A, sizeof scratch);
    memset(out8, 0x55, sizeof out8);
    CHECK_EQ(mcuq_conv2d_im2col_s8(p, in8, weights, bias32, &r, scratch + 4, out8), MCUQ_OK);
    CHECK_ARRAY(out8, want, out_n);
    for (i = 0; i < 4; ++i) CHECK_EQ(scratch[i] == 0x5A && scratch[bytes + 4 + i] == 0x5A, 1);
  }
  if (depthwise) {
    memset(out8, 0x55, sizeof out8);
    CHECK_EQ(mcuq_depthwise_conv2d_s8(p, in8, weights, bias32, &r, out8), MCUQ_OK);
    CHECK_ARRAY(out8, want, out_n);
  }
  for (i = 0; i < out_n; ++i) unclamped += want[i] > -128 && want[i] < 127;

  /* 16-bit activations (int64 accumulators) */
  for (i = 0; i < in_n; ++i) in32[i] = in16[i] = (int16_t)rand_range(-32768, 32767);
  r = make_requant(mult, shift16, per_channel, rounding, rand_range(-1000, 1000), -32768, 32767);
  reference_conv(p, in32, weights, bias64, &r, 1, want);
  memset(out16, 0x55, sizeof out16);
  CHECK_EQ(mcuq_conv2d_s16(p, in16, weights, bias64, &r, out16), MCUQ_OK);
  CHECK_ARRAY(out16, want, out_n);
  if (depthwise) {
    memset(out16, 0x55, sizeof out16);
    CHECK_EQ(mcuq_depthwise_conv2d_s16(p, in16, weights, bias64, &r, out16), MCUQ_OK);
    CHECK_ARRAY(out16, want, out_n);
  }
  for (i = 0; i < out_n; ++i) unclamped += want[i] > -32768 && want[i] < 32767;

  /* The comparison means little if every output sits at the clamp. */
  CHECK_EQ(unclamped > out_n / 2, 1);
}

static void test_conv_against_reference(void) {
  const mcuq_conv2d_params shapes[] = {
      /* in_c h w, out_c, k_h k_w, stride, pad, dilation, groups, in zero point */
      make_conv(4, 5, 6, 6, 3, 2, 2, 1, 1, 0, 1, 2, 2, -3), /* grouped, dilated, asymmetric */
      make_conv(3, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 5),  /* plain */
      make_conv(3, 6, 5, 3, 3, 3, 2, 2, 2, 2, 2, 2, 3, -7), /* depthwise, stride and dilation 2 */
      make_conv(3, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 3, 2),  /* depthwise, channel multiplier 2 */
      make_conv(2, 3, 3, 2, 2, 2, 1, 1, 3, 3, 1, 1, 1, 9),  /* padding wider than the kernel */
      make_conv(4, 4, 4, 2, 1, 1, 1, 1, 0, 0, 1, 1, 2, 0),  /* grouped 1x1 */
      make_conv(2, 7, 6, 4, 3, 2, 2, 1, 1, 1, 2, 1, 2, -1), /* depthwise, mixed strides */
      make_conv(6, 4, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 2, 4),  /* grouped 3 in -> 2 out per group */
  };
  const mcuq_rounding roundings[] = {MCUQ_ROUND_DOUBLE, MCUQ_ROUND_SINGLE, MCUQ_ROUND_SHIFT};
  int32_t s, k, per_channel;
  for (s = 0; s < COUNT(shapes); ++s)
    for (k = 0; k < COUNT(roundings); ++k)
      for (per_channel = 0; per_channel <= 1; ++per_channel) compare_conv(&shapes[s], roundings[k], per_channel);
}

/* Random shapes: strides, padding, dilation, groups (depthwise with channel
 * multipliers among them), odd channel counts, one-pixel inputs and
 * outputs, 1x1 and 3x3 kernels (the fast kernels' special cases). */
static void test_conv_random_shapes(void) {
  int32_t n, made = 0;
  for (n = 0; made < 120 && n < 10000; ++n) {
    const int32_t groups = rand_range(1, 4);
    const int32_t depthwise = rand_range(0, 2) == 0;
    const int32_t in_c = depthwise ? groups : groups * rand_range(1, 3);
    const int32_t out_c = groups * rand_range(1, 3);
    const int32_t k = rand_range(0, 3) == 0 ? 1 : rand_range(0, 1) ? 3 : rand_range(1, 4);
    const int32_t k_w = rand_range(0, 3) == 0 ? rand_range(1, 4) : k;
    const mcuq_conv2d_params p =
        make_conv(in_c, rand_range(1, 9), rand_range(1, 9), out_c, k, k_w, rand_range(1, 3), rand_range(1, 3),
                  rand_range(0, 2), rand_range(0, 2), rand_range(1, 2), rand_range(1, 2), groups, rand_range(-20, 20));
    /* The dilated kernel must fit the padded input. */
    if (p.in_h + 2 * p.pad_h < p.dilation_h * (p.k_h - 1) + 1 || p.in_w + 2 * p.pad_w < p.dilation_w * (p.k_w - 1) + 1)
      continue;
    compare_conv(&p, (mcuq_rounding)rand_range(0, 2), rand_range(0, 1));
    ++made;
  }
  CHECK_EQ(made, 120);
}

/* The fast kernels' inlined requantization gives the general rule's integers
 * for any accumulator, multiplier, shift and rounding, and the zero points
 * and output ranges of int8 and int16 outputs (what the kernels' checks let
 * through: its clamp assumes them below 2^30). */
static void test_fast_requantize_equals_general(void) {
  static const int32_t edges[] = {INT32_MIN, INT32_MIN + 1, -1, 0, 1, INT32_MAX - 1, INT32_MAX, 1 << 30, -(1 << 30)};
  long mismatches = 0, n;
  for (n = 0; n < 200000; ++n) {
    const int32_t acc = n % 7 == 0 ? edges[rand_range(0, COUNT(edges) - 1)]
                                   : (int32_t)((uint32_t)rand_range(0, 0xFFFF) << 16 | (uint32_t)rand_range(0, 0xFFFF));
    const int32_t multiplier = n % 11 == 0 ? edges[rand_range(0, COUNT(edges) - 1)] : rand_range(1 << 30, 0x7FFFFFFF);
    const int shift = rand_range(MCUQ_SHIFT_MIN, MCUQ_SHIFT_MAX);
    const int32_t zero_point = rand_range(-200, 200);
    const int32_t lo = rand_range(-32768, 100), hi = lo + rand_range(0, 40000);
    const int8_t shift8 = (int8_t)shift;
    const mcuq_requant r = make_requant(&multiplier, &shift8, 0, (mcuq_rounding)rand_range(0, 2), zero_point, lo, hi);
    mismatches += mcuq_requantize_fast_s32(acc, multiplier, shift, &r) !=
                  mcuq_requantize_s32(acc, multiplier, shift, r.rounding, zero_point, lo, hi);
  }
  CHECK_EQ(mismatches, 0);
}

/* ---- fully connected ------------------------------------------------------- */

static void test_fully_connected(void) {
  /* acc = bias + w . x:  ch0 100 + 10 - 40 + 90 - 160 = 0
   *                      ch1 -5 - 10 + 30 = 15
   *                      ch2 1270 + 2560 - 40 = 3790
   * M per channel: 1 (2^30, 1), 0.5 (2^30, 0), 2^-5 (2^30, -4); zero point 3:
   *   3 + 0 = 3;  3 + round(7.5) = 11;  3 + round(118.4375) = 121 -> clamp 120. */
  const int8_t x[4] = {10, -20, 30, -40};
  const int8_t w[12] = {1, 2, 3, 4, -1, 0, 1, 0, 127, -128, 0, 1};
  const int32_t bias[3] = {100, -5, 0};
  const int32_t mult[3] = {ONE_MULT, ONE_MULT, ONE_MULT};
  const int8_t shift[3] = {1, 0, -4};
  const mcuq_requant r = make_requant(mult, shift, 1, MCUQ_ROUND_DOUBLE, 3, -128, 120);
  const int8_t want[3] = {3, 11, 120};
  int8_t out[3];
  CHECK_EQ(mcuq_fully_connected_s8(4, 3, x, w, bias, &r, out), MCUQ_OK);
  CHECK_ARRAY(out, want, 3);
  {
    /* 16-bit: acc -9900, 1995, 379000; the int64 rule gives -9900,
     * round(997.5) = 998 (ties toward +inf), round(11843.75) = 11844;
     * plus 3, clamped to 11000. */
    const int16_t x16[4] = {1000, -2000, 3000, -4000};
    const int64_t bias64[3] = {100, -5, 0};
    const mcuq_requant r16 = make_requant(mult, shift, 1, MCUQ_ROUND_DOUBLE, 3, -32768, 11000);
    const int16_t want16[3] = {-9897, 1001, 11000};
    int16_t out16[3];
    CHECK_EQ(mcuq_fully_connected_s16(4, 3, x16, w, bias64, &r16, out16), MCUQ_OK);
    CHECK_ARRAY(out16, want16, 3);
  }
  {
    /* A random layer equals a 1x1 convolution over a 1x1 image. */
    enum { IN = 37, OUT = 5 };
    int8_t xin[IN], wts[IN * OUT], got[OUT], conv_out[OUT];
    int32_t b[OUT], m[OUT];
    int8_t sh[OUT];
    const mcuq_conv2d_params p = make_conv(IN, 1, 1, OUT, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0);
    mcuq_requant rr;
    int32_t i;
    for (i = 0; i < IN; ++i) xin[i] = (int8_t)rand_range(-128, 127);
    for (i = 0; i < IN * OUT; ++i) wts[i] = (int8_t)rand_range(-128, 127);
    for (i = 0; i < OUT; ++i) {
      b[i] = rand_range(-5000, 5000);
      m[i] = rand_range(1 << 30, 0x7FFFFFFF);
      sh[i] = (int8_t)rand_range(-10, -7);
    }
    rr = make_requant(m, sh, 1, MCUQ_ROUND_SINGLE, -4, -128, 127);
    CHECK_EQ(mcuq_fully_connected_s8(IN, OUT, xin, wts, b, &rr, got), MCUQ_OK);
    CHECK_EQ(mcuq_conv2d_s8(&p, xin, wts, b, &rr, conv_out), MCUQ_OK);
    CHECK_ARRAY(got, conv_out, OUT);
  }
}

/* ---- pooling ---------------------------------------------------------------- */

/* Channel 0 by hand; channel 1 is channel 0 minus 20, all negative, so a max
 * that read padded taps as 0 would show. */
/* clang-format off */
static const int8_t pool_input[32] = {
      1,   2,   3,   4,
      5,   6,   7,   8,
     -1,  -2,  -3,  -4,
      0,  10, -10,   7,
    -19, -18, -17, -16,
    -15, -14, -13, -12,
    -21, -22, -23, -24,
    -20, -10, -30, -13};
/* clang-format on */

static void test_max_pool(void) {
  int8_t out[8];
  {
    const mcuq_pool2d_params p = make_pool(2, 4, 4, 2, 2, 0, 0, 0, -128, 127);
    const int8_t want[8] = {6, 8, 10, 7, -14, -12, -10, -13};
    CHECK_EQ(mcuq_max_pool2d_s8(&p, pool_input, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 8);
  }
  {
    /* 3x3, stride 2, padding 1: windows rows/cols {0,1} and {1,2,3}. */
    const mcuq_pool2d_params p = make_pool(2, 4, 4, 3, 2, 1, 0, 0, -128, 127);
    const int8_t want[8] = {6, 8, 10, 10, -14, -12, -10, -10};
    CHECK_EQ(p.out_h, 2);
    CHECK_EQ(mcuq_max_pool2d_s8(&p, pool_input, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 8);
  }
  {
    const mcuq_pool2d_params p = make_pool(2, 4, 4, 2, 2, 0, 0, 0, -12, 7); /* clamp */
    const int8_t want[8] = {6, 7, 7, 7, -12, -12, -10, -12};
    CHECK_EQ(mcuq_max_pool2d_s8(&p, pool_input, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 8);
  }
}

static void test_avg_pool(void) {
  /* Channel 0 minus the zero point 1:
   *    0  1  2  3
   *    4  5  6  7
   *   -2 -3 -4 -5
   *   -1  9 -11 6 */
  int8_t out[4];
  {
    /* 2x2 stride 2: 10/4 = 2.5 -> 3, 18/4 = 4.5 -> 5, 3/4 -> 1,
     * -14/4 = -3.5 -> -4 (ties away from zero); plus 1. */
    const mcuq_pool2d_params p = make_pool(1, 4, 4, 2, 2, 0, 1, 1, -128, 127);
    const int8_t want[4] = {4, 6, 2, -3};
    CHECK_EQ(mcuq_avg_pool2d_s8(&p, pool_input, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 4);
  }
  {
    /* 3x3 stride 2 padding 1, padding not counted: 10/4 -> 3, 24/6 = 4,
     * 12/6 = 2, 10/9 -> 1; plus 1. */
    const mcuq_pool2d_params p = make_pool(1, 4, 4, 3, 2, 1, 0, 1, -128, 127);
    const int8_t want[4] = {4, 5, 3, 2};
    CHECK_EQ(mcuq_avg_pool2d_s8(&p, pool_input, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 4);
  }
  {
    /* The same counting padding: divisor 9: 10/9 -> 1, 24/9 -> 3, 12/9 -> 1,
     * 10/9 -> 1; plus 1. */
    const mcuq_pool2d_params p = make_pool(1, 4, 4, 3, 2, 1, 1, 1, -128, 127);
    const int8_t want[4] = {2, 4, 2, 2};
    CHECK_EQ(mcuq_avg_pool2d_s8(&p, pool_input, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 4);
  }
  {
    const mcuq_pool2d_params p = make_pool(1, 4, 4, 2, 2, 0, 1, 1, 3, 5); /* clamp */
    const int8_t want[4] = {4, 5, 3, 3};
    CHECK_EQ(mcuq_avg_pool2d_s8(&p, pool_input, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 4);
  }
}

static void test_pool_s16(void) {
  /* 2x2 windows at the ends of int16, where x - zero point needs 17 bits. */
  const int16_t in[8] = {32767, 32767, 32767, 32766, -32768, -32768, -32767, -32767};
  int16_t out[2];
  {
    const mcuq_pool2d_params p = make_pool(2, 2, 2, 2, 2, 0, 0, -32768, -32768, 32767);
    /* Zero point -32768: channel 0 sums 65535 + 65535 + 65535 + 65534,
     * 262139 / 4 = 65534.75 -> 65535 -> 32767; channel 1 sums 0 + 0 + 1 + 1,
     * 2 / 4 = 0.5 -> 1 -> -32767. */
    const int16_t want[2] = {32767, -32767};
    CHECK_EQ(mcuq_avg_pool2d_s16(&p, in, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 2);
  }
  {
    /* zero point 0: channel 0 131067 / 4 = 32766.75 -> 32767;
     * channel 1 -131070 / 4 = -32767.5 -> -32768 (ties away from zero). */
    const mcuq_pool2d_params p = make_pool(2, 2, 2, 2, 2, 0, 1, 0, -32768, 32767);
    const int16_t want[2] = {32767, -32768};
    CHECK_EQ(mcuq_avg_pool2d_s16(&p, in, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 2);
  }
  {
    const mcuq_pool2d_params p = make_pool(2, 2, 2, 2, 2, 0, 0, 0, -32768, 32767);
    const int16_t want[2] = {32767, -32767};
    CHECK_EQ(mcuq_max_pool2d_s16(&p, in, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 2);
  }
  {
    /* The 8-bit cases widened give the same results. */
    int16_t in16[32], out16[8];
    int8_t out8[8];
    int32_t i;
    const mcuq_pool2d_params p = make_pool(2, 4, 4, 3, 2, 1, 0, 1, -128, 127);
    for (i = 0; i < 32; ++i) in16[i] = pool_input[i];
    CHECK_EQ(mcuq_avg_pool2d_s16(&p, in16, out16), MCUQ_OK);
    CHECK_EQ(mcuq_avg_pool2d_s8(&p, pool_input, out8), MCUQ_OK);
    CHECK_ARRAY(out16, out8, 8);
    CHECK_EQ(mcuq_max_pool2d_s16(&p, in16, out16), MCUQ_OK);
    CHECK_EQ(mcuq_max_pool2d_s8(&p, pool_input, out8), MCUQ_OK);
    CHECK_ARRAY(out16, out8, 8);
  }
}

/* ---- add, requantize, lut ------------------------------------------------------ */

static mcuq_add_params make_add(int32_t size, int32_t left_shift, int32_t a_zp, int32_t a_shift, int32_t b_zp,
                                int32_t b_shift, int32_t out_zp, int32_t out_shift, int32_t act_min, int32_t act_max) {
  mcuq_add_params p;
  p.size = size;
  p.left_shift = left_shift;
  p.a_zero_point = a_zp;
  p.a_multiplier = ONE_MULT;
  p.a_shift = a_shift;
  p.b_zero_point = b_zp;
  p.b_multiplier = ONE_MULT;
  p.b_shift = b_shift;
  p.out_zero_point = out_zp;
  p.out_multiplier = ONE_MULT;
  p.out_shift = out_shift;
  p.rounding = MCUQ_ROUND_DOUBLE;
  p.act_min = act_min;
  p.act_max = act_max;
  return p;
}

static void test_add(void) {
  {
    /* a scaled by 1/2, b by 1/4, with 20 bits of headroom, output by
     * 2^-20: out = 5 + round((2 (a - 3) + (b + 2)) / 4), ties away from
     * zero (the final RoundingDivideByPOT), clamped to [-90, 98]:
     *   0 -> 5;  2/4 -> 1 -> 6;  -2/4 -> -1 -> 4;  377/4 = 94.25 -> 99 -> 98;
     *   -388/4 = -97 -> -92 -> -90;  16/4 = 4 -> 9 */
    const int8_t a[6] = {3, 4, 2, 127, -128, 10};
    const int8_t b[6] = {-2, -2, -2, 127, -128, 0};
    const int8_t want[6] = {5, 6, 4, 98, -90, 9};
    int8_t out[6];
    const mcuq_add_params p = make_add(6, 20, 3, 0, -2, -1, 5, -19, -90, 98);
    CHECK_EQ(mcuq_add_s8(&p, a, b, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 6);
  }
  {
    /* 16-bit, 15 bits of headroom, output by 2^-15:
     * out = round((2a + b) / 4): 0.5 -> 1, -0.5 -> -1, 22500, -24576, 50.5 -> 51 */
    const int16_t a[5] = {1, -1, 30000, -32768, 100};
    const int16_t b[5] = {0, 0, 30000, -32768, 2};
    const int16_t want[5] = {1, -1, 22500, -24576, 51};
    int16_t out[5];
    const mcuq_add_params p = make_add(5, 15, 0, 0, 0, -1, 0, -14, -32768, 32767);
    CHECK_EQ(mcuq_add_s16(&p, a, b, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 5);
  }
  {
    /* Single rounding: the final step rounds ties toward +inf (-0.5 -> 0). */
    const int8_t a[2] = {4, 2};
    const int8_t b[2] = {-2, -2};
    const int8_t want[2] = {6, 5};
    int8_t out[2];
    mcuq_add_params p = make_add(2, 20, 3, 0, -2, -1, 5, -19, -128, 127);
    p.rounding = MCUQ_ROUND_SINGLE;
    CHECK_EQ(mcuq_add_s8(&p, a, b, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 2);
  }
}

static void test_sub(void) {
  /* As test_add's first case, subtracted: out = 5 + round((2 (a - 3) - (b + 2)) / 4):
   *   0 -> 5;  2/4 -> 1 -> 6;  -2/4 -> -1 -> 4;  (248 - 129)/4 = 29.75 -> 30 -> 35;
   *   (-262 + 126)/4 = -34 -> -29;  12/4 = 3 -> 8 */
  const int8_t a[6] = {3, 4, 2, 127, -128, 10};
  const int8_t b[6] = {-2, -2, -2, 127, -128, 0};
  const int8_t want[6] = {5, 6, 4, 35, -29, 8};
  int8_t out[6];
  const mcuq_add_params p = make_add(6, 20, 3, 0, -2, -1, 5, -19, -90, 98);
  CHECK_EQ(mcuq_sub_s8(&p, a, b, out), MCUQ_OK);
  CHECK_ARRAY(out, want, 6);
  {
    /* 16-bit: round((2a - b) / 4): -0.5 -> -1, 0.5 -> 1, 7500, 98302/4 = 24575.5 -> 24576 */
    const int16_t a16[4] = {0, 0, 30000, 32767};
    const int16_t b16[4] = {2, -2, 30000, -32768};
    const int16_t want16[4] = {-1, 1, 7500, 24576};
    int16_t out16[4];
    const mcuq_add_params p16 = make_add(4, 15, 0, 0, 0, -1, 0, -14, -32768, 32767);
    CHECK_EQ(mcuq_sub_s16(&p16, a16, b16, out16), MCUQ_OK);
    CHECK_ARRAY(out16, want16, 4);
  }
}

static mcuq_mul_params make_mul(int32_t outer, int32_t inner, int32_t b_outer_stride, int32_t b_inner_stride,
                                int32_t a_zp, int32_t b_zp, int32_t shift, int32_t out_zp) {
  mcuq_mul_params p;
  p.outer = outer;
  p.inner = inner;
  p.b_outer_stride = b_outer_stride;
  p.b_inner_stride = b_inner_stride;
  p.a_zero_point = a_zp;
  p.b_zero_point = b_zp;
  p.multiplier = ONE_MULT;
  p.shift = shift;
  p.rounding = MCUQ_ROUND_DOUBLE;
  p.out_zero_point = out_zp;
  p.act_min = -128;
  p.act_max = 127;
  return p;
}

static void test_mul(void) {
  const int8_t a[6] = {1, 9, -7, 5, 127, -128};
  int8_t out[6];
  {
    /* One gate value per channel (2 channels of 3): out = 3 + (a - 1)(b + 2) / 8.
     * Channel 0, b + 2 = 4: 0, 32/8, -32/8 -> 3, 7, -1. Channel 1, b + 2 = -3:
     * -12/8 = -1.5 -> -2 -> 1; -378/8 = -47.25 -> -47 -> -44; 387/8 = 48.375,
     * but TFLite's double rounding halves first (193.5 -> 194) and then
     * divides by 4 (48.5 -> 49) -> 52. */
    const int8_t gate[2] = {2, -5};
    const int8_t want[6] = {3, 7, -1, 1, -44, 52};
    const mcuq_mul_params p = make_mul(2, 3, 1, 0, 1, -2, -2, 3);
    CHECK_EQ(mcuq_mul_s8(&p, a, gate, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 6);
  }
  {
    /* One value per pixel (3 pixels, 2 channels), zero points 0, M = 1/2:
     * a * b / 2 with b = {2, -2, 1} on every channel; 127 * -2 / 2 = -127, -128 / 2 = -64. */
    const int8_t pixel[3] = {2, -2, 1};
    const int8_t want[6] = {1, -9, -3, 5, -127, -64};
    const mcuq_mul_params p = make_mul(2, 3, 0, 1, 0, 0, 0, 0);
    CHECK_EQ(mcuq_mul_s8(&p, a, pixel, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 6);
  }
  {
    /* Same shapes (strides inner, 1), M = 1/2: a * a / 2, saturating: 1/2 -> 1 (ties
     * away), 40.5 -> 41, 24.5 -> 25, 12.5 -> 13, 8064.5 -> 127, 8192 -> 127. */
    const int8_t want[6] = {1, 41, 25, 13, 127, 127};
    const mcuq_mul_params p = make_mul(1, 6, 6, 1, 0, 0, 0, 0);
    CHECK_EQ(mcuq_mul_s8(&p, a, a, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 6);
  }
  {
    /* int16, one value for all (strides 0, 0), M = 2^-15: products up to 2^30 in
     * int64: 32767^2 / 2^15 = 32766.00003 -> 32766, (-32768)^2 / 2^15 = 32768 -> 32767,
     * -32768 * 32767 / 2^15 = -32767. */
    const int16_t a16[3] = {32767, -32768, 1};
    const int16_t b16[1] = {32767};
    const int16_t want16[3] = {32766, -32767, 1};
    int16_t out16[3];
    mcuq_mul_params p = make_mul(1, 3, 0, 0, 0, 0, -14, 0);
    p.act_min = -32768;
    p.act_max = 32767;
    CHECK_EQ(mcuq_mul_s16(&p, a16, b16, out16), MCUQ_OK);
    CHECK_ARRAY(out16, want16, 3);
    {
      const int16_t b_min[1] = {-32768};
      const int16_t want_min[3] = {-32767, 32767, -1};
      CHECK_EQ(mcuq_mul_s16(&p, a16, b_min, out16), MCUQ_OK);
      CHECK_ARRAY(out16, want_min, 3);
    }
  }
}

static void test_pad_and_upsample(void) {
  /* 2 channels of 2x2, padded 1 above, 0 below, 2 left, 1 right with 7: 3x5 each. */
  const int8_t in[8] = {1, 2, 3, 4, -1, -2, -3, -4};
  const int8_t want_pad[30] = {7, 7, 7,  7,  7, 7, 7, 1,  2,  7, 7, 7, 3,  4,  7,
                               7, 7, 7,  7,  7, 7, 7, -1, -2, 7, 7, 7, -3, -4, 7};
  int8_t out[30];
  mcuq_pad2d_params pad;
  mcuq_upsample_params up;
  pad.channels = 2;
  pad.in_h = 2;
  pad.in_w = 2;
  pad.top = 1;
  pad.bottom = 0;
  pad.left = 2;
  pad.right = 1;
  pad.value = 7;
  CHECK_EQ(mcuq_pad2d_s8(&pad, in, out), MCUQ_OK);
  CHECK_ARRAY(out, want_pad, 30);
  {
    const int16_t in16[2] = {-32768, 32767};
    const int16_t want16[4] = {-32768, 32767, -5, -5}; /* one channel 1x2, one row below */
    int16_t out16[4];
    mcuq_pad2d_params p16 = pad;
    p16.channels = 1;
    p16.in_h = 1;
    p16.top = p16.left = p16.right = 0;
    p16.bottom = 1;
    p16.value = -5;
    CHECK_EQ(mcuq_pad2d_s16(&p16, in16, out16), MCUQ_OK);
    CHECK_ARRAY(out16, want16, 4);
#ifndef MCUQ_NO_CHECKS
    p16.value = 40000;
    CHECK_EQ(mcuq_pad2d_s16(&p16, in16, out16), MCUQ_ERROR_ARGUMENT);
#endif
  }
#ifndef MCUQ_NO_CHECKS
  pad.left = -1;
  CHECK_EQ(mcuq_pad2d_s8(&pad, in, out), MCUQ_ERROR_SHAPE);
  CHECK_EQ(mcuq_pad2d_s8(0, in, out), MCUQ_ERROR_NULL);
#endif

  /* Channel 0 of the input (2x2) upsampled 2x vertically, 3x horizontally. */
  {
    const int8_t want_up[24] = {1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 3, 3, 3, 4, 4, 4};
    int16_t out16[4];
    const int16_t in16[2] = {-32768, 32767};
    const int16_t want16[4] = {-32768, -32768, 32767, 32767};
    up.channels = 1;
    up.in_h = 2;
    up.in_w = 2;
    up.factor_h = 2;
    up.factor_w = 3;
    CHECK_EQ(mcuq_upsample_nearest_s8(&up, in, out), MCUQ_OK);
    CHECK_ARRAY(out, want_up, 24);
    up.in_h = 2; /* int16, 2x1 -> 4x1 */
    up.in_w = 1;
    up.factor_w = 1;
    CHECK_EQ(mcuq_upsample_nearest_s16(&up, in16, out16), MCUQ_OK);
    CHECK_ARRAY(out16, want16, 4);
#ifndef MCUQ_NO_CHECKS
    up.factor_h = 0;
    CHECK_EQ(mcuq_upsample_nearest_s8(&up, in, out), MCUQ_ERROR_SHAPE);
    CHECK_EQ(mcuq_upsample_nearest_s8(&up, 0, out), MCUQ_ERROR_NULL);
    /* Sizes whose product overflows even int64 must be refused, not wrap. */
    up.channels = up.in_h = up.in_w = up.factor_h = up.factor_w = 65536;
    CHECK_EQ(mcuq_upsample_nearest_s8(&up, in, out), MCUQ_ERROR_SHAPE);
    pad.channels = 65536;
    pad.in_h = pad.in_w = 1 << 24;
    pad.top = pad.bottom = pad.left = pad.right = 0;
    CHECK_EQ(mcuq_pad2d_s8(&pad, in, out), MCUQ_ERROR_SHAPE);
#endif
  }
}

static void test_softmax(void) {
  /* A table halving per level, one row {5, 4, 4, -128}: distances {0, 1, 1, 133},
   * exp {2^15, 2^14, 2^14, 0}, sum 2^16, probabilities (Q16) {2^15, 2^14, 2^14, 0};
   * output scale 1/256 (M = 2^-8), zero point -128: {0, -64, -64, -128}. */
  int32_t table[256];
  const int8_t in[4] = {5, 4, 4, -128};
  const int8_t want[4] = {0, -64, -64, -128};
  int8_t out[4];
  mcuq_softmax_params p;
  for (int i = 0; i < 256; ++i) table[i] = i < 15 ? 32768 >> i : 0;
  p.rows = 1;
  p.depth = 4;
  p.multiplier = ONE_MULT;
  p.shift = -7;
  p.rounding = MCUQ_ROUND_DOUBLE;
  p.out_zero_point = -128;
  p.act_min = -128;
  p.act_max = 127;
  CHECK_EQ(mcuq_softmax_s8(&p, table, in, out), MCUQ_OK);
  CHECK_ARRAY(out, want, 4);
#ifndef MCUQ_NO_CHECKS
  for (int i = 0; i < 256; ++i) table[i] = -i; /* no positive entry: refused, not a division by zero */
  CHECK_EQ(mcuq_softmax_s8(&p, table, in, out), MCUQ_ERROR_ARGUMENT);
  CHECK_EQ(mcuq_softmax_s8(&p, 0, in, out), MCUQ_ERROR_NULL);
  p.depth = 65536;
  CHECK_EQ(mcuq_softmax_s8(&p, table, in, out), MCUQ_ERROR_SHAPE);
#endif
}

static void test_conv_transpose(void) {
  /* 1 channel, 1x2 input {1, 2} (zero point 1: {0, 1}), kernel 1x2 {1, 10},
   * stride 1: outputs gather 1, 2 and 1 taps: 5 + 0, 5 + 10 * 0 + 1 * 1,
   * 5 + 10 * 1 (bias 5, M = 1). A zero point folded into the bias would be
   * wrong at the edges, which have fewer taps. */
  const int8_t in[2] = {1, 2};
  const int8_t w[2] = {1, 10};
  const int32_t bias[1] = {5};
  const int32_t mult[1] = {ONE_MULT};
  const int8_t shift[1] = {1};
  const int8_t want[3] = {5, 6, 15};
  int8_t out[16];
  const mcuq_requant r = make_requant(mult, shift, 0, MCUQ_ROUND_DOUBLE, 0, -128, 127);
  mcuq_conv2d_params p = make_conv(1, 1, 2, 1, 1, 2, 1, 1, 0, 0, 1, 1, 1, 1);
  p.out_h = 1; /* the transposed size: (in - 1) stride + k */
  p.out_w = 3;
  CHECK_EQ(mcuq_conv_transpose2d_s8(&p, in, w, bias, &r, out), MCUQ_OK);
  CHECK_ARRAY(out, want, 3);
  {
    /* 2x2 {1, 2, 3, 4}, kernel 2x2 of ones, stride 2: each input becomes a 2x2 block. */
    const int16_t in16[4] = {1, 2, 3, 4};
    const int8_t ones[4] = {1, 1, 1, 1};
    const int64_t bias64[1] = {0};
    const int16_t want16[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    int16_t out16[20];
    const mcuq_requant r16 = make_requant(mult, shift, 0, MCUQ_ROUND_DOUBLE, 0, -32768, 32767);
    mcuq_conv2d_params q = make_conv(1, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1, 1, 0);
    q.out_h = 4;
    q.out_w = 4;
    CHECK_EQ(mcuq_conv_transpose2d_s16(&q, in16, ones, bias64, &r16, out16), MCUQ_OK);
    CHECK_ARRAY(out16, want16, 16);
#ifndef MCUQ_NO_CHECKS
    q.out_h = 6; /* (2 - 1) * 2 + 2 = 4, and output_padding must stay below the stride */
    CHECK_EQ(mcuq_conv_transpose2d_s16(&q, in16, ones, bias64, &r16, out16), MCUQ_ERROR_SHAPE);
#endif
    q.out_h = 5; /* output_padding 1 */
    CHECK_EQ(mcuq_conv_transpose2d_s16(&q, in16, ones, bias64, &r16, out16), MCUQ_OK);
  }
#ifndef MCUQ_NO_CHECKS
  p.groups = 2;
  CHECK_EQ(mcuq_conv_transpose2d_s8(&p, in, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  p.groups = 1;
  CHECK_EQ(mcuq_conv_transpose2d_s8(&p, in, 0, bias, &r, out), MCUQ_ERROR_NULL);
#endif
}

static void test_requantize(void) {
  mcuq_requantize_params p;
  p.size = 6;
  p.in_zero_point = 10;
  p.multiplier = 3 << 29; /* M = 1.5 */
  p.shift = 1;
  p.rounding = MCUQ_ROUND_DOUBLE;
  p.out_zero_point = -3;
  p.act_min = -128;
  p.act_max = 127;
  {
    /* -3 + round(1.5 (x - 10)), ties toward +inf: 1.5 -> 2, -1.5 -> -1,
     * 0, 175.5 -> 176 (clamped), -207 (clamped), 3. */
    const int8_t in[6] = {11, 9, 10, 127, -128, 12};
    const int8_t want[6] = {-1, -4, -3, 127, -128, 0};
    int8_t out[6];
    CHECK_EQ(mcuq_requantize_s8(&p, in, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 6);
  }
  {
    /* Power of two M = 2^(shift - 1) = 1/8, ties away from zero:
     * 4/8 -> 1, -4/8 -> -1, 12/8 -> 2, -12/8 -> -2, 3/8 -> 0 */
    const int8_t in[5] = {14, 6, 22, -2, 13};
    const int8_t want[5] = {-2, -4, -1, -5, -3};
    int8_t out[5];
    mcuq_requantize_params q = p;
    q.size = 5;
    q.rounding = MCUQ_ROUND_SHIFT;
    q.shift = -2;
    CHECK_EQ(mcuq_requantize_s8(&q, in, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 5);
  }
  {
    /* 16-bit, zero points 0, M = 1.5: 30000, 45000 -> 32767, -4.5 -> -4,
     * 4.5 -> 5 */
    const int16_t in[4] = {20000, 30000, -3, 3};
    const int16_t want[4] = {30000, 32767, -4, 5};
    int16_t out[4];
    mcuq_requantize_params q = p;
    q.size = 4;
    q.in_zero_point = 0;
    q.out_zero_point = 0;
    q.act_min = -32768;
    q.act_max = 32767;
    CHECK_EQ(mcuq_requantize_s16(&q, in, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 4);
  }
}

static void test_lut(void) {
  int8_t table[256];
  const int8_t in[5] = {-128, 127, 0, 5, -1};
  const int8_t want[5] = {127, -128, -1, -6, 0}; /* table[k] = 127 - k: out = -1 - x */
  int8_t out[5];
  int32_t k;
  for (k = 0; k < 256; ++k) table[k] = (int8_t)(127 - k);
  CHECK_EQ(mcuq_lut_s8(5, table, in, out), MCUQ_OK);
  CHECK_ARRAY(out, want, 5);
}

/* int16 table over the whole range (start -32768, step 128): a linear ramp
 * table[k] = 4 (k - 256) tabulates 4 * (x / 128), so the interpolation must
 * give round-half-up(x / 32) exactly; a step between two samples checks the
 * slope's sign and rounding. Then a narrow window (start -100, step 2^1):
 * flat below and above it, exact on its samples, halfway in between. */
static void test_lut_s16(void) {
  static int16_t ramp[513], step[513], window[513];
  const int16_t in[8] = {-32768, -32767, -129, -16, 0, 16, 127, 32767};
  const mcuq_lut_s16_params whole = {8, -32768, 7};
  int16_t out[8];
  int i;
  for (i = 0; i < 513; ++i) {
    ramp[i] = (int16_t)(4 * (i - 256));
    step[i] = (int16_t)(i <= 256 ? 1000 : -1000);
    window[i] = (int16_t)(10 * i);
  }
  CHECK_EQ(mcuq_lut_s16(&whole, ramp, in, out), MCUQ_OK);
  for (i = 0; i < 8; ++i) {
    const long x = in[i];
    const long floor_div = (x >= 0 ? x : x - 31) / 32; /* floor(x / 32) */
    CHECK_EQ(out[i], floor_div + ((x - 32 * floor_div) >= 16 ? 1 : 0));
  }
  {
    /* Between samples 256 (x = 0) and 257 (x = 128): 1000 - 2000 * offset / 128. */
    const int16_t x[4] = {0, 1, 64, 127};
    const mcuq_lut_s16_params four = {4, -32768, 7};
    CHECK_EQ(mcuq_lut_s16(&four, step, x, out), MCUQ_OK);
    CHECK_EQ(out[0], 1000);
    CHECK_EQ(out[1], 1000 + ((-2000 * 1 + 64) >> 7));
    CHECK_EQ(out[2], 0);
    CHECK_EQ(out[3], 1000 + ((-2000 * 127 + 64) >> 7));
  }
  {
    /* Samples at -100 + 2 k: table[k] = 10 k, i.e. 5 (x + 100) inside. */
    const int16_t x[8] = {-32768, -101, -100, -99, 0, 923, 924, 32767};
    const int16_t want[8] = {0, 0, 0, 5, 500, 5115, 5120, 5120};
    const mcuq_lut_s16_params narrow = {8, -100, 1};
    CHECK_EQ(mcuq_lut_s16(&narrow, window, x, out), MCUQ_OK);
    CHECK_ARRAY(out, want, 8);
  }
#ifndef MCUQ_NO_CHECKS
  {
    const mcuq_lut_s16_params bad_shift = {8, 0, 8}, bad_start = {8, 40000, 7}, empty = {0, 0, 7};
    CHECK_EQ(mcuq_lut_s16(&whole, 0, in, out), MCUQ_ERROR_NULL);
    CHECK_EQ(mcuq_lut_s16(0, ramp, in, out), MCUQ_ERROR_NULL);
    CHECK_EQ(mcuq_lut_s16(&bad_shift, ramp, in, out), MCUQ_ERROR_ARGUMENT);
    CHECK_EQ(mcuq_lut_s16(&bad_start, ramp, in, out), MCUQ_ERROR_ARGUMENT);
    CHECK_EQ(mcuq_lut_s16(&empty, ramp, in, out), MCUQ_ERROR_SHAPE);
  }
#endif
}

/* Random biases and int8 per-channel requantization for n channels, shifts
 * in [shift_min, shift_max]. */
static void random_requant(int32_t n, int shift_min, int shift_max, int32_t *bias, int32_t *mult, int8_t *shift,
                           mcuq_requant *r) {
  int32_t i;
  for (i = 0; i < n; ++i) {
    bias[i] = rand_range(-5000, 5000);
    mult[i] = rand_range(1 << 30, 0x7FFFFFFF);
    shift[i] = (int8_t)rand_range(shift_min, shift_max);
  }
  r->multiplier = mult;
  r->shift = shift;
  r->per_channel = 1;
  r->rounding = MCUQ_ROUND_DOUBLE;
  r->zero_point = -3;
  r->act_min = -128;
  r->act_max = 127;
}

/* W4A8 kernels equal the int8-weight kernels on the same weights (all in
 * [-8, 7]), packed two per byte, low nibble first: conv, depthwise with a
 * channel multiplier, fully connected; odd weight counts included. */
static void pack_s4(const int8_t *w, int32_t n, int8_t *packed) {
  int32_t i;
  for (i = 0; i < (n + 1) / 2; ++i) packed[i] = 0;
  for (i = 0; i < n; ++i) {
    const unsigned nibble = (unsigned)w[i] & 0x0Fu;
    packed[i >> 1] = (int8_t)(unsigned char)((unsigned char)packed[i >> 1] | (nibble << ((i & 1) * 4)));
  }
}

static void test_w4_kernels(void) {
  static int8_t in[3 * 9 * 9], w[8 * 3 * 3 * 3], packed[(8 * 3 * 3 * 3 + 1) / 2], out8[8 * 5 * 5], out4[8 * 5 * 5];
  int32_t bias[8], mult[8];
  int8_t shift[8];
  mcuq_requant r;
  mcuq_conv2d_params p;
  int32_t i;
  for (i = 0; i < 3 * 9 * 9; ++i) in[i] = (int8_t)rand_range(-128, 127);
  for (i = 0; i < 8 * 3 * 3 * 3; ++i) w[i] = (int8_t)rand_range(-8, 7);
  random_requant(8, -10, -6, bias, mult, shift, &r);
  pack_s4(w, 8 * 3 * 3 * 3, packed);
  /* 3 -> 8 channels, 9x9, 3x3, stride 2, padding 1: 5x5 outputs, 216 weights */
  p.in_c = 3, p.in_h = 9, p.in_w = 9, p.out_c = 8, p.out_h = 5, p.out_w = 5, p.k_h = 3, p.k_w = 3;
  p.stride_h = 2, p.stride_w = 2, p.pad_h = 1, p.pad_w = 1, p.dilation_h = 1, p.dilation_w = 1, p.groups = 1;
  p.in_zero_point = 5;
  CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out8), MCUQ_OK);
  CHECK_EQ(mcuq_conv2d_s8_w4(&p, in, packed, bias, &r, out4), MCUQ_OK);
  CHECK_ARRAY(out4, out8, 8 * 5 * 5);
  /* depthwise 3 -> 6 (multiplier 2), 27 weights: an odd count */
  p.out_c = 6, p.groups = 3;
  pack_s4(w, 6 * 3 * 3, packed);
  CHECK_EQ(mcuq_depthwise_conv2d_s8(&p, in, w, bias, &r, out8), MCUQ_OK);
  CHECK_EQ(mcuq_depthwise_conv2d_s8_w4(&p, in, packed, bias, &r, out4), MCUQ_OK);
  CHECK_ARRAY(out4, out8, 6 * 5 * 5);
  /* fully connected 27 -> 5: rows start mid-byte */
  pack_s4(w, 5 * 27, packed);
  CHECK_EQ(mcuq_fully_connected_s8(27, 5, in, w, bias, &r, out8), MCUQ_OK);
  CHECK_EQ(mcuq_fully_connected_s8_w4(27, 5, in, packed, bias, &r, out4), MCUQ_OK);
  CHECK_ARRAY(out4, out8, 5);
}

/* Codebook kernels (mcuq_codebook_weights) equal the int8 kernels on the
 * decoded weights, for every index width 1-4 (3: fields straddle bytes),
 * per-channel and per-tensor codebooks, rows and runs starting mid-byte. */
/* Random indices and codebook rows (one per `row_weights` weights); w gets
 * the weights they stand for. */
static void make_codebook(int32_t n, int32_t bits, int32_t row_weights, uint8_t *index, uint8_t *packed,
                          int8_t *codebook, int8_t *w, mcuq_codebook_weights *cb) {
  int32_t i;
  const int32_t levels = 1 << bits;
  for (i = 0; i < (n + row_weights - 1) / row_weights * levels; ++i) codebook[i] = (int8_t)rand_range(-127, 127);
  for (i = 0; i < n; ++i) {
    index[i] = (uint8_t)rand_range(0, levels - 1);
    w[i] = codebook[i / row_weights * levels + index[i]];
  }
  reference_pack_indices(index, n, bits, packed);
  cb->indices = packed;
  cb->codebook = codebook;
  cb->bits = bits;
  cb->row_weights = row_weights;
}

static void test_codebook_kernels(void) {
  static int8_t in[16 * 9 * 9], w[16 * 16 * 3 * 3], decoded[16 * 16 * 3 * 3], out8[16 * 9 * 9], outc[16 * 9 * 9];
  static int8_t codebook[16 * 16 * 3 * 3 * 16], scratch[16 * 16 * 3 * 3 + 2 * 16 * 3 * 3];
  static uint8_t index[16 * 16 * 3 * 3], packed[16 * 16 * 3 * 3 / 2 + 2];
  int32_t bias[16], mult[16];
  int8_t shift[16];
  mcuq_requant r;
  mcuq_conv2d_params p;
  mcuq_codebook_weights cb;
  int32_t i, bits;
  for (i = 0; i < 16 * 9 * 9; ++i) in[i] = (int8_t)rand_range(-128, 127);
  random_requant(16, -12, -8, bias, mult, shift, &r);
  for (bits = 1; bits <= 4; ++bits) {
    /* decode: every start and length over a few rows of 7 (rows and runs
     * start mid-byte) */
    int32_t first, count;
    make_codebook(40, bits, 7, index, packed, codebook, w, &cb);
    for (first = 0; first < 40; ++first) {
      for (count = 0; first + count <= 40; count += 3) {
        for (i = 0; i < 40; ++i) decoded[i] = 99;
        CHECK_EQ(mcuq_decode_codebook(&cb, first, count, decoded), MCUQ_OK);
        CHECK_ARRAY(decoded, w + first, count);
        CHECK_EQ(decoded[count], 99); /* nothing past the run */
      }
    }
    /* conv 16 -> 11 channels (odd), 9x9, 3x3, stride 2, pad 1; a codebook row per channel */
    p.in_c = 16, p.in_h = 9, p.in_w = 9, p.out_c = 11, p.out_h = 5, p.out_w = 5, p.k_h = 3, p.k_w = 3;
    p.stride_h = 2, p.stride_w = 2, p.pad_h = 1, p.pad_w = 1, p.dilation_h = 1, p.dilation_w = 1, p.groups = 1;
    p.in_zero_point = 5;
    make_codebook(11 * 16 * 9, bits, 16 * 9, index, packed, codebook, w, &cb);
    CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out8), MCUQ_OK);
    CHECK_EQ(mcuq_conv2d_s8_cb(&p, in, &cb, bias, &r, 11, scratch, outc), MCUQ_OK);
    CHECK_ARRAY(outc, out8, 11 * 5 * 5);
    for (i = 0; i < 11 * 5 * 5; ++i) outc[i] = 0;
    CHECK_EQ(mcuq_conv2d_s8_cb(&p, in, &cb, bias, &r, 4, scratch, outc), MCUQ_OK); /* blocks of 4, 4, 3 */
    CHECK_ARRAY(outc, out8, 11 * 5 * 5);
    /* grouped conv (2 groups), one codebook row for the whole layer */
    p.out_c = 8, p.groups = 2;
    make_codebook(8 * 8 * 9, bits, 8 * 8 * 9, index, packed, codebook, w, &cb);
    CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out8), MCUQ_OK);
    CHECK_EQ(mcuq_conv2d_s8_cb(&p, in, &cb, bias, &r, 8, scratch, outc), MCUQ_OK);
    CHECK_ARRAY(outc, out8, 8 * 5 * 5);
    /* depthwise 8 -> 16 (multiplier 2), stride 1: 9 weights per row, odd nibbles */
    p.in_c = 8, p.out_c = 16, p.groups = 8, p.stride_h = 1, p.stride_w = 1, p.out_h = 9, p.out_w = 9;
    make_codebook(16 * 9, bits, 9, index, packed, codebook, w, &cb);
    CHECK_EQ(mcuq_depthwise_conv2d_s8(&p, in, w, bias, &r, out8), MCUQ_OK);
    CHECK_EQ(mcuq_depthwise_conv2d_s8_cb(&p, in, &cb, bias, &r, 8, scratch, outc), MCUQ_OK);
    CHECK_ARRAY(outc, out8, 16 * 9 * 9);
    for (i = 0; i < 16 * 9 * 9; ++i) outc[i] = 0;
    CHECK_EQ(mcuq_depthwise_conv2d_s8_cb(&p, in, &cb, bias, &r, 3, scratch, outc), MCUQ_OK); /* 3, 3, 2 inputs */
    CHECK_ARRAY(outc, out8, 16 * 9 * 9);
    r.per_channel = 0; /* one requantization entry: blocks keep it */
    CHECK_EQ(mcuq_depthwise_conv2d_s8(&p, in, w, bias, &r, out8), MCUQ_OK);
    CHECK_EQ(mcuq_depthwise_conv2d_s8_cb(&p, in, &cb, bias, &r, 3, scratch, outc), MCUQ_OK);
    CHECK_ARRAY(outc, out8, 16 * 9 * 9);
    r.per_channel = 1;
    /* fully connected 150 -> 7: chunks of 64 and an odd last row; rows start mid-byte */
    make_codebook(7 * 150, bits, 150, index, packed, codebook, w, &cb);
    CHECK_EQ(mcuq_fully_connected_s8(150, 7, in, w, bias, &r, out8), MCUQ_OK);
    CHECK_EQ(mcuq_fully_connected_s8_cb(150, 7, in, &cb, bias, &r, 0, outc), MCUQ_OK);
    CHECK_ARRAY(outc, out8, 7);
    make_codebook(5 * 27, bits, 27, index, packed, codebook, w, &cb);
    CHECK_EQ(mcuq_fully_connected_s8(27, 5, in, w, bias, &r, out8), MCUQ_OK);
    CHECK_EQ(mcuq_fully_connected_s8_cb(27, 5, in, &cb, bias, &r, scratch, outc), MCUQ_OK);
    CHECK_ARRAY(outc, out8, 5);
    /* 152 -> 7, rows of whole bytes (3 bits: 19 groups of eight): the fused
     * loops, a codebook per output row and one for the layer */
    make_codebook(7 * 152, bits, 152, index, packed, codebook, w, &cb);
    CHECK_EQ(mcuq_fully_connected_s8(152, 7, in, w, bias, &r, out8), MCUQ_OK);
    CHECK_EQ(mcuq_fully_connected_s8_cb(152, 7, in, &cb, bias, &r, 0, outc), MCUQ_OK);
    CHECK_ARRAY(outc, out8, 7);
    make_codebook(7 * 152, bits, 7 * 152, index, packed, codebook, w, &cb);
    CHECK_EQ(mcuq_fully_connected_s8(152, 7, in, w, bias, &r, out8), MCUQ_OK);
    CHECK_EQ(mcuq_fully_connected_s8_cb(152, 7, in, &cb, bias, &r, scratch + 1, outc), MCUQ_OK); /* misaligned */
    CHECK_ARRAY(outc, out8, 7);
    /* a codebook row per three output rows: the pair (2, 3) spans two */
    make_codebook(7 * 152, bits, 3 * 152, index, packed, codebook, w, &cb);
    CHECK_EQ(mcuq_fully_connected_s8(152, 7, in, w, bias, &r, out8), MCUQ_OK);
    CHECK_EQ(mcuq_fully_connected_s8_cb(152, 7, in, &cb, bias, &r, 0, outc), MCUQ_OK);
    CHECK_ARRAY(outc, out8, 7);
    CHECK_EQ(mcuq_fully_connected_s8_cb(152, 7, in, &cb, bias, &r, scratch + 1, outc), MCUQ_OK);
    CHECK_ARRAY(outc, out8, 7);
    /* The scratch the DSP pair tables take (others ignore it): 2 bytes per
     * input and 3 to align, where rows of whole bytes have codebook rows of
     * at least 384 (4-bit) or 192 (3-bit) weights: each side of both. */
    CHECK_EQ(MCUQ_FULLY_CONNECTED_CB_SCRATCH(bits, 152, 7 * 152), bits >= 3 ? 2 * 152 + 3 : 0);
    CHECK_EQ(MCUQ_FULLY_CONNECTED_CB_SCRATCH(bits, 128, 384), bits >= 3 ? 2 * 128 + 3 : 0);
    CHECK_EQ(MCUQ_FULLY_CONNECTED_CB_SCRATCH(bits, 128, 256), bits == 3 ? 2 * 128 + 3 : 0);
    CHECK_EQ(MCUQ_FULLY_CONNECTED_CB_SCRATCH(bits, 64, 192), bits == 3 ? 2 * 64 + 3 : 0);
    CHECK_EQ(MCUQ_FULLY_CONNECTED_CB_SCRATCH(bits, 64, 128), 0);
    CHECK_EQ(MCUQ_FULLY_CONNECTED_CB_SCRATCH(bits, 152, 152), 0);
    CHECK_EQ(MCUQ_FULLY_CONNECTED_CB_SCRATCH(bits, 150, 7 * 150), bits == 4 ? 2 * 150 + 3 : 0);
  }
#ifndef MCUQ_NO_CHECKS
  {
    mcuq_codebook_weights bad = cb;
    CHECK_EQ(mcuq_decode_codebook(0, 0, 4, decoded), MCUQ_ERROR_NULL);
    CHECK_EQ(mcuq_decode_codebook(&cb, 0, 4, 0), MCUQ_ERROR_NULL);
    CHECK_EQ(mcuq_decode_codebook(&cb, -1, 4, decoded), MCUQ_ERROR_SHAPE);
    bad.bits = 5;
    CHECK_EQ(mcuq_decode_codebook(&bad, 0, 4, decoded), MCUQ_ERROR_ARGUMENT);
    bad.bits = 0;
    CHECK_EQ(mcuq_fully_connected_s8_cb(27, 5, in, &bad, bias, &r, 0, outc), MCUQ_ERROR_ARGUMENT);
    bad = cb;
    bad.row_weights = 0;
    CHECK_EQ(mcuq_conv2d_s8_cb(&p, in, &bad, bias, &r, 4, scratch, outc), MCUQ_ERROR_ARGUMENT);
    bad = cb;
    bad.codebook = 0;
    CHECK_EQ(mcuq_depthwise_conv2d_s8_cb(&p, in, &bad, bias, &r, 4, scratch, outc), MCUQ_ERROR_NULL);
    CHECK_EQ(mcuq_depthwise_conv2d_s8_cb(&p, in, &cb, bias, &r, 4, 0, outc), MCUQ_ERROR_NULL);
    CHECK_EQ(mcuq_depthwise_conv2d_s8_cb(&p, in, &cb, bias, &r, 0, scratch, outc), MCUQ_ERROR_ARGUMENT);
    CHECK_EQ(mcuq_conv2d_s8_cb(&p, in, &cb, bias, &r, 4, 0, outc), MCUQ_ERROR_NULL);
    CHECK_EQ(mcuq_fully_connected_s8_cb(0, 5, in, &cb, bias, &r, 0, outc), MCUQ_ERROR_SHAPE);
    p.groups = 4; /* not depthwise */
    CHECK_EQ(mcuq_depthwise_conv2d_s8_cb(&p, in, &cb, bias, &r, 4, scratch, outc), MCUQ_ERROR_SHAPE);
    CHECK_EQ(mcuq_conv2d_s8_cb(&p, in, &cb, bias, &r, 2, scratch, outc), MCUQ_ERROR_ARGUMENT); /* splits groups */
  }
#endif
}

/* ---- argument checks --------------------------------------------------------- */

#ifndef MCUQ_NO_CHECKS
static void test_conv_errors(void) {
  const mcuq_conv2d_params good = make_conv(2, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0);
  int8_t in[50] = {0}, w[36] = {0}, out[50];
  int16_t in16[50] = {0}, out16[50];
  const int32_t bias[2] = {0, 0}, mult[2] = {ONE_MULT, ONE_MULT};
  const int64_t bias64[2] = {0, 0};
  const int8_t shift[2] = {0, 0}, bad_shift[2] = {0, 31}, shift8[2] = {8, 8};
  const mcuq_requant r = make_requant(mult, shift, 1, MCUQ_ROUND_DOUBLE, 0, -128, 127);
  const mcuq_requant r16 = make_requant(mult, shift, 1, MCUQ_ROUND_DOUBLE, 0, -32768, 32767);
  mcuq_conv2d_params p;
  mcuq_requant q;
  int32_t i, untouched = 1;

  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, bias, &r, out), MCUQ_OK);
  CHECK_EQ(mcuq_conv2d_s8(0, in, w, bias, &r, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_conv2d_s8(&good, 0, w, bias, &r, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_conv2d_s8(&good, in, 0, bias, &r, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, 0, &r, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, bias, 0, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, bias, &r, 0), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_depthwise_conv2d_s8(&good, in, w, bias, &r, 0), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_conv2d_s16(&good, in16, w, bias64, &r16, 0), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_depthwise_conv2d_s16(0, in16, w, bias64, &r16, out16), MCUQ_ERROR_NULL);
  q = r;
  q.multiplier = 0;
  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, bias, &q, out), MCUQ_ERROR_NULL);
  q = r;
  q.shift = 0;
  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, bias, &q, out), MCUQ_ERROR_NULL);

  /* Shapes */
  p = good;
  p.out_h = 4; /* PyTorch gives 5 */
  CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  p = good;
  p.out_w = 6;
  CHECK_EQ(mcuq_conv2d_s16(&p, in16, w, bias64, &r16, out16), MCUQ_ERROR_SHAPE);
  p = good;
  p.in_c = 0;
  CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  p = good;
  p.stride_w = 0;
  CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  p = good;
  p.dilation_h = 0;
  CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  p = good;
  p.pad_w = -1;
  CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  p = good;
  p.groups = 0;
  CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  p = make_conv(4, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 3, 0); /* 3 groups do not divide 4 channels */
  CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  p = make_conv(2, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 2, 0); /* 2 groups do not divide 3 outputs */
  CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  p = good; /* a 7x7 kernel does not fit the 5x5 input padded by 0 */
  p.k_h = p.k_w = 7;
  p.pad_h = p.pad_w = 0;
  p.out_h = p.out_w = 1;
  CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  /* Depthwise wants groups == in_c. */
  CHECK_EQ(mcuq_depthwise_conv2d_s8(&good, in, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  p = good;
  p.groups = 2;
  CHECK_EQ(mcuq_depthwise_conv2d_s8(&p, in, w, bias, &r, out), MCUQ_OK);
  CHECK_EQ(mcuq_depthwise_conv2d_s16(&p, in16, w, bias64, &r16, out16), MCUQ_OK);

  /* Other arguments */
  q = r;
  q.act_min = 5;
  q.act_max = 4;
  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, bias, &q, out), MCUQ_ERROR_ARGUMENT);
  q = r;
  q.act_max = 128; /* does not fit int8 */
  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, bias, &q, out), MCUQ_ERROR_ARGUMENT);
  q = r;
  q.zero_point = -129;
  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, bias, &q, out), MCUQ_ERROR_ARGUMENT);
  q = r;
  q.shift = bad_shift; /* channel 1 has shift 31 */
  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, bias, &q, out), MCUQ_ERROR_ARGUMENT);
  q.per_channel = 0; /* only entry 0 is read */
  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, bias, &q, out), MCUQ_OK);
  q = r;
  q.rounding = (mcuq_rounding)7;
  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, bias, &q, out), MCUQ_ERROR_ARGUMENT);
  p = good;
  p.in_zero_point = 128;
  CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out), MCUQ_ERROR_ARGUMENT);
  p.in_zero_point = 128; /* fine for 16 bits */
  CHECK_EQ(mcuq_conv2d_s16(&p, in16, w, bias64, &r16, out16), MCUQ_OK);
  /* 16-bit layers: the int64 rule takes shifts up to 7, the power-of-two
   * rule up to 30. */
  q = r16;
  q.shift = shift8;
  CHECK_EQ(mcuq_conv2d_s16(&good, in16, w, bias64, &q, out16), MCUQ_ERROR_ARGUMENT);
  CHECK_EQ(mcuq_conv2d_s8(&good, in, w, bias, &q, out), MCUQ_ERROR_ARGUMENT); /* act range of r16 */
  q.rounding = MCUQ_ROUND_SHIFT;
  CHECK_EQ(mcuq_conv2d_s16(&good, in16, w, bias64, &q, out16), MCUQ_OK);

  /* A failed call leaves the output alone. */
  memset(out, 0x5A, sizeof out);
  p = good;
  p.out_h = 4;
  CHECK_EQ(mcuq_conv2d_s8(&p, in, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  for (i = 0; i < COUNT(out); ++i) untouched &= out[i] == 0x5A;
  CHECK_EQ(untouched, 1);
}

static void test_other_errors(void) {
  int8_t a[4] = {0}, out[4], w[16] = {0}, table[256] = {0};
  int16_t a16[4] = {0}, out16[4];
  const int32_t bias[4] = {0}, mult[4] = {ONE_MULT, ONE_MULT, ONE_MULT, ONE_MULT};
  const int64_t bias64[4] = {0};
  const int8_t shift[4] = {0, 0, 0, -32};
  const mcuq_requant r = make_requant(mult, shift, 0, MCUQ_ROUND_DOUBLE, 0, -128, 127);
  mcuq_requant q;
  mcuq_pool2d_params pool;
  mcuq_add_params add;
  mcuq_mul_params mul;
  mcuq_requantize_params rq;

  /* fully connected */
  CHECK_EQ(mcuq_fully_connected_s8(4, 4, a, w, bias, &r, out), MCUQ_OK);
  CHECK_EQ(mcuq_fully_connected_s8(4, 4, 0, w, bias, &r, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_fully_connected_s8(4, 4, a, w, 0, &r, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_fully_connected_s16(4, 4, a16, 0, bias64, &r, out16), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_fully_connected_s8(0, 4, a, w, bias, &r, out), MCUQ_ERROR_SHAPE);
  CHECK_EQ(mcuq_fully_connected_s16(4, -1, a16, w, bias64, &r, out16), MCUQ_ERROR_SHAPE);
  q = r;
  q.per_channel = 1; /* channel 3 has shift -32 */
  CHECK_EQ(mcuq_fully_connected_s8(4, 4, a, w, bias, &q, out), MCUQ_ERROR_ARGUMENT);
  CHECK_EQ(mcuq_fully_connected_s8(4, 3, a, w, bias, &q, out), MCUQ_OK);

  /* pooling */
  pool = make_pool(1, 2, 2, 2, 2, 0, 0, 0, -128, 127);
  CHECK_EQ(mcuq_max_pool2d_s8(&pool, a, out), MCUQ_OK);
  CHECK_EQ(mcuq_max_pool2d_s8(0, a, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_avg_pool2d_s8(&pool, 0, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_avg_pool2d_s16(&pool, a16, 0), MCUQ_ERROR_NULL);
  pool.out_w = 2;
  CHECK_EQ(mcuq_max_pool2d_s8(&pool, a, out), MCUQ_ERROR_SHAPE);
  pool = make_pool(1, 2, 2, 3, 1, 0, 0, 0, -128, 127); /* 3x3 window on a 2x2 input */
  pool.out_h = pool.out_w = 1;
  CHECK_EQ(mcuq_avg_pool2d_s8(&pool, a, out), MCUQ_ERROR_SHAPE);
  pool = make_pool(1, 2, 2, 2, 1, 2, 0, 0, -128, 127); /* pad 2 > k / 2: empty windows */
  CHECK_EQ(mcuq_avg_pool2d_s8(&pool, a, out), MCUQ_ERROR_SHAPE);
  pool = make_pool(1, 2, 2, 2, 2, 0, 0, 0, -128, 127);
  pool.stride_h = 0;
  CHECK_EQ(mcuq_max_pool2d_s16(&pool, a16, out16), MCUQ_ERROR_SHAPE);
  pool = make_pool(1, 2, 2, 2, 2, 0, 0, 0, 1, 0);
  CHECK_EQ(mcuq_max_pool2d_s8(&pool, a, out), MCUQ_ERROR_ARGUMENT);
  pool = make_pool(1, 2, 2, 2, 2, 0, 0, 300, -128, 127);
  CHECK_EQ(mcuq_avg_pool2d_s8(&pool, a, out), MCUQ_ERROR_ARGUMENT);
  CHECK_EQ(mcuq_avg_pool2d_s16(&pool, a16, out16), MCUQ_OK); /* 300 fits int16 */

  /* mul */
  mul = make_mul(2, 2, 1, 0, 0, 0, -2, 0);
  CHECK_EQ(mcuq_mul_s8(&mul, a, a, out), MCUQ_OK);
  CHECK_EQ(mcuq_mul_s8(&mul, a, 0, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_mul_s16(0, a16, a16, out16), MCUQ_ERROR_NULL);
  mul.inner = 0;
  CHECK_EQ(mcuq_mul_s8(&mul, a, a, out), MCUQ_ERROR_SHAPE);
  mul = make_mul(2, 2, 3, 0, 0, 0, -2, 0); /* b_outer_stride must be 0, 1 or inner */
  CHECK_EQ(mcuq_mul_s8(&mul, a, a, out), MCUQ_ERROR_SHAPE);
  mul = make_mul(2, 2, 1, 2, 0, 0, -2, 0);
  CHECK_EQ(mcuq_mul_s8(&mul, a, a, out), MCUQ_ERROR_SHAPE);
  mul = make_mul(2, 2, 1, 0, 0, 0, 8, 0); /* a shift the int64 rule of 16-bit layers refuses */
  CHECK_EQ(mcuq_mul_s8(&mul, a, a, out), MCUQ_OK);
  CHECK_EQ(mcuq_mul_s16(&mul, a16, a16, out16), MCUQ_ERROR_ARGUMENT);
  mul = make_mul(2, 2, 1, 0, 128, 0, -2, 0);
  CHECK_EQ(mcuq_mul_s8(&mul, a, a, out), MCUQ_ERROR_ARGUMENT);
  mul = make_mul(2, 2, 1, 0, 0, 0, -2, 0);
  mul.act_min = 5;
  mul.act_max = 4;
  CHECK_EQ(mcuq_mul_s8(&mul, a, a, out), MCUQ_ERROR_ARGUMENT);
  CHECK_EQ(mcuq_sub_s8(0, a, a, out), MCUQ_ERROR_NULL);

  /* add */
  add = make_add(4, 20, 0, 0, 0, 0, 0, -19, -128, 127);
  CHECK_EQ(mcuq_add_s8(&add, a, a, out), MCUQ_OK);
  CHECK_EQ(mcuq_add_s8(&add, a, 0, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_add_s16(0, a16, a16, out16), MCUQ_ERROR_NULL);
  add.size = 0;
  CHECK_EQ(mcuq_add_s8(&add, a, a, out), MCUQ_ERROR_SHAPE);
  add = make_add(4, 32, 0, 0, 0, 0, 0, -19, -128, 127);
  CHECK_EQ(mcuq_add_s8(&add, a, a, out), MCUQ_ERROR_ARGUMENT);
  add = make_add(4, -1, 0, 0, 0, 0, 0, -19, -128, 127);
  CHECK_EQ(mcuq_add_s8(&add, a, a, out), MCUQ_ERROR_ARGUMENT);
  add = make_add(4, 20, 0, 31, 0, 0, 0, -19, -128, 127);
  CHECK_EQ(mcuq_add_s8(&add, a, a, out), MCUQ_ERROR_ARGUMENT);
  add = make_add(4, 20, 0, 0, 0, 0, 0, -32, -128, 127);
  CHECK_EQ(mcuq_add_s8(&add, a, a, out), MCUQ_ERROR_ARGUMENT);
  add = make_add(4, 20, 0, 0, 200, 0, 0, -19, -128, 127);
  CHECK_EQ(mcuq_add_s8(&add, a, a, out), MCUQ_ERROR_ARGUMENT);
  CHECK_EQ(mcuq_add_s16(&add, a16, a16, out16), MCUQ_OK);
  add = make_add(4, 20, 0, 0, 0, 0, 0, -19, 10, -10);
  CHECK_EQ(mcuq_add_s16(&add, a16, a16, out16), MCUQ_ERROR_ARGUMENT);

  /* requantize */
  rq.size = 4;
  rq.in_zero_point = 0;
  rq.multiplier = ONE_MULT;
  rq.shift = 0;
  rq.rounding = MCUQ_ROUND_SINGLE;
  rq.out_zero_point = 0;
  rq.act_min = -128;
  rq.act_max = 127;
  CHECK_EQ(mcuq_requantize_s8(&rq, a, out), MCUQ_OK);
  CHECK_EQ(mcuq_requantize_s8(&rq, 0, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_requantize_s16(0, a16, out16), MCUQ_ERROR_NULL);
  rq.size = -4;
  CHECK_EQ(mcuq_requantize_s8(&rq, a, out), MCUQ_ERROR_SHAPE);
  rq.size = 4;
  rq.shift = -32;
  CHECK_EQ(mcuq_requantize_s8(&rq, a, out), MCUQ_ERROR_ARGUMENT);
  rq.shift = 30;
  CHECK_EQ(mcuq_requantize_s8(&rq, a, out), MCUQ_OK);
  rq.rounding = (mcuq_rounding)3;
  CHECK_EQ(mcuq_requantize_s16(&rq, a16, out16), MCUQ_ERROR_ARGUMENT);

  /* lut */
  CHECK_EQ(mcuq_lut_s8(4, table, a, out), MCUQ_OK);
  CHECK_EQ(mcuq_lut_s8(4, 0, a, out), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_lut_s8(4, table, a, 0), MCUQ_ERROR_NULL);
  CHECK_EQ(mcuq_lut_s8(0, table, a, out), MCUQ_ERROR_SHAPE);
}
#endif /* MCUQ_NO_CHECKS */

int main(void) {
  test_conv_by_hand();
  test_conv_against_reference();
  test_conv_random_shapes();
  test_fast_requantize_equals_general();
  test_fully_connected();
  test_max_pool();
  test_avg_pool();
  test_pool_s16();
  test_add();
  test_sub();
  test_mul();
  test_pad_and_upsample();
  test_softmax();
  test_conv_transpose();
  test_requantize();
  test_lut();
  test_lut_s16();
  test_w4_kernels();
  test_codebook_kernels();
#ifndef MCUQ_NO_CHECKS
  test_conv_errors();
  test_other_errors();
#endif
  printf("test_kernels: %ld checks, %ld failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
