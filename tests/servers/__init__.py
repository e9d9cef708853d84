"""Real servers for the tests and the benchmarks; not in the wheel (the demo's part: ``image_updater.demo``).

- :class:`RegistryServer`: the CNCF distribution registry binary on a free 127.0.0.1 port, with Basic or
  token auth, TLS and notifications on top of the demo's launcher.
- :class:`ImagePusher`: pushes OCI/Docker images (configs with build times, multi-platform indexes) over
  HTTP, with Basic and Bearer token auth; reads and deletes manifests and tags.
- :class:`TokenIssuer`: a Docker token server, so the registry can run the Bearer token flow.
- :func:`make_tls_files`: a throw-away CA and server certificate (trustme) for https registries.
- :mod:`tests.servers.gitserver`: bare repositories, git over smart HTTP and over a real sshd.

``trustme`` and ``cryptography`` are test-only dependencies, imported only by the functions that need them.
"""

from tests.servers.push import ImagePusher, Manifest, Platform, PushError
from tests.servers.registry_server import (
    RegistryServer,
    RegistryStartError,
    TLSFiles,
    make_tls_files,
    write_htpasswd,
)
from tests.servers.token_issuer import Access, TokenAuth, TokenIssuer, TokenRequest

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
