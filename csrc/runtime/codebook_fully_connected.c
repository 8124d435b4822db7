/* mcuq runtime: fully connected layers with codebook weights (see
 * codebook.c). Each weight is used once, so two rows are decoded as they
 * are multiplied: where rows are whole bytes within one codebook row, each
 * field through its row's levels, in loops per core (hand-written Thumb-1 on
 * the M0, Thumb-2 with DSP instructions on the M4/M7/M33/M55, C elsewhere),
 * or on DSP cores through tables of index pairs; other rows 64 weights at a
 * time into int8 on the stack. */
#include <stdint.h>

/* The decoded rows are in RAM, also on the AVR (where MCUQ_READ_S8 reads
 * flash). */
#define MCUQ_DOT_WEIGHT(p) (*(p))
#include "dot_s8.h"
#include "mcuq_internal.h"
#include "mcuq_runtime.h"

/* Weights decoded per pass, per row: a multiple of 4 (the DSP loops' step). */
#define MCUQ_CB_CHUNK 64

/* The fused loops of a fully connected layer, for output rows that each lie
 * within one codebook row and start on a byte: 4-bit rows of an even width
 * (two weights a byte) and 3-bit rows of a multiple of 8 (eight weights in
 * three bytes). Rows o and o + 1 then use codebook rows r and r or r + 1, so
 * row 1's levels lie 1 << bits bytes after row 0's (unless both rows share
 * one codebook row), as the codebook holds them: the loops read them in
 * place. Each field is decoded as it is multiplied; each input load feeds
 * both rows. The dot functions are not inlined: their pointers stay in
 * registers. */

/* The codebook rows of output rows o and o + 1 (o even, counting up by
 * two), each codebook row serving `per` output rows: advanced by additions,
 * as the M0 has no divider (two divisions a row pair cost about a third
 * more instructions on 64-weight rows there). */
typedef struct {
  int32_t row;  /* o's codebook row */
  int32_t next; /* the first output row of the codebook row after it */
  int32_t per;
} mcuq_cb_rows;

MCUQ_ALWAYS_INLINE void next_cb_rows(mcuq_cb_rows *c, int32_t o, int two, int32_t *row0, int32_t *row1) {
  if (c->per == 1) { /* a codebook per output channel */
    *row0 = o;
    *row1 = o + two;
    return;
  }
  if (o >= c->next) { /* per >= 2 here: o, up by two, passes at most one boundary a step */
    ++c->row;
    c->next += c->per;
  }
  *row0 = c->row;
  *row1 = two && o + 1 >= c->next ? c->row + 1 : c->row;
}

/* The levels of codebook rows row0 and row1 (row0 or row0 + 1). On the AVR
 * the codebook is in flash, which plain loads don't reach: the levels are
 * copied to `copy` (row 1's after row 0's), when they change. */
MCUQ_ALWAYS_INLINE const int8_t *row_levels(const int8_t *codebook, int32_t bits, int32_t row0, int32_t row1,
                                            int8_t copy[32], int32_t built[2]) {
#if defined(__AVR__)
  const int32_t n = (int32_t)1 << bits;
  for (int32_t r = 0; r < 2; ++r) {
    const int32_t row = r == 0 ? row0 : row1;
    if (built[r] == row || (r == 1 && row1 == row0)) continue;
    built[r] = row;
    for (int32_t i = 0; i < n; ++i) copy[r * n + i] = MCUQ_READ_S8(&codebook[row * n + i]);
  }
  return copy;
#else
  (void)row1;
  (void)copy;
  (void)built;
  return codebook + (row0 << bits);
#endif
}

/* Eight 3-bit fields from three bytes, the first field least significant. */
MCUQ_ALWAYS_INLINE uint32_t load_cb3_group(const uint8_t *p) {
  return MCUQ_READ_U8(p) | (uint32_t)MCUQ_READ_U8(p + 1) << 8 | (uint32_t)MCUQ_READ_U8(p + 2) << 16;
}

/* Index byte b0 of row 0 and b1 of row 1 (two 4-bit fields each, levels
 * t0 and t1) against x[0] and x[1]: the loops' step, and their tails'. */
MCUQ_ALWAYS_INLINE void cb4_byte(uint32_t b0, uint32_t b1, const int8_t *t0, const int8_t *t1, const int8_t *x,
                                 int32_t *a0, int32_t *a1) {
  const int32_t x0 = x[0], x1 = x[1];
  *a0 += t0[b0 & 15u] * x0 + t0[b0 >> 4] * x1;
  *a1 += t1[b1 & 15u] * x0 + t1[b1 >> 4] * x1;
}

#if defined(__ARM_ARCH_6M__) && !defined(MCUQ_PORTABLE_KERNELS)
/* Cortex-M0/M0+ (Thumb-1: eight low registers, LDRSB with a register offset
 * only): GCC's code for these loops spills (10.4 instructions per MAC for
 * 3-bit rows, against 6.2 for the int8 loop), so eight weights of both rows
 * are written out here. Per weight: the input (LDRB, SXTB) once; per row
 * the field (shifts), its level (LDRSB; row 1's 1 << bits bytes on), MULS, ADD.
 * Accumulator 0 sits in a high register: seven low registers, so it also
 * builds where r7 is the frame pointer. GCC reads Thumb-1 inline assembly
 * as divided syntax unless told (-masm-syntax-unified), hence the first
 * line; GCC restores its own syntax after the block. */
