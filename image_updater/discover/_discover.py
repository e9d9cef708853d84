"""The discovery pass over (path, text) pairs: policy definitions first, then targets file by file.

Precedence when several origins claim one scalar: a locked, ignored or switched-off workload wins over
everything (the field is reported as skipped); then a setter marker (``$imagepolicy``, or Fleet's
``$imagescan``: it sits on the very scalar), then a workload annotation, then a policy file's targets, then a
migration source (Keel's ``keel.sh/policy`` and Helm ``keel:`` block, Argo CD Image Updater annotations: the
old tool's settings, which every native origin overrides). Two policy files giving one
scalar different policies is an error naming both. A container a workload's annotations leave without a
policy is reported as skipped unless another origin gives it one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from image_updater.errors import InvalidPolicy, InvalidReference, YamlEditError
from image_updater.findings import ErrorEntry, Origin, Skipped
from image_updater.policies import Policy
from image_updater.references import ImageReference, is_valid_tag, parse_reference
from image_updater.yamledit import (
    Insertion,
    ParsedFile,
    YamlParseError,
    item_insertion,
    key_insertion,
    parse_yaml,
    render_scalar,
    scalar_span,
)

from ._aiu import (
    ARGOCD_NAMESPACE,
    AiuApp,
    AiuImage,
    AiuSource,
    branch_notes,
    helm_tag_part,
    is_application,
    kustomize_entry_name,
    new_override_targets,
    normalise_repo_url,
    override_file,
    read_application,
    target_file,
)
from ._aiu_crd import is_image_updater, select_applications
from ._annotations import WorkloadPolicies, read_annotations, workload_policies
from ._fields import (
    _DIGEST,
    EMPTY_TAG,
    ContainerImage,
    Field,
    Slot,
    _dotted,
    container_slot,
    flux_helm_release_slots,
    helm_value_slots,
    kustomize_slots,
    pod_containers,
)
from ._fleet import FleetIndex, is_fleet_file
from ._keel import KeelSettings, keel_values, keel_workload, translate
from ._markers import FLEET_MARKER_KEY, MARKER_KEY, Lookup, find_markers
from ._model import Discovery, Part, Shape, Target
from ._nodes import (
    LineIndex,
    MappingNode,
    Node,
    ScalarNode,
    SequenceNode,
    get,
    get_path,
    items,
    node_line,
    scalar,
)
from ._policies import FLUX_IMAGE_API, PolicyDef, PolicyIndex, TargetRule

__all__ = ["KUSTOMIZATION_FILES", "FileInput", "discover_files", "may_hold_targets"]

FileInput = Mapping[str, str] | Iterable[tuple[str, str]]
KUSTOMIZATION_FILES = frozenset({"kustomization.yaml", "kustomization.yml", "Kustomization"})
# Docker Compose files and their overrides (``docker-compose.prod.yml``, ``compose.override.yaml``)
_COMPOSE_FILE = re.compile(r"^(?:docker-)?compose(?:\.[^/]+)?\.ya?ml$")
COMPOSE_KIND = "compose"  # the ``kinds`` entry of a policy file's target that selects compose services

_P_WEAK_SKIP, _P_MIGRATION, _P_POLICY_FILE, _P_ANNOTATION, _P_MARKER, _P_BLOCK = 0, 1, 2, 3, 4, 100
_FLUX_V1 = re.compile(
    r"(?:fluxcd\.io|flux\.weave\.works)/(?:automated|locked|ignore|tag\.)"
    r"|(?:filter|repository|tag|registry)\.fluxcd\.io/"
)
_T = TypeVar("_T")
_ARGO_HINT = "argoproj.io/"  # Argo CD Applications and AIU ImageUpdater objects
_POLICY_HINTS = ("ImagePolicy", "ImageRepository", "image-updater.io/v")


def _entries(files: FileInput) -> list[tuple[str, str]]:
    if isinstance(files, Mapping):
        return list(cast(Mapping[str, str], files).items())
    return list(files)


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def may_hold_targets(path: str, text: str, has_rules: bool) -> bool:
    """The cheap text prefilter: can this file hold a target at all? (No false negatives.)"""
    if "image-updater.io/" in text or MARKER_KEY in text:
        return True
    if FLEET_MARKER_KEY in text:
        return True
    if "keel.sh/" in text or "keel.observer/" in text or "keel:" in text:
        return True
    if ("fluxcd.io/" in text or "flux.weave.works/" in text) and _FLUX_V1.search(text):
        return True
    return has_rules and ("image" in text or "Image" in text)


@dataclass(slots=True)
class _Object:
    """One Kubernetes-style object: a document, or an item of a ``List``."""

    node: Node
    kind: str | None
    api: str
    resource: str | None
    start: int
    end: int
    kustomization: bool = False
    definition: bool = False  # a policy definition (ours or Flux's): its spec.image is never a target
    containers: list[ContainerImage] = field(default_factory=list)
    compose: bool = False  # a Docker Compose file's document: its services are the containers
    helm_slots: dict[str, Slot] = field(default_factory=dict)
    policies: WorkloadPolicies | None = None


@dataclass(slots=True)
class _Claim:
    """An origin's claim on one scalar: a target (``policy`` set) or a skip (``reason`` set)."""

    node: ScalarNode
    priority: int
    obj: _Object | None
    container: str | None
    image: ImageReference
    value: str = ""
    part: Part = "reference"
    write_name: str = ""
    policy: Policy | None = None
    origin: Origin = "annotation"
    source: str | None = None
    group: object = None
    reason: str | None = None
    shape: Shape = "container"
    insert: tuple[int, Insertion] | None = None  # offset and layout of a value that has no scalar yet


def _resource(kind: str | None, node: Node) -> str | None:
    if not kind:
        return None
    metadata = get(node, "metadata")
    name = scalar(get(metadata, "name"))
    namespace = scalar(get(metadata, "namespace"))
    if not name:
        return kind
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


