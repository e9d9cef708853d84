"""Git write-back: one working copy per source, commits of exactly the edited files, safe pushes.

This is the only module that uses GitPython (which drives the ``git`` binary). The remote is the truth:
``GitRepo.sync`` clones a source once into the cache directory, and on every later call fetches its branch,
hard-resets to ``origin/<branch>`` and removes untracked and ignored files, so whatever a killed or failed
pass left behind is gone.

Pushing never overwrites anyone's work. A push to the source's branch is a plain fast-forward push; when the
remote moved on, ``PushRejected`` tells the caller to sync, re-plan and retry. Only a ``push_branch`` of
image-updater's own (``rebuild_branch``) is force-pushed, with ``--force-with-lease`` pinned to the value
seen when it was rebuilt, so a branch someone pushed to in the meantime is still not overwritten.

Credentials reach git through the environment of the git process only:

- HTTPS: ``GIT_ASKPASS`` points at a small script (``<cache>/git/.askpass``, mode 0700) that prints the user
  name and the token from two variables set for that git process alone; the token is never in a URL,
  in ``.git/config``, in a log line or in an error message. Credential helpers are switched off so the token
  is not stored anywhere either.
- SSH: ``GIT_SSH_COMMAND`` with ``-i <key> -o IdentitiesOnly=yes -o UserKnownHostsFile=<known_hosts>
  -o StrictHostKeyChecking=yes``; without a known_hosts file SSH is refused unless
  ``insecure_skip_host_key_check`` is set. A key file readable by others (Kubernetes secrets are often
  mounted 0644, which ssh refuses) is copied to a 0600 file in the cache directory.

Every git failure is a ``GitError`` whose message names the source and its URL (credentials redacted) and
carries git's own (redacted) error output. ``GIT_TERMINAL_PROMPT=0`` and a time limit on every network
operation make sure nothing waits for a prompt or a dead server forever.

Clones are full by default: on a 10,000-file repository with 5,000 commits a full clone over ``file://``
took 0.9 s against 2.2-3.6 s for ``--depth 1`` (the server has to build a fresh pack for a shallow clone,
while a full clone reuses its packs) for 4.4 MB against 1.9 MB of objects. ``depth`` makes a shallow clone
where transfer size matters more (huge histories, slow links); later fetches are incremental either way,
and pushing, rejection recovery and ``rebuild_branch`` work on shallow clones too.

A managed working copy commits from one ``git fast-import`` pack (``update-index``, ``write-tree``,
``commit-tree``, ``update-ref`` with the expected old HEAD; ``git commit`` when the trees disagree) and may
have its files overwritten in place once ``prepare_in_place_writes`` has journalled them (issue 16).

**One process per working copy.** ``WorkingCopyLock`` holds an ``flock`` on ``<working copy>.lock`` beside
the working copy for a whole pass (sync to push). A second process (two ``run --once`` from cron, two
daemons on one cache dir) waits up to ``LOCK_TIMEOUT`` seconds for it and then reports the working copy as
busy, naming it; the kernel releases the lock when its holder dies, so a killed pass never blocks the next.
``check_cache_dir`` turns a cache directory that cannot be used (a regular file, read-only) into one
``ConfigError`` naming the path.

Every git command runs with ``LC_ALL=C`` and ``LANGUAGE=C``: push rejections and other outcomes are
recognised from git's messages, which must not come in the user's language.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import stat
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO, Self

import git

from image_updater.envnames import shown_env_name
from image_updater.errors import ConfigError, GitError, PushRejected, redact
from image_updater.settings import AuthSettings, SourceSettings, source_transport

if TYPE_CHECKING:
    from image_updater.signing import Signer

__all__ = [
    "DEFAULT_TIMEOUT",
    "LOCK_TIMEOUT",
    "CommitInfo",
    "GitRepo",
    "WorkingCopyLock",
    "check_cache_dir",
    "lock_path_for",
    "origin_url",
    "workdir_for",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 300.0  # seconds for one network operation (clone, fetch, push, ls-remote)
LOCK_TIMEOUT = 60.0  # seconds a pass waits for a working copy another process is using

# the only variables that carry the HTTPS credentials, set for one git process at a time
_USER_VAR = "IMAGE_UPDATER_GIT_USERNAME"
_TOKEN_VAR = "IMAGE_UPDATER_GIT_PASSWORD"

_ASKPASS_SCRIPT = f"""#!/bin/sh
# image-updater: answers git's credential prompts from this git process's own environment.
case "$1" in
  [Uu]sername*) printf '%s\\n' "${_USER_VAR}" ;;
  *) printf '%s\\n' "${_TOKEN_VAR}" ;;
esac
"""

# configuration forced on every git command, whatever the user's global config says
_FORCED_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.autocrlf", "false"),  # byte-exact edits: no line-ending conversion besides .gitattributes
    ("core.hooksPath", os.devnull),  # a bot's commits run no hooks
    ("commit.gpgSign", "false"),  # no key, no agent, no prompt
    ("gc.autoDetach", "false"),  # no background gc that still holds locks when the next pass starts
    ("advice.detachedHead", "false"),
)
_MANAGED_KEY = "imageupdater.managed"

_REJECTED = re.compile(r"\[rejected\]|\(fetch first\)|\(non-fast-forward\)|\(stale info\)")
# the ref moved between the server's check and its update: another push won the race
_REMOTE_RACE = re.compile(r"cannot lock ref|failed to lock|failed to update ref|incorrect old value")


def workdir_for(cache_dir: str | os.PathLike[str], source_name: str) -> Path:
    """The working copy of ``source_name``: ``<cache_dir>/git/<safe name>-<hash>``.

    The hash keeps two names that map to the same safe spelling (``a/b``, ``a b``) apart.
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source_name).strip(".-")[:60] or "source"
    digest = hashlib.sha256(source_name.encode()).hexdigest()[:10]
    return Path(cache_dir).expanduser() / "git" / f"{slug}-{digest}"


def lock_path_for(workdir: str | os.PathLike[str]) -> Path:
    """The lock file of a working copy: ``<workdir>.lock``, beside it (it survives re-clones)."""
    path = Path(workdir).expanduser()
    return path.with_name(path.name + ".lock")