#define MCUQ_T1_INPUT(k) "ldrb %[xk], [%[x], #" #k "]\n\tsxtb %[xk], %[xk]\n\t"
#define MCUQ_T1_MAC(acc) "ldrsb %[f], [%[t], %[f]]\n\tmuls %[f], %[xk], %[f]\n\tadd " acc ", %[f]\n\t"
/* Row 1's level: 16 (4 bits) or 8 bytes on, or (one codebook row for both
 * rows) the same. */
#define MCUQ_T1_MAC1(offset) offset MCUQ_T1_MAC("%[a1]")
#define MCUQ_T1_OFFSET(n) "adds %[f], #" #n "\n\t"
/* Field k of a 3-bit group (v0, v1: its 24 bits) to the top, then down
 * (the last field is the top already). */
#define MCUQ_T1_CB3(k, up, offset)                                                                         \
  MCUQ_T1_INPUT(k) "lsls %[f], %[v0], #" #up "\n\tlsrs %[f], %[f], #29\n\t" MCUQ_T1_MAC("%[a0]")           \
      "lsls %[f], %[v1], #" #up "\n\tlsrs %[f], %[f], #29\n\t" MCUQ_T1_MAC1(offset)
#define MCUQ_T1_CB3_LAST(offset)                                                                           \
  MCUQ_T1_INPUT(7) "lsrs %[f], %[v0], #21\n\t" MCUQ_T1_MAC("%[a0]") "lsrs %[f], %[v1], #21\n\t" MCUQ_T1_MAC1(offset)
#define MCUQ_T1_CB3_GROUP(offset)                                                                          \
  ".syntax unified\n\t" MCUQ_T1_CB3(0, 29, offset) MCUQ_T1_CB3(1, 26, offset) MCUQ_T1_CB3(2, 23, offset)    \
      MCUQ_T1_CB3(3, 20, offset) MCUQ_T1_CB3(4, 17, offset) MCUQ_T1_CB3(5, 14, offset)                     \
          MCUQ_T1_CB3(6, 11, offset) MCUQ_T1_CB3_LAST(offset)
/* Index byte j of each row (at p0, p1): its low nibble with x[2j], its high
 * nibble with x[2j + 1]. */
#define MCUQ_T1_CB4(j, k0, k1, offset)                                                                     \
  MCUQ_T1_INPUT(k0) "ldrb %[f], [%[p0], #" #j "]\n\tlsls %[f], %[f], #28\n\tlsrs %[f], %[f], #28\n\t"      \
      MCUQ_T1_MAC("%[a0]") "ldrb %[f], [%[p1], #" #j "]\n\tlsls %[f], %[f], #28\n\tlsrs %[f], %[f], #28\n\t" \
      MCUQ_T1_MAC1(offset) MCUQ_T1_INPUT(k1) "ldrb %[f], [%[p0], #" #j "]\n\tlsrs %[f], %[f], #4\n\t"      \
      MCUQ_T1_MAC("%[a0]") "ldrb %[f], [%[p1], #" #j "]\n\tlsrs %[f], %[f], #4\n\t" MCUQ_T1_MAC1(offset)
#define MCUQ_T1_CB4_BLOCK(offset)                                                                          \
  ".syntax unified\n\t" MCUQ_T1_CB4(0, 0, 1, offset) MCUQ_T1_CB4(1, 2, 3, offset)                          \
      MCUQ_T1_CB4(2, 4, 5, offset) MCUQ_T1_CB4(3, 6, 7, offset)
/* The operands; each row's source (p0, p1: index pointers; v0, v1: 3-bit
 * fields) is named after its variable. */
#define MCUQ_T1_OPERANDS(row0_source, row1_source)                                                         \
  : [a0] "+h"(a0), [a1] "+l"(a1), [xk] "=&l"(xk), [f] "=&l"(f)                                             \
  : [row0_source] "l"(row0_source), [row1_source] "l"(row1_source), [t] "l"(t), [x] "l"(x)                 \
  : "cc", "memory"

/* shared: both rows use t's first 16 bytes (one codebook row). */
static MCUQ_NOINLINE void dot_2x1_cb4(const uint8_t *p0, const uint8_t *p1, const int8_t *t, int shared,
                                     const int8_t *x, int32_t pairs, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], xk, f;
  for (; pairs >= 4 && shared; pairs -= 4, p0 += 4, p1 += 4, x += 8) {
    __asm__(MCUQ_T1_CB4_BLOCK("") MCUQ_T1_OPERANDS(p0, p1));
  }
  for (; pairs >= 4; pairs -= 4, p0 += 4, p1 += 4, x += 8) {
    __asm__(MCUQ_T1_CB4_BLOCK(MCUQ_T1_OFFSET(16)) MCUQ_T1_OPERANDS(p0, p1));
  }
  const int8_t *const t1 = shared ? t : t + 16;
  for (; pairs > 0; --pairs, x += 2) cb4_byte(*p0++, *p1++, t, t1, x, &a0, &a1);
  acc[0] = a0;
  acc[1] = a1;
}

