"""The fault matrix (issue 7): every registry and git fault, one at a time, during a pass.

Two sources share one registry client, as in the daemon: ``alpha`` (web: semver, api: numerical through a
policy file and a setter marker, app: newest, which reads manifests and configs) and ``beta`` (db through
the proxy, cache straight from the registry). Registry images go through a :class:`FaultProxy` in front of a
real distribution registry; git goes to real bare repositories (a ``pre-receive`` hook plays the racing
human, ``git http-backend`` the authenticating server, a small tmpfs the full disk).

For every fault the test checks, on the real remote and byte for byte:

- the pass reports the error by image (registry faults) or by source (git faults), without raising;
- every image and source the fault does not concern is updated and pushed in that same pass;
- the next clean pass completes the work (after a human commit that it must build on);
- every file on ``main`` is either its original or its fully updated text (never half-written) and the
  working copy in the cache holds no stray temporary file;
- every human commit is an ancestor of ``main`` and the branch only ever moved forward (the bare
  repositories keep a reflog: each update's old value is an ancestor of its new one, so nothing was forced).

Two more cases run the real daemon (``python -m image_updater run``) against the proxy and the racing hook:
``/metrics`` counts the errors, ``/healthz`` stays 200 throughout, the faults clear and the daemon completes
the work on its own without a restart.

Registry timeouts and retry waits are small (client built here, 1.5 s budget, 3 attempts) to keep it fast.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from image_updater.gitrepo import workdir_for
from image_updater.registry import BodyLimits, MetadataCache, RegistryClient, RegistryOptions, RetryPolicy
from image_updater.settings import Settings, load_settings
from image_updater.writeback import SourceOutcome, run_source
from image_updater.yamledit import parse_yaml
from tests.faults import Fault, FaultProxy, arm_push_race, human_commits, install_push_race, small_disk
from tests.fixtures.gitserver import GIT_HTTP_TOKEN
from tests.fixtures.registry import require_registry_binary
from tests.servers import ImagePusher, RegistryServer
from tests.servers.gitserver import commit_to_bare, make_bare_repo

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TIMEOUT = 1.5
RETRY = RetryPolicy(attempts=3, initial=0.05, maximum=0.2)
LIMITS = BodyLimits(tags=256 * 1024, manifest=64 * 1024, config=64 * 1024)

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    image-updater.io/policy.web: "semver:^1.0"
spec:
  template:
    spec:
      containers:
        - name: web
          image: {proxy}/team/web:1.0.0   # keep this comment
"""
APP = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  annotations:
    image-updater.io/policy.app: newest
spec:
  template:
    spec:
      containers:
        - name: app
          image: "{proxy}/team/app:build-1"
"""
KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [web.yaml, app.yaml]
images:
  - name: {proxy}/team/api
    newTag: "0.9"  # {{"$imagepolicy": "apps:api:tag"}}
"""
API_POLICY = """\
apiVersion: image-updater.io/v1alpha1
kind: ImagePolicy
metadata:
  name: api
  namespace: apps
spec:
  image: {proxy}/team/api
  policy: numerical
"""
DB = """\
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  annotations:
    image-updater.io/policy.db: "semver:~3.0"
    image-updater.io/policy.cache: "semver:^1"
spec:
  template:
    spec:
      containers:
        - name: db
          image: {proxy}/team/db:3.0.0
        - name: cache
          image: {registry}/team/cache:1.0
"""

# (repository -> tags and build times) pushed once per module
IMAGES: dict[str, dict[str, datetime]] = {
    "team/web": {"1.0.0": T0, "1.1.0": T0, "1.2.0": T0, "2.0.0": T0},
    "team/api": {"0.9": T0, "1": T0, "9": T0, "10": T0},
    "team/app": {"build-1": T0, "build-3": T0 + timedelta(days=3), "build-2": T0 + timedelta(days=2)},
    "team/db": {"3.0.0": T0, "3.0.4": T0, "3.1.0": T0},
    "team/cache": {"1.0": T0, "1.1": T0},
}


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def is_ancestor(bare: Path, older: str, newer: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=bare).returncode == 0


def tree_of(bare: Path, rev: str = "main") -> dict[str, str]:
    names = git("ls-tree", "-r", "--name-only", "-z", rev, cwd=bare).split("\0")
    return {name: git("show", f"{rev}:{name}", cwd=bare) for name in names if name}


@pytest.fixture(scope="module")
def seeded_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    require_registry_binary()
    with RegistryServer(work_dir=tmp_path_factory.mktemp("matrix-registry")) as server:
        with ImagePusher(server.url) as pusher:
            for repository, tags in IMAGES.items():
                pusher.push_many(repository, tags)
        yield server


