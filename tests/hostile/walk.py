"""Hostile trees and working copies (the "walk" part of the trust issue): each scenario as a plain function.

Every function takes a scratch directory, starts what it needs itself (a real distribution registry, real
bare repositories, real ``image-updater`` processes), runs the scenario, raises ``AssertionError`` when the
behaviour is wrong and returns its measured figures as a dict. ``tests/test_hostile_walk.py`` calls them
and asserts generous bounds; a bench script can call them to record the figures.

1. ``ignored_folders``: ``validate`` in a Git work tree scans what Git would track (``.gitignore``,
   ``.git/info/exclude``, the global excludes file), and outside one skips ``.venv``/``node_modules``/... .
2. ``deep_tree``: 1,100 nested directories cost one error naming the directory past the depth limit.
3. ``non_utf8_file_name``: a file named ``caf\\xe9.yaml`` (bytes) in the source repository is skipped with an
   error naming it; the rest of the source is committed and pushed, on every pass.
4. ``cache_dir_problems``: a cache dir that is a regular file, is read-only, or holds a file where a
   directory must be: a one-line error naming the path (exit 2), and in the daemon's ``run_source`` an
   error for the source. ``two_passes_on_one_cache``: two ``run --once`` processes on one fresh cache dir;
   ``busy_working_copy``: a second process waits for the working copy's lock, then says it is busy.
5. ``push_rejection_in_german``: a push rejection is still recognised when the environment asks git for
   German messages, and every git command runs with ``LC_ALL=C``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.faults.gitfaults import arm_push_race, human_commits, install_push_race
from tests.hostile.manifests import deployment
from tests.servers import ImagePusher, RegistryServer
from tests.servers.gitserver import make_bare_repo

__all__ = [
    "ScenarioUnavailable",
    "busy_working_copy",
    "cache_dir_problems",
    "deep_tree",
    "ignored_folders",
    "non_utf8_file_name",
    "push_rejection_in_german",
    "two_passes_on_one_cache",
]

T0 = datetime(2024, 1, 1, tzinfo=UTC)
REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_TIMEOUT = 180.0  # generous: only a hang reaches it


class ScenarioUnavailable(Exception):
    """The machine cannot play this scenario (e.g. no way to make a directory read-only for root)."""


# ------------------------------------------------------------------------------------------- helpers


def _git(*args: str | Path, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *map(str, args)], cwd=cwd, capture_output=True, timeout=120, check=False,
        env={**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "T", "GIT_AUTHOR_EMAIL": "t@x",
             "GIT_COMMITTER_NAME": "T", "GIT_COMMITTER_EMAIL": "t@x", **(env or {})},
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {args} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode("utf-8", "surrogateescape")


def run_cli(*args: str | Path, env: Mapping[str, str] | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "image_updater", *map(str, args)], capture_output=True, text=True,
        timeout=CLI_TIMEOUT, cwd=cwd or REPO_ROOT, env={**os.environ, **(env or {})},
    )


def _start_cli(*args: str | Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "image_updater", *map(str, args)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT, env={**os.environ, **(env or {})},
    )


@contextlib.contextmanager
def _registry(tmp: Path, tags: Mapping[str, list[str]]) -> Iterator[RegistryServer]:
    """A started registry holding ``tags`` ({repository: [tag, ...]}), stopped on exit."""
    server = RegistryServer(work_dir=tmp / "registry").start()
    try:
        with ImagePusher(server.url) as pusher:
            for repository, names in tags.items():
                for i, tag in enumerate(names):
                    pusher.push(repository, tag, created=T0 + timedelta(days=i))
        yield server
    finally:
        server.stop()


def _push_tag(server: RegistryServer, repository: str, tag: str) -> None:
    with ImagePusher(server.url) as pusher:
        pusher.push(repository, tag, created=T0 + timedelta(days=100))


def write_config(tmp: Path, registry: RegistryServer, url: Path | str, *, cache: Path | None = None,
                 name: str = "demo") -> Path:
    config = tmp / f"config-{name}.yaml"
    config.write_text(textwrap.dedent(f"""\
        cache_dir: {cache or tmp / 'cache'}
        sources:
          - name: {name}
            url: {url}
            branch: main
        commit:
          author_name: Image Bot
          author_email: bot@example.com
        registries:
          - prefix: {registry.host}
            insecure: true
        """))
    return config


def _web_repo(tmp: Path, server: RegistryServer) -> Path:
    web = deployment("web", f"{server.host}/team/web:1.0.0")
    return make_bare_repo(tmp / "remote.git", {"apps/web.yaml": web})


def _show(bare: Path, path: str) -> str:
    return _git("show", f"main:{path}", cwd=bare)


def _subjects(bare: Path) -> list[str]:
    return _git("log", "--format=%s", "main", cwd=bare).splitlines()


def _no_traceback(*texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, text


# ------------------------------------------------------------------------- 1. ignored folders


# looks like it holds an image (so discovery parses it) but does not parse: an error entry when scanned
_BROKEN = deployment("broken", '"registry.example/team/web:1.0.0')  # an unclosed quote


def _validate_json(path: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    done = run_cli("validate", path, "--format", "json", env=env)
    _no_traceback(done.stderr)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def ignored_folders(tmp: Path) -> dict[str, float]:
    """``validate`` reports nothing from ignored or tool folders and still sees every tracked file."""
    image = "registry.example/team/web:1.0.0"
    tree = tmp / "checkout"
    files = {
        "apps/web.yaml": deployment("web", image),
        "apps/forced.yaml": deployment("forced", image),  # matched by .gitignore, but tracked
        "apps/gone.yaml": deployment("gone", image),  # tracked, deleted in the work tree
        "new/untracked.yaml": deployment("untracked", image),  # untracked, not ignored: scanned
        ".venv/lib/python3.11/site-packages/pkg/broken.yaml": _BROKEN,
        "build/broken.yaml": _BROKEN,
        "scratch/broken.yaml": _BROKEN,  # .git/info/exclude
        "apps/mine.local.yaml": _BROKEN,  # the global excludes file
        "node_modules/pkg/broken.yaml": _BROKEN,
    }
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    (tree / ".gitignore").write_text(".venv/\nbuild/\nnode_modules/\nforced.yaml\n")
    _git("init", "--quiet", "--initial-branch=main", cwd=tree)
    (tree / ".git" / "info").mkdir(exist_ok=True)
    (tree / ".git" / "info" / "exclude").write_text("scratch/\n")
    global_ignore = tmp / "global-ignore"
    global_ignore.write_text("*.local.yaml\n")
    global_config = tmp / "gitconfig"
    global_config.write_text(f"[core]\n\texcludesFile = {global_ignore}\n")
    _git("add", ".gitignore", "apps/web.yaml", "apps/gone.yaml", cwd=tree)
    _git("add", "--force", "apps/forced.yaml", cwd=tree)
    _git("commit", "--quiet", "-m", "seed", cwd=tree)
    (tree / "apps" / "gone.yaml").unlink()
    (tree / "apps" / "outside.yaml").symlink_to(tmp / "global-ignore")  # untracked symlink: never read

    env = {"GIT_CONFIG_GLOBAL": str(global_config)}
    started = time.monotonic()
    in_git = _validate_json(tree, env)
    git_seconds = time.monotonic() - started
    assert in_git["errors"] == [], in_git["errors"]
    assert in_git["files"] == 3 and in_git["targets"] == 3, in_git  # web, forced, untracked

    # the same tree without .git: tool folders are skipped, a virtualenv of any name too, build/ is not
    plain = tmp / "plain"
    shutil.copytree(tree, plain, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    (plain / "env" / "lib").mkdir(parents=True)
    (plain / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (plain / "env" / "lib" / "broken.yaml").write_text(_BROKEN)
    (plain / "pkg" / "__pycache__").mkdir(parents=True)
    (plain / "pkg" / "__pycache__" / "broken.yaml").write_text(_BROKEN)
    started = time.monotonic()
    outside = _validate_json(plain, {**env, "GIT_CEILING_DIRECTORIES": str(tmp)})
    plain_seconds = time.monotonic() - started
    reported = sorted(e["file"] for e in outside["errors"])
    assert reported == ["apps/mine.local.yaml", "build/broken.yaml", "scratch/broken.yaml"], reported
    return {"git_seconds": git_seconds, "plain_seconds": plain_seconds}


# ------------------------------------------------------------------------------ 2. deep trees


def _remove_tree(top: Path) -> None:
    """``shutil.rmtree`` without recursion (Python 3.11's recurses once per level, and so does pytest's
    clean-up of old temporary directories: a 1,100-deep tree left behind would crash a later run)."""
    if top.is_symlink() or not top.is_dir():
        top.unlink()
        return
    directories: list[str] = []
    pending = [str(top)]
    while pending:
        directory = pending.pop()
        directories.append(directory)
        with os.scandir(directory) as scan:
            for entry in scan:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    os.unlink(entry.path)
    for directory in reversed(directories):
        os.rmdir(directory)


def deep_tree(tmp: Path, depth: int = 1100) -> dict[str, float]:
    """``depth`` nested directories: one error naming the first directory past the limit, in a Git work
    tree and outside one; the files above the limit are still discovered."""
    figures: dict[str, float] = {}
    for mode in ("plain", "git"):
        try:
            figures[f"{mode}_seconds"] = _deep_tree(tmp / mode, depth, git=mode == "git")
        finally:
            if (tmp / mode).exists():
                _remove_tree(tmp / mode)
    return figures


def _deep_tree(root: Path, depth: int, *, git: bool) -> float:
    from image_updater.checkout import discover_directory
    from image_updater.worktree import MAX_DEPTH

    mode = "git" if git else "plain"
    (root / "apps").mkdir(parents=True)
    (root / "apps" / "web.yaml").write_text(deployment("web", "registry.example/web:1.0.0"))
    current = root / "deep"
    for level in range(depth):  # Path.mkdir(parents=True) recurses once per level: built by hand
        current.mkdir()
        if level == 9:
            (current / "shallow.yaml").write_text(deployment("shallow", "registry.example/web:1.0.0"))
        if level < depth - 1:
            current = current / "d"
    (current / "bottom.yaml").write_text(_BROKEN)
    if git:
        _git("init", "--quiet", cwd=root)
        _git("add", "--all", cwd=root)
        _git("commit", "--quiet", "-m", "deep", cwd=root)
    started = time.monotonic()
    discovery, _ = discover_directory(root)
    seconds = time.monotonic() - started
    files = sorted({t.file for t in discovery.targets})
    assert files == ["apps/web.yaml", "/".join(["deep", *["d"] * 9, "shallow.yaml"])], (mode, files)
    assert len(discovery.errors) == 1, (mode, discovery.errors)
    error = discovery.errors[0]
    expected = "/".join(["deep", *["d"] * MAX_DEPTH])
    assert error.file == expected, (mode, error)
    assert "deeper than" in error.message, error
    return seconds


# ------------------------------------------------------------------ 3. file names that are not UTF-8


def non_utf8_file_name(tmp: Path) -> dict[str, float]:
    """A source holding ``caf\\xe9.yaml``: every ``run --once`` names it (escaped) and pushes the rest."""
    with _registry(tmp, {"team/web": ["1.0.0", "1.1.0"]}) as server:
        host = server.host
        bad_name = os.fsdecode(b"caf\xe9.yaml")
        bare = make_bare_repo(tmp / "remote.git", {
            "apps/web.yaml": deployment("web", f"{host}/team/web:1.0.0"),
            bad_name: deployment("cafe", f"{host}/team/web:1.0.0"),
            os.fsdecode(b"d\xfcr/inside.yaml"): deployment("inside", f"{host}/team/web:1.0.0"),
        })
        config = write_config(tmp, server, bare)
        started = time.monotonic()
        first = run_cli("run", "--once", "-c", config)
        seconds = time.monotonic() - started
        _no_traceback(first.stdout, first.stderr)
        assert first.returncode == 1, first.stdout + first.stderr  # the error entries count
        assert "caf\\xe9.yaml" in first.stdout and "d\\xfcr/inside.yaml" in first.stdout, first.stdout
        assert "pushed" in first.stdout, first.stdout
        assert f"{host}/team/web:1.1.0" in _show(bare, "apps/web.yaml")
        listed = _git("ls-tree", "-r", "-z", "--name-only", "main", cwd=bare).split("\0")
        assert bad_name in listed  # untouched, still there
        assert "1.0.0" in _git("show", f"main:{bad_name}", cwd=bare)

        # the source keeps updating: a new tag lands on the next pass
        _push_tag(server, "team/web", "1.2.0")
        second = run_cli("run", "--once", "-c", config)
        _no_traceback(second.stdout, second.stderr)
        assert second.returncode == 1 and "pushed" in second.stdout, second.stdout + second.stderr
        assert f"{host}/team/web:1.2.0" in _show(bare, "apps/web.yaml")

        # discovery (validate) on the working copy names both, escaped
        checkout = tmp / "checkout"
        _git("clone", "--quiet", bare, checkout, cwd=tmp)
        found = _validate_json(checkout)
        assert sorted(e["file"] for e in found["errors"]) == ["caf\\xe9.yaml", "d\\xfcr/inside.yaml"], found
    return {"first_pass_seconds": seconds}


# ------------------------------------------------------------------------- 4. the cache directory


@contextlib.contextmanager
def _read_only(directory: Path) -> Iterator[str]:
    """Make ``directory`` read-only for this user: chmod, or for root (who ignores modes) a read-only
    tmpfs mounted over it. Yields the method used."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield "chmod"
        finally:
            directory.chmod(0o755)
        return
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(directory)],
                          capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        raise ScenarioUnavailable(f"cannot make a directory read-only as root: {done.stderr.decode()}")
    try:
        yield "ro-tmpfs"
    finally:
        subprocess.run(["umount", str(directory)], capture_output=True, timeout=30, check=False)


