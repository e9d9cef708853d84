"""``image-updater apply [-c FILE] PATH [--commit] [--push]``: edit a local checkout in place (CI jobs).

Plans PATH exactly like ``plan`` and writes every update (only the characters of each changed scalar, one
verified atomic write per file). A file that cannot be written is reported and its updates dropped; the
other files are still written. Prints what was applied. Exit 0, or 1 when any error entry exists; 2 for
usage and config errors.

``--commit`` commits exactly the files it changed (one commit, identity and message from the config's
``commit`` section) in the git working copy PATH belongs to; ``--push`` (implies ``--commit``) pushes that
commit to the checked-out branch (or ``--branch``) of ``origin``, fast-forward only. The checkout is the CI
job's own: it is never reset or cleaned, so a push the remote rejects because it moved on is reported
(exit 1) for the job to re-run, instead of being retried on a rebuilt tree.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from image_updater.commands._planning import check_directory, log_errors, plan_path, progress_indicator

if TYPE_CHECKING:
    from image_updater.plan import Result
    from image_updater.settings import Settings

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="config file (registries, policy_dirs, cache_dir)")
    parser.add_argument("path", metavar="PATH", help="the checkout to edit")
    parser.add_argument("--format", choices=["table", "json", "markdown"], default="table",
                        help="how to print the applied updates (default: table)")
    parser.add_argument("--commit", action="store_true",
                        help="commit the changed files (only those) in PATH's git working copy")
    parser.add_argument("--push", action="store_true",
                        help="push the commit to origin (implies --commit); never forced")
    parser.add_argument("--branch", metavar="NAME",
                        help="branch to push to (default: the checked-out branch; needed on a detached HEAD)")


def run(args: argparse.Namespace) -> int:
    from image_updater.checkout import apply_result
    from image_updater.report import render
    from image_updater.settings import load_settings

    settings = load_settings(args.config)
    root = check_directory(args.path)
    if args.commit or args.push:
        from image_updater.signing import signer_for

        # a bad signing key: ConfigError (exit 2) before any file is edited
        signer_for(settings.commit.signing, settings.cache_dir)
    with progress_indicator() as progress:
        planned = plan_path(root, settings, progress)
        if progress:
            progress("writing")
        result = apply_result(root, planned)
    failed = bool(result.errors)
    if (args.commit or args.push) and result.updates:
        failed = _commit(root, result, settings, push=args.push, branch=args.branch) or failed
    log_errors(result, args.format)
    sys.stdout.write(render(result, args.format))
    sys.stdout.flush()
    return 1 if failed else 0


def _commit(root: Path, result: Result, settings: Settings, *, push: bool, branch: str | None) -> bool:
    """Commit (and push) the applied ``result``; True when that failed (the reason is logged)."""
    from image_updater.errors import GitError
    from image_updater.gitrepo import GitRepo
    from image_updater.writeback import commit_and_push

    try:
        repo = GitRepo.open(root, branch=branch)
        # file paths in the result are relative to PATH; the commit needs them relative to the work tree
        prefix = root.resolve().relative_to(repo.path.resolve())
        if prefix != Path("."):
            result = dataclasses.replace(result, updates=tuple(
                dataclasses.replace(c, file=(prefix / c.file).as_posix()) for c in result.updates
            ))
        sha, pushed = commit_and_push(repo, result, settings, source=repo.path.name, push=push)
    except GitError as exc:
        log.error("%s", exc)
        return True
    if sha is not None:
        log.info("%s %s", "pushed" if pushed else "committed", sha[:12])
    return False
