"""Hostile-input benchmark (trust issue): the real figures behind docs/reliability.md's bounds.

The hostile scenarios live in ``tests/hostile/*.py`` as plain functions ``scenario(tmp: Path) -> dict``: each
starts what it needs (hostile servers on 127.0.0.1, the distribution registry, bare Git repositories, child
processes), plays one attack, raises ``AssertionError`` when image-updater does not behave as documented,
and returns what it measured (``seconds``, ``peak_rss_mib`` and the like). The test suite runs each once
and asserts only generous bounds that a hang or unbounded growth would break; this script runs each RUNS
times and records the medians, so that the documented figures come from a script and not from a test.

Prints a table and writes ``bench/results/hostile.json``.

    .venv/bin/python bench/hostile.py [--runs 3] [--only NAME_SUBSTRING ...]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import pkgutil
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

Scenario = Callable[[Path], dict[str, float]]


_TMP_NAMES = ("tmp", "tmp_dir", "tmp_path")


def scenarios() -> list[tuple[str, Scenario]]:
    """Every public scenario of ``tests.hostile.*``: a function of the module's ``__all__`` (or, without one,
    any public function defined there) that returns a dict of figures and needs nothing but, at most, a
    temporary directory (its one required parameter named ``tmp``, ``tmp_dir`` or ``tmp_path``)."""
    import tests.hostile as package

    found: list[tuple[str, Scenario]] = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"tests.hostile.{info.name}")
        names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
        for name in names:
            obj = getattr(module, name, None)
            if not inspect.isfunction(obj) or obj.__module__ != module.__name__:
                continue
            signature = inspect.signature(obj)
            if not str(signature.return_annotation).startswith("dict"):
                continue
            positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            required = [p for p in signature.parameters.values()
                        if p.default is inspect.Parameter.empty and p.kind in positional]
            if not required:
                found.append((f"{info.name}.{name}", lambda tmp, f=obj: f()))
            elif len(required) == 1 and required[0].name in _TMP_NAMES:
                found.append((f"{info.name}.{name}", obj))
    return found


def run_one(scenario: Scenario) -> tuple[dict[str, float], float]:
    """One run in a fresh temporary directory: (numeric figures, wall seconds)."""
    with tempfile.TemporaryDirectory(prefix="hostile-bench-") as tmp:
        started = time.perf_counter()
        figures = scenario(Path(tmp))
        wall = time.perf_counter() - started
    return {k: float(v) for k, v in figures.items() if isinstance(v, int | float)}, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=[], help="only names containing one of these")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "hostile.json")
    args = parser.parse_args(argv)

    selected = [(n, s) for n, s in scenarios() if not args.only or any(o in n for o in args.only)]
    if not selected:
        print("no scenario matches", file=sys.stderr)
        return 2
    results: dict[str, Any] = {}
    failures = 0
    for name, scenario in selected:
        runs: list[dict[str, float]] = []
        walls: list[float] = []
        error = None
        for _ in range(args.runs):
            try:
                figures, wall = run_one(scenario)
            except Exception:  # a scenario that misbehaves is reported and the others still run
                error = traceback.format_exc(limit=3).strip().splitlines()[-1]
                break
            runs.append(figures)
            walls.append(wall)
        if error is not None:
            failures += 1
            results[name] = {"error": error}
            print(f"{name:<60} FAILED: {error}", flush=True)
            continue
        keys = sorted({k for r in runs for k in r})
        medians = {k: statistics.median(r[k] for r in runs if k in r) for k in keys}
        results[name] = {"runs": len(runs), "median": medians, "wall_median_s": statistics.median(walls),
                         "all": runs}
        shown = ", ".join(f"{k}={v:.3g}" for k, v in medians.items())
        print(f"{name:<60} {statistics.median(walls):7.2f} s  {shown}", flush=True)

    payload = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_before": os.getloadavg()[0]},
        "runs": args.runs,
        "scenarios": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
