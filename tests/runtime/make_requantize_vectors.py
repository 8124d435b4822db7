#!/usr/bin/env python3
"""Write requantize_vectors.txt: test vectors for csrc/runtime/mcuq_arith.h.

The expected values are computed here from the published definitions of the
rules the header implements, with exact Python integers and fractions (no
floating point, and nothing taken from our header):

  gemmlowp fixedpoint/fixedpoint.h
    SaturatingRoundingDoublingHighMul(a, b): the scalar form of NEON VQRDMULH,
      a * b / 2^31 rounded to nearest with ties toward +inf; the one product
      that does not fit (INT32_MIN * INT32_MIN) saturates to INT32_MAX.
    RoundingDivideByPOT(x, e): x / 2^e rounded to nearest, ties away from
      zero, 0 <= e <= 31.
  tensorflow/lite/kernels/internal/common.h
    MultiplyByQuantizedMultiplier(int32 x, m, shift), default build:
      RoundingDivideByPOT(SRDHM(x * 2^max(shift, 0), m), max(-shift, 0)).
    The same under TFLITE_SINGLE_ROUNDING: x * m / 2^(31 - shift) rounded to
      nearest, ties toward +inf.
    MultiplyByQuantizedMultiplier(int64 x, m, shift) (16x8 kernels): m reduced
      to 16 bits, (m + 2^15) >> 16 (0x7FFF from 0x7FFF0000 up), then
      x * reduced / 2^(15 - shift) rounded to nearest, ties toward +inf;
      shift in [-31, 7], |x| < 2^47.
  tensorflow/lite/kernels/internal/quantization_util.cc
    QuantizeMultiplier(M): M = q * 2^e with q in [1/2, 1) (frexp); multiplier
      = round(q * 2^31), ties away from zero; a result of 2^31 is halved and e
      incremented; e < -31 flushes to (0, 0); e > 30 saturates to
      (2^31 - 1, 30) (TFLite does this under TFLITE_SINGLE_ROUNDING only).
  tensorflow/lite/kernels/internal/reference/integer_ops/pooling.h
    average: sum / count rounded to nearest, ties away from zero.

and for mcuq's own power-of-two rule (MCUQ_ROUND_SHIFT): x * 2^(shift - 1)
rounded to nearest, ties away from zero, saturated to int32.

Where mcuq_arith.h documents a deliberate difference from TFLite (it
saturates where TFLite's result is undefined or out of range, it gives (0, 0)
for M < 0), the line holds mcuq's result and ends in a '#' comment saying so
(`# saturates`, `# nonpositive`); `# flush` marks the one case where the
header's flush to 0 differs from exact rounding. Test readers ignore
everything after '#'.

Line formats (integers in decimal; the real as Python's round-tripping repr):
  srdhm a b expected
  rdbpot x exponent expected
  saturating_left_shift x shift expected
  mbqm x multiplier shift expected
  mbqm_single x multiplier shift expected
  mbqm_s64 x multiplier shift expected
  mbqm_s64_exact x multiplier shift expected   (mcuq's full-precision int64 rule)
  quantize_multiplier real multiplier shift
  rounding_shift x shift expected
  scale_s64_shift acc shift expected
  rounded_average sum count expected

Usage: python3 make_requantize_vectors.py [output]   (default: the
requantize_vectors.txt next to this script). Deterministic; after changing
this script, regenerate and check the file in.
"""

import math
import os
import random
import sys
from fractions import Fraction

SEED = 20240611
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
HALF = Fraction(1, 2)


# ---- exact rounding helpers ------------------------------------------------

def round_half_up(q):
    """Nearest integer to the fraction q, ties toward +inf."""
    return math.floor(q + HALF)


def round_half_away(q):
    """Nearest integer to the fraction q, ties away from zero."""
    n = math.floor(abs(q) + HALF)
    return n if q >= 0 else -n


