"""Where image references live in a document: workload containers, Helm values shapes, kustomize ``images:``.

A ``Slot`` is one image reference spread over one or more scalars: a container's ``image: repo:tag``, a Helm
``image: {registry, repository, tag, digest}`` map (the tag and the digest are written, never the name), a
kustomize ``images:`` entry (``newTag``, possibly ``tag@sha256:...``, and ``digest``).

Helm values shapes follow what Flux v1 (fluxd) detected in a HelmRelease's ``values``:
``image: repo:tag``; ``image: repo`` with sibling ``tag`` (and ``registry``); ``image: {repository, tag}``;
``image: {registry, repository, tag}``; ``image: {registry, repository: repo:tag}``; the same one level down
under a named key (``<name>: {image: ...}``, the container is named after the key); and user mappings with
``repository.fluxcd.io/<c>``, ``tag.fluxcd.io/<c>``, ``registry.fluxcd.io/<c>`` annotations (dot paths).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass

from image_updater.errors import InvalidReference
from image_updater.references import ImageReference, is_valid_tag, parse_reference

from ._model import Part
from ._nodes import MappingNode, Node, ScalarNode, SequenceNode, get, get_key, get_path, items, scalar

__all__ = [
    "EMPTY_TAG",
    "FLUX_CHART_IMAGE",
    "ContainerImage",
    "Field",
    "Slot",
    "container_slot",
    "flux_helm_release_slots",
    "helm_value_slots",
    "kustomize_slots",
    "pod_containers",
]

FLUX_CHART_IMAGE = "chart-image"
# A tag key without a value (``tag:``, ``tag: null``, ``tag: ~``): the chart picks the tag (often its
# appVersion). There is no current tag to compare with and no scalar text to write into without
# re-serialising the map, so such a slot is reported as skipped. A quoted ``tag: ""`` is a string, which
# can be written.
EMPTY_TAG = "tag is empty; set it to the current tag to let image-updater manage it"
_MAX_DEPTH = 64
_HEX_DIGEST = re.compile(r"[a-f0-9]{64}\Z")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}\Z")


@dataclass(frozen=True, slots=True)
class Field:
    """One scalar of a slot and what it holds."""

    node: ScalarNode
    part: Part
    value: str
    write_name: str = ""


@dataclass(frozen=True, slots=True)
class Slot:
    """One image reference and the scalars that hold it. ``main`` None: nothing to write the tag into
    (``skip`` says why, and ``where`` is the node to report)."""

    image: ImageReference
    container: str | None
    main: Field | None
    digest: Field | None = None
    kustomize: bool = False
    where: Node | None = None  # the node to point at when the slot cannot be written
    skip: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerImage:
    """A container of a pod spec: its name and its ``image`` value node (``None`` when absent)."""

    name: str | None
    node: Node | None
    init: bool


def pod_containers(obj: Node) -> list[ContainerImage]:
    """Containers and init containers of any object with ``spec.template.spec``,
    ``spec.jobTemplate.spec.template.spec`` or ``spec.containers``."""
    spec = get(obj, "spec")
    if not isinstance(spec, MappingNode):
        return []
    pod_specs: list[Node] = []
    for path in (("template", "spec"), ("jobTemplate", "spec", "template", "spec")):
        node = get_path(spec, *path)
        if isinstance(node, MappingNode):
            pod_specs.append(node)
    if isinstance(get(spec, "containers"), SequenceNode):
        pod_specs.append(spec)
    out: list[ContainerImage] = []
    for pod in pod_specs:
        for key, init in (("initContainers", True), ("containers", False)):
            seq = get(pod, key)
            if not isinstance(seq, SequenceNode):
                continue
            for item in seq.value:
                if isinstance(item, MappingNode):
                    out.append(ContainerImage(scalar(get(item, "name")), get(item, "image"), init))
    return out


def _parse(text: str) -> ImageReference | None:
    try:
        return parse_reference(text)
    except InvalidReference:
        return None


def _join(registry: str | None, repository: str) -> str:
    return f"{registry.strip().rstrip('/')}/{repository}" if registry and registry.strip() else repository


def _editable(node: Node | None) -> ScalarNode | None:
    """A scalar that can hold a value we write: plain or quoted, not null, not a block scalar."""
    if isinstance(node, ScalarNode) and scalar(node) is not None:
        return node
    return None


def _empty_tag(image: ImageReference, container: str | None, parent: Node | None, key: str) -> Slot:
    """A slot whose tag key has no value: skipped with ``EMPTY_TAG``, reported at the key (an empty scalar's
    own position is wherever the parser stopped looking for it, possibly lines further on)."""
    return Slot(image, container, None, where=get_key(parent, key), skip=EMPTY_TAG)


def container_slot(node: Node, container: str | None) -> Slot | str:
    """The slot of a container's ``image`` value, or why it is not a reference."""
    value = scalar(node)
    if not isinstance(node, ScalarNode) or value is None:
        return "the image field is not a string"
    ref = _parse(value)
    if ref is None:
        return f"image {value!r} is not a valid image reference"
    return Slot(ref, container, Field(node, "reference", value, ref.written_name), where=node)


