"""Shared pytest configuration: fixtures live in tests/fixtures/ and are loaded as plugins."""

pytest_plugins = [
    "tests.fixtures.registry",
    "tests.fixtures.gitserver",
    "tests.fixtures.forge",
]
