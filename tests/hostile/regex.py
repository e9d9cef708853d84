"""Hostile-input scenarios for users' regexes: catastrophic patterns against crafted tags.

Each function runs one scenario with real parts (the ``image-updater`` CLI in a child process, a real
distribution registry), returns its measured figures and raises AssertionError when the behaviour is wrong.
They take a scratch directory and start what they need themselves, so that tests/test_hostile_regex.py and
a bench script can both call them. Every child process has a time limit: a regression to a backtracking
engine turns into a failure, never a stuck run (on Python's ``re`` each of these patterns takes hours).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Patterns that backtrack exponentially (nested or overlapping quantifiers) on a string of one letter that
from tests.hostile.measure import run_image_updater
from tests.servers import ImagePusher, RegistryServer

# fails at its last character. Each matches the tag "aaaa", so there is something to choose.
CATASTROPHIC = (
    "^(a+)+$",
    "^(a|a)+$",
    "^(a|aa)+$",
    "^(a*)*$",
    "^(a+)*$",
    "^((a+)+)+$",
    "^(a+a?)+$",
    "^(a?){40}a{40}$|^aaaa$",
)
# against 'a' * 40 + 'b' the backtracking engine needs about 2^40 steps; 128 characters is the tag limit
CRAFTED = ("a" * 40 + "b", "a" * 127 + "b", "a" * 64 + "-", "a" * 127 + "_")
MATCHING = "aaaa"
CHILD_TIMEOUT = 120.0  # seconds: generous; the whole scenario takes about a second per pattern


def _run(
    args: list[str], env: dict[str, str], stdin: str = ""
) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """``image-updater ARGS`` in a child process: (result, seconds, the child's peak RSS in MiB); a hang
    past the limit is a failed scenario."""
    try:
        return run_image_updater(args, timeout=CHILD_TIMEOUT, env=env, input=stdin)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"image-updater {args} still running after {CHILD_TIMEOUT:.0f} s") from None


def catastrophic_patterns_in_select(tmp_dir: Path) -> dict[str, Any]:
    """Every pattern of CATASTROPHIC, as a ``regex:`` policy and as a ``filter`` (with an ``extract``),
    in ``image-updater select`` over the crafted tags: each answers ``aaaa`` within the time limit."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    # build times make the regex policy's order (newest build) prefer a crafted tag if one ever matched
    lines = [f"{MATCHING} {base.isoformat()}"]
    lines += [f"{tag} {(base + timedelta(hours=i + 1)).isoformat()}" for i, tag in enumerate(CRAFTED)]
    stdin = "\n".join(lines) + "\n"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    seconds: list[float] = []
    peaks: list[float] = []
    for pattern in CATASTROPHIC:
        for args in (
            [f"regex:{pattern}"],
            ["alphabetical", "--filter", f"(?P<all>{pattern})", "--extract", "${all}x"],
            ["alphabetical", "--exclude", "x*", "--filter", pattern],
        ):
            done, took, peak = _run(["select", *args], env, stdin)
            seconds.append(took)
            peaks.append(peak)
            if done.returncode != 0 or done.stdout != f"{MATCHING}\n":
                raise AssertionError(
                    f"select {args} chose {done.stdout!r} (exit {done.returncode}): {done.stderr}"
                )
    return {
        "runs": len(seconds),
        "seconds": round(max(seconds), 3),
        "total_seconds": round(sum(seconds), 3),
        "peak_rss_mib": round(max(peaks), 1),
    }


def _deployment(name: str, image: str, annotations: dict[str, str]) -> str:
    lines = "\n".join(
        f"    image-updater.io/{key}.{name}: {json.dumps(value)}" for key, value in annotations.items()
    )
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {name}
          annotations:
        {{annotations}}
        spec:
          template:
            spec:
              containers:
                - name: {name}
                  image: {image}
        """).replace("{annotations}", lines)


def catastrophic_patterns_in_plan(tmp_dir: Path) -> dict[str, Any]:
    """A repository whose annotations carry catastrophic patterns (a ``regex:`` policy, a ``filter`` with
    ``extract`` under ``numerical``, one pattern RE2 refuses) planned against a real registry whose tags are
    crafted against them: ``image-updater plan`` finishes within the time limit, updates the two workloads
    to the only matching tags and reports the refused pattern as an error naming the file."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    base = datetime(2024, 1, 1, tzinfo=UTC)
    with RegistryServer(work_dir=tmp_dir / "registry") as registry:
        pusher = ImagePusher(registry.url)
        try:
            tags: dict[str, datetime | None] = {"aaaa": base}
            tags.update({tag: base + timedelta(hours=i + 1) for i, tag in enumerate(CRAFTED)})
            tags.update({"1": base, "22": base, "a" * 40 + "-3": base, "4" * 40 + "x": base})
            pusher.push_many("team/web", tags)
        finally:
            pusher.close()
        image = f"{registry.host}/team/web"
        root = tmp_dir / "repo"
        root.mkdir()
        (root / "regex.yaml").write_text(_deployment("regex", f"{image}:start", {"policy": "regex:^(a+)+$"}))
        (root / "filter.yaml").write_text(_deployment("filter", f"{image}:0", {
            "policy": "numerical", "filter": "^(?P<n>(\\d+)+)$", "extract": "$n",
        }))
        refused = _deployment("refused", f"{image}:0", {"policy": "regex:^(a+)\\1$"})  # RE2 refuses it
        (root / "refused.yaml").write_text(refused)
        config = tmp_dir / "config.yaml"
        config.write_text(
            f"registries:\n  - prefix: {registry.host}\n    insecure: true\ncache_dir: {tmp_dir / 'cache'}\n"
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        done, took, peak = _run(["plan", "-c", str(config), str(root), "--format", "json"], env)
    if done.returncode != 1:  # 1: an error entry (the refused pattern), everything else reported
        raise AssertionError(f"plan exited {done.returncode}: {done.stderr}\n{done.stdout}")
    report = json.loads(done.stdout)
    updates = {u["file"]: u["new"] for u in report["updates"]}
    expected = {"regex.yaml": f"{image}:aaaa", "filter.yaml": f"{image}:22"}
    if updates != expected:
        raise AssertionError(f"updates {updates}, expected {expected}")
    errors = [(e["file"], e["message"]) for e in report["errors"]]
    if len(errors) != 1 or errors[0][0] != "refused.yaml" or "backreferences" not in errors[0][1]:
        raise AssertionError(f"errors {errors}: expected one for refused.yaml naming the backreference")
    return {"seconds": round(took, 3), "peak_rss_mib": round(peak, 1)}