def _objects(doc: Node, file: str) -> list[_Object]:
    nodes: list[Node] = [doc]
    if isinstance(doc, MappingNode):
        kind = scalar(get(doc, "kind")) or ""
        entries = get(doc, "items")
        if kind.endswith("List") and isinstance(entries, SequenceNode):
            nodes = [item for item in entries.value if isinstance(item, MappingNode)]
    out: list[_Object] = []
    for node in nodes:
        obj_kind = scalar(get(node, "kind")) if isinstance(node, MappingNode) else None
        api = (scalar(get(node, "apiVersion")) or "") if isinstance(node, MappingNode) else ""
        kustomization = isinstance(node, MappingNode) and (
            _basename(file) in KUSTOMIZATION_FILES
            or (obj_kind in ("Kustomization", "Component") and (not api or api.startswith("kustomize.")))
        )
        if kustomization and not obj_kind:
            obj_kind = "Kustomization"
        definition = api.startswith(("image-updater.io/", FLUX_IMAGE_API))
        compose = (not obj_kind and _COMPOSE_FILE.match(_basename(file)) is not None
                   and isinstance(get(node, "services"), MappingNode))
        out.append(_Object(
            node, obj_kind, api, _resource(obj_kind, node),
            int(node.start_mark.index), int(node.end_mark.index), kustomization=kustomization,
            definition=definition, compose=compose,
        ))
    return out


