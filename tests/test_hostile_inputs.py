"""The hostile-input review (issue 7, part 5): one test per point, with real parts wherever they exist.

1. A registry answering tags with a newline, ``#``, ``:`` or YAML syntax: such tags are never candidates,
   never fetched and never written (OCI tag grammar), whatever the policy; ``select`` ignores them too;
   tags crafted against a many-star glob cost linear time.
2. Path traversal: ``..`` or absolute paths in the config's ``paths``, in ``policy_dirs``-free policy-file
   ``spec.targets``, in a scan path that is a symlink leading out, and in source names, are refused.
3. A symlink in the repository pointing outside it (to a file or a directory) is neither read nor written
   through, and stays a symlink in the commit.
4. A YAML bomb (billion laughs), a 10^5-deep nesting and a 100 MB file are refused in bounded time and memory
   (peak RSS measured in a child process), reported by file, and the rest of the tree is still discovered.
5. Webhooks: forged signatures and tokens are refused (401) and start nothing; a flood of them and of valid
   webhooks leaves ``/healthz`` answering, and valid webhooks start a bounded number of passes.
6. Secrets (canaries for the registry password, the git token, the webhook secret) never appear in any log
   record at any level (tracebacks included), exception text, report format, commit message or git config.
7. TLS verification is on by default: a registry with a self-signed CA fails until its CA is configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from image_updater.checkout import apply_result, plan_directory
from image_updater.discover import discover_files
from image_updater.errors import ConfigError, ImageUpdaterError, RegistryError, YamlEditError
from image_updater.gitrepo import GitRepo, workdir_for
from image_updater.registry import RegistryClient, RegistryOptions, RetryPolicy
from image_updater.report import render
from image_updater.settings import load_settings
from image_updater.worktree import edit_file, resolve_paths, write_atomic
from image_updater.writeback import make_client, run_source
from image_updater.yamledit import Edit
from tests.faults import Fault, FaultProxy
from tests.fixtures.gitserver import GIT_HTTP_TOKEN
from tests.hostile.manifests import deployment
from tests.servers import ImagePusher, RegistryServer

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def plan_and_apply(root: Path, client: RegistryClient) -> Any:
    async def go() -> Any:
        async with client:
            return await plan_directory(root, client=client)

    planned = asyncio.run(go())
    return planned, apply_result(root, planned)


# ---------------------------------------------------------------------------------- 1. hostile tags

HOSTILE_TAGS = [
    "9.9.9\nimage: evil", "9.9.9\n", "\n", "10.0.0#x", "10.0.0 # c", "10.0.0:latest", "zz:evil", "{a: b}",
    "[1, 2]", "- 10.0.0", "*alias", "&anchor", "!!python/object:os.system", "'10.0.0'", '"10.0.0"', "|",
    "> folded", "%YAML", "@sha256", "10.0.0\r", "10.0.0\t", "", " ", ".10.0.0", "-10.0.0", "z" * 129,
    "10.0.0\u2028", "\uff5a\uff5a", "10.0.0\x00",
]
VALID_TAGS = ["1.0.0", "1.1.0", "2.0.0", "7", "12"]  # "7" and "12" for numerical


@pytest.fixture
def hostile_registry(registry: RegistryServer, pusher: ImagePusher) -> Iterator[FaultProxy]:
    for i, tag in enumerate(VALID_TAGS):
        pusher.push("team/web", tag, created=T0 + timedelta(days=i))
    answer = json.dumps({"name": "team/web", "tags": [*VALID_TAGS, *HOSTILE_TAGS]}).encode()
    with FaultProxy(registry.url, rules=[Fault("body", r"^/v2/team/web/tags/list", body=answer)]) as proxy:
        yield proxy


@pytest.mark.parametrize(
    "policy", ["semver:>=1.0", "alphabetical", "numerical", "glob:*", "regex:.", "newest"]
)
def test_hostile_registry_tags_are_never_candidates_fetched_or_written(
    policy: str, hostile_registry: FaultProxy, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    original = deployment("web", f"{hostile_registry.host}/team/web:1.0.0", policy)
    (root / "web.yaml").write_text(original)
    client = RegistryClient([RegistryOptions(prefix=hostile_registry.host, insecure=True, timeout=5)],
                            docker_config=tmp_path / "none.json")
    _, result = plan_and_apply(root, client)
    assert hostile_registry.injected["body"] >= 1
    assert not result.errors, result.errors
    written = (root / "web.yaml").read_text()
    chosen = [c.new_tag for c in result.updates]
    assert len(chosen) == 1 and chosen[0] in VALID_TAGS, chosen
    assert written == original.replace("web:1.0.0", f"web:{chosen[0]}")  # whole file: only the valid tag
    fetched = [t for _, t, _ in hostile_registry.log if "/manifests/" in t or "/blobs/" in t]
    for target in fetched:
        reference = target.rsplit("/", 1)[1]
        assert reference in VALID_TAGS or reference.startswith("sha256:"), target


def test_select_ignores_tags_outside_the_oci_grammar() -> None:
    # (a tag with white space cannot be written on select's stdin: white space ends the tag there)
    hostile = [
        "zz:evil", "{a:b}", "a#b", "*x", "&y", "!z", "~", "|", "-1", ".1", "\u00e9", "9.9.9\u00e9", "9:9"
    ]
    stdin = "\n".join([*hostile, "1.0", "1.2"]) + "\n"
    for policy in ("alphabetical", "semver:*", "numerical", "regex:.*"):
        out = subprocess.run([sys.executable, "-m", "image_updater", "select", policy], input=stdin,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout == "1.2\n", (policy, out.stdout)
    only_hostile = subprocess.run([sys.executable, "-m", "image_updater", "select", "alphabetical"],
                                  input="\n".join(hostile) + "\n", capture_output=True, text=True, timeout=60)
    assert only_hostile.returncode == 1 and only_hostile.stdout == ""


def test_tags_crafted_against_a_many_star_glob_cost_linear_time() -> None:
    """128-character tags against ``*a*a*a*a*a*a*a*b`` used to backtrack for hours; a child process with a
    time limit turns such a hang into a failure instead of a stuck suite."""
    crafted = ["a" * 128, "a" * 64 + "-" * 64, "a" * 127 + "c", "a" * 127 + "b"]
    stdin = "\n".join(crafted) + "\n"
    chosen = subprocess.run([sys.executable, "-m", "image_updater", "select", "glob:" + "*a" * 7 + "*b"],
                            input=stdin, capture_output=True, text=True, timeout=60)
    assert chosen.returncode == 0 and chosen.stdout == "a" * 127 + "b\n", chosen.stderr
    excluded = subprocess.run([sys.executable, "-m", "image_updater", "select", "alphabetical", "--exclude",
                               "*a" * 7 + "*c"], input=stdin, capture_output=True, text=True, timeout=60)
    assert excluded.stdout == "a" * 127 + "b\n"  # "...c" is excluded, "...b" is the greatest of the rest


# ---------------------------------------------------------------------------------- 2. path traversal


@pytest.mark.parametrize(
    "paths", [["../outside"], ["/etc"], ["apps/../../outside"], [".git/hooks"], ["a/../.."]]
)
def test_config_paths_leaving_the_repository_are_refused(paths: list[str], tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"sources:\n  - name: s\n    url: {tmp_path}\n    paths: {json.dumps(paths)}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, env={})
    assert "paths" in str(caught.value)


def test_scan_paths_leaving_the_tree_directly_or_through_a_symlink_are_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    for paths in (["../outside"], [str(outside)], ["escape"], ["escape/sub"]):
        with pytest.raises(ConfigError):
            resolve_paths(root, paths)


@pytest.mark.parametrize("target", ["../outside/*.yaml", "/etc/*.yaml", "apps/../../outside/x.yaml", ".."])
def test_policy_file_targets_leaving_the_repository_are_refused(target: str) -> None:
    policy = textwrap.dedent(f"""\
        apiVersion: image-updater.io/v1alpha1
        kind: ImagePolicy
        metadata: {{name: web, namespace: apps}}
        spec:
          image: registry.example.com/team/web
          policy: semver:^1
          targets:
            - path: "{target}"
        """)
    workload = deployment("web", "registry.example.com/team/web:1.0.0", "semver:^1").replace(
        "    image-updater.io/policy.web: \"semver:^1\"\n", "    x: y\n")
    discovery = discover_files([("policies/web.yaml", policy), ("apps/web.yaml", workload)])
    assert not discovery.targets
    errors = discovery.errors
    assert any(e.file == "policies/web.yaml" and "relative" in e.message for e in errors), errors


def test_source_names_cannot_steer_the_working_copy_out_of_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for name in ("../../etc", "/etc/passwd", "..", "a/../../b", ".git", "~root"):
        work = workdir_for(cache, name)
        assert work.parent == cache / "git" and work.name not in ("", ".", ".."), (name, work)


# ---------------------------------------------------------------------------------- 3. symlinks


def test_symlinks_leading_outside_are_not_followed_read_or_written(
    tmp_path: Path, registry: RegistryServer, pusher: ImagePusher, bare_repo: Any
) -> None:
    for tag in ("1.0.0", "1.1.0"):
        pusher.push("team/web", tag, created=T0)
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.yaml"
    victim_text = deployment("web", f"{registry.host}/team/web:1.0.0", "semver:^1")
    victim.write_text(victim_text)
    inside = deployment("web", f"{registry.host}/team/web:1.0.0", "semver:^1")
    bare = bare_repo({"apps/web.yaml": inside})
    # the symlinks reach the remote as a human would commit them
    work = tmp_path / "human"
    git("clone", "-q", str(bare), str(work), cwd=tmp_path)
    (work / "apps" / "victim.yaml").symlink_to(victim)
    (work / "apps" / "elsewhere").symlink_to(outside, target_is_directory=True)
    (work / "apps" / "alias.yaml").symlink_to("web.yaml")  # inside the tree: still not written through
    git("add", "-A", cwd=work)
    git("-c", "user.name=h", "-c", "user.email=h@x", "commit", "-qm", "links", cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)

    config = tmp_path / "config.yaml"
    config.write_text(f"cache_dir: {tmp_path / 'cache'}\nsources:\n  - {{name: s, url: {bare}}}\n"
                      f"registries:\n  - {{prefix: '{registry.host}', insecure: true}}\n")
    settings = load_settings(config, env={})

    async def go() -> Any:
        async with make_client(settings) as client:
            return await run_source(settings, settings.sources[0], client=client)

    outcome = asyncio.run(go())
    assert outcome.ok and outcome.pushed, (outcome.error, outcome.result.errors)
    assert [c.file for c in outcome.result.updates] == ["apps/web.yaml"]
    assert victim.read_text() == victim_text  # never written through
    assert sorted(p.name for p in outside.iterdir()) == ["victim.yaml"]  # no temp file left there either
    tree = git("ls-tree", "-r", "main", cwd=bare)
    modes = {line.split("\t")[1]: line.split()[0] for line in tree.splitlines()}
    assert modes == {"apps/web.yaml": "100644", "apps/victim.yaml": "120000", "apps/elsewhere": "120000",
                     "apps/alias.yaml": "120000"}
    assert git("show", "main:apps/victim.yaml", cwd=bare) == str(victim)
    assert "team/web:1.1.0" in git("show", "main:apps/web.yaml", cwd=bare)


def test_edits_refuse_paths_resolving_outside_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    target = outside / "x.yaml"
    target.write_text("image: nginx:1.0\n")
    (root / "link.yaml").symlink_to(target)
    (root / "dir").symlink_to(outside, target_is_directory=True)
    edit = Edit(7, 16, "nginx:2.0")
    for path in (root / "link.yaml", root / "dir" / "x.yaml"):
        with pytest.raises(YamlEditError, match="outside"):
            edit_file(path, [edit], root=root)
        with pytest.raises(YamlEditError, match="outside"):
            write_atomic(path, "image: nginx:2.0\n", root=root)
    assert target.read_text() == "image: nginx:1.0\n"


# ---------------------------------------------------------------------------------- 4. bombs and huge files

BOMB = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{c}: &{c} [{', '.join(['*' + p] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    + ["kind: Deployment", "metadata: {name: bomb, annotations: {image-updater.io/policy.x: 'semver:*'}}",
       "spec: {template: {spec: {containers: [{name: x, image: 'nginx:1.0', env: *i}]}}}", ""]
)

CHILD = """
import json, resource, sys
from pathlib import Path
from image_updater.checkout import discover_directory

def peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

root = Path(sys.argv[1])
warm = Path(sys.argv[2])
discover_directory(warm)  # imports and parsers loaded, caches warm
before = peak_kib()
discovery, _ = discover_directory(root)
after = peak_kib()
print(json.dumps({
    "growth_kib": after - before,
    "errors": [[e.file, e.message[:200]] for e in discovery.errors],
    "targets": sorted({t.file for t in discovery.targets}),
}))
"""


def test_yaml_bombs_and_a_100_mb_file_are_refused_in_bounded_memory(tmp_path: Path) -> None:
    root, warm = tmp_path / "repo", tmp_path / "warm"
    root.mkdir()
    warm.mkdir()
    (warm / "ok.yaml").write_text(deployment("web", "nginx:1.0", "semver:^1"))
    (root / "ok.yaml").write_text(deployment("web", "nginx:1.0", "semver:^1"))
    (root / "bomb.yaml").write_text(BOMB)
    nested = "[" * 100_000 + "]" * 100_000
    (root / "deep.yaml").write_text(deployment("deep", "nginx:1.0", "semver:^1") + f"extra: {nested}\n")
    # 100 MB of real YAML: a list of containers that the text prefilter cannot rule out
    block = ("- name: c\n  image: nginx:1.0\n  # image-updater.io/policy: semver:*\n" * 2000).encode()
    with open(root / "huge.yaml", "wb") as huge:
        huge.write(b"apiVersion: v1\nkind: List\nitems:\n")
        written = 0
        while written < 100 * 1024 * 1024:
            huge.write(block)
            written += len(block)
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(warm)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    errors = dict(report["errors"])
    assert set(errors) == {"bomb.yaml", "deep.yaml", "huge.yaml"}, errors
    assert "alias" in errors["bomb.yaml"].lower(), errors["bomb.yaml"]
    assert "nesting" in errors["deep.yaml"] or "deep" in errors["deep.yaml"], errors["deep.yaml"]
    assert "limit" in errors["huge.yaml"], errors["huge.yaml"]
    assert report["targets"] == ["ok.yaml"]  # the rest of the tree is still discovered
    # the 100 MB file was never read into memory, the bomb never expanded (peak RSS grew by < 64 MiB)
    assert report["growth_kib"] < 64 * 1024, report["growth_kib"]


# ---------------------------------------------------------------------------------- 5. webhooks

WEBHOOK_SECRET = "Canary-Webhook-" + "3b7e1f0c9a2d4e68"


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def push_event(host: str) -> bytes:
    return json.dumps({"events": [{
        "action": "push", "target": {"repository": "team/web", "tag": "1.1.0"}, "request": {"host": host},
    }]}).encode()


def test_forged_webhooks_and_floods_are_refused_and_the_daemon_stays_responsive() -> None:
    from itertools import pairwise

    from image_updater.daemon import Daemon
    from image_updater.httpserver import HttpServer, Limits
    from image_updater.metrics import Metrics
    from image_updater.plan import Result

    passes: list[float] = []  # per pass: when the daemon's webhook rate limiter let it through

    class Outcome:
        def __init__(self, name: str) -> None:
            self.source, self.result, self.commit, self.pushed = name, Result(), None, False
            self.error, self.duration, self.images = None, 0.01, frozenset({"registry.example.com/team/web"})

    async def one_pass(name: str, stop: threading.Event, focus: frozenset[str] | None = None) -> Any:
        passes.append(daemon._states[name].last_webhook_start)
        await asyncio.sleep(0.05)  # a pass takes a moment: webhooks arrive while it runs
        return Outcome(name)

    daemon: Any = None

    async def scenario() -> dict[str, Any]:
        nonlocal daemon
        metrics = Metrics()
        daemon = Daemon(["demo"], interval=timedelta(hours=1), pass_fn=one_pass, metrics=metrics,
                        webhook_min_interval=1.0)
        server = HttpServer(daemon, metrics=metrics, listen="127.0.0.1:0", webhook_secret=WEBHOOK_SECRET,
                            limits=Limits(head_timeout=1.0, body_timeout=1.0))
        await server.start()
        runner = asyncio.create_task(daemon.run())
        host, port = server.address
        url = f"http://{host}:{port}"
        body = push_event("registry.example.com")
        forged = [
            {"X-Hub-Signature-256": sign(body, "guess")},
            {"X-Hub-Signature-256": sign(body)[:-2] + "00"},
            {"X-Hub-Signature-256": "sha1=" + sign(body)[7:]},
            {"X-Signature-256": "sha256="},
            {"Authorization": "Bearer " + WEBHOOK_SECRET[:-1]},
            {"Authorization": "Basic " + WEBHOOK_SECRET},
            {},
        ]
        statuses: dict[str, list[int]] = {"forged": [], "valid": [], "health": [], "token": []}
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                deadline = time.monotonic() + 30
                while not passes and time.monotonic() < deadline:  # the start-up pass
                    await asyncio.sleep(0.02)
                assert passes, "the start-up pass did not run"
                settled = len(passes)

                async def flood_forged(worker: int) -> None:
                    for i in range(40):
                        headers = forged[(worker + i) % len(forged)]
                        r = await http.post(url + "/webhook", content=body, headers=headers)
                        statuses["forged"].append(r.status_code)
                    for _ in range(5):  # the token must be exact, in the query too
                        r = await http.post(url + "/webhook?token=" + WEBHOOK_SECRET.upper(), content=body)
                        statuses["token"].append(r.status_code)

                async def poll_health() -> None:
                    for _ in range(40):
                        r = await http.get(url + "/healthz")
                        statuses["health"].append(r.status_code)
                        await asyncio.sleep(0.01)

                await asyncio.gather(*(flood_forged(w) for w in range(6)), poll_health())
                forged_passes = len(passes) - settled

                async def flood_valid() -> None:
                    for _ in range(30):
                        r = await http.post(url + "/webhook", content=body,
                                            headers={"X-Hub-Signature-256": sign(body)})
                        statuses["valid"].append(r.status_code)

                await asyncio.gather(flood_valid(), flood_valid(), flood_valid(), poll_health())
                state = daemon._states["demo"]
                deadline = time.monotonic() + 60  # only a hang takes that long
                while (state.busy or state.rerun) and time.monotonic() < deadline:  # the queued pass runs
                    await asyncio.sleep(0.02)
                assert not state.busy, "the queued pass did not run"
                valid_passes = len(passes) - settled - forged_passes
                admitted = passes[settled:]
                rendered = metrics.render().decode()
        finally:
            daemon.request_stop()
            await runner
            await server.close()
        return {"statuses": statuses, "forged_passes": forged_passes, "valid_passes": valid_passes,
                "admitted": admitted, "metrics": rendered}

    result = asyncio.run(scenario())
    statuses = result["statuses"]
    assert set(statuses["forged"]) == {401} and len(statuses["forged"]) == 240
    assert set(statuses["token"]) == {401}
    assert result["forged_passes"] == 0  # a forged webhook starts nothing
    assert set(statuses["health"]) == {200}, statuses["health"]  # responsive throughout both floods
    assert set(statuses["valid"]) <= {200, 202} and 202 in statuses["valid"]
    # 90 valid webhooks in a burst: passes start at most once per webhook_min_interval, whatever the load
    # (the limiter's own admission times; 1 ms: asyncio may wake a timer a clock tick early)
    admitted = result["admitted"]
    assert result["valid_passes"] >= 1 and len(admitted) == result["valid_passes"], result
    assert all(b - a >= 1.0 - 1e-3 for a, b in pairwise(admitted)), admitted
    assert result["valid_passes"] < 90, result  # and they are coalesced, not one per webhook
    assert 'image_updater_webhook_requests_total{result="unauthorized"} 270.0' in result["metrics"]


def test_oversized_slow_and_malformed_webhook_requests_cost_bounded_effort() -> None:
    from image_updater.httpserver import HttpServer, Limits
    from image_updater.metrics import Metrics

    class Backend:
        triggered: list[str] = []

        def alive(self) -> bool:
            return True

        def ready(self) -> bool:
            return True

        def sources_for(self, events: Any) -> list[str]:
            return ["demo"]

        def trigger(self, sources: Any, *, reason: str = "webhook", events: Any = ()) -> list[str]:
            self.triggered.extend(sources)
            return list(sources)

    async def scenario() -> list[bytes]:
        server = HttpServer(Backend(), metrics=Metrics(), listen="127.0.0.1:0", webhook_secret=WEBHOOK_SECRET,
                            limits=Limits(max_body=4096, head_timeout=0.5, body_timeout=0.5))
        await server.start()
        host, port = server.address
        answers: list[bytes] = []

        async def raw(data: bytes, wait: float = 5.0) -> bytes:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(data)
            await writer.drain()
            try:
                return await asyncio.wait_for(reader.read(65536), wait)
            finally:
                writer.close()

        try:
            # a declared 1 GB body: 413 at once, without reading it
            head = b"POST /webhook HTTP/1.1\r\nHost: x\r\n"
            answers.append(await raw(head + b"Content-Length: 1000000000\r\n\r\n"))
            # a head that never ends (slowloris): 408 after the head timeout
            answers.append(await raw(b"POST /webhook HTTP/1.1\r\nHost: x\r\n"))
            # a body that never comes: 408 after the body timeout
            answers.append(await raw(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"))
            # request smuggling shapes
            answers.append(await raw(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                                     b"Content-Length: 2\r\n\r\n{}"))
            answers.append(await raw(head + b"Transfer-Encoding: chunked\r\n\r\n"
                                     b"0\r\n\r\n"))
            # signed garbage: authenticated but malformed, 400, nothing triggered
            junk = b'{"events": [{"action": "push", "target": {"repository": "../../etc", "tag": 1}}]}'
            signature = sign(junk).encode()
            signed = b"Content-Length: %d\r\nX-Hub-Signature-256: %s\r\n\r\n" % (len(junk), signature)
            answers.append(await raw(head + signed + junk))
            answers.append(await raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
        finally:
            await server.close()
        return answers

    answers = asyncio.run(scenario())
    status = [a.split(b"\r\n", 1)[0] for a in answers]
    assert status[0].startswith(b"HTTP/1.1 413")
    assert status[1].startswith(b"HTTP/1.1 408") and status[2].startswith(b"HTTP/1.1 408")
    assert status[3].startswith(b"HTTP/1.1 400") and status[4].startswith(b"HTTP/1.1 411")
    assert status[5].startswith(b"HTTP/1.1 400")
    assert status[6].startswith(b"HTTP/1.1 200")
    assert Backend.triggered == []


# ---------------------------------------------------------------------------------- 6. secrets

REGISTRY_PASSWORD = "Canary-Registry-" + "9f1e2d3c4b5a6978"
WRONG_PASSWORD = "Canary-Wrong-Pw-" + "0a1b2c3d4e5f6a7b"
WRONG_TOKEN = "Canary-Wrong-Tok-" + "7c6b5a4f3e2d1c0b"
SECRETS = (REGISTRY_PASSWORD, WRONG_PASSWORD, WRONG_TOKEN, GIT_HTTP_TOKEN, WEBHOOK_SECRET)


class Everything(logging.Handler):
    """Every record of every logger at every level, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # the message, its arguments and every extra field (source, file, image, ...) as they were logged
        text = f"{record.levelname} {record.name} {record.getMessage()} {record.__dict__!r}"
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        self.lines.append(text)


