"""Benchmark: the daemon's memory over many passes, and webhook-to-commit latency.

Set-up: a real distribution registry (storage seeded on disk: ``--images`` repositories with three tags
each), a bare git repository of ``--files`` files of which ``--images`` are Deployments each tracking one
of those images with ``semver:^1.0`` (4,000 more YAML files without images, the rest Markdown/JSON), and
the daemon as a child process (``python -m image_updater run``), exactly as users run it.

1. Memory: interval 1 s (passes run back to back); the daemon's RSS (``/proc/<pid>/status``) is sampled
   after each of ``--passes`` passes. Reported: peak RSS (VmHWM), RSS after pass 10 and after the last pass,
   and the growth between them. Targets (issue 6): peak <= 150 MB, growth <= 5 %.
2. Latency: a fresh daemon, interval 1 h, warm cache; ``--samples`` times: push a newer tag of one image,
   POST a signed distribution notification to /webhook, and time until the bare repository's branch moves.
   Samples are spaced beyond the webhook rate limit (5 s per source). Target: median <= 2 s on loopback.
3. Start-up: ``--starts`` fresh daemons (interval 1 h), each timed from process start to the first
   ``/healthz`` 200 (the HTTP server is up) and to the first ``/readyz`` 200 (the first pass finished), with
   its RSS at that moment and its peak (VmHWM); medians reported. Run it alone, on a small set-up, to compare
   HTTP stacks: ``--only startup --images 20 --files 200``.

4. RSS trend (issue 16, ``--only rss``, e.g. ``--images 100 --files 2000 --passes 500``: passes of about 1 s):
   the memory phase alone, reporting besides its figures the least-squares slope of RSS against the pass
   number after warm-up (passes 10..N) with an autocorrelation-adjusted 95 % interval (bench/rss_trend.py
   states the "no upward trend" criterion), RSS after passes 10, 100, 250, 500 and the maximum; writes
   bench/results/daemon-rss.json. ``--no-release`` runs the daemon without its after-pass release of free
   memory, ``--malloc-arena-max N`` sets MALLOC_ARENA_MAX, ``--tracemalloc 10,50,250`` is a debug run
   (bench/rss_child.py) recording objects, allocator figures and optionally tracemalloc snapshots.
   ``--no-tune`` runs it without its start-up ``tune_allocator``, ``--alloc-series`` records glibc's and
   sqlite's figures after every pass (both through bench/rss_child.py), ``--env KEY=VALUE`` passes a variable
   to the daemon, ``--out NAME`` names the results file (a comparison run that keeps the recorded ones).

Usage: .venv/bin/python bench/daemon.py [--images 1000] [--files 10000] [--passes 100] [--samples 10]
Prints a table and writes bench/results/daemon.json.
"""

# ruff: noqa: E402 (the imports below must follow the sys.path fix)
from __future__ import annotations

import os
import sys

# Run as a script, this file's directory comes first on sys.path, where a sibling such as bench/select.py
# would shadow the standard library module of that name (socket imports select): drop it before anything else.
sys.path[:] = [
    p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))
]

import argparse
import hashlib
import hmac
import json
import platform
import re
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.rss_trend import at_passes, slope_of_points, slope_report
from tests.servers import ImagePusher, RegistryServer
from tests.servers.gitserver import make_bare_repo
from tests.servers.push import seed_storage

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SECRET = "bench-" + os.urandom(16).hex()

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app{i:04d}
  namespace: bench
  annotations:
    image-updater.io/policy.app: "semver:^1.0"
spec:
  replicas: 2
  selector:
    matchLabels: {{app: app{i:04d}}}
  template:
    metadata:
      labels: {{app: app{i:04d}}}
    spec:
      containers:
        - name: app
          image: {host}/bench/app{i:04d}:1.2.0
          ports:
            - containerPort: 8080
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings-{n}
  namespace: bench
