"""Argo CD Image Updater 0.x annotations on ``argoproj.io`` ``Application`` documents (DESIGN "Migration").

Pure: an Application node in, an ``AiuApp`` value out (its images translated to our policies, its write-back
target resolved to repo-relative files). ``_discover`` binds the images to scalars in those files.

AIU's meaning, key by key (prefix ``argocd-image-updater.argoproj.io/``):

- ``image-list``: ``[alias=]image[:constraint]``, comma separated; the constraint is a semver range for
  ``semver``, the tag to track for ``digest``;
- ``<alias>.update-strategy``: ``semver`` (default) -> ``semver:<constraint or *>``; ``newest-build`` (old
  name ``latest``) -> ``newest``; ``alphabetical`` (old ``name``) -> ``alphabetical`` (the greatest name);
  ``digest`` -> ``digest:<constraint>``;
- ``<alias>.allow-tags``: ``regexp:<re>`` -> the ``filter`` modifier; ``any`` -> no filter;
- ``<alias>.ignore-tags``: comma separated globs -> ``exclude`` (our default exclusions kept);
- ``<alias>.platforms``: comma separated ``os/arch[/variant]`` -> ``platforms``;
- ``<alias>.force-update``: AIU's switch to update an image the cluster does not run yet; we read Git, not
  the cluster, so every listed image found in the target is updated anyway; with it, an image that a
  kustomization target has no ``images:`` entry for gets one appended (AIU's ``kustomize edit set image``);
- ``<alias>.helm.image-name|image-tag|image-spec``: the values keys (default ``image.name``/``image.tag``);
- ``<alias>.kustomize.image-name``: the ``name`` of the kustomization ``images:`` entry (default: the image);
- ``write-back-method``: ``git`` (``git:secret:...``/``git:repocreds``: the credentials part is ignored, the
  source's own auth is used) or ``argocd`` (AIU's default, written to the cluster; we write Git instead);
- ``write-back-target``: ``kustomization[:dir]``, ``helmvalues[:file]`` (relative to the source path, or to
  the repository root when starting with ``/``); none: AIU's ``.argocd-source-<app>.yaml``;
- ``git-branch``: ``base[:target]``: AIU checks out and commits on ``base`` and pushes to ``target`` (a
  template). An Application whose ``base`` is not the branch written here is skipped with that reason (AIU
  would write another branch); a ``target`` is noted (the commit goes to the branch written here;
  ``pull_requests:`` is the way to separate branches). Without it, AIU commits to the tracking branch, the
  source's ``targetRevision`` (empty or ``HEAD``: the default branch), compared the same way. See
  ``branch_notes``.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from image_updater.errors import InvalidPolicy, InvalidReference
from image_updater.findings import Origin
from image_updater.policies import DEFAULT_EXCLUDE, Policy, parse_policy
from image_updater.references import ImageReference, parse_reference
from image_updater.yamledit import Insertion, render_scalar

from ._annotations import read_annotations
from ._model import Part, Target
from ._nodes import MappingNode, Node, SequenceNode, get, node_line, scalar

__all__ = [
    "AIU_PREFIX",
    "AiuApp",
    "AiuImage",
    "AiuSource",
    "branch_notes",
    "is_application",
    "kustomize_entry_name",
    "new_override_targets",
    "normalise_repo_url",
    "override_file",
    "read_application",
    "sources",
    "split_image",
    "target_file",
    "translate_policy",
    "write_back",
]

AIU_PREFIX = "argocd-image-updater.argoproj.io/"
ARGOCD_NAMESPACE = "argocd"
_STRATEGIES = {
    "semver": "semver",
    "newest-build": "newest",
    "latest": "newest",  # AIU's old name for newest-build
    "alphabetical": "alphabetical",
    "name": "alphabetical",  # AIU's old name for alphabetical
    "digest": "digest",
}
_APP_WIDE = frozenset({"update-strategy", "allow-tags", "ignore-tags", "platforms", "force-update"})
WriteBack = Literal["kustomization", "helmvalues", "override"]


@dataclass(frozen=True, slots=True)
class AiuImage:
    """One ``image-list`` entry with its settings."""

    alias: str
    image: ImageReference  # tag and digest stripped
    policy: Policy | None
    error: str | None = None
    helm_name: str | None = None
    helm_tag: str | None = None
    helm_spec: str | None = None
    kustomize_name: str | None = None
    force_update: bool = False  # AIU updates it even where the Application does not run it yet
    described: str = ""  # the settings as written, e.g. "image-list web=r/web:1.x, update-strategy semver"


@dataclass(frozen=True, slots=True)
class AiuSource:
    repo_url: str
    path: str  # repo-relative directory, "" = root
    helm: bool  # the source has helm: settings (else kustomize or unknown: told from the files)
    revision: str = ""  # targetRevision as written ("" or HEAD: the repository's default branch)


@dataclass(frozen=True, slots=True)
class AiuApp:
    file: str
    line: int
    name: str
    namespace: str | None
    sources: tuple[AiuSource, ...]
    images: tuple[AiuImage, ...]
    write_back: WriteBack
    target_path: str | None  # the path after ``kustomization:``/``helmvalues:``, as written
    method: str  # "git" or "argocd"
    branch: str | None  # the git-branch annotation, as written
    errors: tuple[tuple[int, str], ...] = field(default=())
    origin: Origin = "aiu-annotation"
    defined_at: str | None = None  # "file:line" of the ImageUpdater that selected it (1.x)
    method_given: bool = True  # False: no write-back method set (AIU's default, argocd)
    branch_line: int | None = None  # line of the git-branch setting (in ``file``, or the ImageUpdater's)
    settings_key: Literal["annotation", "imageupdater"] = "annotation"  # how its settings are spelt

    @property
    def method_key(self) -> str:
        return "write-back-method" if self.settings_key == "annotation" else "writeBackConfig.method"

    @property
    def branch_key(self) -> str:
        return "git-branch" if self.settings_key == "annotation" else "gitConfig.branch"

    @property
    def label(self) -> str:
        return f"Application {self.namespace + '/' if self.namespace else ''}{self.name}"

    @property
    def source_line(self) -> str:
        return self.defined_at or f"{self.file}:{self.line}"


def normalise_repo_url(url: str) -> str:
    """``host/path`` of a Git URL, lower-cased host, without scheme, user, port-less ``.git`` or slashes:
    ``https://github.com/a/b.git``, ``git@github.com:a/b`` and ``ssh://git@github.com/a/b`` agree."""
    text = url.strip()
    scp = re.match(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.*)$", text)
    if "://" in text:
        _scheme, _, rest = text.partition("://")
        authority, _, path = rest.partition("/")
        host = authority.rsplit("@", 1)[-1]
        if _scheme in ("ssh", "git+ssh") and host.endswith(":22"):
            host = host[:-3]
        elif _scheme == "https" and host.endswith(":443"):
            host = host[:-4]
    elif scp is not None:
        host, path = scp.group(1), scp.group(2)
    else:
        return text.rstrip("/").removesuffix(".git")
    path = path.strip("/").removesuffix(".git").rstrip("/")
    return f"{host.lower()}/{path}"