@pytest.fixture
def all_logs() -> Iterator[Everything]:
    handler = Everything()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def exception_texts(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


def test_secrets_never_appear_in_logs_exceptions_reports_or_commits(
    tmp_path: Path, registry_factory: Any, bare_repo: Any, git_http_server: Any, all_logs: Everything,
) -> None:
    reg = registry_factory(htpasswd={"ci": REGISTRY_PASSWORD})
    with ImagePusher(reg.url, username="ci", password=REGISTRY_PASSWORD) as push:
        for tag in ("1.0.0", "1.1.0"):
            push.push("team/web", tag, created=T0)
    files = {"apps/web.yaml": deployment("web", f"{reg.host}/team/web:1.0.0", "semver:^1"),
             "apps/broken.yaml": deployment("x", f"{reg.host}/team/web:1.0.0", "semver:^1") + "oops: [\n"}
    bare = bare_repo(files, parent=git_http_server.root)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"cache_dir: {tmp_path / 'cache'}\n"
        f"sources:\n  - name: s\n    url: {git_http_server.url_for(bare)}\n"
        "    auth: {token_env: GIT_TOKEN}\n"
        f"registries:\n  - {{prefix: '{reg.host}', insecure: true, credentials: 'env:REG_CREDS'}}\n"
        "http: {webhook_secret_env: HOOK_SECRET}\n"
    )
    texts: list[str] = []

    def one_pass(registry_password: str, token: str) -> Any:
        env = {"REG_CREDS": f"ci:{registry_password}", "GIT_TOKEN": token, "HOOK_SECRET": WEBHOOK_SECRET}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            settings = load_settings(config)

            async def go() -> Any:
                async with make_client(settings) as client:
                    outcome = await run_source(settings, settings.sources[0], client=client, environ=env)
                    # the registry client's own exceptions, raised rather than folded into a result
                    with pytest.raises(RegistryError) as caught:
                        await client.list_tags(f"{reg.host}/team/nope")
                    texts.append(exception_texts(caught.value))
                    return outcome

            return settings, asyncio.run(go())
        finally:
            for k, v in old.items():
                os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)

    # a good pass (an update, a file that does not parse), then wrong registry password and wrong git token
    settings, good = one_pass(REGISTRY_PASSWORD, GIT_HTTP_TOKEN)
    assert good.pushed and good.result.errors
    _, bad_registry = one_pass(WRONG_PASSWORD, GIT_HTTP_TOKEN)
    assert any("401" in e.message or "credentials" in e.message for e in bad_registry.result.errors)
    _, bad_git = one_pass(REGISTRY_PASSWORD, WRONG_TOKEN)
    assert bad_git.error is not None
    with pytest.raises(ImageUpdaterError) as git_failure:
        GitRepo.for_source(settings.sources[0], tmp_path / "other-cache", environ={"GIT_TOKEN": WRONG_TOKEN})
    texts.append(exception_texts(git_failure.value))

    for outcome in (good, bad_registry, bad_git):
        texts.append(repr(outcome))
        for fmt in ("table", "json", "markdown"):
            texts.append(render(outcome.result, fmt))
        texts.append(render(outcome.result, "diff", texts={"apps/web.yaml": ("a\n", "b\n")}))
    texts.append(git("log", "--all", "--format=%H %an %ae %s%n%b", cwd=bare))
    texts.extend(p.read_text() for p in (tmp_path / "cache").rglob("config") if p.parent.name == ".git")
    texts.extend(all_logs.lines)
    # the CLI's own output, JSON logs at debug level, with the same secrets in the environment
    cli = subprocess.run(
        [sys.executable, "-m", "image_updater", "run", "--once", "-c", str(config), "--log-level", "debug",
         "--log-format", "json"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "REG_CREDS": f"ci:{WRONG_PASSWORD}", "GIT_TOKEN": WRONG_TOKEN,
             "HOOK_SECRET": WEBHOOK_SECRET},
    )
    assert cli.returncode == 1 and cli.stderr
    texts.extend([cli.stdout, cli.stderr])
    assert len(all_logs.lines) > 20 and any(line.startswith("DEBUG") for line in all_logs.lines)
    everything = "\n".join(texts)
    for secret in SECRETS:
        assert secret not in everything, secret
        assert secret.lower() not in everything.lower()


