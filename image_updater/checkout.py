"""The one place that runs discover -> resolve -> plan -> apply on a directory.

``plan``/``apply`` on the command line and the git workflow (one pass per source) both call these
functions, so a checkout is always planned and edited the same way. This module is an edge: it reads the
tree (``worktree``), talks to registries through the ``RegistryClient`` it is given and writes files through
``worktree.edit_file`` (atomic, verified).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from image_updater.discover import Discovery, discover_files
from image_updater.errors import YamlEditError
from image_updater.findings import ErrorEntry
from image_updater.plan import Change, Result, build_plan
from image_updater.worktree import (
    create_file,
    edit_file,
    is_yaml_name,
    iter_yaml_files,
    read_text,
    sync_directory,
)
from image_updater.yamledit import Edit, apply_edits, apply_verified, parse_yaml

if TYPE_CHECKING:
    from image_updater.registry import RegistryClient

__all__ = [
    "Planned",
    "Progress",
    "apply_result",
    "discover_directory",
    "edited_texts",
    "plan_directory",
    "plan_discovery",
    "read_policy_dirs",
]

log = logging.getLogger(__name__)

# Called with a short human-readable phase description ("resolving 12 images"); the CLI shows it on a TTY.
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Planned:
    """One planned directory: what discovery found, the decided Result, and the texts it was planned on
    (every file holding a target), which ``apply_result`` checks nothing has changed since."""

    root: Path
    discovery: Discovery
    result: Result
    texts: Mapping[str, str]


def _reason(exc: Exception, *names: object) -> str:
    """``exc``'s text without a leading ``name:`` or ``name:line:`` (the entry carries file and line)."""
    message = str(exc)
    for name in names:
        prefix = f"{name}:"
        if message.startswith(prefix):
            rest = message[len(prefix):]
            number, sep, after = rest.partition(": ")
            return after if sep and number.isdigit() else rest.lstrip()
    return message


def _sort_errors(errors: Iterable[ErrorEntry]) -> tuple[ErrorEntry, ...]:
    return tuple(sorted(errors, key=lambda e: (e.file or "", e.line or 0, e.message)))


def read_policy_dirs(policy_dirs: Sequence[Path], errors: list[ErrorEntry]) -> list[tuple[str, str]]:
    """``(display path, text)`` of every YAML file in the config's ``policy_dirs`` (recursively)."""
    out: list[tuple[str, str]] = []
    for directory in policy_dirs:
        directory = Path(directory).expanduser()
        if not directory.is_dir():
            errors.append(ErrorEntry(file=str(directory), line=None, image=None,
                                     message="policy_dirs entry is not a directory"))
            continue
        for path in sorted(directory.rglob("*")):
            if path.is_symlink() or not path.is_file() or not is_yaml_name(path.name):
                continue
            try:
                out.append((str(path), read_text(path)))
            except YamlEditError as exc:
                errors.append(ErrorEntry(file=str(path), line=None, image=None, message=_reason(exc, path)))
    return out


def discover_directory(
    root: Path,
    paths: Sequence[str] = (".",),
    *,
    policy_dirs: Sequence[Path] = (),
    repo_url: str | None = None,
    argocd_namespace: str = "argocd",
    branch: str | None = None,
) -> tuple[Discovery, dict[str, str]]:
    """Walk ``paths`` under ``root`` and discover; returns the discovery and the texts of the files that hold
    a target. ``ConfigError`` when a path leaves the tree. ``repo_url`` (default: the ``origin`` remote of
    ``root``'s working copy) is what Argo CD Applications' ``repoURL`` must equal to be followed; ``branch``
    (default: the branch checked out there) is the branch written, which AIU's git-branch settings name."""
    errors: list[ErrorEntry] = []
    files = dict(iter_yaml_files(root, paths, errors=errors))
    extra = read_policy_dirs(policy_dirs, errors)
    if any("argocd-image-updater.argoproj.io/" in text for text in files.values()):
        # GitPython only when a tree has Applications to follow
        from image_updater.gitrepo import current_branch, origin_url

        repo_url = origin_url(root) if repo_url is None else repo_url
        branch = current_branch(root) if branch is None else branch
    discovery = discover_files(files, extra_policy_files=extra, repo_url=repo_url,
                               argocd_namespace=argocd_namespace, branch=branch)
    if errors:
        discovery = dataclasses.replace(discovery, errors=_sort_errors([*discovery.errors, *errors]))
    # a target in a file that does not exist yet (a created override file) is planned on the empty text
    texts = {t.file: files.get(t.file, "") for t in discovery.targets}
    return discovery, texts


