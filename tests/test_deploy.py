"""The deployment files: Kubernetes manifests, the systemd unit and the Dockerfile.

The kustomize base and the example overlay are built with ``kubectl kustomize`` (when kubectl is present,
else each resource file is read on its own) and validated offline against the Kubernetes OpenAPI schema of
recent versions in strict mode (unknown fields are errors); a deliberately broken copy proves the check
bites. The properties the deployment depends on are checked on the built objects (one replica, Recreate,
non-root, read-only root, writable HOME, cache and /tmp, probes, resources, no service account token, no
RBAC), and the embedded config files load with the real settings loader and agree with the manifests. The
unit passes ``systemd-analyze verify`` without a single warning; the Dockerfile has the instructions a
correct image needs.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from image_updater.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "example"
UNIT = ROOT / "deploy" / "systemd" / "image-updater.service"
ENV_EXAMPLE = ROOT / "deploy" / "systemd" / "image-updater.env.example"
DOCKERFILE = ROOT / "Dockerfile"

K8S_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
SECRETS_ENV = {"GIT_TOKEN": "t0ken", "WEBHOOK_SECRET": "0123456789abcdef0123456789abcdef"}


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects the kustomization produces (a fresh copy each call)."""
    return copy.deepcopy(_kustomize(directory))


@functools.cache
def _kustomize(directory: Path) -> list[dict[str, Any]]:
    """Built by ``kubectl kustomize``; without kubectl, the resources and generator files as read."""
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        out = subprocess.run(
            [kubectl, "kustomize", str(directory)], check=True, capture_output=True, text=True, timeout=60
        ).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]
    return _read_kustomization(directory)


