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
    """Decide, from one object's annotations, the policy of each of its named ``containers``.

    Every annotation is judged on its own first, even on workloads that are not automated, so that validate
    and plan report each mistake (policy, pattern, modifier) at once, each at its own line.
    """
    native, flux = _split_by_prefix(annotations)
    if not _asks_for_automation(native, flux):
        return WorkloadPolicies()
    decision = _Decision(containers)
    decision.read_native(native)
    decision.read_flux(flux)
    decision.switch_off_or_opt_in()
    decision.judge_each_alone()
    for container in containers:
        decision.decide(container)
    decision.judge_unused_extracts()
    return decision.result


def _split_by_prefix(annotations: Annotations) -> tuple[dict[str, Annotation], dict[str, Annotation]]:
    """The native and the Flux v1 annotations, keyed without their prefix (``filter.fluxcd.io/<c>`` becomes
    ``tag.<c>``); other annotations are not ours."""
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
    return native, flux


def _asks_for_automation(native: Mapping[str, Annotation], flux: Mapping[str, Annotation]) -> bool:
    return bool(native) or any(k in flux for k in ("automated", "locked", "ignore")) or any(
        k.startswith("tag.") for k in flux
    )


def _missing_container(annotation: Annotation, container: str, named: Collection[str]) -> str:
    return (f"annotation {annotation.key} names container {container!r}, which this workload does not have "
            f"(containers: {', '.join(sorted(named)) or 'none'})")


