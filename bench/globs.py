"""Glob matching benchmark: path globs (policy files' ``spec.targets``) and tag globs, hostile and normal.

1. Each crafted case of ``tests/hostile/globs.py`` (``PATH_WORST_CASES``): the linear matcher's time, and
   the old backtracking regex's, in a child process killed after ``--limit`` seconds (it hangs on most).
2. Growth: ``apps/*a*a...*b.yaml`` against paths of 100 to 10,000 characters; linear matching keeps the
   cost per character flat.
3. Normal globs on normal paths (what discovery does for every file): microseconds per match, old and new.
4. The scenario functions the test suite runs (tag globs, discovery through the CLI), with their figures.

Prints tables, writes ``bench/results/globs.json``.

    .venv/bin/python bench/globs.py [--limit 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/select.py would shadow the standard library's select module (which subprocess needs)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from image_updater.discover._globs import compile_path_glob  # noqa: E402
from tests.hostile import globs as scenarios  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "globs.json"

OLD_CHILD = """
import sys, time
from tests.hostile.globs import PATH_WORST_CASES, legacy_path_regex
glob, path, _ = PATH_WORST_CASES[int(sys.argv[1])]
pattern = legacy_path_regex(glob)
start = time.perf_counter()
pattern.fullmatch(path)
print(time.perf_counter() - start)
"""

NORMAL = [
    ("apps/**", "apps/podinfo/deployment.yaml"),
    ("**/kustomization.yaml", "clusters/prod/apps/podinfo/kustomization.yaml"),
    ("apps/*/values.yaml", "apps/podinfo/values.yaml"),
    ("apps/podinfo", "apps/podinfo/deployment.yaml"),
    ("charts/*/values-*.yaml", "other/podinfo/values-prod.yaml"),
]


def old_seconds(index: int, limit: float) -> float | None:
    try:
        out = subprocess.run([sys.executable, "-c", OLD_CHILD, str(index)], capture_output=True, text=True,
                             timeout=limit, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return None
    return float(out.stdout)


def best(func: Any, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=float, default=3.0, help="seconds the old regex gets per case")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "globs", "python": platform.python_version(), "machine": platform.machine(),
        "load_average": list(os.getloadavg()), "old_limit_s": args.limit,
    }

    print(f"1. crafted path globs (old regex killed after {args.limit:g} s)")
    print(f"{'glob':44} {'path chars':>10} {'match':>5} {'new ms':>8} {'old s':>8}")
    crafted = []
    for index, (glob, path, expected) in enumerate(scenarios.PATH_WORST_CASES):
        pattern = compile_path_glob(glob)
        new = best(lambda p=pattern, s=path: p.matches(s))  # type: ignore[misc]
        old = old_seconds(index, args.limit)
        shown = glob if len(glob) <= 44 else glob[:41] + "..."
        print(f"{shown:44} {len(path):>10} {expected!s:>5} {new * 1e3:>8.3f} "
              f"{'>' + format(args.limit, 'g') if old is None else format(old, '.3f'):>8}")
        crafted.append({"glob": glob, "path_chars": len(path), "matches": expected, "new_s": new,
                        "old_s": old, "old_timed_out": old is None})
    report["crafted"] = crafted

    print("\n2. growth: apps/" + "*a" * 12 + "*b.yaml against apps/aaa...a.yaml")
    print(f"{'path chars':>10} {'ms':>8} {'ns/char':>8}")
    growth = []
    for length in (100, 1000, 10_000):
        path = "apps/" + "a" * length + ".yaml"

        def run(path: str = path) -> None:
            compile_path_glob("apps/" + "*a" * 12 + "*b.yaml").matches(path)  # cold: cache misses included
        seconds = best(run)
        print(f"{len(path):>10} {seconds * 1e3:>8.3f} {seconds / len(path) * 1e9:>8.0f}")
        growth.append({"path_chars": len(path), "seconds": seconds})
    report["growth"] = growth

    print("\n3. normal globs, warm (µs per match)")
    print(f"{'glob':28} {'path':48} {'new µs':>7} {'old µs':>7}")
    normal = []
    for glob, path in NORMAL:
        new_pattern, old_pattern = compile_path_glob(glob), scenarios.legacy_path_regex(glob)
        assert new_pattern.matches(path) is (old_pattern.fullmatch(path) is not None)
        new = best(lambda p=new_pattern, s=path: [p.matches(s) for _ in range(10_000)]) / 10_000  # type: ignore[misc]
        old = best(lambda p=old_pattern, s=path: [p.fullmatch(s) for _ in range(10_000)]) / 10_000  # type: ignore[misc]
        print(f"{glob:28} {path:48} {new * 1e6:>7.2f} {old * 1e6:>7.2f}")
        normal.append({"glob": glob, "path": path, "new_us": new * 1e6, "old_us": old * 1e6})
    report["normal"] = normal

    print("\n4. scenarios")
    figures: dict[str, dict[str, float]] = {}
    figures["path_globs_are_linear"] = scenarios.path_globs_are_linear()
    figures["path_globs_agree_with_the_old_meaning"] = scenarios.path_globs_agree_with_the_old_meaning()
    figures["tag_globs_are_linear"] = scenarios.tag_globs_are_linear()
    figures["tag_globs_agree_with_fnmatch"] = scenarios.tag_globs_agree_with_fnmatch()
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("discovery_survives_hostile_globs", *getattr(scenarios, "TREE_SCENARIOS", ())):
            sub = Path(tmp) / name
            sub.mkdir()
            figures[name] = getattr(scenarios, name)(sub)
    for name, values in figures.items():
        print(f"{name:44} " + "  ".join(f"{k} {v:.4g}" for k, v in values.items()))
    report["scenarios"] = figures

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
