"""Discovery + plan benchmark (issue 4): a generated GitOps tree of up to 10,000 manifest files (~30 MB).

About 10% of the files can hold targets: Deployments with native or Flux v1 annotations, kustomizations
with Flux setter markers, Helm values selected by policy files. The rest are what a real repository mostly
holds: ConfigMaps with long embedded text, multi-document Service files and CRDs with long descriptions.
A few policy files and Flux ImagePolicy/ImageRepository objects live under ``policies/``.

Each measurement runs in a fresh process (cold: nothing imported or cached in Python; the OS page cache is
warm, the tree having just been written or read): walk and read the files (``iter_yaml_files``), discover
(``discover_files``: prefilter, parse, find targets), then plan with the registry stubbed (every target's
tags come from a fixed table and the real policies choose). Sizes 1k/5k/10k show how the cost grows.

With ``--git`` the tree is a Git work tree (every file committed), so the walk takes its file list from
``git ls-files`` as it does in a source's working copy; without it the tree (under the ignored
``bench/.data/``) is walked as a plain directory.

Prints a table, writes ``bench/results/discover.json`` (``discover-git.json`` with ``--git``).

    .venv/bin/python bench/discover.py [--sizes 1000,5000,10000] [--runs 3] [--git]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/select.py would shadow the standard library's select module (which subprocess needs)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = ROOT / "bench" / ".data"
RESULTS = ROOT / "bench" / "results" / "discover.json"
TEAMS = ("payments", "search", "checkout", "identity", "platform", "data")
_LOREM = """
lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore
magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex ea commodo
consequat duis aute irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur excepteur sint
occaecat cupidatat non proident sunt culpa qui officia deserunt mollit anim id est laborum
"""
WORDS = tuple(_LOREM.split())
IMAGES = 60  # distinct application images across the tree


def prose(rng: random.Random, words: int, width: int = 96, indent: str = "") -> str:
    lines, line = [], []
    for _ in range(words):
        line.append(rng.choice(WORDS))
        if sum(len(w) + 1 for w in line) > width:
            lines.append(indent + " ".join(line))
            line = []
    if line:
        lines.append(indent + " ".join(line))
    return "\n".join(lines)


def image(index: int) -> str:
    return f"registry.example.com/{TEAMS[index % len(TEAMS)]}/svc-{index:03d}"


def deployment(rng: random.Random, n: int) -> str:
    img = image(n % IMAGES)
    if n % 2:
        annotations = (f"    image-updater.io/policy.app: semver:~1.{n % 7}\n"
                       "    image-updater.io/policy.sidecar: glob:stable-*\n")
    else:
        annotations = ('    fluxcd.io/automated: "true"\n'
                       f"    fluxcd.io/tag.app: semver:~1.{n % 7}\n"
                       "    fluxcd.io/tag.sidecar: glob:stable-*\n")
    env = "".join(f"            - name: SETTING_{i}\n              value: \"{rng.choice(WORDS)}-{i}\"\n"
                  for i in range(25))
    return (
        f"# Deployment of svc-{n}; owned by the {TEAMS[n % len(TEAMS)]} team\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
        f"  name: svc-{n}\n  namespace: {TEAMS[n % len(TEAMS)]}\n  labels:\n    app: svc-{n}\n"
        f"  annotations:\n{annotations}"
        "spec:\n  replicas: 3\n  selector:\n    matchLabels:\n      app: svc-{n}\n  template:\n"
        f"    metadata:\n      labels:\n        app: svc-{n}\n    spec:\n      containers:\n"
        f"        - name: app\n          image: {img}:1.{n % 7}.{n % 5}  # pinned by CI\n"
        "          ports:\n            - containerPort: 8080\n          env:\n" + env +
        "          resources:\n            requests: {cpu: 100m, memory: 128Mi}\n"
        "        - name: sidecar\n          image: registry.example.com/platform/envoy:stable-2024\n"
    )


def kustomization(rng: random.Random, n: int) -> str:
    img = image(n % IMAGES)
    patches = prose(rng, 120, indent="      # ")
    return (
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"namespace: {TEAMS[n % len(TEAMS)]}\nresources:\n  - ../../base/svc-{n}\n"
        "images:\n"
        f"  - name: {img}\n"
        f'    newTag: 1.{n % 7}.0 # {{"$imagepolicy": "flux-system:svc-{n % IMAGES:03d}:tag"}}\n'
        f"patches:\n  - patch: |\n{patches}\n      - op: add\n        path: /metadata/labels/x\n"
        "        value: y\n    target:\n      kind: Deployment\n"
    )


def values(rng: random.Random, n: int) -> str:
    img = image(n % IMAGES)
    return (
        "## Default values\n"
        f"image:\n  repository: {img}\n  tag: \"1.{n % 7}.0\"\n  pullPolicy: IfNotPresent\n"
        f"replicaCount: 2\nservice:\n  type: ClusterIP\n  port: 80\n"
        + "".join(f"## {line}\n" for line in prose(rng, 350).splitlines())
        + "resources: {}\nnodeSelector: {}\n"
    )


def configmap(rng: random.Random, n: int) -> str:
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{n}\n  namespace: default\n"
        "data:\n  application.properties: |\n" + prose(rng, 420, indent="    ") + "\n"
        f"  owner: {TEAMS[n % len(TEAMS)]}\n"
    )


def services(rng: random.Random, n: int) -> str:
    docs = []
    for i in range(6):
        docs.append(
            f"apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{n}-{i}\n  labels:\n"
            f"    app: svc-{n}\n  annotations:\n    description: \"{prose(rng, 40)}\"\n"
            "spec:\n  type: ClusterIP\n  ports:\n    - name: http\n      port: 80\n      targetPort: 8080\n"
            f"  selector:\n    app: svc-{n}\n"
        )
    return "---\n".join(docs)


def crd(rng: random.Random, n: int) -> str:
    props = "".join(
        f"                field{i}:\n                  type: string\n"
        f"                  description: >-\n{prose(rng, 45, indent='                    ')}\n"
        for i in range(7)
    )
    return (
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        f"metadata:\n  name: widgets{n}.example.com\nspec:\n  group: example.com\n  names:\n"
        f"    kind: Widget{n}\n    plural: widgets{n}\n  scope: Namespaced\n  versions:\n"
        "    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n"
        "          type: object\n          properties:\n            spec:\n              type: object\n"
        f"              properties:\n{props}"
    )


def policies() -> dict[str, str]:
    flux = []
    for i in range(IMAGES):
        flux.append(
            "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImageRepository\n"
            f"metadata:\n  name: svc-{i:03d}\n  namespace: flux-system\nspec:\n  image: {image(i)}\n---\n"
            "apiVersion: image.toolkit.fluxcd.io/v1beta2\nkind: ImagePolicy\n"
            f"metadata:\n  name: svc-{i:03d}\n  namespace: flux-system\nspec:\n"
            f"  imageRepositoryRef:\n    name: svc-{i:03d}\n  policy:\n    semver:\n      range: 1.x\n"
        )
    ours = []
    for i in range(IMAGES):
        ours.append(
            "apiVersion: image-updater.io/v1alpha1\nkind: ImagePolicy\n"
            f"metadata:\n  name: values-{i:03d}\nspec:\n  image: {image(i)}\n  policy: semver:^1\n"
            "  targets:\n    - path: apps/**/values.yaml\n"
        )
    return {"policies/flux.yaml": "---\n".join(flux), "policies/values.yaml": "---\n".join(ours)}


def generate(count: int) -> Path:
    """Write the tree for ``count`` files once (deterministic); reuse it when it exists."""
    root = DATA / f"discover-{count}"
    marker = root / ".complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(count)
    files: dict[str, str] = policies()
    n = 0
    while len(files) < count:
        slot = n % 100
        team = TEAMS[n % len(TEAMS)]
        if slot < 5:
            files[f"apps/{team}/svc-{n}/deployment.yaml"] = deployment(rng, n)
        elif slot < 8:
            files[f"apps/{team}/overlays/svc-{n}/kustomization.yaml"] = kustomization(rng, n)
        elif slot < 10:
            files[f"apps/{team}/charts/svc-{n}/values.yaml"] = values(rng, n)
        elif slot < 50:
            files[f"infra/configmaps/{team}/settings-{n}.yaml"] = configmap(rng, n)
        elif slot < 75:
            files[f"infra/services/{team}/svc-{n}.yaml"] = services(rng, n)
        else:
            files[f"crds/widgets-{n}.yaml"] = crd(rng, n)
        n += 1
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    marker.write_text("")
    return root


def make_git_tree(count: int) -> Path:
    """The tree for ``count`` files as a committed Git work tree (a copy, made once)."""
    source = generate(count)
    root = DATA / f"discover-{count}-git"
    marker = root / ".git" / "image-updater-bench-complete"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(source, root)
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com"}
    for args in (["init", "--quiet"], ["add", "--all"], ["commit", "--quiet", "-m", "bench tree"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    marker.write_text("")
    return root


def measure(root: str) -> dict[str, Any]:
    """One cold run (called in a fresh process)."""
    t0 = time.perf_counter()
    from image_updater.discover import discover_files
    from image_updater.plan import Resolution, build_plan
    from image_updater.policies import TagInfo
    from image_updater.worktree import iter_yaml_files

    t_import = time.perf_counter() - t0
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    files = dict(iter_yaml_files(Path(root)))
    t_walk = time.perf_counter() - t0
    t0 = time.perf_counter()
    discovery = discover_files(files)
    t_discover = time.perf_counter() - t0
    t0 = time.perf_counter()
    # the registry stubbed: 42 tags per image, chosen by the real policies
    tag_list = [TagInfo(f"1.{minor}.{patch}") for minor in range(8) for patch in range(5)]
    tag_list += [TagInfo("stable-2024"), TagInfo("stable-2025")]
    resolutions = {}
    for key in discovery.resolve_keys:
        chosen = key.policy.choose(tag_list, current=key.current_tag)
        resolutions[key] = Resolution(tag=chosen.tag if chosen else None)
    result = build_plan(discovery, resolutions)
    t_plan = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {
        "files": len(files), "bytes": sum(len(t.encode()) for t in files.values()),
        "parsed": discovery.files_parsed, "targets": len(discovery.targets), "updates": len(result.updates),
        "errors": len(result.errors), "skipped": len(result.skipped), "resolve_keys": len(resolutions),
        "import_s": t_import, "walk_s": t_walk, "discover_s": t_discover, "plan_s": t_plan,
        "total_s": t_walk + t_discover + t_plan, "cpu_s": cpu,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_cold(root: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--measure", str(root)], capture_output=True, text=True,
                          check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--git", action="store_true", help="make each tree a Git work tree first")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for size in sizes:
        root = make_git_tree(size) if args.git else generate(size)
        run_cold(root)  # one untimed pass: the OS page cache holds the tree, as after a git fetch
        runs = [run_cold(root) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k.endswith(("_s", "_mb"))}
        row = {**{k: runs[0][k] for k in runs[0] if not k.endswith(("_s", "_mb"))}, **med, "runs": args.runs}
        row["us_per_file"] = row["total_s"] / row["files"] * 1e6
        row["us_per_kb"] = row["total_s"] / (row["bytes"] / 1024) * 1e6
        rows.append(row)
    header = (f"{'files':>6} {'MB':>6} {'parsed':>6} {'targets':>7} {'walk s':>7} {'discover s':>10} "
              f"{'plan s':>7} {'total s':>8} {'cpu s':>6} {'µs/file':>8} {'µs/KB':>6} {'RSS MB':>7}")
    print(header)
    for r in rows:
        print(f"{r['files']:>6} {r['bytes'] / 1e6:>6.1f} {r['parsed']:>6} {r['targets']:>7} "
              f"{r['walk_s']:>7.3f} {r['discover_s']:>10.3f} {r['plan_s']:>7.3f} {r['total_s']:>8.3f} "
              f"{r['cpu_s']:>6.2f} "
              f"{r['us_per_file']:>8.1f} {r['us_per_kb']:>6.1f} {r['max_rss_mb']:>7.0f}")
    results = RESULTS.with_name("discover-git.json") if args.git else RESULTS
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({
        "benchmark": "discover-git" if args.git else "discover",
        "python": platform.python_version(), "machine": platform.machine(),
        "load_average": os.getloadavg(), "sizes": rows,
    }, indent=2) + "\n")
    print(f"wrote {results.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
