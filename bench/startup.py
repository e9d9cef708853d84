"""Start-up of the command line (issue 16): ``image-updater plan`` on an empty directory, ``select``, and
``plan`` of a 20-image repository against a local registry.

Each run is a fresh ``python -m image_updater`` process under ``/usr/bin/time`` (wall, user+sys CPU, peak
RSS of the command); no ``IMAGE_UPDATER_*`` variable, and no ``PYTHONDONTWRITEBYTECODE``: the ``.pyc`` files
are written by run 0 (not counted) and used after, as an installed wheel's are. The first two rows run
without a config file, as a first-time user does. The third is ``bench/renovate.py``'s set-up without
Renovate: the distribution registry on 127.0.0.1 (started once, stopped at the end) with 20 images x 10 tags
pushed by the project's ``ImagePusher``, the same repository of 20 annotated Deployments (``semver:^1``) and
config file (``cache_dir``, the registry's prefix ``insecure: true``), written once; each run is
``plan -c CFG --format json --detailed-exitcode REPO`` with the cache directory removed before it (cold), and
must report the 20 updates.
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
sys.path.insert(0, str(ROOT))

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

RESULTS = ROOT / "bench" / "results" / "startup.json"
IMAGES, TAGS = 20, 10  # bench/renovate.py's defaults


@dataclass(frozen=True)
class Command:
    args: list[str]
    stdin: str = ""
    repository: bool = False  # needs the registry, the repository and the config: cold cache each run
    exit_codes: tuple[int, ...] = (0,)


COMMANDS: dict[str, Command] = {
    "plan (empty directory)": Command(["plan", "{empty}"]),
    "select (5 tags on stdin)": Command(["select", "semver:^1"], "1.0.0\n1.1.0\n1.2.0\n2.0.0\nlatest\n"),
    f"plan ({IMAGES}-image repo, local registry)": Command(
        ["plan", "-c", "{config}", "--format", "json", "--detailed-exitcode", "{repo}"],
        repository=True,
        exit_codes=(2,),  # --detailed-exitcode: 2 = updates pending
    ),
}


def timed(
    root: Path, args: list[str], stdin: str, exit_codes: tuple[int, ...] = (0,), home: str | None = None
) -> tuple[dict[str, float], str]:
    # with its bytecode written, as an installed wheel has it (pip compiles at install time); run 0 writes it
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("IMAGE_UPDATER_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPATH"] = str(root)
    if home is not None:
        env["HOME"] = home
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%e %U %S %M", "-o", out.name,
             sys.executable, "-m", "image_updater", *args],
            input=stdin, capture_output=True, text=True, env=env, cwd=root, timeout=120,
        )
        wall, user, system, rss_kb = out.read().split()[-4:]
    if done.returncode not in exit_codes:
        raise SystemExit(f"{root}: {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    figures = {"wall": float(wall), "cpu": float(user) + float(system), "peak_rss_mb": int(rss_kb) / 1024}
    return figures, done.stdout


def seed(work: Path) -> tuple[Any, dict[str, str]]:
    """Start the registry, push IMAGES x TAGS images, write the repository and the config (once)."""
    from bench.renovate import T0, make_repo
    from tests.servers import ImagePusher, RegistryServer

    registry = RegistryServer(work_dir=work / "registry", log_level="warn").start()
    try:
        with ImagePusher(registry.url) as pusher:
            for index in range(IMAGES):
                for minor in range(TAGS):
                    pusher.push(
                        f"bench/app-{index:02d}", f"1.{minor}.0", created=T0 + timedelta(minutes=minor)
                    )
        repo = make_repo(work, registry.host, IMAGES)
        config = work / "image-updater.yaml"
        config.write_text(
            f"cache_dir: {work / 'cache'}\nregistries:\n  - prefix: {registry.host}\n    insecure: true\n"
        )
    except BaseException:
        registry.stop()
        raise
    (work / "home").mkdir()
    return registry, {"repo": str(repo), "config": str(config), "cache": str(work / "cache"),
                      "home": str(work / "home")}


def check_updates(root: Path, stdout: str) -> None:
    updates = json.loads(stdout)["updates"]
    if len(updates) != IMAGES or {u["new_tag"] for u in updates} != {f"1.{TAGS - 1}.0"}:
        raise SystemExit(
            f"{root}: plan did not report the {IMAGES} updates to 1.{TAGS - 1}.0: {stdout[:2000]}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--compare", type=Path, help="another checkout, run interleaved with this one")
    parser.add_argument("--only", metavar="TEXT", help="only the commands whose name contains TEXT")
    args = parser.parse_args()
    roots = {"this checkout": ROOT}
    if args.compare is not None:
        roots["compared"] = args.compare.resolve()
    commands = {name: c for name, c in COMMANDS.items() if args.only is None or args.only in name}
    if not commands:
        raise SystemExit(f"no command matches {args.only!r}: {', '.join(COMMANDS)}")
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {label: [] for label in roots} for name in commands
    }
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        work = Path(tmp)
        (work / "empty").mkdir()
        registry, places = None, {"empty": str(work / "empty")}
        if any(c.repository for c in commands.values()):
            registry, seeded = seed(work)
            places |= seeded
        try:
            for run in range(args.runs + 1):  # run 0 warms the page cache and writes .pyc files; not counted
                for name, command in commands.items():
                    labels = list(roots) if run % 2 else list(reversed(roots))
                    for label in labels:
                        if command.repository:  # cold, as a new user's first run (bench/renovate.py)
                            shutil.rmtree(places["cache"], ignore_errors=True)
                        figures, stdout = timed(
                            roots[label],
                            [a.format(**places) for a in command.args],
                            command.stdin,
                            command.exit_codes,
                            home=places["home"] if command.repository else None,
                        )
                        if command.repository:
                            check_updates(roots[label], stdout)
                        if run:
                            results[name][label].append(figures)
        finally:
            if registry is not None:
                registry.stop()
    summary: dict[str, Any] = {}
    width = max(len(name) for name in results) + 2
    print(f"{'command':<{width}}{'checkout':<16}{'wall median':>12}{'CPU median':>12}{'peak RSS':>10}")
    for name, by_label in results.items():
        summary[name] = {}
        for label, runs in by_label.items():
            row = {field: round(statistics.median(r[field] for r in runs), 3)
                   for field in ("wall", "cpu", "peak_rss_mb")}
            summary[name][label] = row
            print(f"{name:<{width}}{label:<16}{row['wall']:>11.3f}s{row['cpu']:>11.3f}s{row['peak_rss_mb']:>8.1f}MB")
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