# Templates that read the environment through Jinja2's globals and Python's object graph. Each one DOES
# print the canary under a plain jinja2.Environment (asserted below, so the test would fail if the
# sandbox were missing or the templates had stopped being dangerous).
_ESCAPES = (
    "{{ cycler.__init__.__globals__.os.environ[CANARY] }}",
    "{{ joiner.__init__.__globals__.os.environ }}",
    "{{ namespace.__init__.__globals__.os.environ }}",
    "{{ lipsum.__globals__.os.environ[CANARY] }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.environ[CANARY] }}",
    "{% for c in ''.__class__.__mro__[1].__subclasses__() if c.__name__ == '_wrap_close' %}"
    "{{ c.__init__.__globals__['environ'][CANARY] }}{% endfor %}",
    "{% for c in changes[0].__class__.__mro__[1].__subclasses__() if c.__name__ == '_wrap_close' %}"
    "{{ c.__init__.__globals__.environ }}{% endfor %}",
    "{% set os = cycler.__init__.__globals__.os %}{{ os.environ.get(CANARY) }}",
    "{{ (cycler|attr('__init__')|attr('__globals__'))['os']|attr('environ') }}",
    "{{ '%s'|format(cycler.__init__.__globals__.os.environ) }}",
    "{{ '{0.__init__.__globals__[os].environ[IMAGE_UPDATER_TEST_CANARY]}'.format(cycler) }}",
    "{{ source.__class__.__mro__[1].__subclasses__() }}{{ cycler.__init__.__globals__.os.getenv(CANARY) }}",
)
_NAME = "'IMAGE_UPDATER_TEST_CANARY'"
ESCAPING_TEMPLATES = tuple(
    t.replace("[CANARY]", f"[{_NAME}]").replace("(CANARY)", f"({_NAME})") for t in _ESCAPES
)