def split_image(text: str) -> tuple[str, str, str]:
    """``[alias=]image[:constraint]`` -> (alias, image, constraint)."""
    alias, sep, rest = text.partition("=")
    if not sep:
        alias, rest = "", text
    rest = rest.strip()
    name, constraint = rest, ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        name, constraint = rest[:colon], rest[colon + 1:]
    name = name.split("@", 1)[0]
    return alias.strip(), name.strip(), constraint.strip()


_WILDCARD_PRE = re.compile(r"(?<![<>=~^!\w.])v?(\d+)(?:\.(\d+))?\.[xX*](?:\.[xX*])?-([0-9A-Za-z.-]+)")


def _masterminds_wildcards(constraint: str) -> str:
    """``2.x-0`` (a wildcard with a prerelease, which Masterminds reads as ``>=2.0.0-0 <3.0.0``) in our
    range form; everything else is left to our range parser, which shares Masterminds' meaning."""
    def rewrite(match: re.Match[str]) -> str:
        major, minor, pre = int(match.group(1)), match.group(2), match.group(3)
        if minor is None:
            return f">={major}.0.0-{pre} <{major + 1}.0.0"
        return f">={major}.{minor}.0-{pre} <{major}.{int(minor) + 1}.0"

    return _WILDCARD_PRE.sub(rewrite, constraint.strip())