@pytest.fixture
def proxy(seeded_registry: RegistryServer) -> Iterator[FaultProxy]:
    with FaultProxy(seeded_registry.url, seed=7) as running:
        yield running


@dataclass
class Setup:
    """Two sources, their bare repositories and the texts before and after a complete update."""

    tmp: Path
    proxy: FaultProxy
    registry: RegistryServer
    alpha: Path
    beta: Path
    original: dict[str, dict[str, str]]
    updated: dict[str, dict[str, str]]
    cache_dir: Path
    runner: asyncio.Runner  # one event loop for every pass of a test: the client's connections live in it
    alpha_url: str | None = None
    notes: list[str] = field(default_factory=list)  # files human_commit() added to alpha

    def settings(self, alpha_url: str | None = None, auth: str | None = None) -> Settings:
        alpha = alpha_url or self.alpha_url or str(self.alpha)
        lines = [
            f"cache_dir: {self.cache_dir}",
            "sources:",
            "  - name: alpha",
            f"    url: {alpha}",
            *([f"    auth: {auth}"] if auth else []),
            "  - name: beta",
            f"    url: {self.beta}",
            "commit:",
            "  author_name: Image Bot",
            "  author_email: bot@example.com",
        ]
        config = self.tmp / "config.yaml"
        config.write_text("\n".join(lines) + "\n")
        return load_settings(config, env={})

    def client(self, cache_dir: Path | None = None) -> RegistryClient:
        options = [
            RegistryOptions(prefix=self.proxy.host, insecure=True, timeout=TIMEOUT),
            RegistryOptions(prefix=self.registry.host, insecure=True, timeout=TIMEOUT),
        ]
        return RegistryClient(
            options, cache=MetadataCache.in_dir(cache_dir or self.cache_dir), retry=RETRY, limits=LIMITS,
            docker_config=self.tmp / "no-docker-config.json",
        )

    def bare(self, source: str) -> Path:
        return self.alpha if source == "alpha" else self.beta


def make_setup(tmp: Path, proxy: FaultProxy, registry: RegistryServer, runner: asyncio.Runner, *,
               cache_dir: Path | None = None, alpha_parent: Path | None = None) -> Setup:
    fmt = {"proxy": proxy.host, "registry": registry.host}
    original = {
        "alpha": {
            "apps/web.yaml": WEB.format(**fmt), "apps/app.yaml": APP.format(**fmt),
            "apps/kustomization.yaml": KUSTOMIZATION.format(**fmt),
            "policies/api.yaml": API_POLICY.format(**fmt),
            "README.md": "alpha\n",
        },
        "beta": {"db/db.yaml": DB.format(**fmt), "README.md": "beta\n"},
    }
    updated = {
        "alpha": {
            **original["alpha"],
            "apps/web.yaml": original["alpha"]["apps/web.yaml"].replace("web:1.0.0", "web:1.2.0"),
            "apps/app.yaml": original["alpha"]["apps/app.yaml"].replace("app:build-1", "app:build-3"),
            "apps/kustomization.yaml": original["alpha"]["apps/kustomization.yaml"].replace(
                'newTag: "0.9"', 'newTag: "10"'),
        },
        "beta": {
            **original["beta"],
            "db/db.yaml": original["beta"]["db/db.yaml"].replace("db:3.0.0", "db:3.0.4").replace(
                "cache:1.0", "cache:1.1"),
        },
    }
    alpha = make_bare_repo((alpha_parent or tmp / "remotes") / "alpha.git", original["alpha"])
    beta = make_bare_repo(tmp / "remotes" / "beta.git", original["beta"])
    for bare in (alpha, beta):
        # a reflog on the remote lets the test prove that main only ever moved forward
        git("config", "core.logAllRefUpdates", "always", cwd=bare)
        install_push_race(bare)
    return Setup(tmp, proxy, registry, alpha, beta, original, updated, cache_dir or tmp / "cache", runner)


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop:
        yield loop


@pytest.fixture
def setup(
    tmp_path: Path, proxy: FaultProxy, seeded_registry: RegistryServer, runner: asyncio.Runner
) -> Setup:
    return make_setup(tmp_path, proxy, seeded_registry, runner)


def run_pass(setup: Setup, settings: Settings, client: RegistryClient,
             environ: dict[str, str] | None = None) -> dict[str, SourceOutcome]:
    async def go() -> dict[str, SourceOutcome]:
        return {
            source.name: await run_source(settings, source, client=client, push_attempts=3, environ=environ)
            for source in settings.sources
        }

    return setup.runner.run(go())


