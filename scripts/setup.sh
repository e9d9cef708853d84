#!/usr/bin/env bash
# Install what image-updater's tests and demo need on a fresh Debian/Ubuntu machine, then the project itself
# into .venv. Idempotent and quick when everything is already there. Sourced by scripts/test.sh and demo.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SUDO=""
if [ "$(id -u)" != 0 ]; then
  # apt needs root: sudo asks for a password when it must (CI runs as root and never gets here)
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: not root and no sudo: install the Debian packages listed below by hand" >&2
  fi
fi

# command -> Debian package
declare -A PKG=(
  [docker-registry]=docker-registry [htpasswd]=apache2-utils [git]=git
  [sshd]=openssh-server [ssh]=openssh-client [ssh-keygen]=openssh-client
)
missing=()
for cmd in "${!PKG[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ] && ! [ -x "/usr/bin/$cmd" ]; then
    missing+=("${PKG[$cmd]}")
  fi
done
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; raise SystemExit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY="$cand"; break
    fi
  done
fi
if [ -z "$PY" ]; then echo "setup: Python 3.11 or newer is required" >&2; exit 1; fi
if ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=("python3-venv")
fi
if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >&2
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

VENV="$ROOT/.venv"
STAMP="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if [ ! -e "$STAMP" ]; then
  echo "setup: installing image-updater and its test dependencies into .venv" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e '.[test]' >&2
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