def check_cache_dir(cache_dir: str | os.PathLike[str]) -> Path:
    """Create ``<cache_dir>/git`` and check it is a writable directory; ``ConfigError`` naming the path
    otherwise (a regular file in the way, a read-only file system, no permission)."""
    root = Path(cache_dir).expanduser()
    git_dir = root / "git"
    for path in (root, git_dir):
        if path.exists() and not path.is_dir():
            raise ConfigError(f"cache_dir {root}: {path} is not a directory")
    try:
        git_dir.mkdir(parents=True, exist_ok=True)
        # a real write, not os.access: root passes access checks on a read-only mount
        fd, probe = tempfile.mkstemp(dir=git_dir, prefix=".write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = exc.filename or git_dir
        raise ConfigError(f"cache_dir {root}: cannot write to {where}: {exc.strerror or exc}") from exc
    return root


class WorkingCopyLock:
    """An exclusive ``flock`` on a working copy's lock file, for one pass.

    ``acquire`` tries at once, then polls until ``timeout`` (flock has no timeout of its own); a
    ``GitError`` naming the working copy says it is busy. The lock goes with the file descriptor: closing
    it, or the holder dying, releases it.
    """

    def __init__(self, workdir: str | os.PathLike[str], *, timeout: float = LOCK_TIMEOUT) -> None:
        self.workdir = Path(workdir).expanduser()
        self.path = lock_path_for(self.workdir)
        self.timeout = timeout
        self._fd: int | None = None

    def acquire(self) -> Self:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise GitError(
                f"cannot create the lock file {exc.filename or self.path}: {exc.strerror or exc}"
            ) from exc
        deadline = time.monotonic() + self.timeout
        delay = 0.05
        waiting = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                now = time.monotonic()
                if now >= deadline:
                    os.close(fd)
                    raise GitError(
                        f"working copy {self.workdir} is busy: another image-updater process holds "
                        f"{self.path} (waited {self.timeout:g}s)"
                    ) from exc
                if not waiting:
                    waiting = True
                    log.info("working copy %s is in use by another process; waiting up to %gs",
                             self.workdir, self.timeout)
                time.sleep(min(delay, deadline - now))
                delay = min(delay * 2, 0.5)
                continue
            except OSError as exc:
                os.close(fd)
                raise GitError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
            self._fd = fd
            return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # releases the flock

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _write_private(path: Path, content: bytes, mode: int) -> None:
    """Write ``content`` to ``path`` atomically with ``mode`` (unless it is already there, unchanged)."""
    try:
        if path.read_bytes() == content and stat.S_IMODE(path.stat().st_mode) == mode:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Git:
    """Runs git commands for one source with its environment, time limit and error wrapping."""

    def __init__(
        self, *, name: str, url: str, env: Mapping[str, str], secrets: Sequence[str], timeout: float
    ) -> None:
        self.name = name
        self.url = url
        self.env = dict(env)
        self.secrets = tuple(secrets)
        self.timeout = timeout

    def redact(self, text: str) -> str:
        return redact(text, *self.secrets)

    def describe(self) -> str:
        return _describe(self.name, self.url, self.secrets)

    def run(
        self,
        cwd: Path,
        *args: str,
        network: bool = False,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        what: str | None = None,
        istream: BinaryIO | None = None,
    ) -> tuple[int, str, str]:
        """Run ``git <args>`` in ``cwd``: ``(status, stdout, stderr)``; GitError on failure if ``check``."""
        command = ["git", *args]
        op = what or args[0]
        log.debug("git %s", self.redact(" ".join(args)), extra={"source": self.name})
        timeout = self.timeout if network else None
        try:
            status, out, err = git.Git(str(cwd)).execute(
                command,
                with_extended_output=True,
                with_exceptions=False,
                kill_after_timeout=timeout,
                env={**self.env, **(env or {})},
                strip_newline_in_stdout=False,
                istream=istream,
            )
        except (git.GitCommandNotFound, OSError) as exc:
            raise GitError(f"git {op} failed for {self.describe()}: cannot run git: {exc}") from None
        out_text = out if isinstance(out, str) else out.decode("utf-8", "replace")
        err_text = err if isinstance(err, str) else err.decode("utf-8", "replace")
        if timeout is not None and (status == -9 or err_text.startswith("Timeout:")):
            raise GitError(f"git {op} timed out after {timeout:g}s for {self.describe()}")
        if check and status != 0:
            raise GitError(self.failure(op, status, err_text or out_text))
        return status, out_text, err_text

    def failure(self, op: str, status: int, output: str) -> str:
        lines = [line.strip() for line in self.redact(output).strip().splitlines() if line.strip()]
        detail = "; ".join(lines[-6:]) if lines else f"exit status {status}"
        return f"git {op} failed for {self.describe()}: {detail}"


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """One commit as an update branch's ownership check reads it."""

    sha: str
    author: str  # "Name <email>"
    committer: tuple[str, str]  # (name, email)
    message: str


class GitRepo:
    """A working copy of one source. Build it with ``GitRepo.sync`` (managed clone) or ``GitRepo.open``."""

    def __init__(self, path: Path, branch: str, runner: _Git, *, managed: bool) -> None:
        self._path = path
        self._branch = branch
        self._git = runner
        self._managed = managed
        # push_branch -> the remote value it had when rebuilt ("" = absent): the force-with-lease pin
        self._leases: dict[str, str] = {}
        self._base_protected = False

    # -- construction -------------------------------------------------------------------------------

    @classmethod
    def sync(
        cls,
        url: str,
        branch: str,
        workdir: str | os.PathLike[str],
        *,
        auth: AuthSettings | None = None,
        depth: int | None = None,
        name: str | None = None,
        environ: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> GitRepo:
        """Clone ``url`` into ``workdir`` once; afterwards fetch ``branch`` and hard-reset to it.

        Local leftovers (edits, untracked and ignored files, commits that were never pushed, stale lock
        files of a killed pass) are discarded. ``depth`` makes the first clone shallow. ``environ``
        (default ``os.environ``) is where ``auth.token_env`` is looked up.
        """
        workdir = Path(workdir).expanduser()
        try:
            runner = _runner(url, name or url, auth, workdir.parent, environ, timeout, managed=True)
            repo = cls(workdir, branch, runner, managed=True)
            if not repo._usable():
                repo._clone(depth)
            else:
                repo._clear_stale_locks()
                repo._ensure_origin()
                recovered = repo._recover_in_place_writes()
                if recovered == "reclone":
                    shutil.rmtree(repo._path)
                    repo._clone(depth)
                else:
                    repo.refresh()
                if recovered == "restored":
                    (repo._path / ".git" / _WRITES_JOURNAL).unlink(missing_ok=True)
        except OSError as exc:  # the cache dir: read-only, full, a file where a directory must be
            where = exc.filename or workdir
            raise GitError(
                f"{_describe(name or url, url)}: working copy {workdir}: {where}: {exc.strerror or exc}"
            ) from exc
        return repo

    @classmethod
    def for_source(
        cls,
        source: SourceSettings,
        cache_dir: str | os.PathLike[str],
        *,
        depth: int | None = None,
        environ: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> GitRepo:
        """``sync`` for a configured source, in ``workdir_for(cache_dir, source.name)``."""
        return cls.sync(
            source.url,
            source.branch,
            workdir_for(cache_dir, source.name),
            auth=source.auth,
            depth=depth,
            name=source.name,
            environ=environ,
            timeout=timeout,
        )

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        branch: str | None = None,
        auth: AuthSettings | None = None,
        name: str | None = None,
        environ: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> GitRepo:
        """Wrap an existing checkout (a CI job's own clone) without syncing or cleaning it.

        Its ``origin`` and the user's git configuration (credential helpers, ssh config) are used as they
        are; ``auth``, when given, is applied as in ``sync``. ``branch`` defaults to the checked-out branch
        (a detached HEAD, as in many CI systems, needs it explicitly).
        """
        root = Path(path).expanduser()
        probe = _Git(name=name or str(root), url=str(root), env=_base_env(), secrets=(), timeout=timeout)
        status, out, _ = probe.run(root, "rev-parse", "--show-toplevel", check=False)
        if status != 0:
            raise GitError(f"{root} is not inside a git working copy")
        top = Path(out.strip())
        _, url, _ = probe.run(top, "config", "--get", "remote.origin.url", check=False)
        url = url.strip() or str(top)
        runner = _runner(url, name or str(top), auth, top / ".git", environ, timeout, managed=False)
        if branch is None:
            status, out, _ = runner.run(top, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
            if status != 0:
                raise GitError(f"{top}: HEAD is detached; name the branch to push to")
            branch = out.strip()
        return cls(top, branch, runner, managed=False)

    # -- properties ---------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """Root of the working tree."""
        return self._path

    @property
    def branch(self) -> str:
        """The source's branch (what ``sync`` resets to)."""
        return self._branch

    @property
    def url(self) -> str:
        return self._git.url

    @property
    def managed(self) -> bool:
        """A working copy of ours in the cache directory (disposable: ``refresh`` rebuilds it), not a checkout
        that belongs to someone (``GitRepo.open``)."""
        return self._managed

    @property
    def head(self) -> str:
        """Full hash of the checked-out commit."""
        return self._rev("HEAD")

    # -- sync ---------------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Fetch the source's branch, check it out at ``origin/<branch>`` and clean the working tree."""
        self._require_managed("refresh")
        self._fetch(self._branch)
        self._checkout(self._branch, f"refs/remotes/origin/{self._branch}")

    def _require_managed(self, what: str) -> None:
        # both discard local work: never in a checkout that belongs to someone (GitRepo.open)
        if not self._managed:
            raise GitError(f"{self._git.describe()}: {what} discards local changes; not done in {self._path}")

    def _usable(self) -> bool:
        if self._path.exists() and not self._path.is_dir():
            raise GitError(
                f"{self._git.describe()}: {self._path} exists and is not a directory; "
                "remove it or choose another cache_dir"
            )
        if not (self._path / ".git").exists():
            if self._path.exists():
                if any(self._path.iterdir()):
                    raise GitError(
                        f"{self._git.describe()}: {self._path} exists and is not a git working copy; "
                        "remove it or choose another cache_dir"
                    )
                self._path.rmdir()
            return False
        # read the file directly: a damaged repository (broken HEAD) is not recognised as one by git
        config = str(self._path / ".git" / "config")
        status, out, _ = self._git.run(
            self._path, "config", "--file", config, "--get", _MANAGED_KEY, check=False
        )
        if status != 0 or out.strip() != "true":
            raise GitError(
                f"{self._git.describe()}: {self._path} is a git working copy image-updater did not create; "
                "remove it or choose another cache_dir"
            )
        status, _, _ = self._git.run(self._path, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
        if status != 0:
            # a clone that was killed or damaged: ours to throw away
            log.warning(
                "working copy %s is damaged; cloning again", self._path, extra={"source": self._git.name}
            )
            shutil.rmtree(self._path)
            return False
        return True

    def _clone(self, depth: int | None) -> None:
        parent = self._path.parent
        parent.mkdir(parents=True, exist_ok=True)
        # clone next to the target and rename: a killed clone never looks like a working copy
        for stale in parent.glob(f".{self._path.name}.clone-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{self._path.name}.clone-"))
        args = ["clone", "--quiet", "--no-tags", "--single-branch", "--branch", self._branch, "--no-checkout"]
        if depth is not None:
            if depth < 1:
                raise ValueError("depth must be at least 1")
            args += ["--depth", str(depth)]
        try:
            self._git.run(parent, *args, "--", self._git.url, str(tmp), network=True)
            self._git.run(tmp, "config", _MANAGED_KEY, "true")
            os.replace(tmp, self._path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._checkout(self._branch, f"refs/remotes/origin/{self._branch}")

    def _ensure_origin(self) -> None:
        _, current, _ = self._git.run(self._path, "config", "--get", "remote.origin.url", check=False)
        if current.strip() != self._git.url:
            self._git.run(self._path, "remote", "set-url", "origin", self._git.url)

    def _clear_stale_locks(self) -> None:
        # left by a pass that was killed mid-way; nobody else works in this copy (WorkingCopyLock)
        git_dir = self._path / ".git"
        for lock in (*git_dir.glob("*.lock"), *(git_dir / "refs").rglob("*.lock")):
            log.debug("removing stale lock %s", lock, extra={"source": self._git.name})
            lock.unlink(missing_ok=True)

    def _fetch(self, branch: str) -> None:
        self._git.run(
            self._path,
            "fetch", "--quiet", "--no-tags", "--prune", "origin",
            f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
            network=True,
        )  # fmt: skip

    def _checkout(self, branch: str, start: str) -> None:
        self._git.run(self._path, "checkout", "--quiet", "--force", "-B", branch, start, what="checkout")
        self._git.run(self._path, "clean", "-ffdxq", what="clean")

    def _rev(self, rev: str) -> str:
        return self._git.run(self._path, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")[1].strip()

    def _rev_or_none(self, rev: str) -> str | None:
        status, out, _ = self._git.run(self._path, "rev-parse", "--verify", "--quiet", rev, check=False)
        return out.strip() if status == 0 else None

    # -- changes and commits ------------------------------------------------------------------------

    def _pathspecs(self, paths: Iterable[str]) -> list[str]:
        clean: list[str] = []
        for raw in paths:
            pure = PurePosixPath(str(raw).replace("\\", "/"))
            if pure.is_absolute() or ".." in pure.parts or not pure.parts or pure.parts[0] == ".git":
                raise GitError(f"{self._git.describe()}: {raw!r} is not a path inside the repository")
            clean.append(str(pure))
        return sorted(set(clean))

    def _with_pathspec_file(self, paths: Sequence[str]) -> Path:
        fd, name = tempfile.mkstemp(dir=self._path / ".git", prefix="image-updater-paths.")
        with os.fdopen(fd, "wb") as handle:
            # fsencode: a name git gave us with bytes that are not UTF-8 goes back as those bytes
            handle.write(b"".join(os.fsencode(p) + b"\0" for p in paths))
        return Path(name)

    def _staged(self) -> set[str]:
        out = self._git.run(self._path, "diff", "--cached", "--no-renames", "--name-only", "-z")[1]
        return {name for name in out.split("\0") if name}

    def changed_files(self, paths: Sequence[str] | None = None) -> list[str]:
        """Files that differ from HEAD in the working tree (modified, added, deleted, untracked), sorted."""
        args = ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"]
        if paths is not None:
            specs = self._pathspecs(paths)
            if not specs:
                return []
            args += ["--", *specs]
        out = self._git.run(self._path, *args)[1]
        return sorted({entry[3:] for entry in out.split("\0") if len(entry) > 3})

    def commit(
        self,
        paths: Sequence[str],
        message: str,
        *,
        author: tuple[str, str],
        committer: tuple[str, str] | None = None,
        signer: Signer | None = None,
    ) -> str | None:
        """Commit exactly ``paths`` (repository-relative); the new HEAD, or None when they are unchanged.

        Nothing else is staged or committed, whatever else changed in the working tree. ``signer``
        (``signing.signer_for``) signs the commit with git's own signing, configured on the command line.
        """
        specs = self._pathspecs(paths)
        if not specs:
            return None
        committer = committer or author
        try:
            spec_file = self._with_pathspec_file(specs)
        except OSError as exc:  # a full disk, mostly: a GitError like any other failed commit
            raise GitError(f"git commit failed for {self._git.describe()}: {exc.strerror or exc}") from exc
        msg_file = self._path / ".git" / "IMAGE_UPDATER_MSG"
        try:
            # update-index takes the list as is; add/commit with 500 pathspecs match every index entry
            # against every pathspec (measured: 0.95 s + 0.73 s against 0.07 s + 0.2 s on 10,000 files)
            staging = self._prepack(specs) if self._managed else None
            with spec_file.open("rb") as specs_in:
                self._git.run(
                    self._path, "update-index", "--add", "--remove", "-z", "--stdin", istream=specs_in
                )
            if staging is not None:
                done, made = self._commit_from_index(
                    staging, message, author=author, committer=committer, signer=signer
                )
                if done:
                    return made
            staged = self._staged()
            if not staged.intersection(specs):
                return None
            # something else was staged before (not by us): commit only our paths, the slow but exact way
            only = [f"--pathspec-from-file={spec_file}", "--pathspec-file-nul"] if staged - set(specs) else []
            msg_file.write_text(message if message.endswith("\n") else message + "\n", encoding="utf-8")
            identity, sign_config, sign = _commit_identity(author, committer, signer)
            self._git.run(
                self._path,
                *sign_config,
                "commit", "--quiet", "--no-verify", "--cleanup=whitespace", f"--file={msg_file}",
                *sign, *only,
                env=identity, what="commit",
            )  # fmt: skip
        except OSError as exc:
            raise GitError(f"git commit failed for {self._git.describe()}: {exc.strerror or exc}") from exc
        finally:
            spec_file.unlink(missing_ok=True)
            msg_file.unlink(missing_ok=True)
        head = self.head
        log.debug("committed %s (%d files)", head[:12], len(specs), extra={"source": self._git.name})
        return head

    # -- in-place writes of a managed working copy (issue 16) --------------------------------------------

    def prepare_in_place_writes(self, paths: Sequence[str]) -> bool:
        """Journal ``paths`` so that they may be overwritten in place (``worktree.write_in_place``); False
        when they may not (a checkout that is not ours, no boot id to tell a restart by): write atomically.

        An in-place write a power loss interrupts can leave a file whose bytes changed while its size and
        times on disk did not, which git's index would then take for unchanged. The journal,
        ``.git/image-updater-writes.json``, lists every file written in place since the machine booted
        (``/proc/sys/kernel/random/boot_id``) and is on disk (fsynced) before any of them is written; the
        first ``sync`` after a restart deletes those files and checks them out again from HEAD. A killed
        process (the usual crash) needs nothing of this: the page cache survives it, and git sees the
        changed times of a file it left half-written. The journal is rewritten only when a pass writes a
        file it does not list yet: at most two fsyncs per pass, usually none.
        """
        if not self._managed:
            return False
        boot = _boot_id()
        if boot is None:
            return False
        specs = set(self._pathspecs(paths))
        journal = self._path / ".git" / _WRITES_JOURNAL
        listed = _read_journal(journal)
        if listed is not None and listed[0] != boot:
            return False  # an earlier boot's journal that sync has not acted on yet: leave it for it
        known = listed[1] if listed is not None else set()
        if specs <= known:
            return True
        body = json.dumps({"boot_id": boot, "paths": sorted(known | specs)}).encode()
        try:
            fd, tmp = tempfile.mkstemp(dir=journal.parent, prefix=f".{_WRITES_JOURNAL}.")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(body)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, journal)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            directory = os.open(journal.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            log.warning("cannot journal in-place writes in %s (%s); writing atomically", journal,
                        exc.strerror or exc, extra={"source": self._git.name})
            return False
        return True

    def _recover_in_place_writes(self) -> str:
        """Before a sync: when the journal of in-place writes is from an earlier boot, delete the files it
        lists, so that the checkout that follows writes them again from HEAD (see
        ``prepare_in_place_writes``): "restored" (the journal is removed after that checkout), "reclone"
        (an unreadable journal) or "" (none, or one of this boot: its files need no repair)."""
        journal = self._path / ".git" / _WRITES_JOURNAL
        if not journal.exists():
            return ""
        listed = _read_journal(journal)
        if listed is not None and listed[0] == _boot_id():
            return ""
        if listed is None:  # unreadable: which files were written is unknown, so all of them are suspect
            log.warning("working copy %s: unreadable journal of in-place writes; cloning again", self._path,
                        extra={"source": self._git.name})
            return "reclone"
        removed = 0
        for raw in sorted(listed[1]):
            pure = PurePosixPath(raw)
            if pure.is_absolute() or ".." in pure.parts or not pure.parts or pure.parts[0] == ".git":
                continue
            full = self._path / raw
            with contextlib.suppress(OSError):
                if not stat.S_ISDIR(os.lstat(full).st_mode):
                    full.unlink()
                    removed += 1
        log.warning(
            "working copy %s: the machine restarted after %d file(s) were written in place; checking "
            "them out again from HEAD", self._path, removed, extra={"source": self._git.name},
        )
        return "restored"

    # -- the fast commit of a managed working copy (issue 16) -------------------------------------------

    def _prepack(self, specs: Sequence[str]) -> tuple[str, str] | None:
        """Write ``specs``' current contents and the trees above them into one pack (``git fast-import``,
        as a throw-away commit on ``_STAGING_REF``), so that ``update-index`` and ``write-tree`` find every
        object already there instead of writing ~2 loose objects per changed file (measured: 1,000 loose
        objects cost 0.75 s of a 500-file pass, and ``push`` then re-compressed them).

        Returns ``(parent, tree of the throw-away commit)``, or None when the fast path does not apply (no
        HEAD, a path that is a directory or unreadable): ``commit`` then works as before. Only an
        optimisation: what is committed is still what git's own ``update-index`` hashes (filters, eol
        conversion), and ``_commit_from_index`` checks that the two trees agree.
        """
        parent = self._rev_or_none("HEAD^{commit}")
        if parent is None:
            return None
        chunks = [b"commit ", _STAGING_REF.encode(), b"\ncommitter image-updater <> 0 +0000\ndata 0\n",
                  b"from ", parent.encode(), b"\n"]
        for spec in specs:
            full = self._path / spec
            quoted = _fast_import_path(spec)
            try:
                info = os.lstat(full)
                if stat.S_ISREG(info.st_mode):
                    mode = b"100755" if info.st_mode & stat.S_IXUSR else b"100644"
                    data = full.read_bytes()
                elif stat.S_ISLNK(info.st_mode):
                    mode, data = b"120000", os.fsencode(os.readlink(full))
                else:
                    return None  # a directory (a submodule?): the general path decides
            except FileNotFoundError:
                chunks += [b"D ", quoted, b"\n"]
                continue
            except OSError:
                return None
            chunks += [b"M ", mode, b" inline ", quoted, b"\ndata ", str(len(data)).encode(), b"\n", data,
                       b"\n"]
        chunks.append(b"done\n")
        try:
            with tempfile.TemporaryFile() as stream:
                stream.write(b"".join(chunks))
                stream.seek(0)
                self._git.run(self._path, "fast-import", "--quiet", "--done", "--force", istream=stream,
                              what="commit")
            tree = self._git.run(self._path, "rev-parse", "--verify", "--quiet",
                                 f"{_STAGING_REF}^{{tree}}", what="commit")[1].strip()
        except GitError as exc:  # only an optimisation: ``git commit`` still can
            log.debug("fast-import: %s", exc, extra={"source": self._git.name})
            self._git.run(self._path, "update-ref", "-d", _STAGING_REF, check=False, what="commit")
            return None
        return parent, tree

    def _commit_from_index(
        self,
        staging: tuple[str, str],
        message: str,
        *,
        author: tuple[str, str],
        committer: tuple[str, str],
        signer: Signer | None,
    ) -> tuple[bool, str | None]:
        """After ``update-index`` of our paths: the index's tree, committed on ``parent`` with
        ``commit-tree`` and moved to with ``update-ref HEAD <new> <parent>``, all without ``git commit``'s
        refresh of the whole working tree. ``(True, new HEAD)``; ``(True, None)`` when our paths are
        unchanged; ``(False, None)`` when the index holds more than our paths (something else staged) or git
        hashed a file differently from its bytes (a clean filter, eol conversion): ``git commit`` with our
        paths then does it, as it always did."""
        parent, expected = staging
        _, out, _ = self._git.run(self._path, "write-tree", what="commit")
        tree = out.strip()
        try:
            if tree != expected:
                return False, None
            base = self._git.run(self._path, "rev-parse", "--verify", "--quiet", f"{parent}^{{tree}}",
                                 what="commit")[1].strip()
            if tree == base:
                return True, None
            text = _stripspace(message)
            if not text:
                return False, None  # git commit refuses an empty message: let it say so
            identity, sign_config, sign = _commit_identity(author, committer, signer)
            with tempfile.TemporaryFile() as text_in:
                text_in.write(text.encode("utf-8"))
                text_in.seek(0)
                sha = self._git.run(
                    self._path, *sign_config, "commit-tree", tree, "-p", parent, *sign,
                    env=identity, istream=text_in, what="commit",
                )[1].strip()
            subject = text.partition("\n")[0]
            self._git.run(self._path, "update-ref", "-m", f"commit: {subject}", "HEAD", sha, parent,
                          what="commit")
        finally:
            self._git.run(self._path, "update-ref", "-d", _STAGING_REF, check=False, what="commit")
        log.debug("committed %s", sha[:12], extra={"source": self._git.name})
        return True, sha

    # -- push ---------------------------------------------------------------------------------------

    def rebuild_branch(self, push_branch: str, from_branch: str | None = None) -> None:
        """Check out ``push_branch`` afresh at ``origin/<from_branch>`` (default: the source's branch).

        Records the remote's current value of ``push_branch`` as the lease for ``push(push_branch,
        force_with_lease=True)``: if anyone pushes to it before we do, our push is rejected.
        """
        self._require_managed("rebuild_branch")
        from_branch = from_branch or self._branch
        if push_branch == self._branch:
            raise GitError(
                f"{self._git.describe()}: push_branch must differ from the branch {self._branch!r}"
            )
        start = f"refs/remotes/origin/{from_branch}"
        if self._rev_or_none(start) is None:
            self._fetch(from_branch)
        _, out, _ = self._git.run(
            self._path, "ls-remote", "--heads", "origin", f"refs/heads/{push_branch}", network=True
        )
        remote = out.split()[0] if out.split() else ""
        if remote:
            # have its objects, so that push can tell when the rebuilt branch is what is already there
            self._fetch(push_branch)
        else:
            self._git.run(self._path, "update-ref", "-d", f"refs/remotes/origin/{push_branch}", check=False)
        self._leases[push_branch] = remote
        self._checkout(push_branch, start)

    def push(self, branch: str | None = None, *, force_with_lease: bool = False) -> bool:
        """Push HEAD to ``branch`` (default: the source's branch). True if the remote changed.

        Without ``force_with_lease`` the push must fast-forward: ``PushRejected`` when the remote moved on
        (sync, re-plan, retry). With it, ``branch`` must be a push branch prepared by ``rebuild_branch``
        and is overwritten only if nobody pushed to it since; an identical update already there is not
        pushed again.
        """
        branch = branch or self._branch
        if branch == self._branch and self._base_protected:
            raise GitError(
                f"{self._git.describe()}: refusing to push to {branch!r}: pull-request mode never writes to "
                "the base branch"
            )
        head = self.head
        if force_with_lease:
            if branch == self._branch:
                raise GitError(
                    f"{self._git.describe()}: refusing to force-push {branch!r}, the branch others write to"
                )
            if branch not in self._leases:
                raise GitError(
                    f"{self._git.describe()}: rebuild_branch({branch!r}) must come before its push"
                )
            expected = self._leases[branch]
            if expected and self._same_update(expected, head):
                log.debug("%s already holds this update", branch, extra={"source": self._git.name})
                return False
            lease = [f"--force-with-lease=refs/heads/{branch}:{expected}"]
        else:
            if self._rev_or_none(f"refs/remotes/origin/{branch}") == head:
                return False
            lease = []
        self._push_head(branch, lease, moved="the remote branch moved on: sync and retry")
        self._git.run(self._path, "update-ref", f"refs/remotes/origin/{branch}", head)
        if force_with_lease:
            self._leases[branch] = head
        log.debug("pushed %s to %s", head[:12], branch, extra={"source": self._git.name})
        return True

    # -- update branches (pull-request mode) ---------------------------------------------------------

    def protect_base(self) -> None:
        """From now on refuse every push to the source's branch: pull-request mode never writes to it."""
        self._base_protected = True

    def remote_heads(self, branches: Sequence[str]) -> dict[str, str]:
        """The remote's head of each of ``branches`` that exists (one ``ls-remote``), fetched, so that their
        commits can be read; branches absent on the remote have no ``refs/remotes/origin/`` ref afterwards."""
        if not branches:
            return {}
        wanted = sorted(set(branches))
        _, out, _ = self._git.run(
            self._path, "ls-remote", "--heads", "origin", *(f"refs/heads/{b}" for b in wanted), network=True
        )
        heads: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            name = ref.strip().removeprefix("refs/heads/")
            if name in wanted:
                heads[name] = sha.strip()
        missing = [b for b in heads if self._rev_or_none(f"{heads[b]}^{{commit}}") is None]
        if missing:
            self._git.run(
                self._path, "fetch", "--quiet", "--no-tags", "origin",
                *(f"+refs/heads/{b}:refs/remotes/origin/{b}" for b in missing),
                network=True, what="fetch",
            )  # fmt: skip
        for name in wanted:
            if name in heads:
                self._git.run(self._path, "update-ref", f"refs/remotes/origin/{name}", heads[name])
            else:
                self._git.run(self._path, "update-ref", "-d", f"refs/remotes/origin/{name}", check=False)
        return heads

    def start_update_branch(self, branch: str) -> str:
        """Check ``branch`` out afresh at ``origin/<source branch>`` (clean tree); the base commit."""
        self._require_managed("start_update_branch")
        if branch == self._branch:
            raise GitError(f"{self._git.describe()}: the update branch must differ from {self._branch!r}")
        base = f"refs/remotes/origin/{self._branch}"
        self._checkout(branch, base)
        return self._rev(base)

    def commits_beyond_base(self, rev: str) -> list[CommitInfo]:
        """The commits reachable from ``rev`` but not from ``origin/<source branch>``, newest first."""
        base = f"refs/remotes/origin/{self._branch}"
        out = self._git.run(
            self._path, "log", "--no-color", "--format=%H%x1f%an <%ae>%x1f%cn%x1f%ce%x1f%B%x1e",
            f"{base}..{rev}", "--",
        )[1]  # fmt: skip
        commits = []
        for record in out.split("\x1e"):
            fields = record.strip("\n").split("\x1f")
            if len(fields) == 5:
                sha, author, cname, cemail, message = fields
                commits.append(CommitInfo(sha, author, (cname, cemail), message))
        return commits

    @property
    def base_head(self) -> str:
        """The commit ``origin/<source branch>`` points at."""
        return self._rev(f"refs/remotes/origin/{self._branch}")

    def describe_commits(self, shas: Sequence[str]) -> dict[str, tuple[tuple[str, ...], CommitInfo]]:
        """Each commit's parents and identity (one ``git log --no-walk`` for all of them)."""
        if not shas:
            return {}
        out = self._git.run(
            self._path, "log", "--no-walk=unsorted", "--no-color",
            "--format=%H%x1f%P%x1f%an <%ae>%x1f%cn%x1f%ce%x1f%B%x1e", *sorted(set(shas)), "--",
        )[1]  # fmt: skip
        found: dict[str, tuple[tuple[str, ...], CommitInfo]] = {}
        for record in out.split("\x1e"):
            fields = record.strip("\n").split("\x1f")
            if len(fields) == 6:
                sha, parents, author, cname, cemail, message = fields
                found[sha] = (tuple(parents.split()), CommitInfo(sha, author, (cname, cemail), message))
        return found

    def changed_blobs(self, shas: Sequence[str]) -> dict[str, dict[str, str]]:
        """Per commit, the files it changes against its first parent and their new blob ids (``""`` for a
        deletion): one ``git diff-tree --stdin`` for all the commits."""
        if not shas:
            return {}
        listing = "".join(f"{sha}\n" for sha in shas).encode()
        with tempfile.TemporaryFile() as stdin:
            stdin.write(listing)
            stdin.seek(0)
            out = self._git.run(
                self._path, "diff-tree", "--stdin", "-r", "--raw", "--no-renames", "-z", istream=stdin
            )[1]
        changed: dict[str, dict[str, str]] = {sha: {} for sha in shas}
        current: dict[str, str] | None = None
        fields = out.split("\0")
        i = 0
        while i < len(fields):
            field = fields[i].strip("\n")
            if field in changed:
                current = changed[field]
                i += 1
            elif field.startswith(":") and current is not None and i + 1 < len(fields):
                meta = field.split()
                new_blob = "" if meta[-1].startswith("D") else meta[3]
                current[fields[i + 1]] = new_blob
                i += 2
            else:
                i += 1
        return changed

    def holds_same_change(self, remote: str, head: str) -> bool:
        """``remote`` has ``head``'s tree on ``head``'s parent: pushing ``head`` would change nothing."""
        return self._same_update(remote, head)

    def push_update_branch(self, branch: str, expected: str | None) -> bool:
        """Push HEAD to the update ``branch``, replacing exactly ``expected`` (None: it must not exist).
        True when the remote changed (False: it already held this very commit).

        ``--force-with-lease=refs/heads/<branch>:<expected>``: if anyone moved the branch since it was
        read, ``PushRejected``. The source's branch (the base) is refused whatever the arguments.
        """
        if branch == self._branch:
            raise GitError(
                f"{self._git.describe()}: refusing to push to {branch!r}: it is the base branch of the "
                "pull requests and is never written in pull-request mode"
            )
        head = self.head
        out = self._push_head(branch, [f"--force-with-lease=refs/heads/{branch}:{expected or ''}"],
                              moved=f"someone else updated {branch} since it was read")
        self._git.run(self._path, "update-ref", f"refs/remotes/origin/{branch}", head)
        if any(line.startswith("=\t") for line in out.splitlines()):
            return False  # up to date: another pass pushed the identical commit
        log.debug("pushed %s to %s", head[:12], branch, extra={"source": self._git.name})
        return True

    def _push_head(self, branch: str, lease: Sequence[str], *, moved: str) -> str:
        """``git push`` of HEAD to ``branch`` of origin (``lease``: the --force-with-lease option, if any);
        its porcelain output. ``PushRejected`` (with ``moved`` as the reason) when the remote refused because
        it moved on, ``GitError`` for any other failure."""
        status, out, err = self._git.run(
            self._path,
            "push", "--porcelain", "--no-verify", *lease, "origin", f"HEAD:refs/heads/{branch}",
            network=True, check=False,
        )  # fmt: skip
        if status != 0:
            report = f"{out}\n{err}"
            rejected = [line for line in out.splitlines() if line.startswith("!")]
            if rejected and (_REJECTED.search(report) or _REMOTE_RACE.search(report)):
                raise PushRejected(
                    self._git.failure("push", status, "\n".join(rejected) or err) + f" ({moved})"
                )
            raise GitError(self._git.failure("push", status, err or out))
        return out

    def _same_update(self, remote: str, head: str) -> bool:
        """The remote push branch has our tree on our parent: pushing again would change nothing."""
        mine, theirs = self._tree_and_parents(head), self._tree_and_parents(remote)
        return bool(mine) and mine == theirs

    def _tree_and_parents(self, rev: str) -> list[str]:
        return self._git.run(self._path, "rev-parse", f"{rev}^{{tree}}", f"{rev}^@", check=False)[1].split()


def _commit_identity(
    author: tuple[str, str], committer: tuple[str, str], signer: Signer | None
) -> tuple[dict[str, str], list[str], list[str]]:
    """What a commit command needs for ``author``, ``committer`` and ``signer``: its environment (names,
    e-mails, the signer's), the ``-c`` options before the command and the signing option after it."""
    identity = {
        "GIT_AUTHOR_NAME": author[0], "GIT_AUTHOR_EMAIL": author[1],
        "GIT_COMMITTER_NAME": committer[0], "GIT_COMMITTER_EMAIL": committer[1],
    }
    if signer is None:
        return identity, [], []
    identity.update(signer.env)
    return identity, signer.commit_args(), [f"--gpg-sign={signer.key}"]


_WRITES_JOURNAL = "image-updater-writes.json"  # in .git: see GitRepo.prepare_in_place_writes
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str | None:
    """This boot of the machine (Linux), or None where it cannot be told."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _read_journal(journal: Path) -> tuple[str, set[str]] | None:
    """``(boot id, paths)`` of a journal of in-place writes; None when it is missing or unreadable."""
    try:
        data = json.loads(journal.read_bytes())
        boot, paths = data["boot_id"], data["paths"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if not isinstance(boot, str) or not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        return None
    return boot, set(paths)


_STAGING_REF = "refs/image-updater/staging"  # the throw-away commit of ``_prepack``; deleted at once


def _fast_import_path(path: str) -> bytes:
    """``path`` C-quoted for a ``git fast-import`` command (any byte but NUL survives)."""
    out = bytearray(b'"')
    for byte in os.fsencode(path):
        if byte in (0x22, 0x5C):
            out += b"\\" + bytes([byte])
        elif byte < 0x20 or byte == 0x7F:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    out += b'"'
    return bytes(out)


def _stripspace(message: str) -> str:
    """``message`` as ``git commit --cleanup=whitespace`` records it: trailing whitespace of each line and
    leading and trailing blank lines removed, runs of blank lines collapsed to one, a final newline."""
    lines: list[str] = []
    blank = False
    for line in message.split("\n"):
        line = line.rstrip(" \t\n\v\f\r")
        if not line:
            blank = bool(lines)
            continue
        if blank:
            lines.append("")
            blank = False
        lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""


def _describe(name: str, url: str, secrets: Sequence[str] = ()) -> str:
    shown = redact(url, *secrets)
    return shown if name == url else f"source {redact(name, *secrets)!r} ({shown})"


def origin_url(path: str | os.PathLike[str], *, timeout: float = 30.0) -> str | None:
    """The ``origin`` remote URL of the working copy holding ``path``; ``None`` outside one or without it.

    Discovery matches Argo CD Applications' ``repoURL`` against it (``plan DIR``, ``apply DIR``, a source's
    working copy, whose origin is the source URL)."""
    probe = _Git(name=str(path), url=str(path), env=_base_env(), secrets=(), timeout=timeout)
    try:
        status, out, _ = probe.run(Path(path), "config", "--get", "remote.origin.url", check=False)
    except (GitError, OSError):
        return None
    return (out.strip() or None) if status == 0 else None


def current_branch(path: str | os.PathLike[str], *, timeout: float = 30.0) -> str | None:
    """The branch checked out in the working copy holding ``path``; ``None`` outside one or on a detached
    HEAD. Discovery compares Argo CD Image Updater's git-branch settings with it (``plan DIR``)."""
    probe = _Git(name=str(path), url=str(path), env=_base_env(), secrets=(), timeout=timeout)
    try:
        status, out, _ = probe.run(Path(path), "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    except (GitError, OSError):
        return None
    return (out.strip() or None) if status == 0 else None


def _base_env() -> dict[str, str]:
    env = {
        "GIT_TERMINAL_PROMPT": "0",  # never wait for a user at a terminal
        "GIT_ASKPASS": "",  # an empty askpass disables any inherited one (IDEs set it)
        "SSH_ASKPASS": "",
        "GIT_LITERAL_PATHSPECS": "1",  # file names with * or [ are names, not patterns
        # git's messages (push rejections above all) are parsed: English whatever the user's locale.
        # GitPython sets these too, but our own env must not depend on that
        "LC_ALL": "C",
        "LANGUAGE": "C",
        # abort a transfer that delivers under 1 KB/s for a minute
        "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
        "GIT_HTTP_LOW_SPEED_TIME": "60",
    }
    return env


def _runner(
    url: str,
    name: str,
    auth: AuthSettings | None,
    private_dir: Path,
    environ: Mapping[str, str] | None,
    timeout: float,
    *,
    managed: bool,
) -> _Git:
    """The environment git runs with for this source: forced config, askpass or ssh command."""
    environ = os.environ if environ is None else environ
    describe = _describe(name, url)
    try:
        transport = source_transport(url)
    except ValueError as exc:
        raise GitError(f"{describe}: {exc}") from None
    if transport in ("https", "http", "ssh", "git") and re.match(r"^[a-z+]+://[^/@]*:[^/@]*@", url, re.I):
        raise GitError(f"{describe}: credentials in the URL are refused; use auth.token_env")
    env = _base_env()
    config = list(_FORCED_CONFIG)
    if managed or (auth is not None and auth.token_env):
        # no credential helper may store our token, or answer with someone else's
        config.append(("credential.helper", ""))
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    secrets: list[str] = []
    if auth is not None and auth.token_env:
        token = environ.get(auth.token_env, "")
        if not token:
            raise GitError(
                f"{describe}: environment variable {shown_env_name(auth.token_env)} (auth.token_env) "
                "is empty or unset"
            )
        secrets.append(token)
        askpass = private_dir / ".askpass"
        _write_private(askpass, _ASKPASS_SCRIPT.encode(), 0o700)
        env.update({"GIT_ASKPASS": str(askpass), _USER_VAR: auth.username, _TOKEN_VAR: token})
    if transport == "ssh" and (managed or auth is not None):
        env["GIT_SSH_COMMAND"] = _ssh_command(auth or AuthSettings(), private_dir, describe)
    return _Git(name=name, url=url, env=env, secrets=secrets, timeout=timeout)


def _ssh_command(auth: AuthSettings, private_dir: Path, describe: str) -> str:
    options = [
        "-o", "BatchMode=yes",  # fail instead of prompting for a passphrase or a host key
        "-o", "ConnectTimeout=30",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=4",
    ]  # fmt: skip
    if auth.insecure_skip_host_key_check:
        options += ["-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={os.devnull}"]
    elif auth.known_hosts is None:
        raise GitError(
            f"{describe}: SSH needs auth.known_hosts to verify the server's host key "
            "(or auth.insecure_skip_host_key_check: true for a throwaway setup)"
        )
    else:
        if not auth.known_hosts.is_file():
            raise GitError(f"{describe}: known_hosts file {auth.known_hosts} does not exist")
        options += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={auth.known_hosts}"]
    if auth.ssh_key_file is not None:
        key = _private_key(auth.ssh_key_file, private_dir, describe)
        options += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    return " ".join(shlex.quote(part) for part in ["ssh", *options])


def _private_key(key: Path, private_dir: Path, describe: str) -> Path:
    try:
        mode = stat.S_IMODE(key.stat().st_mode)
        if mode & 0o077 == 0:
            return key
        # ssh refuses a key others can read (secret volumes are often 0644): use a private copy
        content = key.read_bytes()
    except OSError as exc:
        raise GitError(f"{describe}: cannot read SSH key {key}: {exc.strerror}") from exc
    copy = private_dir / ".ssh" / hashlib.sha256(str(key.resolve()).encode()).hexdigest()[:16]
    copy.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(copy, content, 0o600)
    return copy
