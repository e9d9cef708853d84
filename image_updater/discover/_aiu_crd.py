"""Argo CD Image Updater 1.x ``ImageUpdater`` objects (``argocd-image-updater.argoproj.io/v1alpha1``).

Pure: an ImageUpdater node and the Application documents of the tree in, one ``AiuApp`` per selected
Application out, with AIU 1.x's meaning:

- ``spec.applicationRefs[]``: ``namePattern`` (a glob on the Application's name) and optional
  ``labelSelectors`` (``matchLabels`` and ``matchExpressions`` with ``In``/``NotIn``/``Exists``/
  ``DoesNotExist``, all ANDed, as Kubernetes label selectors), among the Applications of ``spec.namespace``
  (or, without it, the ImageUpdater's own namespace; Applications without a namespace match any);
  the first ref that selects an Application wins, as AIU's controller stops at the first match;
- settings layer: ``spec.commonUpdateSettings`` < the ref's < the image's (``updateStrategy``,
  ``allowTags``, ``ignoreTags`` list, ``platforms`` list, ``forceUpdate`` (as 0.x's ``force-update``);
  ``pullSecret`` changes nothing here: registry credentials are our own);
- write-back: ``spec.writeBackConfig`` < the ref's (``method``, ``gitConfig.writeBackTarget``,
  ``gitConfig.branch``);
- ``images[]``: ``alias``, ``imageName`` (``image[:constraint]`` as in 0.x's image-list),
  ``manifestTargets.helm`` (``name``, ``tag``, ``spec``) or ``manifestTargets.kustomize.name``;
- ``useAnnotations: true`` on a ref: the Application's own 0.x annotations configure it instead.
"""

from __future__ import annotations

import dataclasses
from fnmatch import fnmatchcase

from image_updater.errors import InvalidPolicy, InvalidReference
from image_updater.references import parse_reference

from ._aiu import AiuApp, AiuImage, read_application, sources, split_image, translate_policy, write_back
from ._nodes import MappingNode, Node, SequenceNode, get, items, node_line, scalar, string_list

__all__ = ["AIU_CRD_API", "is_image_updater", "select_applications"]

AIU_CRD_API = "argocd-image-updater.argoproj.io/"
_SETTINGS = ("updateStrategy", "allowTags", "ignoreTags", "platforms", "forceUpdate")


def is_image_updater(node: Node) -> bool:
    return isinstance(node, MappingNode) and scalar(get(node, "kind")) == "ImageUpdater" and (
        scalar(get(node, "apiVersion")) or "").startswith(AIU_CRD_API)


def _labels(node: Node) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, _k, value in items(get(get(node, "metadata"), "labels")):
        text = scalar(value)
        if text is not None:
            out[key] = text
    return out


