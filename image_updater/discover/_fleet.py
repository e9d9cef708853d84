"""Rancher Fleet image scans: the ``imageScans`` list of a ``fleet.yaml`` (DESIGN "Migration").

Pure: fleet.yaml nodes in, policy definitions out, and a lookup per file for ``$imagescan`` setter markers.

Fleet's meaning (``pkg/apis/fleet.cattle.io/v1alpha1``: ``ImageScanSpec``, taken from Flux v2's
``ImagePolicy``/``ImageRepository``; ``internal/bundlereader``; the setters of ``imagescan/update``):

- each entry has ``image`` (an entry without one is ignored, as Fleet does), ``tagName`` (required: the name
  markers use), ``policy.semver.range`` or ``policy.alphabetical.order`` (``asc``, the default, picks the
  greatest name; ``desc`` the smallest), ``interval``, ``secretRef``, ``suspend`` and an unused ``name``;
- ``semver.range`` -> ``semver:<range>`` (prereleases only when the range names one, as in Flux v2);
  ``alphabetical`` -> ``alphabetical:<order>``; ``suspend: true`` -> the scan is not used (markers that
  name it are reported);
- scope: a fleet.yaml defines one bundle, its directory and everything below that no nearer fleet.yaml
  claims; its scans bind only markers in that bundle's files;
- markers ``# {"$imagescan": "<tagName>"}`` (whole reference), ``:tag``, ``:name`` as Flux's; Fleet's
  ``:digest`` writes ``image:tag@sha256:...`` (a reference pinned by digest), unlike Flux's digest-only.

``interval`` and ``secretRef`` are the daemon's and the registry credentials' business here: not read.
"""

from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass, field

from image_updater.errors import InvalidPolicy, InvalidReference
from image_updater.policies import parse_policy
from image_updater.references import parse_reference

from ._nodes import MappingNode, Node, SequenceNode, get, node_line, scalar
from ._policies import PolicyDef

__all__ = ["FLEET_FILES", "FleetIndex", "is_fleet_file"]

FLEET_FILES = frozenset({"fleet.yaml"})


def is_fleet_file(path: str) -> bool:
    return path.rsplit("/", 1)[-1] in FLEET_FILES


def _scan_def(file: str, entry: Node) -> PolicyDef | str | None:
    """One ``imageScans`` entry -> a definition; None when Fleet ignores it; a message when it is wrong."""
    image_text = scalar(get(entry, "image"))
    if not image_text:
        return None
    tag_name = scalar(get(entry, "tagName"))
    line = node_line(entry)
    if not tag_name:
        return "imageScans entry: tagName is required (the name $imagescan markers use)"
    suspended = (scalar(get(entry, "suspend")) or "").lower() == "true"
    policy_node = get(entry, "policy")
    semver = get(policy_node, "semver")
    alphabetical = get(policy_node, "alphabetical")
    try:
        image = parse_reference(image_text)
        if isinstance(semver, MappingNode):
            policy = parse_policy(f"semver:{scalar(get(semver, 'range')) or ''}")
        elif alphabetical is not None:
            order = scalar(get(alphabetical, "order")) or "asc"
            policy = parse_policy(f"alphabetical:{order}")
        else:
            return f"imageScans {tag_name}: policy needs semver.range or alphabetical"
    except (InvalidPolicy, InvalidReference) as exc:
        return f"imageScans {tag_name}: {exc}"
    image = dataclasses.replace(image, tag=None, digest=None)
    if suspended:
        return PolicyDef(file, line, None, tag_name, False, problem="the image scan is suspended")
    return PolicyDef(file, line, None, tag_name, False, image=image, policy=policy)


@dataclass(slots=True)
class _Bundle:
    directory: str
    defs: dict[str, PolicyDef] = field(default_factory=dict)

    def lookup(self, namespace: str | None, name: str) -> tuple[PolicyDef | None, str | None]:
        base, _, suffix = name.rpartition(":")
        if suffix == "digest" and base in self.defs:
            found = self.defs[base]
            if found.policy is None:
                return found, None
            pinned = dataclasses.replace(found.policy, pin_digest=True)
            return dataclasses.replace(found, name=name, policy=pinned), None
        if name in self.defs:
            return self.defs[name], None
        return None, f"no image scan {name} in {posixpath.join(self.directory, 'fleet.yaml')}"


class FleetIndex:
    """The ``imageScans`` of every fleet.yaml in the tree, scoped to their bundles."""

    def __init__(self) -> None:
        self._bundles: dict[str, _Bundle] = {}
        self.errors: list[tuple[str, int, str]] = []
        self.defs: list[PolicyDef] = []

    def bundle(self, file: str) -> _Bundle:
        """Register ``file`` (a fleet.yaml) as a bundle root, with or without image scans."""
        directory = posixpath.dirname(file)
        return self._bundles.setdefault(directory, _Bundle(directory))

    def add(self, file: str, doc: Node) -> None:
        bundle = self.bundle(file)
        scans = get(doc, "imageScans")
        for entry in scans.value if isinstance(scans, SequenceNode) else []:
            found = _scan_def(file, entry)
            if isinstance(found, str):
                self.errors.append((file, node_line(entry), found))
            elif found is not None:
                if found.name in bundle.defs:
                    self.errors.append((file, found.line, f"imageScans: tagName {found.name} given twice "
                                                          f"(first at line {bundle.defs[found.name].line})"))
                    continue
                bundle.defs[found.name] = found
                self.defs.append(found)

    def bundle_of(self, file: str) -> _Bundle | None:
        """The nearest fleet.yaml at or above ``file``'s directory, if it has image scans."""
        directory = posixpath.dirname(file)
        while True:
            bundle = self._bundles.get(directory)
            if bundle is not None:
                return bundle if bundle.defs else None
            if not directory:
                return None
            directory = posixpath.dirname(directory)