def trunc_div(a, b):
    """Integer division truncating toward zero (C's '/')."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def sat32(v):
    return min(max(v, I32_MIN), I32_MAX)


def pow2(e):
    return Fraction(2) ** e


# ---- the published rules ---------------------------------------------------

def srdhm(a, b):
    result = sat32(round_half_up(Fraction(a * b, 2**31)))
    # Cross-check against gemmlowp's own formulation: nudge the product by
    # 2^30 (1 - 2^30 when negative) and divide truncating toward zero.
    if a == b == I32_MIN:
        literal = I32_MAX
    else:
        nudge = 2**30 if a * b >= 0 else 1 - 2**30
        literal = trunc_div(a * b + nudge, 2**31)
    assert literal == result, (a, b)
    return result


def rdbpot(x, exponent):
    assert 0 <= exponent <= 31
    return round_half_away(Fraction(x, 2**exponent))


def saturating_left_shift(x, shift):
    """(result, saturated): mcuq saturates where TFLite's x * (1 << s) overflows."""
    v = x * 2**shift
    return sat32(v), v != sat32(v)


def mbqm(x, multiplier, shift):
    shifted, saturated = saturating_left_shift(x, max(shift, 0))
    return rdbpot(srdhm(shifted, multiplier), max(-shift, 0)), saturated


def mbqm_single(x, multiplier, shift):
    v = round_half_up(Fraction(x * multiplier, 2 ** (31 - shift)))
    return sat32(v), v != sat32(v)


def reduce_multiplier(multiplier):
    return 0x7FFF if multiplier >= 0x7FFF0000 else (multiplier + 2**15) // 2**16


def mbqm_s64(x, multiplier, shift):
    assert -31 <= shift <= 7 and -(2**47) <= x < 2**47
    v = round_half_up(Fraction(x * reduce_multiplier(multiplier), 2 ** (15 - shift)))
    return sat32(v), v != sat32(v)


def mbqm_s64_exact(x, multiplier, shift):
    """mcuq's full-precision int64 rule (not TFLite's): one rounding, ties up."""
    assert -31 <= shift <= 7 and -(2**47) <= x < 2**47
    v = round_half_up(Fraction(x * multiplier, 2 ** (31 - shift)))
    return sat32(v), v != sat32(v)


def quantize_multiplier(real):
    """(multiplier, shift, note) for the double `real`."""
    m = Fraction(real)  # the exact value of the double
    if m == 0:
        return 0, 0, ""
    if m < 0:
        return 0, 0, "nonpositive"
    # frexp: the e with 2^(e-1) <= m < 2^e.
    e = m.numerator.bit_length() - m.denominator.bit_length()
    while m >= pow2(e):
        e += 1
    while m < pow2(e - 1):
        e -= 1
    q_fixed = round_half_away(m / pow2(e) * 2**31)
    if q_fixed == 2**31:
        q_fixed //= 2
        e += 1
    if e < -31:
        return 0, 0, ""
    if e > 30:
        return 2**31 - 1, 30, "saturates"
    return q_fixed, e, ""


def rounding_shift(x, shift):
    """mcuq's power-of-two rule: x * 2^(shift - 1), ties away from zero."""
    exponent = shift - 1
    exact = round_half_away(Fraction(x) * pow2(exponent))
    if exponent < -31:  # the header flushes scales below 2^-31 to 0
        return 0, ("flush" if exact != 0 else "")
    return sat32(exact), ("saturates" if exact != sat32(exact) else "")


def scale_s64_shift(acc, shift):
    exact = round_half_away(Fraction(acc) * pow2(shift - 1))
    return sat32(exact), ("saturates" if exact != sat32(exact) else "")


def rounded_average(total, count):
    return round_half_away(Fraction(total, count))


# ---- vector sets -----------------------------------------------------------

def random_int(rng, bits, lo, hi):
    """A value of random magnitude (up to 2^bits) and sign, within [lo, hi]."""
    width = rng.randint(0, bits)
    v = rng.randint(-(2**width), 2**width)
    return min(max(v, lo), hi)


def random_multiplier(rng):
    return rng.randint(2**30, 2**31 - 1)