def cache_dir_problems(tmp: Path) -> dict[str, Any]:
    """Unusable cache dirs: ``run --once`` exits 2 with one line naming the path; ``run_source`` (what the
    daemon runs per source) returns an error for the source instead of raising."""
    from image_updater.settings import load_settings
    from image_updater.writeback import make_client, run_source

    with _registry(tmp, {"team/web": ["1.0.0", "1.1.0"]}) as server:
        bare = _web_repo(tmp, server)
        file_cache = tmp / "cache-is-a-file"
        file_cache.write_text("not a directory\n")
        git_is_file = tmp / "cache-git-is-a-file"
        git_is_file.mkdir()
        (git_is_file / "git").write_text("not a directory\n")
        read_only = tmp / "cache-read-only"
        cases: list[tuple[str, Path, Path]] = [
            ("file", file_cache, file_cache), ("git-file", git_is_file, git_is_file / "git"),
        ]
        method = "none"
        with contextlib.ExitStack() as stack:
            try:
                method = stack.enter_context(_read_only(read_only))
                cases.append(("read-only", read_only, read_only))
            except ScenarioUnavailable:
                pass
            for label, cache, named in cases:
                config = write_config(tmp, server, bare, cache=cache, name=f"demo-{label}")
                done = run_cli("run", "--once", "-c", config)
                _no_traceback(done.stdout, done.stderr)
                assert done.returncode == 2, (label, done.stdout, done.stderr)
                lines = [line for line in done.stderr.splitlines() if line.strip()]
                assert len(lines) == 1 and str(named) in lines[0], (label, done.stderr)

                settings = load_settings(config)

                async def one(settings: Any = settings) -> Any:
                    async with make_client(settings) as client:
                        return await run_source(settings, settings.sources[0], client=client)

                outcome = asyncio.run(one())
                assert outcome.error is not None and str(named) in outcome.error, (label, outcome)
        assert _subjects(bare) == ["Initial commit"]
    return {"read_only_method": method, "cases": len(cases)}


