#!/usr/bin/env bash
# The whole test suite: installs what it needs (see setup.sh: the demo's packages, apache2-utils and
# openssh-server/-client, the test extras), lints, type-checks, runs pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=setup.sh
source "$ROOT/scripts/setup.sh" test
cd "$ROOT"
echo "== ruff" >&2
ruff check image_updater tests bench
echo "== mypy (strict)" >&2
mypy
echo "== import contracts" >&2
lint-imports --no-cache
echo "== pytest" >&2
exec python -m pytest -n 2 --dist loadfile "$@"