data:
  LOG_LEVEL: info
  FEATURE_FLAGS: "a,b,c"
  TIMEOUT: "30s"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def repo_files(host: str, images: int, files: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for i in range(images):
        out[f"apps/app{i:04d}/deployment.yaml"] = DEPLOYMENT.format(i=i, host=host)
    extra_yaml = min(4000, max(0, files - images))
    for n in range(extra_yaml):
        out[f"config/group{n % 100:02d}/settings-{n}.yaml"] = CONFIGMAP.format(n=n)
    n = 0
    while len(out) < files:
        if n % 2:
            out[f"docs/section{n % 50:02d}/page-{n}.md"] = f"# Page {n}\n\nNothing to update here.\n"
        else:
            out[f"data/set{n % 50:02d}/record-{n}.json"] = json.dumps({"id": n, "value": n * 7}) + "\n"
        n += 1
    return out


def write_config(path: Path, *, cache: Path, bare: Path, host: str, port: int, interval: str) -> None:
    path.write_text(
        f"interval: {interval}\n"
        f"cache_dir: {cache}\n"
        f"sources:\n  - name: bench\n    url: {bare}\n    branch: main\n"
        f"commit:\n  author_name: Bench Bot\n  author_email: bench@example.com\n"
        f"registries:\n  - prefix: {host}\n    insecure: true\n    max_concurrency: 16\n"
        f"http:\n  listen: 127.0.0.1:{port}\n  webhook_secret_env: WEBHOOK_SECRET\n"
        f"log:\n  level: warning\n"
    )


def status_kib(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    assert match is not None
    return int(match.group(1))


def status_count(pid: int, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+)$", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match is not None
    return int(match.group(1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far (``/proc/<pid>/stat``; its children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def snapshot_diff(directory: Path, at: Sequence[int], top: int = 25) -> list[dict[str, Any]]:
    """What bench/rss_child.py saw after the passes ``at``: the allocator's figures at each, the object types
    and (under tracemalloc) the allocation sites that grew most between the first and the last."""
    import tracemalloc

    first, second = at[0], at[-1]
    every = [json.loads((directory / f"pass-{n}.json").read_text()) for n in at]
    counts = [every[0], every[-1]]
    grown = sorted(
        ((name, counts[1]["gc_types"].get(name, 0) - counts[0]["gc_types"].get(name, 0))
         for name in set(counts[0]["gc_types"]) | set(counts[1]["gc_types"])),
        key=lambda item: -abs(item[1]),
    )
    keys = ("arenas allocated current", "bytes in allocated blocks", "bytes in available blocks")
    summary: list[dict[str, Any]] = [{
        "after_passes": list(at),
        "allocated_blocks": [c["allocated_blocks"] for c in every],
        "pymalloc": {k: [c["pymalloc"].get(k) for c in every] for k in keys},
        "glibc_mallinfo2": {k: [c["glibc"].get(k) for c in every] for k in ("arena", "hblkhd", "uordblks",
                                                                             "fordblks")},
        "threads": [c["threads"] for c in counts],
        "gc_objects_grown_most": dict(grown[:top]),
    }]
    if "gc_type_bytes" in counts[0] and "gc_type_bytes" in counts[1]:
        a, b = counts[0]["gc_type_bytes"], counts[1]["gc_type_bytes"]
        by_type = sorted(((name, b.get(name, 0) - a.get(name, 0)) for name in set(a) | set(b)),
                         key=lambda item: -abs(item[1]))
        summary[0]["gc_type_bytes_grown_most"] = dict(by_type[:top])
        old_big, new_big = counts[0]["big_containers"], counts[1]["big_containers"]
        # the same object (by id) at both passes, grown in place: a container that fills up
        same = [(new_big[k][1] - old_big[k][1], k) for k in set(old_big) & set(new_big)
                if new_big[k][0] == old_big[k][0] and new_big[k][1] != old_big[k][1]]
        summary[0]["containers_grown_in_place"] = [
            {"type": new_big[k][0], "bytes": [old_big[k][1], new_big[k][1]],
             "len": [old_big[k][2], new_big[k][2]], "hint": new_big[k][3]}
            for _, k in sorted(same, reverse=True)[:top]
        ]
        summary[0]["big_containers_bytes"] = [sum(v[1] for v in counts[0]["big_containers"].values()),
                                              sum(v[1] for v in counts[1]["big_containers"].values())]
    if not (directory / f"pass-{first}.snap").exists():
        return summary
    old = tracemalloc.Snapshot.load(str(directory / f"pass-{first}.snap"))
    new = tracemalloc.Snapshot.load(str(directory / f"pass-{second}.snap"))
    keep = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")]
    old, new = old.filter_traces(keep), new.filter_traces(keep)
    out: list[dict[str, Any]] = []
    for stat in new.compare_to(old, "traceback")[:top]:  # one frame by default: "lineno" stats
        out.append({
            "size_diff_kib": round(stat.size_diff / 1024, 1),
            "count_diff": stat.count_diff,
            "size_kib": round(stat.size / 1024, 1),
            "traceback": [f"{frame.filename.replace(str(ROOT) + '/', '')}:{frame.lineno}"
                          for frame in stat.traceback],
        })
    total_old = sum(s.size for s in old.statistics("filename"))
    total_new = sum(s.size for s in new.statistics("filename"))
    summary[0]["traced_kib"] = [round(total_old / 1024, 1), round(total_new / 1024, 1)]
    return summary + out


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Daemon:
    def __init__(
        self, config: Path, port: int, log: Path, *, entry: Sequence[str] = ("-m", "image_updater"),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, *entry, "run", "-c", str(config)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env={**os.environ, "WEBHOOK_SECRET": SECRET, **(env or {})},
        )
        # generous: a slow answer is a finding (recorded below), not a reason to give up
        self.client = httpx.Client(timeout=120)

    def metrics(self) -> str:
        return self.client.get(self.url + "/metrics").text

    def passes(self) -> float:
        return metric_sum(self.metrics(), "image_updater_passes_total")

    def wait_ready(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"daemon exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if self.client.get(self.url + "/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit("daemon not ready in time")

    def stop(self) -> int:
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=120)
        self.log.close()
        return code


def memory_phase(
    config: Path, port: int, log: Path, passes: int, *, entry: Sequence[str] = ("-m", "image_updater"),
    env: Mapping[str, str] | None = None, trend: bool = False,
) -> dict[str, Any]:
    daemon = Daemon(config, port, log, entry=entry, env=env)
    load = [os.getloadavg()[0]]
    pid = daemon.proc.pid
    daemon.wait_ready()
    rss: list[int] = []  # KiB after pass n (index n-1)
    anon: list[int] = []  # RssAnon (heap, arenas, stacks: what a leak grows) after pass n
    threads: list[int] = []
    idle: list[bool] = []  # no pass was running when the sample was taken (else it holds the next one's work)
    answers: list[float] = []  # seconds for GET /metrics while passes run back to back
    seen = 0.0
    started = time.monotonic()
    while len(rss) < passes:
        asked = time.monotonic()
        text = daemon.metrics()
        answers.append(time.monotonic() - asked)
        count = metric_sum(text, "image_updater_passes_total")
        if count > seen:
            seen = count
            rss.append(status_kib(pid, "VmRSS"))
            idle.append(metric_sum(text, "image_updater_pass_in_progress") == 0)
            if trend:
                anon.append(status_kib(pid, "RssAnon"))
                threads.append(status_count(pid, "Threads"))
            if len(rss) % 10 == 0:
                print(f"  pass {len(rss):4d}: RSS {rss[-1] / 1024:6.1f} MiB", flush=True)
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    peak = status_kib(pid, "VmHWM")
    cpu = cpu_seconds(pid)
    text = daemon.metrics()
    duration_sum = metric_sum(text, "image_updater_pass_duration_seconds_sum")
    duration_count = metric_sum(text, "image_updater_pass_duration_seconds_count")
    failed = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("image_updater_passes_total{") and 'outcome="failed"' in line
    )
    code = daemon.stop()
    at10 = rss[min(9, len(rss) - 1)]
    last = rss[-1]
    load.append(os.getloadavg()[0])
    extra: dict[str, Any] = {}
    if trend:
        quiet = [(n, v) for n, (v, q) in enumerate(zip(rss, idle, strict=True), 1) if q and n >= 10]
        # the floor: the lowest RSS of each 10 passes, what stays once the passes' own work is freed
        floors = [(n + 10, min(rss[n : n + 10])) for n in range(9, len(rss) - 9, 10)]
        extra = {
            "trend": slope_report(rss, warmup=10),
            "trend_idle_samples": slope_of_points(quiet),
            "trend_floor_per_10_passes": slope_of_points(floors),
            "trend_rss_anon": slope_report(anon, warmup=10),
            "rss_at_pass_mib": at_passes(rss, (10, 100, 250, 500, len(rss))),
            "max_rss_after_warmup_mib": round(max(rss[9:]) / 1024, 1),
            "threads_min_max": [min(threads), max(threads)],
            "rss_anon_series_mib": [round(v / 1024, 2) for v in anon],
        }
    return {**extra, **{
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_1m_start_end": load,
        "passes": len(rss),
        "wall_seconds": round(elapsed, 1),
        "daemon_cpu_seconds": round(cpu, 2),  # from its start, warm-up included; git children not included
        "daemon_cpu_ms_per_pass": round(cpu / len(rss) * 1000, 1),
        "mean_pass_seconds": round(duration_sum / duration_count, 3) if duration_count else None,
        "failed_passes": failed,
        "peak_rss_mib": round(peak / 1024, 1),
        "rss_after_pass_10_mib": round(at10 / 1024, 1),
        "rss_after_last_pass_mib": round(last / 1024, 1),
        "growth_10_to_last_percent": round((last - at10) / at10 * 100, 2),
        "rss_series_mib": [round(v / 1024, 1) for v in rss],
        "metrics_answer_median_ms": round(statistics.median(answers) * 1000, 1),
        "metrics_answer_p99_ms": round(sorted(answers)[int(len(answers) * 0.99)] * 1000, 1),
        "metrics_answer_max_ms": round(max(answers) * 1000, 1),
        "exit_code": code,
    }}


def startup_phase(config: Path, port: int, log: Path, starts: int) -> dict[str, Any]:
    to_health: list[float] = []
    to_ready: list[float] = []
    rss: list[int] = []
    hwm: list[int] = []
    load = [os.getloadavg()[0]]
    for k in range(starts):
        t0 = time.monotonic()
        daemon = Daemon(config, port, log.with_name(f"{log.stem}-{k}.log"))
        healthy: float | None = None
        deadline = t0 + 600
        while time.monotonic() < deadline:
            if daemon.proc.poll() is not None:
                raise SystemExit(f"daemon exited with {daemon.proc.returncode}; see {daemon.log.name}")
            try:
                if healthy is None and daemon.client.get(daemon.url + "/healthz").status_code == 200:
                    healthy = time.monotonic() - t0
                if daemon.client.get(daemon.url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.01)
        else:
            raise SystemExit("daemon not ready in time")
        to_ready.append(time.monotonic() - t0)
        to_health.append(healthy if healthy is not None else to_ready[-1])
        rss.append(status_kib(daemon.proc.pid, "VmRSS"))
        hwm.append(status_kib(daemon.proc.pid, "VmHWM"))
        code = daemon.stop()
        print(f"  start {k + 1}: /healthz after {to_health[-1]:.2f} s, /readyz after {to_ready[-1]:.2f} s, "
              f"RSS {rss[-1] / 1024:.1f} MiB (exit {code})", flush=True)
    load.append(os.getloadavg()[0])
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_1m_start_end": load,
        "starts": starts,
        "median_seconds_to_healthz": round(statistics.median(to_health), 3),
        "median_seconds_to_readyz": round(statistics.median(to_ready), 3),
        "median_rss_at_ready_mib": round(statistics.median(rss) / 1024, 1),
        "median_peak_rss_mib": round(statistics.median(hwm) / 1024, 1),
        "seconds_to_readyz": [round(x, 3) for x in to_ready],
    }


def ref_of(bare: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "refs/heads/main"], cwd=bare, check=True, capture_output=True, text=True
    ).stdout.strip()


def latency_phase(
    config: Path, port: int, log: Path, bare: Path, registry: RegistryServer, samples: int
) -> dict[str, Any]:
    daemon = Daemon(config, port, log)
    daemon.wait_ready()
    latencies: list[float] = []
    pass_seconds: list[float] = []  # the daemon's own duration of each triggered pass
    load = [os.getloadavg()[0]]
    with ImagePusher(registry.url) as pusher:
        for k in range(samples):
            repository = f"bench/app{k:04d}"
            tag = "1.3.0"
            pusher.push(repository, tag, created=T0 + timedelta(days=10))
            body = json.dumps(
                {
                    "events": [
                        {
                            "id": f"bench-{k}",
                            "timestamp": datetime.now(UTC).isoformat(),
                            "action": "push",
                            "target": {
                                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "repository": repository,
                                "tag": tag,
                                "digest": "sha256:" + "0" * 64,
                            },
                            "request": {"host": registry.host, "method": "PUT"},
                        }
                    ]
                }
            ).encode()
            signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            before = ref_of(bare)
            text = daemon.metrics()
            sum_before = metric_sum(text, "image_updater_pass_duration_seconds_sum")
            count_before = metric_sum(text, "image_updater_pass_duration_seconds_count")
            t0 = time.monotonic()
            answer = daemon.client.post(
                daemon.url + "/webhook", content=body, headers={"X-Hub-Signature-256": signature}
            )
            assert answer.status_code == 202, answer.text
            deadline = t0 + 120
            while ref_of(bare) == before:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no commit within 120 s after webhook {k}")
                time.sleep(0.01)
            latencies.append(time.monotonic() - t0)
            while (
                metric_sum(text := daemon.metrics(), "image_updater_pass_duration_seconds_count")
                == count_before
            ):
                time.sleep(0.01)
            pass_seconds.append(metric_sum(text, "image_updater_pass_duration_seconds_sum") - sum_before)
            print(
                f"  webhook {k + 1:3d}: commit after {latencies[-1]:.2f} s (pass {pass_seconds[-1]:.2f} s)",
                flush=True,
            )
            time.sleep(5.5)  # beyond the per-source webhook rate limit, so each sample starts at once
    load.append(os.getloadavg()[0])
    code = daemon.stop()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_1m_start_end": load,
        "samples": len(latencies),
        "median_pass_seconds": round(statistics.median(pass_seconds), 3),
        "median_seconds": round(statistics.median(latencies), 3),
        "min_seconds": round(min(latencies), 3),
        "max_seconds": round(max(latencies), 3),
        "latencies": [round(x, 3) for x in latencies],
        "exit_code": code,
    }


def setup(work: Path, images: int, nfiles: int) -> tuple[Path, RegistryServer, Path]:
    """Seed the registry storage (tmpfs when there is one), start the registry, make the bare repository."""
    storage = Path("/dev/shm") / f"bench-daemon-{os.getpid()}" if Path("/dev/shm").is_dir() else work / "st"
    t = time.monotonic()
    seed_storage(
        storage,
        {
            f"bench/app{i:04d}": {
                "1.0.0": T0, "1.1.0": T0 + timedelta(days=1), "1.2.0": T0 + timedelta(days=2)
            }
            for i in range(images)
        },
    )
    registry = RegistryServer(storage_dir=storage, work_dir=work / "registry", log_level="warn").start()
    try:
        files = repo_files(registry.host, images, nfiles)
        bare = make_bare_repo(work / "repo.git", files)
    except BaseException:
        registry.stop()
        subprocess.run(["rm", "-rf", str(storage)], check=False)
        raise
    print(f"set-up: {images} images x 3 tags, {len(files)} files in {time.monotonic() - t:.1f} s", flush=True)
    return storage, registry, bare


ALLOC_FIGURES = {
    "glibc_in_use": ("uordblks",),  # bytes in use in glibc's heaps (mmapped blocks not included)
    "glibc_free": ("fordblks",),  # free bytes inside the heaps (what stays resident between live blocks)
    "glibc_heap": ("arena",),  # the main arena's sbrk'd bytes
    "glibc_mmapped": ("hblkhd",),
    "sqlite": ("sqlite_used",),
}


def alloc_series(path: Path) -> dict[str, Any]:
    """bench/rss_child.py's per-pass allocator figures (BENCH_ALLOC_SERIES): each one's slope after warm-up,
    by the same statistics as RSS, and the values after passes 10, 100, 250, 500 and the last."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    trends: dict[str, Any] = {}
    at: dict[str, Any] = {}
    for label, (key,) in ALLOC_FIGURES.items():
        if not rows or key not in rows[0]:
            continue
        kib = [row[key] // 1024 for row in rows]
        trends[label] = slope_report(kib, warmup=10)
        at[label] = at_passes(kib, (10, 100, 250, 500, len(kib)))
    blocks = [row["blocks"] for row in rows]
    return {
        "passes": len(rows), "trends": trends, "at_pass_mib": at,
        "allocated_blocks_at_pass": {str(p): blocks[p - 1] for p in (10, 100, 250, 500, len(blocks))
                                     if 0 < p <= len(blocks)},
        "series_kib": {label: [row[key] // 1024 for row in rows] for label, (key,) in ALLOC_FIGURES.items()
                       if rows and key in rows[0]},
    }


def rss_main(args: argparse.Namespace) -> int:
    """Issue 16: the RSS trend over many back-to-back passes (interval 1 s), or the tracemalloc debug run."""
    debug = [int(x) for x in args.tracemalloc.split(",") if x.strip()]
    if debug and (len(debug) < 2 or debug != sorted(set(debug)) or max(debug) > args.passes):
        raise SystemExit("--tracemalloc takes two or more increasing pass numbers, all <= --passes")
    name = "daemon-rss-tracemalloc.json" if debug else "daemon-rss.json"
    if args.malloc_arena_max and not debug:  # a comparison: the plain run keeps its own file
        name = f"daemon-rss-arena-max-{args.malloc_arena_max}.json"
    if args.no_release and not debug:
        name = name.replace(".json", "-no-release.json")
    if args.out:  # a comparison run that must not overwrite a recorded one
        name = args.out
    out = ROOT / "bench" / "results" / name
    extra_env = dict(pair.split("=", 1) for pair in args.env)
    with tempfile.TemporaryDirectory(prefix="bench-daemon-rss-") as tmp:
        work = Path(tmp)
        storage, registry, bare = setup(work, args.images, args.files)
        try:
            config = work / "config.yaml"
            port = free_port()
            write_config(
                config, cache=work / "cache", bare=bare, host=registry.host, port=port, interval="1s"
            )
            env: dict[str, str] = {}
            entry: tuple[str, ...] = ("-m", "image_updater")
            if args.malloc_arena_max:
                env["MALLOC_ARENA_MAX"] = str(args.malloc_arena_max)
            env |= extra_env
            if args.no_release:  # the daemon as before issue 16's fix, for comparison
                entry = (str(ROOT / "bench" / "rss_child.py"),)
                env |= {"BENCH_TRACEMALLOC_FRAMES": "0", "BENCH_TRACEMALLOC_AT": "", "BENCH_NO_RELEASE": "1",
                        "BENCH_TRACEMALLOC_DIR": str(work / "snaps")}
            if args.no_tune or args.alloc_series:  # through the wrapper: a comparison, or the figures
                entry = (str(ROOT / "bench" / "rss_child.py"),)
                env |= {"BENCH_TRACEMALLOC_FRAMES": "0", "BENCH_TRACEMALLOC_DIR": str(work / "snaps")}
                if args.no_tune:
                    env["BENCH_NO_TUNE"] = "1"
                if args.alloc_series:
                    env["BENCH_ALLOC_SERIES"] = str(work / "alloc.jsonl")
            if debug:
                entry = (str(ROOT / "bench" / "rss_child.py"),)
                env["BENCH_TRACEMALLOC_FRAMES"] = str(args.tracemalloc_frames)
                env["BENCH_TRACEMALLOC_AT"] = args.tracemalloc
                env["BENCH_TRACEMALLOC_DIR"] = str(work / "snaps")
            under = " under tracemalloc" if debug else ""
            print(f"rss: {args.passes} passes, interval 1s{under}", flush=True)
            memory = memory_phase(
                config, port, work / "daemon-rss.log", args.passes, entry=entry, env=env, trend=True
            )
            if debug:
                memory["tracemalloc_diff"] = snapshot_diff(work / "snaps", debug)
            if args.alloc_series:
                memory["allocator"] = alloc_series(work / "alloc.jsonl")
        finally:
            registry.stop()
            subprocess.run(["rm", "-rf", str(storage)], check=False)
    result = {
        "benchmark": "daemon-rss",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "images": args.images,
        "files": args.files,
        "malloc_arena_max": args.malloc_arena_max or None,
        "release_after_pass": not args.no_release,
        "tune_allocator": not args.no_tune,
        "env": extra_env or None,
        "command": " ".join(["bench/daemon.py", *sys.argv[1:]]),
        "memory": memory,
    }
    trend = memory["trend"]
    print(f"\npasses {memory['passes']} (mean {memory['mean_pass_seconds']} s, daemon CPU "
          f"{memory['daemon_cpu_ms_per_pass']} ms a pass), failed {memory['failed_passes']}")
    print(f"RSS after passes {memory['rss_at_pass_mib']} MiB; max after warm-up "
          f"{memory['max_rss_after_warmup_mib']} MiB; peak (VmHWM) {memory['peak_rss_mib']} MiB")
    for label, t in (("RSS", trend), ("RssAnon", memory["trend_rss_anon"]),
                     ("RSS, idle samples", memory["trend_idle_samples"]),
                     ("RSS floor per 10 passes", memory["trend_floor_per_10_passes"])):
        if "slope_kib_per_pass" not in t:
            continue  # too few points
        print(f"{label} slope passes 10..{memory['passes']}: {t['slope_kib_per_pass']} KiB/pass "
              f"({t['slope_percent_per_100_passes']} % of the mean per 100 passes), 95 % CI "
              f"{t['ci95_kib_per_pass']} KiB/pass (lag-1 r {t['residual_lag1_autocorrelation']}); "
              f"no upward trend: {t['no_upward_trend']}")
    for label, t in memory.get("allocator", {}).get("trends", {}).items():
        if "slope_kib_per_pass" in t:
            print(f"{label} slope: {t['slope_kib_per_pass']} KiB/pass, 95 % CI {t['ci95_kib_per_pass']} "
                  f"(mean {t['mean_rss_mib']} MiB)")
    if debug:
        for row in memory["tracemalloc_diff"][:12]:
            print(" ", row)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--passes", type=int, default=100)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument(
        "--only",
        choices=["memory", "latency", "startup", "rss"],
        help="run one phase; the other keeps its figures from the existing results file",
    )
    parser.add_argument(
        "--tracemalloc", metavar="A,B[,...]", default="",
        help="with --only rss: a debug run under tracemalloc (bench/rss_child.py); snapshots after the first "
        "and last pass given are diffed into bench/results/daemon-rss-tracemalloc.json (its RSS is not the "
        "measure)",
    )
    parser.add_argument(
        "--tracemalloc-frames", type=int, default=1,
        help="frames per traceback in the debug run (each one slows it further); 0: count objects only",
    )
    parser.add_argument(
        "--no-release", action="store_true",
        help="with --only rss: the daemon without its after-pass release of free memory (bench/rss_child.py)",
    )
    parser.add_argument(
        "--malloc-arena-max", type=int, default=0, help="with --only rss: MALLOC_ARENA_MAX for the daemon"
    )
    parser.add_argument(
        "--no-tune", action="store_true",
        help="with --only rss: the daemon without its start-up allocator tuning (bench/rss_child.py)",
    )
    parser.add_argument(
        "--alloc-series", action="store_true",
        help="with --only rss: record glibc's and sqlite's figures after every pass (bench/rss_child.py)",
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE",
        help="with --only rss: an environment variable for the daemon (repeatable; e.g. GLIBC_TUNABLES)",
    )
    parser.add_argument(
        "--out", default="", metavar="NAME", help="with --only rss: the results file in bench/results/"
    )
    args = parser.parse_args()
    if any("=" not in pair for pair in args.env):
        parser.error("--env takes KEY=VALUE")
    out = ROOT / "bench" / "results" / "daemon.json"
    previous = json.loads(out.read_text()) if args.only and out.exists() else {}
    memory: dict[str, Any] = previous.get("memory", {})
    latency: dict[str, Any] = previous.get("latency", {})
    startup: dict[str, Any] = previous.get("startup", {})

    if args.only == "rss":
        return rss_main(args)
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        work = Path(tmp)
        storage = (
            Path("/dev/shm") / f"bench-daemon-{os.getpid()}" if Path("/dev/shm").is_dir() else work / "st"
        )
        t = time.monotonic()
        seed_storage(
            storage,
            {
                f"bench/app{i:04d}": {
                    "1.0.0": T0,
                    "1.1.0": T0 + timedelta(days=1),
                    "1.2.0": T0 + timedelta(days=2),
                }
                for i in range(args.images)
            },
        )
        registry = RegistryServer(storage_dir=storage, work_dir=work / "registry", log_level="warn").start()
        try:
            files = repo_files(registry.host, args.images, args.files)
            bare = make_bare_repo(work / "repo.git", files)
            print(
                f"set-up: {args.images} images x 3 tags, {len(files)} files in {time.monotonic() - t:.1f} s",
                flush=True,
            )
            cache = work / "cache"
            config = work / "config.yaml"
            port = free_port()
            write_config(config, cache=cache, bare=bare, host=registry.host, port=port, interval="1s")
            if args.only in (None, "startup"):
                write_config(config, cache=cache, bare=bare, host=registry.host, port=port, interval="1h")
                print(f"startup: {args.starts} daemons, interval 1h", flush=True)
                startup = startup_phase(config, port, work / "daemon-startup.log", args.starts)
            if args.only in (None, "memory"):
                write_config(config, cache=cache, bare=bare, host=registry.host, port=port, interval="1s")
                print(f"memory: {args.passes} passes, interval 1s", flush=True)
                memory = memory_phase(config, port, work / "daemon-memory.log", args.passes)
            write_config(config, cache=cache, bare=bare, host=registry.host, port=port, interval="1h")
            if args.only in (None, "latency"):
                print(f"latency: {args.samples} webhooks, interval 1h", flush=True)
                latency = latency_phase(
                    config, port, work / "daemon-latency.log", bare, registry, args.samples
                )
        finally:
            registry.stop()
            subprocess.run(["rm", "-rf", str(storage)], check=False)

    result = {
        "benchmark": "daemon",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "images": args.images,
        "files": args.files,
        "memory": memory,
        "latency": latency,
        "startup": startup,
    }
    if args.only == "startup":
        out = out.with_name("daemon-startup.json")  # a small set-up: not comparable with the full run
    print()
    if startup:
        print(
            f"start-up, median of {startup['starts']}: /healthz {startup['median_seconds_to_healthz']} s, "
            f"/readyz {startup['median_seconds_to_readyz']} s, RSS {startup['median_rss_at_ready_mib']} MiB, "
            f"peak {startup['median_peak_rss_mib']} MiB"
        )
    if args.only == "startup":
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written: {out}")
        return 0
    print(f"{'measure':44} {'value':>10}  target")
    rows = [
        ("passes (mean pass duration, s)", f"{memory['passes']} ({memory['mean_pass_seconds']})", ""),
        ("peak RSS (MiB)", memory["peak_rss_mib"], "<= 150"),
        ("RSS after pass 10 (MiB)", memory["rss_after_pass_10_mib"], ""),
        (f"RSS after pass {memory['passes']} (MiB)", memory["rss_after_last_pass_mib"], ""),
        ("growth pass 10 -> last (%)", memory["growth_10_to_last_percent"], "<= 5"),
        (f"webhook -> commit, median of {latency['samples']} (s)", latency["median_seconds"], "<= 2"),
        ("  of which the triggered pass, median (s)", latency.get("median_pass_seconds"), ""),
        ("webhook -> commit, min / max (s)", f"{latency['min_seconds']} / {latency['max_seconds']}", ""),
        (
            "GET /metrics during passes: median / p99 / max (ms)",
            f"{memory['metrics_answer_median_ms']} / {memory['metrics_answer_p99_ms']} / "
            f"{memory['metrics_answer_max_ms']}",
            "",
        ),
        ("exit codes after SIGTERM", f"{memory['exit_code']}, {latency['exit_code']}", "0"),
    ]
    for name, value, target in rows:
        print(f"{name:44} {value!s:>10}  {target}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
