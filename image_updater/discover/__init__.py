"""Discovery: find every image reference in a tree that some policy keeps up to date.

Where policies come from (DESIGN "Where policies come from"):

1. workload annotations, native ``image-updater.io/`` and Flux v1 (``fluxcd.io/``, ``flux.weave.works/``,
   ``filter.fluxcd.io/<c>``), on anything with a pod spec and on Flux HelmReleases (values image shapes);
2. Flux v2 setter markers ``# {"$imagepolicy": "<ns>:<name>[:tag|:name|:digest]"}`` on any scalar, resolved
   against policy files and Flux ``ImagePolicy``/``ImageRepository`` objects in the tree;
3. policy files (``image-updater.io/v1alpha1`` ``ImagePolicy``) whose ``spec.targets`` select workload
   images, kustomize ``images:`` entries and Helm values shapes in matching files.

Discovery is pure: ``discover_files`` works on ``(path, text)`` pairs. Walking and reading a checkout
(``iter_yaml_files``, ``resolve_paths``, ``is_yaml_name``) is the edge module ``image_updater.worktree``. A
cheap text prefilter keeps files that cannot hold a target from being parsed.
"""

from __future__ import annotations

from ._discover import KUSTOMIZATION_FILES, FileInput, discover_files, may_hold_targets
from ._model import Discovery, Part, Shape, Target
from ._policies import PolicyDef

__all__ = [
    "KUSTOMIZATION_FILES",
    "Discovery",
    "FileInput",
    "Part",
    "PolicyDef",
    "Shape",
    "Target",
    "discover_files",
    "may_hold_targets",
]