/* The groups of both rows; shared is a constant where this is inlined, so
 * that each loop holds one block. */
MCUQ_ALWAYS_INLINE void cb3_groups(const uint8_t *p0, const uint8_t *p1, const int8_t *t, const int shared,
                                   const int8_t *x, int32_t groups, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], xk, f;
  const int32_t stride = (int32_t)(p1 - p0);
  for (; groups > 0; --groups, p0 += 3, x += 8) {
    /* Row 1 at p0 + stride, hidden from GCC, which would otherwise keep a
     * second pointer in a high register (three instructions a group to
     * advance it). */
    const uint8_t *row1 = p0 + stride;
    __asm__("" : "+r"(row1));
    const uint32_t v0 = load_cb3_group(p0), v1 = load_cb3_group(row1);
    if (shared) {
      __asm__(MCUQ_T1_CB3_GROUP("") MCUQ_T1_OPERANDS(v0, v1));
    } else {
      __asm__(MCUQ_T1_CB3_GROUP(MCUQ_T1_OFFSET(8)) MCUQ_T1_OPERANDS(v0, v1));
    }
  }
  acc[0] = a0;
  acc[1] = a1;
}

static MCUQ_NOINLINE void dot_2x1_cb3(const uint8_t *p0, const uint8_t *p1, const int8_t *t, int shared,
                                     const int8_t *x, int32_t groups, int32_t *acc) {
  if (shared) {
    cb3_groups(p0, p1, t, 1, x, groups, acc);
  } else {
    cb3_groups(p0, p1, t, 0, x, groups, acc);
  }
}
#else
#if MCUQ_DOT_SIMD || (defined(__ARM_ARCH_7M__) && !defined(__ARM_BIG_ENDIAN) && !defined(MCUQ_PORTABLE_KERNELS))
/* Thumb-2 (M3, and the DSP cores' rows without pair tables). GCC's loops
 * took 21 instructions per four MACs on the M4 (byte loads, AND and LSR per
 * index byte, each input loaded alone). Written out: per pass eight fields
 * of each row (an index word: 4-bit; three bytes: 3-bit), and per weight
 * its field (UBFX), its level (LDRSB, from the row's levels at t0 or t1)
 * and a multiply-accumulate. With the DSP extension two input words are
 * unpacked by SXTB16, xe = (x0, x2) and xo = (x1, x3), for both rows, and
 * SMLABB / SMLABT take the level's low half (LDRSB sign-extends) and the
 * input's half: 59 instructions per 16 MACs. Without it (M3) each input is
 * loaded once (LDRSB) for both rows and multiplied by MLA: 61. The loop's
 * end is read from memory, so that the loops take 12 registers: they build
 * where r7 (frame pointer) and r9 (platform register) are both reserved. */
#define MCUQ_T2_UBFX(w, lsb, width) "ubfx %[f], %[" w "], #" #lsb ", #" #width "\n\t"
#define MCUQ_T2_LEVEL(t) "ldrsb %[f], [%[" t "], %[f]]\n\t"
#if MCUQ_DOT_SIMD
#define MCUQ_T2_FIELD(w, lsb, width, t, x, top, a) \
  MCUQ_T2_UBFX(w, lsb, width) MCUQ_T2_LEVEL(t) "smlab" top " %[" a "], %[f], %[" x "], %[" a "]\n\t"
/* Fields k..k+3 (bits from lsb on) of one row (index word w, levels t,
 * accumulator a) against four unpacked inputs. */
#define MCUQ_T2_FIELDS4(w, lsb0, lsb1, lsb2, lsb3, width, t, a)                                         \
  MCUQ_T2_FIELD(w, lsb0, width, t, "xe", "b", a) MCUQ_T2_FIELD(w, lsb1, width, t, "xo", "b", a)             \
      MCUQ_T2_FIELD(w, lsb2, width, t, "xe", "t", a) MCUQ_T2_FIELD(w, lsb3, width, t, "xo", "t", a)
/* Four inputs (the word `load` puts in xo) unpacked into xe and xo. */
#define MCUQ_T2_INPUTS4(load) load "\n\tsxtb16 %[xe], %[xo]\n\tsxtb16 %[xo], %[xo], ror #8\n\t"
#define MCUQ_T2_HALF(load, lsb0, lsb1, lsb2, lsb3, width)                                                 \
  MCUQ_T2_INPUTS4(load) MCUQ_T2_FIELDS4("w0", lsb0, lsb1, lsb2, lsb3, width, "t0", "a0")                  \
      MCUQ_T2_FIELDS4("w1", lsb0, lsb1, lsb2, lsb3, width, "t1", "a1")
/* Eight weights of both rows (index words w0, w1) against x[0..7], x advanced. */
#define MCUQ_T2_PASS4                                                                                  \
  MCUQ_T2_HALF("ldr %[xo], [%[x]], #8", 0, 4, 8, 12, 4) MCUQ_T2_HALF("ldr %[xo], [%[x], #-4]", 16, 20, 24, 28, 4)
