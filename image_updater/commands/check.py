"""``image-updater check IMAGE [--policy P] [--explain] [--format table|json] [-c FILE]``.

Asks the real registry which tag ``IMAGE``'s policy picks, and with ``--explain`` shows every tag considered
and why each one lost. Exit codes: 0 a tag was chosen, 1 no tag qualifies or the registry failed, 2 an
invalid image, policy or config.

httpx and pydantic are imported inside ``run`` only, so ``check --help`` stays as fast as the rest of the CLI.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from image_updater.commands._policyargs import add_modifier_arguments, modifiers_from_args
from image_updater.policies import Policy, Status, TagInfo, Verdict, parse_policy
from image_updater.printable import printable
from image_updater.references import ImageReference, parse_reference
from image_updater.versions import scan_version

if TYPE_CHECKING:
    from image_updater.registry.resolve import Inspection

__all__ = ["add_arguments", "default_policy", "render_json", "render_table", "run"]


log = logging.getLogger("image_updater")

_EPILOG = """\
Without --policy, the IMAGE's tag decides: a version tag (1.25, v2.3.1, 1.16-perl, 2.0.0-rc.1) gets
'semver:>=<that version>' (same flavour, so 1.16-perl stays on -perl); any other tag, or none, gets 'newest'
(newest build time). Registries, credentials and the cache dir come from the config file (-c, else
$IMAGE_UPDATER_CONFIG), credentials also from the Docker config ($DOCKER_CONFIG/config.json or
~/.docker/config.json). Exit 0 when a tag was chosen, 1 when none qualifies or the registry failed, 2 for an
invalid image, policy or config.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s IMAGE [--policy P] [--explain] [--format table|json] [-c FILE]"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("image", metavar="IMAGE", help="image reference, e.g. nginx:1.25 or ghcr.io/acme/app")
    parser.add_argument("--policy", "-p", metavar="P", help="e.g. 'semver:~1.2' (default: see below)")
    parser.add_argument("--explain", action="store_true", help="list every tag considered and why it lost")
    parser.add_argument("--format", choices=["table", "json"], default="table", help="output format")
    parser.add_argument("-c", "--config", metavar="FILE", help="config file (registries, cache_dir)")
    add_modifier_arguments(parser, registry=True)


def default_policy(reference: ImageReference) -> str:
    """``semver:>=<version>`` when the current tag is a version (flavour dropped: it is matched anyway),
    else ``newest``."""
    tag = reference.effective_tag
    scanned = scan_version(tag)
    if scanned is None:
        return "newest"
    _, flavour, _, _ = scanned
    version = tag.split("+", 1)[0]
    if flavour:
        version = version[: -len(flavour) - 1] if version.endswith("-" + flavour) else version
    return f"semver:>={version}"