class _FileScan:
    """Finds the targets of one parsed file."""

    def __init__(self, file: str, parsed: ParsedFile, index: PolicyIndex,
                 rules: list[tuple[PolicyDef, TargetRule]],
                 aiu: Sequence[tuple[AiuApp, AiuSource]] = (), fleet: Lookup | None = None) -> None:
        self.file = file
        self.fleet = fleet
        self.aiu = aiu
        self.parsed = parsed
        self.text = parsed.text
        self.index = index
        self.rules = rules
        self.lines = LineIndex(parsed.text)
        self.targets: list[Target] = []
        self.skipped: list[Skipped] = []
        self.inserted_lines: dict[int, int] = {}  # offset -> lines the insertions there add before the next
        self.errors: list[ErrorEntry] = []

    def error(self, line: int | None, image: str | None, message: str) -> None:
        self.errors.append(ErrorEntry(file=self.file, line=line, image=image, message=message))

    def run(self) -> None:
        for doc in self.parsed.documents:
            self._document(doc)

    # -- one document ---------------------------------------------------------------------------------

    def _document(self, doc: Node) -> None:
        objects = _objects(doc, self.file)
        claims: list[_Claim] = []
        container_of: dict[int, str | None] = {}
        for obj in objects:
            self._object(obj, claims, container_of)
            if self.aiu and not obj.definition:
                self._aiu_claims(obj, claims)
        if MARKER_KEY in self.text:
            self._markers(doc, objects, claims, container_of)
        if FLEET_MARKER_KEY in self.text:
            self._markers(doc, objects, claims, container_of, fleet=True)
        self._settle(claims)

    def _object(self, obj: _Object, claims: list[_Claim], container_of: dict[int, str | None]) -> None:
        node = obj.node
        obj.containers = compose_services(node) if obj.compose else pod_containers(node)
        for container in obj.containers:
            if container.node is not None:
                container_of[id(container.node)] = container.name
        annotations = read_annotations(node)
        values = get(get(node, "spec"), "values") if obj.kind == "HelmRelease" else None
        if isinstance(values, MappingNode):
            obj.helm_slots = flux_helm_release_slots(values, {k: a.value for k, a in annotations.items()})
        if annotations:
            names: list[str | None] = [c.name for c in obj.containers] + list(obj.helm_slots)
            obj.policies = workload_policies(annotations, names)
            for bad_node, message in obj.policies.errors:
                self.error(node_line(bad_node), None, message)
        self._annotation_claims(obj, claims)
        if not obj.definition:
            self._keel_claims(obj, claims)
        if self.rules and not obj.definition:
            self._policy_file_claims(obj, values, claims)

    def _annotation_claims(self, obj: _Object, claims: list[_Claim]) -> None:
        policies = obj.policies
        block = policies.block if policies is not None else None
        slots: list[tuple[str | None, Slot | str, Node | None, Shape]] = []
        for container in obj.containers:
            if container.node is not None:
                slots.append((container.name, container_slot(container.node, container.name), container.node,
                              "container"))
        for helm_name, helm_slot in obj.helm_slots.items():
            slots.append((helm_name, helm_slot, helm_slot.main.node if helm_slot.main else helm_slot.where,
                          "helm-values"))
        for name, slot, where, shape in slots:
            if block is not None:
                if isinstance(slot, Slot) and slot.main is not None:
                    claims.append(_Claim(slot.main.node, _P_BLOCK, obj, name, slot.image, reason=block))
                continue
            decision = policies.for_container(name) if policies is not None else None
            if decision is None:
                continue
            if isinstance(slot, str):
                if decision.policy is not None and where is not None:
                    self.error(node_line(where), None, f"container {name}: {slot}")
                continue
            if decision.policy is None:
                if slot.main is not None and decision.skip:
                    claims.append(_Claim(slot.main.node, _P_WEAK_SKIP, obj, name, slot.image,
                                         reason=decision.skip))
                continue
            source = f"{self.file}:{self._annotation_line(obj, decision.source)}"
            claims.extend(self._slot_claims(slot, decision.policy, "annotation", _P_ANNOTATION, obj, source,
                                            shape))

    def _keel_claims(self, obj: _Object, claims: list[_Claim]) -> None:
        """Keel: ``keel.sh/policy`` on a workload, or the ``keel:`` block of a Helm values file."""
        if obj.containers:
            settings = keel_workload(obj.node)
            if settings is None:
                return
            for container in obj.containers:
                if container.node is None or (container.init and not settings.init_containers):
                    continue
                slot = container_slot(container.node, container.name)
                if isinstance(slot, str):
                    self.error(node_line(container.node), None, f"container {container.name}: {slot}")
                    continue
                self._keel_slot(obj, settings, slot, "container", claims)
            return
        # a plain values file, or a Flux HelmRelease's spec.values (the release's values, as Keel reads them)
        root = get_path(obj.node, "spec", "values") if obj.kind == "HelmRelease" else obj.node
        if (obj.kind is not None and obj.kind != "HelmRelease") or root is None:
            return
        settings, images, problems = keel_values(root)
        for line, message in problems:
            self.error(line, None, message)
        if settings is None:
            return
        for entry in images:
            repo_node = _dotted(root, entry.repository)
            repository = scalar(repo_node)
            if not isinstance(repo_node, ScalarNode) or not repository:
                self.error(entry.line, None, f"keel.images: {entry.repository} is not a string in this file")
                continue
            if entry.tag is None:
                # the repository value carries the tag: ``image: repo:tag``
                ref = _parse_name(repository)
                if ref is None:
                    self.error(node_line(repo_node), repository, "not an image reference")
                    continue
                slot = Slot(ref, None, Field(repo_node, "reference", repository, ref.written_name),
                            where=repo_node)
            else:
                tag_node = _dotted(root, entry.tag)
                tag = scalar(tag_node)
                ref = _parse_name(repository)
                if ref is None:
                    self.error(node_line(repo_node), repository, "not an image reference")
                    continue
                if not isinstance(tag_node, ScalarNode) or tag is None:
                    self.error(entry.line, ref.written_name, f"keel.images: {entry.tag} is not a string "
                                                             "in this file")
                    continue
                digest_field = None
                if entry.digest is not None:
                    digest_node = _dotted(root, entry.digest)
                    if isinstance(digest_node, ScalarNode) and scalar(digest_node) is not None:
                        digest_field = Field(digest_node, "digest", scalar(digest_node) or "")
                ref = dataclasses.replace(ref, tag=tag or None)
                slot = Slot(ref, None, Field(tag_node, "tag", tag), digest_field, where=tag_node)
            self._keel_slot(obj, settings, slot, "helm-values", claims)

    def _keel_slot(self, obj: _Object, settings: KeelSettings, slot: Slot, shape: Shape,
                   claims: list[_Claim]) -> None:
        try:
            policy = translate(settings, slot.image.tag)
        except InvalidPolicy as exc:
            self.error(settings.line, slot.image.written_name, str(exc))
            return
        if policy is None:
            return
        claims.extend(self._slot_claims(slot, policy, "keel", _P_MIGRATION, obj,
                                        f"{self.file}:{settings.line}", shape))

    def _annotation_line(self, obj: _Object, key: str | None) -> int:
        annotations = read_annotations(obj.node)
        base = (key or "").split(" ", 1)[0]
        annotation = annotations.get(base)
        return node_line(annotation.node) if annotation is not None else node_line(obj.node)

    def _slot_claims(
        self, slot: Slot, policy: Policy, origin: Origin, priority: int, obj: _Object | None, source: str,
        shape: Shape,
    ) -> list[_Claim]:
        group = object()
        out: list[_Claim] = []
        digest_policy = policy.pin_digest or policy.kind == "digest"
        # A digest is written where the slot has one already (newTag@, digest, sha) or the policy pins one.
        # kustomize: a `digest` field wins over `newTag` (which is then ignored for the reference), so the
        # digest goes there alone and newTag holds a plain tag; only without that field does newTag carry
        # `tag@sha256:...`. Keys are never added: a digest goes only into fields the entry has.
        writes_digest = digest_policy or (slot.kustomize and slot.image.digest is not None)
        if slot.main is not None:
            part = slot.main.part
            if part == "tag" and slot.kustomize and slot.digest is None and writes_digest:
                part = "tag-digest"
            out.append(_Claim(slot.main.node, priority, obj, slot.container, slot.image, slot.main.value,
                              part, slot.main.write_name, policy, origin, source, group, shape=shape))
        if slot.digest is not None and (slot.digest.value or writes_digest):
            out.append(_Claim(slot.digest.node, priority, obj, slot.container, slot.image, slot.digest.value,
                              slot.digest.part, "", policy, origin, source, group, shape=shape))
        if not out and slot.skip is not None and isinstance(slot.where, ScalarNode):
            out.append(_Claim(slot.where, _P_WEAK_SKIP, obj, slot.container, slot.image, reason=slot.skip))
        return out

    def _newtag_claim(
        self, entry: Node, slot: Slot, policy: Policy, origin: Origin, priority: int, obj: _Object,
        source: str, label: str, claims: list[_Claim],
    ) -> None:
        """A kustomize ``images:`` entry with neither ``newTag`` nor ``digest``: ``newTag`` is inserted where
        ``kustomize edit set image`` puts it (after ``newName``, else after ``name``)."""
        name_node = get(entry, "name")
        why = None
        if get(entry, "newTag") is not None or get(entry, "digest") is not None:
            why = "its newTag or digest is not a plain value"
        elif not isinstance(entry, MappingNode) or not isinstance(name_node, ScalarNode):
            why = "the entry is not a mapping with a name"
        elif self.parsed.is_shared(entry):
            why = "the entry is shared through a YAML anchor/alias"
        if why is None:
            assert isinstance(entry, MappingNode) and isinstance(name_node, ScalarNode)
            try:
                insert = key_insertion(self.text, entry, "newTag", ("newName", "name"))
                # after a newName inserted at the same place (kustomize's order: name, newName, newTag)
                insert = (insert[0], dataclasses.replace(insert[1], rank=1))
            except YamlEditError as exc:
                why = str(exc)
            else:
                part: Part = "tag-digest" if policy.pin_digest or policy.kind == "digest" else "tag"
                claims.append(_Claim(name_node, priority, obj, slot.container, slot.image, "", part, "",
                                     policy, origin, source, object(), shape="kustomize", insert=insert))
                return
        self.skipped.append(Skipped(
            file=self.file, line=node_line(entry), image=slot.image.written_name,
            reason=f"kustomize images entry has no newTag to update ({label}): {why}"))

    def _policy_file_claims(self, obj: _Object, values: Node | None, claims: list[_Claim]) -> None:
        node = obj.node
        generic: list[Slot] | None = None
        kustomize: list[tuple[Slot | None, Node, str | None]] | None = None
        for definition, rule in self.rules:
            image, policy = definition.image, definition.policy
            assert image is not None and policy is not None
            if not rule.matches_kind(COMPOSE_KIND if obj.compose else obj.kind):
                continue
            candidates: list[tuple[Slot, Shape]] = []
            if obj.kustomization:
                if kustomize is None:
                    flux = obj.api.startswith("kustomize.toolkit.fluxcd.io")
                    images = get(get(node, "spec"), "images") if flux else get(node, "images")
                    kustomize = kustomize_slots(images)
                for entry_slot, entry, _name in kustomize:
                    if entry_slot is None or not entry_slot.image.same_repository(image):
                        continue
                    if entry_slot.main is None and entry_slot.digest is None:
                        self._newtag_claim(entry, entry_slot, policy, "policy-file", _P_POLICY_FILE, obj,
                                           definition.source, definition.label, claims)
                        continue
                    candidates.append((entry_slot, "kustomize"))
            else:
                for container in obj.containers:
                    if container.node is None or not rule.matches_container(container.name):
                        continue
                    slot = container_slot(container.node, container.name)
                    if isinstance(slot, Slot):
                        candidates.append((slot, "container"))
                if generic is None:
                    # image fields anywhere else: Helm values, compose services, custom resources; container
                    # images are the containers' own (with their names), not found twice
                    root = values if obj.kind == "HelmRelease" else node
                    own = {id(c.node) for c in obj.containers if c.node is not None}
                    generic = [
                        s for s in (helm_value_slots(root) if root is not None else [])
                        if s.main is None or id(s.main.node) not in own
                    ]
                candidates.extend((s, "helm-values") for s in generic if rule.matches_container(s.container))
            for slot, shape in candidates:
                if slot.image.same_repository(image):
                    claims.extend(self._slot_claims(
                        slot, policy, "policy-file", _P_POLICY_FILE, obj, definition.source, shape
                    ))

    def _aiu_claims(self, obj: _Object, claims: list[_Claim]) -> None:
        """Argo CD Image Updater: the images of the Applications whose write-back target is this file."""
        for app, _source in self.aiu:
            source = app.source_line
            for aiu in app.images:
                if aiu.policy is None:
                    continue
                if app.write_back == "kustomization" and obj.kustomization:
                    wanted = _parse_name(aiu.kustomize_name) if aiu.kustomize_name else aiu.image
                    matched = False
                    for entry_slot, entry, _name in kustomize_slots(get(obj.node, "images")):
                        entry_name = _parse_name(scalar(get(entry, "name")))
                        if wanted is not None and entry_name is not None:
                            matched = matched or entry_name.same_repository(wanted)
                        if entry_slot is None or wanted is None or entry_name is None:
                            continue
                        if not entry_name.same_repository(wanted):
                            continue
                        image = dataclasses.replace(aiu.image, tag=entry_slot.image.tag,
                                                    digest=entry_slot.image.digest)
                        slot = dataclasses.replace(entry_slot, image=image, container=aiu.alias or None)
                        if aiu.kustomize_name:
                            self._aiu_new_name(app, aiu, obj, entry, image, claims)
                        if self._aiu_digest_claims(app, aiu, obj, entry, slot, claims):
                            continue
                        if entry_slot.main is None and entry_slot.digest is None:
                            self._newtag_claim(entry, slot, aiu.policy, app.origin, _P_MIGRATION, obj,
                                               source, app.label, claims)
                            continue
                        claims.extend(self._slot_claims(slot, aiu.policy, app.origin, _P_MIGRATION, obj,
                                                        source, "kustomize"))
                    # AIU updates only images the Application runs, unless force-update: an image without
                    # an entry may not be deployed from here at all, so one is added only then
                    if not matched and aiu.force_update and not obj.api.startswith("kustomize.toolkit."):
                        self._aiu_append_entry(app, aiu, obj, claims)
                elif app.write_back == "helmvalues" and obj.kind is None:
                    self._aiu_helm_claims(app, aiu, obj, claims)
                elif app.write_back == "override" and obj.kind is None:
                    self._aiu_override_claims(app, aiu, obj, claims)

    def _aiu_append_entry(self, app: AiuApp, aiu: AiuImage, obj: _Object, claims: list[_Claim]) -> None:
        """The kustomization has no ``images:`` entry for ``aiu`` (with force-update): AIU's ``kustomize
        edit set image`` adds one (``name``, ``newName`` when renamed, ``newTag``), in the list's style."""
        assert aiu.policy is not None
        name = aiu.kustomize_name or aiu.image.written_name
        images = get(obj.node, "images")
        why = None
        if not isinstance(images, SequenceNode) or not images.value:
            why = "the kustomization has no non-empty images list to add it to"
        elif aiu.policy.kind == "digest" or aiu.policy.pin_digest:
            why = "adding an entry with a digest is not supported; add the entry with its newTag"
        if why is None:
            assert isinstance(images, SequenceNode)
            rest = [f"newName: {_plain(aiu.image.written_name)}"] if aiu.kustomize_name else []
            try:
                offset, insert = item_insertion(self.text, images, f"name: {_plain(name)}",
                                                [*rest, "newTag: "])
            except YamlEditError as exc:
                why = str(exc)
            else:
                anchor = images.value[-1]
                while not isinstance(anchor, ScalarNode):
                    anchor = anchor.value[-1][1] if isinstance(anchor, MappingNode) else anchor.value[-1]
                claims.append(_Claim(anchor, _P_MIGRATION, obj, aiu.alias or None, aiu.image, "", "tag", "",
                                     aiu.policy, app.origin, app.source_line, object(), shape="kustomize",
                                     insert=(offset, dataclasses.replace(insert, path=(0, "newTag")))))
                return
        self.skipped.append(Skipped(file=self.file, line=node_line(obj.node), image=aiu.image.written_name,
                                    reason=f"{app.label}: no images entry named {name}: {why}"))

    def _aiu_digest_claims(
        self, app: AiuApp, aiu: AiuImage, obj: _Object, entry: Node, slot: Slot, claims: list[_Claim]
    ) -> bool:
        """The digest strategy on a kustomization entry without a ``digest`` key, as AIU writes it (kyaml's
        ``newTag: <tag>`` and ``digest: sha256:...``, its ``parseImageOverride``): the tag goes into
        ``newTag`` (inserted when missing) and a ``digest`` key is inserted after it. An entry with a
        ``digest`` key, or a ``newTag`` already holding ``tag@sha256:...``, is edited as it is (False)."""
        policy = aiu.policy
        assert policy is not None
        if policy.kind != "digest" or slot.digest is not None or not isinstance(entry, MappingNode):
            return False
        if slot.main is not None and "@" in slot.main.value:
            return False
        name_node = get(entry, "name")
        if not isinstance(name_node, ScalarNode) or self.parsed.is_shared(entry):
            return False
        group = object()
        found: list[_Claim] = []
        try:
            if slot.main is None:
                if get(entry, "newTag") is not None:
                    return False  # a newTag that is not a plain value: reported by the ordinary route
                at, tag_insert = key_insertion(self.text, entry, "newTag", ("newName", "name"))
                found.append(_Claim(name_node, _P_MIGRATION, obj, slot.container, slot.image, "", "tag", "",
                                    policy, app.origin, app.source_line, group, shape="kustomize",
                                    insert=(at, dataclasses.replace(tag_insert, rank=1))))
                after: tuple[str, ...] = ("newName", "name")
            else:
                found.append(_Claim(slot.main.node, _P_MIGRATION, obj, slot.container, slot.image,
                                    slot.main.value, "tag", "", policy, app.origin, app.source_line, group,
                                    shape="kustomize"))
                after = ("newTag",)
            at, digest_insert = key_insertion(self.text, entry, "digest", after)
        except YamlEditError as exc:
            self.skipped.append(Skipped(
                file=self.file, line=node_line(entry), image=slot.image.written_name,
                reason=f"kustomize images entry: no digest can be added ({app.label}): {exc}"))
            return True
        found.append(_Claim(name_node, _P_MIGRATION, obj, slot.container, slot.image, "", "digest", "",
                            policy, app.origin, app.source_line, group, shape="kustomize",
                            insert=(at, dataclasses.replace(digest_insert, rank=2))))
        claims.extend(found)
        return True

    def _aiu_new_name(
        self, app: AiuApp, aiu: AiuImage, obj: _Object, entry: Node, image: ImageReference,
        claims: list[_Claim],
    ) -> None:
        """The entry ``name: <kustomize.image-name>`` of a kustomization gets ``newName: <image>`` as AIU's
        ``kustomize edit set image <name>=<image>:<tag>`` writes it: inserted right after ``name`` (before
        ``newTag``, kustomize's key order), or rewritten when it names another image."""
        assert aiu.policy is not None
        name_node = get(entry, "name")
        new_name = get(entry, "newName")
        if not isinstance(entry, MappingNode) or not isinstance(name_node, ScalarNode):
            return
        target = aiu.image.written_name
        if new_name is None:
            named = _parse_name(name_node.value)
            if named is not None and named.same_repository(aiu.image):
                return  # the entry names the image itself: nothing to rename
            try:
                offset, insert = key_insertion(self.text, entry, "newName", ("name",))
            except YamlEditError as exc:
                self.skipped.append(Skipped(file=self.file, line=node_line(entry), image=target, reason=(
                    f"kustomize images entry {name_node.value!r} has no newName to set to {target} "
                    f"({app.label}): {exc}")))
                return
            claims.append(_Claim(name_node, _P_MIGRATION, obj, aiu.alias or None, image, "", "name", target,
                                 aiu.policy, app.origin, app.source_line, object(), shape="kustomize",
                                 insert=(offset, insert)))
            return
        current = _parse_name(scalar(new_name))
        if isinstance(new_name, ScalarNode) and (current is None or not current.same_repository(aiu.image)):
            claims.append(_Claim(new_name, _P_MIGRATION, obj, aiu.alias or None, image, new_name.value,
                                 "name", target, aiu.policy, app.origin, app.source_line, object(),
                                 shape="kustomize"))

    def _aiu_override_claims(self, app: AiuApp, aiu: AiuImage, obj: _Object, claims: list[_Claim]) -> None:
        """An existing ``.argocd-source-<app>.yaml``: its Helm parameter or kustomize image, edited in
        place."""
        assert aiu.policy is not None
        key = aiu.helm_spec or aiu.helm_tag or "image.tag"
        parameters = get_path(obj.node, "helm", "parameters")
        found = False
        for item in parameters.value if isinstance(parameters, SequenceNode) else []:
            node = get(item, "value")
            value = scalar(node)
            if scalar(get(item, "name")) == key:
                found = True
            if scalar(get(item, "name")) != key or not isinstance(node, ScalarNode) or value is None:
                continue
            slot = _aiu_helm_slot(aiu, node, value)
            if slot is not None:
                claims.extend(self._slot_claims(slot, aiu.policy, app.origin, _P_MIGRATION, obj,
                                                app.source_line, "helm-values"))
        images = get_path(obj.node, "kustomize", "images")
        for item in images.value if isinstance(images, SequenceNode) else []:
            value = scalar(item)
            if not isinstance(item, ScalarNode) or not value:
                continue
            # AIU merges an override entry by the image after a `<kustomize name>=`; the entry is rewritten
            # `<kustomize.image-name>=<image>:<tag>` (an alias the entry has is kept when the setting is not
            # there: AIU would drop it, and with it kustomize's replacement of the aliased image)
            alias, renamed, after = value.partition("=")
            written = _parse_name(after if renamed else value)
            if written is None or not written.same_repository(aiu.image):
                continue
            found = True
            image = dataclasses.replace(aiu.image, tag=written.tag, digest=written.digest)
            keep = renamed and not aiu.kustomize_name
            spelt = written.written_name
            entry = f"{alias}={spelt}" if keep else kustomize_entry_name(aiu, spelt)
            field = Field(item, "reference", value, entry)
            claims.extend(self._slot_claims(Slot(image, aiu.alias or None, field, where=item), aiu.policy,
                                            app.origin, _P_MIGRATION, obj, app.source_line, "kustomize"))
        if not found:
            self._aiu_append(app, aiu, obj, parameters, images, claims)

    def _aiu_append(
        self, app: AiuApp, aiu: AiuImage, obj: _Object, parameters: Node | None, images: Node | None,
        claims: list[_Claim],
    ) -> None:
        """An existing override file without an entry for ``aiu``: one is appended to its ``helm.parameters``
        (``name``/``value``/``forcestring``, AIU's key order; the image name parameter too when missing) or
        ``kustomize.images`` (``image:tag``), in the list's own style."""
        assert aiu.policy is not None
        name = aiu.image.written_name
        helm = get(obj.node, "helm") is not None
        sequence = parameters if helm else images
        if helm == (get(obj.node, "kustomize") is not None) or not isinstance(sequence, SequenceNode):
            self.skipped.append(Skipped(file=self.file, line=node_line(obj.node), image=name, reason=(
                f"{app.label}: the override file has no non-empty helm.parameters or kustomize.images list "
                "to add the image to")))
            return
        part: Part = "reference"
        first, rest, after = "", [], ""
        path: tuple[str | int, ...] = (0,)
        named: tuple[str, str] | None = None  # the image name parameter, when it is to be added too
        if helm and aiu.helm_spec:
            first, rest, after = f"name: {_plain(aiu.helm_spec)}", ["value: "], "forcestring: true"
            path = (0, "value")
        elif helm:
            name_key, tag_key = aiu.helm_name or "image.name", aiu.helm_tag or "image.tag"
            part, first, rest = helm_tag_part(aiu.policy), f"name: {_plain(tag_key)}", ["value: "]
            after, path = "forcestring: true", (0, "value")
            if not any(scalar(get(item, "name")) == name_key for item in sequence.value):
                named, path = (name_key, name), (1, "value")
        else:
            name = kustomize_entry_name(aiu)  # `<kustomize name>=<image>` when the image has one
        try:
            offset, insert = item_insertion(self.text, sequence, first, rest, after)
            if named is not None:
                _at, whole = item_insertion(self.text, sequence, f"name: {_plain(named[0])}",
                                            [f"value: {_plain(named[1])}", "forcestring: true"])
                insert = dataclasses.replace(insert, prefix=whole.prefix + whole.suffix + insert.prefix,
                                             items=2)
        except YamlEditError as exc:
            self.skipped.append(Skipped(file=self.file, line=node_line(sequence), image=name,
                                        reason=f"{app.label}: {exc}"))
            return
        insert = dataclasses.replace(insert, path=path)
        anchor = sequence.value[-1]
        while not isinstance(anchor, ScalarNode):
            anchor = anchor.value[-1][1] if isinstance(anchor, MappingNode) else anchor.value[-1]
        claims.append(_Claim(anchor, _P_MIGRATION, obj, aiu.alias or None, aiu.image, "", part, name,
                             aiu.policy, app.origin, app.source_line, object(),
                             shape="helm-values" if helm else "kustomize", insert=(offset, insert)))

    def _aiu_helm_claims(self, app: AiuApp, aiu: AiuImage, obj: _Object, claims: list[_Claim]) -> None:
        assert aiu.policy is not None
        key = aiu.helm_spec or aiu.helm_tag or "image.tag"
        node = _dotted(obj.node, key)
        value = scalar(node)
        if not isinstance(node, ScalarNode) or value is None:
            self.skipped.append(Skipped(
                file=self.file, line=node_line(obj.node), image=aiu.image.written_name,
                reason=f"{app.label}: the values have no scalar {key} to write the image into",
            ))
            return
        slot = _aiu_helm_slot(aiu, node, value)
        if slot is None:
            what = "an image reference" if aiu.helm_spec else "a tag (or tag@digest)"
            self.error(node_line(node), aiu.image.written_name, f"{key}: {value!r} is not {what}")
            return
        claims.extend(self._slot_claims(slot, aiu.policy, app.origin, _P_MIGRATION, obj,
                                        app.source_line, "helm-values"))

    def _markers(
        self, doc: Node, objects: list[_Object], claims: list[_Claim], container_of: dict[int, str | None],
        fleet: bool = False,
    ) -> None:
        if fleet:
            # Rancher Fleet: the image scans of this file's bundle (nearest fleet.yaml), origin fleet
            lookup: PolicyIndex | Lookup = self.fleet if self.fleet is not None else _NoFleet()
            hits, problems = find_markers(self.text, doc, lookup, FLEET_MARKER_KEY)
        else:
            hits, problems = find_markers(self.text, doc, self.index)
        for problem in problems:
            self.error(self.lines.line(problem.offset), None, problem.message)
        for hit in hits:
            offset = int(hit.node.start_mark.index)
            obj = next((o for o in objects if o.start <= offset < o.end), None)
            policy = hit.definition.policy
            assert policy is not None
            claims.append(_Claim(
                hit.node, _P_MARKER, obj, container_of.get(id(hit.node)), hit.image, hit.value, hit.part,
                hit.write_name, policy, "fleet" if fleet else "marker", hit.definition.source, hit.group,
                shape="marker",
            ))

    # -- settle the claims of one document -----------------------------------------------------------

    def _settle(self, claims: list[_Claim]) -> None:
        by_node: dict[object, list[_Claim]] = {}
        for claim in claims:
            # a locked/ignored object wins over every origin inside it
            obj = claim.obj
            block = obj.policies.block if obj is not None and obj.policies is not None else None
            if block and claim.priority < _P_BLOCK:
                claim = _Claim(claim.node, _P_BLOCK, obj, claim.container, claim.image, reason=block)
            # an insertion has no node of its own: one per place (a new key) or per image (a new item)
            where: object = id(claim.node) if claim.insert is None else (
                claim.insert[0], claim.insert[1].key or claim.image.name)
            by_node.setdefault(where, []).append(claim)
        chosen: list[_Claim] = []
        for group in by_node.values():
            best = max(c.priority for c in group)
            top = [c for c in group if c.priority == best]
            first = top[0]
            if first.reason is not None:
                start, _end = scalar_span(first.node)
                self.skipped.append(Skipped(file=self.file, line=self.lines.line(start),
                                            image=first.image.written_name, reason=first.reason))
                continue
            policies = {(str(c.policy), c.policy) for c in top}
            if len(policies) > 1:
                start, _end = scalar_span(first.node)
                sources = ", ".join(sorted(f"{c.policy} ({c.source})" for c in top))
                self.error(self.lines.line(start), first.image.written_name,
                           f"conflicting policies for this field: {sources}")
                continue
            chosen.append(first)
        digest_groups = {id(c.group) for c in chosen if c.group is not None and _needs_digest(c)}
        for claim in chosen:
            self._target(claim, claim.group is not None and id(claim.group) in digest_groups)

    def _target(self, claim: _Claim, with_digest: bool) -> None:
        node = claim.node
        start, end = scalar_span(node)
        line = self.lines.line(start)
        image_name = claim.image.written_name
        if claim.insert is not None and claim.policy is not None:
            offset, insert = claim.insert
            before = self.inserted_lines.get(offset, 0)
            self.inserted_lines[offset] = before + (insert.prefix + insert.suffix).count("\n")
            line = self.lines.line(offset) + before + insert.prefix.count("\n")
            self.targets.append(Target(
                file=self.file, line=line, start=offset, end=offset,
                resource=claim.obj.resource if claim.obj is not None else None,
                container=claim.container, image=claim.image, value="", part=claim.part,
                policy=claim.policy, origin=claim.origin, write_name=claim.write_name,
                policy_source=claim.source, with_digest=with_digest, shape=claim.shape, insert=insert,
            ))
            return
        if self.parsed.is_shared(node):
            self.error(line, image_name, f"the value {claim.value!r} is shared through a YAML anchor/alias; "
                                         "editing it would change every alias, so it is left alone")
            return
        if node.style in ("|", ">"):
            self.error(line, image_name, "the value is a block scalar (| or >), which is not rewritten")
            return
        if end <= start:
            # nothing to replace: an edit needs the value's characters (slots never offer such a scalar;
            # this keeps any other route from planning an edit that apply would refuse)
            reason = EMPTY_TAG if claim.part in ("tag", "tag-digest") else (
                "the value is empty; set it to the current value to let image-updater manage it")
            self.skipped.append(Skipped(file=self.file, line=line, image=image_name, reason=reason))
            return
        assert claim.policy is not None
        self.targets.append(Target(
            file=self.file, line=line, start=start, end=end,
            resource=claim.obj.resource if claim.obj is not None else None,
            container=claim.container, image=claim.image, value=claim.value, part=claim.part,
            policy=claim.policy, origin=claim.origin, write_name=claim.write_name,
            policy_source=claim.source, with_digest=with_digest, shape=claim.shape,
        ))