def image_errors(outcome: SourceOutcome) -> dict[str, str]:
    return {str(e.image): e.message for e in outcome.result.errors}


def updated_files(outcome: SourceOutcome) -> set[str]:
    return {change.file for change in outcome.result.updates} if outcome.pushed else set()


def assert_files(setup: Setup, source: str, done: set[str], extra: dict[str, str] | None = None) -> None:
    """``main`` of ``source`` holds exactly: updated texts for ``done``, originals for the rest, ``extra``."""
    expected = {
        name: setup.updated[source][name] if name in done else text
        for name, text in setup.original[source].items()
    }
    expected.update(extra or {})
    assert tree_of(setup.bare(source)) == expected


def assert_history_safe(setup: Setup, humans: dict[str, list[str]]) -> None:
    for source in ("alpha", "beta"):
        bare = setup.bare(source)
        for commit in humans.get(source, []) + human_commits(bare):
            assert is_ancestor(bare, commit, "main"), f"{source}: human commit {commit} lost"
        for line in (bare / "logs" / "refs" / "heads" / "main").read_text().splitlines():
            old, new = line.split()[:2]
            if set(old) != {"0"}:
                assert is_ancestor(bare, old, new), f"{source}: main moved from {old} to {new}, not forward"
        subprocess.run(["git", "fsck", "--no-progress", "--no-dangling"], cwd=bare, check=True,
                       capture_output=True)


def assert_working_copies_sane(setup: Setup, settings: Settings) -> None:
    """No temporary or stray file in a working copy; every tracked YAML file whole (original or updated)."""
    for source in ("alpha", "beta"):
        work = workdir_for(settings.cache_dir, source)
        if not work.exists():
            continue
        files = {
            p.relative_to(work).as_posix(): p for p in work.rglob("*")
            if p.is_file() and ".git" not in p.relative_to(work).parts
        }
        allowed = set(setup.original[source]) | {n for n in files if n.startswith(("HUMAN-", "NOTES"))}
        assert set(files) <= allowed, f"stray files in {source}'s working copy: {set(files) - allowed}"
        for name, path in files.items():
            if name in setup.original[source]:
                text = path.read_text()
                assert text in (setup.original[source][name], setup.updated[source][name]), name
                if name.endswith(".yaml"):
                    parse_yaml(text, filename=name)


def human_commit(setup: Setup, source: str, tag: str) -> str:
    assert source == "alpha"
    setup.notes.append(tag)
    return commit_to_bare(setup.bare(source), {f"NOTES-{tag}.md": f"{tag}\n"}, message=f"Human {tag}")


def complete_and_check(setup: Setup, settings: Settings, client: RegistryClient, humans: dict[str, list[str]],
                       environ: dict[str, str] | None = None) -> None:
    """A human pushes, then a clean pass completes everything; the final trees are exact."""
    humans.setdefault("alpha", []).append(human_commit(setup, "alpha", "after"))
    clean = run_pass(setup, settings, client, environ)
    for name, outcome in clean.items():
        assert outcome.ok, (name, outcome.error, outcome.result.errors)
    for source in ("alpha", "beta"):
        extra = {f"NOTES-{h}.md": f"{h}\n" for h in setup.notes if source == "alpha"}
        extra.update({f"HUMAN-{i + 1}.md": f"human change {i + 1}\n"
                      for i in range(len(human_commits(setup.bare(source))))})
        assert_files(setup, source, set(setup.updated[source]), extra)
    assert_history_safe(setup, humans)
    assert_working_copies_sane(setup, settings)
    second = run_pass(setup, settings, client, environ)  # nothing left to do: no commit
    assert all(o.ok and o.commit is None for o in second.values())


# ------------------------------------------------------------------------------------------ registry faults

WEB_TAGS = r"^/v2/team/web/tags/list"
APP_MANIFESTS = r"^/v2/team/app/manifests/"

