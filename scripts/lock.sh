#!/usr/bin/env bash
# Refreshes the lock files of exact versions with hashes (requirements/*.lock) from pyproject.toml's loose
# ranges, with a pinned uv (from PyPI, in a cached venv); one universal lock for Python 3.11 serves the image
# (Linux x86_64/aarch64) and the host:
#   requirements/runtime.lock  the package's dependencies (the Dockerfile; setup.sh demo)
#   requirements/build.lock    the build backend (pyproject's [build-system] requires: hatchling)
#   requirements/test.lock     runtime + the test extra + the lint group (setup.sh test)
# Usage: ./scripts/lock.sh            keep the current pins where they still satisfy pyproject.toml
#        ./scripts/lock.sh --upgrade  newest versions within the ranges
# Then run the tests (tests/test_locks.py checks the locks against pyproject.toml) and commit the locks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV_VERSION=0.13.8
TOOLS="${XDG_CACHE_HOME:-$HOME/.cache}/image-updater-lock/uv-$UV_VERSION"
if [ ! -x "$TOOLS/bin/uv" ]; then
  python3 -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q "uv==$UV_VERSION"
fi
cd "$ROOT"
COMPILE=("$TOOLS/bin/uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes
         --no-header --annotation-style line "$@")
"${COMPILE[@]}" -o requirements/runtime.lock pyproject.toml
# the test lock starts from the runtime pins, so that both locks agree on every shared package
"${COMPILE[@]}" -o requirements/test.lock --extra test --group pyproject.toml:lint \
  --constraint requirements/runtime.lock pyproject.toml
# hatchling's requirements, from pyproject.toml's [build-system], and editables (what hatchling asks for to
# build the editable install of setup.sh, whose force-include it needs), at the test lock's versions where
# shared (setup.sh installs both into one venv)
build_in="$(mktemp)"
trap 'rm -f "$build_in"' EXIT
python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))' \
  >"$build_in"
echo editables >>"$build_in"
"${COMPILE[@]}" -o requirements/build.lock --constraint requirements/test.lock "$build_in"
# the temporary input's name would change the lock at every refresh
sed -i 's|# via -r /tmp/[^ ]*|# via pyproject.toml [build-system]|' requirements/build.lock
