"""Workload annotations: native ``image-updater.io/`` and Flux v1 (``fluxcd.io/``, ``flux.weave.works/``,
``filter.fluxcd.io/<c>``), with Flux v1's meaning.

Native keys: ``automated``, ``locked``, ``policy`` (every container), ``policy.<container>``, and modifiers
``<modifier>`` / ``<modifier>.<container>`` (``exclude``, ``filter``, ``extract``, ``prerelease``,
``flavour``, ``min-age``, ``platforms``, ``pin-digest``). A native policy annotation is enough to automate a
container; ``automated: "false"`` switches the whole workload off. Unknown native keys are errors (typos
must not pass silently).

Flux v1 keys: ``automated: "true"`` automates every container, with ``tag.<container>`` (or
``filter.fluxcd.io/<container>``) as its pattern and ``glob:*`` when there is none; ``locked: "true"`` and
``ignore: "true"`` leave the workload alone. Patterns are ``glob:``, ``semver:``, ``regex:``/``regexp:``,
and a pattern without a prefix is a glob (as in fluxd). An invalid pattern is an error, never "match all".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from image_updater.errors import InvalidPolicy
from image_updater.policies import Policy, parse_policy

from ._nodes import MappingNode, Node, get_path, items, node_line, scalar

__all__ = ["Annotations", "ContainerPolicy", "WorkloadPolicies", "read_annotations", "workload_policies"]

NATIVE = "image-updater.io/"
FLUX_PREFIXES = ("fluxcd.io/", "flux.weave.works/")
FLUX_FILTER = "filter.fluxcd.io/"
_MODIFIERS = ("exclude", "filter", "extract", "prerelease", "flavour", "min-age", "platforms", "pin-digest")
_MODIFIER_ALIASES = {"min_age": "min-age", "pin_digest": "pin-digest", "flavor": "flavour"}


@dataclass(frozen=True, slots=True)
class Annotation:
    key: str
    value: str
    node: Node


Annotations = Mapping[str, Annotation]


def read_annotations(obj: Node) -> dict[str, Annotation]:
    """``metadata.annotations`` of an object (string values only)."""
    out: dict[str, Annotation] = {}
    annotations = get_path(obj, "metadata", "annotations")
    if not isinstance(annotations, MappingNode):
        return out
    for key, key_node, value_node in items(annotations):
        value = scalar(value_node)
        node = value_node if value is not None else key_node
        out[key] = Annotation(key, value if value is not None else "", node)
    return out


@dataclass(frozen=True, slots=True)
class ContainerPolicy:
    """The decision for one container: a policy (with the annotation that set it), or why it is skipped."""

    policy: Policy | None
    source: str | None = None  # the annotation key
    skip: str | None = None
    weak_skip: bool = False  # a skip any other origin (policy file, marker) may override


@dataclass(slots=True)
class WorkloadPolicies:
    block: str | None = None  # the whole object is left alone (locked, ignored, automation off)
    opted_in: bool = False  # some automation annotation is present
    errors: list[tuple[Node, str]] = field(default_factory=list)
    _containers: dict[str | None, ContainerPolicy] = field(default_factory=dict)

    def for_container(self, name: str | None) -> ContainerPolicy | None:
        return self._containers.get(name)


def _is_true(value: str) -> bool:
    return value.strip().lower() == "true"


def _flux_pattern(value: str) -> str:
    text = value.strip()
    for prefix in ("glob:", "semver:"):
        if text.startswith(prefix):
            return text
    for prefix in ("regexp:", "regex:"):
        if text.startswith(prefix):
            return "regex:" + text[len(prefix):]
    return "glob:" + text  # fluxd: a pattern without a known prefix is a glob


def workload_policies(annotations: Annotations, containers: Collection[str | None]) -> WorkloadPolicies:
    """Decide, from one object's annotations, the policy of each of its named ``containers``."""
    result = WorkloadPolicies()
    native: dict[str, Annotation] = {}
    flux: dict[str, Annotation] = {}
    for key, annotation in annotations.items():
        if key.startswith(NATIVE):
            native[key[len(NATIVE):]] = annotation
        elif key.startswith(FLUX_FILTER):
            flux.setdefault("tag." + key[len(FLUX_FILTER):], annotation)
        else:
            for prefix in FLUX_PREFIXES:
                if key.startswith(prefix):
                    rest = key[len(prefix):]
                    # fluxcd.io/ wins over the older flux.weave.works/ when both are present
                    if prefix == FLUX_PREFIXES[0] or rest not in flux:
                        flux[rest] = annotation
    if not native and not any(k in flux for k in ("automated", "locked", "ignore")) and not any(
        k.startswith("tag.") for k in flux
    ):
        return result
    named = {c for c in containers if c is not None}

    # -- native keys: validate everything first, so validate reports every mistake at once
    native_policy: dict[str | None, Annotation] = {}
    modifiers: dict[str | None, dict[str, Annotation]] = {}
    native_auto: bool | None = None
    for rest, annotation in native.items():
        name, _, scope = rest.partition(".")
        name = _MODIFIER_ALIASES.get(name, name)
        target: str | None = scope or None
        if name in ("automated", "locked") and not scope:
            value = annotation.value.strip().lower()
            if value not in ("true", "false"):
                result.errors.append((annotation.node, f"annotation {annotation.key} must be \"true\" or "
                                                       f"\"false\", not {annotation.value!r}"))
                continue
            if name == "automated":
                native_auto = value == "true"
            elif value == "true":
                result.block = result.block or f"locked ({annotation.key})"
            continue
        if name == "policy":
            native_policy[target] = annotation
        elif name in _MODIFIERS:
            modifiers.setdefault(target, {})[name] = annotation
        else:
            result.errors.append((annotation.node, f"unknown annotation {annotation.key} (known: automated, "
                                                   f"locked, policy[.<container>], "
                                                   f"{', '.join(_MODIFIERS)}[.<container>])"))
            continue
        if target is not None and target not in named:
            result.errors.append((annotation.node, f"annotation {annotation.key} names container {target!r}, "
                                                   f"which this workload does not have "
                                                   f"(containers: {', '.join(sorted(named)) or 'none'})"))

    # -- Flux v1 keys
    flux_auto = "automated" in flux and _is_true(flux["automated"].value)
    flux_off = "automated" in flux and flux["automated"].value.strip().lower() == "false"
    if "locked" in flux and _is_true(flux["locked"].value):
        message = flux.get("locked_msg")
        result.block = result.block or (
            f"locked ({flux['locked'].key})" + (f": {message.value}" if message and message.value else "")
        )
    if "ignore" in flux and _is_true(flux["ignore"].value):
        result.block = result.block or f"ignored ({flux['ignore'].key})"
    flux_tags: dict[str, Annotation] = {}
    for rest, annotation in flux.items():
        if rest.startswith("tag."):
            tagged = rest[len("tag."):]
            flux_tags[tagged] = annotation
            if tagged not in named:
                result.errors.append((annotation.node, f"annotation {annotation.key} names container "
                                                       f"{tagged!r}, which this workload does not have "
                                                       f"(containers: {', '.join(sorted(named)) or 'none'})"))

    if native_auto is False:
        result.block = result.block or f"automation disabled ({NATIVE}automated: \"false\")"
    elif flux_off and not native_policy:
        result.block = result.block or f"automation disabled ({flux['automated'].key}: \"false\")"
    result.opted_in = bool(native_policy) or native_auto is True or flux_auto or bool(flux_tags)

    # Every annotation is judged on its own first, even on workloads that are not automated, so that validate
    # and plan report each mistake (policy, pattern, modifier) at once, each at its own line.
    invalid: set[str] = set()  # keys of annotations found invalid on their own (reported)
    reported: set[tuple[str, str | None]] = set()  # (key, container) of reported combination mistakes

    def check(annotation: Annotation, text: str, mods: Mapping[str, str] | None = None) -> None:
        try:
            parse_policy(text, mods)
        except InvalidPolicy as exc:
            invalid.add(annotation.key)
            result.errors.append((annotation.node, f"annotation {annotation.key}: {exc}"))

    for annotation in native_policy.values():
        check(annotation, annotation.value)
    for annotation in flux_tags.values():
        check(annotation, _flux_pattern(annotation.value))
    for scoped in modifiers.values():
        for name, mod in scoped.items():
            if name != "extract":  # an extract is judged with the filter it applies to, in build()
                check(mod, "newest", {name: mod.value})

    built: dict[tuple[str, str | None], Policy | None] = {}
    judged: set[str] = set()  # modifier keys that took part in some container's policy

    def build(text: str, annotation: Annotation, container: str | None) -> Policy | None:
        """The policy of one container: ``text`` (from ``annotation``) with the workload-wide modifiers,
        overridden by the container's own of the same kind; None when any part is invalid (reported)."""
        own = modifiers.get(container, {}) if container is not None else {}
        key = (annotation.key, container if own else None)
        if key in built:
            return built[key]
        chosen = {**modifiers.get(None, {}), **own}
        judged.update(mod.key for mod in chosen.values())
        policy: Policy | None = None
        if annotation.key not in invalid and not any(m.key in invalid for m in chosen.values()):
            try:
                policy = parse_policy(text, {name: mod.value for name, mod in chosen.items()})
            except InvalidPolicy as exc:
                # every part is valid alone, so the parts do not fit together: an extract and the filter
                # it applies to
                culprit = chosen.get("extract") or chosen.get("filter") or annotation
                if (culprit.key, container) not in reported:
                    reported.add((culprit.key, container))
                    whose = f" (for container {container})" if container is not None and (
                        own.get("extract") is not culprit and own.get("filter") is not culprit) else ""
                    result.errors.append((culprit.node, f"annotation {culprit.key}: {exc}{whose}"))
        built[key] = policy
        return policy

    for container in containers:
        if container in native_policy or None in native_policy:
            # a workload-wide policy takes each container's own modifiers too
            annotation = native_policy[container if container in native_policy else None]
            policy, source = build(annotation.value, annotation, container), annotation.key
        elif container is not None and container in flux_tags:
            if not flux_auto:
                result._containers[container] = ContainerPolicy(None, skip=(
                    f"not automated ({flux_tags[container].key} is set but no fluxcd.io/automated: \"true\")"
                ), weak_skip=True)
                continue
            annotation = flux_tags[container]
            policy, source = build(_flux_pattern(annotation.value), annotation, container), annotation.key
        elif flux_auto:
            policy = build("glob:*", flux["automated"], container)
            source = flux["automated"].key + " (default glob:*)"
        elif result.opted_in:
            result._containers[container] = ContainerPolicy(None, skip=(
                f"no policy for container {container}" if container else "no policy for this container"
            ), weak_skip=True)
            continue
        else:
            continue
        if policy is None:
            continue  # the error is already reported at the annotation
        result._containers[container] = ContainerPolicy(policy, source=source)

    # an extract no container's policy used is still judged, with the filter of its scope
    for scoped in modifiers.values():
        extract = scoped.get("extract")
        if extract is None or extract.key in judged:
            continue
        filter_ = scoped.get("filter") or modifiers.get(None, {}).get("filter")
        if filter_ is None or filter_.key not in invalid:
            mods = {"extract": extract.value, **({"filter": filter_.value} if filter_ is not None else {})}
            check(extract, "newest", mods)
    return result


def annotation_line(annotation: Annotation) -> int:
    return node_line(annotation.node)
