"""``image-updater check IMAGE [--policy P | --path DIR] [--explain] [--format table|json] [-c FILE]``.

Asks the real registry which tag ``IMAGE``'s policy picks, and with ``--explain`` shows every tag considered
and why each one lost. ``--path DIR`` (without ``--policy``) takes the policy from the targets of ``IMAGE``
found under ``DIR``, whatever set it (annotations, policy files, markers, or a migrated tool's settings:
Argo CD Image Updater, Keel, Fleet), and says where it comes from and what it was translated to; several
different policies for the image are exit 2, naming each. Exit codes: 0 a tag was chosen, 1 no tag qualifies
or the registry failed, 2 an invalid image, policy or config.

httpx and pydantic are imported inside ``run`` only, so ``check --help`` stays as fast as the rest of the CLI.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from image_updater.commands import RawDescriptionHelpFormatter
from image_updater.commands._policyargs import add_modifier_arguments, modifiers_from_args
from image_updater.policies import Policy, Status, TagInfo, Verdict, parse_policy
from image_updater.printable import printable
from image_updater.references import ImageReference, parse_reference
from image_updater.versions import scan_version

if TYPE_CHECKING:
    from image_updater.registry.resolve import Inspection

__all__ = [
    "FoundPolicy", "add_arguments", "default_policy", "policy_from_tree", "render_json", "render_table",
    "run", "translated",
]


log = logging.getLogger("image_updater")

_EPILOG = """\
With --path DIR and no --policy, the policy of IMAGE's targets under DIR is used (the config's policy_dirs
and migration settings apply), and the current tag is theirs when IMAGE has none. Without either, the tag
decides: a version tag (1.25, v2.3.1, 1.16-perl, 2.0.0-rc.1) gets 'semver:>=<that version>' (same flavour,
so 1.16-perl stays on -perl); any other tag, or none, gets 'newest' (newest build time). Registries,
credentials and the cache dir come from the config file (-c, else
$IMAGE_UPDATER_CONFIG), credentials also from the Docker config ($DOCKER_CONFIG/config.json or
~/.docker/config.json). Exit 0 when a tag was chosen, 1 when none qualifies or the registry failed, 2 for an
invalid image, policy or config.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s IMAGE [--policy P | --path DIR] [--explain] [--format table|json] [-c FILE]"
    parser.formatter_class = RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("image", metavar="IMAGE", help="image reference, e.g. nginx:1.25 or ghcr.io/acme/app")
    parser.add_argument("--policy", "-p", metavar="P", help="e.g. 'semver:~1.2' (default: see below)")
    parser.add_argument("--path", metavar="DIR",
                        help="take IMAGE's policy from its targets under DIR (e.g. a migrated repository)")
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



@dataclass(frozen=True, slots=True)
class FoundPolicy:
    """The policy of IMAGE's targets under ``--path``, where it is set and what they hold now."""

    policy: Policy
    origin: str
    source: str | None  # "file:line" of what set it
    targets: tuple[str, ...]  # "file:line" of the fields it keeps up to date
    current: str | None  # their current tag, when they agree on one
    setting: str | None = None  # the migrated tool's settings it was translated from, as written

    @property
    def note(self) -> str:
        """What follows the policy in ``check``'s table: the modifiers its text does not show, its origin."""
        where = f" {self.source}" if self.source else ""
        count = f"{len(self.targets)} target{'s' if len(self.targets) != 1 else ''}"
        extra = translated(self.policy)[len(str(self.policy)):]
        told = f": {self.setting}" if self.setting else ""
        return f"{extra}  (from {self.origin}{where}{told}; {count})"


def policy_from_tree(
    reference: ImageReference, targets: Sequence[Any], translations: Sequence[tuple[str, str, str]] = ()
) -> FoundPolicy:
    """The one policy the discovered ``targets`` of ``reference``'s repository follow; ``ConfigError`` when
    none does, or when they follow several (each named). ``translations``: ``(policy_source, image, the
    migrated settings as written)``, to say what the policy was translated from."""
    from image_updater.errors import ConfigError

    mine = [t for t in targets if t.image.same_repository(reference)]
    if not mine:
        raise ConfigError(f"--path: no field under the directory follows a policy for {reference.name}")
    groups: dict[str, list[Any]] = {}
    for t in mine:
        groups.setdefault(str(t.policy), []).append(t)
    if len(groups) > 1:
        listed = "; ".join(f"{text} ({g[0].origin} {g[0].policy_source or g[0].file})"
                           for text, g in groups.items())
        raise ConfigError(f"--path: the fields of {reference.name} follow {len(groups)} different policies: "
                          f"{listed}; choose one with --policy")
    chosen = next(iter(groups.values()))
    first = chosen[0]
    tags = {t.image.tag for t in chosen}
    setting = next((text for source, image, text in translations
                    if source == first.policy_source and image == first.image.name), None)
    return FoundPolicy(policy=first.policy, origin=first.origin, source=first.policy_source,
                       targets=tuple(f"{t.file}:{t.line}" for t in chosen),
                       current=tags.pop() if len(tags) == 1 else None, setting=setting)


def translated(policy: Policy) -> str:
    """The policy with the modifiers that its text does not show (a migrated tool's settings)."""
    shown = [f"{k}={v}" for k, v in (("filter", policy.filter), ("extract", policy.extract),
                                     ("flavour", policy.flavour)) if v is not None]
    if policy.prerelease is not None:
        shown.append(f"prerelease={'true' if policy.prerelease else 'false'}")
    if policy.pin_digest:
        shown.append("pin_digest=true")
    return f"{policy} [{', '.join(shown)}]" if shown else str(policy)


def _time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json_time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def render_json(
    image: str, policy: Policy, chosen: TagInfo | None, digest: str | None, verdicts: Sequence[Verdict],
    found: FoundPolicy | None = None,
) -> str:
    """The ``check --format json`` document (DESIGN "CLI contract"); with ``--path`` also ``"from"``: where
    the policy was found (origin, source, the translation, the targets)."""
    document: dict[str, Any] = {
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
    if found is not None:
        document["from"] = {"origin": found.origin, "policy_source": found.source, "setting": found.setting,
                            "translated": translated(found.policy), "targets": list(found.targets)}
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
    settings = load_settings(args.config)
    found: FoundPolicy | None = None
    if args.path and not args.policy:
        found = _found_policy(args, reference, settings)
        policy = found.policy
        note = found.note
    else:
        policy_text = args.policy or default_policy(reference)
        policy = parse_policy(policy_text, modifiers_from_args(args))
        note = "" if args.policy else f"  (default for tag {reference.effective_tag})"
    options = options_from_settings(settings)
    current = reference.effective_tag
    if found is not None and reference.tag is None and reference.digest is None and found.current:
        current = found.current  # what the files hold now
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
        sys.stdout.write(render_json(reference.written_name, policy, chosen, digest, verdicts, found))
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


def _found_policy(args: argparse.Namespace, reference: ImageReference, settings: Any) -> FoundPolicy:
    from image_updater.checkout import discover_directory
    from image_updater.commands._planning import check_directory
    from image_updater.errors import ConfigError

    if modifiers_from_args(args):
        raise ConfigError("--path: the policy comes from the directory; modifier flags need --policy")
    root = check_directory(args.path)
    discovery, _texts = discover_directory(root, policy_dirs=list(settings.policy_dirs),
                                           argocd_namespace=settings.migration.argocd_namespace)
    return policy_from_tree(reference, discovery.targets, discovery.translations)
