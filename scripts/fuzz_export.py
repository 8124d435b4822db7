"""Long differential-testing campaigns of the export (issue 18):

    .venv/bin/python scripts/fuzz_export.py [--start 0] [--count 5000] [--sanitize-every 4]

Random models (tests/python/_model_fuzz.py) through prepare, calibrate,
freeze and export; the generated C against the integer reference. Prints
each failure with its seed (random_case(seed) rebuilds the model), the
refusals grouped by reason, and the totals: models tried, bit-exact,
refused, mismatches, crashes, time. Exits 1 on any mismatch or crash.
"""

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "python"), str(REPO / "ops")]

from _model_fuzz import check_case, random_case  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--count", type=int, default=5000, help="models to try")
    parser.add_argument("--sanitize-every", type=int, default=4,
                        help="every Nth model's C runs under clang ASan + UBSan (0: never)")
    args = parser.parse_args()
    counts: collections.Counter = collections.Counter()
    refusals: collections.Counter = collections.Counter()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mcuq-fuzz-") as tmp:
        for seed in range(args.start, args.start + args.count):
            case = random_case(seed)
            sanitize = args.sanitize_every > 0 and seed % args.sanitize_every == 0
            try:
                outcome = check_case(case, Path(tmp), sanitize=sanitize)
            except AssertionError as error:
                counts["mismatch"] += 1
                print(f"MISMATCH {error}", flush=True)
                continue
            except Exception as error:  # a crash of the workflow: a bug either way
                counts["crash"] += 1
                print(f"CRASH seed {seed} ({case.description}): {type(error).__name__}: {error}", flush=True)
                continue
            if outcome == "ok":
                counts["bit-exact"] += 1
            else:
                counts["refused"] += 1
                refusals[outcome.split(": ", 1)[1].split(":")[0][:100]] += 1
            done = seed - args.start + 1
            if done % 100 == 0:
                print(f"{done} models, {dict(counts)}, {time.perf_counter() - start:.0f} s", flush=True)
    for reason, n in refusals.most_common():
        print(f"refused {n}x: {reason}")
    print(f"fuzz_export: {args.count} models (seeds {args.start}..{args.start + args.count - 1}), "
          f"{counts['bit-exact']} bit-exact, {counts['refused']} refused, {counts['mismatch']} mismatches, "
          f"{counts['crash']} crashes in {time.perf_counter() - start:.0f} s")
    return 1 if counts["mismatch"] or counts["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())
