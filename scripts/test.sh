#!/usr/bin/env bash
# The whole test suite: installs what it needs (see setup.sh: the demo's packages, apache2-utils and
# openssh-server/-client, the test extras, the pinned linters), lints, type-checks, runs pytest with branch
# coverage. With no arguments the floors apply: the package above coverage's fail_under (pyproject.toml),
# each pure-core module above its floor (scripts/coverage_floor.py; docs/coverage.md). Arguments go to
# pytest (a subset of the tests): coverage is then printed, not enforced.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=setup.sh
source "$ROOT/scripts/setup.sh" test
cd "$ROOT"
echo "== ruff" >&2
ruff check image_updater tests bench scripts
echo "== mypy (strict: the package and tests/)" >&2
mypy
echo "== import contracts" >&2
lint-imports --no-cache
echo "== pytest (branch coverage)" >&2
rm -f .coverage .coverage.* coverage.json
COVERAGE=(--cov=image_updater --cov-branch --cov-report=term-missing:skip-covered --cov-report=json:coverage.json)
if [ "$#" -gt 0 ]; then COVERAGE+=(--cov-fail-under=0); fi
python -m pytest -n 2 --dist loadfile "${COVERAGE[@]}" "$@"
if [ "$#" -eq 0 ]; then
  echo "== coverage floors of the pure core" >&2
  python scripts/coverage_floor.py coverage.json
fi