#define MCUQ_T2_PASS3                                                                                  \
  MCUQ_T2_HALF("ldr %[xo], [%[x]], #8", 0, 3, 6, 9, 3) MCUQ_T2_HALF("ldr %[xo], [%[x], #-4]", 12, 15, 18, 21, 3)
#define MCUQ_T2_INPUT_REGS [xe] "=&r"(xe), [xo] "=&r"(xo)
#define MCUQ_T2_TEMPS int32_t xe, xo
#else
/* Input x[k] (at x + offset) against field k (bits from lsb) of both rows. */
#define MCUQ_T2_INPUT(load, lsb, width)                                                                \
  load "\n\t" MCUQ_T2_UBFX("w0", lsb, width) MCUQ_T2_LEVEL("t0") "mla %[a0], %[f], %[xk], %[a0]\n\t"        \
      MCUQ_T2_UBFX("w1", lsb, width) MCUQ_T2_LEVEL("t1") "mla %[a1], %[f], %[xk], %[a1]\n\t"
#define MCUQ_T2_LOAD(offset) "ldrsb %[xk], [%[x], #" #offset "]"
#define MCUQ_T2_PASS(width, l1, l2, l3, l4, l5, l6, l7)                                                 \
  MCUQ_T2_INPUT("ldrsb %[xk], [%[x]], #8", 0, width) MCUQ_T2_INPUT(MCUQ_T2_LOAD(-7), l1, width)            \
      MCUQ_T2_INPUT(MCUQ_T2_LOAD(-6), l2, width) MCUQ_T2_INPUT(MCUQ_T2_LOAD(-5), l3, width)                \
          MCUQ_T2_INPUT(MCUQ_T2_LOAD(-4), l4, width) MCUQ_T2_INPUT(MCUQ_T2_LOAD(-3), l5, width)            \
              MCUQ_T2_INPUT(MCUQ_T2_LOAD(-2), l6, width) MCUQ_T2_INPUT(MCUQ_T2_LOAD(-1), l7, width)
#define MCUQ_T2_PASS4 MCUQ_T2_PASS(4, 4, 8, 12, 16, 20, 24, 28)
#define MCUQ_T2_PASS3 MCUQ_T2_PASS(3, 3, 6, 9, 12, 15, 18, 21)
#define MCUQ_T2_INPUT_REGS [xk] "=&r"(xk)
#define MCUQ_T2_TEMPS int32_t xk
#endif
/* Passes of both rows (index pointers p0, p1 advanced by `step` bytes a
 * pass) until p0 reaches `limit`. */
#define MCUQ_T2_LOOP(step, pass, limit)                                                                   \
  __asm__("1:\n\t"                                                                                      \
          "ldr %[w0], [%[p0]], #" #step "\n\t"                                                          \
          "ldr %[w1], [%[p1]], #" #step "\n\t" pass                                                     \
          "ldr %[f], %[end]\n\t"                                                                        \
          "cmp %[p0], %[f]\n\t"                                                                         \
          "bne 1b"                                                                                      \
          : [a0] "+r"(a0), [a1] "+r"(a1), [p0] "+r"(p0), [p1] "+r"(p1), [x] "+r"(x), [w0] "=&r"(w0),     \
            [w1] "=&r"(w1), [f] "=&r"(f), MCUQ_T2_INPUT_REGS                                              \
          : [t0] "r"(t), [t1] "r"(t1), [end] "m"(limit)                                                   \
          : "cc", "memory")

static MCUQ_NOINLINE void dot_2x1_cb4(const uint8_t *p0, const uint8_t *p1, const int8_t *t, int shared,
                                     const int8_t *x, int32_t pairs, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1];
  const int8_t *const t1 = shared ? t : t + 16;
  const uint8_t *const end = p0 + (pairs & ~3);
  if (p0 != end) {
    MCUQ_T2_TEMPS;
    int32_t w0, w1, f;
    MCUQ_T2_LOOP(4, MCUQ_T2_PASS4, end);
  }
  for (pairs &= 3; pairs > 0; --pairs, x += 2) cb4_byte(*p0++, *p1++, t, t1, x, &a0, &a1);
  acc[0] = a0;
  acc[1] = a1;
}

/* Groups of three bytes: each pass loads a word, whose fourth byte is the
 * next group's, up to the last group, which loads its three bytes alone. */
