#!/usr/bin/env bash
# Builds the container image without a Docker engine and proves a pass inside it (issue 14):
#   1. installs buildah and debootstrap (Debian packages; log in .setup.log, like setup.sh's steps)
#   2. a local Python base: debootstrap --variant=minbase bookworm from this machine's Debian mirror, with
#      python3, python3-venv, a python -> python3 link and this host's CA bundle; cached as a tarball and a
#      local image, keyed by a hash of its recipe, under ${XDG_CACHE_HOME:-~/.cache}/image-updater-ci/
#   3. buildah bud of the Dockerfile, unchanged, with --build-arg PYTHON_IMAGE=<that base>; prints the sizes
#   4. inside the image, as its user 10001:10001: `image-updater version`, `validate` of the example
#      repository, and `run --once` against a registry on 127.0.0.1 and a bare Git repository on the host
#      (scripts/image_fixture.py); then checks on the host that the commit landed on main with the change.
# Run as root (buildah --isolation chroot, vfs storage). Stops what it started; exits non-zero on a failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$(id -u)" != 0 ]; then  # buildah --isolation chroot and vfs storage need root
  if command -v sudo >/dev/null; then exec sudo --preserve-env=CI,XDG_CACHE_HOME bash "$0" "$@"; fi
  echo "test-image: run as root (buildah --isolation chroot), or install sudo" >&2; exit 2
fi
# the demo's packages (docker-registry, git) and .venv with image-updater: the host side of the test
# shellcheck source=setup.sh
source "$ROOT/scripts/setup.sh" demo
cd "$ROOT"
if ! command -v buildah >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  setup_step "installing Debian packages buildah debootstrap" _setup_apt_install buildah debootstrap
fi