REGISTRY_FAULTS: dict[str, tuple[Fault, str]] = {
    # name: (rule, the image it breaks)
    "500": (Fault("status", WEB_TAGS, status=500), "team/web"),
    "502": (Fault("status", WEB_TAGS, status=502), "team/web"),
    "503": (Fault("status", WEB_TAGS, status=503), "team/web"),
    "429-retry-after": (Fault("rate_limit", WEB_TAGS, retry_after="1"), "team/web"),
    "429-no-retry-after": (Fault("rate_limit", WEB_TAGS), "team/web"),
    "delay-past-timeout": (Fault("delay", WEB_TAGS, delay=TIMEOUT + 1.5), "team/web"),
    "reset": (Fault("reset", WEB_TAGS), "team/web"),
    "truncated-body": (Fault("truncate", WEB_TAGS), "team/web"),
    "invalid-json": (Fault("invalid_json", WEB_TAGS), "team/web"),
    "huge-body": (Fault("huge_body", WEB_TAGS, huge_size=2 << 20), "team/web"),
    "huge-body-declared": (Fault("huge_body", WEB_TAGS, huge_size=2 << 20, declare_length=True), "team/web"),
    "manifest-digest-mismatch": (Fault("digest_mismatch", APP_MANIFESTS), "team/app"),
}
FILE_OF = {"team/web": "apps/web.yaml", "team/app": "apps/app.yaml"}


@pytest.mark.parametrize("name", list(REGISTRY_FAULTS))
def test_registry_fault_costs_only_its_image_and_the_next_pass_completes(name: str, setup: Setup) -> None:
    rule, image = REGISTRY_FAULTS[name]
    humans = {"alpha": [human_commit(setup, "alpha", "before")]}
    settings = setup.settings()
    setup.proxy.set_rules(rule)

    client = setup.client()  # one client for the faulty and the clean pass, as in the daemon
    try:
        faulty = run_pass(setup, settings, client)
        assert setup.proxy.injected[rule.label] >= 1, setup.proxy.log
        alpha, beta = faulty["alpha"], faulty["beta"]
        # the error names the image; it is reported, not raised, and the source itself did not fail
        assert alpha.error is None, alpha.error
        errors = image_errors(alpha)
        assert list(errors) == [f"{setup.proxy.host}/{image}"], errors
        assert image in next(iter(errors.values()))
        # everything else was updated and pushed in the same pass
        done = set(setup.updated["alpha"]) - {FILE_OF[image]} - {"README.md", "policies/api.yaml"}
        assert updated_files(alpha) == done
        assert_files(setup, "alpha", done, {"NOTES-before.md": "before\n"})
        assert beta.ok and beta.pushed, (beta.error, beta.result.errors)
        assert_files(setup, "beta", {"db/db.yaml"})
        assert_working_copies_sane(setup, settings)

        setup.proxy.clear()
        complete_and_check(setup, settings, client, humans)
    finally:
        setup.runner.run(client.aclose())
        client.cache.close()


@pytest.mark.parametrize("rule", [
    Fault("status", WEB_TAGS, status=503, times=1),
    Fault("reset", WEB_TAGS, times=1),
    Fault("truncate", WEB_TAGS, times=1),
    Fault("digest_mismatch", APP_MANIFESTS, times=1),
], ids=lambda r: r.label)
def test_a_single_transient_fault_is_absorbed_by_the_retry(rule: Fault, setup: Setup) -> None:
    settings = setup.settings()
    setup.proxy.set_rules(rule)
    client = setup.client()
    try:
        outcomes = run_pass(setup, settings, client)
    finally:
        setup.runner.run(client.aclose())
        client.cache.close()
    assert setup.proxy.injected[rule.label] == 1
    assert all(o.ok and o.pushed for o in outcomes.values()), [o.result.errors for o in outcomes.values()]
    assert_files(setup, "alpha", set(setup.updated["alpha"]))
    assert_files(setup, "beta", set(setup.updated["beta"]))


# ------------------------------------------------------------------------------------------ git faults


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nobody listens once the socket is closed


def run_with_client(setup: Setup, settings: Settings, check: Callable[[RegistryClient], None]) -> None:
    client = setup.client(settings.cache_dir)
    try:
        check(client)
    finally:
        setup.runner.run(client.aclose())
        client.cache.close()


def assert_source_failed_alone(setup: Setup, outcomes: dict[str, SourceOutcome], alpha_main: str,
                               what: str) -> None:
    alpha, beta = outcomes["alpha"], outcomes["beta"]
    assert alpha.error is not None and "alpha" in alpha.error and what in alpha.error, alpha.error
    assert not alpha.pushed
    assert git("rev-parse", "main", cwd=setup.alpha).strip() == alpha_main
    assert beta.ok and beta.pushed, (beta.error, beta.result.errors)
    assert_files(setup, "beta", {"db/db.yaml"})


def test_git_remote_unreachable_closed_port_then_fixed(setup: Setup) -> None:
    before = git("rev-parse", "main", cwd=setup.alpha).strip()
    broken = setup.settings(alpha_url=f"http://127.0.0.1:{closed_port()}/alpha.git")

    def check(client: RegistryClient) -> None:
        outcomes = run_pass(setup, broken, client)
        assert_source_failed_alone(setup, outcomes, before, "127.0.0.1")
        assert "connect" in (outcomes["alpha"].error or "").lower()
        # the configuration is fixed (a new source name gets a new working copy)
        complete_and_check(setup, setup.settings(), client, {})

    run_with_client(setup, broken, check)


