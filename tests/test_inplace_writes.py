"""In-place writes of the daemon's working copy and the fast commit (issue 16), against real git.

``worktree.write_in_place`` overwrites a file through its own inode; ``GitRepo.prepare_in_place_writes``
journals the files first so that the first sync after a machine restart checks them out again (a power loss
can leave a torn file whose size and times git's index still matches). ``GitRepo.commit`` of a managed
working copy builds its commit from one fast-import pack and falls back to ``git commit`` whenever git
would record something else than the files' bytes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from image_updater.errors import YamlEditError
from image_updater.gitrepo import GitRepo
from image_updater.worktree import write_in_place
from tests.fixtures.gitserver import BareRepoFactory
from tests.test_gitrepo import BOT, FILES, git, show, sync

JOURNAL = ".git/image-updater-writes.json"


@pytest.fixture
def bare(bare_repo: BareRepoFactory) -> Path:
    return bare_repo(FILES)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


# -- write_in_place ----------------------------------------------------------------------------------------


def test_write_in_place_keeps_the_inode_and_mode_and_creates_missing_files(tmp_path: Path) -> None:
    target = tmp_path / "a.yaml"
    target.write_text("image: nginx:1.25  # a longer line than the new one\n")
    target.chmod(0o640)
    inode = target.stat().st_ino
    write_in_place(target, "image: nginx:1.27\n", root=tmp_path)
    assert target.read_bytes() == b"image: nginx:1.27\n"  # shorter: truncated to the new length
    assert target.stat().st_ino == inode
    assert target.stat().st_mode & 0o777 == 0o640
    write_in_place(tmp_path / "new.yaml", "a: 1\r\n", root=tmp_path)
    assert (tmp_path / "new.yaml").read_bytes() == b"a: 1\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "new.yaml"]  # no temporary file


def test_write_in_place_refuses_links_leading_outside_and_non_files(tmp_path: Path) -> None:
    outside = tmp_path / "outside.yaml"
    outside.write_text("secret: 1\n")
    root = tmp_path / "repo"
    root.mkdir()
    (root / "link.yaml").symlink_to(outside)
    with pytest.raises(YamlEditError, match="outside"):
        write_in_place(root / "link.yaml", "x: 1\n", root=root)
    assert outside.read_text() == "secret: 1\n"
    (root / "dir.yaml").mkdir()
    with pytest.raises(YamlEditError, match=r"dir\.yaml"):
        write_in_place(root / "dir.yaml", "x: 1\n", root=root)


def test_a_failed_in_place_write_puts_the_old_bytes_back(tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes the longer write fail half-way (EFBIG), as a full disk would, in a child process
    target = tmp_path / "a.yaml"
    old = "image: nginx:1.25\n" * 20
    target.write_text(old)
    script = f"""
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).resolve().parent.parent)!r})
from image_updater.errors import YamlEditError
from image_updater.worktree import write_in_place
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({len(old) + 100}, resource.RLIM_INFINITY))
try:
    write_in_place(Path({str(target)!r}), "image: nginx:1.27\\n" * 400, root=None)
