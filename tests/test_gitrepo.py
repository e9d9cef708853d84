"""gitrepo against real git: bare repositories by path and file://, smart HTTP through git http-backend with
a token, SSH through a real sshd. Clone once then fetch + hard reset (leftovers discarded), commits of exactly
the given files, no change no commit, rejected pushes that overwrite nothing, force-with-lease only on our own
push branch, and credentials that never reach .git/config, an error message or a debug log."""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from image_updater.errors import GitError, PushRejected
from image_updater.gitrepo import GitRepo, workdir_for
from image_updater.settings import AuthSettings, SourceSettings
from tests.fixtures.gitserver import GIT_HTTP_TOKEN, GIT_HTTP_USER, BareRepoFactory
from tests.servers.gitserver import GitHttpServer, SshServer, commit_to_bare

BOT = ("image-updater", "bot@example.com")
FILES = {
    "apps/web.yaml": "image: nginx:1.25\n",
    "apps/api.yaml": "image: ghcr.io/acme/api:1.0.0\n",
    "README.md": "# gitops\n",
    ".gitignore": "*.tmp\n",
}


def git(repo: Path, *args: str) -> str:
    where = ["--git-dir", str(repo)] if repo.name.endswith(".git") else ["-C", str(repo)]
    result = subprocess.run(
        ["git", *where, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def remote_head(bare: Path, branch: str = "main") -> str:
    return git(bare, "rev-parse", f"refs/heads/{branch}")


def show(bare: Path, rev: str, path: str) -> str:
    return git(bare, "show", f"{rev}:{path}")


@pytest.fixture
def bare(bare_repo: BareRepoFactory) -> Path:
    return bare_repo(FILES)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def sync(bare: Path, cache: Path, **kwargs: object) -> GitRepo:
    return GitRepo.sync(str(bare), "main", workdir_for(cache, "apps"), name="apps", **kwargs)  # type: ignore[arg-type]


# -- clone, fetch, reset ---------------------------------------------------------------------------------


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_clone_by_path_and_file_url(bare: Path, cache: Path, as_url: bool) -> None:
    url = bare.as_uri() if as_url else str(bare)
    repo = GitRepo.sync(url, "main", workdir_for(cache, "apps"), name="apps")
    assert repo.path == cache / "git" / repo.path.name
    assert repo.path.name.startswith("apps-")
    assert (repo.path / "apps" / "web.yaml").read_text() == FILES["apps/web.yaml"]
    assert repo.head == remote_head(bare)
    assert repo.branch == "main"
    assert git(repo.path, "config", "--get", "remote.origin.url") == url


def test_workdir_names_are_safe_and_distinct(tmp_path: Path) -> None:
    a, b, c = (workdir_for(tmp_path, n) for n in ("team/apps", "team apps", "../../etc"))
    assert len({a, b, c}) == 3
    for path in (a, b, c):
        assert path.parent == tmp_path / "git"
        assert "/" not in path.name and not path.name.startswith(".")


def test_second_sync_fetches_and_discards_every_leftover(bare: Path, cache: Path) -> None:
    repo = sync(bare, cache)
    marker = repo.path / ".git" / "clone-marker"
    marker.write_text("this clone is reused")
    # leftovers of a pass that died: edits, new and ignored files, an unpushed commit, a stale lock
    (repo.path / "apps" / "web.yaml").write_text("image: nginx:9.9\n")
    (repo.path / "apps" / "new.yaml").write_text("x: 1\n")
    (repo.path / "scratch.tmp").write_text("ignored\n")
    (repo.path / "apps" / "api.yaml").unlink()
    repo.commit(["apps/web.yaml"], "unpushed", author=BOT)
    (repo.path / "apps" / "web.yaml").write_text("image: nginx:8.8\n")
    (repo.path / ".git" / "index.lock").write_text("")
    human = commit_to_bare(bare, {"apps/other.yaml": "image: redis:7\n"})

    again = sync(bare, cache)
    assert marker.exists(), "the working copy must be reused, not cloned again"
    assert again.head == human == remote_head(bare)
    assert (again.path / "apps" / "web.yaml").read_text() == FILES["apps/web.yaml"]
    assert (again.path / "apps" / "api.yaml").read_text() == FILES["apps/api.yaml"]
    assert (again.path / "apps" / "other.yaml").read_text() == "image: redis:7\n"
    assert not (again.path / "apps" / "new.yaml").exists()
    assert not (again.path / "scratch.tmp").exists()
    assert again.changed_files() == []
    assert git(again.path, "status", "--porcelain", "--ignored") == ""


def test_a_changed_branch_or_url_is_followed(bare: Path, cache: Path, tmp_path: Path) -> None:
    sync(bare, cache)
    dev = commit_to_bare(bare, {"dev.yaml": "x: 1\n"}, branch="main")
    subprocess.run(["git", "--git-dir", str(bare), "branch", "dev", dev], check=True)
    commit_to_bare(bare, {"main-only.yaml": "x: 2\n"})
    on_dev = GitRepo.sync(str(bare), "dev", workdir_for(cache, "apps"), name="apps")
    assert on_dev.head == dev
    assert not (on_dev.path / "main-only.yaml").exists()
    moved = tmp_path / "moved.git"
    bare.rename(moved)
    again = GitRepo.sync(moved.as_uri(), "main", workdir_for(cache, "apps"), name="apps")
    assert again.head == remote_head(moved)
    assert git(again.path, "config", "--get", "remote.origin.url") == moved.as_uri()


def test_damaged_working_copy_is_cloned_again(bare: Path, cache: Path) -> None:
    repo = sync(bare, cache)
    (repo.path / ".git" / "HEAD").write_text("garbage\n")
    again = sync(bare, cache)
    assert again.head == remote_head(bare)


def test_foreign_directories_are_not_touched(bare: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(GitError, match="is not a git working copy"):
        GitRepo.sync(str(bare), "main", foreign, name="apps")
    subprocess.run(["git", "init", "-q", str(tmp_path / "other")], check=True)
    with pytest.raises(GitError, match="did not create"):
        GitRepo.sync(str(bare), "main", tmp_path / "other", name="apps")
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_a_killed_clone_leaves_nothing_that_looks_like_a_working_copy(bare: Path, cache: Path) -> None:
    workdir = workdir_for(cache, "apps")
    half = workdir.parent / f".{workdir.name}.clone-abc"
    half.mkdir(parents=True)
    (half / "junk").write_text("x")
    repo = sync(bare, cache)
    assert not half.exists()
    assert repo.head == remote_head(bare)


def test_unknown_branch_is_a_git_error_naming_the_source(bare: Path, cache: Path) -> None:
    with pytest.raises(GitError, match=r"git clone failed for source 'apps' \(.*repo\.git\): .*nope"):
        GitRepo.sync(str(bare), "nope", workdir_for(cache, "apps"), name="apps")


def test_for_source(bare: Path, cache: Path) -> None:
    source = SourceSettings(name="team/apps", url=str(bare))
    repo = GitRepo.for_source(source, cache)
    assert repo.path == workdir_for(cache, "team/apps")
    assert repo.head == remote_head(bare)


# -- commit ----------------------------------------------------------------------------------------------


def test_commit_stages_only_the_given_files(bare: Path, cache: Path) -> None:
    repo = sync(bare, cache)
    (repo.path / "apps" / "web.yaml").write_text("image: nginx:1.27\n")
    (repo.path / "apps" / "api.yaml").write_text("image: ghcr.io/acme/api:9.9.9\n")
    (repo.path / "stray.yaml").write_text("x: 1\n")
    assert repo.changed_files() == ["apps/api.yaml", "apps/web.yaml", "stray.yaml"]
    assert repo.changed_files(["apps/web.yaml", "README.md"]) == ["apps/web.yaml"]

    message = "Update 1 image in 1 file\n\n# a line starting with a hash survives\napps/web.yaml: nginx"
    sha = repo.commit(["apps/web.yaml"], message, author=BOT, committer=("Committer", "c@example.com"))
    assert sha == repo.head
    assert git(repo.path, "show", "--name-only", "--format=", sha) == "apps/web.yaml"
    assert git(repo.path, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha) == (
        "image-updater <bot@example.com>|Committer <c@example.com>"
    )
    assert git(repo.path, "log", "-1", "--format=%B", sha) == message
    # the rest of the working tree is untouched and unstaged
    assert repo.changed_files() == ["apps/api.yaml", "stray.yaml"]
    assert git(repo.path, "diff", "--cached", "--name-only") == ""


def test_commit_leaves_what_someone_else_staged_out(bare: Path, cache: Path) -> None:
    repo = sync(bare, cache)
    (repo.path / "stray.yaml").write_text("x: 1\n")
    git(repo.path, "add", "stray.yaml")
    (repo.path / "apps" / "web.yaml").write_text("image: nginx:1.27\n")
    sha = repo.commit(["apps/web.yaml"], "only web", author=BOT)
    assert sha is not None
    assert git(repo.path, "show", "--name-only", "--format=", sha) == "apps/web.yaml"
    assert git(repo.path, "diff", "--cached", "--name-only") == "stray.yaml"
    assert repo.commit(["apps/api.yaml"], "nothing of ours", author=BOT) is None


def test_no_change_no_commit(bare: Path, cache: Path) -> None:
    repo = sync(bare, cache)
    head = repo.head
    assert repo.commit([], "nothing", author=BOT) is None
    assert repo.commit(["apps/web.yaml"], "unchanged", author=BOT) is None
    (repo.path / "apps" / "web.yaml").write_text(FILES["apps/web.yaml"])  # rewritten with the same bytes
    assert repo.commit(["apps/web.yaml"], "same bytes", author=BOT) is None
    (repo.path / "stray.yaml").write_text("x: 1\n")
    assert repo.commit(["apps/web.yaml"], "other file changed", author=BOT) is None
    assert repo.head == head


def test_commit_adds_and_deletes_and_takes_odd_names(bare: Path, cache: Path) -> None:
    repo = sync(bare, cache)
    odd = "apps/we*ird [name].yaml"
    (repo.path / odd).write_text("image: a:1\n")
    (repo.path / "apps" / "web[1].yaml").write_text("image: b:1\n")  # matched literally, not as a glob
    (repo.path / "apps" / "api.yaml").unlink()
    sha = repo.commit([odd, "apps/api.yaml"], "add and delete", author=BOT)
    assert sha is not None
    changed = git(repo.path, "show", "--name-status", "--format=", sha).splitlines()
    assert sorted(changed) == ["A\tapps/we*ird [name].yaml", "D\tapps/api.yaml"]
    assert repo.changed_files() == ["apps/web[1].yaml"]


@pytest.mark.parametrize("path", ["../outside.yaml", "/etc/passwd", ".git/config", "apps/../../x"])
def test_commit_refuses_paths_outside_the_repository(bare: Path, cache: Path, path: str) -> None:
    repo = sync(bare, cache)
    with pytest.raises(GitError, match="is not a path inside the repository"):
        repo.commit([path], "escape", author=BOT)


# -- push ------------------------------------------------------------------------------------------------


def edit_and_commit(repo: GitRepo, content: str = "image: nginx:1.27\n") -> str:
    (repo.path / "apps" / "web.yaml").write_text(content)
    sha = repo.commit(["apps/web.yaml"], "Update nginx", author=BOT)
    assert sha is not None
    return sha


@pytest.mark.parametrize("depth", [None, 1], ids=["full", "shallow"])
def test_push_and_rejection_without_losing_anything(bare: Path, cache: Path, depth: int | None) -> None:
    url = bare.as_uri()  # file:// so that --depth really makes a shallow clone
    repo = GitRepo.sync(url, "main", workdir_for(cache, "apps"), name="apps", depth=depth)
    assert (repo.path / ".git" / "shallow").exists() is (depth is not None)
    ours = edit_and_commit(repo)
    human = commit_to_bare(bare, {"README.md": "# edited by a human\n"}, message="Human edit")

    with pytest.raises(PushRejected, match="push failed for source 'apps'") as info:
        repo.push()
    assert "sync and retry" in str(info.value)
    assert remote_head(bare) == human, "the human's commit must still be the remote head"

    # what the workflow does next: sync, re-apply, commit, push
    repo = GitRepo.sync(url, "main", workdir_for(cache, "apps"), name="apps", depth=depth)
    assert repo.head == human
    ours = edit_and_commit(repo)
    assert repo.push() is True
    assert remote_head(bare) == ours
    assert git(bare, "rev-parse", f"{ours}^") == human
    assert show(bare, "main", "README.md") == "# edited by a human"
    assert show(bare, "main", "apps/web.yaml") == "image: nginx:1.27"
    # nothing new: no push at all
    assert repo.push() is False


def test_push_rejected_by_a_server_hook_is_a_plain_git_error(bare: Path, cache: Path) -> None:
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'branch is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    repo = sync(bare, cache)
    edit_and_commit(repo)
    with pytest.raises(GitError) as info:
        repo.push()
    assert not isinstance(info.value, PushRejected)
    assert "branch is protected" in str(info.value)


def test_force_with_lease_on_our_own_push_branch(bare: Path, cache: Path) -> None:
    pb = "image-updater/main"
    repo = sync(bare, cache)
    repo.rebuild_branch(pb)
    first = edit_and_commit(repo)
    assert repo.push(pb, force_with_lease=True) is True
    assert remote_head(bare, pb) == first
    assert git(bare, "rev-parse", f"{first}^") == remote_head(bare)

    # next pass, same update: the branch already holds it, nothing is pushed
    repo = sync(bare, cache)
    repo.rebuild_branch(pb)
    edit_and_commit(repo)
    assert repo.push(pb, force_with_lease=True) is False
    assert remote_head(bare, pb) == first

    # main moved on: the update branch is rebuilt on top of it and replaced (it is ours)
    human = commit_to_bare(bare, {"README.md": "# moved\n"})
    repo = sync(bare, cache)
    repo.rebuild_branch(pb)
    rebuilt = edit_and_commit(repo)
    assert repo.push(pb, force_with_lease=True) is True
    assert remote_head(bare, pb) == rebuilt
    assert git(bare, "rev-parse", f"{rebuilt}^") == human
    assert remote_head(bare) == human, "the source branch is never touched"


def test_the_lease_protects_a_push_branch_someone_else_pushed_to(bare: Path, cache: Path) -> None:
    pb = "image-updater/main"
    repo = sync(bare, cache)
    repo.rebuild_branch(pb)
    edit_and_commit(repo)
    repo.push(pb, force_with_lease=True)

    repo = sync(bare, cache)
    repo.rebuild_branch(pb)
    edit_and_commit(repo, "image: nginx:1.28\n")
    theirs = commit_to_bare(bare, {"NOTES.md": "reviewer's fix\n"}, branch=pb)
    with pytest.raises(PushRejected):
        repo.push(pb, force_with_lease=True)
    assert remote_head(bare, pb) == theirs


def test_force_push_is_refused_for_the_source_branch(bare: Path, cache: Path) -> None:
    repo = sync(bare, cache)
    edit_and_commit(repo)
    with pytest.raises(GitError, match="refusing to force-push 'main'"):
        repo.push("main", force_with_lease=True)
    with pytest.raises(GitError, match="rebuild_branch"):
        repo.push("other", force_with_lease=True)
    with pytest.raises(GitError, match="must differ"):
        repo.rebuild_branch("main")


# -- an existing checkout (apply --commit --push) ---------------------------------------------------------


def test_open_an_existing_checkout(bare: Path, tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "-q", str(bare), str(checkout)], check=True)
    repo = GitRepo.open(checkout / "apps")
    assert repo.path == checkout
    assert repo.branch == "main"
    sha = edit_and_commit(repo)
    assert repo.push() is True
    assert remote_head(bare) == sha

    subprocess.run(["git", "-C", str(checkout), "checkout", "-q", "--detach"], check=True)
    with pytest.raises(GitError, match="detached"):
        GitRepo.open(checkout)
    opened = GitRepo.open(checkout, branch="main")
    assert opened.branch == "main"
    (checkout / "precious.txt").write_text("local work")
    for discard in (opened.refresh, lambda: opened.rebuild_branch("image-updater/main")):
        with pytest.raises(GitError, match="discards local changes"):
            discard()
    assert (checkout / "precious.txt").read_text() == "local work"
    with pytest.raises(GitError, match="not inside a git working copy"):
        GitRepo.open(tmp_path)


# -- HTTPS with a token -----------------------------------------------------------------------------------


def test_https_push_with_a_token_from_the_environment(
    git_http_server: GitHttpServer, bare_repo: BareRepoFactory, cache: Path
) -> None:
    bare = bare_repo(FILES, parent=git_http_server.root)
    url = git_http_server.url_for(bare)
    auth = AuthSettings(token_env="GIT_TOKEN", username=GIT_HTTP_USER)
    env = {"GIT_TOKEN": GIT_HTTP_TOKEN}
    repo = GitRepo.sync(url, "main", workdir_for(cache, "apps"), auth=auth, name="apps", environ=env)
    sha = edit_and_commit(repo)
    assert repo.push() is True
    assert remote_head(bare) == sha
    pushes = [r for r in git_http_server.requests if r.path.endswith("git-receive-pack")]
    assert [(r.user, r.status) for r in pushes] == [(GIT_HTTP_USER, 200)]

    # a second pass over HTTP: fetch with the token again, reset, nothing to do
    again = GitRepo.sync(url, "main", workdir_for(cache, "apps"), auth=auth, name="apps", environ=env)
    assert again.head == sha
    assert again.push() is False

    config = (repo.path / ".git" / "config").read_text()
    assert GIT_HTTP_TOKEN not in config
    assert git(repo.path, "config", "--get", "remote.origin.url") == url
    askpass = cache / "git" / ".askpass"
    assert stat.S_IMODE(askpass.stat().st_mode) == 0o700
    assert GIT_HTTP_TOKEN not in askpass.read_text()


def test_a_large_push_goes_through_the_test_server(
    git_http_server: GitHttpServer, bare_repo: BareRepoFactory, cache: Path
) -> None:
    # over http.postBuffer (1 MiB) git streams the pack with chunked transfer encoding
    bare = bare_repo(FILES, parent=git_http_server.root)
    auth = AuthSettings(token_env="T")
    repo = GitRepo.sync(
        git_http_server.url_for(bare),
        "main",
        workdir_for(cache, "a"),
        auth=auth,
        environ={"T": GIT_HTTP_TOKEN},
    )
    (repo.path / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    sha = repo.commit(["big.bin"], "big", author=BOT)
    assert repo.push() is True
    assert remote_head(bare) == sha


def test_a_wrong_token_fails_clearly_without_showing_it(
    git_http_server: GitHttpServer, bare_repo: BareRepoFactory, cache: Path
) -> None:
    bare = bare_repo(FILES, parent=git_http_server.root)
    url = git_http_server.url_for(bare)
    wrong = "wrong-token-canary-7f3e"
    with pytest.raises(GitError) as info:
        GitRepo.sync(
            url,
            "main",
            workdir_for(cache, "apps"),
            auth=AuthSettings(token_env="T"),
            name="apps",
            environ={"T": wrong},
        )
    message = str(info.value)
    assert wrong not in message
    assert f"git clone failed for source 'apps' ({url})" in message
    assert "Authentication failed" in message
    assert not workdir_for(cache, "apps").exists()


def test_no_token_no_prompt(git_http_server: GitHttpServer, bare_repo: BareRepoFactory, cache: Path) -> None:
    bare = bare_repo(FILES, parent=git_http_server.root)
    with pytest.raises(GitError, match=r"terminal prompts disabled|could not read Username"):
        GitRepo.sync(
            git_http_server.url_for(bare), "main", workdir_for(cache, "apps"), name="apps", environ={}
        )
    with pytest.raises(GitError, match=r"environment variable T \(auth\.token_env\) is empty or unset"):
        GitRepo.sync(
            git_http_server.url_for(bare),
            "main",
            workdir_for(cache, "a"),
            auth=AuthSettings(token_env="T"),
            environ={},
        )


def test_credentials_in_the_url_are_refused(cache: Path) -> None:
    with pytest.raises(GitError) as info:
        GitRepo.sync("https://bot:pw-canary-123@example.com/a.git", "main", workdir_for(cache, "a"), name="a")
    assert "pw-canary-123" not in str(info.value)
    assert "credentials in the URL are refused" in str(info.value)


def test_network_operations_are_bounded_in_time(cache: Path) -> None:
    # a server that accepts connections and never answers
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/repo.git"
        with pytest.raises(GitError, match=r"git clone timed out after 2s for source 'apps'"):
            GitRepo.sync(url, "main", workdir_for(cache, "apps"), name="apps", timeout=2, environ={})
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        listener.close()


# -- SSH --------------------------------------------------------------------------------------------------


def ssh_auth(server: SshServer, **overrides: object) -> AuthSettings:
    values: dict[str, object] = {"ssh_key_file": server.client_key, "known_hosts": server.known_hosts}
    values.update(overrides)
    return AuthSettings.model_validate(values)


def test_ssh_push_with_known_hosts(sshd_server: SshServer, bare: Path, cache: Path) -> None:
    url = sshd_server.url_for(bare)
    repo = GitRepo.sync(url, "main", workdir_for(cache, "apps"), auth=ssh_auth(sshd_server), name="apps")
    sha = edit_and_commit(repo)
    assert repo.push() is True
    assert remote_head(bare) == sha
    assert "Accepted publickey" in sshd_server.log()


def test_ssh_key_readable_by_others_is_used_through_a_private_copy(
    sshd_server: SshServer, bare: Path, cache: Path, tmp_path: Path
) -> None:
    loose = tmp_path / "mounted-secret-key"
    loose.write_bytes(sshd_server.client_key.read_bytes())
    loose.chmod(0o644)
    url = sshd_server.url_for(bare)
    repo = GitRepo.sync(url, "main", workdir_for(cache, "a"), auth=ssh_auth(sshd_server, ssh_key_file=loose))
    assert repo.head == remote_head(bare)
    copies = list((cache / "git" / ".ssh").iterdir())
    assert len(copies) == 1 and stat.S_IMODE(copies[0].stat().st_mode) == 0o600


def test_ssh_refuses_to_run_without_known_hosts(sshd_server: SshServer, bare: Path, cache: Path) -> None:
    url = sshd_server.url_for(bare)
    for auth in (None, ssh_auth(sshd_server, known_hosts=None)):
        with pytest.raises(GitError, match=r"SSH needs auth\.known_hosts"):
            GitRepo.sync(url, "main", workdir_for(cache, "apps"), auth=auth, name="apps")
    assert "Accepted publickey" not in sshd_server.log(), "nothing may connect before the check"
    # explicitly told: the host key is not checked
    insecure = ssh_auth(sshd_server, known_hosts=None, insecure_skip_host_key_check=True)
    repo = GitRepo.sync(url, "main", workdir_for(cache, "apps"), auth=insecure, name="apps")
    assert repo.head == remote_head(bare)


def test_ssh_host_key_mismatch_is_refused(
    sshd_server: SshServer, bare: Path, cache: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other_host"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"[127.0.0.1]:{sshd_server.port} {other.with_suffix('.pub').read_text()}")
    url = sshd_server.url_for(bare)
    refused = r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED"
    with pytest.raises(GitError, match=refused):
        GitRepo.sync(url, "main", workdir_for(cache, "apps"), auth=ssh_auth(sshd_server, known_hosts=wrong))


# -- the canary -------------------------------------------------------------------------------------------


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    for name in ("image_updater", "git"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def test_a_canary_password_never_leaks(
    bare_repo: BareRepoFactory, cache: Path, debug_logs: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    canary = "canary-Pa55word-9d8c7b"
    errors: list[str] = []
    with GitHttpServer(tmp_path / "srv", username="bot", password=canary) as server:
        bare = bare_repo(FILES, parent=server.root)
        url = server.url_for(bare)
        auth = AuthSettings(token_env="CANARY", username="bot")
        env = {"CANARY": canary}
        repo = GitRepo.sync(url, "main", workdir_for(cache, "apps"), auth=auth, name="apps", environ=env)
        edit_and_commit(repo)
        commit_to_bare(bare, {"README.md": "# race\n"})
        try:
            repo.push()
        except PushRejected as exc:
            errors.append(str(exc))
        repo = GitRepo.sync(url, "main", workdir_for(cache, "apps"), auth=auth, name="apps", environ=env)
        edit_and_commit(repo)
        assert repo.push() is True
        # the same secret used as a wrong password elsewhere: the failure shows no secret either
        try:
            GitRepo.sync(
                url, "main", workdir_for(cache, "x"), auth=auth, environ={"CANARY": canary + "-wrong"}
            )
        except GitError as exc:
            errors.append(str(exc))
    assert len(errors) == 2
    assert debug_logs.records, "debug logging must have been active"
    assert canary not in debug_logs.text
    for message in errors:
        assert canary not in message
    for path in (cache / "git").rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path
    assert canary not in git(repo.path, "log", "--format=%B%an%ae%cn%ce", "-5")
    # the token only ever lived in the git processes' environment, never in ours
    assert "IMAGE_UPDATER_GIT_PASSWORD" not in os.environ