static MCUQ_NOINLINE void dot_2x1_cb3(const uint8_t *p0, const uint8_t *p1, const int8_t *t, int shared,
                                     const int8_t *x, int32_t groups, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1], w0, w1, f;
  MCUQ_T2_TEMPS;
  const int8_t *const t1 = shared ? t : t + 8;
  const uint8_t *const last = p0 + 3 * (groups - 1);
  if (p0 != last) {
    MCUQ_T2_LOOP(3, MCUQ_T2_PASS3, last);
  }
  w0 = (int32_t)load_cb3_group(p0);
  w1 = (int32_t)load_cb3_group(p1);
  __asm__(MCUQ_T2_PASS3
          : [a0] "+r"(a0), [a1] "+r"(a1), [x] "+r"(x), [f] "=&r"(f), MCUQ_T2_INPUT_REGS
          : [w0] "r"(w0), [w1] "r"(w1), [t0] "r"(t), [t1] "r"(t1)
          : "cc", "memory");
  acc[0] = a0;
  acc[1] = a1;
}
#undef MCUQ_T2_UBFX
#undef MCUQ_T2_LEVEL
#undef MCUQ_T2_FIELD
#undef MCUQ_T2_FIELDS4
#undef MCUQ_T2_INPUTS4
#undef MCUQ_T2_HALF
#undef MCUQ_T2_INPUT
#undef MCUQ_T2_LOAD
#undef MCUQ_T2_PASS
#undef MCUQ_T2_PASS4
#undef MCUQ_T2_PASS3
#undef MCUQ_T2_INPUT_REGS
#undef MCUQ_T2_TEMPS
#undef MCUQ_T2_LOOP
#else
static MCUQ_NOINLINE void dot_2x1_cb4(const uint8_t *p0, const uint8_t *p1, const int8_t *t, int shared,
                                     const int8_t *x, int32_t pairs, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1];
  const int8_t *const t1 = shared ? t : t + 16;
  for (; pairs > 0; --pairs, x += 2) cb4_byte(MCUQ_READ_U8(p0++), MCUQ_READ_U8(p1++), t, t1, x, &a0, &a1);
  acc[0] = a0;
  acc[1] = a1;
}

/* Weight k of a group of each row times x_k (constant shifts once inlined). */
MCUQ_ALWAYS_INLINE void cb3_mac(uint32_t v0, uint32_t v1, const int8_t *t0, const int8_t *t1, int32_t x, int k,
                                int32_t *a0, int32_t *a1) {
  *a0 += t0[(v0 >> (3 * k)) & 7u] * x;
  *a1 += t1[(v1 >> (3 * k)) & 7u] * x;
}

static MCUQ_NOINLINE void dot_2x1_cb3(const uint8_t *p0, const uint8_t *p1, const int8_t *t, int shared,
                                     const int8_t *x, int32_t groups, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1];
  const int8_t *const t1 = shared ? t : t + 8;
  for (; groups > 0; --groups, p0 += 3, p1 += 3, x += 8) {
    const uint32_t v0 = load_cb3_group(p0), v1 = load_cb3_group(p1);
    /* Unrolled by hand: GCC -O2 keeps a loop over k, with variable shifts. */
    cb3_mac(v0, v1, t, t1, x[0], 0, &a0, &a1);
    cb3_mac(v0, v1, t, t1, x[1], 1, &a0, &a1);
    cb3_mac(v0, v1, t, t1, x[2], 2, &a0, &a1);
    cb3_mac(v0, v1, t, t1, x[3], 3, &a0, &a1);
    cb3_mac(v0, v1, t, t1, x[4], 4, &a0, &a1);
    cb3_mac(v0, v1, t, t1, x[5], 5, &a0, &a1);
    cb3_mac(v0, v1, t, t1, x[6], 6, &a0, &a1);
    cb3_mac(v0, v1, t, t1, x[7], 7, &a0, &a1);
  }
  acc[0] = a0;
  acc[1] = a1;
}
#endif
#endif

#if MCUQ_DOT_SIMD
/* With the DSP extension, where MCUQ_FULLY_CONNECTED_CB_SCRATCH allows
 * (rows of whole bytes within a codebook row of at least 384 weights for 4
 * bits, 192 for 3: measured on the M4, about where a table, built once per
 * codebook row, pays for itself against the loops above): a table of every
 * index pair's two weights (w_low, w_high) as int16 halves, and the inputs paired the same way once for the
 * layer in the scratch, so that two products are an index load, a table
 * load and one SMLAD. A 4-bit pair is an index byte (256 entries); a 3-bit
 * pair six bits (64 entries). */

/* An input pair in the caller's arena (declared int8_t, or anything):
 * may_alias, so that its words don't break the arena's effective type. */
typedef int32_t mcuq_pair __attribute__((may_alias));

/* out[0..3] = low[0..3] | h, advancing both: LDM and STM (GCC emits a load
 * and a store per entry, which made building a 4-bit table cost about 1.5
 * instructions per weight of a 784-weight row). */
MCUQ_ALWAYS_INLINE void or_four(const uint32_t **low, uint32_t h, uint32_t **out) {
  __asm__ volatile("ldmia %[l]!, {r4, r5, r6, r8}\n\t"
                   "orr r4, r4, %[h]\n\t"
                   "orr r5, r5, %[h]\n\t"
                   "orr r6, r6, %[h]\n\t"
                   "orr r8, r8, %[h]\n\t"
                   "stmia %[o]!, {r4, r5, r6, r8}"
                   : [l] "+r"(*low), [o] "+r"(*out)
                   : [h] "r"(h)
                   : "r4", "r5", "r6", "r8", "memory");
}