def test_git_remote_vanishes_between_passes_then_returns(setup: Setup) -> None:
    settings = setup.settings()

    def check(client: RegistryClient) -> None:
        setup.runner.run(run_source(settings, settings.sources[0], client=client, dry_run=True))  # clone only
        before = git("rev-parse", "main", cwd=setup.alpha).strip()
        moved = setup.alpha.with_name("alpha-away.git")
        setup.alpha.rename(moved)
        try:
            outcomes = run_pass(setup, settings, client)
        finally:
            moved.rename(setup.alpha)
        assert_source_failed_alone(setup, outcomes, before, "fetch")
        complete_and_check(setup, settings, client, {})

    run_with_client(setup, settings, check)


def test_push_rejected_by_a_racing_human_push_is_replanned_on_top(setup: Setup) -> None:
    settings = setup.settings()
    arm_push_race(setup.alpha, 1)

    def check(client: RegistryClient) -> None:
        outcomes = run_pass(setup, settings, client)
        assert all(o.ok and o.pushed for o in outcomes.values()), outcomes["alpha"].error
        racer = human_commits(setup.alpha)
        assert len(racer) == 1
        assert git("rev-parse", "main^", cwd=setup.alpha).strip() == racer[0]  # ours rebuilt on top
        assert_files(setup, "alpha", set(setup.updated["alpha"]), {"HUMAN-1.md": "human change 1\n"})
        assert_history_safe(setup, {})

    run_with_client(setup, settings, check)


def test_push_rejected_every_time_gives_up_without_forcing(setup: Setup) -> None:
    settings = setup.settings()
    arm_push_race(setup.alpha, 3)  # run_pass allows 3 attempts

    def check(client: RegistryClient) -> None:
        outcomes = run_pass(setup, settings, client)
        alpha = outcomes["alpha"]
        assert alpha.error is not None and "push rejected 3 times" in alpha.error
        assert not alpha.pushed and alpha.result.updates == ()
        assert outcomes["beta"].ok and outcomes["beta"].pushed
        racers = human_commits(setup.alpha)
        assert len(racers) == 3 and git("rev-parse", "main", cwd=setup.alpha).strip() == racers[-1]
        assert_files(setup, "alpha", set(), {f"HUMAN-{i}.md": f"human change {i}\n" for i in (1, 2, 3)})
        assert_history_safe(setup, {})
        complete_and_check(setup, settings, client, {})

    run_with_client(setup, settings, check)


def test_git_authentication_failing_then_fixed(
    tmp_path: Path, proxy: FaultProxy, seeded_registry: RegistryServer, git_http_server: Any,
    runner: asyncio.Runner,
) -> None:
    setup = make_setup(tmp_path, proxy, seeded_registry, runner, alpha_parent=git_http_server.root)
    setup.alpha_url = git_http_server.url_for(setup.alpha)
    settings = setup.settings(auth="{token_env: GIT_TOKEN}")
    wrong = "Wrong-Token-5c2e9b71"

    def check(client: RegistryClient) -> None:
        before = git("rev-parse", "main", cwd=setup.alpha).strip()
        outcomes = run_pass(setup, settings, client, environ={"GIT_TOKEN": wrong})
        assert_source_failed_alone(setup, outcomes, before, "alpha")
        assert wrong not in (outcomes["alpha"].error or "")
        complete_and_check(setup, settings, client, {}, environ={"GIT_TOKEN": GIT_HTTP_TOKEN})

    run_with_client(setup, settings, check)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Any]:
    # IMAGE_UPDATER_TEST_DISK=simulated forces the ENOSPC simulation where mounting would work
    allow_mount = os.environ.get("IMAGE_UPDATER_TEST_DISK") != "simulated"
    with small_disk(tmp_path / "small-disk", size_mib=8, allow_mount=allow_mount) as small:
        print(f"disk-full method: {small.method}")
        if small.method == "simulated":  # say so in the summary: git's side of a full disk is not exercised
            warnings.warn("no tmpfs or loop mount here: the full disk is simulated for Python writes only",
                          stacklevel=1)
        yield small


