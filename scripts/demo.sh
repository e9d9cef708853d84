#!/usr/bin/env bash
# The demo: installs what it needs and no more (see setup.sh), then one real pass on the embedded example:
# a local registry with seeded images, a local bare Git repository of example manifests, the resulting commit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=setup.sh
source "$ROOT/scripts/setup.sh" demo
exec image-updater demo "$@"
