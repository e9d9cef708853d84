"""Pull-request mode benchmark (issue 11): 200 images in one source, ``group_by: image``.

A real distribution registry (127.0.0.1) holds 200 images ``bench/app-<i>`` with tags 1.0.0 and 1.1.0; a local
bare repository holds 200 Deployments, each on 1.0.0 of its own image, with an ``update`` hook that logs every
ref update. Three passes (``writeback.run_source`` with ``pull_request: {group_by: image}``):

1. opens 200 pull requests: 200 update branches pushed, 200 pull requests created;
2. nothing changed: the target is at most one listing request per source, zero forge writes, zero pushes;
3. one image gets 1.2.0: one push, one pull request updated in place.

The forge is the fake GitHub of ``tests/servers/forge.py`` on 127.0.0.1 (page size 100, as GitHub's
largest), spoken to by the pass's own ``image_updater.forges`` client over HTTP; its request log gives the
listing and write counts.

Prints a table, writes ``bench/results/pull_requests.json``.

    .venv/bin/python bench/pull_requests.py [--images 200]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/select.py would shadow the standard library's select module (which subprocess needs)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from image_updater.settings import load_settings  # noqa: E402
from image_updater.writeback import make_client, run_source  # noqa: E402
from tests.pr_support import ENVIRON, FORGE_TOKEN, install_update_hook, ref_updates  # noqa: E402
from tests.servers.forge import FakeForge  # noqa: E402
from tests.servers.gitserver import make_bare_repo  # noqa: E402
from tests.servers.push import ImagePusher  # noqa: E402
from tests.servers.registry_server import RegistryServer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "pull_requests.json"
T0 = datetime(2025, 1, 1, tzinfo=UTC)

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  annotations:
    image-updater.io/policy: "semver:^1.0"
spec:
  template:
    spec:
      containers:
        - name: app
          image: {host}/bench/app-{i}:1.0.0
"""


def one_pass(config: Path, forge: FakeForge, bare: Path) -> dict[str, Any]:
    settings = load_settings(config, env={})
    seen = len(forge.log)
    pushes = len(ref_updates(bare))

    async def go() -> Any:
        async with make_client(settings) as client:
            return await run_source(settings, settings.sources[0], client=client, environ=dict(ENVIRON))

    started = time.perf_counter()
    outcome = asyncio.run(go())
    total = time.perf_counter() - started
    if not outcome.ok:
        raise SystemExit(f"pass failed: {outcome.error} {outcome.result.errors[:3]}")
    actions: dict[str, int] = {}
    for link in outcome.pull_requests:
        actions[link.action] = actions.get(link.action, 0) + 1
    return {
        "total_s": round(total, 3), "forge_requests": len(forge.log) - seen,
        "forge_listings": sum(1 for e in forge.log[seen:] if e.method == "GET" and e.path.endswith("/pulls")),
        "forge_writes": sum(1 for e in forge.log[seen:] if e.write),
        "pushes": len(ref_updates(bare)) - pushes, "actions": actions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-prs-") as tmp, RegistryServer() as registry, \
            FakeForge(token=FORGE_TOKEN, page_size=100) as forge:
        forge.add_repo("github", "acme/gitops")
        work = Path(tmp)
        with ImagePusher(registry.url) as pusher:
            for i in range(args.images):
                pusher.push(f"bench/app-{i}", "1.0.0", created=T0)
                pusher.push(f"bench/app-{i}", "1.1.0", created=T0 + timedelta(days=1))
            files = {f"apps/app-{i}/deployment.yaml": DEPLOYMENT.format(i=i, host=registry.host)
                     for i in range(args.images)}
            bare = make_bare_repo(work / "repo.git", files)
            install_update_hook(bare)
            config = work / "config.yaml"
            config.write_text(
                f"cache_dir: {work / 'cache'}\n"
                f"sources: [{{name: bench, url: '{bare}', pull_request: "
                f"{{provider: github, api_url: '{forge.api_url('github')}', repository: acme/gitops, "
                "token_env: FORGE_TOKEN, group_by: image}}]\n"
                f"registries: [{{prefix: '{registry.host}', insecure: true}}]\n"
            )
            opening = one_pass(config, forge, bare)
            idle = one_pass(config, forge, bare)
            pusher.push("bench/app-0", "1.2.0", created=T0 + timedelta(days=2))
            newer = one_pass(config, forge, bare)
    rows = {"opens all pull requests": opening, "nothing changed": idle, "one newer tag": newer}
    print(f"{args.images} images, one source, group_by: image")
    print(f"{'pass':<26}{'wall s':>8}{'forge req':>11}{'listings':>10}{'writes':>8}{'pushes':>8}  actions")
    for name, row in rows.items():
        print(f"{name:<26}{row['total_s']:>8.2f}{row['forge_requests']:>11}{row['forge_listings']:>10}"
              f"{row['forge_writes']:>8}{row['pushes']:>8}  {row['actions']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "images": args.images, "passes": rows, "machine": {
            "python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
