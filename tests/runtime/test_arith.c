/* Checks mcuq_arith.h against requantize_vectors.txt (written by
 * make_requantize_vectors.py from the published TFLite/gemmlowp rules).
 *
 * usage: test_arith requantize_vectors.txt
 * Prints each failing vector and a summary line; exits 1 on any failure. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcuq_arith.h"

#define MAX_TOKENS 8

static int parse_int(const char *text, int64_t *value) {
  char *end = 0;
  long long v;
  errno = 0;
  v = strtoll(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0') return 0;
  *value = (int64_t)v;
  return 1;
}

/* Splits a line (comment after '#' dropped) into at most MAX_TOKENS tokens. */
static int tokenize(char *line, char *tokens[MAX_TOKENS]) {
  char *hash = strchr(line, '#');
  int n = 0;
  char *token;
  if (hash != 0) *hash = '\0';
  for (token = strtok(line, " \t\r\n"); token != 0; token = strtok(0, " \t\r\n")) {
    if (n == MAX_TOKENS) return -1;
    tokens[n++] = token;
  }
  return n;
}

/* The value mcuq_arith.h computes for one vector, or 0 when the function
 * name or the argument count is unknown. Sets *got (1 or 2 results). */
static int evaluate(const char *name, int nargs, const int64_t *a, const char *real_text, int64_t got[2],
                    int *nresults) {
  *nresults = 1;
  if (strcmp(name, "srdhm") == 0 && nargs == 2) {
    got[0] = mcuq_sat_rounding_doubling_high_mul((int32_t)a[0], (int32_t)a[1]);
  } else if (strcmp(name, "rdbpot") == 0 && nargs == 2) {
    got[0] = mcuq_rounding_divide_by_pot((int32_t)a[0], (int)a[1]);
  } else if (strcmp(name, "saturating_left_shift") == 0 && nargs == 2) {
    got[0] = mcuq_saturating_left_shift((int32_t)a[0], (int)a[1]);
  } else if (strcmp(name, "mbqm") == 0 && nargs == 3) {
    got[0] = mcuq_mul_by_quantized_multiplier((int32_t)a[0], (int32_t)a[1], (int)a[2]);
  } else if (strcmp(name, "mbqm_single") == 0 && nargs == 3) {
    got[0] = mcuq_mul_by_quantized_multiplier_single((int32_t)a[0], (int32_t)a[1], (int)a[2]);
  } else if (strcmp(name, "mbqm_s64") == 0 && nargs == 3) {
    got[0] = mcuq_mul_by_quantized_multiplier_s64(a[0], (int32_t)a[1], (int)a[2]);
  } else if (strcmp(name, "mbqm_s64_exact") == 0 && nargs == 3) {
    got[0] = mcuq_scale_s64(a[0], (int32_t)a[1], (int)a[2], MCUQ_ROUND_SINGLE);
  } else if (strcmp(name, "rounding_shift") == 0 && nargs == 2) {
    got[0] = mcuq_rounding_shift((int32_t)a[0], (int)a[1]);
  } else if (strcmp(name, "scale_s64_shift") == 0 && nargs == 2) {
    got[0] = mcuq_scale_s64(a[0], (int32_t)1 << 30, (int)a[1], MCUQ_ROUND_SHIFT);
  } else if (strcmp(name, "rounded_average") == 0 && nargs == 2) {
    got[0] = mcuq_rounded_average((int32_t)a[0], (int32_t)a[1]);
  } else if (strcmp(name, "quantize_multiplier") == 0 && nargs == 1) {
    int32_t multiplier = -1;
    int shift = -1;
    char *end = 0;
    const double real = strtod(real_text, &end); /* repr() round-trips exactly */
    if (end == real_text || *end != '\0') return 0;
    (void)mcuq_quantize_multiplier(real, &multiplier, &shift);
    got[0] = multiplier;
    got[1] = shift;
    *nresults = 2;
  } else {
    return 0;
  }
  return 1;
}

/* Number of integer arguments each function takes (results follow). */
static int arg_count(const char *name) {
  if (strcmp(name, "quantize_multiplier") == 0) return 1;
  if (strncmp(name, "mbqm", 4) == 0) return 3;
  return 2;
}

int main(int argc, char **argv) {
  FILE *file;
  char line[512];
  long line_no = 0, vectors = 0, failed = 0;
  if (argc != 2) {
    fprintf(stderr, "usage: %s requantize_vectors.txt\n", argv[0]);
    return 2;
  }
  file = fopen(argv[1], "r");
  if (file == 0) {
    perror(argv[1]);
    return 2;
  }
  while (fgets(line, sizeof line, file) != 0) {
    char original[512];
    char *tokens[MAX_TOKENS];
    int64_t values[MAX_TOKENS], got[2];
    int n, nargs, nresults, i, ok = 1;
    ++line_no;
    strcpy(original, line);
    original[strcspn(original, "\r\n")] = '\0';
    n = tokenize(line, tokens);
    if (n == 0) continue; /* blank or comment line */
    nargs = n > 0 ? arg_count(tokens[0]) : 0;
    /* Integer tokens; the quantize_multiplier real stays text. */
    for (i = 1; i < n && ok; ++i) {
      if (strcmp(tokens[0], "quantize_multiplier") == 0 && i == 1) continue;
      ok = parse_int(tokens[i], &values[i - 1]);
    }
    if (n < 0 || !ok || !evaluate(tokens[0], nargs, values, n > 1 ? tokens[1] : "", got, &nresults) ||
        n != 1 + nargs + nresults) {
      fprintf(stderr, "%s:%ld: malformed vector: %s\n", argv[1], line_no, original);
      ++failed;
      ++vectors;
      continue;
    }
    ++vectors;
    for (i = 0; i < nresults; ++i) {
      if (got[i] != values[nargs + i]) {
        fprintf(stderr, "%s:%ld: FAIL %s -> got", argv[1], line_no, original);
        for (i = 0; i < nresults; ++i) fprintf(stderr, " %lld", (long long)got[i]);
        fprintf(stderr, "\n");
        ++failed;
        break;
      }
    }
  }
  fclose(file);
  if (vectors == 0) {
    fprintf(stderr, "%s: no vectors\n", argv[1]);
    return 1;
  }
  printf("test_arith: %ld vectors, %ld failed\n", vectors, failed);
  return failed == 0 ? 0 : 1;
}
