"""Helpers of the pull-request tests: a bare remote whose ``update`` hook logs every ref update and refuses a
non-fast-forward update of ``main``, and an in-memory forge speaking ``pullrequests.ForgeSession``.

The forge here keeps the contract of ``image_updater.forges`` (one listing per pass, ``ensure`` creates,
updates only when title or body differ, never writes when nothing changed); once the HTTP fake forge of
``tests/servers/forge.py`` is merged, tests that need the REST side run against that one.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from image_updater.errors import ImageUpdaterError
from image_updater.pullrequests import PullRequestSpec, PullRequestView
from image_updater.settings import load_settings
from image_updater.writeback import SourceOutcome, make_client, run_source

MARKER = "<!-- image-updater -->"
ZERO = "0" * 40

UPDATE_HOOK = """\
#!/bin/sh
# logs "<ref> <old> <new>" for every ref update; a non-fast-forward update of main is refused and logged
ref="$1"; old="$2"; new="$3"
echo "$ref $old $new" >> "$GIT_DIR/ref-updates.log"
if [ "$ref" = refs/heads/main ] && [ "$old" != 0000000000000000000000000000000000000000 ] \\
   && [ "$new" != 0000000000000000000000000000000000000000 ]; then
  if ! git merge-base --is-ancestor "$old" "$new"; then
    echo "REFUSED non-fast-forward $ref $old $new" >> "$GIT_DIR/ref-updates.log"
    exit 1
  fi
fi
exit 0
"""


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def install_update_hook(bare: Path) -> None:
    hook = bare / "hooks" / "update"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(UPDATE_HOOK)
    hook.chmod(0o755)


def ref_updates(bare: Path) -> list[tuple[str, str, str]]:
    log = bare / "ref-updates.log"
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        assert not line.startswith("REFUSED"), line
        ref, old, new = line.split()
        rows.append((ref, old, new))
    return rows


def is_ancestor(bare: Path, old: str, new: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", old, new], cwd=bare).returncode == 0


@dataclass
class StoredPR:
    number: int
    url: str
    head: str
    base: str
    title: str
    body: str
    draft: bool
    labels: tuple[str, ...] = ()
    state: str = "open"
    comments: list[str] = field(default_factory=list)


class MemoryForge:
    """One repository's pull requests; ``fail_with`` makes every call raise like a forge's 5xx."""

    marker = MARKER

    def __init__(self) -> None:
        self.prs: dict[int, StoredPR] = {}
        self.requests = 0
        self.writes = 0
        self.listings = 0
        self.fail_with: str | None = None  # every call fails
        self.fail_writes: str | None = None  # the listing works, writes fail
        self.tokens: list[str] = []

    def _call(self, write: bool = True) -> None:
        self.requests += 1
        if self.fail_with is not None:
            raise ImageUpdaterError(self.fail_with)
        if write and self.fail_writes is not None:
            raise ImageUpdaterError(self.fail_writes)

    async def open_pull_requests(self, base: str) -> Mapping[str, PullRequestView]:
        self._call(write=False)
        self.listings += 1
        return {p.head: replace(p) for p in self.prs.values() if p.state == "open" and p.base == base}

    async def ensure(self, spec: PullRequestSpec, existing: PullRequestView | None) -> tuple[Any, str]:
        if existing is None:
            self._call()
            self.writes += 1
            number = len(self.prs) + 1
            pr = StoredPR(number, f"https://forge.example/acme/repo/pull/{number}", spec.head, spec.base,
                          spec.title, spec.body, spec.draft, spec.labels)
            self.prs[number] = pr
            return replace(pr), "created"
        stored = self.prs[existing.number]
        if (stored.title, stored.body) == (spec.title, spec.body):
            return replace(stored), "unchanged"
        self._call()
        self.writes += 1
        stored.title, stored.body = spec.title, spec.body
        return replace(stored), "updated"

    async def close(self, pr: PullRequestView, comment: str) -> None:
        self._call()
        self.writes += 1
        stored = self.prs[pr.number]
        stored.comments.append(comment)
        stored.state = "closed"

    def factory(self) -> Any:
        async def make(source: Any, base: str) -> MemoryForge:
            from image_updater.pullrequests import forge_target_parts

            self.tokens.append(forge_target_parts(source, ENVIRON)[3])
            return self

        return make

    def open(self) -> list[StoredPR]:
        return [p for p in self.prs.values() if p.state == "open"]


FORGE_TOKEN = "forge-tok-9c2e71aa-test-only"
ENVIRON = {"FORGE_TOKEN": FORGE_TOKEN}


def write_config(tmp_path: Path, registry_host: str, url: str, *, cache: str = "cache",
                 pull_request: str = "{provider: github, token_env: FORGE_TOKEN}",
                 commit: tuple[str, ...] = ()) -> Path:
    config = tmp_path / f"config-{cache}.yaml"
    config.write_text("\n".join([
        f"cache_dir: {tmp_path / cache}",
        "sources:",
        "  - name: demo",
        f"    url: {url}",
        "    branch: main",
        f"    pull_request: {pull_request}",
        "commit:",
        "  author_name: Image Bot",
        "  author_email: bot@example.com",
        *commit,
        "registries:",
        f"  - prefix: {registry_host}",
        "    insecure: true",
    ]) + "\n")
    return config


def run_pass(config: Path, forge: MemoryForge, **kwargs: Any) -> SourceOutcome:
    settings = load_settings(config)

    async def go() -> SourceOutcome:
        async with make_client(settings) as client:
            return await run_source(
                settings, settings.sources[0], client=client, forge_factory=forge.factory(),
                environ=dict(ENVIRON), **kwargs,
            )

    return asyncio.run(go())
