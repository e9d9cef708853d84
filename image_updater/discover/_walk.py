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


def iter_yaml_files(
    root: Path, paths: Sequence[str] = (".",), *, errors: list[ErrorEntry] | None = None
) -> Iterator[tuple[str, str]]:
    """``(repo-relative POSIX path, text)`` for every ``*.yaml``/``*.yml``/``Kustomization`` under ``paths``,
    sorted, each file once; ``.git`` is skipped. Unreadable or undecodable files are appended to ``errors``
    (when given) and skipped."""
    base = root.resolve()
    seen: set[str] = set()
    for start in resolve_paths(root, paths):
        files: list[Path] = []
        if start.is_symlink():
            continue
        if start.is_file():
            files.append(start)
        else:
            for directory, dirnames, filenames in os.walk(start, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if d != ".git")
                for name in sorted(filenames):
                    if is_yaml_name(name):
                        files.append(Path(directory, name))
        for path in files:
            if path.is_symlink():
                continue
            rel = path.resolve().relative_to(base).as_posix()
            if rel in seen:
                continue
            seen.add(rel)
            try:
                text = read_text(path)
            except YamlEditError as exc:
                if errors is not None:
                    errors.append(ErrorEntry(file=rel, line=None, image=None, message=str(exc)))
                continue
            yield rel, text
