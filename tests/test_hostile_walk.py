"""Hostile trees and working copies: the tree walk, file names, the cache directory, git's locale.

Each test runs one scenario of ``tests/hostile/walk.py`` (real registry, real bare repositories, real
``image-updater`` processes) and asserts generous bounds on its figures: only a hang can break them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.registry import require_registry_binary
from tests.hostile import walk


@pytest.fixture
def registry_binary() -> None:
    require_registry_binary()


def test_validate_scans_what_git_tracks_and_skips_tool_folders_outside_git(tmp_path: Path) -> None:
    figures = walk.ignored_folders(tmp_path)
    assert figures["git_seconds"] < 60 and figures["plain_seconds"] < 60


def test_a_1100_deep_tree_costs_one_error_naming_the_directory(tmp_path: Path) -> None:
    figures = walk.deep_tree(tmp_path, depth=1100)
    assert figures["plain_seconds"] < 60 and figures["git_seconds"] < 60


def test_a_file_name_that_is_not_utf8_is_reported_and_the_source_still_pushes(
    tmp_path: Path, registry_binary: None
) -> None:
    figures = walk.non_utf8_file_name(tmp_path)
    assert figures["first_pass_seconds"] < 120


def test_unusable_cache_dirs_end_in_one_line_naming_the_path(tmp_path: Path, registry_binary: None) -> None:
    figures = walk.cache_dir_problems(tmp_path)
    assert figures["cases"] >= 2


def test_two_run_once_on_one_fresh_cache_dir_both_succeed(tmp_path: Path, registry_binary: None) -> None:
    figures = walk.two_passes_on_one_cache(tmp_path)
    assert figures["seconds"] < 240


def test_a_busy_working_copy_is_waited_for_then_reported(tmp_path: Path, registry_binary: None) -> None:
    figures = walk.busy_working_copy(tmp_path)
    assert figures["busy_after_seconds"] < 60


def test_a_push_rejection_is_recognised_whatever_language_the_environment_asks_for(
    tmp_path: Path, registry_binary: None
) -> None:
    figures = walk.push_rejection_in_german(tmp_path)
    assert figures["seconds"] < 120


def test_files_the_walk_cannot_use_are_named_once_with_their_line(tmp_path: Path) -> None:
    """A file that is not UTF-8 or over the size cap is one error entry: file and line in their fields, the
    message the reason alone (no `path:line:` repeated inside it, no absolute path)."""
    from image_updater.plan import ErrorEntry
    from image_updater.worktree import iter_yaml_files
    from image_updater.yamledit import MAX_YAML_CHARS

    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "latin1.yaml").write_bytes(b"a: 1\nb: caf\xe9\n")
    with open(tmp_path / "apps" / "huge.yaml", "wb") as handle:
        handle.truncate(MAX_YAML_CHARS + 1)
    (tmp_path / "apps" / "ok.yaml").write_text("a: 1\n")
    errors: list[ErrorEntry] = []
    found = [rel for rel, _ in iter_yaml_files(tmp_path, ["."], errors=errors)]
    assert found == ["apps/ok.yaml"]
    by_file = {e.file: e for e in errors}
    assert set(by_file) == {"apps/latin1.yaml", "apps/huge.yaml"}
    assert by_file["apps/latin1.yaml"].line == 2
    assert by_file["apps/latin1.yaml"].message == "not UTF-8 (byte offset 11)"
    assert by_file["apps/huge.yaml"].message.startswith("refused: ")
    for entry in errors:
        assert str(tmp_path) not in entry.message and (entry.file or "?") not in entry.message
