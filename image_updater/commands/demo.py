"""``image-updater demo``: one real pass on an embedded example, end to end, on this machine.

It starts the CNCF distribution registry (``docker-registry``) on a free 127.0.0.1 port, pushes example
images to it through the registry HTTP API, turns ``examples/gitops-repo`` into a local bare Git repository,
runs one pass exactly as ``image-updater run --once`` would (the example references ``nginx``, ``quay.io/…``
and ``ghcr.io/…``; the demo config points those registries at the local one with ``api_url``, the way a
pull-through mirror is configured), prints the report and the resulting commit, then cleans up.

With ``--keep`` (or ``--workdir``) everything lives in the kept directory, the registry's storage included,
and the demo ends by printing what is kept and the commands that serve and query it again.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["DEMO_CHECK", "DEMO_IMAGES", "add_arguments", "examples_dir", "kept_text", "run"]

# repository on the local registry -> tags with their age (the build time the registry reports)
DEMO_IMAGES: dict[str, dict[str, timedelta]] = {
    "weaveworks/helloworld": {  # quay.io/weaveworks/helloworld: glob:develop-v* picks the newest build
        "develop-v1.0": timedelta(days=10), "develop-v1.1": timedelta(days=5),
        "develop-v1.2": timedelta(days=1), "master-4e8c2f1": timedelta(hours=2),
    },
    "library/nginx": {  # nginx: semver:~1.25
        "1.25.3": timedelta(days=60), "1.25.4": timedelta(days=30), "1.25.4-alpine": timedelta(days=30),
        "1.26.0": timedelta(days=7),
    },
    "stefanprodan/podinfo": {  # ghcr.io/stefanprodan/podinfo: Flux ImagePolicy semver 6.5.x
        "6.5.0": timedelta(days=90), "6.5.3": timedelta(days=40), "6.5.4": timedelta(days=20),
        "6.6.0": timedelta(days=3),
    },
    "library/redis": {  # docker.io/library/redis: semver:~7.2, alpine flavour kept
        "7.2.4-alpine": timedelta(days=50), "7.2.5": timedelta(days=20), "7.2.5-alpine": timedelta(days=20),
        "7.4.0-alpine": timedelta(days=4),
    },
}


# what the printed ``image-updater check`` command asks the kept registry, and the tag it answers
DEMO_CHECK = ("nginx", "semver:~1.25", "1.25.4")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (registry storage, bare repository, config) "
                             "and print how to serve and query it again")
    parser.add_argument("--workdir", metavar="DIR", help="use DIR instead of a new temporary directory")


def examples_dir() -> Path:
    """The example repository: shipped in the wheel, or ``examples/`` of a source checkout."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here / "_examples" / "gitops-repo", here.parent / "examples" / "gitops-repo"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the example repository (examples/gitops-repo) is not installed")


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _config(work: Path, registry_url: str) -> str:
    mirrors = "".join(
        f"  - prefix: {prefix}\n    api_url: {registry_url}\n    insecure: true\n"
        for prefix in ("docker.io", "quay.io", "ghcr.io")
    )
    return (
        "# written by `image-updater demo`\n"
        f"cache_dir: {work / 'cache'}\n"
        "sources:\n"
        "  - name: demo\n"
        f"    url: {work / 'gitops.git'}\n"
        "    branch: main\n"
        "commit:\n"
        "  author_name: image-updater demo\n"
        "  author_email: demo@image-updater.invalid\n"
        "registries:  # the example's registries, served by the local registry (like a pull-through mirror)\n"
        f"{mirrors}"
    )


def kept_text(work: Path, registry_url: str, registry_binary: Path) -> str:
    """What ``--keep`` leaves behind and how to use it again (the registry's config names its storage and
    its port, which the kept ``config.yaml`` points at)."""
    tags = sum(len(tags) for tags in DEMO_IMAGES.values())
    q = shlex.quote
    image, policy, tag = DEMO_CHECK
    return (
        f"\nkept: {work}\n"
        f"  config.yaml          this demo's config: source gitops.git, registries -> {registry_url}\n"
        "  gitops.git/          the bare Git repository, the demo's commit on main\n"
        f"  registry/storage/    the registry's data: {len(DEMO_IMAGES)} repositories, {tags} tags\n"
        f"  registry/config.yml  the registry's config (that storage, {registry_url.split('://', 1)[-1]})\n"
        "  cache/               image-updater's metadata cache\n"
        "The registry is stopped. To serve the kept images again and ask it (in another terminal, or end\n"
        "the first command with &):\n"
        f"  {q(str(registry_binary))} serve {q(str(work / 'registry' / 'config.yml'))}\n"
        f"  image-updater check -c {q(str(work / 'config.yaml'))} {image} --policy {q(policy)}"
        f"    # -> {tag}\n"
        f"Remove it with: rm -rf {q(str(work))}"
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from image_updater.demo.bare import make_bare_repo
    from image_updater.demo.push import ImagePusher
    from image_updater.demo.registry import RegistryServer
    from image_updater.report import render
    from image_updater.settings import load_settings
    from image_updater.writeback import run_pass

    if shutil.which("git") is None:
        sys.stderr.write("demo: git is not installed (Debian: apt-get install git)\n")
        return 2
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="image-updater-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    keep = bool(args.keep or args.workdir)
    # A kept registry's storage lives in the kept directory; otherwise the server's own throw-away storage
    # (tmpfs where there is one) is faster and is removed when the server stops.
    storage = work / "registry" / "storage" if keep else None
    try:
        with RegistryServer(work_dir=work / "registry", storage_dir=storage) as registry:
            _say(f"1. registry: CNCF distribution on {registry.url}")
            now = datetime.now(UTC).replace(microsecond=0)
            with ImagePusher(registry.url) as pusher:
                for repository, tags in DEMO_IMAGES.items():
                    for tag, age in tags.items():
                        pusher.push(repository, tag, created=now - age)
                    _say(f"   pushed {repository}: {', '.join(tags)}")

            source = examples_dir()
            files = {
                str(p.relative_to(source)): p.read_bytes() for p in sorted(source.rglob("*")) if p.is_file()
            }
            bare = make_bare_repo(work / "gitops.git", files, message="Example GitOps repository")
            _say(f"2. git: bare repository {bare} with {len(files)} files from {source}")

            config = work / "config.yaml"
            config.write_text(_config(work, registry.url), encoding="utf-8")
            _say(f"3. one pass: image-updater run --once -c {config}\n")
            settings = load_settings(config)
            outcomes = asyncio.run(run_pass(settings))
            failed = False
            for outcome in outcomes:
                _say(render(outcome.result, "table").rstrip("\n"))
                if outcome.error:
                    _say(f"error: {outcome.error}")
                failed = failed or not outcome.ok
            head = _git("rev-parse", "main", cwd=bare).strip()
            _say("\n4. the commit on main of the bare repository:\n")
            _say(_git("show", "--no-color", "--stat", "--patch", "--format=fuller", head, cwd=bare).rstrip())
            if keep:
                _say(kept_text(work, registry.url, registry.binary))
            return 1 if failed or not any(o.pushed for o in outcomes) else 0
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