def _digest_field(parent: Node) -> tuple[Field | None, str | None]:
    """The ``digest`` (``sha256:...``) or ``sha`` (hex only) sibling of an image map and its digest."""
    for key, part in (("digest", "digest"), ("sha", "digest-hex")):
        node = _editable(get(parent, key))
        if node is None:
            continue
        value = scalar(node) or ""
        digest = None
        if value:
            candidate = f"sha256:{value}" if part == "digest-hex" else value
            if (part == "digest-hex" and _HEX_DIGEST.match(value)) or (
                part == "digest" and _DIGEST.match(candidate)
            ):
                digest = candidate
            else:
                return None, None  # a digest we do not understand (a template?): leave the map alone
        return Field(node, part, value), digest  # type: ignore[arg-type]
    return None, None


def _image_map_slot(image_map: Node, container: str | None) -> Slot | None:
    """``{registry?, repository, tag?, digest?|sha?}`` (Flux v1's interpretAsImage)."""
    repo_node = get(image_map, "repository")
    repository = scalar(repo_node)
    if not repository or not isinstance(repo_node, ScalarNode):
        return None
    registry = scalar(get(image_map, "registry"))
    ref = _parse(_join(registry, repository))
    written = _parse(repository)
    if ref is None or written is None:
        return None
    digest_field, digest = _digest_field(image_map)
    tag_node = get(image_map, "tag")
    if tag_node is not None:
        tag = scalar(tag_node)
        if not isinstance(tag_node, ScalarNode) or tag is None:
            # `tag:` with no value: nothing to write into without re-serialising the map
            if isinstance(tag_node, ScalarNode):
                return _empty_tag(ref, container, image_map, "tag")
            return Slot(ref, container, None, None, where=tag_node)
        if tag and not is_valid_tag(tag):
            return None  # a template expression or similar; not ours to touch
        image = dataclasses.replace(ref, tag=tag or None, digest=digest)
        return Slot(image, container, Field(tag_node, "tag", tag), digest_field, where=image_map)
    image = dataclasses.replace(ref, digest=digest or ref.digest)
    main = Field(repo_node, "reference", repository, written.written_name)
    return Slot(image, container, main, digest_field, where=image_map)


def _image_string_slot(parent: Node, key: str, node: Node, container: str | None) -> Slot | None:
    """``image: repo:tag``; for the key ``image`` also with sibling ``registry`` and ``tag`` keys (Flux v1's
    interpretAsContainer)."""
    value = scalar(node)
    if not value or not isinstance(node, ScalarNode):
        return None
    written = _parse(value)
    if written is None:
        return None
    registry = scalar(get(parent, "registry")) if key == "image" else None
    ref = _parse(_join(registry, value))
    if ref is None:
        return None
    tag_node = get(parent, "tag") if key == "image" else None
    if isinstance(tag_node, ScalarNode):
        tag = scalar(tag_node)
        if tag is None:
            # the chart joins `image` and `tag`: writing `repo:<tag>` into `image` would double the tag
            return _empty_tag(ref, container, parent, "tag")
        if tag and not is_valid_tag(tag):
            return None
        image = dataclasses.replace(ref, tag=tag or None)
        return Slot(image, container, Field(tag_node, "tag", tag), where=parent)
    return Slot(ref, container, Field(node, "reference", value, written.written_name), where=node)


def _is_image_key(key: str) -> bool:
    return key == "image" or (key.endswith("Image") and len(key) > len("Image"))


def helm_value_slots(root: Node, prefix: str = "") -> list[Slot]:
    """Image shapes at any depth under a key named ``image`` or ending in ``Image``. The container of a slot
    is the dotted key path of that key (``image``, ``metrics.image``, ``thanosImage``)."""
    out: list[Slot] = []
    seen: set[int] = set()

    def walk(node: Node, path: str, depth: int) -> None:
        if depth > _MAX_DEPTH or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for key, _key_node, value in items(node):
                child = f"{path}.{key}" if path else key
                if _is_image_key(key):
                    if isinstance(value, MappingNode):
                        slot = _image_map_slot(value, child)
                        if slot is not None:
                            out.append(slot)
                            continue
                        # `image: {busybox: {repository, tag}, kubectl: {...}}`: several named image maps
                        for sub, _sub_key, sub_value in items(value):
                            if isinstance(sub_value, MappingNode):
                                slot = _image_map_slot(sub_value, f"{child}.{sub}")
                                if slot is not None:
                                    out.append(slot)
                                    seen.add(id(sub_value))
                    elif isinstance(value, ScalarNode):
                        slot = _image_string_slot(node, key, value, child)
                        if slot is not None:
                            out.append(slot)
                        continue
                walk(value, child, depth + 1)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, f"{path}[{index}]", depth + 1)

    walk(root, prefix, 0)
    return out


