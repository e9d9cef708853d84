"""Real registry parts for tests, the README demo and the benchmarks (not used by the product itself).

- :class:`RegistryServer`: the CNCF distribution registry binary on a free 127.0.0.1 port.
- :class:`ImagePusher`: pushes OCI/Docker images (configs with build times, multi-platform indexes) over HTTP.
- :class:`TokenIssuer`: a Docker token server, so the registry can run the Bearer token flow.
- :func:`make_tls_files`: a throw-away CA and server certificate (trustme) for https registries.

``trustme`` and ``cryptography`` are test-only dependencies, imported only by the functions that need them.
"""

from image_updater.testing.push import ImagePusher, Manifest, Platform, PushError
from image_updater.testing.registry_server import (
    RegistryServer,
    RegistryStartError,
    TLSFiles,
    make_tls_files,
    write_htpasswd,
)
from image_updater.testing.token_issuer import Access, TokenAuth, TokenIssuer, TokenRequest

__all__ = [
    "Access",
    "ImagePusher",
    "Manifest",
    "Platform",
    "PushError",
    "RegistryServer",
    "RegistryStartError",
    "TLSFiles",
    "TokenAuth",
    "TokenIssuer",
    "TokenRequest",
    "make_tls_files",
    "write_htpasswd",
]
