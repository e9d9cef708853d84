"""Manifests the hostile scenarios and tests write into their repositories."""

from __future__ import annotations

import textwrap

__all__ = ["deployment"]


def deployment(name: str, image: str, policy: str = "semver:^1.0") -> str:
    """A Deployment whose one container ``name`` runs ``image`` under ``policy`` (a native annotation)."""
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: {name}
          annotations:
            image-updater.io/policy.{name}: "{policy}"
        spec:
          template:
            spec:
              containers:
                - name: {name}
                  image: {image}
        """)
