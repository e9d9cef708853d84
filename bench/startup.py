"""Start-up of the command line (issue 16): ``image-updater plan`` on an empty directory and ``select``.

Each run is a fresh ``python -m image_updater`` process under ``/usr/bin/time`` (wall, user+sys CPU, peak
RSS of the command); no config file and no ``IMAGE_UPDATER_*`` variable, as a first-time user runs it, and
no ``PYTHONDONTWRITEBYTECODE``: the ``.pyc`` files are written by run 0 (not counted) and used after, as an
installed wheel's are.
``--compare DIR`` runs another checkout of image-updater (its ``image_updater`` package first on
``PYTHONPATH``, the same interpreter and libraries) interleaved with this one, for before/after figures
measured side by side. Medians of RUNS runs each; writes ``bench/results/startup.json``.

    .venv/bin/python bench/startup.py [--runs 15] [--compare /path/to/old/checkout]
"""

# ruff: noqa: E402 (the imports below must follow the sys.path fix)
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
from typing import Any

RESULTS = ROOT / "bench" / "results" / "startup.json"
COMMANDS: dict[str, tuple[list[str], str]] = {
    "plan (empty directory)": (["plan", "{empty}"], ""),
    "select (5 tags on stdin)": (["select", "semver:^1"], "1.0.0\n1.1.0\n1.2.0\n2.0.0\nlatest\n"),
}


def timed(root: Path, args: list[str], stdin: str) -> dict[str, float]:
    # with its bytecode written, as an installed wheel has it (pip compiles at install time); run 0 writes it
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("IMAGE_UPDATER_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPATH"] = str(root)
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%e %U %S %M", "-o", out.name,
             sys.executable, "-m", "image_updater", *args],
            input=stdin, capture_output=True, text=True, env=env, cwd=root, timeout=120,
        )
        wall, user, system, rss_kb = out.read().split()[-4:]
    if done.returncode != 0:
        raise SystemExit(f"{root}: {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return {"wall": float(wall), "cpu": float(user) + float(system), "peak_rss_mb": int(rss_kb) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--compare", type=Path, help="another checkout, run interleaved with this one")
    args = parser.parse_args()
    roots = {"this checkout": ROOT}
    if args.compare is not None:
        roots["compared"] = args.compare.resolve()
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {label: [] for label in roots} for name in COMMANDS
    }
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as empty:
        for run in range(args.runs + 1):  # run 0 warms the page cache and writes .pyc files; not counted
            for name, (command, stdin) in COMMANDS.items():
                labels = list(roots) if run % 2 else list(reversed(roots))
                for label in labels:
                    figures = timed(roots[label], [a.format(empty=empty) for a in command], stdin)
                    if run:
                        results[name][label].append(figures)
    summary: dict[str, Any] = {}
    print(f"{'command':<28}{'checkout':<16}{'wall median':>12}{'CPU median':>12}{'peak RSS':>10}")
    for name, by_label in results.items():
        summary[name] = {}
        for label, runs in by_label.items():
            row = {field: round(statistics.median(r[field] for r in runs), 3)
                   for field in ("wall", "cpu", "peak_rss_mb")}
            summary[name][label] = row
            print(f"{name:<28}{label:<16}{row['wall']:>11.3f}s{row['cpu']:>11.3f}s{row['peak_rss_mb']:>8.1f}MB")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "runs": args.runs, "roots": {label: str(path) for label, path in roots.items()},
        "summary": summary, "raw": results,
    }, indent=2) + "\n")
    print(f"written: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
