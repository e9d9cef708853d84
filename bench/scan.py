"""Registry scan benchmark (issue 3): image-updater's registry client against a minimal plain-httpx baseline.

Set-up (once, reused between runs): REPOS repositories x TAGS tags written straight into a distribution
registry's storage under ``bench/.data/`` (``seed_storage``; the same images an HTTP push would create). Then,
against the real ``docker-registry`` on 127.0.0.1:

- ``semver``: one pass resolving ``semver:^1`` for every repository through ``resolve``, with the persistent
  cache of the previous run (as a daemon has it) and with an empty one, and beside them a minimal baseline
  client (plain httpx, the same concurrency, exactly one tags/list request per repository, choosing
  nothing). Each runs RUNS times, in rotating order, each run in its own process (wall and CPU time measured
  inside, peak RSS from ``wait4``); medians and their ratios.
- ``glob``: ``glob:1.*`` (build-time ordering, so manifests and configs are needed) over GLOB_REPOS
  repositories: a cold pass (empty cache), a warm pass (same client), and a pass in a new process on the same
  cache file (a restart). Request counts per kind.

Prints a table and writes ``bench/results/scan.json``.

    .venv/bin/python bench/scan.py [--repos 1000] [--tags 100] [--runs 5] [--glob-repos 10]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# `python bench/scan.py` puts bench/ first on sys.path, where a sibling script (bench/select.py) would shadow
# the standard library module of the same name; the project root is what we want instead
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

DATA = ROOT / "bench" / ".data"
RESULTS = ROOT / "bench" / "results" / "scan.json"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
CONCURRENCY = 8


def repo_name(index: int) -> str:
    return f"bench/app-{index:04d}"


def tag_set(tags: int) -> dict[str, datetime]:
    # versions 1.0.0 .. 1.<tags-1>.0, built a minute apart (the newest is the highest version)
    return {f"1.{i}.0": T0 + timedelta(minutes=i) for i in range(tags)}


def seed(repos: int, tags: int) -> Path:
    """Fill ``bench/.data/storage`` once; re-seed only when the shape asked for changes."""
    from tests.servers.push import seed_storage

    storage = DATA / "storage"
    marker = DATA / "seeded.json"
    shape = {"repos": repos, "tags": tags, "format": 1}
    if marker.exists() and json.loads(marker.read_text()) == shape and storage.exists():
        return storage
    shutil.rmtree(storage, ignore_errors=True)
    started = time.perf_counter()
    seed_storage(storage, {repo_name(i): tag_set(tags) for i in range(repos)})
    marker.write_text(json.dumps(shape))
    took = time.perf_counter() - started
    print(f"seeded {repos} x {tags} tags into {storage} in {took:.1f} s", file=sys.stderr)
    return storage


# ---------------------------------------------------------------------------------------------- child passes


async def ours_semver(host: str, repos: int, cache_file: Path) -> dict[str, Any]:
    from image_updater.plan import ResolveKey
    from image_updater.policies import parse_policy
    from image_updater.registry import MetadataCache, RegistryClient, RegistryOptions, resolve

    counts: Counter[str] = Counter()
    policy = parse_policy("semver:^1")
    keys = [ResolveKey(f"{host}/{repo_name(i)}", policy, "1.0.0") for i in range(repos)]
    options = [RegistryOptions(prefix=host, insecure=True, max_concurrency=CONCURRENCY)]
    with MetadataCache(cache_file) as cache:
        async with RegistryClient(options, cache=cache, on_request=lambda r, s: counts.update([str(s)]),
                                  docker_config=DATA / "no-docker-config.json") as client:
            started, cpu = time.perf_counter(), time.process_time()
            results = await resolve(client, keys)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    errors = [r.error for r in results.values() if r.error]
    chosen = Counter(r.tag for r in results.values())
    return {
        "wall": wall, "cpu": cpu, "requests": sum(counts.values()), "statuses": dict(counts),
        "errors": len(errors), "first_error": errors[0] if errors else None,
        "chosen": dict(chosen.most_common(3)),
    }


async def baseline(host: str, repos: int) -> dict[str, Any]:
    """The least a client can do: one tags/list per repository, the same concurrency, nothing else."""
    import httpx

    semaphore = asyncio.Semaphore(CONCURRENCY)
    statuses: Counter[str] = Counter()
    tag_count = 0

    async def one(client: httpx.AsyncClient, name: str) -> None:
        nonlocal tag_count
        async with semaphore:
            response = await client.get(f"http://{host}/v2/{name}/tags/list?n=1000")
        statuses.update([str(response.status_code)])
        tag_count += len(response.json()["tags"])

    async with httpx.AsyncClient(timeout=30.0) as client:
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(client, repo_name(i)) for i in range(repos)))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {
        "wall": wall, "cpu": cpu, "requests": sum(statuses.values()), "statuses": dict(statuses),
        "tags": tag_count,
    }


async def glob_passes(host: str, repos: int, cache_file: Path, passes: int) -> dict[str, Any]:
    from image_updater.plan import ResolveKey
    from image_updater.policies import parse_policy
    from image_updater.registry import MetadataCache, RegistryClient, RegistryOptions, resolve
    from image_updater.registry.http11 import Pool, Response
    from image_updater.registry.session import system_trust_context

    kinds: Counter[str] = Counter()
    policy = parse_policy("glob:1.*")
    keys = [ResolveKey(f"{host}/{repo_name(i)}", policy, "1.0.0") for i in range(repos)]
    options = [RegistryOptions(prefix=host, insecure=True, max_concurrency=CONCURRENCY)]
    out: list[dict[str, Any]] = []
    seen: list[tuple[str, str]] = []

    class Recorder(Pool):  # the client's own pool, counting what it sends
        async def request(
            self, method: bytes, scheme: str, host: str, port: int, target: str,
            headers: list[tuple[bytes, bytes]], content: bytes | None, seconds: float,
        ) -> Response:
            path = target.partition("?")[0]
            kind = "tags" if path.endswith("/tags/list") else "manifest" if "/manifests/" in path else "blob"
            seen.append((method.decode(), kind))
            return await super().request(method, scheme, host, port, target, headers, content, seconds)

    with MetadataCache(cache_file) as cache:
        async with RegistryClient(options, cache=cache, transport=Recorder(system_trust_context),
                                  docker_config=DATA / "no-docker-config.json") as client:
            for _ in range(passes):
                seen.clear()
                started = time.perf_counter()
                results = await resolve(client, keys)
                wall = time.perf_counter() - started
                kinds = Counter(f"{method} {kind}" for method, kind in seen)
                errors = [r.error for r in results.values() if r.error]
                out.append({
                    "wall": wall, "requests": len(seen), "by_kind": dict(kinds),
                    "metadata_requests": len(seen) - kinds["GET tags"], "errors": len(errors),
                    "chosen": dict(Counter(r.tag for r in results.values()).most_common(2)),
                })
    return {"passes": out}


def child_main(args: argparse.Namespace) -> None:
    if args.child == "ours":
        result = asyncio.run(ours_semver(args.host, args.repos, Path(args.cache)))
    elif args.child == "baseline":
        result = asyncio.run(baseline(args.host, args.repos))
    else:
        result = asyncio.run(glob_passes(args.host, args.glob_repos, Path(args.cache), args.passes))
    result["self_maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["vmhwm_kb"] = vmhwm_kb()
    # httpcore 1.0.x (under the httpx baseline; the registry client has its own pool) imports sniffio whenever
    # it sets up a lock; were it missing, every miss would scan all of sys.path (+30 % CPU per request): the
    # regression check of issue 16
    result["sniffio_loaded"] = "sniffio" in sys.modules or "httpcore" not in sys.modules
    print(json.dumps(result))


def vmhwm_kb() -> int:
    """This process's own peak RSS. Not ``ru_maxrss``: Linux carries the forking parent's high-water mark
    over into the child across ``exec``, so a child of the seeding driver reported the driver's RSS."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def median_cpu(runs: list[dict[str, Any]]) -> float:
    return statistics.median(r["cpu"] for r in runs)


