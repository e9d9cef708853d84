"""Git faults: a push that loses a race against a human, and a cache directory whose disk is full.

A remote that is unreachable needs no helper: a URL to a closed port, or a local bare repository moved away
for the duration of a pass, is exactly that.

**Push race.** ``install_push_race(bare)`` installs a ``pre-receive`` hook; ``arm_push_race(bare, n)`` makes
the next ``n`` pushes lose: while git's receive-pack holds our pack but before it moves the branch, the hook
commits a new file as "a human" directly onto the branch (outside the quarantine, as a concurrent push would).
receive-pack then finds the branch no longer where it was and rejects our update (``failed to update ref``),
which is the real race a busy repository produces, in the server itself, for in-process passes and the daemon
subprocess alike. ``human_commits(bare)`` lists the commits the hook made.

**Disk full.** ``small_disk(directory)`` gives a small file system mounted at ``directory``, trying in order:
a ``tmpfs`` of a few MiB (needs ``mount``, i.e. root or a user namespace), a size-limited loop file system
(``losetup`` + ``mkfs.ext4``), and otherwise a *simulated* ``ENOSPC``: writes through ``os.write`` and
``io`` file objects under the directory are refused while "full". ``DiskFull.method`` says which one is in
use, so a test can report it. ``fill()`` takes all free space (a real file growing until ``ENOSPC``),
``free()`` gives it back.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["DiskFull", "arm_push_race", "human_commits", "install_push_race", "small_disk"]

_ARMED = "push-race-armed"
_HUMANS = "push-race-humans"

_HOOK = """#!{python}
# Installed by tests/faults/gitfaults.py: while armed, a "human" commit lands on the branch between the
# pusher's pack upload and its ref update, so that receive-pack rejects the update as a lost race.
import os, subprocess, sys
from pathlib import Path

here = Path.cwd()
armed = here / {armed!r}
updates = [line.split() for line in sys.stdin if line.strip()]
if not armed.exists():
    sys.exit(0)
left = int(armed.read_text().strip() or "1") - 1
if left > 0:
    armed.write_text(str(left))
else:
    armed.unlink()