def _container_map_slot(parent: Node, container: str) -> Slot | None:
    node = get(parent, "image")
    if isinstance(node, MappingNode):
        return _image_map_slot(node, container)
    if isinstance(node, ScalarNode):
        return _image_string_slot(parent, "image", node, container)
    return None


def _dotted(values: Node, path: str) -> Node | None:
    return get_path(values, *[p for p in path.split(".") if p])


_MAPPING_PREFIXES = {"registry.fluxcd.io/": "registry", "repository.fluxcd.io/": "repository",
                     "tag.fluxcd.io/": "tag"}


def flux_helm_release_slots(values: Node, annotations: Mapping[str, str]) -> dict[str, Slot]:
    """The containers Flux v1 found in a HelmRelease's ``spec.values``: ``chart-image`` for a top-level
    ``image``, ``<key>`` for ``<key>: {image: ...}``, and user mappings from annotations (which win)."""
    found: dict[str, Slot] = {}
    slot = _container_map_slot(values, FLUX_CHART_IMAGE)
    if slot is not None:
        found[FLUX_CHART_IMAGE] = slot
    for key, _key_node, value in items(values):
        if isinstance(value, MappingNode):
            slot = _container_map_slot(value, key)
            if slot is not None:
                found[key] = slot
    mappings: dict[str, dict[str, str]] = {}
    for name, path in annotations.items():
        for prefix, part in _MAPPING_PREFIXES.items():
            if name.startswith(prefix):
                mappings.setdefault(name[len(prefix):], {})[part] = path.removeprefix("spec.values.")
    for container, paths in sorted(mappings.items()):
        slot = _mapped_slot(values, paths, container)
        if slot is not None:
            found[container] = slot
    return found


def _mapped_slot(values: Node, paths: Mapping[str, str], container: str) -> Slot | None:
    repo_path = paths.get("repository")
    if not repo_path:
        return None
    repo_node = _editable(_dotted(values, repo_path))
    if repo_node is None:
        return None
    repository = scalar(repo_node) or ""
    registry = scalar(_dotted(values, paths["registry"])) if "registry" in paths else None
    tag_node = _dotted(values, paths["tag"]) if "tag" in paths else None
    if "registry" in paths and registry is None:
        return None
    ref = _parse(_join(registry, repository))
    written = _parse(repository)
    if ref is None or written is None:
        return None
    if "tag" in paths:
        if not isinstance(tag_node, ScalarNode):
            return None
        tag = scalar(tag_node)
        if tag is None:
            parent_path, _, key = paths["tag"].rpartition(".")
            return _empty_tag(ref, container, _dotted(values, parent_path), key)
        if tag and not is_valid_tag(tag):
            return None
        image = dataclasses.replace(ref, tag=tag or None)
        return Slot(image, container, Field(tag_node, "tag", tag), where=repo_node)
    main = Field(repo_node, "reference", repository, written.written_name)
    return Slot(ref, container, main, where=repo_node)


def kustomize_slots(images: Node | None) -> list[tuple[Slot | None, Node, str | None]]:
    """Entries of a kustomize ``images:`` list: ``(slot, entry node, name)``; slot None when the entry names
    no valid image."""
    out: list[tuple[Slot | None, Node, str | None]] = []
    if not isinstance(images, SequenceNode):
        return out
    for entry in images.value:
        if not isinstance(entry, MappingNode):
            continue
        name = scalar(get(entry, "name"))
        new_name = scalar(get(entry, "newName"))
        repository = new_name or name
        ref = _parse(repository) if repository else None
        if ref is None:
            out.append((None, entry, repository))
            continue
        ref = dataclasses.replace(ref, tag=None, digest=None)
        tag_node = _editable(get(entry, "newTag"))
        digest_node = _editable(get(entry, "digest"))
        tag_value = scalar(tag_node) if tag_node is not None else None
        digest_value = scalar(digest_node) if digest_node is not None else None
        tag, digest = None, None
        if tag_value:
            tag_part, _, digest_part = tag_value.partition("@")
            tag = tag_part or None
            digest = digest_part or None
            bad_tag = tag is not None and not is_valid_tag(tag)
            if bad_tag or (digest is not None and not _DIGEST.match(digest)):
                out.append((None, entry, repository))
                continue
        if digest_value:
            if not _DIGEST.match(digest_value):
                out.append((None, entry, repository))
                continue
            digest = digest_value  # kustomize: the digest field wins over a digest in newTag
        image = dataclasses.replace(ref, tag=tag, digest=digest)
        main = Field(tag_node, "tag", tag_value or "") if tag_node is not None else None
        digest_field = Field(digest_node, "digest", digest_value or "") if digest_node is not None else None
        out.append((Slot(image, None, main, digest_field, kustomize=True, where=entry), entry, repository))
    return out