static void build_pairs(const int8_t *codebook, int32_t bits, int32_t row, uint32_t *pairs) {
  const int32_t n = (int32_t)1 << bits;
  const int8_t *const levels = codebook + row * n;
  uint32_t low[16];
  for (int32_t i = 0; i < n; ++i) low[i] = (uint16_t)MCUQ_READ_S8(&levels[i]);
  for (int32_t high = 0; high < n; ++high) {
    const uint32_t h = (uint32_t)(int32_t)MCUQ_READ_S8(&levels[high]) << 16;
    const uint32_t *l = low;
    or_four(&l, h, &pairs);
    or_four(&l, h, &pairs);
    if (n == 16) { /* unrolled: a loop here costs a third more */
      or_four(&l, h, &pairs);
      or_four(&l, h, &pairs);
    }
  }
}

/* (low halves of a, b): PKHBT, which GCC's ACLE lacks (plain C compiles to
 * five instructions here). */
MCUQ_ALWAYS_INLINE int32_t pack_low_halves(int32_t a, int32_t b) {
  int32_t r;
  __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

/* (high halves of b, a): PKHTB. */
MCUQ_ALWAYS_INLINE int32_t pack_high_halves(int32_t a, int32_t b) {
  int32_t r;
  __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(a), "r"(b));
  return r;
}

/* SXTB16 of v rotated right by 8 (bytes 1 and 3), the rotation folded in. */
MCUQ_ALWAYS_INLINE int32_t sxtb16_odd(uint32_t v) {
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}

/* The n inputs (n even) as the int16 pairs (x0, x1), (x2, x3), ...: the
 * layer's rows all use them. */
static void pair_inputs(const int8_t *x, int32_t n, mcuq_pair *pairs) {
  for (; n >= 4; n -= 4, x += 4, pairs += 2) {
    const uint32_t xv = mcuq_load4(x);
    const int32_t even = __sxtb16(xv), odd = sxtb16_odd(xv); /* (x0, x2), (x1, x3) */
    pairs[0] = pack_low_halves(even, odd);
    pairs[1] = pack_high_halves(odd, even);
  }
  if (n > 0) pairs[0] = (int32_t)(((uint32_t)(uint16_t)x[0]) | ((uint32_t)x[1] << 16));
}

/* Index byte k of both rows against the input pair x. */
#define MCUQ_CB4_PAIR(k, x)                                       \
  do {                                                            \
    a0 = __smlad((int32_t)t0[MCUQ_READ_U8(p0 + (k))], (x), a0);   \
    a1 = __smlad((int32_t)t1[MCUQ_READ_U8(p1 + (k))], (x), a1);   \
  } while (0)
/* One row's product for index byte k - 4 (the pointer advanced already). */
#define MCUQ_T2_CB4(p, t, x, a, k) \
  "ldrb %[e], [%[" p "], #" #k "]\n\tldr %[e], [%[" t "], %[e], lsl #2]\n\tsmlad %[" a "], %[e], %[" x "], %[" a "]\n\t"

/* Two rows of `pairs` index bytes each (2 * pairs weights) against the
 * paired inputs xp, four bytes per pass. The loop is written out (GCC's
 * spent a fifth of its instructions advancing pointers): per pass two LDRD
 * of inputs, per weight pair an index byte, its table entry and an SMLAD,
 * the first byte of each row with its pointer's advance. */
static MCUQ_NOINLINE void dot_2x1_cb4_pairs(const uint8_t *p0, const uint8_t *p1, const uint32_t *t0,
                                           const uint32_t *t1, const mcuq_pair *xp, int32_t pairs, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1];
  const uint8_t *const end = p0 + (pairs & ~3);
  if (p0 != end) {
    int32_t xa, xb, e;
    __asm__(
        "1:\n\t"
        "ldrd %[xa], %[xb], [%[xp]], #16\n\t"
        "ldrb %[e], [%[p0]], #4\n\tldr %[e], [%[t0], %[e], lsl #2]\n\tsmlad %[a0], %[e], %[xa], %[a0]\n\t"
        "ldrb %[e], [%[p1]], #4\n\tldr %[e], [%[t1], %[e], lsl #2]\n\tsmlad %[a1], %[e], %[xa], %[a1]\n\t"
        MCUQ_T2_CB4("p0", "t0", "xb", "a0", -3) MCUQ_T2_CB4("p1", "t1", "xb", "a1", -3)
        "ldrd %[xa], %[xb], [%[xp], #-8]\n\t"
        MCUQ_T2_CB4("p0", "t0", "xa", "a0", -2) MCUQ_T2_CB4("p1", "t1", "xa", "a1", -2)
        MCUQ_T2_CB4("p0", "t0", "xb", "a0", -1) MCUQ_T2_CB4("p1", "t1", "xb", "a1", -1)
        "cmp %[p0], %[end]\n\t"
        "bne 1b"
        : [a0] "+r"(a0), [a1] "+r"(a1), [p0] "+r"(p0), [p1] "+r"(p1), [xp] "+r"(xp), [xa] "=&r"(xa),
          [xb] "=&r"(xb), [e] "=&r"(e)
        : [t0] "r"(t0), [t1] "r"(t1), [end] "r"(end)
        : "cc", "memory");
  }
  for (int32_t k = 0; k < (pairs & 3); ++k) MCUQ_CB4_PAIR(k, xp[k]);
  acc[0] = a0;
  acc[1] = a1;
}
#undef MCUQ_CB4_PAIR
#undef MCUQ_T2_CB4

