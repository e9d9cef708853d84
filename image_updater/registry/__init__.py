"""The registry layer: the only part of image-updater that speaks HTTP to container registries.

``RegistryClient`` talks Docker Registry HTTP API v2 / OCI distribution (auth, paging, manifests, retries,
pacing), ``MetadataCache`` keeps what never changes across passes and restarts, and ``resolve`` answers a
pass's ``ResolveKey`` questions with as few requests as the policies allow. The modules behind this surface
(``auth``, ``credentials``, ``transport``, ``manifests``) are implementation details.
"""

import sys

# httpx's __init__ imports its own command line client (httpx._main: click, rich, pygments; ~50 ms) whenever
# click and rich happen to be installed, and falls back to a stub on ImportError. A ``None`` entry in
# sys.modules makes that import fail at once; image-updater never runs httpx's CLI.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from image_updater.registry.cache import MetadataCache
from image_updater.registry.client import RegistryClient
from image_updater.registry.options import RegistryOptions, options_for, options_from_settings
from image_updater.registry.pacing import RetryPolicy
from image_updater.registry.resolve import Inspection, inspect, resolve
from image_updater.registry.transport import BodyLimits

__all__ = [
    "BodyLimits",
    "Inspection",
    "MetadataCache",
    "RegistryClient",
    "RegistryOptions",
    "RetryPolicy",
    "inspect",
    "options_for",
    "options_from_settings",
    "resolve",
]