async def plan_directory(
    root: Path,
    paths: Sequence[str] = (".",),
    *,
    client: RegistryClient,
    policy_dirs: Sequence[Path] = (),
    now: datetime | None = None,
    progress: Progress | None = None,
    images: Collection[str] | None = None,
    explain: bool = False,
    argocd_namespace: str = "argocd",
    branch: str | None = None,
) -> Planned:
    """Discover ``paths`` under ``root``, resolve every distinct (image, policy) once, and plan.

    ``images`` (normalised names) limits the plan to the targets of those images. ``explain``: the Result
    also keeps the best verdicts per image (``Result.explained``, what the status page and
    ``plan --format html`` show); it costs a ranking of each tag list, so only they ask for it.
    """
    if progress:
        progress("discovering")
    import asyncio  # here, where a loop runs: `plan` of a tree without targets never starts one (~19 ms)

    # a worker thread: reading and parsing a large tree takes seconds, and the daemon's event loop must keep
    # answering /healthz, /metrics and webhooks meanwhile
    discovery, texts = await asyncio.to_thread(discover_directory, root, paths, policy_dirs=policy_dirs,
                                               argocd_namespace=argocd_namespace, branch=branch)
    return await plan_discovery(root, discovery, texts, client=client, now=now, progress=progress,
                                images=images, explain=explain)


async def plan_discovery(
    root: Path,
    discovery: Discovery,
    texts: Mapping[str, str],
    *,
    client: RegistryClient,
    now: datetime | None = None,
    progress: Progress | None = None,
    images: Collection[str] | None = None,
    explain: bool = False,
) -> Planned:
    """``plan_directory`` after discovery (``discovery`` and ``texts`` as ``discover_directory`` returns
    them); the registry layer is imported only when there is something to resolve."""
    if images is not None:
        wanted = set(images)
        targets = tuple(t for t in discovery.targets if t.image.name in wanted)
        discovery = dataclasses.replace(discovery, targets=targets)
        texts = {t.file: texts[t.file] for t in targets}
    keys = discovery.resolve_keys
    if progress:
        count = len({k.image for k in keys})
        progress(f"resolving {count} image{'s' if count != 1 else ''}")
    resolutions = {}
    if keys:
        from image_updater.registry import resolve  # the registry layer (httpx) only when a plan needs it

        resolutions = await resolve(client, keys, now=now, candidates=explain)
    result = build_plan(discovery, resolutions)
    log.debug("planned %s: %d targets, %d updates, %d errors", root, len(discovery.targets),
              len(result.updates), len(result.errors))
    return Planned(root=root, discovery=discovery, result=result, texts=texts)


def _by_file(changes: Iterable[Change]) -> dict[str, list[Change]]:
    grouped: dict[str, list[Change]] = {}
    for change in changes:
        grouped.setdefault(change.file, []).append(change)
    return grouped


def _separate(text: str, file: str, edits: Sequence[Edit]) -> tuple[list[int], dict[int, str]] | None:
    """When a file's edits fail together, try each on its own: the indexes of those that pass alone and the
    reason of each that fails. ``None`` when none passes or none fails alone (the file as a whole is at
    fault): then nothing is written, as before. One refused edit never costs the file's other updates."""
    if len(edits) < 2:
        return None
    try:
        parsed = parse_yaml(text, filename=file)
    except YamlEditError:
        return None
    good: list[int] = []
    bad: dict[int, str] = {}
    for index, edit in enumerate(edits):
        try:
            apply_verified(parsed, [edit], filename=file)
        except YamlEditError as exc:
            bad[index] = _reason(exc, file)
        else:
            good.append(index)
    return (good, bad) if good and bad else None