def test_cache_disk_full_before_the_pass(
    tmp_path: Path, proxy: FaultProxy, seeded_registry: RegistryServer, disk: Any, record_property: Any,
    runner: asyncio.Runner,
) -> None:
    """The cache dir's disk is full from the start: every source fails cleanly; freed, the next pass works."""
    record_property("disk_full_method", disk.method)
    setup = make_setup(tmp_path, proxy, seeded_registry, runner, cache_dir=disk.path / "cache")
    settings = setup.settings()

    def check(client: RegistryClient) -> None:
        # a dry run clones alpha into the cache
        setup.runner.run(run_source(settings, settings.sources[0], client=client, dry_run=True))
        before = {s: git("rev-parse", "main", cwd=setup.bare(s)).strip() for s in ("alpha", "beta")}
        disk.fill()
        try:
            outcomes = run_pass(setup, settings, client)
        finally:
            disk.free()
        for source, outcome in outcomes.items():
            if disk.method != "simulated":  # git itself runs out of space (the simulation covers Python only)
                assert not outcome.ok, source
            assert not outcome.pushed or tree_of(setup.bare(source)) == setup.updated[source]
            if not outcome.pushed:
                assert git("rev-parse", "main", cwd=setup.bare(source)).strip() == before[source]
        assert_working_copies_sane(setup, settings)
        complete_and_check(setup, settings, client, {})

    run_with_client(setup, settings, check)


def test_cache_disk_full_while_writing_the_files(
    tmp_path: Path, proxy: FaultProxy, seeded_registry: RegistryServer, disk: Any,
    monkeypatch: pytest.MonkeyPatch, runner: asyncio.Runner,
) -> None:
    """The disk fills up between planning and writing: no file is half-written, nothing is pushed."""
    import image_updater.checkout as checkout

    setup = make_setup(tmp_path, proxy, seeded_registry, runner, cache_dir=disk.path / "cache")
    settings = setup.settings()
    real_apply = checkout.apply_result

    def fill_then_apply(root: Path, planned: Any, **options: Any) -> Any:
        disk.fill()
        return real_apply(root, planned, **options)

    monkeypatch.setattr(checkout, "apply_result", fill_then_apply)

    def check(client: RegistryClient) -> None:
        before = {s: git("rev-parse", "main", cwd=setup.bare(s)).strip() for s in ("alpha", "beta")}
        try:
            outcomes = run_pass(setup, settings, client)
        finally:
            disk.free()
        for source, outcome in outcomes.items():
            assert not outcome.pushed, source
            assert not outcome.ok
            messages = " ".join([outcome.error or "", *(e.message for e in outcome.result.errors)])
            assert "No space left" in messages or "not written" in messages, messages
            assert git("rev-parse", "main", cwd=setup.bare(source)).strip() == before[source]
        assert_working_copies_sane(setup, settings)
        monkeypatch.setattr(checkout, "apply_result", real_apply)
        complete_and_check(setup, settings, client, {})

    run_with_client(setup, settings, check)


def test_cache_disk_full_between_writing_and_committing(
    tmp_path: Path, proxy: FaultProxy, seeded_registry: RegistryServer, disk: Any,
    monkeypatch: pytest.MonkeyPatch, runner: asyncio.Runner,
) -> None:
    """The files are written, then the disk fills up: the commit fails as a source error, nothing pushed."""
    import image_updater.writeback as writeback

    setup = make_setup(tmp_path, proxy, seeded_registry, runner, cache_dir=disk.path / "cache")
    settings = setup.settings()
    real_commit = writeback.commit_and_push

    def fill_then_commit(*args: Any, **kwargs: Any) -> Any:
        disk.fill()
        return real_commit(*args, **kwargs)

    def check(client: RegistryClient) -> None:
        monkeypatch.setattr(writeback, "commit_and_push", fill_then_commit)
        try:
            outcomes = run_pass(setup, settings, client)
        finally:
            disk.free()
            monkeypatch.setattr(writeback, "commit_and_push", real_commit)
        alpha = outcomes["alpha"]
        assert alpha.error is not None and "commit" in alpha.error, alpha.error
        assert not alpha.pushed and alpha.result.updates == ()
        assert_files(setup, "alpha", set())
        complete_and_check(setup, settings, client, {})

    run_with_client(setup, settings, check)


