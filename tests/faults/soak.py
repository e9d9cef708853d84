"""The soak run (issue 7, part 3): many passes with seeded random faults, new tags and human commits.

``run_soak(passes, seed, workdir)`` builds a real distribution registry behind a :class:`FaultProxy`, a bare
repository with three policy-driven images (semver through an annotation, numerical through an annotation,
``glob`` ordered by build time through a policy file and a setter marker) and runs ``passes`` passes of
``run_source`` with one long-lived registry client, as the daemon does. Before each pass, with fixed
probabilities drawn from ``random.Random(seed)``:

- a registry fault rule is installed for that pass (any kind the proxy knows, on any image, for every request
  or a few, or on a coin), or none;
- the remote loses its push race against a human (the ``pre-receive`` hook), or vanishes for the pass;
- new tags are pushed (inside and outside the policies' ranges, newer and older build times);
- a human commits: more replicas in a manifest, a note in a README, a comment in the kustomization.

At the end the faults stop, passes run until one changes nothing, and the result is checked against what
the policies say (computed independently from the tags pushed, with ``Policy.choose``), the human edits
(every file byte for byte), every human commit being an ancestor of ``main``, the branch only ever moving
forward (reflog), and the process's RSS. The returned report holds the figures docs/reliability.md records.
"""

from __future__ import annotations

import asyncio
import gc
import random
import re
import resource
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from image_updater.registry import BodyLimits, MetadataCache, RegistryClient, RegistryOptions, RetryPolicy
from image_updater.settings import load_settings
from image_updater.writeback import run_source
from tests.faults.gitfaults import arm_push_race, disarm_push_race, human_commits, install_push_race
from tests.faults.proxy import Fault, FaultProxy
from tests.servers import ImagePusher, RegistryServer
from tests.servers.gitserver import make_bare_repo

__all__ = ["SoakReport", "run_soak"]

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TIMEOUT = 1.0

WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    image-updater.io/policy.web: "semver:^1.0"
spec:
  replicas: {replicas}
  template:
    spec:
      containers:
        - name: web
          image: {proxy}/soak/web:{web}   # the web tier
"""
API = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  annotations:
    image-updater.io/policy.api: numerical
spec:
  template:
    spec:
      containers:
        - name: api
          image: '{proxy}/soak/api:{api}'
"""
KUSTOMIZATION = """\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [web.yaml, api.yaml]
# {comment}
images:
  - name: {proxy}/soak/worker
    newTag: {worker}  # {{"$imagepolicy": "soak:worker:tag"}}
"""
WORKER_POLICY = """\
apiVersion: image-updater.io/v1alpha1
kind: ImagePolicy
metadata:
  name: worker
  namespace: soak
spec:
  image: {proxy}/soak/worker
  policy: "glob:build-*"
"""
POLICIES = {"soak/web": "semver:^1.0", "soak/api": "numerical", "soak/worker": "glob:build-*"}


@dataclass
class SoakReport:
    passes: int = 0
    seconds: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    passes_with_faults: int = 0
    updates_pushed: int = 0
    commits_pushed: int = 0
    passes_with_errors: int = 0
    source_errors: int = 0
    image_errors: int = 0
    tags_pushed: int = 0
    human_commits: int = 0
    human_commits_preserved: int = 0
    racing_human_commits: int = 0
    final_passes: int = 0
    rss_kib_start: int = 0  # after the warm-up passes
    rss_kib_end: int = 0
    rss_kib_peak: int = 0
    expected: dict[str, str] = field(default_factory=dict)
    found: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["faults"] = dict(sorted(self.faults.items()))
        return data


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


