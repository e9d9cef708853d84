"""``image-updater validate [-c FILE] [PATH] [--format text|json] [-v]``: lint without asking any registry.

Reports every invalid policy, annotation, setter marker and policy file under PATH (default ``.``), and
the files that could hold targets but do not parse, each with file:line. ``-v`` (and ``--format json``,
always) also lists everything it understood: every policy definition (policy files, Flux ``ImagePolicy``
objects) and every field a policy keeps up to date (workload containers by annotation or policy file,
kustomize ``images:`` entries, Helm values, setter markers), and the fields left alone on purpose. With
``-c`` the config file is validated too (its policy_dirs are then linted as well). Warnings (always shown)
say what is done differently from a migrated tool: an Argo CD Image Updater Application whose write-back
method is ``argocd`` is written to Git (and where), a git-branch setting naming another branch. Exit 0 when
all is well (warnings included), 1 when anything is reported, 2 when the config itself is invalid (everything
else is still reported).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from image_updater.commands._planning import check_directory
from image_updater.commands.check import translated
from image_updater.errors import ConfigError
from image_updater.printable import printable

if TYPE_CHECKING:
    from image_updater.discover import Discovery, PolicyDef, Target

__all__ = ["add_arguments", "found", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="config file to validate (and its policy_dirs)")
    parser.add_argument("path", nargs="?", default=".", metavar="PATH",
                        help="directory to lint (default: the current directory)")
    parser.add_argument("--format", choices=["text", "json"], default="text",
                        help="output format (json always lists everything found)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also list every policy definition, updated field and skipped field found")


def _definition(d: PolicyDef) -> dict[str, Any]:
    return {
        "file": d.file, "line": d.line, "kind": "flux-policy" if d.flux else "policy",
        "name": f"{d.namespace}:{d.name}" if d.namespace else d.name,
        "image": d.image.written_name if d.image is not None else None,
        "policy": str(d.policy) if d.policy is not None else None,
        "origin": "policy-file",
        "targets": [rule.path for rule in d.targets],
        "valid": d.problem is None and d.policy is not None and d.image is not None,
    }


def _target(t: Target) -> dict[str, Any]:
    out = {
        "file": t.file, "line": t.line, "kind": t.shape, "resource": t.resource, "container": t.container,
        "image": t.image.written_name, "value": t.value, "policy": str(t.policy), "origin": t.origin,
        "policy_source": t.policy_source,
    }
    if t.insert is not None:  # the value has no scalar yet and is added, or the file itself is written
        out["action"] = "create" if t.insert.parent < 0 else "insert"
    return out


def _translated(t: Target) -> str:
    """A migrated tool's setting as our policy, modifiers included (``validate -v`` text)."""
    return translated(t.policy)


def found(discovery: Discovery) -> list[dict[str, Any]]:
    """Every automation source found, in file and line order: policy definitions and updated fields."""
    entries = [_definition(d) for d in discovery.definitions] + [_target(t) for t in discovery.targets]
    for entry, t in zip(entries[len(discovery.definitions):], discovery.targets, strict=True):
        if t.origin in ("keel", "fleet", "aiu-annotation", "aiu-imageupdater"):
            entry["translated"] = _translated(t)
    return sorted(entries, key=lambda e: (e["file"], e["line"], e["kind"]))


def _text_line(entry: dict[str, Any]) -> str:
    where = f"{entry['file']}:{entry['line']}"
    if entry["kind"] in ("policy", "flux-policy"):
        label = "Flux ImagePolicy" if entry["kind"] == "flux-policy" else "policy"
        if not entry["valid"]:
            return f"{where}: {label} {entry['name']}: invalid (see below)"
        targets = f" (targets: {', '.join(entry['targets'])})" if entry["targets"] else ""
        return f"{where}: {label} {entry['name']}: {entry['image']} {entry['policy']}{targets}"
    about = ", ".join(x for x in (entry["resource"], entry["container"] and f"container {entry['container']}")
                      if x)
    value, image = entry["value"], entry["image"]
    shown = value if value and value.startswith(image) else f"{image} {value}" if value else image
    if entry.get("action") == "insert":
        shown += " (to be added)"
    elif entry.get("action") == "create":
        shown += " (new file)"
    source = f" at {entry['policy_source']}" if entry["policy_source"] else ""
    policy = entry.get("translated", entry["policy"])
    return f"{where}: {entry['kind']} {shown}, {policy} ({entry['origin']}{source}" + (
        f"; {about})" if about else ")")


def _where(file: str | None, line: int | None) -> str:
    return f"{file}:{line}" if file and line else (file or "-")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from image_updater.checkout import discover_directory
    from image_updater.settings import load_settings

    config_error: str | None = None
    policy_dirs: list[Path] = []
    namespace = "argocd"
    if args.config:
        try:
            loaded = load_settings(args.config)
            policy_dirs, namespace = list(loaded.policy_dirs), loaded.migration.argocd_namespace
        except ConfigError as exc:
            config_error = str(exc)
    root = check_directory(args.path)
    discovery, _texts = discover_directory(root, policy_dirs=policy_dirs, argocd_namespace=namespace)
    errors = discovery.errors
    if args.format == "json":
        sys.stdout.write(json.dumps({
            "config": {"file": args.config, "error": config_error} if args.config else None,
            "errors": [e.to_dict() for e in errors],
            "files": discovery.files_scanned, "policies": discovery.policies,
            "targets": len(discovery.targets), "skipped": len(discovery.skipped),
            "found": found(discovery),
            "skipped_fields": [s.to_dict() for s in discovery.skipped],
            "warnings": [w.to_dict() for w in discovery.warnings],
        }, indent=2, ensure_ascii=False) + "\n")
    else:
        lines: list[str] = []
        if config_error is not None:
            lines.append(printable(f"{args.config}: {config_error}", keep_newlines=True))
        if args.verbose:
            lines += [printable(_text_line(entry)) for entry in found(discovery)]
            lines += [printable(f"{_where(s.file, s.line)}: skipped {s.image or '-'}: {s.reason}")
                      for s in discovery.skipped if s not in discovery.warnings]
        # what is done differently from a migrated tool: always shown, never a problem
        lines += [printable(f"{_where(w.file, w.line)}: warning: {w.reason}") for w in discovery.warnings]
        for e in errors:
            image = f"{e.image}: " if e.image else ""
            lines.append(printable(f"{_where(e.file, e.line)}: {image}{e.message}"))
        problems = len(errors) + (config_error is not None)
        lines.append(
            f"{discovery.files_scanned} files, {discovery.policies} policies, "
            f"{len(discovery.targets)} targets, {len(discovery.skipped)} skipped: "
            + ("ok" if not problems else f"{problems} problem{'s' if problems != 1 else ''}")
        )
        sys.stdout.write("\n".join(lines) + "\n")
    if config_error is not None:
        return 2
    return 1 if errors else 0
