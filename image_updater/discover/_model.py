"""The values discovery produces: ``Target`` (one scalar to keep up to date) and ``Discovery``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from image_updater.findings import ErrorEntry, Origin, ResolveKey, Skipped
from image_updater.policies import Policy
from image_updater.references import ImageReference
from image_updater.yamledit import Insertion

if TYPE_CHECKING:
    from ._policies import PolicyDef

__all__ = ["Discovery", "Part", "Shape", "Target"]

# What the scalar holds, which decides what is written back:
#   reference   a whole reference, ``[registry/]path[:tag][@digest]``; the tag (and digest) is replaced,
#               the name is written as ``write_name`` (the user's spelling, or a Flux setter's policy image)
#   tag         only the tag (``newTag``, Helm ``tag``, ``:tag`` setter markers)
#   tag-digest  ``tag@sha256:...`` (kustomize ``newTag`` pinned by digest)
#   digest      only the digest (kustomize ``digest``, Helm ``digest``, ``:digest`` setter markers)
#   digest-hex  only the digest's hex, without ``sha256:`` (Helm ``sha`` as in kube-prometheus-stack)
#   name        only the repository name (``:name`` setter markers); becomes ``write_name``
Part = Literal["reference", "tag", "tag-digest", "digest", "digest-hex", "name"]

# Where the scalar sits, for listings (``validate -v``, ``validate --format json``):
#   container    the image of a container or init container of a pod spec
#   kustomize    an ``images:`` entry of a kustomization (or of a Flux Kustomization's spec)
#   helm-values  an image-shaped value elsewhere: Helm values, HelmRelease values, compose, custom resources
#   marker       whatever scalar a setter marker sits on
Shape = Literal["container", "kustomize", "helm-values", "marker"]


@dataclass(frozen=True, slots=True)
class Target:
    """One scalar whose value follows a policy."""

    file: str  # repo-relative, POSIX separators
    line: int  # 1-based line of the scalar
    start: int  # character span of the scalar in the file's text, quotes included
    end: int
    resource: str | None  # "Kind/namespace/name", "Kind/name", or None for plain values files
    container: str | None
    image: ImageReference  # the reference as a pull would see it (registry from a sibling key included)
    value: str  # the scalar's current value, unquoted
    part: Part
    policy: Policy
    origin: Origin
    write_name: str = ""  # the name written for "reference" and "name" parts
    policy_source: str | None = None  # "file:line" of the policy file / annotation / ImagePolicy that set it
    # another scalar of the same image writes a digest: resolve with the digest so both agree on one tag
    with_digest: bool = False
    shape: Shape = "container"
    # no scalar yet: the value is inserted at ``start`` (== ``end``), or written into a new file (parent -1)
    insert: Insertion | None = None

    @property
    def current_tag(self) -> str | None:
        return self.image.tag

    @property
    def needs_digest(self) -> bool:
        """True when the written value must carry the chosen tag's digest."""
        if self.part in ("digest", "digest-hex", "tag-digest"):
            return True
        if self.part == "reference":
            return self.image.digest is not None or self.policy.pin_digest or self.policy.kind == "digest"
        return False

    @property
    def resolve_key(self) -> ResolveKey:
        """What to ask the registry layer. A target that must write a digest asks with ``pin_digest`` so that
        the registry layer fetches the chosen tag's digest."""
        policy = self.policy
        if (self.needs_digest or self.with_digest) and not policy.pin_digest and policy.kind != "digest":
            policy = dataclasses.replace(policy, pin_digest=True)
        current = self.image.tag
        tagless_digest = policy.kind == "digest" and not policy.argument
        if current is None and (self.part == "reference" or tagless_digest):
            current = "latest"  # what a pull of a tagless reference gets, as `check` and `select` assume
        return ResolveKey(image=self.image.name, policy=policy, current_tag=current)


@dataclass(frozen=True, slots=True)
class Discovery:
    """Everything discovery found in one tree: targets to resolve, fields left alone, and problems."""

    targets: tuple[Target, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    errors: tuple[ErrorEntry, ...] = ()
    files_scanned: int = 0  # files offered to discovery
    files_parsed: int = 0  # files that passed the text prefilter and were parsed
    policies: int = 0  # policy definitions found (policy files, Flux ImagePolicy objects)
    definitions: tuple[PolicyDef, ...] = ()  # those definitions, usable or not, in the order found
    # what is done differently from a migrated tool and worth a look (not a problem): an Argo CD Image
    # Updater Application with the argocd write-back method written to Git, a git-branch setting
    warnings: tuple[Skipped, ...] = ()
    # (policy_source, image name, the migrated tool's settings as written) of each translated image, for
    # ``check --path`` to say what a policy was translated from
    translations: tuple[tuple[str, str, str], ...] = ()

    @property
    def resolve_keys(self) -> frozenset[ResolveKey]:
        return frozenset(t.resolve_key for t in self.targets)