class _World:
    """The registry, the images and their tags, the remote and a human with a clone of it."""

    def __init__(self, workdir: Path, rng: random.Random) -> None:
        self.workdir = workdir
        self.rng = rng
        self.registry = RegistryServer(work_dir=workdir / "registry").start()
        self.pusher = ImagePusher(self.registry.url)
        self.proxy = FaultProxy(self.registry.url, seed=rng.randrange(1 << 30)).start()
        self.created: dict[str, dict[str, datetime]] = {repo: {} for repo in POLICIES}
        self.clock = T0
        self.replicas = 1
        self.comment = "maintained by the platform team"
        self.notes: list[str] = []
        self.tags_pushed = 0
        for repo, tags in {"soak/web": ["1.0.0", "2.0.0"], "soak/api": ["1", "2"],
                           "soak/worker": ["build-1"]}.items():
            for tag in tags:
                self.push(repo, tag)
        self.current = {"web": "1.0.0", "api": "1", "worker": "build-1"}
        self.bare = make_bare_repo(workdir / "remote" / "soak.git", self.files(self.current))
        _git("config", "core.logAllRefUpdates", "always", cwd=self.bare)
        install_push_race(self.bare)
        self.human = workdir / "human"
        _git("clone", "-q", str(self.bare), str(self.human), cwd=workdir)
        for key, value in (("user.name", "A Human"), ("user.email", "human@example.com")):
            _git("config", key, value, cwd=self.human)
        self.human_shas: list[str] = []

    def close(self) -> None:
        self.proxy.stop()
        self.pusher.close()
        self.registry.stop()

    def files(self, tags: dict[str, str]) -> dict[str, str]:
        fmt = {"proxy": self.proxy.host, **tags}
        notes = "".join(f"- {note}\n" for note in self.notes)
        return {
            "apps/web.yaml": WEB.format(replicas=self.replicas, **fmt),
            "apps/api.yaml": API.format(**fmt),
            "apps/kustomization.yaml": KUSTOMIZATION.format(comment=self.comment, **fmt),
            "policies/worker.yaml": WORKER_POLICY.format(**fmt),
            "README.md": f"# soak\n{notes}",
        }

    # -- the registry side ---------------------------------------------------------------------------------

    def push(self, repo: str, tag: str) -> None:
        # build times move forward, except now and then an image built earlier is pushed late
        self.clock += timedelta(hours=1)
        created = self.clock - timedelta(days=30) if self.rng.random() < 0.15 else self.clock
        self.pusher.push(repo, tag, created=created)
        self.created[repo][tag] = created
        self.tags_pushed += 1

    def new_tags(self) -> None:
        repo = self.rng.choice(list(POLICIES))
        known = self.created[repo]
        if repo == "soak/web":
            major = 1 if self.rng.random() < 0.8 else self.rng.choice([0, 2, 3])
            minor, patch = self.rng.randrange(30), self.rng.randrange(30)
            suffix = self.rng.choice(["", "", "", "-rc.1", "-alpine"])
            tag = f"{major}.{minor}.{patch}{suffix}"
        elif repo == "soak/api":
            tag = str(self.rng.randrange(1, 500))
        else:
            n = len(known)
            tag = self.rng.choice([f"build-{n + 1}", f"nightly-{n}", f"build-{n}x"])
        if tag not in known:
            self.push(repo, tag)

    def expected_tags(self) -> dict[str, str]:
        from image_updater.policies import TagInfo, parse_policy

        out = {}
        for repo, policy_text in POLICIES.items():
            infos = [TagInfo(tag, created=created) for tag, created in self.created[repo].items()]
            name = repo.split("/")[1]
            chosen = parse_policy(policy_text).choose(infos, self.current[name])
            assert chosen is not None
            out[name] = chosen.tag
        return out

    # -- the human -----------------------------------------------------------------------------------------

    def human_commit(self) -> None:
        _git("fetch", "-q", "origin", cwd=self.human)
        _git("reset", "-q", "--hard", "origin/main", cwd=self.human)
        what = self.rng.randrange(3)
        if what == 0:
            self.replicas += 1
            path = self.human / "apps" / "web.yaml"
            path.write_text(re.sub(r"replicas: \d+", f"replicas: {self.replicas}", path.read_text()))
        elif what == 1:
            self.notes.append(f"note {len(self.notes) + 1}")
            (self.human / "README.md").write_text("# soak\n" + "".join(f"- {n}\n" for n in self.notes))
        else:
            old = self.comment
            self.comment = f"maintained by team {self.rng.randrange(1000)}"
            path = self.human / "apps" / "kustomization.yaml"
            path.write_text(path.read_text().replace(f"# {old}\n", f"# {self.comment}\n"))
        _git("commit", "-qam", f"human change {len(self.human_shas) + 1}", cwd=self.human)
        _git("push", "-q", "origin", "HEAD:main", cwd=self.human)
        self.human_shas.append(_git("rev-parse", "HEAD", cwd=self.human).strip())


def _random_fault(rng: random.Random) -> Fault:
    image = rng.choice(list(POLICIES))
    where = rng.choice([f"^/v2/{image}/tags/list", f"^/v2/{image}/manifests/", f"^/v2/{image}/", "^/v2/"])
    kind = rng.choice(["status", "status", "rate_limit", "delay", "reset", "truncate", "invalid_json",
                       "huge_body", "digest_mismatch"])
    times = rng.choice([None, 1, 2])
    probability = rng.choice([1.0, 1.0, 0.5])
    return Fault(
        kind, where,  # type: ignore[arg-type]
        status=rng.choice([500, 502, 503]), retry_after=rng.choice([None, "0", "1"]),
        delay=TIMEOUT + 0.5, huge_size=rng.choice([300_000, 2_000_000]), declare_length=rng.random() < 0.5,
        times=times, probability=probability,
    )


