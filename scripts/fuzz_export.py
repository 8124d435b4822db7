"""Long differential-testing campaigns of the export (issue 18):

    .venv/bin/python scripts/fuzz_export.py [--start 0] [--count 5000] [--sanitize-every 4] [--mcu-every 50]
    .venv/bin/python scripts/fuzz_export.py --minimize SEED

Random models (tests/python/_model_fuzz.py) through prepare, calibrate,
freeze and export; the generated C (gcc and clang at -O0, -O2 and -Os, by
seed) against the integer reference, and the integer graph layer by layer
against the fake-quant model; a sample also on the emulated Cortex-M0 and M4.
--minimize shrinks a failing seed's model for a regression test. Prints
each failure with its seed (random_case(seed) rebuilds the model), the
refusals grouped by reason, and the totals: models tried, bit-exact,
refused, mismatches, crashes, time. Exits 1 on any mismatch or crash.
"""

import argparse
import collections
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "python"), str(REPO / "ops"), str(REPO / "examples" / "mcu")]

from _model_fuzz import check_case, minimize, random_case  # noqa: E402

TARGETS = ("cortex-m0", "cortex-m4")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--count", type=int, default=5000, help="models to try")
    parser.add_argument("--sanitize-every", type=int, default=4,
                        help="every Nth model's C runs under ASan + UBSan (0: never)")
    parser.add_argument("--mcu-every", type=int, default=50,
                        help="every Nth model also runs on the emulated Cortex-M0 and M4 (0: never)")
    parser.add_argument("--minimize", type=int, metavar="SEED",
                        help="shrink the failing model of this seed and print it (for a regression test)")
    args = parser.parse_args()
    if args.minimize is not None:
        with tempfile.TemporaryDirectory(prefix="mcuq-fuzz-") as tmp:
            sanitize = args.sanitize_every > 0 and args.minimize % args.sanitize_every == 0
            case = minimize(random_case(args.minimize), Path(tmp), sanitize=sanitize)
        print(f"seed {args.minimize}, preset {case.preset}, input {case.input_shape} x N(0, {case.input_scale:.4g})"
              f"{', adversarial qparams' if case.adversarial else ''}, still failing:\n{case.model}")
        return 0
    counts: collections.Counter = collections.Counter()
    refusals: collections.Counter = collections.Counter()
    builds: collections.Counter = collections.Counter()
    worst: collections.Counter = collections.Counter()
    lut16_worst = points = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mcuq-fuzz-") as tmp:
        for seed in range(args.start, args.start + args.count):
            case = random_case(seed)
            sanitize = args.sanitize_every > 0 and seed % args.sanitize_every == 0
            targets = TARGETS if args.mcu_every > 0 and seed % args.mcu_every == 0 else ()
            try:
                outcome = check_case(case, Path(tmp), sanitize=sanitize, targets=targets)
            except AssertionError as error:
                counts["mismatch"] += 1
                print(f"MISMATCH {error}", flush=True)
                continue
            except Exception as error:  # a crash of the workflow: a bug either way
                counts["crash"] += 1
                print(f"CRASH seed {seed} ({case.description}): {type(error).__name__}: {error}", flush=True)
                continue
            finally:
                shutil.rmtree(Path(tmp) / f"case{seed}", ignore_errors=True)
            if outcome.status == "ok":
                counts["bit-exact"] += 1
                builds[outcome.build] += 1
                counts["on MCUs"] += bool(outcome.targets)
                worst[outcome.worst] += 1
                points += outcome.points
                lut16_worst = max(lut16_worst, outcome.lut16_worst)
            else:
                counts["refused"] += 1
                refusals[outcome.reason.split(":")[0] + ": " + _reason(outcome.reason)] += 1
            done = seed - args.start + 1
            if done % 100 == 0:
                print(f"{done} models, {dict(counts)}, {time.perf_counter() - start:.0f} s", flush=True)
    for reason, n in refusals.most_common():
        print(f"refused {n}x: {reason}")
    for build, n in sorted(builds.items()):
        print(f"built {n}x with {build}")
    print(f"fake-quant agreement, layer by layer ({points} quantization points): largest difference per model "
          f"{dict(sorted(worst.items()))} (levels: models), every one within its bound; int16 lookup tables "
          f"up to {lut16_worst} levels, each within the error its report.json states")
    print(f"fuzz_export: {args.count} models (seeds {args.start}..{args.start + args.count - 1}), "
          f"{counts['bit-exact']} bit-exact ({counts['on MCUs']} also on the Cortex-M0 and M4), "
          f"{counts['refused']} refused, {counts['mismatch']} mismatches, {counts['crash']} crashes "
          f"in {time.perf_counter() - start:.0f} s")
    return 1 if counts["mismatch"] or counts["crash"] else 0


def _reason(message: str) -> str:
    """The refusal without its layer's name and numbers, to group alike ones."""
    text = message.split(":", 1)[1] if ":" in message else message
    text = re.sub(r" \([^)]*\)", "", text)
    return re.sub(r"'[^']*'|-?\d[\w.+-]*", "#", text).strip()[:120]


if __name__ == "__main__":
    sys.exit(main())