class _NoFleet:
    def lookup(self, namespace: str | None, name: str) -> tuple[PolicyDef | None, str | None]:
        return None, (f"no image scan {name}: the nearest fleet.yaml at or above this file "
                      "defines no imageScans")


def compose_services(node: Node) -> list[ContainerImage]:
    """``services.<name>.image`` of a Docker Compose file: one container per service, named as the service."""
    out: list[ContainerImage] = []
    for name, _key, service in items(get(node, "services")):
        image = get(service, "image")
        if image is not None:
            out.append(ContainerImage(name, image, False))
    return out


def _plain(value: str) -> str:
    return render_scalar("x", value)


def _needs_digest(claim: _Claim) -> bool:
    if claim.part in ("digest", "digest-hex", "tag-digest"):
        return True
    policy = claim.policy
    return claim.part == "reference" and policy is not None and (
        claim.image.digest is not None or policy.pin_digest or policy.kind == "digest"
    )


def _aiu_helm_slot(aiu: AiuImage, node: ScalarNode, value: str) -> Slot | None:
    """The Helm parameter or value ``node`` AIU writes ``aiu`` into: the whole reference (``image-spec``) or
    the tag, ``<tag>@<digest>`` for the digest strategy; ``None`` when its value is neither."""
    assert aiu.policy is not None
    if aiu.helm_spec:
        current = _parse_name(value)
        if current is None:
            return None
        image = dataclasses.replace(aiu.image, tag=current.tag, digest=current.digest)
        return Slot(image, aiu.alias or None, Field(node, "reference", value, aiu.image.written_name),
                    where=node)
    tag, at, digest = value.partition("@")
    if (tag and not is_valid_tag(tag)) or (at and _DIGEST.fullmatch(digest) is None):
        return None
    part = helm_tag_part(aiu.policy)
    image = dataclasses.replace(aiu.image, tag=tag or None, digest=digest or None)
    return Slot(image, aiu.alias or None, Field(node, part, value), where=node)


