"""Walking a checkout for YAML files: the only part of discovery that touches the file system.

Symbolic links are never followed, neither to directories nor to files: a link pointing inside the tree
names a file the walk reaches anyway (and editing through the link would replace it with a regular file),
and a link pointing outside must never be read or written.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from image_updater.errors import ConfigError, YamlEditError
from image_updater.plan import ErrorEntry
from image_updater.yamledit import read_text

from ._discover import KUSTOMIZATION_FILES

__all__ = ["is_yaml_name", "iter_yaml_files", "resolve_paths"]


def is_yaml_name(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith((".yaml", ".yml")) or name in KUSTOMIZATION_FILES


def resolve_paths(root: Path, paths: Sequence[str]) -> list[Path]:
    """The scan roots for ``paths`` under ``root``; ``ConfigError`` for a path that leaves the tree."""
    base = root.resolve()
    out: list[Path] = []
    for raw in paths or (".",):
        if not raw or Path(raw).is_absolute() or ".." in Path(raw).parts:
            raise ConfigError(f"path {raw!r} must be relative to the repository root, without '..'")
        candidate = base / raw
        resolved = candidate.resolve()
        if resolved != base and base not in resolved.parents:
            raise ConfigError(f"path {raw!r} leads outside the repository (through a symbolic link)")
        if not resolved.exists():
            raise ConfigError(f"path {raw!r} does not exist under {root}")
        out.append(candidate)
    return out


def _scan(directory: str, prefix: str, out: list[tuple[str, str]]) -> None:
    """Collect ``(repo-relative path, absolute path)`` of the YAML files under ``directory``, depth first in
    name order; symbolic links (to files or directories) and ``.git`` are skipped."""
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            if entry.name != ".git":
                _scan(entry.path, f"{prefix}{entry.name}/", out)
        elif entry.is_file(follow_symlinks=False) and is_yaml_name(entry.name):
            out.append((prefix + entry.name, entry.path))


def iter_yaml_files(
    root: Path, paths: Sequence[str] = (".",), *, errors: list[ErrorEntry] | None = None
) -> Iterator[tuple[str, str]]:
    """``(repo-relative POSIX path, text)`` for every ``*.yaml``/``*.yml``/``Kustomization`` under ``paths``,
    in path order, each file once; ``.git`` and symbolic links are skipped. Unreadable or undecodable files
    are appended to ``errors`` (when given) and skipped."""
    base = root.resolve()
    found: list[tuple[str, str]] = []
    for start in resolve_paths(root, paths):
        if start.is_symlink():
            continue
        resolved = start.resolve()
        rel = resolved.relative_to(base).as_posix()
        if resolved.is_file():
            if is_yaml_name(resolved.name):
                found.append((rel, str(resolved)))
        else:
            _scan(str(resolved), "" if rel == "." else f"{rel}/", found)
    seen: set[str] = set()
    for rel, path in sorted(found):
        if rel in seen:
            continue
        seen.add(rel)
        try:
            text = read_text(Path(path))
        except YamlEditError as exc:
            if errors is not None:
                errors.append(ErrorEntry(file=rel, line=None, image=None, message=str(exc)))
            continue
        yield rel, text
