"""Named policies: our own policy files and Flux ``ImagePolicy`` (+ ``ImageRepository``) objects.

Our policy file (``apiVersion: image-updater.io/v1alpha1``, ``kind: ImagePolicy``) names an image, a policy in
the one string form plus modifiers, and optional ``spec.targets`` that select fields without markers. A Flux
``ImagePolicy`` becomes the same thing: its repository comes from the ``ImageRepository`` it references, its
``policy.semver|alphabetical|numerical`` and ``filterTags`` map onto our policy string and modifiers, so a
Flux v2 repository's setter markers work without Flux's controllers.

Every problem is reported with the file and line of the offending node; an invalid policy is never replaced
by anything that would match all tags.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from image_updater.errors import InvalidPolicy, InvalidReference
from image_updater.findings import ErrorEntry
from image_updater.policies import Policy, parse_policy
from image_updater.references import ImageReference, parse_reference

from ._globs import InvalidGlob, PathGlob, compile_path_glob
from ._nodes import MappingNode, Node, SequenceNode, get, items, node_line, scalar, string_list

__all__ = [
    "FLUX_IMAGE_API",
    "OUR_API",
    "PolicyDef",
    "PolicyIndex",
    "TargetRule",
]

OUR_API = "image-updater.io/v1alpha1"
FLUX_IMAGE_API = "image.toolkit.fluxcd.io/"
# Flux's ImageRepository default: cosign signatures are not images to deploy (our default exclude covers them)
_FLUX_DEFAULT_EXCLUSIONS = ("^.*\\.sig$",)

_BOOL_MODIFIERS = ("prerelease", "pin_digest")
_STR_MODIFIERS = ("filter", "extract", "flavour", "min_age")
_LIST_MODIFIERS = ("exclude", "platforms")
_SPEC_KEYS = frozenset({"image", "policy", "targets", *_BOOL_MODIFIERS, *_STR_MODIFIERS, *_LIST_MODIFIERS})
_TARGET_KEYS = frozenset({"path", "kinds", "containers"})


@dataclass(frozen=True, slots=True)
class TargetRule:
    """One ``spec.targets`` entry: which files (and kinds, containers) a policy file updates."""

    path: str
    kinds: frozenset[str] | None = None
    containers: frozenset[str] | None = None

    def matches_file(self, file: str) -> bool:
        return _glob(self.path).matches(file)

    def matches_kind(self, kind: str | None) -> bool:
        return self.kinds is None or (kind is not None and kind in self.kinds)

    def matches_container(self, container: str | None) -> bool:
        return self.containers is None or (container is not None and container in self.containers)


@dataclass(frozen=True, slots=True)
class PolicyDef:
    """A named policy. ``policy``/``image`` are None when the definition is unusable; ``problem`` says why."""

    file: str
    line: int
    namespace: str | None
    name: str
    flux: bool
    image: ImageReference | None = None
    policy: Policy | None = None
    targets: tuple[TargetRule, ...] = ()
    problem: str | None = None
    # Flux only: the ImageRepository reference, resolved once the whole tree has been read
    repository_ref: tuple[str | None, str] | None = None
    exclusions: tuple[str, ...] = field(default=())

    @property
    def source(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def label(self) -> str:
        kind = "Flux ImagePolicy" if self.flux else "policy"
        return f"{kind} {self.namespace}:{self.name}" if self.namespace else f"{kind} {self.name}"


@dataclass(slots=True)
class _FluxRepository:
    file: str
    line: int
    namespace: str | None
    name: str
    image: ImageReference | None
    exclusions: tuple[str, ...]
    problem: str | None


class PolicyIndex:
    """Collects policy definitions from every document, then answers marker look-ups and target rules."""

    def __init__(self) -> None:
        self.defs: list[PolicyDef] = []
        self.errors: list[ErrorEntry] = []
        self._repos: dict[tuple[str | None, str], _FluxRepository] = {}
        self._by_key: dict[tuple[str | None, str], PolicyDef] = {}
        self._by_name: dict[str, list[PolicyDef]] = {}
        self._finished = False
        self._rules: list[tuple[PathGlob, list[tuple[PolicyDef, TargetRule]]]] | None = None
        # Where broken policy files of ours meant to reach: the target globs they still spell out, or
        # everywhere when their targets cannot be read. Files there are parsed so that their own problems
        # are reported in the same pass as the policy's, not once the policy file is fixed.
        self._broken_reach: list[str] = []
        self.broken_reach_unknown = False

    # -- collecting ---------------------------------------------------------------------------------------

    def add_document(self, file: str, doc: Node) -> bool:
        """Read ``doc`` if it is a policy definition; return True when it was one (valid or not)."""
        if not isinstance(doc, MappingNode):
            return False
        api = scalar(get(doc, "apiVersion")) or ""
        kind = scalar(get(doc, "kind")) or ""
        if api.startswith("image-updater.io/"):
            if kind != "ImagePolicy" or api != OUR_API:
                self._error(file, doc, f"unsupported {api} kind {kind!r}: expected apiVersion {OUR_API}, "
                                       "kind ImagePolicy")
                self.broken_reach_unknown = True
                return True
            self._add(self._our_policy(file, doc))
            return True
        if api.startswith(FLUX_IMAGE_API) and kind == "ImagePolicy":
            self._add(self._flux_policy(file, doc))
            return True
        if api.startswith(FLUX_IMAGE_API) and kind == "ImageRepository":
            self._flux_repository(file, doc)
            return True
        return False

    def _error(self, file: str, node: Node, message: str) -> None:
        self.errors.append(ErrorEntry(file=file, line=node_line(node), image=None, message=message))

    def _add(self, definition: PolicyDef | None) -> None:
        if definition is None:
            return
        key = (definition.namespace, definition.name)
        if key in self._by_key:
            first = self._by_key[key]
            self.errors.append(ErrorEntry(
                file=definition.file, line=definition.line, image=None,
                message=f"{definition.label} is defined twice (first at {first.source}); this one is ignored",
            ))
            return
        self._by_key[key] = definition
        self._by_name.setdefault(definition.name, []).append(definition)
        self.defs.append(definition)

    def _metadata(self, file: str, doc: Node) -> tuple[str | None, str] | None:
        metadata = get(doc, "metadata")
        name = scalar(get(metadata, "name"))
        if not name:
            self._error(file, metadata or doc, "policy has no metadata.name")
            return None
        namespace = scalar(get(metadata, "namespace")) or None
        return namespace, name

    def _our_policy(self, file: str, doc: Node) -> PolicyDef | None:
        meta = self._metadata(file, doc)
        if meta is None:
            self.broken_reach_unknown = True
            return None
        namespace, name = meta
        line = node_line(doc)
        label = f"policy {namespace}:{name}" if namespace else f"policy {name}"
        spec = get(doc, "spec")
        if not isinstance(spec, MappingNode):
            self._error(file, spec or doc, f"{label}: spec must be a mapping with image and policy")
            self.broken_reach_unknown = True
            return PolicyDef(file, line, namespace, name, flux=False, problem="spec is missing")
        problems: list[str] = []

        def fail(node: Node, message: str) -> None:
            problems.append(message)
            self._error(file, node, f"{label}: {message}")

        for key, key_node, _value in items(spec):
            if key not in _SPEC_KEYS:
                fail(key_node, f"unknown field spec.{key} (known: {', '.join(sorted(_SPEC_KEYS))})")
                self.broken_reach_unknown = True  # perhaps a misspelt targets: it could mean any file
        image = self._image(get(spec, "image"), spec, fail)
        policy_node = get(spec, "policy")
        policy_text = scalar(policy_node)
        modifiers = self._modifiers(spec, fail)
        policy: Policy | None = None
        if policy_text is None or not policy_text.strip():
            fail(policy_node or spec, "spec.policy is required (for example semver:^1.2)")
        elif modifiers is not None:
            try:
                policy = parse_policy(policy_text, modifiers)
            except InvalidPolicy as exc:
                fail(policy_node or spec, str(exc))
        before = len(problems)
        targets = self._targets(get(spec, "targets"), fail)
        if len(problems) > before:
            self.broken_reach_unknown = True
        problem = problems[0] if problems else None
        if problem is not None:
            self._broken_reach.extend(rule.path for rule in targets)
        return PolicyDef(
            file, line, namespace, name, flux=False, image=image, policy=policy if problem is None else None,
            targets=targets if problem is None else (), problem=problem,
        )

    @staticmethod
    def _image(node: Node | None, spec: Node, fail: Any) -> ImageReference | None:
        text = scalar(node)
        if not text:
            fail(node or spec, "spec.image is required (a repository such as ghcr.io/org/app)")
            return None
        try:
            ref = parse_reference(text)
        except InvalidReference as exc:
            fail(node, f"invalid spec.image: {exc}")
            return None
        if ref.tag is not None or ref.digest is not None:
            fail(node, f"spec.image {text!r} must name a repository without tag or digest")
            return None
        return ref

    @staticmethod
    def _modifiers(spec: Node, fail: Any) -> dict[str, Any] | None:
        modifiers: dict[str, Any] = {}
        ok = True
        for key in _BOOL_MODIFIERS:
            node = get(spec, key)
            if node is None:
                continue
            flag = (scalar(node) or "").lower()
            if flag not in ("true", "false"):
                fail(node, f"spec.{key} must be true or false")
                ok = False
                continue
            modifiers[key] = flag == "true"
        for key in _STR_MODIFIERS:
            node = get(spec, key)
            if node is None:
                continue
            text = scalar(node)
            if text is None:
                fail(node, f"spec.{key} must be a string")
                ok = False
                continue
            modifiers[key] = text
        for key in _LIST_MODIFIERS:
            node = get(spec, key)
            if node is None:
                continue
            values = string_list(node)
            if values is None:
                fail(node, f"spec.{key} must be a list of strings")
                ok = False
                continue
            modifiers[key] = [v for v, _ in values]
        return modifiers if ok else None

    @staticmethod
    def _targets(node: Node | None, fail: Any) -> tuple[TargetRule, ...]:
        if node is None:
            return ()
        if not isinstance(node, SequenceNode):
            fail(node, "spec.targets must be a list of {path, kinds, containers}")
            return ()
        rules: list[TargetRule] = []
        for entry in node.value:
            if not isinstance(entry, MappingNode):
                fail(entry, "each spec.targets entry must be a mapping with at least path")
                continue
            for key, key_node, _value in items(entry):
                if key not in _TARGET_KEYS:
                    fail(key_node, f"unknown field {key!r} in spec.targets (known: path, kinds, containers)")
            path_node = get(entry, "path")
            path = scalar(path_node)
            if not path:
                fail(path_node or entry, "spec.targets entry needs a path (a repo-relative glob)")
                continue
            try:
                compile_path_glob(path)
            except InvalidGlob as exc:
                fail(path_node, str(exc))
                continue
            selectors: list[frozenset[str] | None] = []
            for key in ("kinds", "containers"):
                sel_node = get(entry, key)
                if sel_node is None:
                    selectors.append(None)
                    continue
                values = string_list(sel_node)
                if not values:
                    fail(sel_node, f"spec.targets[].{key} must be a non-empty list of strings")
                    selectors.append(None)
                    continue
                selectors.append(frozenset(v for v, _ in values))
            rules.append(TargetRule(path=path, kinds=selectors[0], containers=selectors[1]))
        return tuple(rules)

    def _flux_policy(self, file: str, doc: Node) -> PolicyDef | None:
        meta = self._metadata(file, doc)
        if meta is None:
            return None
        namespace, name = meta
        line = node_line(doc)
        label = f"Flux ImagePolicy {namespace}:{name}" if namespace else f"Flux ImagePolicy {name}"
        spec = get(doc, "spec")
        problems: list[str] = []

        def fail(node: Node | None, message: str) -> None:
            problems.append(message)
            self._error(file, node or doc, f"{label}: {message}")

        repo_ref = get(spec, "imageRepositoryRef")
        repo_name = scalar(get(repo_ref, "name"))
        if not repo_name:
            fail(repo_ref or spec, "spec.imageRepositoryRef.name is required")
        repo_ns = scalar(get(repo_ref, "namespace")) or namespace
        choice = get(spec, "policy")
        policy_text: str | None = None
        kinds = [k for k, _kn, _v in items(choice)]
        if len(kinds) != 1:
            fail(choice or spec, "spec.policy needs exactly one of semver, alphabetical, numerical")
        elif kinds[0] == "semver":
            range_node = get(get(choice, "semver"), "range")
            range_text = scalar(range_node)
            if not range_text:
                fail(range_node or choice, "spec.policy.semver.range is required")
            else:
                policy_text = f"semver:{range_text}"
        elif kinds[0] in ("alphabetical", "numerical"):
            order_node = get(get(choice, kinds[0]), "order")
            order = (scalar(order_node) or "asc").lower()
            if order not in ("asc", "desc"):
                fail(order_node, f"spec.policy.{kinds[0]}.order must be asc or desc")
            else:
                policy_text = f"{kinds[0]}:{order}"
        else:
            fail(choice, f"unsupported policy {kinds[0]!r} (semver, alphabetical, numerical)")
        modifiers: dict[str, Any] = {}
        filter_tags = get(spec, "filterTags")
        if filter_tags is not None:
            pattern = scalar(get(filter_tags, "pattern"))
            extract = scalar(get(filter_tags, "extract"))
            if pattern:
                modifiers["filter"] = pattern
            if extract:
                modifiers["extract"] = extract
        reflection = scalar(get(spec, "digestReflectionPolicy"))
        if reflection in ("Always", "IfNotPresent"):
            modifiers["pin_digest"] = True
        policy: Policy | None = None
        if policy_text is not None:
            try:
                policy = parse_policy(policy_text, modifiers)
            except InvalidPolicy as exc:
                fail(get(spec, "filterTags") if "filter" in str(exc) else choice, str(exc))
        problem = problems[0] if problems else None
        return PolicyDef(
            file, line, namespace, name, flux=True, policy=policy if problem is None else None,
            problem=problem, repository_ref=(repo_ns, repo_name) if repo_name else None,
        )

    def _flux_repository(self, file: str, doc: Node) -> None:
        metadata = get(doc, "metadata")
        name = scalar(get(metadata, "name"))
        if not name:
            self._error(file, doc, "Flux ImageRepository has no metadata.name")
            return
        namespace = scalar(get(metadata, "namespace")) or None
        spec = get(doc, "spec")
        image_node = get(spec, "image")
        image_text = scalar(image_node)
        problem: str | None = None
        image: ImageReference | None = None
        if not image_text:
            problem = "spec.image is missing"
        else:
            try:
                image = parse_reference(image_text)
            except InvalidReference as exc:
                problem = f"invalid spec.image: {exc}"
        exclusion_node = get(spec, "exclusionList")
        exclusions: tuple[str, ...] = _FLUX_DEFAULT_EXCLUSIONS
        if exclusion_node is not None:
            values = string_list(exclusion_node)
            if values is None:
                problem = problem or "spec.exclusionList must be a list of regular expressions"
            else:
                exclusions = tuple(v for v, _ in values)
        if problem is not None:
            label = f"Flux ImageRepository {namespace + ':' if namespace else ''}{name}"
            self._error(file, image_node or spec or doc, f"{label}: {problem}")
        self._repos[(namespace, name)] = _FluxRepository(
            file, node_line(doc), namespace, name, image, exclusions, problem
        )

    # -- after the whole tree has been read --------------------------------------------------------------

    def finish(self) -> None:
        """Resolve Flux ImagePolicies against the ImageRepositories found anywhere in the tree."""
        if self._finished:
            return
        self._finished = True
        for index, definition in enumerate(self.defs):
            if not definition.flux or definition.policy is None or definition.repository_ref is None:
                continue
            repo = self._repos.get(definition.repository_ref)
            if repo is None and definition.repository_ref[0] is not None:
                repo = self._repos.get((None, definition.repository_ref[1]))
            resolved: PolicyDef
            if repo is None:
                ns, repo_name = definition.repository_ref
                where = f"{ns}:{repo_name}" if ns else repo_name
                resolved = _replace(definition, policy=None, problem=(
                    f"its ImageRepository {where} is not in the scanned tree"
                ))
            elif repo.image is None:
                resolved = _replace(definition, policy=None, problem=(
                    f"its ImageRepository at {repo.file}:{repo.line} is invalid: {repo.problem}"
                ))
            else:
                policy = definition.policy
                if repo.exclusions and repo.exclusions != _FLUX_DEFAULT_EXCLUSIONS:
                    try:
                        policy = _replace(policy, exclude_regex=tuple(repo.exclusions))
                    except (InvalidPolicy, re.error) as exc:
                        self.errors.append(ErrorEntry(
                            file=repo.file, line=repo.line, image=None,
                            message=f"Flux ImageRepository {repo.name}: invalid exclusionList: {exc}",
                        ))
                        problem = f"invalid exclusionList: {exc}"
                        self._store(index, _replace(definition, policy=None, problem=problem))
                        continue
                resolved = _replace(definition, image=repo.image, policy=policy, exclusions=repo.exclusions)
            self._store(index, resolved)

    def _store(self, index: int, definition: PolicyDef) -> None:
        self.defs[index] = definition
        self._by_key[(definition.namespace, definition.name)] = definition
        self._by_name[definition.name] = [
            definition if (d.namespace, d.name) == (definition.namespace, definition.name) else d
            for d in self._by_name[definition.name]
        ]

    def lookup(self, namespace: str | None, name: str) -> tuple[PolicyDef | None, str | None]:
        """Find the policy a setter marker names: ``(definition, None)`` or ``(None, why not)``."""
        if namespace is not None:
            found = self._by_key.get((namespace, name))
            if found is not None:
                return found, None
            # a definition without a namespace is found under any namespace (kustomize sets it at build time)
            unnamespaced = self._by_key.get((None, name))
            if unnamespaced is not None:
                return unnamespaced, None
            return None, f"no policy {namespace}:{name} (policy file or Flux ImagePolicy) in the scanned tree"
        candidates = self._by_name.get(name, [])
        if len(candidates) == 1:
            return candidates[0], None
        if not candidates:
            return None, f"no policy named {name} (policy file or Flux ImagePolicy) in the scanned tree"
        where = ", ".join(sorted(c.source for c in candidates))
        return None, f"policy name {name} is ambiguous ({where}); write <namespace>:{name}"

    def rules_for(self, file: str) -> list[tuple[PolicyDef, TargetRule]]:
        """The (policy, target rule) pairs whose path glob matches ``file``."""
        if self._rules is None:
            grouped: dict[str, list[tuple[PolicyDef, TargetRule]]] = {}
            for definition in self.defs:
                if definition.policy is None or definition.image is None:
                    continue
                for rule in definition.targets:
                    grouped.setdefault(rule.path, []).append((definition, rule))
            self._rules = [(_glob(path), pairs) for path, pairs in grouped.items()]
        out: list[tuple[PolicyDef, TargetRule]] = []
        for pattern, pairs in self._rules:  # one match per distinct glob, however many policies share it
            if pattern.matches(file):
                out.extend(pairs)
        return out

    def broken_policy_reaches(self, file: str) -> bool:
        """Could a policy file that is broken have been meant to update ``file``?"""
        return self.broken_reach_unknown or any(_glob(path).matches(file) for path in self._broken_reach)

    @property
    def has_targets(self) -> bool:
        return any(d.targets and d.policy is not None for d in self.defs)


_GLOBS: dict[str, PathGlob] = {}
# a daemon meets the same globs pass after pass; a repository full of distinct ones must not grow the cache
_MAX_GLOBS = 1024
_T = TypeVar("_T")


def _glob(path: str) -> PathGlob:
    pattern = _GLOBS.get(path)
    if pattern is None:
        if len(_GLOBS) >= _MAX_GLOBS:
            _GLOBS.clear()
        pattern = _GLOBS[path] = compile_path_glob(path)
    return pattern


def _replace(value: _T, **changes: Any) -> _T:
    return dataclasses.replace(value, **changes)  # type: ignore[type-var]
