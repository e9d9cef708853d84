"""The soak run: 500 passes with seeded random faults, new tags and human commits (issue 7, part 3).

Runs ``tests.faults.soak.run_soak`` (the same code the ``soak``-marked test runs when IMAGE_UPDATER_SOAK=1)
in a temporary directory, prints the figures and writes ``bench/results/soak.json``. Exit 1 when an invariant
was violated (the problems are printed).

    .venv/bin/python bench/soak.py [--passes 500] [--seed 20241] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "soak.json"


def main() -> int:
    # bench/ holds select.py (a benchmark) that shadows the standard library's select module, which
    # subprocess needs: the script's own directory leaves the import path, the project root joins it
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != here)]
    from tests.faults.soak import run_soak

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passes", type=int, default=500)
    parser.add_argument("--seed", type=int, default=20241)
    parser.add_argument("--workdir", type=Path, default=None, help="kept afterwards (default: a temp dir)")
    args = parser.parse_args()
    # the passes log one line per error; the soak's own figures are what matters here
    logging.basicConfig(level=logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        report = run_soak(args.passes, args.seed, workdir)
    data = {"seed": args.seed, **report.as_dict()}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2, default=str) + "\n")
    for key, value in data.items():
        if key != "problems":
            print(f"{key:<26} {value}")
    for problem in report.problems:
        print("PROBLEM:", problem)
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