def _time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def render_json(
    image: str, policy: Policy, chosen: TagInfo | None, digest: str | None, verdicts: Sequence[Verdict]
) -> str:
    """The ``check --format json`` document (DESIGN "CLI contract")."""
    document = {
        "image": image,
        "policy": str(policy),
        "chosen": None if chosen is None else {
            "tag": chosen.tag, "digest": digest, "created": _json_time(chosen.created),
        },
        "candidates": [
            {"tag": v.tag, "created": _json_time(v.created), "status": v.status.value, "reason": v.reason}
            for v in verdicts
        ],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _summary(verdicts: Sequence[Verdict]) -> str:
    counts = Counter(v.status for v in verdicts)
    parts = [f"{counts[s]} {s.value}" for s in Status if counts[s]]
    noun = "tag" if len(verdicts) == 1 else "tags"
    return f"{len(verdicts)} {noun}" + (": " + ", ".join(parts) if parts else "")


def render_table(
    image: str,
    policy: Policy,
    policy_note: str,
    current: str | None,
    chosen: TagInfo | None,
    digest: str | None,
    verdicts: Sequence[Verdict],
    *,
    explain: bool,
) -> str:
    """A human's view: the answer first, then (``explain``) one aligned row per tag, the winner marked."""
    head: list[tuple[str, str]] = [("image", image), ("policy", str(policy) + policy_note)]
    if current is not None:
        head.append(("current", current))
    if chosen is None:
        head.append(("chosen", "none: no tag qualifies"))
    else:
        head.append(("chosen", chosen.tag + ("  (unchanged)" if chosen.tag == current else "")))
        head.append(("built", _time(chosen.created)))
        if digest:
            head.append(("digest", digest))
        if chosen.platforms:
            head.append(("platforms", ", ".join(sorted(chosen.platforms))))
    head.append(("tags", _summary(verdicts)))
    width = max(len(k) for k, _ in head)
    lines = [f"{k.ljust(width)}  {printable(v)}" for k, v in head]  # tags come from the registry
    if explain and verdicts:
        rows = [("", "TAG", "BUILT", "STATUS", "REASON")]
        for v in verdicts:
            mark = "*" if v.status is Status.CHOSEN else ""
            tag = v.tag + (" (current)" if v.tag == current else "")
            rows.append((mark, printable(tag), _time(v.created), v.status.value, printable(v.reason)))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines.append("")
        for row in rows:
            cells = [row[i].ljust(widths[i]) for i in range(4)] + [row[4]]
            lines.append("  ".join(cells).rstrip())
        lines.append("")
        lines.append("* chosen; 'lower' lost on the policy's order, the others were ruled out before ranking")
    return "\n".join(lines) + "\n"


def _unfetched_as_lower(verdicts: list[Verdict], inspection: Inspection) -> list[Verdict]:
    """Name-ordered policies with ``min_age``/``platforms`` stop fetching metadata at the first tag that
    passes; the tags below it were never inspected, so "platforms unknown" would be the wrong story."""
    chosen = inspection.chosen
    if chosen is None:
        return verdicts
    untouched = {t.tag for t in inspection.tags if (t.created, t.platforms, t.digest) == (None, None, None)}
    result: list[Verdict] = []
    for v in verdicts:
        if v.tag in untouched and v.status in (Status.TOO_YOUNG, Status.PLATFORM):
            v = Verdict(v.tag, v.created, Status.LOWER, f"ranks below {chosen.tag}; not inspected further")
        result.append(v)
    return result


def run(args: argparse.Namespace) -> int:
    import asyncio

    from image_updater.findings import ResolveKey
    from image_updater.registry import MetadataCache, RegistryClient, inspect, options_from_settings
    from image_updater.settings import load_settings

    reference = parse_reference(args.image)
    policy_text = args.policy or default_policy(reference)
    policy = parse_policy(policy_text, modifiers_from_args(args))
    note = "" if args.policy else f"  (default for tag {reference.effective_tag})"
    settings = load_settings(args.config)
    options = options_from_settings(settings)
    current = reference.effective_tag
    key = ResolveKey(image=reference.name, policy=policy, current_tag=current)
    now = datetime.now(UTC)

    async def query() -> Any:
        with MetadataCache.in_dir(settings.cache_dir) as cache:
            async with RegistryClient(options, cache=cache) as client:
                return await inspect(client, key, now=now)

    inspection = asyncio.run(query())
    verdicts = _unfetched_as_lower(policy.explain(inspection.tags, current=current, now=now), inspection)
    chosen = inspection.chosen
    digest = inspection.resolution.digest
    if args.format == "json":
        sys.stdout.write(render_json(reference.written_name, policy, chosen, digest, verdicts))
    else:
        sys.stdout.write(
            render_table(
                reference.written_name, policy, note, current, chosen, digest, verdicts, explain=args.explain
            )
        )
    if chosen is None:
        log.error("no tag of %s qualifies for %s (%s)", reference.written_name, policy, _summary(verdicts))
        return 1
    return 0
