"""Is this an environment variable's *name*, or a secret pasted where the name belongs?

Settings such as ``auth.token_env``, ``http.webhook_secret_env`` and ``registries[].credentials: env:VAR``
name a variable; users sometimes paste the token itself there. Such a value must be refused without being
repeated, because every message that names the setting would otherwise carry the secret into logs, reports
and CI output. ``env_name_problem`` says what is wrong in words that never include the value.

A value is refused when it is not a name at all (``[A-Za-z_][A-Za-z0-9_]*``, at most 128 characters), and
called a secret when it starts with a known token prefix (GitHub, GitLab, Slack, Docker Hub, npm, PyPI,
AWS access keys) or when a long run of it between separators looks random (digits among letters, high
per-character entropy), as generated tokens do and variable names do not. Neither message quotes it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Mapping

__all__ = ["CONFIG_ENV", "ENV_PREFIX", "env_name_problem", "looks_like_secret", "settings_from_environment",
           "shown_env_name"]

# The settings' variables (image_updater.settings); here so that a command can tell whether the environment
# configures anything without importing pydantic.
ENV_PREFIX = "IMAGE_UPDATER_"
CONFIG_ENV = "IMAGE_UPDATER_CONFIG"


def settings_from_environment(environ: Mapping[str, str]) -> bool:
    """Does any variable of ``environ`` configure image-updater (``IMAGE_UPDATER_*``, any case)?"""
    prefix = ENV_PREFIX.lower()
    return any(name.lower().startswith(prefix) for name in environ)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONVENTIONAL = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_MAX_NAME = 128
# Case-sensitive, as the issuers print them; each is followed by many random characters.
_TOKEN_PREFIXES = (
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",  # GitHub
    "glpat-", "gldt-", "glrt-", "glptt-",  # GitLab
    "xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "xapp-",  # Slack
    "dckr_pat_", "npm_", "pypi-", "hf_", "sk-",
)
_AWS_KEY_ID = re.compile(r"(AKIA|ASIA)[0-9A-Z]{16}")
_RANDOM_RUN = 20  # characters without "_" before a run is judged on its randomness
_RANDOM_BITS = 3.0  # Shannon entropy per character above which a run counts as random
_CHANGE_SHARE = 0.35  # share of neighbouring characters of different kinds (digit, lower, upper)


def _entropy(text: str) -> float:
    counts = Counter(text)
    size = len(text)
    return -sum(n / size * math.log2(n / size) for n in counts.values())


def _kind(char: str) -> int:
    return 0 if char.isdigit() else 1 if char.islower() else 2


def _random_run(run: str) -> bool:
    # Words (REGISTRY, Password, 2024) change between digits, lower and upper case rarely; generated
    # tokens about every other character.
    if len(run) < _RANDOM_RUN:
        return False
    digits = sum(c.isdigit() for c in run)
    letters = sum(c.isalpha() for c in run)
    if digits < 2 or letters < 2 or _entropy(run) < _RANDOM_BITS:
        return False
    changes = sum(_kind(a) != _kind(b) for a, b in itertools.pairwise(run))
    return changes >= _CHANGE_SHARE * (len(run) - 1)


def looks_like_secret(value: str) -> bool:
    """True when ``value`` is more likely a token or password than an environment variable name."""
    if len(value) >= 12 and value.startswith(_TOKEN_PREFIXES):
        return True
    if len(value) > _MAX_NAME or _AWS_KEY_ID.fullmatch(value):
        return True
    return any(_random_run(run) for run in re.split(r"[^A-Za-z0-9]+", value))


def env_name_problem(value: str) -> str | None:
    """None for a usable variable name; otherwise a message that does not contain ``value``."""
    if not value:
        return "is empty; give the name of an environment variable"
    if looks_like_secret(value):
        return (
            "looks like a secret, not the name of an environment variable (the value is not repeated here); "
            "put the secret in an environment variable and give that variable's name"
        )
    if not _NAME.fullmatch(value):
        return (
            "is not an environment variable name (letters, digits and _, not starting with a digit; "
            "the value is not repeated here in case it is a secret)"
        )
    return None


def shown_env_name(name: str) -> str:
    """``name`` as a message may show it: a conventional name (``UPPER_SNAKE``, at most 64 characters, not
    secret-looking) as it is, anything else as a placeholder saying it is not shown. A token that slipped past
    ``env_name_problem`` because it happens to look like a name is then still not echoed when it is unset."""
    if _CONVENTIONAL.fullmatch(name) and not looks_like_secret(name):
        return name
    return "(name not shown: not a conventional name, perhaps a secret)"
