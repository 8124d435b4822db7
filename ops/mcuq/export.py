"""Command line: ``python -m mcuq.export MODEL.pt --input-shape 1,1,28,28 -o OUT --name NAME``.

Loads a frozen model, a TorchScript file (``.pt``, saved before
``torch.jit.freeze``) or a ``torch.export`` program (``.pt2``), lowers it to
mcuq's integer graph, writes ``NAME.h``, ``NAME.c`` and
``report.json`` into OUT (with ``--runtime``, also the C runtime sources)
and prints the per-layer summary. The Python API is ``mcuq.export(...)``.
"""

import argparse
import re
import shutil
import sys
import time
from pathlib import Path
from typing import List, Optional


def _shape(text: str) -> List[int]:
    try:
        shape = [int(d) for d in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,1,28,28, but got {text!r}")
    if len(shape) < 2 or any(d < 1 for d in shape):
        raise argparse.ArgumentTypeError(f"expected [N, ...] with positive sizes, but got {text!r}")
    return shape


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcuq.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="TorchScript file (.pt: mcuq.freeze, trace or script, save) or torch.export program (.pt2)")
    parser.add_argument("--input-shape", type=_shape, required=True, help="N,C,H,W or N,F (e.g. 1,1,28,28)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output directory")
    parser.add_argument("--name", help="C identifier prefix of the generated code (default: from the file name)")
    parser.add_argument("--rounding", choices=("double", "single"), default="double",
                        help="requantization rounding (TFLite's double rounding by default)")
    parser.add_argument("--decode-bytes", type=int, default=4096,
                        help="most bytes of arena a codebook or W4A8 layer takes to decode weights (convolutions) or "
                             "pair inputs (fully connected) (default 4096; smaller saves RAM, costs instructions)")
    parser.add_argument("--runtime", action="store_true", help="also copy the C runtime sources into OUT/runtime")
    args = parser.parse_args(argv)
    name = args.name or re.sub(r"\W", "_", args.model.stem)
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        parser.error(f"--name must be a C identifier, but got {name!r}")

    import mcuq  # after argument parsing: loading torch takes a while

    def step(text: str) -> float:
        print(f"[mcuq.export] {text}", flush=True)
        return time.perf_counter()

    try:
        start = step(f"lowering {args.model} for input {args.input_shape}")
        exported = mcuq.export(args.model, args.input_shape, rounding=args.rounding, decode_bytes=args.decode_bytes)
        written = step(f"lowered in {time.perf_counter() - start:.2f} s; writing {args.output}/{name}.{{h,c}}, "
                       "report.json")
        paths = exported.write(args.output, name)
        if args.runtime:
            runtime = args.output / "runtime"
            runtime.mkdir(exist_ok=True)
            for source in sorted(mcuq.runtime_dir().glob("*.[ch]")):
                shutil.copy2(source, runtime / source.name)
        step(f"written in {time.perf_counter() - written:.2f} s")
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(exported.summary(), end="")
    print("files: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
