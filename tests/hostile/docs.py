"""Hostile-input scenarios of the "docs and output" part: plain functions, shared by the tests
(tests/test_hostile_docs.py) and the bench scripts. Each takes a scratch directory, starts what it needs,
raises AssertionError when the behaviour is wrong and returns its measured figures.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.servers import ImagePusher, RegistryServer

__all__ = ["RAW_CONTROL", "control_characters_in_outputs"]

# what no human-readable output may carry raw (newlines between lines excepted); written out here rather than
# taken from image_updater.printable, so that the test does not share a mistake with the code
RAW_CONTROL = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)

RED_FILE = "apps/\x1b[31mred.yaml"
NEWLINE_FILE = "apps/a\nb.yaml"
BROKEN_FILE = "apps/broken\r\x1b[2K.yaml"
LOCKED_FILE = "apps/\u202elocked.yaml"

# YAML double-quoted escapes put the control characters into resource and container names, a policy string
# and a lock message: they reach the reports as values, not as file names
_WORKLOAD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: "web\\e]8;;http://evil.example\\a{n}"
  namespace: "shop\\u202e"
  annotations:
    image-updater.io/policy: "semver:^1"
spec:
  template:
    spec:
      containers:
        - name: "app\\e[2J{n}"
          image: {host}/acme/web:1.0.0
"""
_BAD_POLICY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  annotations:
    image-updater.io/policy.api: "semver:\\e[31m^1 ||"
spec:
  template:
    spec:
      containers:
        - name: api
          image: {host}/acme/web:1.0.0
"""
_LOCKED = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: locked
  annotations:
    fluxcd.io/automated: "true"
    fluxcd.io/locked: "true"
    fluxcd.io/locked_msg: "frozen\\e[8m hidden\\r\\nforged: line"
spec:
  template:
    spec:
      containers:
        - name: app
          image: {host}/acme/web:1.0.0
"""


def _write_repo(root: Path, host: str) -> None:
    files = {
        RED_FILE: _WORKLOAD.format(host=host, n=1),
        NEWLINE_FILE: _WORKLOAD.format(host=host, n=2),
        "apps/bad-policy.yaml": _BAD_POLICY.format(host=host),
        BROKEN_FILE: "metadata:\n  annotations:\n    image-updater.io/policy: [unclosed\n",
        LOCKED_FILE: _LOCKED.format(host=host),
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "image_updater", *args], env=env, cwd=cwd, capture_output=True, text=True,
        encoding="utf-8", errors="surrogateescape", timeout=120, check=False,
    )


def _assert_clean(name: str, text: str) -> None:
    raw = RAW_CONTROL.search(text)
    if raw is not None:
        start = max(0, raw.start() - 40)
        raise AssertionError(f"{name}: raw {raw.group()!r} in {text[start:raw.end() + 40]!r}")


def control_characters_in_outputs(tmp: Path) -> dict[str, Any]:
    """File names, resource and container names, policies and skip reasons holding ESC, CR, LF, bidi
    overrides: every text output (plan's table, Markdown and diff, text logs, validate's text and -v, CLI
    error lines) shows them escaped; JSON outputs hold the real values."""
    started = time.monotonic()
    root = tmp / "repo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_UPDATER_")}
    env.update(IMAGE_UPDATER_CACHE_DIR=str(tmp / "cache"), DOCKER_CONFIG=str(tmp / "docker"))
    outputs: dict[str, str] = {}
    with RegistryServer(work_dir=tmp / "registry") as registry:
        with ImagePusher(registry.url) as pusher:
            pusher.push_many("acme/web", ["1.0.0", "1.2.0"])
        _write_repo(root, registry.host)
        for fmt in ("table", "markdown", "diff", "json"):
            done = _run(["plan", str(root), "--format", fmt], env, tmp)
            if done.returncode != 1:  # the broken file and the bad policy are error entries
                raise AssertionError(f"plan --format {fmt}: exit {done.returncode}: {done.stderr[-2000:]}")
            outputs[f"plan {fmt}"] = done.stdout
            outputs[f"plan {fmt} (stderr)"] = done.stderr
    for args in (["validate"], ["validate", "-v"], ["validate", "--format", "json"]):
        done = _run([*args, str(root)], env, tmp)
        if done.returncode != 1:
            raise AssertionError(f"{' '.join(args)}: exit {done.returncode}: {done.stderr[-2000:]}")
        outputs[" ".join(args)] = done.stdout
        outputs[f"{' '.join(args)} (stderr)"] = done.stderr
    # a CLI error line: the path itself is hostile
    done = _run(["plan", str(root / NEWLINE_FILE / "nowhere")], env, tmp)
    if done.returncode != 2 or "apps/a\\nb.yaml/nowhere: not a directory" not in done.stderr:
        raise AssertionError(f"plan on a missing path: exit {done.returncode}: {done.stderr!r}")
    outputs["cli error (stderr)"] = done.stderr

    for name, text in outputs.items():
        if "json" not in name or "stderr" in name:
            _assert_clean(name, text)
    table = outputs["plan table"]
    for shown in ("apps/\\x1b[31mred.yaml", "apps/a\\nb.yaml", "app\\x1b[2J1", "\\u202elocked.yaml"):
        if shown not in table + outputs["validate -v"]:
            raise AssertionError(f"{shown!r} is not shown escaped:\n{table}")
    if '"a/apps/\\033[31mred.yaml"' not in outputs["plan diff"]:
        raise AssertionError(f"the diff does not quote the file name as git does:\n{outputs['plan diff']}")

    plan = json.loads(outputs["plan json"])
    files = {u["file"] for u in plan["updates"]}
    if files != {RED_FILE, NEWLINE_FILE}:
        raise AssertionError(f"plan json: updates in {files!r}")
    if not any(e["file"] == BROKEN_FILE for e in plan["errors"]):
        raise AssertionError(f"plan json: no error for {BROKEN_FILE!r}: {plan['errors']}")
    if not any("\x1b[8m" in s["reason"] for s in plan["skipped"]):
        raise AssertionError(f"plan json: the lock message lost its real value: {plan['skipped']}")
    found = json.loads(outputs["validate --format json"])["found"]
    if {e["container"] for e in found} != {"app\x1b[2J1", "app\x1b[2J2"}:
        raise AssertionError(f"validate json: containers {[e['container'] for e in found]!r}")
    return {"seconds": round(time.monotonic() - started, 2), "outputs": len(outputs)}