# Makes the race certain instead of likely: each `git clone` waits (bounded) until every process has
# started its clone. Without the working-copy lock both clones run at once and the second rename fails
# ("Directory not empty"); with it the second process waits for the lock, then fetches: one clone only.
_CLONE_BARRIER = """#!/bin/sh
if [ "$1" = "clone" ]; then
  touch "{barrier}/$$"
  i=0
  while [ "$(ls "{barrier}" | wc -l)" -lt {processes} ] && [ $i -lt {polls} ]; do sleep 0.1; i=$((i+1)); done
fi
exec {git} "$@"
"""


def two_passes_on_one_cache(tmp: Path, processes: int = 2, barrier_seconds: float = 5.0) -> dict[str, float]:
    """``processes`` ``run --once`` at once on one fresh cache dir: all succeed, one clone, one commit."""
    git_binary = shutil.which("git")
    assert git_binary is not None
    barrier = tmp / "clones"
    barrier.mkdir()
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(_CLONE_BARRIER.format(
        barrier=barrier, processes=processes, polls=int(barrier_seconds * 10), git=git_binary))
    (bin_dir / "git").chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with _registry(tmp, {"team/web": ["1.0.0", "1.1.0"]}) as server:
        bare = _web_repo(tmp, server)
        config = write_config(tmp, server, bare)
        started = time.monotonic()
        running = [_start_cli("run", "--once", "-c", config, env=env) for _ in range(processes)]
        outputs = [p.communicate(timeout=CLI_TIMEOUT) for p in running]
        seconds = time.monotonic() - started
        for process, (out, err) in zip(running, outputs, strict=True):
            _no_traceback(out, err)
            assert process.returncode == 0, out + err
        assert _subjects(bare)[1:] == ["Initial commit"] and len(_subjects(bare)) == 2, _subjects(bare)
        assert f"{server.host}/team/web:1.1.0" in _show(bare, "apps/web.yaml")
        clones = len(list(barrier.iterdir()))
        assert clones == 1, f"{clones} clones into one working copy"
    return {"seconds": seconds, "clones": float(clones)}


