"""What ``image-updater demo`` needs to run on one machine, and nothing else.

- :class:`RegistryServer` (:mod:`.registry`): the CNCF distribution registry binary on a free 127.0.0.1
  port, plain HTTP, its storage in a temporary directory or one the demo keeps.
- :class:`ImagePusher` (:mod:`.push`): pushes OCI/Docker images (configs with build times, multi-platform
  indexes) through the registry HTTP API, anonymously.
- :func:`make_bare_repo` (:mod:`.bare`): a bare Git repository with one commit of the example files.

The command itself is :mod:`image_updater.commands.demo`. The test servers built on these (auth, TLS, token
issuer, git over HTTP and SSH) live beside the tests, in ``tests/servers/``, not in the wheel.
"""

from image_updater.demo.bare import make_bare_repo
from image_updater.demo.push import ImagePusher
from image_updater.demo.registry import RegistryServer
from image_updater.errors import PushError, RegistryStartError

__all__ = ["ImagePusher", "PushError", "RegistryServer", "RegistryStartError", "make_bare_repo"]
