/* mcuq runtime, internal: int8 dot products in register blocks, the inner
 * loop of convolutions and fully connected layers. Not part of the API.
 *
 * A block computes several dot products at once so that each load feeds
 * more than one multiply: two weight rows by two input columns (2x2) or two
 * rows by one column (2x1). Weights are read through MCUQ_READ_S8 (flash on
 * the AVR); inputs are in RAM.
 *
 * Cores with the DSP extension (Cortex-M4/M7/M33: __ARM_FEATURE_DSP) read
 * four int8 values per load and multiply-accumulate two pairs per
 * instruction: SXTB16 widens bytes 0 and 2 (and, rotated, 1 and 3) of a
 * word into two int16 halves, SMLAD adds both products. Weights and inputs
 * are unpacked the same way, so the pairs line up. The sums are the same
 * integers as the portable loops' (no intermediate can overflow: |w x| <
 * 2^14 and the exporter proves every partial sum fits int32).
 *
 * MCUQ_DOT_WEIGHT(p) reads one weight; a file whose weights are in RAM
 * (decoded codebook weights, on the AVR) defines it as *(p) before
 * including this header.
 */
#ifndef MCUQ_DOT_S8_H
#define MCUQ_DOT_S8_H

#include <stdint.h>

#include "mcuq_internal.h"
#include "mcuq_runtime.h"

#ifndef MCUQ_DOT_WEIGHT
#define MCUQ_DOT_WEIGHT(p) MCUQ_READ_S8(p)
#endif

#if MCUQ_DSP_KERNELS
#include <arm_acle.h>
#include <string.h>
#define MCUQ_DOT_SIMD 1

/* Four int8 values, any alignment (unaligned LDR on these cores). */
MCUQ_INLINE uint32_t mcuq_load4(const int8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

MCUQ_INLINE uint32_t mcuq_odd_bytes(uint32_t v) {
  return (v >> 8) | (v << 24); /* rotate: SXTB16 then takes bytes 1 and 3 */
}
#else
#define MCUQ_DOT_SIMD 0
#endif

/* acc[0] += w0.x0, acc[1] += w0.x1, acc[2] += w1.x0, acc[3] += w1.x1 over n,
 * with the second row and column `stride` bytes after the first (one
 * pointer each: fewer registers live in the loop, none spilled at -Os). */
MCUQ_ALWAYS_INLINE void mcuq_dot_2x2_s8(const int8_t *w, const int8_t *x, int32_t stride, int32_t n, int32_t *acc) {
  int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
#if MCUQ_DOT_SIMD
  for (; n >= 4; n -= 4, w += 4, x += 4) {
    const uint32_t xa = mcuq_load4(x), xb = mcuq_load4(x + stride);
    const int32_t xa_even = __sxtb16(xa), xa_odd = __sxtb16(mcuq_odd_bytes(xa));
    const int32_t xb_even = __sxtb16(xb), xb_odd = __sxtb16(mcuq_odd_bytes(xb));
    uint32_t wv = mcuq_load4(w);
    int32_t w_even = __sxtb16(wv), w_odd = __sxtb16(mcuq_odd_bytes(wv));
    a00 = __smlad(w_even, xa_even, __smlad(w_odd, xa_odd, a00));
    a01 = __smlad(w_even, xb_even, __smlad(w_odd, xb_odd, a01));
    wv = mcuq_load4(w + stride);
    w_even = __sxtb16(wv);
    w_odd = __sxtb16(mcuq_odd_bytes(wv));
    a10 = __smlad(w_even, xa_even, __smlad(w_odd, xa_odd, a10));
    a11 = __smlad(w_even, xb_even, __smlad(w_odd, xb_odd, a11));
  }
#endif
  for (int32_t i = 0; i < n; ++i) {
    const int32_t wa = MCUQ_DOT_WEIGHT(&w[i]), wb = MCUQ_DOT_WEIGHT(&w[i + stride]);
    const int32_t xa = x[i], xb = x[i + stride];
    a00 += wa * xa;
    a01 += wa * xb;
    a10 += wb * xa;
    a11 += wb * xb;
  }
  acc[0] = a00;
  acc[1] = a01;
  acc[2] = a10;
  acc[3] = a11;
}

/* acc[0] += w0.x, acc[1] += w1.x over n. */
MCUQ_ALWAYS_INLINE void mcuq_dot_2x1_s8(const int8_t *w0, const int8_t *w1, const int8_t *x, int32_t n, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1];
#if MCUQ_DOT_SIMD
  for (; n >= 4; n -= 4, w0 += 4, w1 += 4, x += 4) {
    const uint32_t xv = mcuq_load4(x), wa = mcuq_load4(w0), wb = mcuq_load4(w1);
    const int32_t x_even = __sxtb16(xv), x_odd = __sxtb16(mcuq_odd_bytes(xv));
    a0 = __smlad(__sxtb16(wa), x_even, __smlad(__sxtb16(mcuq_odd_bytes(wa)), x_odd, a0));
    a1 = __smlad(__sxtb16(wb), x_even, __smlad(__sxtb16(mcuq_odd_bytes(wb)), x_odd, a1));
  }
#endif
  for (int32_t i = 0; i < n; ++i) {
    const int32_t xv = x[i];
    a0 += MCUQ_DOT_WEIGHT(&w0[i]) * xv;
    a1 += MCUQ_DOT_WEIGHT(&w1[i]) * xv;
  }
  acc[0] = a0;
  acc[1] = a1;
}

/* w.x over n, added to acc. */
MCUQ_ALWAYS_INLINE int32_t mcuq_dot_1x1_s8(const int8_t *w, const int8_t *x, int32_t n, int32_t acc) {
#if MCUQ_DOT_SIMD
  for (; n >= 4; n -= 4, w += 4, x += 4) {
    const uint32_t xv = mcuq_load4(x), wv = mcuq_load4(w);
    acc = __smlad(__sxtb16(wv), __sxtb16(xv), __smlad(__sxtb16(mcuq_odd_bytes(wv)), __sxtb16(mcuq_odd_bytes(xv)), acc));
  }
#endif
  for (int32_t i = 0; i < n; ++i) acc += MCUQ_DOT_WEIGHT(&w[i]) * x[i];
  return acc;
}

#endif /* MCUQ_DOT_S8_H */
