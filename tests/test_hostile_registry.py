"""Hostile registries and credential helpers cost bounded time, memory and output (trust issue: registry).

1. A registry dripping its body one byte every two seconds: that image gets an error entry naming it
   within the request bound; a healthy image on the real registry is updated in the same pass.
2. A tag list of many large ``Link`` pages: stopped at the per-repository cap (bytes or tags), error naming
   the repository, nothing cached, peak RSS of the child process bounded.
3. A ``Link`` header crafted against regex backtracking is parsed in linear time; a 96 KB header is refused.
4. ``Retry-After: 1000000000`` (or a date in year 9999) no longer silences the registry until restart.
5. A credential helper that prints its secret and fails, hangs, or floods: no secret quoted anywhere,
   bounded time and output, one run per failure however many images ask.
6. Secrets pasted where an environment variable name belongs are refused without being echoed.

The scenarios live in ``tests/hostile/registry.py`` (plain functions, also run by bench scripts); the
bounds asserted here are generous, so that only a hang or an unbounded growth breaks them.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from image_updater.envnames import env_name_problem
from image_updater.errors import RegistryError
from image_updater.registry import RegistryClient, RegistryOptions, RetryPolicy
from image_updater.registry.client import next_link
from image_updater.registry.transport import MAX_WAIT, Budget, parse_retry_after
from tests.fixtures.registry import require_registry_binary
from tests.hostile import registry as hostile


def test_a_dripping_registry_fails_its_image_within_the_bound_and_the_healthy_image_is_updated(
    tmp_path: Path,
) -> None:
    require_registry_binary()
    figures = hostile.dripping_registry(tmp_path, timeout=3.0, drip=2.0)
    # the bound is 5 s; before the deadline the pass waited 97 s for the 49-byte body and then used it
    assert figures["seconds"] < 60, figures


def test_a_tag_list_of_many_large_pages_stops_at_the_byte_cap_in_bounded_memory(tmp_path: Path) -> None:
    figures = hostile.paged_tag_flood(tmp_path, tag_length=100, tags_per_page=80_000, pages=40)
    assert figures["pages_read"] <= 10, figures  # 64 MiB of 8 MiB pages, not all 320 MiB
    # before the cap all 40 pages were kept (peak 2.3 GiB) and cached; the capped list grows it by ~150 MiB
    assert figures["rss_growth_mib"] < 400, figures
    assert figures["seconds"] < 120, figures


def test_a_tag_list_of_many_pages_stops_at_the_tag_count_cap(tmp_path: Path) -> None:
    figures = hostile.paged_tag_flood(tmp_path, tag_length=12, tags_per_page=150_000, pages=12)
    assert figures["pages_read"] <= 7, figures  # 1,000,000 tags, not 1,800,000
    assert figures["seconds"] < 120, figures


def test_link_headers_parse_in_linear_time_and_oversized_headers_are_refused(tmp_path: Path) -> None:
    figures = hostile.huge_and_quadratic_link_headers(tmp_path)
    # the regular expression this replaced blocked the event loop for minutes on that header
    assert figures["max_loop_stall_seconds"] < 10, figures
    assert figures["seconds"] < 60, figures


def test_next_link_is_linear_on_a_megabyte_of_hostile_parameters() -> None:
    started = time.monotonic()
    assert next_link("<a>; rel=" + " " * 1_000_000 + "x") is None
    assert next_link("<a>" + "; rel=" * 200_000 + ', <b>; rel="next"') == "b"
    assert next_link('<a>; title="x, rel=next", <b>; rel="nofollow"') is None
    assert next_link('<a>; title="x, y"; rel="prev next"') == "a"
    # quadratic backtracking needs hours for this; linear parsing well under a second
    assert time.monotonic() - started < 30


def test_a_redirect_loop_stops_after_five_redirects_with_a_permanent_error(tmp_path: Path) -> None:
    statuses: list[int | str] = []

    def route(method: str, target: str) -> hostile.Reply:
        hop = int(target.rsplit("hop=", 1)[1]) if "hop=" in target else 0
        return hostile.Reply(302, [("Location", f"/v2/team/app/tags/list?hop={hop + 1}")], b"x" * 1000)

    async def scenario(host: str) -> str:
        options = RegistryOptions(prefix=host, insecure=True, timeout=20)
        client = RegistryClient([options], docker_config=tmp_path / "none", retry=RetryPolicy(attempts=3),
                                on_request=lambda _registry, status: statuses.append(status))
        async with client:
            with pytest.raises(RegistryError) as caught:
                await client.list_tags(f"{host}/team/app")
            return str(caught.value)

    with hostile.HostileServer(route) as server:
        message = asyncio.run(scenario(server.host))
        log = list(server.log)
    assert message == f"registry {server.host}, image team/app: tags/list redirected more than 5 times"
    assert len(log) == 6  # the request and five redirects, not retried: a loop is permanent
    assert statuses == [302] * 6 + ["redirect_loop"]


@pytest.mark.parametrize("retry_after", ["1000000000", "Fri, 31 Dec 9999 23:59:59 GMT", "1e400"])
def test_an_absurd_retry_after_does_not_silence_the_registry_until_restart(
    retry_after: str, tmp_path: Path
) -> None:
    figures = hostile.retry_after_forever(tmp_path, retry_after=retry_after, max_wait=2.0)
    assert figures["first_pass_seconds"] < 30, figures
    assert figures["passes"] >= 2, figures  # answered by a later pass, once the capped pause expired
    assert figures["seconds_until_answered"] < 60, figures


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1000000000", MAX_WAIT), ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_WAIT), ("inf", MAX_WAIT),
     ("1e400", MAX_WAIT), ("-5", 0.0), ("30", 30.0), ("nan", None), ("soon", None),
     ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0)],
)
def test_retry_after_is_capped_at_max_wait(value: str, expected: float | None) -> None:
    assert MAX_WAIT == 300.0
    assert parse_retry_after(value) == expected


def test_a_helper_that_prints_its_secret_and_fails_is_never_quoted(tmp_path: Path) -> None:
    figures = hostile.credential_helper_leak(tmp_path)
    assert figures["seconds"] < 60, figures


def test_helpers_that_hang_or_flood_cost_bounded_time_and_output_and_run_once(tmp_path: Path) -> None:
    figures = hostile.credential_helper_hang_and_flood(tmp_path, helper_timeout=2.0)
    for name in ("hang", "flood", "counted"):
        assert figures[f"{name}_seconds"] < 60, figures


def test_secrets_where_environment_variable_names_belong_are_refused_without_echo(tmp_path: Path) -> None:
    hostile.secret_in_env_name_fields(tmp_path)


@pytest.mark.parametrize(
    "value",
    ["ghp_Zq8xK2mW9vL4nR7tY1bC5dF3gH6jP0sA1uE2", "github_pat_11ABCDEFG0_abcdefghijklmnopqrstuvwxyz0123",
     "glpat-Ab3Cd5Ef7Gh9Ij1Kl3Mn", "xoxb-1234-5678-abcdefgh", "AKIAIOSFODNN7EXAMPLE",
     "dckr_pat_Ab3Cd5Ef7Gh9Ij1Kl3Mn", "x9Kq2mVb7Tz4Lw8Nc3Rp5Hd1Fg6Js0Ya", "user:password", "a b", "1TOKEN",
     "T" * 129],
)
def test_env_name_check_refuses_secrets_and_non_names_without_quoting_them(value: str) -> None:
    problem = env_name_problem(value)
    assert problem is not None and value not in problem


@pytest.mark.parametrize(
    "value",
    ["GITHUB_TOKEN", "IMAGE_UPDATER_WEBHOOK_SECRET", "REG_CREDS", "_x", "HARBOR_ROBOT_PASSWORD_PRD01",
     "RegistryPasswordForCluster12", "GITHUBTOKENFORPRODUCTION2024V2", "AWS_SECRET_ACCESS_KEY", "ghp"],
)
def test_env_name_check_accepts_variable_names(value: str) -> None:
    assert env_name_problem(value) is None


@pytest.mark.parametrize(
    # tokens that look like names pass env_name_problem; when such a "variable" is unset, no message shows it
    "token", ["aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI", "f3a9c1d0e8b7a6c5d4e3f2a1b0c9d8e7f6a5b4c3", "Ab1" * 12],
)
def test_an_unset_variable_whose_name_looks_unconventional_is_not_echoed(
    token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from image_updater.envnames import shown_env_name
    from image_updater.errors import RegistryAuthError
    from image_updater.registry.credentials import CredentialStore

    assert shown_env_name("GITHUB_TOKEN") == "GITHUB_TOKEN"
    assert shown_env_name(token).startswith("(name not shown")
    monkeypatch.delenv(token, raising=False)
    store = CredentialStore()
    with pytest.raises(RegistryAuthError) as caught:
        asyncio.run(store._lookup("registry.example", f"env:{token}"))
    assert token not in str(caught.value) and "is not set" in str(caught.value)


def test_an_exchange_never_gets_past_the_hard_deadline_of_its_request() -> None:
    now = [100.0]
    budget = Budget(10.0, clock=lambda: now[0])
    budget.start()
    assert budget.limit() == 10.0
    now[0] = 109.0
    assert budget.limit() == 2.0  # the grace: a last attempt can still succeed
    now[0] = 111.0
    assert budget.limit() == pytest.approx(1.0)  # but never past timeout + grace
    now[0] = 113.0
    assert budget.limit() < 0
    assert Budget(1.0).grace == 1.0