say() { echo "test-image: $*" >&2; }
export STORAGE_DRIVER=vfs
BUILDAH=(buildah --storage-driver vfs)
RUN=("${BUILDAH[@]}" run --isolation chroot --user 10001:10001)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/image-updater-ci"
TAG="localhost/image-updater:ci"
mkdir -p "$CACHE"
TMP="$(mktemp -d /tmp/image-updater-ci.XXXXXX)"
container="" fixture_pid=""
cleanup() {
  local status=$?
  if [ -n "$fixture_pid" ]; then kill "$fixture_pid" 2>/dev/null || true; wait "$fixture_pid" 2>/dev/null || true; fi
  if [ -n "$container" ]; then "${BUILDAH[@]}" rm "$container" >/dev/null 2>&1 || true; fi
  # the previous run's image, untagged by this build (vfs keeps full copies: ~300 MB each)
  "${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
  rm -rf "$TMP"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 2. the local base ----------------------------------------------------------------------------------
# This machine's Debian mirror (the network reaches only the mirrors configured here)
sources=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
uris=$(printf '%s\n' "$sources" | sed -nE 's/^URIs:[[:space:]]*//p; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/p')
MIRROR=$(printf '%s\n' "$uris" | grep -E '/debian/?$' | head -n1 || true)
SECURITY=$(printf '%s\n' "$uris" | grep -E '/debian-security/?$' | head -n1 || true)
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY="${SECURITY:-http://deb.debian.org/debian-security}"
CA=/etc/ssl/certs/ca-certificates.crt
RECIPE="bookworm minbase python3,python3-venv,ca-certificates python->python3 $MIRROR $SECURITY ca:$(sha256sum "$CA" | cut -c1-64) v1"
KEY=$(printf '%s' "$RECIPE" | sha256sum | cut -c1-16)
BASE="localhost/image-updater-ci-base:$KEY"
TARBALL="$CACHE/base-$KEY.tar"
if [ ! -s "$TARBALL" ]; then
  say "building the base (debootstrap --variant=minbase bookworm from $MIRROR): $TARBALL"
  _make_base() {
    local rootfs="$TMP/rootfs"
    timeout 900 debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "$MIRROR" || return 1
    ln -sf python3 "$rootfs/usr/bin/python"
    cp "$CA" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -f "$rootfs/etc/apt/sources.list"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$MIRROR" "$SECURITY" >"$rootfs/etc/apt/sources.list.d/debian.sources"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/lib/apt/lists/*
    tar --numeric-owner -C "$rootfs" -cf "$TARBALL.part" . && mv "$TARBALL.part" "$TARBALL"
    rm -rf "$rootfs"
  }
  setup_step "debootstrap of the local Python base" _make_base
fi
if ! "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
  say "importing the base as $BASE"
  c=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$c" "$TARBALL" / >/dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3 "$c"
  "${BUILDAH[@]}" commit -q --rm "$c" "$BASE" >/dev/null
fi

# --- 3. the image ---------------------------------------------------------------------------------------
say "buildah bud --build-arg PYTHON_IMAGE=$BASE -t $TAG (log: $TMP/bud.log until it ends)"
start=$(date +%s)
if ! timeout 1200 "${BUILDAH[@]}" bud --isolation chroot --layers=false --pull=never \
    --build-arg "PYTHON_IMAGE=$BASE" -t "$TAG" "$ROOT" >"$TMP/bud.log" 2>&1; then
  say "FAILED: buildah bud; the end of its log:"; tail -n 40 "$TMP/bud.log" | sed 's/^/  | /' >&2; exit 1
fi
built=$(( $(date +%s) - start ))
size_of() { "${BUILDAH[@]}" images --format '{{.Size}}' "$1" | head -n1; }
say "built in ${built}s: image $TAG $(size_of "$TAG"), base $BASE $(size_of "$BASE")"

# --- 4. inside the image, as 10001:10001 ----------------------------------------------------------------
container=$("${BUILDAH[@]}" from --pull=never "$TAG")
say "in the image: image-updater version"
timeout 120 "${RUN[@]}" "$container" -- image-updater version
say "in the image: image-updater validate /examples/gitops-repo"
timeout 120 "${RUN[@]}" -v "$ROOT/examples:/examples:ro" "$container" -- image-updater validate /examples/gitops-repo

say "host: registry on 127.0.0.1 seeded with the demo's images, bare repository of the example"
mkdir -p "$TMP/fixture"
"$ROOT/.venv/bin/python" "$ROOT/scripts/image_fixture.py" "$TMP/fixture" /ci >"$TMP/fixture.log" 2>&1 &
fixture_pid=$!
for _ in $(seq 1 120); do
  [ -e "$TMP/fixture/ready" ] && break
  kill -0 "$fixture_pid" 2>/dev/null || { say "FAILED: the fixture stopped:"; cat "$TMP/fixture.log" >&2; exit 1; }
  sleep 0.5
done
[ -e "$TMP/fixture/ready" ] || { say "FAILED: the fixture was not ready in 60 s"; cat "$TMP/fixture.log" >&2; exit 1; }
bare="$TMP/fixture/gitops.git"
chown -R 10001:10001 "$bare"
chmod 0755 "$TMP" "$TMP/fixture"
before=$(git -c safe.directory='*' -C "$bare" rev-parse main)
say "in the image: image-updater run --once (registry $(cat "$TMP/fixture/ready"))"
timeout 300 "${RUN[@]}" -v "$TMP/fixture:/ci" "$container" -- image-updater run -c /ci/config.yaml --once
after=$(git -c safe.directory='*' -C "$bare" rev-parse main)
if [ "$before" = "$after" ]; then say "FAILED: no new commit on main of $bare"; exit 1; fi
if [ "$(git -c safe.directory='*' -C "$bare" rev-parse "$after^")" != "$before" ]; then
  say "FAILED: main of $bare does not build on the seeded commit"; exit 1
fi
changed=$(git -c safe.directory='*' -C "$bare" diff "$before" "$after" -- apps/helloworld/deployment.yaml)
if ! printf '%s\n' "$changed" | grep -qE '^\+.*nginx:1\.25\.4([^0-9.-]|$)'; then
  say "FAILED: the commit does not set nginx to 1.25.4 in apps/helloworld/deployment.yaml:"
  git -c safe.directory='*' -C "$bare" show --stat "$after" >&2; exit 1
fi
say "ok: commit ${after:0:12} on main: $(git -c safe.directory='*' -C "$bare" log -1 --format=%s "$after")"
say "ok: image $TAG $(size_of "$TAG") (base $(size_of "$BASE")), built in ${built}s"