_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()  # hold the lock until the test closes our stdin
"""


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def busy_working_copy(tmp: Path) -> dict[str, float]:
    """Another process holds a working copy's lock: a pass waits for it (bounded) and then says the copy is
    busy, naming it; once the lock is free, a waiting ``run --once`` proceeds."""
    from image_updater.gitrepo import lock_path_for, workdir_for
    from image_updater.settings import load_settings
    from image_updater.writeback import make_client, run_source

    with _registry(tmp, {"team/web": ["1.0.0", "1.1.0"]}) as server:
        bare = _web_repo(tmp, server)
        config = write_config(tmp, server, bare)
        settings = load_settings(config)
        workdir = workdir_for(settings.cache_dir, "demo")
        lock = lock_path_for(workdir)
        lock.parent.mkdir(parents=True)
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        waiter: subprocess.Popen[str] | None = None
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"

            async def one() -> Any:
                async with make_client(settings) as client:
                    return await run_source(settings, settings.sources[0], client=client, lock_timeout=1.0)

            started = time.monotonic()
            outcome = asyncio.run(one())
            busy_seconds = time.monotonic() - started
            assert outcome.error is not None and "busy" in outcome.error, outcome
            assert str(workdir) in outcome.error, outcome.error
            assert not workdir.exists()

            # a waiting run --once: it says it waits, and proceeds once the holder lets go
            waiter = _start_cli("run", "--once", "-c", config)
            lines: queue.Queue[str] = queue.Queue()
            assert waiter.stderr is not None
            threading.Thread(target=_lines, args=(waiter.stderr, lines), daemon=True).start()
            deadline = time.monotonic() + CLI_TIMEOUT
            seen: list[str] = []
            while not any("waiting" in line for line in seen):
                assert time.monotonic() < deadline and waiter.poll() is None, seen
                with contextlib.suppress(queue.Empty):
                    seen.append(lines.get(timeout=1.0))
            assert not workdir.exists()  # it has not touched the working copy while waiting
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(timeout=30)
        assert waiter is not None
        out, _ = waiter.communicate(timeout=CLI_TIMEOUT)
        assert waiter.returncode == 0, out + "".join(seen)
        assert f"{server.host}/team/web:1.1.0" in _show(bare, "apps/web.yaml")
    return {"busy_after_seconds": busy_seconds}


# ------------------------------------------------------------------------------- 5. git's locale


_WRAPPER = """#!/bin/sh
printf '%s LC_ALL=%s LANGUAGE=%s LC_MESSAGES=%s\\n' "$1" "$LC_ALL" "$LANGUAGE" "$LC_MESSAGES" >> {log}
exec {git} "$@"
"""


def push_rejection_in_german(tmp: Path) -> dict[str, float]:
    """With ``LANGUAGE=de`` (git really speaks German then, see the probe) a lost push race is still
    recognised and re-planned; every git command image-updater runs gets ``LC_ALL=C``."""
    git_binary = shutil.which("git")
    assert git_binary is not None
    german = {"LANGUAGE": "de", "LC_ALL": "C.UTF-8", "LANG": "de_DE.UTF-8", "LC_MESSAGES": "de_DE.UTF-8"}
    probe = subprocess.run([git_binary, "-C", str(tmp / "nowhere"), "status"], capture_output=True,
                           text=True, env={**os.environ, **german}, timeout=30, check=False)
    speaks_german = "Verzeichnis" in probe.stderr or "Schwerwiegend" in probe.stderr
    with _registry(tmp, {"team/web": ["1.0.0", "1.1.0"]}) as server:
        bare = _web_repo(tmp, server)
        install_push_race(bare)
        arm_push_race(bare, 1)
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        log = tmp / "git-env.log"
        wrapper = bin_dir / "git"
        wrapper.write_text(_WRAPPER.format(log=log, git=git_binary))
        wrapper.chmod(0o755)
        config = write_config(tmp, server, bare)
        started = time.monotonic()
        env = {**german, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
        done = run_cli("run", "--once", "-c", config, env=env)
        seconds = time.monotonic() - started
        _no_traceback(done.stdout, done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "push rejected" in done.stderr, done.stderr
        humans = human_commits(bare)
        assert len(humans) == 1
        _git("merge-base", "--is-ancestor", humans[0], "main", cwd=bare)
        assert f"{server.host}/team/web:1.1.0" in _show(bare, "apps/web.yaml")
        calls = log.read_text().splitlines()
        ours = [line for line in calls if line.split()[0] in ("clone", "fetch", "push", "commit", "ls-files")]
        assert {"clone", "push", "ls-files"} <= {line.split()[0] for line in ours}, calls
        wrong = [line for line in ours if "LC_ALL=C " not in line + " " or "LANGUAGE=C " not in line]
        assert not wrong, wrong
    return {"seconds": seconds, "git_speaks_german": float(speaks_german), "git_calls": float(len(calls))}