def test_a_commit_template_cannot_reach_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import jinja2

    from image_updater.commitmsg import render_commit_message
    from image_updater.plan import Change, Result

    change = Change(file="a.yaml", line=1, resource=None, container=None, image="nginx", old="nginx:1",
                    new="nginx:2", old_tag="1", new_tag="2", policy="semver:*", origin="annotation")
    monkeypatch.setenv("IMAGE_UPDATER_TEST_CANARY", WEBHOOK_SECRET)
    # the variables render_commit_message gives a template
    context = {"changes": [change.to_dict()], "summary": "Update 1 image in 1 file", "files": ["a.yaml"],
               "source": "s"}
    for template in ESCAPING_TEMPLATES:
        plain = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(template).render(context)
        assert WEBHOOK_SECRET in plain, f"not an escape even without the sandbox: {template}"

        try:
            message = render_commit_message(Result(updates=(change,)), source="s", template=template)
        except ConfigError as exc:
            message = str(exc)
            assert message.startswith("commit message template failed"), message
            # chained to jinja2's error, which names the refused attribute and holds no rendered value
            assert exc.__cause__ is not None and WEBHOOK_SECRET not in repr(exc.__cause__)
        assert WEBHOOK_SECRET not in message, template
    # the classic escape is refused by name, not by accident (an undefined variable, a syntax error)
    with pytest.raises(ConfigError, match="access to attribute '__init__' of 'type' object is unsafe"):
        render_commit_message(Result(updates=(change,)), source="s",
                              template="{{ cycler.__init__.__globals__.os.environ }}")