except YamlEditError as exc:
    print("refused:", exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "refused:" in out.stdout and "cannot write" in out.stdout, out
    assert target.read_text() == old


# -- the journal -------------------------------------------------------------------------------------------


def test_prepare_journals_new_paths_only_and_never_for_a_checkout_of_someone(
    bare: Path, cache: Path, tmp_path: Path
) -> None:
    repo = sync(bare, cache)
    journal = repo.path / JOURNAL
    assert repo.prepare_in_place_writes(["apps/web.yaml"]) is True
    assert json.loads(journal.read_text()) == {"boot_id": boot_id(), "paths": ["apps/web.yaml"]}
    before = journal.stat().st_mtime_ns, journal.stat().st_ino
    assert repo.prepare_in_place_writes(["apps/web.yaml"]) is True
    assert (journal.stat().st_mtime_ns, journal.stat().st_ino) == before  # listed already: not rewritten
    assert repo.prepare_in_place_writes(["apps/api.yaml"]) is True
    assert json.loads(journal.read_text())["paths"] == ["apps/api.yaml", "apps/web.yaml"]
    # a sync of this boot keeps the journal (its files need no repair; it lists every file of this boot)
    again = sync(bare, cache)
    assert json.loads((again.path / JOURNAL).read_text())["paths"] == ["apps/api.yaml", "apps/web.yaml"]

    clone = tmp_path / "mine"
    git(tmp_path, "clone", "--quiet", str(bare), str(clone))
    assert GitRepo.open(clone).prepare_in_place_writes(["apps/web.yaml"]) is False
    assert not (clone / JOURNAL).exists()


def torn_but_unchanged_to_git(repo: GitRepo, name: str) -> bytes:
    """Overwrite ``name`` with other bytes of the same size and put its mtime back: what a power loss can
    leave of an in-place write. With ctime and sub-second times ignored (core.checkStat=minimal), git's
    index takes the file for unchanged, exactly the case the journal is for."""
    git(repo.path, "config", "core.checkStat", "minimal")
    git(repo.path, "config", "core.trustctime", "false")
    path = repo.path / name
    os.utime(path, (1_600_000_000, 1_600_000_000))  # older than the index: not "racily clean"
    git(repo.path, "update-index", "--refresh")
    info = path.stat()
    torn = b"\0" * info.st_size
    path.write_bytes(torn)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    return torn


def test_after_a_restart_the_journalled_files_are_checked_out_again(
    bare: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    repo = sync(bare, cache)
    assert repo.prepare_in_place_writes(["apps/web.yaml"]) is True
    torn = torn_but_unchanged_to_git(repo, "apps/web.yaml")
    # the same boot: git trusts its index, the file stays as it is (the hazard itself)
    assert (sync(bare, cache).path / "apps/web.yaml").read_bytes() == torn
    assert git(repo.path, "status", "--porcelain") == ""

    journal = repo.path / JOURNAL
    journal.write_text(json.dumps({"boot_id": "an-earlier-boot", "paths": ["apps/web.yaml", "../x", "apps"]}))
    with caplog.at_level(logging.WARNING, logger="image_updater.gitrepo"):
        again = sync(bare, cache)
    assert (again.path / "apps/web.yaml").read_text() == FILES["apps/web.yaml"]
    assert (again.path / "apps/api.yaml").read_text() == FILES["apps/api.yaml"]  # not listed, untouched
    assert not journal.exists()
    assert any("machine restarted after 1 file(s)" in r.getMessage() for r in caplog.records)


def test_an_unreadable_journal_clones_again(bare: Path, cache: Path) -> None:
    repo = sync(bare, cache)
    torn = torn_but_unchanged_to_git(repo, "apps/api.yaml")
    (repo.path / JOURNAL).write_text("{not json")
    again = sync(bare, cache)
    assert (again.path / "apps/api.yaml").read_bytes() != torn
    assert (again.path / "apps/api.yaml").read_text() == FILES["apps/api.yaml"]
    assert not (again.path / JOURNAL).exists()


# -- the fast commit ---------------------------------------------------------------------------------------


def loose_objects(repo: GitRepo) -> int:
    out = git(repo.path, "count-objects", "-v")
    return int(next(line.split()[1] for line in out.splitlines() if line.startswith("count:")))


def test_a_managed_commit_writes_one_pack_and_no_loose_object_per_file(bare: Path, cache: Path) -> None:
    repo = sync(bare, cache)
    parent = repo.head
    loose = loose_objects(repo)
    (repo.path / "apps/web.yaml").write_text("image: nginx:1.27\n")
    (repo.path / "apps/api.yaml").write_text("image: ghcr.io/acme/api:2.0.0\n")
    # over fast-import's unpack limit (100 objects; below it git itself stores them loose)
    extra = [f"teams/t{i}/app.yaml" for i in range(120)]
    for name in extra:
        (repo.path / name).parent.mkdir(parents=True)
        (repo.path / name).write_text(f"image: app:{name}\n")
    message = "\n\nUpdate 2 images   \n\n\n\napps/web.yaml: nginx\n\n"
    sha = repo.commit(["apps/web.yaml", "apps/api.yaml", *extra], message, author=BOT)
    assert sha == repo.head
    assert git(repo.path, "rev-parse", f"{sha}^") == parent
    assert loose_objects(repo) - loose <= 1  # the commit object alone; blobs and trees are in the pack
    assert git(repo.path, "log", "-1", "--format=%B", sha) == "Update 2 images\n\napps/web.yaml: nginx"
    assert git(repo.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha) == (
        "image-updater <bot@example.com>|image-updater <bot@example.com>"
    )
    assert sorted(git(repo.path, "show", "--name-only", "--format=", sha).splitlines()) == sorted(
        ["apps/api.yaml", "apps/web.yaml", *extra]
    )
    assert git(repo.path, "status", "--porcelain") == ""  # the index follows the new HEAD
    assert git(repo.path, "for-each-ref", "refs/image-updater/") == ""  # the throw-away ref is gone
    assert git(repo.path, "reflog", "-1", "--format=%gs", "main") == "commit: Update 2 images"
    assert repo.push() is True
    assert show(bare, "main", "apps/api.yaml") == "image: ghcr.io/acme/api:2.0.0"


def test_a_managed_commit_records_what_git_add_would_when_attributes_convert(
    bare_repo: BareRepoFactory, cache: Path
) -> None:
    # text=auto turns CRLF into LF in the blob: the pack's raw bytes disagree, git commit does it instead
    bare = bare_repo({**FILES, ".gitattributes": "*.yaml text=auto\n"})
    repo = sync(bare, cache)
    (repo.path / "apps/web.yaml").write_bytes(b"image: nginx:1.27\r\n")
    (repo.path / "apps/run.sh").write_text("#!/bin/sh\n")
    (repo.path / "apps/run.sh").chmod(0o755)
    sha = repo.commit(["apps/web.yaml", "apps/run.sh"], "Update nginx", author=BOT)
    assert sha is not None
    assert git(repo.path, "cat-file", "-p", f"{sha}:apps/web.yaml") == "image: nginx:1.27"
    assert git(repo.path, "cat-file", "blob", f"{sha}:apps/web.yaml").count("\r") == 0
    assert git(repo.path, "ls-tree", sha, "apps/run.sh").split()[0] == "100755"
    assert git(repo.path, "for-each-ref", "refs/image-updater/") == ""


def test_a_managed_commit_of_an_executable_a_symlink_and_a_deletion(bare: Path, cache: Path) -> None:
    repo = sync(bare, cache)
    (repo.path / "apps/run.sh").write_text("#!/bin/sh\n")
    (repo.path / "apps/run.sh").chmod(0o755)
    (repo.path / "apps/link.yaml").symlink_to("web.yaml")
    (repo.path / "apps/api.yaml").unlink()
    sha = repo.commit(["apps/run.sh", "apps/link.yaml", "apps/api.yaml"], "three", author=BOT)
    assert sha is not None
    assert git(repo.path, "cat-file", "-p", f"{sha}:apps/link.yaml") == "web.yaml"
    listing = git(repo.path, "ls-tree", "-r", sha).splitlines()
    tree = {line.split("\t")[1]: line.split()[0] for line in listing}
    assert tree["apps/run.sh"] == "100755" and tree["apps/link.yaml"] == "120000"
    assert "apps/api.yaml" not in tree
    assert git(repo.path, "status", "--porcelain") == ""

