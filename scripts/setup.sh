#!/usr/bin/env bash
# Install what image-updater needs on a fresh Debian/Ubuntu machine, then the project itself into .venv.
# Sourced by scripts/demo.sh (`source setup.sh demo`) and scripts/test.sh (`source setup.sh test`, also the
# default):
#   demo: Debian packages docker-registry, git (python3-venv when venv is missing); the project without extras
#   test: also apache2-utils, openssh-server, openssh-client, gnupg (signed commits), chromium (the status page's browser tests); the project with its test extras and the
#         pinned `lint` dependency group (ruff, mypy, import-linter: pyproject.toml [dependency-groups])
# The Python packages come from the locks, exact versions with hashes: requirements/runtime.lock (demo) or
# test.lock (test), with build.lock (hatchling); scripts/lock.sh refreshes them.
# Idempotent: prints nothing when everything is there. Otherwise one line per step on stderr; the installers'
# output goes to .setup.log, whose end is shown only when a step fails (then the script exits non-zero).
# openssh-server is installed without starting or enabling a system sshd: the tests start their own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SETUP_FOR="${1:-test}"
case "$SETUP_FOR" in
  demo | test) ;;
  *) echo "setup: usage: source scripts/setup.sh [demo|test]" >&2; exit 2 ;;
esac
SETUP_LOG="$ROOT/.setup.log"
_setup_log_started=""

# setup_step MESSAGE COMMAND...: one progress line, the command's output into the log, its tail on failure.
setup_step() {
  local message="$1"; shift
  if [ -z "$_setup_log_started" ]; then
    : >"$SETUP_LOG"
    _setup_log_started=1
  fi
  echo "setup: $message (log: .setup.log)" >&2
  printf '== %s\n' "$message" >>"$SETUP_LOG"
  if ! "$@" </dev/null >>"$SETUP_LOG" 2>&1; then
    echo "setup: FAILED: $message; the end of $SETUP_LOG:" >&2
    tail -n 40 "$SETUP_LOG" | sed 's/^/  | /' >&2
    exit 1
  fi
}

SUDO=()
if [ "$(id -u)" != 0 ]; then SUDO=(sudo); fi

# command -> Debian package
declare -A PKG=([docker-registry]=docker-registry [git]=git)
if [ "$SETUP_FOR" = test ]; then
  PKG+=([htpasswd]=apache2-utils [sshd]=openssh-server [ssh]=openssh-client [ssh-keygen]=openssh-client
        [chromium]=chromium [gpg]=gnupg)
fi
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
if [ ! -x "$ROOT/.venv/bin/python" ] && ! "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=("python3-venv")
fi

# Installs the packages with a temporary policy-rc.d that forbids starting services (invoke-rc.d and
# deb-systemd-invoke honour it), removed afterwards; a policy-rc.d the machine already has is left alone.
# A freshly installed openssh-server is then disabled too, so no system sshd starts at the next boot.
POLICY_RC_D=/usr/sbin/policy-rc.d
_setup_apt_install() {
  local ours="" status=0
  if [ ! -e "$POLICY_RC_D" ]; then
    printf '#!/bin/sh\n# written by image-updater scripts/setup.sh for one apt-get install; removed after it\nexit 101\n' |
      "${SUDO[@]}" tee "$POLICY_RC_D" >/dev/null && "${SUDO[@]}" chmod 755 "$POLICY_RC_D" && ours=1 || return 1
  fi
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
    echo "setup: apt-get update failed; trying the install with the package lists there are"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" || status=$?
  if [ -n "$ours" ]; then "${SUDO[@]}" rm -f "$POLICY_RC_D" || status=1; fi
  if [ "$status" = 0 ] && [[ " $* " == *" openssh-server "* ]] && command -v systemctl >/dev/null 2>&1; then
    # Debian names the units ssh.service and ssh.socket (one at a time: a missing unit fails the command);
    # disabling works without a running systemd too.
    "${SUDO[@]}" systemctl disable ssh.service || true
    "${SUDO[@]}" systemctl disable ssh.socket || true
  fi
  return "$status"
}

if [ "${#missing[@]}" -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [ "${#SUDO[@]}" -gt 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      echo "setup: not root and no sudo: install these Debian packages, then run this again: ${missing[*]}" >&2
      exit 1
    fi
    # Ask for the password (when sudo needs one) here, on the terminal, not inside the logged step.
    if ! sudo -n true 2>/dev/null && ! sudo -v; then
      echo "setup: sudo failed: run as root, or install these Debian packages first: ${missing[*]}" >&2
      exit 1
    fi
  fi
  setup_step "installing Debian packages ${missing[*]}" _setup_apt_install "${missing[@]}"
fi

# The stamp names what is installed: the project alone (demo) or with its test extras (test), for this
# pyproject.toml. The test stamp satisfies the demo; the demo's makes test.sh install the test extras.
VENV="$ROOT/.venv"
HASH="$(cat "$ROOT/pyproject.toml" "$ROOT"/requirements/*.lock | sha256sum | cut -c1-16)"
_setup_venv() {
  local lock="$1" stamp="$2"
  if [ ! -x "$VENV/bin/python" ]; then "$PY" -m venv "$VENV" || return 1; fi
  # exact versions with hashes (requirements/*.lock, refreshed by scripts/lock.sh), then the project itself
  # built by the locked hatchling
  "$VENV/bin/python" -m pip install --require-hashes --no-deps -r "$ROOT/requirements/$lock" \
      -r "$ROOT/requirements/build.lock" &&
    "$VENV/bin/python" -m pip install --no-deps --no-build-isolation -e "$ROOT" &&
    rm -f "$VENV"/.installed-* &&
    touch "$stamp"
}
if [ "$SETUP_FOR" = test ]; then
  if [ ! -e "$VENV/.installed-test-$HASH" ]; then
    setup_step "installing image-updater, its test dependencies and the pinned linters into .venv" \
      _setup_venv test.lock "$VENV/.installed-test-$HASH"
  fi
elif [ ! -e "$VENV/.installed-test-$HASH" ] && [ ! -e "$VENV/.installed-demo-$HASH" ]; then
  setup_step "installing image-updater into .venv" _setup_venv runtime.lock "$VENV/.installed-demo-$HASH"
fi
export PATH="$VENV/bin:$PATH"