def translate_policy(
    strategy: str, constraint: str, allow: str | None, ignore: str | None, platforms: str | None
) -> Policy:
    """AIU's update settings for one image as our ``Policy``; ``InvalidPolicy`` names what is wrong."""
    kind = _STRATEGIES.get(strategy.strip().lower() or "semver")
    if kind is None:
        raise InvalidPolicy(f"unknown update-strategy {strategy!r} (expected semver, newest-build, "
                            "alphabetical or digest; latest and name are their old names)")
    modifiers: dict[str, object] = {}
    if allow and allow.strip() and allow.strip() != "any":
        how, sep, regex = allow.strip().partition(":")
        if not sep or how != "regexp":
            raise InvalidPolicy(f"allow-tags {allow!r}: expected 'regexp:<expression>' or 'any'")
        modifiers["filter"] = regex
    if ignore and ignore.strip():
        globs = tuple(g.strip() for g in ignore.split(",") if g.strip())
        modifiers["exclude"] = (*DEFAULT_EXCLUDE, *globs)
    if platforms and platforms.strip():
        modifiers["platforms"] = ",".join(p.strip() for p in platforms.split(",") if p.strip())
    if kind == "semver":
        text = f"semver:{_masterminds_wildcards(constraint) or '*'}"
    elif kind == "digest":
        if not constraint:
            raise InvalidPolicy("update-strategy digest needs the tag to track in image-list (image:tag)")
        text = f"digest:{constraint}"
    else:
        text = kind
    return parse_policy(text, modifiers)


def sources(spec: Node | None) -> tuple[AiuSource, ...]:
    out: list[AiuSource] = []
    nodes: list[Node] = []
    single = get(spec, "source")
    if isinstance(single, MappingNode):
        nodes.append(single)
    many = get(spec, "sources")
    if isinstance(many, SequenceNode):
        nodes.extend(n for n in many.value if isinstance(n, MappingNode))
    for node in nodes:
        url = scalar(get(node, "repoURL")) or ""
        path = (scalar(get(node, "path")) or "").strip()
        if get(node, "chart") is not None and not path:
            continue  # a chart from a Helm repository: nothing in Git to edit
        path = posixpath.normpath(path).lstrip("/") if path not in ("", ".") else ""
        revision = (scalar(get(node, "targetRevision")) or "").strip()
        out.append(AiuSource(url, "" if path == "." else path, get(node, "helm") is not None, revision))
    return tuple(out)


def is_application(node: Node) -> bool:
    return isinstance(node, MappingNode) and scalar(get(node, "kind")) == "Application" and (
        scalar(get(node, "apiVersion")) or "").startswith("argoproj.io/")


def write_back(
    method_text: str, target_text: str, line: int, errors: list[tuple[int, str]]
) -> tuple[WriteBack, str | None, str]:
    """``write-back-method`` and ``write-back-target`` -> (kind, path after the colon, method)."""
    method = method_text.split(":", 1)[0]
    if method not in ("git", "argocd"):
        errors.append((line, f"write-back-method {method_text!r}: expected git[:credentials] or argocd"))
    if not target_text or method != "git":
        return "override", None, method
    kind, _, rest = target_text.partition(":")
    if kind == "kustomization":
        return "kustomization", rest.strip() or None, method
    if kind == "helmvalues":
        return "helmvalues", rest.strip() or None, method
    errors.append((line, f"write-back-target {target_text!r}: expected kustomization[:path] or "
                         "helmvalues[:path]"))
    return "override", None, method


def read_application(file: str, node: Node) -> AiuApp | None:
    """The AIU view of an ``argoproj.io`` ``Application``; ``None`` when it carries no AIU image list."""
    if not is_application(node):
        return None
    annotations = read_annotations(node)
    listed = annotations.get(AIU_PREFIX + "image-list")
    if listed is None:
        return None
    values = {k[len(AIU_PREFIX):]: a.value for k, a in annotations.items() if k.startswith(AIU_PREFIX)}
    lines = {k[len(AIU_PREFIX):]: node_line(a.node) for k, a in annotations.items()
             if k.startswith(AIU_PREFIX)}
    errors: list[tuple[int, str]] = []
    metadata = get(node, "metadata")
    name = scalar(get(metadata, "name")) or ""
    namespace = scalar(get(metadata, "namespace"))
    images: list[AiuImage] = []
    for raw in listed.value.split(","):
        if not raw.strip():
            continue
        alias, image_name, constraint = split_image(raw)
        key = alias or image_name
        try:
            ref = parse_reference(image_name)
        except InvalidReference as exc:
            errors.append((lines["image-list"], f"image-list entry {raw.strip()!r}: {exc}"))
            continue
        ref = dataclasses.replace(ref, tag=None, digest=None)

        def setting(name: str, alias_key: str = key) -> str | None:
            # per image first, then AIU's application-wide form (the same key without an alias)
            own = values.get(f"{alias_key}.{name}")
            return own if own is not None or name not in _APP_WIDE else values.get(name)

        strategy = setting("update-strategy") or ""
        policy: Policy | None = None
        error: str | None = None
        try:
            policy = translate_policy(strategy, constraint, setting("allow-tags"), setting("ignore-tags"),
                                      setting("platforms"))
        except InvalidPolicy as exc:
            error = f"{key}: {exc}"
            errors.append((lines.get(f"{key}.update-strategy", lines["image-list"]), error))
        told = [f"{name} {setting(name)}" for name in ("update-strategy", "allow-tags", "ignore-tags",
                                                        "platforms") if setting(name) is not None]
        images.append(AiuImage(
            alias=alias, image=ref, policy=policy, error=error,
            described=", ".join([f"image-list {raw.strip()}", *told]),
            helm_name=setting("helm.image-name"), helm_tag=setting("helm.image-tag"),
            helm_spec=setting("helm.image-spec"), kustomize_name=setting("kustomize.image-name"),
            force_update=(setting("force-update") or "").strip().lower() == "true",
        ))
    method_text = (values.get("write-back-method") or "argocd").strip()
    target_text = (values.get("write-back-target") or "").strip()
    where = lines.get("write-back-target", lines.get("write-back-method", node_line(node)))
    kind, target_path, method = write_back(method_text, target_text, where, errors)
    return AiuApp(
        file=file, line=node_line(node), name=name, namespace=namespace, sources=sources(get(node, "spec")),
        images=tuple(images), write_back=kind, target_path=target_path, method=method,
        branch=values.get("git-branch"), errors=tuple(errors), method_given="write-back-method" in values,
        branch_line=lines.get("git-branch"),
    )


