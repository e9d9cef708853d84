"""Status page benchmark (issue "See what it does"): ``GET /api/v1/status`` and ``GET /`` with 1,000 images.

A board holds one pass of a source whose 1,000 Deployments each track their own image (10 verdicts kept per
image, as the resolve step keeps them). The daemon's real ``HttpServer`` (uvicorn) serves it on a free
127.0.0.1 port in this process, with the status page handler the daemon installs; an httpx client asks each
endpoint REQUESTS times after one warm-up request. Prints the median and p90 latency and the answer size, and
writes ``bench/results/status.json``. Target: median <= 50 ms for both.

    .venv/bin/python bench/status.py [--images 1000] [--requests 30]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/select.py is named like the standard library's select module, which asyncio imports: keep this
# directory off the import path before anything else is imported, and the project root on it
ROOT = Path(__file__).resolve().parents[1]
if str(Path(__file__).resolve().parent) in sys.path:
    sys.path.remove(str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

from image_updater.discover import discover_files  # noqa: E402
from image_updater.httpserver import HttpServer  # noqa: E402
from image_updater.metrics import Metrics  # noqa: E402
from image_updater.plan import Candidate, Resolution, Result, build_plan  # noqa: E402
from image_updater.status import SourceInfo, StatusBoard, make_page_handler  # noqa: E402

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app{i}
  annotations:
    image-updater.io/policy: "semver:~1.2"
spec:
  template:
    spec:
      containers:
      - name: app
        image: registry.example/team/app{i}:1.2.0
"""


@dataclass(frozen=True)
class Outcome:
    source: str
    result: Result
    commit: str | None = "0123456789abcdef0123456789abcdef01234567"
    pushed: bool = True
    error: str | None = None
    duration: float = 12.5
    images: frozenset[str] = frozenset()


class _Backend:
    def alive(self) -> bool:
        return True

    def ready(self) -> bool:
        return True

    def sources_for(self, events: Any) -> list[str]:
        return []

    def trigger(self, sources: Any, *, reason: str = "webhook", events: Any = ()) -> list[str]:
        return []


def board(images: int) -> StatusBoard:
    files = {f"apps/app{i}/deployment.yaml": DEPLOYMENT.format(i=i) for i in range(images)}
    discovery = discover_files(files)
    candidates = tuple(
        [Candidate("1.2.9", "chosen", "highest version satisfying ~1.2")]
        + [Candidate(f"1.2.{n}", "lower", f"1.2.{n} < 1.2.9") for n in range(8, 0, -1)]
        + [Candidate("2.0.0", "filtered", "does not satisfy ~1.2")]
    )
    answer = Resolution(tag="1.2.9", candidates=candidates, considered=40)
    result = build_plan(discovery, {key: answer for key in discovery.resolve_keys})
    status = StatusBoard([SourceInfo("apps", "https://git.example/acme/apps.git", "main")])
    status.record(Outcome("apps", result), datetime.now(UTC))
    return status


async def measure(images: int, requests: int) -> dict[str, Any]:
    server = HttpServer(_Backend(), metrics=Metrics(), listen="127.0.0.1:0",
                        pages=make_page_handler(board(images), None))
    await server.start()
    host, port = server.address
    out: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as client:
            for path in ("/api/v1/status", "/"):
                first = await client.get(path)
                assert first.status_code == 200, (path, first.status_code)
                times: list[float] = []
                for _ in range(requests):
                    started = time.perf_counter()
                    answer = await client.get(path)
                    times.append(time.perf_counter() - started)
                    assert answer.status_code == 200
                times.sort()
                out[path] = {
                    "median_ms": round(statistics.median(times) * 1000, 1),
                    "p90_ms": round(times[int(0.9 * (len(times) - 1))] * 1000, 1),
                    "bytes": len(answer.content),
                }
    finally:
        await server.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "status.json")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0]
    results = asyncio.run(measure(args.images, args.requests))
    header = f"{'endpoint':<16} {'median':>9} {'p90':>9} {'bytes':>10}"
    print(header, f"({args.images} images, load {load:.1f})")
    for path, figures in results.items():
        print(f"{path:<16} {figures['median_ms']:>7.1f}ms {figures['p90_ms']:>7.1f}ms {figures['bytes']:>10}")
    payload = {"images": args.images, "requests": args.requests, "load_before": load,
               "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "results": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