def _parse_name(text: str | None) -> ImageReference | None:
    if not text:
        return None
    try:
        return parse_reference(text)
    except InvalidReference:
        return None


def _aiu_apps(
    cache: Mapping[str, ParsedFile | None], paths: frozenset[str], repo_url: str | None,
    errors: list[ErrorEntry], skipped: list[Skipped], created: list[Target],
    argocd_namespace: str = ARGOCD_NAMESPACE, branch: str | None = None,
    warnings: list[Skipped] | None = None, translations: list[tuple[str, str, str]] | None = None,
) -> dict[str, list[tuple[AiuApp, AiuSource]]]:
    """Argo CD Image Updater Applications in the tree (0.x annotations, 1.x ImageUpdater objects) -> the
    files they write back to. ``warnings``: what is done differently from AIU (an ``argocd`` write-back
    written to Git, a git-branch setting), for ``validate``; the git-branch ones are in ``skipped`` too."""
    warned = warnings if warnings is not None else []
    told = translations
    own = normalise_repo_url(repo_url) if repo_url else None
    bindings: dict[str, list[tuple[AiuApp, AiuSource]]] = {}
    applications: list[tuple[str, Node]] = []
    updaters: list[tuple[str, Node]] = []
    for file, parsed in cache.items():
        for doc in parsed.documents if parsed is not None else []:
            for obj in _objects(doc, file):
                if is_application(obj.node):
                    applications.append((file, obj.node))
                elif is_image_updater(obj.node):
                    updaters.append((file, obj.node))
    apps: list[AiuApp] = []
    for file, updater in updaters:
        chosen, problems = select_applications(file, updater, applications)
        apps.extend(chosen)
        errors.extend(ErrorEntry(file=file, line=line, image=None, message=message)
                      for line, message in problems)
    # an Application an ImageUpdater selects is configured by it alone (its annotations only through
    # useAnnotations), as in AIU 1.x
    selected = {(a.file, a.line) for a in apps}
    for file, node in applications:
        annotated = read_application(file, node) if (file, node_line(node)) not in selected else None
        if annotated is not None:
            apps.append(annotated)
    for app in apps:
        file = app.file
        for line, message in app.errors:
            errors.append(ErrorEntry(file=file, line=line, image=None,
                                     message=f"{app.label}: {message}"))
        in_repo = [s for s in app.sources if own is not None and normalise_repo_url(s.repo_url) == own]
        here, revisions = bool(in_repo), [s.revision for s in in_repo]
        skip, note = branch_notes(app, branch, revisions) if here else (None, None)  # else: skipped below
        settings_file, settings_line = file, app.line
        if app.defined_at is not None and app.settings_key == "imageupdater":
            settings_file = app.defined_at.rsplit(":", 1)[0]
        if app.branch_line is not None:
            settings_line = app.branch_line
        for reason in (skip, note):
            if reason is not None:
                entry = Skipped(file=settings_file, line=settings_line, image=None, reason=reason)
                skipped.append(entry)
                warned.append(entry)
        if skip is not None:
            continue
        if app.method == "argocd":
            _argocd_method_warning(app, own, argocd_namespace, warned)
        if told is not None and here:
            told.extend((app.source_line, aiu.image.name, aiu.described) for aiu in app.images
                        if aiu.policy is not None and aiu.described)
        for source in app.sources:
            if own is None:
                skipped.append(Skipped(file=file, line=app.line, image=None, reason=(
                    f"{app.label}: the repository's own URL is unknown, so source {source.repo_url} "
                    "cannot be matched")))
                continue
            if normalise_repo_url(source.repo_url) != own:
                skipped.append(Skipped(file=file, line=app.line, image=None, reason=(
                    f"{app.label}: source {source.repo_url} is another repository")))
                continue
            if app.write_back == "override":
                override = override_file(app, source, argocd_namespace)
                if override not in paths:
                    _new_override(app, source, override, paths, created, skipped)
                    continue
                bindings.setdefault(override, []).append((app, source))
                continue
            target = target_file(app, source, paths)
            if target is None:
                errors.append(ErrorEntry(file=file, line=app.line, image=None, message=(
                    f"{app.label}: write-back-target {app.write_back}"
                    f"{':' + app.target_path if app.target_path else ''} for source path "
                    f"{source.path or '.'!r}: no such file in the tree")))
                continue
            bindings.setdefault(target, []).append((app, source))
    return bindings