def run_soak(passes: int, seed: int, workdir: Path, *, warmup: int = 25) -> SoakReport:
    """Run the soak; ``report.problems`` lists every violated invariant (empty when all held)."""
    rng = random.Random(seed)
    report = SoakReport()
    world = _World(workdir, rng)
    config = workdir / "config.yaml"
    config.write_text(f"cache_dir: {workdir / 'cache'}\nsources:\n  - {{name: soak, url: {world.bare}}}\n"
                      "commit: {author_name: Image Bot, author_email: bot@example.com}\n")
    settings = load_settings(config, env={})
    source = settings.sources[0]
    away = world.bare.with_name("soak-away.git")
    started = time.monotonic()
    try:
        with asyncio.Runner() as runner, MetadataCache.in_dir(settings.cache_dir) as cache:
            client = RegistryClient(
                [RegistryOptions(prefix=world.proxy.host, insecure=True, timeout=TIMEOUT)], cache=cache,
                retry=RetryPolicy(attempts=3, initial=0.02, maximum=0.1),
                limits=BodyLimits(tags=256 * 1024, manifest=64 * 1024, config=64 * 1024),
                docker_config=workdir / "no-docker-config.json",
            )

            def one_pass() -> Any:
                return runner.run(run_source(settings, source, client=client, push_attempts=3))

            for number in range(1, passes + 1):
                if number == warmup:
                    gc.collect()
                    report.rss_kib_start = _rss_kib()
                faults_before = world.proxy.total_injected
                world.proxy.set_rules(*([_random_fault(rng)] if rng.random() < 0.35 else []))
                for _ in range(rng.choice([0, 0, 1, 2])):
                    world.new_tags()
                if rng.random() < 0.2:
                    world.human_commit()
                racing = rng.random() < 0.06
                vanish = not racing and rng.random() < 0.03
                if racing:
                    arm_push_race(world.bare, rng.choice([1, 1, 3]))
                if vanish:
                    world.bare.rename(away)
                try:
                    outcome = one_pass()
                finally:
                    if vanish:
                        away.rename(world.bare)
                    disarm_push_race(world.bare)
                report.passes += 1
                injected = world.proxy.total_injected - faults_before
                report.faults["git_remote_unreachable"] += vanish
                if racing and human_commits(world.bare)[report.racing_human_commits:]:
                    report.faults["git_push_race"] += 1
                    report.racing_human_commits = len(human_commits(world.bare))
                if injected or vanish or racing:
                    report.passes_with_faults += 1
                if outcome.pushed:
                    report.commits_pushed += 1
                    report.updates_pushed += len(outcome.result.updates)
                    for change in outcome.result.updates:
                        world.current[change.image.rsplit("/", 1)[1]] = change.new_tag
                report.source_errors += outcome.error is not None
                report.image_errors += sum(1 for e in outcome.result.errors if e.image)
                report.passes_with_errors += not outcome.ok
                if outcome.result.errors and any(e.image is None for e in outcome.result.errors):
                    report.problems.append(f"pass {number}: file-level errors {outcome.result.errors}")

            # the faults stop; the next passes must complete the work
            world.proxy.clear()
            for _ in range(5):
                outcome = one_pass()
                report.final_passes += 1
                if not outcome.ok:
                    report.problems.append(f"final pass failed: {outcome.error} {outcome.result.errors}")
                if outcome.pushed:
                    report.updates_pushed += len(outcome.result.updates)
                    report.commits_pushed += 1
                    for change in outcome.result.updates:
                        world.current[change.image.rsplit("/", 1)[1]] = change.new_tag
                else:
                    break
            runner.run(client.aclose())
            gc.collect()
            report.rss_kib_end = _rss_kib()
            report.rss_kib_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        report.seconds = round(time.monotonic() - started, 1)
        for kind, count in world.proxy.injected.items():
            report.faults[kind] += count
        report.tags_pushed = world.tags_pushed
        _check(world, report)
    finally:
        world.close()
    return report


def _check(world: _World, report: SoakReport) -> None:
    expected_tags = world.expected_tags()
    report.expected = expected_tags
    expected = world.files(expected_tags)
    names = _git("ls-tree", "-r", "--name-only", "main", cwd=world.bare).split()
    tree = {name: _git("show", f"main:{name}", cwd=world.bare) for name in names}
    racing = {f"HUMAN-{i + 1}.md": f"human change {i + 1}\n" for i in range(len(human_commits(world.bare)))}
    expected.update(racing)
    for name in sorted(set(tree) | set(expected)):
        if tree.get(name) != expected.get(name):
            report.problems.append(f"{name} differs from what the policies and the humans say:\n"
                                   f"--- expected\n{expected.get(name)}\n--- found\n{tree.get(name)}")
    found = re.search(r"soak/web:(\S+)", tree.get("apps/web.yaml", ""))
    report.found = {"web": found.group(1) if found else "?"}
    humans = world.human_shas + human_commits(world.bare)
    report.human_commits = len(humans)
    for sha in humans:
        ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", sha, "main"], cwd=world.bare)
        if ancestor.returncode == 0:
            report.human_commits_preserved += 1
        else:
            report.problems.append(f"human commit {sha} is not an ancestor of main")
    for line in (world.bare / "logs" / "refs" / "heads" / "main").read_text().splitlines():
        old, new = line.split()[:2]
        if set(old) != {"0"} and subprocess.run(["git", "merge-base", "--is-ancestor", old, new],
                                                cwd=world.bare).returncode != 0:
            report.problems.append(f"main moved from {old} to {new}: not a fast-forward")
    # memory: what the passes after the warm-up added, with everything they cached
    if report.rss_kib_end - report.rss_kib_start > 50 * 1024:
        report.problems.append(f"RSS grew from {report.rss_kib_start} to {report.rss_kib_end} KiB")
