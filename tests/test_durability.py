"""Which writes are fsynced (issue 16): a user's checkout (``apply``) gets an fsync of every written file and
of its directory; the daemon's working copy in the cache directory (disposable: the commit and the push are
what must last) gets no per-file fsync and one directory fsync per pass. Counted through ``os.fsync``, in
process, against the real registry and a real bare repository; behaviour, not timing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from image_updater.cli import main
from image_updater.gitrepo import workdir_for
from tests.test_writeback import repo_files, seeded, show, write_config

__all__ = ["repo_files", "seeded"]  # fixtures of tests/test_writeback.py, used here by name


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Every path ``os.fsync`` is called on in this process, in order."""
    seen: list[Path] = []
    real = os.fsync

    def counting(fd: Any) -> None:
        number = fd if isinstance(fd, int) else fd.fileno()
        seen.append(Path(os.readlink(f"/proc/self/fd/{number}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    yield seen


def test_apply_on_a_users_checkout_fsyncs_each_file_and_its_directory(
    tmp_path: Path, seeded: Any, repo_files: dict[str, str], fsyncs: list[Path]
) -> None:
    checkout = tmp_path / "checkout"
    for name, text in repo_files.items():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text(text)
    config = write_config(tmp_path, seeded, "unused")
    assert main(["apply", "-c", str(config), str(checkout)]) == 0
    real = Path(os.path.realpath(checkout))
    assert "team/web:1.2.0" in (real / "apps/deployment.yaml").read_text()
    inside = [p for p in fsyncs if p.is_relative_to(real)]
    # each file once (its temporary file, before the rename over it), then its directory (after the rename)
    assert len(inside) == 4, inside
    assert inside[1] == inside[3] == real / "apps"
    assert inside[0].parent == inside[2].parent == real / "apps"
    assert inside[0].name.startswith(".deployment.yaml.") and inside[0].name.endswith(".tmp")
    assert inside[2].name.startswith(".kustomization.yaml.") and inside[2].name.endswith(".tmp")

def test_the_daemons_working_copy_gets_one_directory_fsync_per_pass(
    tmp_path: Path, seeded: Any, bare_repo: Any, repo_files: dict[str, str], fsyncs: list[Path]
) -> None:
    bare = bare_repo(repo_files)
    config = write_config(tmp_path, seeded, str(bare))
    assert main(["run", "--once", "-c", str(config)]) == 0
    assert "team/web:1.2.0" in show(bare, "apps/deployment.yaml")  # both files committed and pushed
    assert 'newTag: "10"' in show(bare, "apps/kustomization.yaml")
    work = Path(os.path.realpath(workdir_for(tmp_path / "cache", "demo")))
    inside = [p for p in fsyncs if p.is_relative_to(work)]
    assert inside == [work]