/* One group of eight 3-bit weights per row (fields in v0, v1): four pairs
 * of six bits each. */
MCUQ_ALWAYS_INLINE void cb3_pairs_group(uint32_t v0, uint32_t v1, const uint32_t *t0, const uint32_t *t1,
                                        const mcuq_pair *xp, int32_t *acc0, int32_t *acc1) {
  int32_t a0 = *acc0, a1 = *acc1;
  a0 = __smlad((int32_t)t0[v0 & 63u], xp[0], a0);
  a1 = __smlad((int32_t)t1[v1 & 63u], xp[0], a1);
  a0 = __smlad((int32_t)t0[(v0 >> 6) & 63u], xp[1], a0);
  a1 = __smlad((int32_t)t1[(v1 >> 6) & 63u], xp[1], a1);
  a0 = __smlad((int32_t)t0[(v0 >> 12) & 63u], xp[2], a0);
  a1 = __smlad((int32_t)t1[(v1 >> 12) & 63u], xp[2], a1);
  a0 = __smlad((int32_t)t0[(v0 >> 18) & 63u], xp[3], a0);
  a1 = __smlad((int32_t)t1[(v1 >> 18) & 63u], xp[3], a1);
  *acc0 = a0;
  *acc1 = a1;
}

/* Two rows of `groups` three-byte groups each against the paired inputs. */
static MCUQ_NOINLINE void dot_2x1_cb3_pairs(const uint8_t *p0, const uint8_t *p1, const uint32_t *t0,
                                           const uint32_t *t1, const mcuq_pair *xp, int32_t groups, int32_t *acc) {
  int32_t a0 = acc[0], a1 = acc[1];
  const int32_t stride = (int32_t)(p1 - p0);
  /* Four-byte loads (the fourth byte is the next group's) up to the last
   * group, which reads its three bytes only. */
  const mcuq_pair *const last = xp + 4 * (groups - 1);
  while (xp != last) {
    cb3_pairs_group(mcuq_load4((const int8_t *)p0), mcuq_load4((const int8_t *)(p0 + stride)), t0, t1, xp, &a0, &a1);
    p0 += 3;
    xp += 4;
  }
  cb3_pairs_group(load_cb3_group(p0), load_cb3_group(p0 + stride), t0, t1, xp, &a0, &a1);
  acc[0] = a0;
  acc[1] = a1;
}
#endif

/* The outputs of rows o and, if `two`, o + 1. */
MCUQ_ALWAYS_INLINE void requantize_rows(const int32_t *acc, int32_t o, int two, const mcuq_requant *requant,
                                        int8_t *output) {
  for (int r = 0; r <= two; ++r) {
    output[o + r] = (int8_t)mcuq_requantize_fast_s32(acc[r], mcuq_requant_multiplier(requant, o + r),
                                                     mcuq_requant_shift(requant, o + r), requant);
  }
}

#if MCUQ_DOT_SIMD
/* The fused layer through pair tables (t0, t1: 1 << 2 * bits entries). */
static MCUQ_NOINLINE void fully_connected_pairs(int32_t in_features, int32_t out_features, const int8_t *input,
                                               const mcuq_codebook_weights *w, const int32_t *bias,
                                               const mcuq_requant *requant, int8_t *scratch, uint32_t *t0,
                                               uint32_t *t1, int8_t *output) {
  int32_t built[2] = {-1, -1}; /* the codebook row each table holds */
  const int32_t bits = w->bits;
  const int32_t row_bytes = in_features * bits / 8;
  mcuq_pair *const xp = (mcuq_pair *)(void *)(scratch + (-(uintptr_t)scratch & 3u)); /* word aligned (LDRD) */
  const int32_t per = w->row_weights / in_features;
  mcuq_cb_rows rows = {0, per, per};
  pair_inputs(input, in_features, xp);
  for (int32_t o = 0; o < out_features; o += 2) {
    const int two = o + 1 < out_features;
    const int32_t second = two ? o + 1 : o; /* a last odd row runs twice; its copy is dropped */
    int32_t row0, row1;
    next_cb_rows(&rows, o, two, &row0, &row1);
    const uint8_t *const p0 = w->indices + o * row_bytes, *const p1 = w->indices + second * row_bytes;
    int32_t acc[2];
    acc[0] = MCUQ_READ_S32(&bias[o]);
    acc[1] = MCUQ_READ_S32(&bias[second]);
    if (built[0] != row0) build_pairs(w->codebook, bits, built[0] = row0, t0);
    if (row1 != row0 && built[1] != row1) build_pairs(w->codebook, bits, built[1] = row1, t1);
    if (bits == 4) {
      dot_2x1_cb4_pairs(p0, p1, t0, row1 != row0 ? t1 : t0, xp, row_bytes, acc);
    } else {
      dot_2x1_cb3_pairs(p0, p1, t0, row1 != row0 ? t1 : t0, xp, in_features / 8, acc);
    }
    requantize_rows(acc, o, two, requant, output);
  }
}

