"""``image-updater plan`` against Renovate on the same 20-image repository and the same registry (issue 16).

Set-up: the real distribution registry on 127.0.0.1, IMAGES repositories with TAGS tags each (``1.0.0`` ...
``1.<TAGS-1>.0``), and a Git repository of IMAGES Deployments, each on ``1.0.0``, annotated for image-updater
with ``semver:^1``. Renovate is installed from npm into ``bench/.data/renovate`` the first time, as a new user
would (``npm install renovate@<major>``; the newest major that runs on the installed Node: 39 for Node 20),
and run as ``renovate --platform=local --dry-run=lookup`` in the repository's directory, with its kubernetes
manager on ``*.yaml`` and its docker datasource pointed at the registry over plain HTTP (``registryUrls``).

Both tools talk to the registry directly: nothing sits in the path of either. Requests are counted from the
registry's own access log (one line per request, Apache combined format, written by the registry process),
by the bytes the log grew during each run, once the log has stopped growing after the run.

Each side runs RUNS times, interleaved (ours, Renovate, Renovate, ours, ...), each run a fresh process under
``/usr/bin/time``: wall, CPU (user+sys of the command and every child it waited for: Renovate's git, say)
and peak RSS (the largest process of that tree); medians and ratios. Both start cold (our metadata cache
and Renovate's package cache are removed before each run). Our checkout runs with its bytecode written
(``PYTHONDONTWRITEBYTECODE`` is removed from the child's environment, run 0 writes the ``.pyc`` files and is
not counted), as an installed wheel has it: pip compiles a wheel's modules at install time. The picks are
compared: every image must get the same new tag from both.

Skipped with a message when npm (or node) is absent. Prints a table, writes ``bench/results/renovate.json``.

    .venv/bin/python bench/renovate.py [--images 20] [--tags 10] [--runs 5]
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
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.servers import ImagePusher, RegistryServer

DATA = ROOT / "bench" / ".data" / "renovate"
RESULTS = ROOT / "bench" / "results" / "renovate.json"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
# the newest Renovate major whose engines field accepts the Node of this machine (20.x): 39
RENOVATE_MAJOR = {20: "39", 22: "41", 24: "44"}

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{index:02d}
  annotations:
    image-updater.io/policy: "semver:^1"
spec:
  template:
    spec:
      containers:
        - name: app
          image: {host}/bench/app-{index:02d}:1.0.0
"""


# one access-log line of distribution (Apache combined format):
#   host - user [time] "METHOD /path HTTP/1.1" status size "referer" "agent"
ACCESS_LINE = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) '
)


class AccessLog:
    """Requests counted by kind from the registry's access log: what it gained since the last ``take``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size

    def take(self) -> dict[str, int]:
        """Counts of the lines written since the last call, once the log has stopped growing (the registry
        writes a line after it has answered, so the last one may land just after the client exits)."""
        size, deadline = self.path.stat().st_size, time.monotonic() + 2.0
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.path.stat().st_size
            if now == size:
                break
            size = now
        with self.path.open("rb") as log:
            log.seek(self.offset)
            added = log.read(size - self.offset)
        self.offset = size
        counts: Counter[str] = Counter()
        for line in added.decode(errors="replace").splitlines():
            match = ACCESS_LINE.match(line)
            if match:
                counts[f"{match['method']} {kind_of(match['path'])}"] += 1
        return dict(counts)


def kind_of(path: str) -> str:
    path = path.split("?", 1)[0]
    if path.rstrip("/") == "/v2":
        return "/v2/"
    for kind in ("tags", "manifests", "blobs"):
        if f"/{kind}/" in path:
            return kind
    return "other"


def install_renovate() -> Path | None:
    """``renovate.js`` from npm, installed once into bench/.data/renovate; None (said why) without npm."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        print(
            "skipped: npm and node are needed to install and run Renovate (apt install npm)", file=sys.stderr
        )
        return None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    wanted = RENOVATE_MAJOR.get(major)
    if wanted is None:
        print(f"skipped: no Renovate major known to run on Node {version}", file=sys.stderr)
        return None
    entry = DATA / "node_modules" / "renovate" / "dist" / "renovate.js"
    if not entry.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        print(f"installing renovate@{wanted} with npm into {DATA} ...", file=sys.stderr)
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(DATA),
                f"renovate@{wanted}",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ],
            check=True,
        )
    return entry


def make_repo(work: Path, host: str, images: int) -> Path:
    repo = work / "repo"
    (repo / "apps").mkdir(parents=True)
    for index in range(images):
        (repo / "apps" / f"app-{index:02d}.yaml").write_text(DEPLOYMENT.format(index=index, host=host))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "apps"], cwd=repo, check=True)
    return repo


