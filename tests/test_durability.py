"""Which writes are fsynced (issue 16): a user's checkout (``apply``) gets an fsync of every written file and
of its directory; the daemon's working copy in the cache directory (disposable: the commit and the push are
what must last) overwrites its files in place with no fsync of them, after fsyncing the journal that lists
them (``GitRepo.prepare_in_place_writes``) when it lists a file for the first time this boot. Counted
through ``os.fsync``, in process, against the real registry and a real bare repository; behaviour, not
timing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from image_updater.cli import main
from image_updater.gitrepo import workdir_for
from tests.test_writeback import T0, repo_files, seeded, show, write_config

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

def test_the_daemons_working_copy_overwrites_in_place_after_journalling_once_per_boot(
    tmp_path: Path, seeded: Any, pusher: Any, bare_repo: Any, repo_files: dict[str, str],
    fsyncs: list[Path],
) -> None:
    bare = bare_repo(repo_files)
    config = write_config(tmp_path, seeded, str(bare))
    work = Path(os.path.realpath(workdir_for(tmp_path / "cache", "demo")))
    assert main(["run", "--once", "-c", str(config)]) == 0  # clones, then the first update
    names = ("apps/deployment.yaml", "apps/kustomization.yaml")
    inodes = {name: (work / name).stat().st_ino for name in names}
    assert "team/web:1.2.0" in show(bare, "apps/deployment.yaml")  # both files committed and pushed
    assert 'newTag: "10"' in show(bare, "apps/kustomization.yaml")
    # no fsync of any file of the working tree: the journal listing the two files (its temporary file,
    # then .git after the rename), before they were written
    inside = [p for p in fsyncs if p.is_relative_to(work)]
    assert len(inside) == 2, inside
    assert inside[0].parent == work / ".git" and inside[0].name.startswith(".image-updater-writes.json.")
    assert inside[1] == work / ".git"
    journal = json.loads((work / ".git" / "image-updater-writes.json").read_text())
    assert journal == {"boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
                       "paths": ["apps/deployment.yaml", "apps/kustomization.yaml"]}

    # a newer tag: the same file is overwritten through the same inode, and the journal, which already
    # lists it, is not written again
    pusher.push("team/web", "1.3.0", created=T0 + timedelta(days=9))
    fsyncs.clear()
    assert main(["run", "--once", "-c", str(config)]) == 0
    assert "team/web:1.3.0" in show(bare, "apps/deployment.yaml")
    assert (work / "apps/deployment.yaml").stat().st_ino == inodes["apps/deployment.yaml"]
    assert [p for p in fsyncs if p.is_relative_to(work)] == []