env = {{k: v for k, v in os.environ.items()
       if k not in ("GIT_QUARANTINE_PATH", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES")}}
env.update(GIT_INDEX_FILE=str(here / "push-race-index"), GIT_AUTHOR_NAME="A Human",
           GIT_AUTHOR_EMAIL="human@example.com", GIT_COMMITTER_NAME="A Human",
           GIT_COMMITTER_EMAIL="human@example.com")

def git(*args, stdin=None):
    return subprocess.run(["git", *args], input=stdin, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()

humans = here / {humans!r}
number = len(humans.read_text().split()) + 1 if humans.exists() else 1
for old, new, ref in updates:
    if not ref.startswith("refs/heads/") or set(old) == {{"0"}}:
        continue
    current = git("rev-parse", ref)
    git("read-tree", current)
    blob = git("hash-object", "-w", "--stdin", stdin=f"human change {{number}}\\n")
    git("update-index", "--add", "--cacheinfo", f"100644,{{blob}},HUMAN-{{number}}.md")
    tree = git("write-tree")
    commit = git("commit-tree", tree, "-p", current, "-m", f"Human change {{number}}")
    git("update-ref", ref, commit, current)
    with humans.open("a") as out:
        out.write(commit + "\\n")
    number += 1
(here / "push-race-index").unlink(missing_ok=True)
sys.exit(0)
"""


def install_push_race(bare: Path) -> None:
    """Install the race hook in the bare repository ``bare`` (disarmed)."""
    hook = Path(bare) / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(_HOOK.format(python=sys.executable, armed=_ARMED, humans=_HUMANS))
    hook.chmod(0o755)


def arm_push_race(bare: Path, pushes: int = 1) -> None:
    """The next ``pushes`` pushes to ``bare`` lose a race against a human commit."""
    (Path(bare) / _ARMED).write_text(str(pushes))


def disarm_push_race(bare: Path) -> None:
    (Path(bare) / _ARMED).unlink(missing_ok=True)


def human_commits(bare: Path) -> list[str]:
    """The commits the hook made, oldest first."""
    path = Path(bare) / _HUMANS
    return path.read_text().split() if path.exists() else []


# ------------------------------------------------------------------------------------------- disk full

DiskMethod = Literal["tmpfs", "loop", "simulated"]


def _run(*args: str) -> bool:
    return subprocess.run(args, capture_output=True, timeout=60).returncode == 0


@dataclass
class DiskFull:
    """A small file system at ``path``; ``fill()`` makes it full, ``free()`` empties the filler."""

    path: Path
    method: DiskMethod
    _filler: Path = field(init=False)
    _full: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._filler = self.path / ".filler"

    @property
    def full(self) -> bool:
        return self._full

    def fill(self) -> None:
        self._full = True
        if self.method == "simulated":
            return
        block = b"\0" * (1 << 16)
        with contextlib.suppress(OSError), open(self._filler, "ab") as handle:
            while True:
                handle.write(block)
                handle.flush()
        # the last partial pages: small writes until nothing fits at all
        with contextlib.suppress(OSError), open(self._filler, "ab", buffering=0) as handle:
            while True:
                handle.write(b"\0" * 512)

    def free(self) -> None:
        self._full = False
        self._filler.unlink(missing_ok=True)


def _try_tmpfs(path: Path, size_mib: int) -> bool:
    if not shutil.which("mount"):
        return False
    return _run("mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0755", "tmpfs", str(path))


def _try_loop(path: Path, image: Path, size_mib: int) -> bool:
    if not (shutil.which("mkfs.ext4") and shutil.which("mount")):
        return False
    with open(image, "wb") as handle:
        handle.truncate(size_mib << 20)
    if not _run("mkfs.ext4", "-q", "-F", "-m", "0", str(image)):
        return False
    return _run("mount", "-o", "loop", str(image), str(path))


@contextlib.contextmanager
def _simulate(disk: DiskFull) -> Iterator[None]:
    """Refuse writes under ``disk.path`` with ENOSPC while ``disk.full``: os.write and Python file objects.

    Git runs as a subprocess and is not affected; the simulation covers the product's own writes (YAML files,
    the metadata cache's Python side), which is where a half-written file could come from.
    """
    import builtins
    import io

    root = str(disk.path.resolve())
    real_open, real_write, real_io_open = builtins.open, os.write, io.open

    def under(name: object) -> bool:
        try:
            if isinstance(name, int):  # open(descriptor): where does the descriptor point?
                target = os.readlink(f"/proc/self/fd/{name}")
            else:
                target = os.path.realpath(os.fspath(name))  # type: ignore[call-overload]
        except (TypeError, OSError):
            return False
        return target.startswith(root + os.sep)

    def guarded_open(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if disk.full and under(file) and any(c in mode for c in "wax+"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]

    def guarded_write(fd: int, data: Any) -> int:
        if disk.full and under(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    builtins.open = guarded_open  # type: ignore[assignment]
    io.open = guarded_open  # type: ignore[assignment]
    os.write = guarded_write
    try:
        yield
    finally:
        builtins.open, io.open, os.write = real_open, real_io_open, real_write


@contextlib.contextmanager
def small_disk(path: Path, size_mib: int = 16, *, allow_mount: bool = True) -> Iterator[DiskFull]:
    """A small file system at ``path`` (created empty) for the duration of the block; see the module doc."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    image = Path(tempfile.mkdtemp(prefix="small-disk-")) / "disk.img"
    method: DiskMethod = "simulated"
    if allow_mount and _try_tmpfs(path, size_mib):
        method = "tmpfs"
    elif allow_mount and _try_loop(path, image, size_mib):
        method = "loop"
    disk = DiskFull(path, method)
    try:
        if method == "simulated":
            with _simulate(disk):
                yield disk
        else:
            yield disk
    finally:
        disk.free()
        if method != "simulated":
            for _ in range(10):  # a git process of an abandoned pass may still hold the mount briefly
                if _run("umount", str(path)):
                    break
                subprocess.run(["sleep", "0.5"], check=False)
            else:
                _run("umount", "-l", str(path))
        shutil.rmtree(image.parent, ignore_errors=True)