def _argocd_method_warning(
    app: AiuApp, own: str | None, argocd_namespace: str, warned: list[Skipped]
) -> None:
    files = [override_file(app, source, argocd_namespace) for source in app.sources
             if own is not None and normalise_repo_url(source.repo_url) == own]
    if not files:
        return
    how = (f"{app.method_key} argocd" if app.method_given
           else f"no {app.method_key} (AIU's default, argocd)")
    warned.append(Skipped(file=app.file, line=app.line, image=None, reason=(
        f"{app.label}: {how}: AIU writes to the Application in the cluster; image-updater writes Git "
        f"instead, to {', '.join(files)}")))


_K8S_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?")


def _new_override(
    app: AiuApp, source: AiuSource, override: str, paths: frozenset[str], created: list[Target],
    skipped: list[Skipped],
) -> None:
    """AIU's override file is missing: its targets write it from nothing (Helm or Kustomize is told from the
    Application's ``helm:`` key or a ``Chart.yaml`` at the path, else a kustomization there)."""
    def at(name: str) -> bool:
        return (f"{source.path}/{name}" if source.path else name) in paths

    if not all(_K8S_NAME.fullmatch(part) for part in (app.name, app.namespace or "argocd")):
        skipped.append(Skipped(file=app.file, line=app.line, image=None, reason=(
            f"{app.label}: the name is not a Kubernetes object name, so no override file is created")))
        return
    helm = source.helm or at("Chart.yaml")
    if not helm and not any(at(n) for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")):
        skipped.append(Skipped(file=app.file, line=app.line, image=None, reason=(
            f"{app.label}: cannot tell whether {source.path or '.'!r} is a Helm chart or a kustomization, "
            f"so the override file {override} is not created")))
        return
    if any(t.file == override for t in created):
        skipped.append(Skipped(file=app.file, line=app.line, image=None, reason=(
            f"{app.label}: another Application already writes the new {override}")))
        return
    created.extend(new_override_targets(app, override, helm))


def _parse(file: str, text: str, errors: list[ErrorEntry]) -> ParsedFile | None:
    try:
        return parse_yaml(text, filename=file)
    except YamlParseError as exc:
        # the entry carries file and line: the message is the reason alone
        errors.append(ErrorEntry(file=file, line=exc.line, image=None,
                                 message=f"not parsed, left untouched: {exc.reason}"))
        return None


def discover_files(
    files: FileInput, *, extra_policy_files: FileInput = (), repo_url: str | None = None,
    argocd_namespace: str = ARGOCD_NAMESPACE, branch: str | None = None,
) -> Discovery:
    """Find every target in ``files`` (repo-relative POSIX path -> text).

    ``extra_policy_files`` (display path -> text), such as the config's ``policy_dirs``, contribute policy
    definitions only; their ``spec.targets`` apply to ``files``. ``repo_url`` is the URL of the repository
    ``files`` come from: Argo CD Applications whose source is that repository are followed.
    ``argocd_namespace``: Argo CD's own namespace (AIU names override files of Applications elsewhere
    ``.argocd-source-<namespace>_<app>.yaml``). ``branch``: the branch the result is written to (what AIU's
    git-branch settings are compared with); ``None`` when not known.
    """
    entries = _entries(files)
    extras = _entries(extra_policy_files)
    errors: list[ErrorEntry] = []
    index = PolicyIndex()
    cache: dict[str, ParsedFile | None] = {}
    parsed_count = 0
    for is_extra, pairs in ((True, extras), (False, entries)):
        for file, text in pairs:
            if not any(hint in text for hint in _POLICY_HINTS) and (is_extra or _ARGO_HINT not in text):
                continue
            parsed = _parse(file, text, errors)
            parsed_count += 1
            if not is_extra:
                cache[file] = parsed
            if parsed is None:
                continue
            for doc in parsed.documents:
                for obj in _objects(doc, file):
                    index.add_document(file, obj.node)
    index.finish()
    # A broken policy file of ours still reaches the files its targets name (or every file, when they cannot
    # be read): those are parsed as if it worked, so that a broken file it targets is reported now too, not
    # only once the policy file is fixed. A policy file that is not even YAML could have meant any file.
    unparsed = {entry.file for entry in errors}
    if any(file in unparsed and "image-updater.io/" in text for file, text in (*extras, *entries)):
        index.broken_reach_unknown = True
    errors.extend(index.errors)

    fleet = FleetIndex()
    for file, text in entries:
        if is_fleet_file(file):
            fleet.bundle(file)
        if is_fleet_file(file) and "imageScans" in text:
            if file not in cache:
                cache[file] = _parse(file, text, errors)
                parsed_count += 1
            fleet_file = cache[file]
            for doc in fleet_file.documents if fleet_file is not None else []:
                fleet.add(file, doc)
    errors.extend(ErrorEntry(file=f, line=line, image=None, message=m) for f, line, m in fleet.errors)

    targets: list[Target] = []
    skipped: list[Skipped] = []
    warnings: list[Skipped] = []
    translations: list[tuple[str, str, str]] = []
    aiu = _aiu_apps({f: cache[f] for f, t in entries if f in cache and _ARGO_HINT in t},
                    frozenset(f for f, _t in entries), repo_url, errors, skipped, targets, argocd_namespace,
                    branch, warnings, translations)
    with_rules = index.has_targets
    for file, text in entries:
        rules = index.rules_for(file) if with_rules else []
        bound = aiu.get(file, ())
        if not bound and not may_hold_targets(file, text, bool(rules) or index.broken_policy_reaches(file)):
            continue
        if file in cache:
            parsed = cache[file]
        else:
            parsed = _parse(file, text, errors)
            parsed_count += 1
        if parsed is None:
            continue
        scan = _FileScan(file, parsed, index, rules, bound, fleet.bundle_of(file))
        scan.run()
        targets.extend(scan.targets)
        skipped.extend(scan.skipped)
        errors.extend(scan.errors)

    targets.sort(key=lambda t: (t.file, t.start))
    skipped.sort(key=lambda s: (s.file, s.line or 0, s.reason))
    errors.sort(key=lambda e: (e.file or "", e.line or 0, e.message))
    return Discovery(
        targets=tuple(targets), skipped=tuple(_unique(skipped)), errors=tuple(_unique(errors)),
        files_scanned=len(entries), files_parsed=parsed_count, policies=len(index.defs),
        definitions=tuple(index.defs),
        warnings=tuple(sorted(_unique(warnings), key=lambda s: (s.file, s.line or 0, s.reason))),
        translations=tuple(_unique(translations)),
    )


def _unique(values: list[_T]) -> list[_T]:
    seen: set[_T] = set()
    out: list[_T] = []
    for value in values:
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out