# ---------------------------------------------------------------------------------- 7. TLS


def test_tls_is_verified_by_default_and_a_self_signed_registry_needs_its_ca(
    tmp_path: Path, registry_factory: Any, tls_ca: Any
) -> None:
    reg = registry_factory(tls=tls_ca)
    assert reg.url.startswith("https://")
    with ImagePusher(reg.url, ca_file=str(tls_ca.ca_file)) as push:
        push.push("team/web", "1.0.0", created=T0)
        push.push("team/web", "1.1.0", created=T0)
    image = f"{reg.host}/team/web"

    async def tags(*options: RegistryOptions) -> list[str]:
        async with RegistryClient(options, docker_config=tmp_path / "none.json",
                                  retry=RetryPolicy(attempts=1)) as client:
            return await client.list_tags(image)

    # no entry at all (a loopback registry: the plain-HTTP fallback must not bypass a failed verification),
    # an entry without ca_file, and an entry trusting another CA: all refused
    other_ca = tmp_path / "other-ca"
    from tests.servers import make_tls_files

    wrong = make_tls_files(other_ca)
    for options in ((), (RegistryOptions(prefix=reg.host),),
                    (RegistryOptions(prefix=reg.host, ca_file=str(wrong.ca_file)),)):
        with pytest.raises(RegistryError, match="not trusted") as caught:
            asyncio.run(tags(*options))
        assert reg.host.split(":")[0] in str(caught.value)
    assert sorted(asyncio.run(tags(RegistryOptions(prefix=reg.host, ca_file=str(tls_ca.ca_file))))) == [
        "1.0.0", "1.1.0"]
    assert sorted(asyncio.run(tags(RegistryOptions(prefix=reg.host, tls_verify=False)))) == ["1.0.0", "1.1.0"]

    # and through a whole plan with the config file: an error entry by default, an update with ca_file
    root = tmp_path / "repo"
    root.mkdir()
    (root / "web.yaml").write_text(deployment("web", f"{image}:1.0.0", "semver:^1"))
    for extra, works in (("", False), (f", ca_file: '{tls_ca.ca_file}'", True)):
        config = tmp_path / "config.yaml"
        registries = f"registries:\n  - {{prefix: '{reg.host}'{extra}}}\n"
        config.write_text(f"cache_dir: {tmp_path / 'cache'}\n{registries}")
        settings = load_settings(config, env={})

        async def plan(settings: Any = settings) -> Any:
            async with make_client(settings) as client:
                return await plan_directory(root, client=client)

        result = asyncio.run(plan()).result
        if works:
            assert [c.new_tag for c in result.updates] == ["1.1.0"] and not result.errors
        else:
            assert not result.updates and "not trusted" in result.errors[0].message
