"""Git write-back benchmark (issue 5): a 10,000-file repository with 500 files to change per pass.

A real distribution registry (127.0.0.1, storage on tmpfs) holds one image, ``bench/app``; a local bare
repository holds 500 Deployments tracking it with ``semver:^1.0`` and 9,500 other files (ConfigMaps with long
text). Each round pushes a newer tag and runs one real pass (``workflow.run_source``: sync, discover,
resolve, plan, edit 500 files, one commit, push), then a second pass with nothing to do. The git part of a
pass (sync + commit + push, timed around the ``GitRepo`` calls the pass makes) is reported beside the whole
pass. The first pass clones and is reported on its own; rounds are repeated for medians.

Prints a table, writes ``bench/results/writeback.json``.

    .venv/bin/python bench/writeback.py [--files 10000] [--changed 500] [--rounds 5]
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
import random  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from image_updater.gitrepo import GitRepo  # noqa: E402
from image_updater.settings import load_settings  # noqa: E402
from image_updater.writeback import make_client, run_source  # noqa: E402
from tests.servers.gitserver import make_bare_repo  # noqa: E402
from tests.servers.push import ImagePusher  # noqa: E402
from tests.servers.registry_server import RegistryServer  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "writeback.json"
T0 = datetime(2025, 1, 1, tzinfo=UTC)

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
  namespace: team-{team}
  annotations:
    image-updater.io/policy: "semver:^1.0"
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: app
          image: {host}/bench/app:1.0.0  # managed by image-updater
          ports:
            - containerPort: 8080
"""

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: config-{i}
data:
  notes: |
{text}
"""


def tree(host: str, files: int, changed: int) -> dict[str, str]:
    rng = random.Random(5)
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "tempor"]
    out = {}
    for i in range(changed):
        out[f"apps/team-{i % 20}/app-{i}/deployment.yaml"] = DEPLOYMENT.format(i=i, team=i % 20, host=host)
    for i in range(files - changed):
        text = "\n".join("    " + " ".join(rng.choice(words) for _ in range(12)) for _ in range(40))
        out[f"config/group-{i % 50}/config-{i}.yaml"] = CONFIGMAP.format(i=i, text=text)
    return out


class GitTimer:
    """Accumulates the time a pass spends in the GitRepo calls (sync, commit, push)."""

    CALLS = {"sync": "sync", "refresh": "sync", "commit": "commit", "push": "push"}

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._depth = 0  # sync calls refresh: only the outermost call counts

    @contextmanager
    def installed(self) -> Iterator[GitTimer]:
        saved = {name: GitRepo.__dict__[name] for name in self.CALLS}
        for name, label in self.CALLS.items():
            descriptor = saved[name]
            is_class = isinstance(descriptor, classmethod)
            func = descriptor.__func__ if is_class else descriptor
            timed = self._timed(func, label)
            setattr(GitRepo, name, classmethod(timed) if is_class else timed)
        try:
            yield self
        finally:
            for name, descriptor in saved.items():
                setattr(GitRepo, name, descriptor)

    def _timed(self, func: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            self._depth += 1
            try:
                return func(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds[label] += time.perf_counter() - started

        return timed

    def take(self) -> dict[str, float]:
        out = dict(self.seconds)
        self.seconds.clear()
        return out


def one_pass(config: Path, timer: GitTimer) -> dict[str, Any]:
    settings = load_settings(config, env={})

    async def go() -> Any:
        async with make_client(settings) as client:
            return await run_source(settings, settings.sources[0], client=client)

    started, cpu = time.perf_counter(), time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    outcome = asyncio.run(go())
    total, cpu = time.perf_counter() - started, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    git_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    git = timer.take()
    if outcome.error:
        raise SystemExit(f"pass failed: {outcome.error}")
    return {
        "total_s": total, "git_s": sum(git.values()),
        # CPU: this process (all threads: discover, plan, edits) and the git processes it waited for; on a
        # shared machine these are steadier than the wall times
        "cpu_s": cpu, "git_cpu_s": git_cpu, "total_cpu_s": cpu + git_cpu,
        **{f"{k}_s": v for k, v in git.items()},
        "updates": len(outcome.result.updates), "pushed": outcome.pushed,
    }


def commits(bare: Path) -> int:
    out = subprocess.run(["git", "rev-list", "--count", "main"], cwd=bare, capture_output=True, text=True)
    return int(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-writeback-") as tmp, RegistryServer() as registry:
        work = Path(tmp)
        pusher = ImagePusher(registry.url)
        pusher.push("bench/app", "1.0.0", created=T0)
        started = time.perf_counter()
        bare = make_bare_repo(work / "repo.git", tree(registry.host, args.files, args.changed))
        seeded = time.perf_counter() - started
        config = work / "config.yaml"
        config.write_text(
            f"cache_dir: {work / 'cache'}\n"
            f"sources: [{{name: bench, url: '{bare}'}}]\n"
            f"registries: [{{prefix: '{registry.host}', insecure: true}}]\n"
        )
        timer = GitTimer()
        rows: list[dict[str, Any]] = []
        with timer.installed():
            first = one_pass(config, timer)  # clones; nothing to update yet
            for round_ in range(1, args.rounds + 1):
                pusher.push("bench/app", f"1.{round_}.0", created=T0 + timedelta(days=round_))
                before = commits(bare)
                update = one_pass(config, timer)
                idle = one_pass(config, timer)
                update["commits"] = commits(bare) - before
                rows.append({"update": update, "idle": idle})
                print(f"round {round_}: update pass {update['total_s']:.2f} s (git {update['git_s']:.2f} s, "
                      f"{update['updates']} updates, {update['commits']} commit), "
                      f"idle pass {idle['total_s']:.2f} s", flush=True)
        pusher.close()

    def med(kind: str, key: str) -> float:
        return statistics.median(r[kind].get(key, 0.0) for r in rows)

    table: list[tuple[str, str, str]] = [
        ("repository", f"{args.files} files, {args.changed} changed per pass", ""),
        ("seeding the bare repository", f"{seeded:.2f} s", ""),
        ("first pass (clone, nothing to update)",
         f"{first['total_s']:.2f} s (git {first['git_s']:.2f} s)", ""),
        ("update pass: whole pass, median", f"{med('update', 'total_s'):.2f} s", ""),
        ("update pass: git part (sync+commit+push), median", f"{med('update', 'git_s'):.2f} s", "<= 3 s"),
        ("update pass: CPU, ours + git processes, median",
         f"{med('update', 'cpu_s'):.2f} + {med('update', 'git_cpu_s'):.2f} s", ""),
        ("  sync / commit / push, median",
         f"{med('update', 'sync_s'):.2f} / {med('update', 'commit_s'):.2f} / {med('update', 'push_s'):.2f} s",
         ""),
        ("commits per update pass", ", ".join(str(r["update"]["commits"]) for r in rows), "1"),
        ("updates per update pass", ", ".join(str(r["update"]["updates"]) for r in rows), str(args.changed)),
        ("idle pass (nothing to do): whole pass, median", f"{med('idle', 'total_s'):.2f} s", "<= 1 s"),
    ]
    width = max(len(r[0]) for r in table)
    print(f"\n{'measure':<{width}}  {'value':>34}  target")
    for name, value, target in table:
        print(f"{name:<{width}}  {value:>34}  {target}")
    RESULTS.write_text(json.dumps({
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "files": args.files, "changed": args.changed, "seed_s": seeded, "first": first, "rounds": rows,
        "median": {
            "update_total_s": med("update", "total_s"), "update_git_s": med("update", "git_s"),
            "idle_total_s": med("idle", "total_s"), "update_cpu_s": med("update", "cpu_s"),
            "update_git_cpu_s": med("update", "git_cpu_s"),
            "update_total_cpu_s": med("update", "total_cpu_s"),
        },
    }, indent=2) + "\n")
    print(f"\nwritten: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
