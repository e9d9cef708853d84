"""The host side of scripts/test-image.sh: a seeded registry on 127.0.0.1 and a bare Git repository.

Usage: python scripts/image_fixture.py DIR MOUNT
Starts the CNCF registry on a free loopback port, pushes the demo's images (image_updater.commands.demo),
makes DIR/gitops.git from examples/gitops-repo, and writes DIR/config.yaml for a container that sees DIR at
MOUNT. Writes DIR/ready when all is there, then serves until SIGTERM/SIGINT (the script's trap sends it).
"""

from __future__ import annotations

import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from image_updater.commands.demo import DEMO_IMAGES, examples_dir
from image_updater.demo import ImagePusher, RegistryServer, make_bare_repo


def main(argv: list[str]) -> int:
    work, mount = Path(argv[1]), argv[2]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with RegistryServer(work_dir=work / "registry") as registry:
        now = datetime.now(UTC).replace(microsecond=0)
        with ImagePusher(registry.url) as pusher:
            for repository, tags in DEMO_IMAGES.items():
                for tag, age in tags.items():
                    pusher.push(repository, tag, created=now - age)
        source = examples_dir()
        files = {str(p.relative_to(source)): p.read_bytes() for p in sorted(source.rglob("*")) if p.is_file()}
        make_bare_repo(work / "gitops.git", files, message="Example GitOps repository")
        mirrors = "".join(
            f"  - prefix: {prefix}\n    api_url: {registry.url}\n    insecure: true\n"
            for prefix in ("docker.io", "quay.io", "ghcr.io")
        )
        (work / "config.yaml").write_text(
            "cache_dir: /var/cache/image-updater\n"
            "sources:\n"
            "  - name: image-test\n"
            f"    url: {mount}/gitops.git\n"
            "    branch: main\n"
            "commit:\n"
            "  author_name: image-updater image test\n"
            "  author_email: image-test@image-updater.invalid\n"
            f"registries:\n{mirrors}",
            encoding="utf-8",
        )
        (work / "ready").write_text(registry.url + "\n", encoding="utf-8")
        stop.wait(900)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
