"""The bare Git repository ``image-updater demo`` pushes to: one commit of the example files.

``make_bare_repo`` runs the ``git`` command line with a fixed identity and a configuration of its own, so
the user's git settings (autocrlf, signing, hooks) cannot change what the repository contains. The tests
build their repositories with it too (``tests/servers/gitserver.py`` adds the git servers around it).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

__all__ = ["git", "make_bare_repo", "write_files"]

_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Human",
    "GIT_AUTHOR_EMAIL": "human@example.com",
    "GIT_COMMITTER_NAME": "Test Human",
    "GIT_COMMITTER_EMAIL": "human@example.com",
}
# the user's own git configuration must not change what the repositories contain
_CLEAN_CONFIG = {
    "GIT_CONFIG_COUNT": "3",
    "GIT_CONFIG_KEY_0": "core.autocrlf",
    "GIT_CONFIG_VALUE_0": "false",
    "GIT_CONFIG_KEY_1": "commit.gpgSign",
    "GIT_CONFIG_VALUE_1": "false",
    "GIT_CONFIG_KEY_2": "core.hooksPath",
    "GIT_CONFIG_VALUE_2": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    """Run ``git args`` with the fixed identity and configuration; its stdout, or RuntimeError with stderr."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **_CLEAN_CONFIG, **_IDENTITY, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def write_files(root: Path, files: Mapping[str, str | bytes | None]) -> None:
    """Write ``files`` (relative name -> text or bytes) under ``root``; ``None`` deletes the file."""
    for name, content in files.items():
        target = root / name
        if content is None:
            target.unlink(missing_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_bytes(content.encode("utf-8"))


def make_bare_repo(
    path: str | os.PathLike[str],
    files: Mapping[str, str | bytes] | None = None,
    *,
    branch: str = "main",
    message: str = "Initial commit",
) -> Path:
    """Create the bare repository ``path`` with one commit of ``files`` on ``branch``; returns ``path``."""
    bare = Path(path)
    files = {"README.md": "# test repository\n"} if files is None else files
    with tempfile.TemporaryDirectory(prefix="bare-seed-") as tmp:
        work = Path(tmp)
        git("init", "--quiet", f"--initial-branch={branch}", str(work))
        write_files(work, dict(files))
        git("add", "--all", cwd=work)
        git("commit", "--quiet", "--allow-empty", "-m", message, cwd=work)
        bare.parent.mkdir(parents=True, exist_ok=True)
        git("clone", "--quiet", "--bare", str(work), str(bare))
    # receive-pack over smart HTTP is off by default for anonymous users; the test server authenticates
    git("config", "http.receivepack", "true", cwd=bare)
    return bare