class _Decision:
    """One workload's annotations on their way to a ``WorkloadPolicies``, one named step per method."""

    def __init__(self, containers: Collection[str | None]) -> None:
        self.result = WorkloadPolicies()
        self.named = {c for c in containers if c is not None}
        # native keys
        self.native_policy: dict[str | None, Annotation] = {}  # container (None: all) -> policy annotation
        self.modifiers: dict[str | None, dict[str, Annotation]] = {}  # container (None: all) -> name -> it
        self.native_auto: bool | None = None
        # Flux v1 keys
        self.flux: Mapping[str, Annotation] = {}
        self.flux_auto = False
        self.flux_tags: dict[str, Annotation] = {}  # container -> tag pattern annotation
        # judging
        self.invalid: set[str] = set()  # keys of annotations found invalid on their own (reported)
        self.reported: set[tuple[str, str | None]] = set()  # (key, container) of reported misfits
        self.built: dict[tuple[str, str | None], Policy | None] = {}
        self.judged: set[str] = set()  # modifier keys that took part in some container's policy

    def error(self, annotation: Annotation, message: str) -> None:
        self.result.errors.append((annotation.node, message))

    def block(self, why: str) -> None:
        self.result.block = self.result.block or why  # the first reason found is the one reported

    # -- reading: every key validated first, so that validate reports every mistake at once ----------------

    def read_native(self, native: Mapping[str, Annotation]) -> None:
        for rest, annotation in native.items():
            name, _, scope = rest.partition(".")
            name = _MODIFIER_ALIASES.get(name, name)
            target: str | None = scope or None
            if name in ("automated", "locked") and not scope:
                self._read_switch(name, annotation)
                continue
            if name == "policy":
                self.native_policy[target] = annotation
            elif name in _MODIFIERS:
                self.modifiers.setdefault(target, {})[name] = annotation
            else:
                self.error(annotation, f"unknown annotation {annotation.key} (known: automated, locked, "
                                       f"policy[.<container>], {', '.join(_MODIFIERS)}[.<container>])")
                continue
            if target is not None and target not in self.named:
                self.error(annotation, _missing_container(annotation, target, self.named))

    def _read_switch(self, name: str, annotation: Annotation) -> None:
        """``automated`` or ``locked``, workload-wide."""
        value = annotation.value.strip().lower()
        if value not in ("true", "false"):
            self.error(annotation, f"annotation {annotation.key} must be \"true\" or \"false\", "
                                   f"not {annotation.value!r}")
        elif name == "automated":
            self.native_auto = value == "true"
        elif value == "true":
            self.block(f"locked ({annotation.key})")

    def read_flux(self, flux: Mapping[str, Annotation]) -> None:
        self.flux = flux
        self.flux_auto = "automated" in flux and _is_true(flux["automated"].value)
        if "locked" in flux and _is_true(flux["locked"].value):
            message = flux.get("locked_msg")
            self.block(f"locked ({flux['locked'].key})" + (f": {message.value}" if message and message.value
                                                          else ""))
        if "ignore" in flux and _is_true(flux["ignore"].value):
            self.block(f"ignored ({flux['ignore'].key})")
        for rest, annotation in flux.items():
            if rest.startswith("tag."):
                tagged = rest[len("tag."):]
                self.flux_tags[tagged] = annotation
                if tagged not in self.named:
                    self.error(annotation, _missing_container(annotation, tagged, self.named))

    def switch_off_or_opt_in(self) -> None:
        """``automated: "false"`` switches the workload off; any policy or automation annotation opts in."""
        flux_off = "automated" in self.flux and self.flux["automated"].value.strip().lower() == "false"
        if self.native_auto is False:
            self.block(f"automation disabled ({NATIVE}automated: \"false\")")
        elif flux_off and not self.native_policy:
            self.block(f"automation disabled ({self.flux['automated'].key}: \"false\")")
        self.result.opted_in = (bool(self.native_policy) or self.native_auto is True or self.flux_auto
                                or bool(self.flux_tags))

    # -- judging --------------------------------------------------------------------------------------------

    def check(self, annotation: Annotation, text: str, mods: Mapping[str, str] | None = None) -> None:
        """Report ``annotation`` (and remember it as invalid) when ``text`` with ``mods`` is no policy."""
        try:
            parse_policy(text, mods)
        except InvalidPolicy as exc:
            self.invalid.add(annotation.key)
            self.error(annotation, f"annotation {annotation.key}: {exc}")

    def judge_each_alone(self) -> None:
        for annotation in self.native_policy.values():
            self.check(annotation, annotation.value)
        for annotation in self.flux_tags.values():
            self.check(annotation, _flux_pattern(annotation.value))
        for scoped in self.modifiers.values():
            for name, mod in scoped.items():
                if name != "extract":  # an extract is judged with the filter it applies to, in build()
                    self.check(mod, "newest", {name: mod.value})

    def build(self, text: str, annotation: Annotation, container: str | None) -> Policy | None:
        """The policy of one container: ``text`` (from ``annotation``) with the workload-wide modifiers,
        overridden by the container's own of the same kind; None when any part is invalid (reported)."""
        own = self.modifiers.get(container, {}) if container is not None else {}
        key = (annotation.key, container if own else None)
        if key in self.built:
            return self.built[key]
        chosen = {**self.modifiers.get(None, {}), **own}
        self.judged.update(mod.key for mod in chosen.values())
        policy: Policy | None = None
        if annotation.key not in self.invalid and not any(m.key in self.invalid for m in chosen.values()):
            try:
                policy = parse_policy(text, {name: mod.value for name, mod in chosen.items()})
            except InvalidPolicy as exc:
                self._report_misfit(exc, annotation, container, chosen, own)
        self.built[key] = policy
        return policy

    def _report_misfit(self, exc: InvalidPolicy, annotation: Annotation, container: str | None,
                       chosen: Mapping[str, Annotation], own: Mapping[str, Annotation]) -> None:
        """Every part is valid alone, so the parts do not fit together: an extract and the filter it
        applies to. Reported once per (culprit, container), at the culprit."""
        culprit = chosen.get("extract") or chosen.get("filter") or annotation
        if (culprit.key, container) in self.reported:
            return
        self.reported.add((culprit.key, container))
        whose = f" (for container {container})" if container is not None and (
            own.get("extract") is not culprit and own.get("filter") is not culprit) else ""
        self.error(culprit, f"annotation {culprit.key}: {exc}{whose}")

    # -- deciding -------------------------------------------------------------------------------------------

    def decide(self, container: str | None) -> None:
        """One container's policy (with the annotation that set it), the reason it is skipped, or nothing
        when the workload does not concern it or its policy is invalid (already reported)."""
        result = self.result
        if container in self.native_policy or None in self.native_policy:
            # a workload-wide policy takes each container's own modifiers too
            annotation = self.native_policy[container if container in self.native_policy else None]
            policy, source = self.build(annotation.value, annotation, container), annotation.key
        elif container is not None and container in self.flux_tags:
            if not self.flux_auto:
                result._containers[container] = ContainerPolicy(None, skip=(
                    f"not automated ({self.flux_tags[container].key} is set but no fluxcd.io/automated: "
                    "\"true\")"
                ), weak_skip=True)
                return
            annotation = self.flux_tags[container]
            policy = self.build(_flux_pattern(annotation.value), annotation, container)
            source = annotation.key
        elif self.flux_auto:
            policy = self.build("glob:*", self.flux["automated"], container)
            source = self.flux["automated"].key + " (default glob:*)"
        elif result.opted_in:
            result._containers[container] = ContainerPolicy(None, skip=(
                f"no policy for container {container}" if container else "no policy for this container"
            ), weak_skip=True)
            return
        else:
            return
        if policy is not None:
            result._containers[container] = ContainerPolicy(policy, source=source)

    def judge_unused_extracts(self) -> None:
        """An extract no container's policy used is still judged, with the filter of its scope."""
        for scoped in self.modifiers.values():
            extract = scoped.get("extract")
            if extract is None or extract.key in self.judged:
                continue
            filter_ = scoped.get("filter") or self.modifiers.get(None, {}).get("filter")
            if filter_ is None or filter_.key not in self.invalid:
                mods = {"extract": extract.value}
                if filter_ is not None:
                    mods["filter"] = filter_.value
                self.check(extract, "newest", mods)


def annotation_line(annotation: Annotation) -> int:
    return node_line(annotation.node)