def _selects(selector: Node | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    for key, _k, value in items(get(selector, "matchLabels")):
        if labels.get(key) != scalar(value):
            return False
    expressions = get(selector, "matchExpressions")
    for expression in expressions.value if isinstance(expressions, SequenceNode) else []:
        key = scalar(get(expression, "key")) or ""
        operator = scalar(get(expression, "operator")) or ""
        values = {v for v, _n in string_list(get(expression, "values")) or []}
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def _settings(*layers: Node | None) -> dict[str, str | None]:
    """The effective update settings: later layers override earlier ones, key by key."""
    out: dict[str, str | None] = dict.fromkeys(_SETTINGS)
    for layer in layers:
        settings = get(layer, "commonUpdateSettings")
        for key in _SETTINGS:
            node = get(settings, key)
            if node is None:
                continue
            listed = string_list(node)
            out[key] = ",".join(v for v, _n in listed) if listed is not None else scalar(node)
    return out


def _write_back_setting(*layers: Node | None) -> tuple[str | None, str, str | None, int | None]:
    """(method or None when not set, target, branch, line of the branch setting) of the layers."""
    method: str | None = None
    target, branch, branch_line = "", None, None
    for layer in layers:
        config = get(layer, "writeBackConfig")
        if config is None:
            continue
        method = scalar(get(config, "method")) or method
        git = get(config, "gitConfig")
        target = scalar(get(git, "writeBackTarget")) or target
        node = get(git, "branch")
        if scalar(node):
            branch, branch_line = scalar(node), node_line(node) if node is not None else None
    return method, target, branch, branch_line


def _allow(text: str | None) -> str | None:
    # 1.x documents allowTags as a regular expression; the 0.x form `regexp:<re>` / `any` is read too
    if text is None or text.strip() in ("", "any") or text.startswith("regexp:"):
        return text
    return f"regexp:{text}"


def select_applications(
    file: str, updater: Node, applications: list[tuple[str, Node]]
) -> tuple[list[AiuApp], list[tuple[int, str]]]:
    """The Applications ``updater`` selects, each as the ``AiuApp`` the ImageUpdater makes of it."""
    errors: list[tuple[int, str]] = []
    spec = get(updater, "spec")
    own_ns = scalar(get(spec, "namespace")) or scalar(get(get(updater, "metadata"), "namespace"))
    label = f"ImageUpdater {scalar(get(get(updater, 'metadata'), 'name')) or ''}"
    defined_at = f"{file}:{node_line(updater)}"
    refs = get(spec, "applicationRefs")
    ref_nodes = [r for r in refs.value if isinstance(r, MappingNode)] if isinstance(refs, SequenceNode) else (
        [])
    if not ref_nodes:
        errors.append((node_line(updater), f"{label}: spec.applicationRefs is empty"))
    out: list[AiuApp] = []
    for app_file, app in applications:
        metadata = get(app, "metadata")
        name = scalar(get(metadata, "name")) or ""
        namespace = scalar(get(metadata, "namespace"))
        if own_ns and namespace and namespace != own_ns:
            continue
        labels = _labels(app)
        ref = next((r for r in ref_nodes if fnmatchcase(name, scalar(get(r, "namePattern")) or "")
                    and _selects(get(r, "labelSelectors"), labels)), None)
        if ref is None:
            continue
        if (scalar(get(ref, "useAnnotations")) or "").lower() == "true":
            annotated = read_application(app_file, app)
            if annotated is not None:
                out.append(dataclasses.replace(annotated, origin="aiu-imageupdater", defined_at=defined_at))
            continue
        app_errors: list[tuple[int, str]] = []
        images: list[AiuImage] = []
        listed = get(ref, "images")
        for image in listed.value if isinstance(listed, SequenceNode) else []:
            alias = scalar(get(image, "alias")) or ""
            _alias, image_name, constraint = split_image(scalar(get(image, "imageName")) or "")
            try:
                ref_image = dataclasses.replace(parse_reference(image_name), tag=None, digest=None)
            except InvalidReference as exc:
                errors.append((node_line(image), f"{label}: image {alias!r}: {exc}"))
                continue
            settings = _settings(spec, ref, image)
            try:
                policy = translate_policy(settings["updateStrategy"] or "", constraint,
                                          _allow(settings["allowTags"]), settings["ignoreTags"],
                                          settings["platforms"])
                error = None
            except InvalidPolicy as exc:
                policy, error = None, f"{label}: image {alias!r}: {exc}"
                errors.append((node_line(image), error))
            targets = get(image, "manifestTargets")
            helm, kustomize = get(targets, "helm"), get(targets, "kustomize")
            told = [f"{k} {v}" for k, v in settings.items() if v is not None and k != "forceUpdate"]
            images.append(AiuImage(
                alias=alias, image=ref_image, policy=policy, error=error,
                described=", ".join([f"imageName {scalar(get(image, 'imageName')) or ''}", *told]),
                helm_name=scalar(get(helm, "name")), helm_tag=scalar(get(helm, "tag")),
                helm_spec=scalar(get(helm, "spec")), kustomize_name=scalar(get(kustomize, "name")),
                force_update=(settings["forceUpdate"] or "").strip().lower() == "true",
            ))
        method, target, branch, branch_line = _write_back_setting(spec, ref)
        kind, target_path, method_name = write_back(method or "argocd", target, node_line(ref), app_errors)
        errors.extend((line, f"{label}: {message}") for line, message in app_errors)
        out.append(AiuApp(
            file=app_file, line=node_line(app), name=name, namespace=namespace,
            sources=sources(get(app, "spec")),
            images=tuple(images), write_back=kind, target_path=target_path, method=method_name, branch=branch,
            origin="aiu-imageupdater", defined_at=defined_at, method_given=method is not None,
            branch_line=branch_line, settings_key="imageupdater",
        ))
    return out, errors
