"""Benchmark: many sources in one replica vs the same sources sharded over 3 replicas.

Set-up: a real distribution registry whose storage is seeded on disk with ``--registry-repos`` repositories
(three tags each), ``--sources`` bare git repositories each holding ``--images-per-source`` Deployments (so
``sources x images-per-source`` image references, every registry repository used by several sources), and
the daemon as child processes (``python -m image_updater run``), exactly as users run it.

Two runs on fresh cache directories, interval 1 h (only the start-up passes run):

- ``one``: one daemon holding every source;
- ``sharded``: three daemons (``sharding.replicas: 3``, ordinals 0..2) on loopback, started together.

Measured per run: wall time from process start until every source's start-up pass finished (all replicas),
registry requests (the daemons' ``image_updater_registry_requests_total``) per distinct image and per image
reference, peak RSS (VmHWM) per replica, git time (the passes' summed duration, which is dominated by clone,
commit and push), and the commits pushed. Targets (issue 14): requests per image per pass = 1; RSS <= 250 MB
for one replica holding everything; 3 shards together no slower than one.

Usage: .venv/bin/python bench/scale.py [--sources 500] [--images-per-source 10] [--registry-repos 1000]
Prints a table and writes bench/results/scale.json.
"""

# ruff: noqa: E402 (the imports below must follow the sys.path fix)
from __future__ import annotations

import os
import sys

sys.path[:] = [
    p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))
]

import argparse
import json
import platform
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from image_updater.sharding import owner
from tests.servers import RegistryServer
from tests.servers.push import seed_storage

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SECRET = "bench-" + os.urandom(16).hex()
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app{j}
  annotations:
    image-updater.io/policy.app: "semver:^1.0"
spec:
  template:
    spec:
      containers:
        - name: app
          image: {host}/bench/app{r:05d}:1.0.0
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_repos(base: Path, host: str, sources: int, per_source: int, registry_repos: int) -> dict[str, Path]:
    """``sources`` bare repositories, one commit each, written with git fast-import (one process per repo)."""
    repos = {}
    for s in range(sources):
        bare = base / f"src-{s:04d}.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
        stream = [
            "commit refs/heads/main", "committer Seed <seed@example.com> 1700000000 +0000", "data 14",
            "Initial commit",
        ]
        for j in range(per_source):
            body = DEPLOYMENT.format(j=j, host=host, r=(s * per_source + j) % registry_repos).encode()
            stream += [f"M 100644 inline apps/app{j}.yaml", f"data {len(body)}", body.decode()]
        data = ("\n".join(stream) + "\n").encode()
        subprocess.run(["git", "fast-import", "--quiet"], cwd=bare, input=data, check=True)
        repos[f"src-{s:04d}"] = bare
    return repos


def write_config(path: Path, *, cache: Path, repos: dict[str, Path], host: str, port: int,
                 sharding: str = "") -> None:
    sources = "".join(f"  - name: {n}\n    url: {p}\n    branch: main\n" for n, p in repos.items())
    path.write_text(
        f"interval: 1h\ncache_dir: {cache}\nsources:\n{sources}"
        f"commit:\n  author_name: Bench Bot\n  author_email: bench@example.com\n"
        f"registries:\n  - prefix: {host}\n    insecure: true\n    max_concurrency: 16\n"
        f"http:\n  listen: 127.0.0.1:{port}\n  webhook_secret_env: WEBHOOK_SECRET\n"
        f"concurrency:\n  passes: 4\nlog:\n  level: warning\n{sharding}"
    )


def vmhwm_kib(pid: int) -> int:
    match = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
            out.append((labels, float(line.rsplit(" ", 1)[1])))
    return out