def _read_kustomization(directory: Path) -> list[dict[str, Any]]:
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kust.get("resources", []):
        path = directory / resource
        if path.is_dir():
            docs.extend(_read_kustomization(path))
        else:
            docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    for gen in kust.get("configMapGenerator", []):
        data = {Path(f).name: (directory / f).read_text() for f in gen.get("files", [])}
        docs = [d for d in docs if not (d["kind"] == "ConfigMap" and d["metadata"]["name"] == gen["name"])]
        docs.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data}
        )
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module", params=["base", "overlay"])
def built(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return kustomize(BASE if request.param == "base" else OVERLAY)


# -- schema -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schema(built: list[dict[str, Any]], version: str) -> None:
    assert built
    for doc in built:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_secret_examples_validate_and_match_what_the_deployment_reads(version: str) -> None:
    secrets = [d for d in yaml.safe_load_all((BASE / "secrets.example.yaml").read_text()) if d]
    for doc in secrets:
        kubernetes_validate.validate(doc, version, strict=True)
    keys = {s["metadata"]["name"]: set(s["stringData"]) for s in secrets}
    pod = one(kustomize(BASE), "Deployment")["spec"]["template"]["spec"]
    referenced: dict[str, set[str]] = {}
    for env in pod["containers"][0]["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            referenced.setdefault(ref["name"], set()).add(ref["key"])
    for volume in pod["volumes"]:
        if "secret" in volume:
            referenced.setdefault(volume["secret"]["secretName"], set())
    assert set(referenced) == set(keys)
    for name, wanted in referenced.items():
        assert wanted <= keys[name], name
    # the config's webhook secret variable and the SSH paths fit the example Secrets
    assert keys["image-updater-ssh"] == {"id_ed25519", "known_hosts"}
    assert keys["image-updater-registry"] == {"config.json"}


def test_the_schema_check_catches_mistakes() -> None:
    deployment = one(kustomize(BASE), "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, K8S_VERSIONS[-1], strict=True)


# -- what the deployment relies on ------------------------------------------------------------------------


def _config(docs: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    cm = [c for c in by_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("image-updater-config")]
    assert len(cm) == 1
    text = cm[0]["data"]["config.yaml"]
    return text, yaml.safe_load(text)


def test_deployment_shape(built: list[dict[str, Any]]) -> None:
    deployment = one(built, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    container = pod["containers"][0]
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] is True
    assert sec["allowPrivilegeEscalation"] is False
    assert sec["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    # the stop grace period (--grace-period + the 15 s exit margin) fits in the pod's termination period
    args = container["args"]
    grace = float(args[args.index("--grace-period") + 1])
    assert pod["terminationGracePeriodSeconds"] > grace + 15

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    writable = {
        path
        for path, name in mounts.items()
        if "emptyDir" in volumes[name] or "persistentVolumeClaim" in volumes[name]
    }
    env = {e["name"]: e.get("value") for e in container["env"]}
    home = env["HOME"]
    assert any(home == w or home.startswith(w.rstrip("/") + "/") for w in writable), "HOME must be writable"
    assert "/tmp" in writable

    _, config = _config(built)
    assert mounts[config["cache_dir"]] == "cache" and config["cache_dir"] in writable
    assert mounts["/etc/image-updater/config.yaml"] == "config"
    assert args[:3] == ["run", "-c", "/etc/image-updater/config.yaml"]
    # the container port is the one the config listens on, on all interfaces
    port = container["ports"][0]
    assert config["http"]["listen"] == f"0.0.0.0:{port['containerPort']}"
    service = one(built, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    # registry credentials: DOCKER_CONFIG points at the mounted config.json Secret
    assert mounts[env["DOCKER_CONFIG"]] == "docker-config"

    sa = one(built, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    rbac = [d for d in built if d["apiVersion"].startswith("rbac.authorization.k8s.io")]
    assert rbac == [], "image-updater needs no Kubernetes API permissions"


def test_the_embedded_configs_load(built: list[dict[str, Any]], tmp_path: Path) -> None:
    text, _ = _config(built)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    settings = load_settings(path, env=SECRETS_ENV)
    assert settings.sources
    secret_env = settings.http.webhook_secret_env
    pod = one(built, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env_names = {e["name"] for e in container["env"]}
    assert secret_env in env_names
    for source in settings.sources:
        if source.auth.token_env:
            assert source.auth.token_env in env_names
        for file in (source.auth.ssh_key_file, source.auth.known_hosts):
            if file is not None:
                assert str(file).startswith("/etc/image-updater/ssh/")


def test_overlay_uses_a_persistent_cache_and_its_own_image() -> None:
    docs = kustomize(OVERLAY)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    cache = next(v for v in pod["volumes"] if v["name"] == "cache")
    claim = one(docs, "PersistentVolumeClaim")
    assert cache == {"name": "cache", "persistentVolumeClaim": {"claimName": claim["metadata"]["name"]}}
    assert pod["containers"][0]["image"] == "registry.example.com/platform/image-updater:0.1.0"
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"image-updater"}
    ingress = one(docs, "Ingress")
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == ["/webhook"], "only the webhook is exposed outside the cluster"


# -- systemd --------------------------------------------------------------------------------------------


def unit_directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_unit_hardening_and_command() -> None:
    d = unit_directives()
    assert d["ExecStart"] == ["/usr/local/bin/image-updater run -c /etc/image-updater/config.yaml"]
    for key, value in {
        "DynamicUser": "yes",
        "StateDirectory": "image-updater",
        "CacheDirectory": "image-updater",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "KillMode": "mixed",
        "RestartPreventExitStatus": "2",
    }.items():
        assert d[key] == [value], key
    assert d["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert "@system-service" in d["SystemCallFilter"]
    assert d["EnvironmentFile"] == ["/etc/image-updater/image-updater.env"]
    timeout = int(d["TimeoutStopSec"][0].rstrip("s"))
    assert timeout > 30 + 15  # the default grace period plus the exit margin


def test_env_example_names_what_the_configs_use() -> None:
    names = {m.group(1) for m in re.finditer(r"^#?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M)}
    assert {"GIT_TOKEN", "WEBHOOK_SECRET"} <= names


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("with_credentials", [False, True], ids=["as-shipped", "credentials-enabled"])
def test_systemd_analyze_verify(tmp_path: Path, with_credentials: bool) -> None:
    # verify insists that ExecStart's program exists: point it at this checkout's entry point
    program = shutil.which("image-updater", path=str(ROOT / ".venv" / "bin")) or shutil.which("image-updater")
    if program is None:
        pytest.skip("no image-updater entry point installed")
    text = UNIT.read_text().replace("/usr/local/bin/image-updater", program)
    if with_credentials:
        text = re.sub(r"^#(LoadCredential=|Environment=DOCKER_CONFIG)", r"\1", text, flags=re.M)
    unit = tmp_path / "image-updater.service"
    unit.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 even for unknown keys: any output at all is a finding
    assert result.returncode == 0 and result.stderr.strip() == "" and result.stdout.strip() == "", (
        result.stdout + result.stderr
    )


# -- Dockerfile ----------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert current == "", "dangling line continuation"
    result = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        assert keyword.isupper(), line
        result.append((keyword, args.strip()))
    return result


def test_dockerfile_is_multi_stage_non_root_with_git_and_ssh() -> None:
    instructions = dockerfile_instructions()
    known = {
        "ARG",
        "FROM",
        "ENV",
        "WORKDIR",
        "COPY",
        "RUN",
        "USER",
        "EXPOSE",
        "HEALTHCHECK",
        "ENTRYPOINT",
        "CMD",
    }
    assert {k for k, _ in instructions} <= known
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in instructions if k == "ARG" and "=" in a}
    froms = [a for k, a in instructions if k == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build")
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["PYTHON_IMAGE"])

    runtime = instructions[[i for i, (k, _) in enumerate(instructions) if k == "FROM"][1] :]
    runs = " ".join(a for k, a in runtime if k == "RUN")
    installed = re.search(r"apt-get install (.*?)(&&|$)", runs)
    assert installed is not None
    assert {"git", "openssh-client", "ca-certificates"} <= set(installed.group(1).split())
    assert "rm -rf /var/lib/apt/lists/*" in runs
    assert any(k == "COPY" and a.startswith("--from=build ") for k, a in runtime)
    users = [a for k, a in runtime if k == "USER"]
    assert len(users) == 1 and users[0].split(":")[0] not in ("0", "root")
    uid = users[0].split(":")[0]
    assert f"--uid {uid}" in runs
    # the Kubernetes manifests run as the same uid the image creates
    pod = one(kustomize(BASE), "Deployment")["spec"]["template"]["spec"]
    assert str(pod["securityContext"]["runAsUser"]) == uid

    entrypoint = json.loads(next(a for k, a in runtime if k == "ENTRYPOINT"))
    assert entrypoint[-1] == "image-updater"
    assert json.loads(next(a for k, a in runtime if k == "CMD")) == [
        "run",
        "-c",
        "/etc/image-updater/config.yaml",
    ]
    env = " ".join(a for k, a in runtime if k == "ENV")
    assert "PATH=/opt/image-updater/bin:$PATH" in env and "HOME=" in env

    # what the build stage copies exists and is not excluded by .dockerignore
    build = instructions[: [i for i, (k, _) in enumerate(instructions) if k == "FROM"][1]]
    copied = [p for k, a in build if k == "COPY" for p in a.split()[:-1]]
    # the locks first (a layer of the dependencies that survives changes of the code), then the project
    assert copied[:2] == ["requirements/runtime.lock", "requirements/build.lock"]
    assert copied[2:5] == ["pyproject.toml", "README.md", "image_updater"]
    build_runs = " ".join(a for k, a in build if k == "RUN")
    assert "--require-hashes --no-deps -r requirements/runtime.lock" in build_runs
    # everything the wheel build force-includes must be in the build context too
    import tomllib

    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert set(wheel.get("force-include", {})) <= set(copied)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for path in copied:
        assert (ROOT / path).exists()
        assert f"!{path}" in ignore or f"!{path}/" in ignore


# -- the sharded overlay: a StatefulSet of 3 -------------------------------------------------------------

SHARDED = K8S / "overlays" / "sharded"


def sharded() -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:  # the JSON patch turning the Deployment into a StatefulSet needs it
        pytest.skip("kubectl is not installed (no Debian package has it): the sharded overlay's patch that "
                    "turns the Deployment into a StatefulSet needs `kubectl kustomize` to be applied")
    return kustomize(SHARDED)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_sharded_overlay_validates_against_the_kubernetes_schema(version: str) -> None:
    docs = sharded()
    assert {d["kind"] for d in docs} >= {"StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_sharded_overlay_runs_three_replicas_that_agree_with_the_config(tmp_path: Path) -> None:
    from image_updater.daemon import resolve_shard
    from image_updater.sharding import owner

    docs = sharded()
    assert by_kind(docs, "Deployment") == []
    sts = one(docs, "StatefulSet")
    spec = sts["spec"]
    assert spec["replicas"] == 3 and spec["podManagementPolicy"] == "Parallel"
    namespace = sts["metadata"]["namespace"]
    headless = next(s for s in by_kind(docs, "Service") if s["metadata"]["name"] == spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    labels = spec["template"]["metadata"]["labels"]
    assert headless["spec"]["selector"].items() <= labels.items()
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    field = env["IMAGE_UPDATER_SHARD_ORDINAL"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.labels['apps.kubernetes.io/pod-index']"
    # the cache: one claim per pod, not a volume every pod would share
    assert "cache" not in {v["name"] for v in pod["volumes"]}
    assert [c["metadata"]["name"] for c in spec["volumeClaimTemplates"]] == ["cache"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}

    text, config = _config(docs)
    assert mounts["cache"] == config["cache_dir"]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    settings = load_settings(path, env={**SECRETS_ENV})
    assert settings.sharding.replicas == spec["replicas"]
    port = container["ports"][0]["containerPort"]
    name = sts["metadata"]["name"]
    assert settings.sharding.peers == [
        f"http://{name}-{k}.{headless['metadata']['name']}.{namespace}.svc:{port}" for k in range(3)
    ]
    # each pod finds its ordinal by the label or, on clusters before 1.28, by its hostname
    for k in range(3):
        assert resolve_shard(settings, {"IMAGE_UPDATER_SHARD_ORDINAL": str(k)}, "ignored") == (k, 3)
        assert resolve_shard(settings, {"IMAGE_UPDATER_SHARD_ORDINAL": ""}, f"{name}-{k}") == (k, 3)
    assert {owner(s.name, 3) for s in settings.sources} <= {0, 1, 2}
