"""The CPU of one tag list per HTTP layer, against the real registry (issue 16: why the registry client
speaks HTTP/1.1 itself, on h11; docs/design-notes.md).

The same 1,000 ``tags/list`` requests at concurrency 8 against the seeded ``docker-registry`` of
``bench/scan.py`` (its storage under ``bench/.data``; seeded by it when missing), each layer in its own
process, RUNS rounds in rotating order; the CPU of the timed region (user + system) per layer:

- ``httpx-client``: ``httpx.AsyncClient.get`` + ``json`` (the baseline of ``bench/scan.py``);
- ``httpx-transport``: an ``httpx.Request`` sent through ``httpx.AsyncHTTPTransport`` directly;
- ``httpcore``: an ``httpcore.Request`` through ``httpcore.AsyncConnectionPool``;
- ``list_tags``: ``RegistryClient.list_tags`` (throttle, deadline, auth flow, redirects, capped body, the
  tag-list parse; in-memory cache) on the client's own pool (``registry/http11.py``).

Prints medians and ratios to the first; writes ``bench/results/http_layers.json``.

    .venv/bin/python bench/http_layers.py [--repos 1000] [--runs 7]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "http_layers.json"
DATA = ROOT / "bench" / ".data"
LAYERS = ("httpx-client", "httpx-transport", "httpcore", "list_tags")
CONCURRENCY = 8


def name(index: int) -> str:
    return f"bench/app-{index:04d}"


async def child(layer: str, host: str, repos: int) -> float:
    semaphore = asyncio.Semaphore(CONCURRENCY)
    names = [name(i) for i in range(repos)]
    if layer == "httpx-client":
        import httpx

        async with httpx.AsyncClient(timeout=30.0) as client:
            async def one(repo: str) -> None:
                async with semaphore:
                    response = await client.get(f"http://{host}/v2/{repo}/tags/list?n=1000")
                response.json()["tags"]

            cpu = time.process_time()
            await asyncio.gather(*(one(repo) for repo in names))
            return time.process_time() - cpu
    if layer == "httpx-transport":
        import httpx

        async with httpx.AsyncHTTPTransport() as transport:
            async def one(repo: str) -> None:
                async with semaphore:
                    request = httpx.Request("GET", f"http://{host}/v2/{repo}/tags/list?n=1000",
                                            headers={"User-Agent": "bench"})
                    response = await transport.handle_async_request(request)
                    body = await response.aread()
                    await response.aclose()
                json.loads(body)["tags"]

            cpu = time.process_time()
            await asyncio.gather(*(one(repo) for repo in names))
            return time.process_time() - cpu
    if layer == "httpcore":
        import httpcore

        address, _, port = host.rpartition(":")
        async with httpcore.AsyncConnectionPool(max_connections=None, max_keepalive_connections=100) as pool:
            async def one(repo: str) -> None:
                async with semaphore:
                    url = httpcore.URL(scheme=b"http", host=address.encode(), port=int(port),
                                       target=f"/v2/{repo}/tags/list?n=1000".encode())
                    response = await pool.request(
                        "GET", url, headers=[(b"Host", host.encode()), (b"User-Agent", b"bench")]
                    )
                json.loads(response.content)["tags"]

            cpu = time.process_time()
            await asyncio.gather(*(one(repo) for repo in names))
            return time.process_time() - cpu
    from image_updater.registry import RegistryClient, RegistryOptions

    options = [RegistryOptions(prefix=host, insecure=True, max_concurrency=CONCURRENCY)]
    async with RegistryClient(options, docker_config=DATA / "no-docker-config.json") as registry:
        cpu = time.process_time()
        await asyncio.gather(*(registry.list_tags(f"{host}/{repo}") for repo in names))
        return time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--child", choices=LAYERS)
    parser.add_argument("--host")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.child, args.host, args.repos))))
        return

    import importlib.util

    from tests.servers import RegistryServer

    # bench/scan.py's seeding (the same storage, shared): loaded by path, bench/ is not a package
    spec = importlib.util.spec_from_file_location("bench_scan", ROOT / "bench" / "scan.py")
    assert spec is not None and spec.loader is not None
    scan = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scan)
    storage = scan.seed(args.repos, 100)
    cpus: dict[str, list[float]] = {layer: [] for layer in LAYERS}
    with RegistryServer(work_dir=DATA / "run-http-layers", storage_dir=storage, log_level="warn") as server:
        for run in range(args.runs + 1):  # round 0 warms the registry and the page cache; not counted
            order = LAYERS[run % len(LAYERS):] + LAYERS[: run % len(LAYERS)]
            for layer in order:
                done = subprocess.run(
                    [sys.executable, __file__, "--child", layer, "--host", server.host, "--repos",
                     str(args.repos)], capture_output=True, text=True, check=True, cwd=ROOT,
                )
                if run:
                    cpus[layer].append(float(done.stdout))
    first = statistics.median(cpus[LAYERS[0]])
    rows = {
        layer: {"cpu_median_s": round(statistics.median(v), 3),
                "ratio": round(statistics.median(v) / first, 3), "cpus_s": [round(x, 3) for x in v]}
        for layer, v in cpus.items()
    }
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "load": list(os.getloadavg()),
              "repos": args.repos, "runs": args.runs, "layers": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    for layer, row in rows.items():
        per = row["cpu_median_s"] / args.repos * 1e6
        print(f"{layer:16s} CPU {row['cpu_median_s']:.3f} s  {per:6.0f} us/request  {row['ratio']:.2f}x")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
