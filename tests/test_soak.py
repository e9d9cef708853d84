"""The soak test (issue 7, part 3): not in the default suite; ``IMAGE_UPDATER_SOAK=1`` runs it.

``bench/soak.py`` runs the same ``run_soak`` and records its figures. The passes come from
``IMAGE_UPDATER_SOAK_PASSES`` (default 500) and the seed from ``IMAGE_UPDATER_SOAK_SEED``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.faults.soak import run_soak
from tests.fixtures.registry import require_registry_binary


@pytest.mark.soak
@pytest.mark.timeout(3600)
@pytest.mark.skipif(os.environ.get("IMAGE_UPDATER_SOAK") != "1", reason="set IMAGE_UPDATER_SOAK=1 to soak")
def test_soak_many_passes_with_random_faults_converge_and_lose_nothing(tmp_path: Path) -> None:
    require_registry_binary()
    passes = int(os.environ.get("IMAGE_UPDATER_SOAK_PASSES", "500"))
    report = run_soak(passes, int(os.environ.get("IMAGE_UPDATER_SOAK_SEED", "20241")), tmp_path)
    assert report.problems == [], "\n".join(report.problems)
    assert report.passes == passes
    assert sum(report.faults.values()) > 0 and report.updates_pushed > 0
    assert report.human_commits_preserved == report.human_commits > 0