def test_cache_disk_full_while_resolving(
    tmp_path: Path, proxy: FaultProxy, seeded_registry: RegistryServer, disk: Any,
    monkeypatch: pytest.MonkeyPatch, runner: asyncio.Runner,
) -> None:
    """The disk fills up after the sync: the metadata cache cannot be written, which costs the cache entries
    but not the images (they resolve); the file writes then fail whole, nothing is pushed."""
    import image_updater.checkout as checkout

    setup = make_setup(tmp_path, proxy, seeded_registry, runner, cache_dir=disk.path / "cache")
    settings = setup.settings()
    real_plan = checkout.plan_directory

    async def fill_then_plan(*args: Any, **kwargs: Any) -> Any:
        disk.fill()
        return await real_plan(*args, **kwargs)

    def check(client: RegistryClient) -> None:
        monkeypatch.setattr(checkout, "plan_directory", fill_then_plan)
        try:
            outcomes = run_pass(setup, settings, client)
        finally:
            disk.free()
            monkeypatch.setattr(checkout, "plan_directory", real_plan)
        alpha = outcomes["alpha"]
        assert alpha.error is None and not alpha.pushed
        assert alpha.result.errors and all(e.image is None and "No space left" in e.message
                                           for e in alpha.result.errors), alpha.result.errors
        assert not outcomes["beta"].ok and not outcomes["beta"].pushed  # its first clone had no room
        assert_files(setup, "alpha", set())
        assert_working_copies_sane(setup, settings)
        complete_and_check(setup, settings, client, {})

    run_with_client(setup, settings, check)