/* Each in its own function, so that the tables' stack (4 bits: 2 KB, 3 bits:
 * 512 B) is taken only where they are used. */
static MCUQ_NOINLINE void fully_connected_pairs4(int32_t in_features, int32_t out_features, const int8_t *input,
                                                 const mcuq_codebook_weights *w, const int32_t *bias,
                                                 const mcuq_requant *requant, int8_t *scratch, int8_t *output) {
  uint32_t tables[2][256];
  fully_connected_pairs(in_features, out_features, input, w, bias, requant, scratch, tables[0], tables[1], output);
}

static MCUQ_NOINLINE void fully_connected_pairs3(int32_t in_features, int32_t out_features, const int8_t *input,
                                                 const mcuq_codebook_weights *w, const int32_t *bias,
                                                 const mcuq_requant *requant, int8_t *scratch, int8_t *output) {
  uint32_t tables[2][64];
  fully_connected_pairs(in_features, out_features, input, w, bias, requant, scratch, tables[0], tables[1], output);
}
#endif

mcuq_status mcuq_fully_connected_s8_cb(int32_t in_features, int32_t out_features, const int8_t *input,
                                       const mcuq_codebook_weights *weights, const int32_t *bias,
                                       const mcuq_requant *requant, int8_t *scratch, int8_t *output) {
#ifndef MCUQ_NO_CHECKS
  mcuq_status status = mcuq_check_codebook(weights);
  if (status == MCUQ_OK && (input == 0 || bias == 0 || requant == 0 || output == 0)) status = MCUQ_ERROR_NULL;
  if (status == MCUQ_OK && (in_features <= 0 || out_features <= 0)) status = MCUQ_ERROR_SHAPE;
  if (status == MCUQ_OK) status = mcuq_check_requant(requant, out_features, INT8_MIN, INT8_MAX, 0);
  if (status != MCUQ_OK) return status;
#endif
  const mcuq_requant requant_copy = *requant; /* not reloaded after each int8_t store */
  const mcuq_codebook_weights w = *weights;
  int8_t rows[2][MCUQ_CB_CHUNK];
  int8_t levels[32];           /* the AVR's copy of two codebook rows */
  int32_t built[2] = {-1, -1}; /* the codebook row each half of it holds */
  /* Rows on byte boundaries, each output row within one codebook row. */
  const int fused = ((w.bits == 4 && in_features % 2 == 0) || (w.bits == 3 && in_features % 8 == 0)) &&
                    w.row_weights % in_features == 0;
  const int32_t per = w.row_weights / in_features; /* output rows per codebook row, where fused */
  mcuq_cb_rows cb_rows = {0, per, per};
  requant = &requant_copy;
  (void)scratch; /* only the DSP pair tables use it */
#if MCUQ_DOT_SIMD
  if (scratch != 0 && MCUQ_FULLY_CONNECTED_CB_SCRATCH(w.bits, in_features, w.row_weights) > 0) {
    if (w.bits == 4) {
      fully_connected_pairs4(in_features, out_features, input, &w, bias, requant, scratch, output);
    } else {
      fully_connected_pairs3(in_features, out_features, input, &w, bias, requant, scratch, output);
    }
    return MCUQ_OK;
  }
#endif
  for (int32_t o = 0; o < out_features; o += 2) {
    const int two = o + 1 < out_features;
    int32_t acc[2];
    acc[0] = MCUQ_READ_S32(&bias[o]);
    acc[1] = two ? MCUQ_READ_S32(&bias[o + 1]) : 0;
    if (fused) {
      const int32_t row_bytes = in_features * w.bits / 8;
      const int32_t second = two ? o + 1 : o; /* a last odd row runs twice; its copy is dropped */
      int32_t row0, row1;
      next_cb_rows(&cb_rows, o, two, &row0, &row1);
      const uint8_t *const p0 = w.indices + o * row_bytes, *const p1 = w.indices + second * row_bytes;
      const int8_t *const t = row_levels(w.codebook, w.bits, row0, row1, levels, built);
      if (w.bits == 4) {
        dot_2x1_cb4(p0, p1, t, row1 == row0, input, row_bytes, acc);
      } else {
        dot_2x1_cb3(p0, p1, t, row1 == row0, input, in_features / 8, acc);
      }
    }
    for (int32_t i = 0; i < in_features && !fused; i += MCUQ_CB_CHUNK) {
      const int32_t n = in_features - i < MCUQ_CB_CHUNK ? in_features - i : MCUQ_CB_CHUNK;
      mcuq_decode_codebook(&w, o * in_features + i, n, rows[0]);
      if (two) {
        mcuq_decode_codebook(&w, (o + 1) * in_features + i, n, rows[1]);
        mcuq_dot_2x1_s8(rows[0], rows[1], input + i, n, acc);
      } else {
        acc[0] = mcuq_dot_1x1_s8(rows[0], input + i, n, acc[0]);
      }
    }
    requantize_rows(acc, o, two, requant, output);
  }
  return MCUQ_OK;
}