def timed(command: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[dict[str, float], str]:
    """Run ``command`` under /usr/bin/time: wall, CPU (user+sys) and peak RSS of the command itself."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        done = subprocess.run(
            ["/usr/bin/time", "-f", "%e %U %S %M", "-o", out.name, *command],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        wall, user, system, rss_kb = out.read().split()[-4:]
    if done.returncode not in (0, 2):  # plan --detailed-exitcode: 2 = updates pending
        raise SystemExit(f"{command[0]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    figures = {"wall": float(wall), "cpu": float(user) + float(system), "peak_rss_mb": int(rss_kb) / 1024}
    return figures, done.stdout


def our_picks(stdout: str) -> dict[str, str]:
    data = json.loads(stdout)
    return {u["image"].rsplit("/", 1)[-1]: u["new_tag"] for u in data["updates"]}


def renovate_picks(stdout: str) -> dict[str, str]:
    picks: dict[str, str] = {}
    for line in stdout.splitlines():
        if '"packageFiles with updates"' not in line:
            continue
        record = json.loads(line)
        for files in record.get("config", {}).values():
            for package_file in files:
                for dep in package_file.get("deps", []):
                    news = [u.get("newValue") for u in dep.get("updates", []) if u.get("newValue")]
                    if news:
                        picks[dep["depName"].rsplit("/", 1)[-1]] = max(news, key=version_key)
    return picks


def version_key(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", tag))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--tags", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    renovate = install_renovate()
    if renovate is None:
        return
    if not Path("/usr/bin/time").exists():
        raise SystemExit("/usr/bin/time (GNU time) is needed to measure the processes")
    with tempfile.TemporaryDirectory(prefix="bench-renovate-") as tmp:
        work = Path(tmp)
        # the access log (one line per request) is written at every level; "warn" keeps the rest out
        registry = RegistryServer(work_dir=work / "registry", log_level="warn").start()
        try:
            with ImagePusher(registry.url) as pusher:
                for index in range(args.images):
                    for minor in range(args.tags):
                        pusher.push(
                            f"bench/app-{index:02d}", f"1.{minor}.0", created=T0 + timedelta(minutes=minor)
                        )
            result = compare(args, renovate, work, registry.host, AccessLog(registry.log_path))
        finally:
            registry.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {RESULTS.relative_to(ROOT)}")


def compare(
    args: argparse.Namespace, renovate: Path, work: Path, host: str, access: AccessLog
) -> dict[str, Any]:
    repo = make_repo(work, host, args.images)
    ours_config = work / "image-updater.yaml"
    ours_config.write_text(
        f"cache_dir: {work / 'cache'}\nregistries:\n  - prefix: {host}\n    insecure: true\n"
    )
    renovate_config = work / "renovate.json"
    renovate_config.write_text(
        json.dumps(
            {
                "onboarding": False,
                "requireConfig": "optional",
                "enabledManagers": ["kubernetes"],
                "kubernetes": {"fileMatch": ["\\.yaml$"]},
                "packageRules": [{"matchDatasources": ["docker"], "registryUrls": [f"http://{host}"]}],
            }
        )
    )
    base_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RENOVATE_", "IMAGE_UPDATER_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    ours_env = {**base_env, "HOME": str(work / "home")}
    renovate_env = {
        **base_env,
        "HOME": str(work / "home"),
        "RENOVATE_CONFIG_FILE": str(renovate_config),
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "json",
        "RENOVATE_BASE_DIR": str(work / "renovate-base"),
        "RENOVATE_X_IGNORE_NODE_WARN": "true",
    }
    ours_cmd = [
        str(ROOT / ".venv" / "bin" / "image-updater"),
        "plan",
        "-c",
        str(ours_config),
        "--format",
        "json",
        "--detailed-exitcode",
        str(repo),
    ]
    renovate_cmd = [shutil.which("node") or "node", str(renovate), "--platform=local", "--dry-run=lookup"]
    runs: dict[str, list[dict[str, Any]]] = {"image-updater": [], "renovate": []}
    picks: dict[str, dict[str, str]] = {}
    for run in range(args.runs + 1):  # run 0 warms both (npm's and Python's caches on disk); not counted
        order = [
            ("image-updater", ours_cmd, ours_env, our_picks),
            ("renovate", renovate_cmd, renovate_env, renovate_picks),
        ]
        if run % 2:
            order.reverse()
        for name, command, env, parse in order:
            # both start cold, as a new user's first run: our metadata cache, Renovate's package cache
            shutil.rmtree(work / "cache", ignore_errors=True)
            shutil.rmtree(work / "renovate-base", ignore_errors=True)
            access.take()
            figures, stdout = timed(command, cwd=repo, env=env)
            figures["requests"] = access.take()
            figures["request_total"] = sum(figures["requests"].values())
            picks[name] = parse(stdout)
            if run:
                runs[name].append(figures)
            print(
                f"run {run} {name}: {figures['wall']:.2f} s wall, {figures['cpu']:.2f} s CPU, "
                f"{figures['peak_rss_mb']:.0f} MB, {figures['request_total']} requests",
                flush=True,
            )
    if picks["image-updater"] != picks["renovate"] or len(picks["image-updater"]) != args.images:
        raise SystemExit(f"the picks differ:\n ours {picks['image-updater']}\n renovate {picks['renovate']}")

    def median(name: str, field: str) -> float:
        return round(statistics.median(r[field] for r in runs[name]), 3)

    summary = {
        field: {
            "image-updater": median("image-updater", field),
            "renovate": median("renovate", field),
            "ratio": round(median("image-updater", field) / median("renovate", field), 3),
        }
        for field in ("wall", "cpu", "peak_rss_mb", "request_total")
    }
    table = [("measure (median)", "image-updater", "renovate", "ratio")]
    for field, figures in summary.items():
        table.append(
            (field, str(figures["image-updater"]), str(figures["renovate"]), f"{figures['ratio']:.2f}x")
        )
    for line in table:
        print(f"{line[0]:<20}{line[1]:>16}{line[2]:>12}{line[3]:>10}")
    print(f"picks: the same {len(picks['renovate'])} updates (e.g. {sorted(picks['renovate'].items())[0]})")
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
            "load_average": os.getloadavg(),
        },
        "renovate": json.loads((DATA / "node_modules" / "renovate" / "package.json").read_text())["version"],
        "images": args.images,
        "tags": args.tags,
        "runs": args.runs,
        "summary": summary,
        "picks": picks["renovate"],
        "requests_by_kind": {name: runs[name][-1]["requests"] for name in runs},
        "raw": runs,
    }


if __name__ == "__main__":
    main()