def build(rng):
    lines = []

    def emit(name, args, expected, note=""):
        line = " ".join(str(v) for v in [name] + list(args) + list(expected))
        lines.append(line + (" # " + note if note else ""))

    # SaturatingRoundingDoublingHighMul
    srdhm_cases = [
        (I32_MIN, I32_MIN), (I32_MIN, I32_MAX), (I32_MAX, I32_MIN), (I32_MAX, I32_MAX),
        (I32_MIN, 1), (I32_MIN, -1), (I32_MAX, 1), (I32_MAX, -1), (0, 0), (0, I32_MIN), (I32_MAX, 0),
        (1, 2**30), (-1, 2**30), (3, 2**30), (-3, 2**30),  # ties: +0.5 -> 1, -0.5 -> 0, +-1.5 -> 2, -1
        (2**15, 2**15), (-(2**15), 2**15), (2**15, -(2**15)),
        (1, 2**30 - 1), (-1, 2**30 - 1), (1, 2**30 + 1), (-1, 2**30 + 1),
        (I32_MIN, 2**30), (I32_MAX, 2**30), (-I32_MAX, 2**30), (I32_MIN, 2**31 - 1),
        (I32_MAX, 2**31 - 1), (-I32_MAX, 2**31 - 1), (12345, 2**31 - 1), (-12345, 2**31 - 1),
    ]
    for _ in range(60):
        srdhm_cases.append((random_int(rng, 31, I32_MIN, I32_MAX), random_int(rng, 31, I32_MIN, I32_MAX)))
    for a, b in srdhm_cases:
        emit("srdhm", (a, b), (srdhm(a, b),))

    # RoundingDivideByPOT
    rdbpot_cases = [
        (0, 0), (0, 31), (I32_MIN, 0), (I32_MAX, 0), (I32_MIN, 31), (I32_MAX, 31), (I32_MIN, 1), (I32_MAX, 1),
        (2**30, 31), (-(2**30), 31), (2**30 + 1, 31), (-(2**30) - 1, 31), (2**30 - 1, 31), (-(2**30) + 1, 31),
        (1, 1), (-1, 1), (3, 1), (-3, 1), (5, 2), (-5, 2), (6, 2), (-6, 2), (7, 2), (-7, 2),
        (1, 31), (-1, 31), (I32_MIN, 30), (I32_MAX, 30), (-(2**29), 30), (2**29, 30),
    ]
    for _ in range(60):
        rdbpot_cases.append((random_int(rng, 31, I32_MIN, I32_MAX), rng.randint(0, 31)))
    for x, e in rdbpot_cases:
        emit("rdbpot", (x, e), (rdbpot(x, e),))

    # saturating left shift (mcuq's replacement for TFLite's x * (1 << s))
    for x, s in [(0, 31), (1, 30), (1, 31), (-1, 31), (I32_MAX, 0), (I32_MIN, 0), (I32_MAX, 1), (I32_MIN, 1),
                 (2**15, 15), (-(2**15), 16), (2**15, 16), (-(2**16), 15), (255, 20), (-255, 20), (-256, 23),
                 (4096, 19), (-4096, 19), (4096, 20)]:
        value, saturated = saturating_left_shift(x, s)
        emit("saturating_left_shift", (x, s), (value,), "saturates" if saturated else "")

    # MultiplyByQuantizedMultiplier, double and single rounding, same inputs.
    mbqm_cases = [
        (0, 2**31 - 1, 0), (0, 2**30, 30), (0, 2**30, -31),
        (1, 2**30, 0), (-1, 2**30, 0), (3, 2**30, 0), (-3, 2**30, 0),  # SRDHM ties
        (1, 2**30 + 2**29, -1), (-1, 2**30 + 2**29, -1),  # double rounding differs from single
        (5, 2**30, -1), (-5, 2**30, -1), (6, 2**30, -2), (-6, 2**30, -2),
        (I32_MAX, 2**31 - 1, 0), (I32_MIN, 2**31 - 1, 0), (I32_MAX, 2**30, 0), (I32_MIN, 2**30, 0),
        (I32_MAX, 2**31 - 1, -31), (I32_MIN, 2**31 - 1, -31), (I32_MAX, 2**30, -31), (I32_MIN, 2**30, -31),
        (2**30, 2**30, -31), (-(2**30), 2**30, -31), (2**31 - 1, 2**30, -30), (-(2**31) + 1, 2**30, -30),
        (1, 2**30, 30), (-1, 2**30, 30), (1, 2**31 - 1, 30), (-1, 2**31 - 1, 30), (2, 2**30, 30),
        (I32_MAX, 2**30, 30), (I32_MIN, 2**30, 30), (I32_MIN, 2**31 - 1, 1), (I32_MAX, 2**31 - 1, 1),
        (-(2**30), 2**31 - 1, 1), (2**30, 2**31 - 1, 1), (1000, 1518500250, -8), (-1000, 1518500250, -8),
        (70000, 1288490189, 20),
    ]
    for _ in range(120):
        shift = rng.randint(-31, 8) if rng.random() < 0.8 else rng.randint(-31, 30)
        mbqm_cases.append((random_int(rng, 31, I32_MIN, I32_MAX), random_multiplier(rng), shift))
    for x, m, s in mbqm_cases:
        value, saturated = mbqm(x, m, s)
        emit("mbqm", (x, m, s), (value,), "saturates" if saturated else "")
    for x, m, s in mbqm_cases:
        value, saturated = mbqm_single(x, m, s)
        emit("mbqm_single", (x, m, s), (value,), "saturates" if saturated else "")

    # The int64-input rule of the 16x8 kernels.
    x47 = 2**47
    mbqm_s64_cases = [
        (0, 2**30, 0), (1, 2**30, 0), (-1, 2**30, 0), (3, 2**30, 0), (-3, 2**30, 0),  # ties toward +inf
        (x47 - 1, 2**31 - 1, -31), (-x47, 2**31 - 1, -31), (x47 - 1, 2**30, -31), (-x47, 2**30, -31),
        (x47 - 1, 2**30, -16), (-x47, 2**30, -16), (x47 - 1, 2**30, 7), (-x47, 2**30, 7),
        (1, 0x7FFF0000, 7), (1, 0x7FFEFFFF, 7), (1, 0x7FFF7FFF, 7), (1, 2**31 - 1, 7),
        (1, 2**30 + 2**15, 7), (1, 2**30 + 2**15 - 1, 7), (-1, 2**30 + 2**15, 7),
        (1000, 2**30 + 2**15, -7), (-1000, 2**30 + 2**15, -7), (2**40, 1518500250, -20),
        (-(2**40), 1518500250, -20), (2**31, 2**31 - 1, 0), (-(2**31) - 1, 2**31 - 1, 0),
        (123456789, 2**30, 1), (I32_MAX, 2**30, 1), (I32_MIN, 2**30, 1),
    ]
    for _ in range(80):
        mbqm_s64_cases.append((random_int(rng, 47, -x47, x47 - 1), random_multiplier(rng), rng.randint(-31, 7)))
    for x, m, s in mbqm_s64_cases:
        value, saturated = mbqm_s64(x, m, s)
        emit("mbqm_s64", (x, m, s), (value,), "saturates" if saturated else "")
    for x, m, s in mbqm_s64_cases:
        value, saturated = mbqm_s64_exact(x, m, s)
        emit("mbqm_s64_exact", (x, m, s), (value,), "saturates" if saturated else "")

    # QuantizeMultiplier
    reals = [
        0.0, 1.0, 0.5, 0.25, 0.75, 0.1, 1.0 / 3.0, 2.0 / 3.0, 0.999, 1.5, 3.0, 1.52587890625e-05,
        0.0039215686274509803, 0.02 * 0.0039215686274509803 / 0.05,
        2.0**-31, 2.0**-32, 2.0**-33, 2.0**-32 * (1 - 2.0**-53), 2.0**-33 * (1 + 2.0**-52),
        1e-300, 5e-324, 1e-10,
        1 - 2.0**-33, 1 - 2.0**-40, 0.5 * (1 - 2.0**-33), 2.0**-20 * (1 - 2.0**-34),  # 2^31 carry
        0.5 + 2.0**-32, 0.5 + 3 * 2.0**-32, 0.75 + 2.0**-32, 0.5 + 2.0**-33,  # exact ties
        2.0**29 * 1.5, 2.0**30 - 1, 2.0**30 * (1 - 2.0**-40), 2.0**30, 2.0**31, 1e10, 1e300,  # top end
        -0.5, -1e-10,
    ]
    for _ in range(60):
        reals.append(2.0 ** rng.uniform(-36, 32))
    for _ in range(20):
        reals.append(rng.random())
    for real in reals:
        assert float(repr(real)) == real
        multiplier, shift, note = quantize_multiplier(real)
        emit("quantize_multiplier", (repr(real),), (multiplier, shift), note)

    # mcuq's power-of-two rule, 32- and 64-bit accumulators.
    rs_cases = [
        (0, -31), (0, 30), (1, 0), (-1, 0), (3, 0), (-3, 0), (5, -1), (-5, -1), (6, -1), (-6, -1),
        (I32_MAX, -31), (I32_MIN, -31), (I32_MAX, -30), (I32_MIN, -30), (2**30, -30), (-(2**30), -30),
        (I32_MAX, 1), (I32_MIN, 1), (I32_MAX, 2), (I32_MIN, 2), (1, 30), (-1, 30), (2, 30), (-2, 30),
        (4096, 12), (-4096, 12), (1000, -7), (-1000, -7),
    ]
    for _ in range(40):
        rs_cases.append((random_int(rng, 31, I32_MIN, I32_MAX), rng.randint(-31, 30)))
    for x, s in rs_cases:
        value, note = rounding_shift(x, s)
        emit("rounding_shift", (x, s), (value,), note)

    s64_cases = [
        (0, -31), (1, 0), (-1, 0), (3, 0), (-3, 0), (I64_MAX, -31), (I64_MIN, -31), (I64_MAX, 30),
        (I64_MIN, 30), (2**32, -1), (-(2**32), -1), (2**32 + 2**31, -31), (-(2**32) - 2**31, -31),
        (2**40 + 2**8, -8), (-(2**40) - 2**8, -8), (I32_MAX, 1), (I32_MIN, 1), (I32_MAX + 1, 1),
        (I32_MIN - 1, 1), (1, 30), (-1, 30), (2, 30), (-2, 30),
    ]
    for _ in range(30):
        s64_cases.append((random_int(rng, 63, I64_MIN, I64_MAX), rng.randint(-31, 30)))
    for acc, s in s64_cases:
        value, note = scale_s64_shift(acc, s)
        emit("scale_s64_shift", (acc, s), (value,), note)

    # Average pooling's rounded division (|sum| + count / 2 must fit int32).
    avg_cases = [
        (0, 1), (0, 9), (5, 2), (-5, 2), (1, 2), (-1, 2), (3, 2), (-3, 2), (1, 3), (-1, 3), (2, 3), (-2, 3),
        (4, 8), (-4, 8), (3, 8), (-3, 8), (5, 8), (-5, 8), (127 * 9, 9), (-128 * 9, 9), (254, 4), (-254, 4),
        (I32_MAX, 1), (I32_MIN, 1), (I32_MAX - 1, 2), (I32_MIN + 1, 2), (-1073741824, 2**31 - 1),
    ]
    for _ in range(40):
        count = rng.randint(1, 64)
        avg_cases.append((rng.randint(-128 * count * 2, 128 * count * 2), count))
    for total, count in avg_cases:
        emit("rounded_average", (total, count), (rounded_average(total, count),))

    return lines


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "requantize_vectors.txt")
    lines = build(random.Random(SEED))
    header = [
        "# Generated by tests/runtime/make_requantize_vectors.py (seed %d): exact Python integer/fraction" % SEED,
        "# arithmetic from the published TFLite/gemmlowp definitions, independent of mcuq_arith.h.",
        "# Regenerate with: python3 tests/runtime/make_requantize_vectors.py. Formats: see the script.",
    ]
    with open(out, "w") as f:
        f.write("\n".join(header + lines) + "\n")
    print("%s: %d vectors" % (out, len(lines)))


if __name__ == "__main__":
    main()
