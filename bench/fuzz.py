"""Run the fuzz properties of tests/test_fuzz.py with large example counts.

The suite runs each property with a modest number of examples (60); this runs the very same properties with
``--examples`` (default 5000) each, records how long each took and whether it held, prints a table and writes
``bench/results/fuzz.json``. A failing property prints hypothesis' minimal counter-example and exits 1.

    .venv/bin/python bench/fuzz.py [--examples N] [-k EXPR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "fuzz.json"


def _without_bench_dir() -> None:
    # bench/ holds select.py (a benchmark) that shadows the standard library's select module, which
    # subprocess needs; the script's own directory leaves the import path before subprocess is imported
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]


def main() -> int:
    _without_bench_dir()
    import subprocess

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=5000, help="examples per property (default 5000)")
    parser.add_argument("-k", dest="select", default=None, help="only properties matching this pytest -k")
    args = parser.parse_args()

    env = {**os.environ, "IMAGE_UPDATER_FUZZ_EXAMPLES": str(args.examples)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0",
               "--timeout=0", "tests/test_fuzz.py"]
    if args.select:
        command += ["-k", args.select]
    started = time.monotonic()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    durations = {
        m.group(2): float(m.group(1))
        for m in re.finditer(r"^([\d.]+)s call\s+tests/test_fuzz.py::(\S+)", proc.stdout, re.MULTILINE)
    }
    failed = re.findall(r"^FAILED tests/test_fuzz.py::(\S+)", proc.stdout, re.MULTILINE)
    rows = [{"property": name, "seconds": seconds, "held": name not in failed}
            for name, seconds in sorted(durations.items())]
    print(f"{'property':<80} {'seconds':>8}  held")
    for row in rows:
        print(f"{row['property']:<80} {row['seconds']:>8.1f}  {'yes' if row['held'] else 'NO'}")
    print(f"{args.examples} examples per property, {elapsed:.0f} s in all, exit {proc.returncode}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"examples": args.examples, "seconds": round(elapsed, 1),
                                   "exit": proc.returncode, "properties": rows}, indent=2) + "\n")
    if proc.returncode != 0:
        print(proc.stdout[-20000:])
        print(proc.stderr[-5000:], file=sys.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