def edited_texts(planned: Planned) -> dict[str, tuple[str, str]]:
    """``file -> (before, after)`` for every file with updates, computed in memory (``plan --format diff``).

    Edits that cannot be rendered are left out, as ``apply_result`` would leave them out (and report them);
    a file none of whose edits can be rendered is left out."""
    out: dict[str, tuple[str, str]] = {}
    for file, changes in sorted(_by_file(planned.result.updates).items()):
        before = planned.texts[file]
        edits = [Edit(c.start, c.end, c.new, insert=c.insert) for c in changes]
        try:
            out[file] = (before, apply_edits(before, edits, filename=file))
        except YamlEditError as exc:
            split = _separate(before, file, edits)
            try:
                if split is None:
                    raise
                out[file] = (before, apply_edits(before, [edits[i] for i in split[0]], filename=file))
            except YamlEditError:
                log.warning("%s: cannot render the planned edits: %s", file, exc)
    return out


def _original(text: str, change: Change) -> str | None:
    """The source text at a change's span, if it still holds the planned old value (quoted or not)."""
    raw = text[change.start : change.end]
    if raw == change.old or (len(raw) >= 2 and raw[0] in "'\"" and raw[-1] == raw[0] and change.old in raw):
        return raw
    return None


def _line_start(text: str, offset: int) -> int:
    return max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1


def apply_result(
    root: Path, planned: Planned | Result, *, durable: bool = True, in_place: bool = False
) -> Result:
    """Write every update of a plan into the files under ``root``, one verified atomic write per file.

    A file that fails (changed since planning, does not re-parse as expected, cannot be written) is reported
    as an ``ErrorEntry`` and its changes are dropped from ``updates``; every other file still proceeds. When
    only some of a file's edits are refused, those alone are reported (one entry each) and dropped, and the
    file is written with the others.
    ``durable=False`` (the daemon's working copies in the cache directory, which a commit and push follow):
    no fsync per file, one ``sync_directory`` of ``root`` at the end of the pass; a user's checkout keeps
    two fsyncs per file (``write_atomic``).
    ``in_place=True`` (a working copy whose ``GitRepo.prepare_in_place_writes`` journalled the files): each
    file is overwritten through its own inode (``worktree.write_in_place``), no directory fsync.
    Returns the Result as applied.
    """
    result = planned.result if isinstance(planned, Planned) else planned
    texts = planned.texts if isinstance(planned, Planned) else {}
    kept: list[Change] = []
    errors = list(result.errors)
    for file, changes in sorted(_by_file(result.updates).items()):
        path = root / file
        try:
            if any(c.created for c in changes):
                edits = [Edit(c.start, c.end, c.new, insert=c.insert) for c in changes]
                create_file(path, edits, root=root, durable=durable, in_place=in_place)
                kept.extend(changes)
                continue
            if file in texts:
                text = texts[file]
                edits = [Edit(c.start, c.end, c.new, insert=c.insert, original=text[c.start : c.end]
                              if c.insert is None else text[_line_start(text, c.start) : c.start])
                         for c in changes]
            else:
                current = read_text(path)
                originals = [_original(current, c) for c in changes]
                stale = [c for c, o in zip(changes, originals, strict=True) if o is None]
                if stale:
                    raise YamlEditError(f"{file}:{stale[0].line}: expected {stale[0].old!r} there; "
                                        "the file changed since it was planned")
                edits = [Edit(c.start, c.end, c.new, original=o, insert=c.insert)
                         for c, o in zip(changes, originals, strict=True)]
            try:
                edit_file(path, edits, root=root, durable=durable, in_place=in_place)
            except YamlEditError:
                split = _separate(read_text(path), file, edits)
                if split is None:
                    raise
                good, bad = split
                edit_file(path, [edits[i] for i in good], root=root, durable=durable,
                          in_place=in_place)
                for index, why in sorted(bad.items()):
                    change = changes[index]
                    errors.append(ErrorEntry(file=file, line=change.line, image=change.image,
                                             message=f"not written, this update dropped: {why}"))
                kept.extend(changes[i] for i in good)
                continue
        except (YamlEditError, OSError) as exc:
            errors.append(ErrorEntry(file=file, line=changes[0].line, image=None,
                                     message=f"not written, {len(changes)} update(s) dropped: "
                                             f"{_reason(exc, file, path)}"))
            continue
        kept.extend(changes)
    if not durable and not in_place and kept:
        sync_directory(root)
    return dataclasses.replace(result, updates=tuple(kept), errors=_sort_errors(errors))
