"""The verdicts the status page shows come from the resolve step itself (``resolve(..., candidates=True)``),
against the real registry: the same answer and the same number of registry requests as without them,
bounded to ``CANDIDATES_KEPT`` per image, and for a name-ordered policy with ``min_age`` the tags whose
metadata was never fetched show as ``lower``, not as too young."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from image_updater.plan import CANDIDATES_KEPT, Resolution
from image_updater.registry import resolve
from tests.servers import ImagePusher, RegistryServer
from tests.test_registry_client import Requests, client_for, key

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def resolved(tmp_path: Path, image: str, policy: str, *, candidates: bool, **modifiers: str) -> tuple[
        Resolution, int]:
    requests = Requests()
    k = key(image, policy, "1.0.0", **modifiers)

    async def scenario() -> Resolution:
        # a fresh cache directory each time: both runs start cold
        async with client_for(tmp_path / f"run-{candidates}", on_request=requests) as client:
            return (await resolve(client, [k], now=NOW, candidates=candidates))[k]

    return asyncio.run(scenario()), requests.count


def test_verdicts_cost_no_request_and_are_bounded(registry: RegistryServer, tmp_path: Path) -> None:
    tags = [f"1.{minor}.0" for minor in range(CANDIDATES_KEPT + 5)] + ["2.0.0", "latest"]
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("team/many", tags)
    image = f"{registry.host}/team/many"
    plain, plain_requests = resolved(tmp_path, image, "semver:^1", candidates=False)
    rich, rich_requests = resolved(tmp_path, image, "semver:^1", candidates=True)
    assert plain.candidates == () and plain.considered == 0
    assert rich_requests == plain_requests
    assert (rich.tag, rich.digest) == (plain.tag, plain.digest) == (f"1.{CANDIDATES_KEPT + 4}.0", None)
    assert len(rich.candidates) == CANDIDATES_KEPT and rich.considered == len(tags)
    assert rich.candidates[0].tag == rich.tag and rich.candidates[0].status == "chosen"
    assert [c.status for c in rich.candidates[1:]] == ["lower"] * (CANDIDATES_KEPT - 1)


def test_unfetched_tags_of_a_min_age_policy_show_as_lower(registry: RegistryServer, tmp_path: Path) -> None:
    with ImagePusher(registry.url) as pusher:
        pusher.push_many("team/aged", {"1.0.0": NOW - timedelta(days=30), "1.1.0": NOW - timedelta(days=10),
                                       "1.2.0": NOW - timedelta(hours=2)})
    image = f"{registry.host}/team/aged"
    plain, plain_requests = resolved(tmp_path, image, "semver:^1", candidates=False, min_age="1d")
    rich, rich_requests = resolved(tmp_path, image, "semver:^1", candidates=True, min_age="1d")
    assert rich_requests == plain_requests and rich.tag == plain.tag == "1.1.0"
    by_tag = {c.tag: (c.status, c.reason) for c in rich.candidates}
    assert by_tag["1.1.0"][0] == "chosen"
    assert by_tag["1.2.0"][0] == "too-young"  # fetched: really too young
    assert by_tag["1.0.0"][0] == "lower" and "1.1.0" in by_tag["1.0.0"][1]  # never fetched, not "too young"