# ------------------------------------------------------------------------------------------ the daemon


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(part.split("=", 1) for part in line[len(name) + 1 : line.index("}")].split(",") if part)
        found = {k: v.strip('"') for k, v in found.items()}
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class DaemonProcess:
    def __init__(self, config: Path, log: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.up = False
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "image_updater", "run", "-c", str(config), "--log-level", "info"],
            stdout=subprocess.DEVNULL, stderr=self._out, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(self.url + path, timeout=5)
        except httpx.TransportError:
            return None

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the daemon exited while waiting for {what}:\n{self.tail()}"
            if condition():
                return
            health = self.get("/healthz")
            if health is not None and health.status_code == 200:
                self.up = True
            else:  # once up, the daemon must stay up and healthy whatever the faults
                assert not self.up, f"/healthz failed:\n{self.tail()}"
            time.sleep(0.2)
        raise AssertionError(f"{what} did not happen within {timeout:.0f}s\n{self.tail()}")

    def metrics(self) -> str:
        response = self.get("/metrics")
        assert response is not None and response.status_code == 200
        return response.text

    def tail(self) -> str:
        self._out.flush()
        return self.log.read_text()[-4000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._out.close()


@pytest.fixture
def daemon_setup(setup: Setup) -> Iterator[tuple[Setup, Callable[[], DaemonProcess]]]:
    """(setup, start): ``start()`` launches the daemon (interval 2s) and waits until /healthz answers."""
    port = free_port()
    lines = [
        "interval: 2s",
        f"cache_dir: {setup.cache_dir}",
        "sources:",
        f"  - {{name: alpha, url: {setup.alpha}}}",
        f"  - {{name: beta, url: {setup.beta}}}",
        "commit: {author_name: Image Bot, author_email: bot@example.com}",
        "registries:",
        f"  - {{prefix: '{setup.proxy.host}', insecure: true}}",
        f"  - {{prefix: '{setup.registry.host}', insecure: true}}",
        f"http: {{listen: '127.0.0.1:{port}'}}",
    ]
    config = setup.tmp / "daemon.yaml"
    config.write_text("\n".join(lines) + "\n")
    started: list[DaemonProcess] = []

    def start() -> DaemonProcess:
        daemon = DaemonProcess(config, setup.tmp / "daemon.log", port)
        started.append(daemon)
        daemon.wait_for(lambda: daemon.up, 60, "/healthz answering")
        return daemon

    try:
        yield setup, start
    finally:
        for daemon in started:
            daemon.stop()


@pytest.mark.slow
def test_daemon_survives_a_failing_registry_and_a_push_race_and_completes(
    daemon_setup: tuple[Setup, Callable[[], DaemonProcess]],
) -> None:
    setup, start = daemon_setup
    # web's registry answers 503 to everything, and alpha's first push loses a race against a human
    setup.proxy.set_rules(Fault("status", r"^/v2/team/web/", status=503))
    arm_push_race(setup.alpha, 1)
    daemon = start()
    daemon.wait_for(lambda: (r := daemon.get("/readyz")) is not None and r.status_code == 200, 60, "a pass")
    daemon.wait_for(lambda: metric(daemon.metrics(), "image_updater_errors_total", kind="image") >= 1, 60,
                    "the image error counted")
    daemon.wait_for(lambda: tree_of(setup.beta) == setup.updated["beta"], 60, "beta updated")
    daemon.wait_for(lambda: human_commits(setup.alpha) != [] and
                    tree_of(setup.alpha)["apps/app.yaml"] == setup.updated["alpha"]["apps/app.yaml"],
                    60, "alpha's other images pushed on top of the racing human commit")
    assert tree_of(setup.alpha)["apps/web.yaml"] == setup.original["alpha"]["apps/web.yaml"]
    metrics = daemon.metrics()
    assert metric(metrics, "image_updater_registry_requests_total", registry=setup.proxy.host,
                  status="503") >= 1
    assert metric(metrics, "image_updater_passes_total", source="alpha", outcome="errors") >= 1

    setup.proxy.clear()  # the registry recovers: the daemon finishes the work on its own, no restart
    web = setup.updated["alpha"]["apps/web.yaml"]
    daemon.wait_for(lambda: tree_of(setup.alpha).get("apps/web.yaml") == web, 60,
                    "web updated after the registry recovered")
    expected = {**setup.updated["alpha"], "HUMAN-1.md": "human change 1\n"}
    assert tree_of(setup.alpha) == expected
    assert_history_safe(setup, {})
    daemon.wait_for(lambda: metric(daemon.metrics(), "image_updater_passes_total", source="alpha",
                                   outcome="success") >= 1, 30, "a successful alpha pass")
    assert daemon.stop() == 0


@pytest.mark.slow
def test_daemon_survives_an_unreachable_git_remote(
    daemon_setup: tuple[Setup, Callable[[], DaemonProcess]],
) -> None:
    setup, start = daemon_setup
    moved = setup.alpha.with_name("alpha-away.git")
    setup.alpha.rename(moved)
    try:
        daemon = start()
        daemon.wait_for(lambda: metric(daemon.metrics(), "image_updater_errors_total", kind="source") >= 1,
                        60, "the source error counted")
        daemon.wait_for(lambda: tree_of(setup.beta) == setup.updated["beta"], 60, "beta updated")
        assert metric(daemon.metrics(), "image_updater_passes_total", source="alpha", outcome="failed") >= 1
    finally:
        moved.rename(setup.alpha)
    daemon.wait_for(lambda: tree_of(setup.alpha) == setup.updated["alpha"], 60, "alpha updated once back")
    assert_history_safe(setup, {})
    assert daemon.stop() == 0


def test_the_proxy_really_injects_what_it_says(proxy: FaultProxy, seeded_registry: RegistryServer) -> None:
    """The proxy itself: each kind observed with a raw client (so the matrix cannot pass vacuously)."""
    url = proxy.url + "/v2/team/web/tags/list"
    with httpx.Client() as http:
        proxy.set_rules(Fault("status", status=502, times=1))
        assert http.get(url).status_code == 502
        assert http.get(url).json()["tags"]  # times=1: the next one is forwarded
        proxy.set_rules(Fault("rate_limit", retry_after="7", times=1))
        answer = http.get(url)
        assert answer.status_code == 429 and answer.headers["retry-after"] == "7"
        proxy.set_rules(Fault("reset", times=1))
        with pytest.raises(httpx.TransportError):
            http.get(url)
        proxy.set_rules(Fault("truncate", times=1))
        with pytest.raises(httpx.TransportError):
            http.get(url)
        proxy.set_rules(Fault("invalid_json", times=1))
        with pytest.raises(ValueError):
            http.get(url).json()
        proxy.set_rules(Fault("delay", delay=1.0, times=1))
        with pytest.raises(httpx.TimeoutException):
            http.get(url, timeout=0.3)
        proxy.set_rules(Fault("huge_body", huge_size=1 << 20, declare_length=True, times=1))
        assert http.get(url).headers["content-length"] == str(1 << 20)
        manifest = proxy.url + "/v2/team/web/manifests/1.0.0"
        accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
        proxy.set_rules(Fault("digest_mismatch", times=1))
        tampered = http.get(manifest, headers=accept)
        assert sha256(tampered.content) != tampered.headers["docker-content-digest"]
        honest = http.get(manifest, headers=accept)
        assert sha256(honest.content) == honest.headers["docker-content-digest"]
        assert proxy.injected == {"status_502": 1, "rate_limit_retry_after": 1, "reset": 1, "truncate": 1,
                                  "invalid_json": 1, "delay": 1, "huge_body": 1, "digest_mismatch": 1}

        # probabilistic rules are reproducible from the seed
        def fired(seed: int) -> list[bool]:
            proxy.reseed(seed)
            proxy.set_rules(Fault("status", probability=0.5))
            return [http.get(proxy.url + "/v2/").status_code == 503 for _ in range(16)]

        first = fired(3)
        assert fired(3) == first and True in first and False in first


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