def target_file(app: AiuApp, source: AiuSource, existing: frozenset[str]) -> str | None:
    """The repo-relative file AIU writes for ``source``; ``None`` when it is not in the tree."""
    def resolve(path: str) -> str:
        joined = path.lstrip("/") if path.startswith("/") else posixpath.join(source.path, path)
        norm = posixpath.normpath(joined) if joined else ""
        return "" if norm == "." else norm

    if app.write_back == "kustomization":
        directory = resolve(app.target_path or ".")
        for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
            candidate = posixpath.join(directory, name) if directory else name
            if candidate in existing:
                return candidate
        return None
    if app.write_back == "helmvalues":
        candidate = resolve(app.target_path or "values.yaml")
        return candidate if candidate in existing else None
    return None


def override_file(app: AiuApp, source: AiuSource, argocd_namespace: str = ARGOCD_NAMESPACE) -> str:
    """AIU's default write-back target: ``<path>/.argocd-source-<app>.yaml``, with ``<namespace>_`` before
    the name when the Application lives outside the Argo CD namespace (apps in any namespace)."""
    prefix = f"{app.namespace}_" if app.namespace and app.namespace != argocd_namespace else ""
    name = f".argocd-source-{prefix}{app.name}.yaml"
    return posixpath.join(source.path, name) if source.path else name


def _plain(value: str) -> str:
    return render_scalar("x", value)


def kustomize_entry_name(aiu: AiuImage, written: str | None = None) -> str:
    """What precedes ``:<tag>`` in AIU's kustomize override entry for ``aiu``: ``<kustomize name>=<image>``
    when the image has a ``kustomize.image-name`` (AIU's ``SetKustomizeImage`` writes the ``=`` form whenever
    the setting is there, and kustomize then replaces the image so named by ``<image>``), else the image.
    ``written``: the image as an existing entry spells it (kept), default the image-list's spelling."""
    image = written or aiu.image.written_name
    return f"{aiu.kustomize_name}={image}" if aiu.kustomize_name else image


def new_override_targets(app: AiuApp, file: str, helm: bool) -> list[Target]:
    """The targets of AIU's override file ``file`` when it does not exist yet: it is written from nothing in
    the format of AIU's ``yaml.Marshal`` of its ``helmOverride``/``kustomizeOverride`` (go-yaml: two-space
    indentation, sequences not indented under their key, keys in struct order)::

        helm:                              kustomize:
          parameters:                        images:
          - name: image.name                 - nginx:1.27.1
            value: nginx
            forcestring: true
          - name: image.tag
            value: 1.27.1
            forcestring: true

    A kustomize image with a ``kustomize.image-name`` is written ``<that name>=<image>:<tag>``."""
    if helm:
        return _new_helm_override(app, file)
    targets: list[Target] = []
    for line, aiu in enumerate((a for a in app.images if a.policy is not None), start=3):
        assert aiu.policy is not None
        insert = Insertion(parent=-1, prefix="  - ", suffix="\n", path=("kustomize", "images", 0),
                           header="kustomize:\n  images:\n")
        targets.append(Target(
            file=file, line=line, start=0, end=0, resource=None, container=aiu.alias or None,
            image=aiu.image, value="", part="reference", policy=aiu.policy, origin=app.origin,
            write_name=kustomize_entry_name(aiu), policy_source=app.source_line, shape="kustomize",
            insert=insert,
        ))
    return targets


