"""Policy evaluation benchmark (issue 2): ``select``-style choices over 100,000 generated tags.

Three policies over the same generated repository (a realistic mix: plain and v-prefixed versions, 1- and
2-part versions, prereleases, flavours, branch builds with commit hashes, PR builds, cosign signatures,
``latest``, a few invalid tags; every tag with a build time):

- ``semver:>=1.2.0 <5``: version ranking through a range,
- ``glob:main-*``: build-time ranking,
- ``alphabetical``: byte order,
- ``regex:^main-[0-9a-f]+-[0-9]+$``: a user regex (RE2) on every tag, then build-time ranking,
- ``semver:>=1.2.0 <5`` with ``filter``/``extract``: a user regex with a named group on every tag, the
  extracted value ranked as a version.

Each is timed RUNS times over the same ``TagInfo`` list (policy evaluation only: ``parse_policy`` +
``choose``; no interpreter start-up, no stdin parsing); the table shows the median wall time and the median
CPU time of this process (the machine is shared, so CPU time is the steadier figure). ``explain`` (every
tag's verdict, what ``check --explain`` renders) is timed once per policy for scale, and so is reading the
100,000 lines as ``select`` reads stdin. Then the real console script ``image-updater select`` runs
END_TO_END times on a few tags, end to end in a subprocess: as installed (bytecode cached) and as this
checkout runs it.

Prints a table and writes ``bench/results/select.json``.

    .venv/bin/python bench/select.py [--tags 100000] [--runs 7] [--end-to-end 10]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's ``select`` module, which subprocess imports: keep its own
# directory off the import path, and the project root on it.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

from image_updater.commands.select import read_tags  # noqa: E402
from image_updater.policies import TagInfo, parse_policy  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "select.json"
SCRIPT = Path(sys.executable).with_name("image-updater")
T0 = datetime(2023, 1, 1, tzinfo=UTC)
POLICIES: list[tuple[str, str, dict[str, str], str | None]] = [
    ("semver", "semver:>=1.2.0 <5", {}, "1.2.0"),
    ("glob", "glob:main-*", {}, None),
    ("alphabetical", "alphabetical", {}, None),
    ("regex", "regex:^main-[0-9a-f]+-[0-9]+$", {}, None),
    ("semver+filter", "semver:>=1.2.0 <5",
     {"filter": r"^v?(?P<version>\d+\.\d+(?:\.\d+)?)$", "extract": "$version"}, "1.2.0"),
]
FEW_TAGS = "1.2.3\n1.2.10\n1.3.0\nv1.2.11-rc.1\nlatest\n"


def generate(count: int, seed: int = 2) -> list[TagInfo]:
    """``count`` tags with build times, in a fixed pseudo-random mix (the same for every run and machine)."""
    rnd = random.Random(seed)
    tags: list[TagInfo] = []
    for i in range(count):
        major, minor, patch = rnd.randrange(0, 8), rnd.randrange(0, 40), rnd.randrange(0, 60)
        r = rnd.random()
        if r < 0.30:
            tag = f"{major}.{minor}.{patch}"
        elif r < 0.40:
            tag = f"v{major}.{minor}.{patch}"
        elif r < 0.45:
            tag = f"{major}.{minor}"
        elif r < 0.55:
            tag = f"{major}.{minor}.{patch}-{rnd.choice(['rc', 'beta', 'alpha'])}.{rnd.randrange(1, 20)}"
        elif r < 0.65:
            tag = f"{major}.{minor}.{patch}-{rnd.choice(['alpine', 'slim-bookworm', 'alpine3.19', 'perl'])}"
        elif r < 0.85:
            tag = f"main-{rnd.getrandbits(28):07x}-{i}"
        elif r < 0.93:
            tag = f"pr-{rnd.randrange(1, 5000)}-{rnd.getrandbits(28):07x}"
        elif r < 0.98:
            tag = f"sha256-{rnd.getrandbits(256):064x}.{rnd.choice(['sig', 'att', 'sbom'])}"
        elif r < 0.99:
            tag = "latest"
        else:
            tag = f"bad+tag-{i}"
        tags.append(TagInfo(tag, created=T0 + timedelta(seconds=rnd.randrange(0, 40_000_000))))
    return tags


def measure(fn: Callable[[], object], runs: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return walls, cpus


def timed_runs(
    command: list[str], runs: int, env: dict[str, str], stdin: str = ""
) -> tuple[list[float], str]:
    walls = []
    output = ""
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, check=True, env=env)
        walls.append(time.perf_counter() - t0)
        output = done.stdout.strip()
    return walls, output


def end_to_end(runs: int) -> dict[str, Any]:
    """``image-updater select`` in a subprocess, as installed and as this checkout runs it.

    An installed package has its ``.pyc`` files (here: a bytecode cache directory outside the working tree,
    ``PYTHONPYCACHEPREFIX``, written by a first run). This project's sandbox sets
    ``PYTHONDONTWRITEBYTECODE=1``, so a checkout compiles the project's modules on every start (the
    standard library's own caches are still used): that is measured too, in the inherited environment.
    """
    command = [str(SCRIPT), "select", "semver:~1.2"]
    out: dict[str, Any] = {"command": "image-updater select semver:~1.2 (5 tags on stdin)"}
    with tempfile.TemporaryDirectory() as cache:
        installed = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        installed["PYTHONPYCACHEPREFIX"] = cache
        modes = {"installed": installed, "checkout": dict(os.environ)}
        timed_runs(command, 1, installed, FEW_TAGS)  # writes the cache
        for mode, env in modes.items():
            walls, output = timed_runs(command, runs, env, FEW_TAGS)
            out[mode] = {
                "env": "bytecode cached" if mode == "installed" else
                f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')}",
                "output": output,
                "wall_median_s": round(statistics.median(walls), 4),
                "wall_min_s": round(min(walls), 4),
                "walls_s": [round(w, 4) for w in walls],
            }
        walls, _ = timed_runs([sys.executable, "-c", "pass"], runs, installed)
        out["python_startup_median_s"] = round(statistics.median(walls), 4)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--end-to-end", type=int, default=10)
    args = parser.parse_args()

    tags = generate(args.tags)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "load_before": os.getloadavg(),
        },
        "shape": {"tags": args.tags, "runs": args.runs, "end_to_end_runs": args.end_to_end},
        "policies": {},
    }
    rows = []
    for name, text, modifiers, current in POLICIES:
        chosen: list[str | None] = []

        def evaluate(
            text: str = text,
            modifiers: dict[str, str] = modifiers,
            current: str | None = current,
            chosen: list[str | None] = chosen,
        ) -> None:
            # parse_policy's compile step is cached per policy value: clear it so every run pays for it
            from image_updater.policies.compiled import _compile

            _compile.cache_clear()
            got = parse_policy(text, modifiers).choose(tags, current=current)
            chosen.append(got.tag if got else None)

        evaluate()  # warm-up: imports, regex compilation in the re module's cache
        walls, cpus = measure(evaluate, args.runs)
        explain_walls, _ = measure(
            lambda text=text, modifiers=modifiers, current=current: parse_policy(text, modifiers).explain(
                tags, current
            ),
            1,
        )
        results["policies"][name] = {
            "policy": text,
            "modifiers": modifiers,
            "chosen": chosen[-1],
            "wall_median_s": round(statistics.median(walls), 4),
            "cpu_median_s": round(statistics.median(cpus), 4),
            "walls_s": [round(w, 4) for w in walls],
            "explain_wall_s": round(explain_walls[0], 4),
        }
        label = text + (" +filter" if modifiers else "")
        rows.append((label, chosen[-1], statistics.median(walls), statistics.median(cpus), explain_walls[0]))

    lines = [f"{t.tag} {t.created.isoformat()}\n" for t in tags if t.created is not None]
    read_walls, _ = measure(lambda: read_tags(lines), 3)
    results["read_stdin_lines_wall_median_s"] = round(statistics.median(read_walls), 4)

    e2e = results["end_to_end"] = end_to_end(args.end_to_end)
    results["machine"]["load_after"] = os.getloadavg()

    print(f"select benchmark: {args.tags:,} tags, median of {args.runs} runs "
          f"(load average before/after {os.getloadavg()[0]:.1f})")
    print(f"{'policy':<30} {'chosen':<20} {'wall':>8} {'cpu':>8} {'explain':>9}")
    for text, chosen_tag, wall, cpu, explain in rows:
        print(f"{text:<30} {chosen_tag or '-':<20} {wall:>7.3f}s {cpu:>7.3f}s {explain:>8.3f}s")
    print(f"reading {len(lines):,} stdin lines (tag + RFC 3339 time): {statistics.median(read_walls):.3f}s")
    for mode in ("installed", "checkout"):
        row = e2e[mode]
        print(
            f"end to end, {mode} ({row['env']}): image-updater select on 5 tags -> {row['output']}: "
            f"median {row['wall_median_s']:.3f}s, min {row['wall_min_s']:.3f}s over {args.end_to_end} runs"
        )
    print(f"(bare interpreter start-up, python -c pass: median {e2e['python_startup_median_s']:.3f}s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