def spawn(mode: str, args: argparse.Namespace, host: str, **extra: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", mode, "--host", host, "--repos", str(args.repos),
               "--glob-repos", str(args.glob_repos)]
    for name, value in extra.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"child {mode} failed with {process.returncode}")
    result: dict[str, Any] = json.loads(output)
    result["peak_rss_mb"] = round(result["vmhwm_kb"] / 1024, 1)
    result["wait4_maxrss_mb"] = round(usage.ru_maxrss / 1024, 1)  # inflated by the parent's, kept to compare
    if not result["sniffio_loaded"]:
        raise SystemExit("sniffio is not importable: httpcore pays a failed import (a sys.path scan) per "
                         "lock; reinstall with the project's dependencies")
    return result


# --------------------------------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--glob-repos", type=int, default=10)
    parser.add_argument("--child", choices=["ours", "baseline", "glob"])
    parser.add_argument("--host")
    parser.add_argument("--cache")
    parser.add_argument("--passes", type=int, default=2)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    from tests.servers import RegistryServer

    DATA.mkdir(parents=True, exist_ok=True)
    storage = seed(args.repos, args.tags)
    load_before = list(os.getloadavg())
    run_dir = DATA / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    with RegistryServer(work_dir=run_dir, storage_dir=storage, log_level="warn") as server:
        host = server.host
        semver_cache = DATA / "semver-cache.sqlite3"
        for leftover in DATA.glob("*.sqlite3*"):
            leftover.unlink()
        # one untimed pass each, so that the registry's own caches and the page cache are warm for both
        spawn("baseline", args, host)
        spawn("ours", args, host, cache=semver_cache)
        ours_runs, cold_runs, base_runs = [], [], []
        empty_cache = DATA / "semver-empty-cache.sqlite3"
        for run in range(args.runs):
            modes = ["ours", "cold", "baseline"]
            for mode in modes[run % 3 :] + modes[: run % 3]:
                if mode == "ours":
                    ours_runs.append(spawn("ours", args, host, cache=semver_cache))
                elif mode == "cold":
                    for leftover in DATA.glob(empty_cache.name + "*"):
                        leftover.unlink()
                    cold_runs.append(spawn("ours", args, host, cache=empty_cache))
                else:
                    base_runs.append(spawn("baseline", args, host))
        glob_cache = DATA / "glob-cache.sqlite3"
        glob = spawn("glob", args, host, cache=glob_cache, passes=2)
        restart = spawn("glob", args, host, cache=glob_cache, passes=1)

    ours_wall = statistics.median(r["wall"] for r in ours_runs)
    cold_wall = statistics.median(r["wall"] for r in cold_runs)
    base_wall = statistics.median(r["wall"] for r in base_runs)
    cold, warm = glob["passes"]
    [after_restart] = restart["passes"]
    new_tags = args.glob_repos * args.tags
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_before": load_before, "load_after": list(os.getloadavg())},
        "shape": {"repos": args.repos, "tags": args.tags, "runs": args.runs, "concurrency": CONCURRENCY,
                  "glob_repos": args.glob_repos},
        "semver": {
            "ours_wall_median_s": round(ours_wall, 3),
            "baseline_wall_median_s": round(base_wall, 3),
            "ratio": round(ours_wall / base_wall, 3),
            "ours_empty_cache_wall_median_s": round(cold_wall, 3),
            "ratio_empty_cache": round(cold_wall / base_wall, 3),
            # CPU of the timed region (user + system, this process): the figure issue 16's goals are set in
            "cpu_ratio": round(median_cpu(ours_runs) / median_cpu(base_runs), 3),
            "cpu_ratio_empty_cache": round(median_cpu(cold_runs) / median_cpu(base_runs), 3),
            "ours_cpus_s": [round(r["cpu"], 3) for r in ours_runs],
            "ours_empty_cache_cpus_s": [round(r["cpu"], 3) for r in cold_runs],
            "baseline_cpus_s": [round(r["cpu"], 3) for r in base_runs],
            "ours_cpu_median_s": round(statistics.median(r["cpu"] for r in ours_runs), 3),
            "ours_empty_cache_cpu_median_s": round(statistics.median(r["cpu"] for r in cold_runs), 3),
            "baseline_cpu_median_s": round(statistics.median(r["cpu"] for r in base_runs), 3),
            "ours_walls_s": [round(r["wall"], 3) for r in ours_runs],
            "ours_empty_cache_walls_s": [round(r["wall"], 3) for r in cold_runs],
            "baseline_walls_s": [round(r["wall"], 3) for r in base_runs],
            "ours_requests": ours_runs[-1]["requests"],
            "baseline_requests": base_runs[-1]["requests"],
            "ours_requests_per_repo": ours_runs[-1]["requests"] / args.repos,
            "ours_errors": ours_runs[-1]["errors"],
            "ours_peak_rss_mb": max(r["peak_rss_mb"] for r in ours_runs),
            "baseline_peak_rss_mb": max(r["peak_rss_mb"] for r in base_runs),
        },
        "glob": {
            "cold": cold, "warm": warm, "after_restart": after_restart,
            "cold_requests_per_new_tag": round((cold["requests"] - args.glob_repos) / new_tags, 3),
            "peak_rss_mb": glob["peak_rss_mb"],
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    s, g = report["semver"], report["glob"]
    rows = [
        ("semver pass, image-updater, warm cache (median)", f"{s['ours_wall_median_s']:.3f} s",
         f"{s['ours_requests']} req", f"{s['ours_peak_rss_mb']} MB"),
        ("semver pass, image-updater, empty cache (median)", f"{s['ours_empty_cache_wall_median_s']:.3f} s",
         f"{cold_runs[-1]['requests']} req", f"CPU {s['ours_empty_cache_cpu_median_s']:.2f} s"),
        ("semver pass, plain httpx baseline (median)", f"{s['baseline_wall_median_s']:.3f} s",
         f"{s['baseline_requests']} req", f"{s['baseline_peak_rss_mb']} MB"),
        ("wall ratio warm / empty cache", f"{s['ratio']:.2f} / {s['ratio_empty_cache']:.2f}", "",
         f"CPU {s['ours_cpu_median_s']:.2f} s vs {s['baseline_cpu_median_s']:.2f} s"),
        ("CPU ratio warm / empty cache (issue 16: <= 1.05 / 1.15)",
         f"{s['cpu_ratio']:.2f} / {s['cpu_ratio_empty_cache']:.2f}", "", ""),
        (f"glob pass cold ({args.glob_repos} repos x {args.tags} tags)", f"{cold['wall']:.3f} s",
         f"{cold['requests']} req", f"{g['cold_requests_per_new_tag']} per new tag (target <= 2)"),
        ("glob pass warm (same process)", f"{warm['wall']:.3f} s", f"{warm['requests']} req",
         f"{warm['metadata_requests']} metadata (target 0)"),
        ("glob pass after restart (new process)", f"{after_restart['wall']:.3f} s",
         f"{after_restart['requests']} req", f"{after_restart['metadata_requests']} metadata (target 0)"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