def helm_tag_part(policy: Policy) -> Part:
    """What AIU writes into a Helm tag parameter: the tag, or ``<tag>@<digest>`` for the digest strategy
    (its ``GetTagWithDigest``)."""
    return "tag-digest" if policy.kind == "digest" or policy.pin_digest else "tag"


def _new_helm_override(app: AiuApp, file: str) -> list[Target]:
    """The parameters of a new Helm override file, sorted by name as AIU's ``sortHelmParameters`` sorts them
    before marshalling; each target writes the fixed parameters (image names) before its own value."""
    params: list[tuple[str, str | None, AiuImage, Part]] = []  # (name, fixed value or None: the target's)
    for aiu in app.images:
        if aiu.policy is None:
            continue
        if aiu.helm_spec:
            params.append((aiu.helm_spec, None, aiu, "reference"))
        else:
            params.append((aiu.helm_name or "image.name", aiu.image.written_name, aiu, "tag"))
            params.append((aiu.helm_tag or "image.tag", None, aiu, helm_tag_part(aiu.policy)))
    params.sort(key=lambda p: p[0])
    targets: list[Target] = []
    pending, pending_items, line = "", 0, 3
    for name, fixed, aiu, part in params:
        block = f"  - name: {_plain(name)}\n    value: "
        if fixed is not None:
            pending += f"{block}{_plain(fixed)}\n    forcestring: true\n"
            pending_items, line = pending_items + 1, line + 3
            continue
        assert aiu.policy is not None
        insert = Insertion(parent=-1, prefix=pending + block, suffix="\n    forcestring: true\n",
                           path=("helm", "parameters", pending_items, "value"),
                           header="helm:\n  parameters:\n", items=pending_items + 1)
        targets.append(Target(
            file=file, line=line + 1, start=0, end=0, resource=None, container=aiu.alias or None,
            image=aiu.image, value="", part=part, policy=aiu.policy, origin=app.origin,
            write_name=aiu.image.written_name, policy_source=app.source_line, shape="helm-values",
            insert=insert,
        ))
        pending, pending_items, line = "", 0, line + 3
    if pending and targets:  # image names sorted after the last tag: written after it
        last = targets[-1]
        assert last.insert is not None
        targets[-1] = dataclasses.replace(last, insert=dataclasses.replace(
            last.insert, suffix=last.insert.suffix + pending, items=last.insert.items + pending_items))
    return targets


def branch_notes(
    app: AiuApp, branch: str | None, revisions: Sequence[str] = ()
) -> tuple[str | None, str | None]:
    """What AIU's git-branch setting of ``app`` means here, where ``branch`` is written (``None``: not
    known): ``(skip, note)``, the reason to skip the Application (AIU would commit to another branch) or a
    note to report beside its updates. An invalid setting is in ``app.errors``'s place: a skip.

    Without the setting AIU commits to the Application's tracking branch, its ``targetRevision``
    (``revisions``: those of its sources in this repository; empty or ``HEAD``: the default branch, taken
    to be the one written here). A revision that is not the branch written here is a skip: AIU would
    commit to that branch, or, for a tag or commit, ask for git-branch to be set."""
    text = (app.branch or "").strip()
    if not text:
        tracked = sorted({r for r in revisions if r and r != "HEAD"})
        if branch is None or not tracked or tracked == [branch]:
            return None, None
        return (f"{app.label}: targetRevision {', '.join(tracked)}: AIU commits to the Application's "
                f"tracking branch, but this source writes branch {branch}; not updated here (a source for "
                f"that branch updates its images, or set {app.branch_key})"), None
    setting = f"{app.label}: {app.branch_key} {text!r}"
    if text.count(":") > 1:
        return f"{setting} is not base[:target]; its images are not updated", None
    base, _sep, push = text.partition(":")
    base, push = base.strip(), push.strip()
    if base and branch is not None and base != branch:
        return (f"{setting}: AIU commits to branch {base}, but this source writes branch {branch}; "
                f"not updated here (a source for branch {base} updates its images)"), None
    notes: list[str] = []
    if base and branch is None:
        notes.append(f"AIU commits to branch {base}; the branch written here is not known (a detached HEAD?)")
    if push:
        ours = branch or "the branch written here"
        notes.append(f"AIU would push its commit to branch {push!r}; image-updater commits to {ours} "
                     "itself (a source's pull_requests: setting keeps updates on their own branches)")
    return None, (f"{setting}: " + "; ".join(notes)) if notes else None