def run(work: Path, label: str, repos: dict[str, Path], host: str, replicas: int) -> dict[str, Any]:
    ports = [free_port() for _ in range(replicas)]
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    started = time.monotonic()
    for k in range(replicas):
        sharding = f"sharding:\n  replicas: {replicas}\n  ordinal: {k}\n" if replicas > 1 else ""
        config = work / f"{label}-{k}.yaml"
        write_config(config, cache=work / f"cache-{label}-{k}", repos=repos, host=host, port=ports[k],
                     sharding=sharding)
        log = (work / f"{label}-{k}.log").open("w")
        logs.append(log)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "image_updater", "run", "-c", str(config)], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "WEBHOOK_SECRET": SECRET},
        ))
    owned = [[n for n in repos if replicas == 1 or owner(n, replicas) == k] for k in range(replicas)]
    client = httpx.Client(timeout=120)
    texts = [""] * replicas
    done = [False] * replicas
    finished_at = [0.0] * replicas
    try:
        deadline = time.monotonic() + 3600
        while not all(done):
            if time.monotonic() > deadline:
                raise SystemExit(f"{label}: start-up passes not finished within an hour")
            for k in range(replicas):
                if done[k]:
                    continue
                if procs[k].poll() is not None:
                    raise SystemExit(f"{label}: replica {k} exited; see {logs[k].name}")
                try:
                    texts[k] = client.get(f"http://127.0.0.1:{ports[k]}/metrics").text
                except httpx.TransportError:
                    continue
                finished = sum(v for _, v in samples(texts[k], "image_updater_passes_total"))
                if finished >= len(owned[k]):
                    done[k] = True
                    finished_at[k] = time.monotonic() - started
            time.sleep(0.5)
        wall = time.monotonic() - started
        rss = [vmhwm_kib(p.pid) / 1024 for p in procs]
    finally:
        client.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p, log in zip(procs, logs, strict=True):
            p.wait(timeout=120)
            log.close()
    requests = sum(v for t in texts for _, v in samples(t, "image_updater_registry_requests_total"))
    git_s = sum(v for t in texts for _, v in samples(t, "image_updater_pass_duration_seconds_sum"))
    committed = sum(v for t in texts for _, v in samples(t, "image_updater_updates_committed_total"))
    outcomes: dict[str, float] = {}
    for t in texts:
        for labels, v in samples(t, "image_updater_passes_total"):
            outcomes[labels["outcome"]] = outcomes.get(labels["outcome"], 0) + v
    return {
        "replicas": replicas, "wall_s": round(wall, 1), "replica_done_s": [round(x, 1) for x in finished_at],
        "sources_per_replica": [len(o) for o in owned], "registry_requests": int(requests),
        "peak_rss_mib": [round(r, 1) for r in rss], "pass_time_sum_s": round(git_s, 1),
        "updates_committed": int(committed), "pass_outcomes": outcomes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", type=int, default=500)
    parser.add_argument("--images-per-source", type=int, default=10)
    parser.add_argument("--registry-repos", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        work = Path(tmp)
        shm = Path("/dev/shm")
        storage = shm / f"bench-scale-{os.getpid()}" if shm.is_dir() else work / "st"
        t = time.monotonic()
        tags = {"1.0.0": T0, "1.1.0": T0 + timedelta(days=1), "2.0.0": T0 + timedelta(days=2)}
        seed_storage(storage, {f"bench/app{r:05d}": tags for r in range(args.registry_repos)})
        seeded = time.monotonic() - t
        registry = RegistryServer(storage_dir=storage, work_dir=work / "registry", log_level="warn").start()
        try:
            t = time.monotonic()
            bare_base = work / "bare"
            bare_base.mkdir()
            repos_by_run = {}
            for label in ("one", "sharded"):  # each run pushes to its own copies
                (bare_base / label).mkdir()
                repos_by_run[label] = make_repos(bare_base / label, registry.host, args.sources,
                                                 args.images_per_source, args.registry_repos)
            repos_one, repos_sharded = repos_by_run["one"], repos_by_run["sharded"]
            made = time.monotonic() - t
            refs = args.sources * args.images_per_source
            distinct = min(args.registry_repos, refs)
            print(f"set-up: registry {distinct} repos x 3 tags seeded in {seeded:.1f}s; "
                  f"2 x {args.sources} bare repos ({refs} image references) in {made:.1f}s", flush=True)
            results = {}
            for label, repos, replicas in (("one", repos_one, 1), ("sharded", repos_sharded, 3)):
                print(f"{label}: {replicas} replica(s) ...", flush=True)
                r = run(work, label, repos, registry.host, replicas)
                r["requests_per_image"] = round(r["registry_requests"] / distinct, 3)
                # each replica asks about the images of its own sources: per replica, per image it tracks
                per = args.images_per_source
                tracked = [
                    len({(int(n[4:]) * per + j) % args.registry_repos for n in repos
                         if replicas == 1 or owner(n, replicas) == k for j in range(per)})
                    for k in range(replicas)
                ]
                r["images_per_replica"] = tracked
                r["requests_per_tracked_image"] = round(r["registry_requests"] / sum(tracked), 3)
                r["requests_per_reference"] = round(r["registry_requests"] / refs, 3)
                results[label] = r
        finally:
            registry.stop()
            shutil.rmtree(storage, ignore_errors=True)

    print(f"\n{'':22}{'one replica':>16}{'3 shards':>16}")
    rows = [
        ("wall time, s", "wall_s"), ("registry requests", "registry_requests"),
        ("requests / image", "requests_per_image"), ("requests / reference", "requests_per_reference"),
        ("req / replica's image", "requests_per_tracked_image"), ("images / replica", "images_per_replica"),
        ("peak RSS, MiB", "peak_rss_mib"), ("pass time summed, s", "pass_time_sum_s"),
        ("updates committed", "updates_committed"), ("sources / replica", "sources_per_replica"),
    ]
    for title, key in rows:
        a, b = results["one"][key], results["sharded"][key]
        print(f"{title:22}{json.dumps(a):>16}{json.dumps(b):>16}")
    out = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.platform(),
        "cpus": os.cpu_count(), "load_at_end": os.getloadavg()[0], "sources": args.sources,
        "images_per_source": args.images_per_source, "registry_repos": distinct,
        "image_references": refs, "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
