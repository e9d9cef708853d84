"""Hostile globs, discovery errors and big YAML: each scenario as a plain function.

Every function runs its scenario, raises ``AssertionError`` when the behaviour is wrong and returns what it
measured (seconds, peak RSS in MiB, counts) as a dict. ``tests/test_hostile_globs.py`` calls them and
asserts generous bounds; ``bench/globs.py`` calls them to record the real figures. They use no pytest
fixture: whatever they need (a directory tree, a child process) they make themselves, under ``tmp``.
"""

from __future__ import annotations

import fnmatch
import json
import random
import re
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from image_updater.discover._globs import InvalidGlob, compile_path_glob
from image_updater.errors import InvalidPolicy
from image_updater.policies import TagInfo, parse_policy
from tests.hostile.measure import run_image_updater

ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------------------------------- path globs

#: (glob, path, expected): each would take exponential time in a backtracking regex (the old translation
#: into ``[^/]*`` / ``.*`` / ``(?:.*/)?`` pieces took minutes to years on them).
PATH_WORST_CASES: list[tuple[str, str, bool]] = [
    ("apps/" + "*a" * 12 + "*b.yaml", "apps/" + "a" * 200 + ".yaml", False),
    ("apps/" + "*a" * 12 + "*b.yaml", "apps/" + "a" * 200 + "b.yaml", True),
    ("apps/" + "*a" * 40 + "*b.yaml", "apps/" + "a" * 2000 + "c.yaml", False),
    ("**/" * 12 + "x.yaml", "d/" * 200 + "y.yaml", False),
    ("**/" * 12 + "x.yaml", "d/" * 200 + "x.yaml", True),
    ("**" * 12 + "x.yaml", "d/" * 200 + "y.yaml", False),
    ("**/*" * 10 + "/x.yaml", "a/" * 300 + "y.yaml", False),
    ("*?" * 30 + "!", "a" * 1000, False),
    ("**/a" + "?" * 20 + "/**", "a" * 3000, False),  # a DFA would need 2^20 states: the cache budget holds
    ("**/[!b]" * 20 + "c", "a/" * 1000 + "b", False),
]


def _timed(func: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = func()
    return value, time.perf_counter() - start


def path_globs_are_linear() -> dict[str, float]:
    """Crafted path globs against crafted paths: right answers, each match within a fraction of a second.

    Also the growth: the same glob against paths 1x, 4x and 16x as long (the ratio of the per-character
    cost; linear matching keeps it near 1).
    """
    worst = 0.0
    total = 0.0
    for glob, path, expected in PATH_WORST_CASES:
        pattern = compile_path_glob(glob)
        got, seconds = _timed(lambda p=pattern, s=path: p.matches(s))  # type: ignore[misc]
        assert got is expected, (glob, path[:60], got)
        worst = max(worst, seconds)
        total += seconds
    glob = "apps/" + "*a" * 12 + "*b.yaml"
    per_char = []
    for length in (500, 2000, 8000):
        pattern = compile_path_glob(glob)  # fresh, so each length pays for its own cache misses
        path = "apps/" + "a" * length + ".yaml"
        _, seconds = _timed(lambda p=pattern, s=path: [p.matches(s) for _ in range(5)])  # type: ignore[misc]
        per_char.append(seconds / 5 / length)
    return {
        "cases": float(len(PATH_WORST_CASES)),
        "seconds": total,
        "worst_match_s": worst,
        "growth_16x": per_char[-1] / per_char[0] if per_char[0] else 0.0,
        # 5 matches of an 8,000-character path against 12 stars: a backtracking matcher never finishes
        "long_path_s": per_char[-1] * 5 * 8000,
    }


def legacy_path_regex(glob: str) -> re.Pattern[str]:
    """The translation path globs used before (a backtracking regex): the oracle of their meaning."""
    text = glob.strip()
    while text.startswith("./"):
        text = text[2:]
    if text.startswith("/") or text == ".." or text.startswith("../") or "/../" in text:
        raise ValueError(glob)
    if text in ("", "."):
        text = "**"
    text = text.rstrip("/") or "**"
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "*":
            if text.startswith("**", i):
                j = i + 2
                if j < n and text[j] == "/":
                    out.append("(?:.*/)?")
                    i = j + 1
                else:
                    out.append(".*")
                    i = j
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = text.find("]", i + 2 if text.startswith(("[!", "[^"), i) else i + 1)
            if end < 0:
                raise ValueError(glob)
            body = text[i + 1 : end]
            if body[:1] in ("!", "^"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + "(?:/.*)?")


_GLOB_PIECES = ["a", "b", ".", "/", "*", "**", "**/", "?", "[ab]", "[!a]", "[a-c]", "[^/]", "[/]", "\\", "-"]
_PATH_CHARS = "ab./c\\-"


def path_globs_agree_with_the_old_meaning(seed: int = 0, cases: int = 20_000) -> dict[str, float]:
    """Random short globs and paths: the linear matcher says exactly what the old regex said."""
    rng = random.Random(seed)
    compared = 0
    start = time.perf_counter()
    for _ in range(cases):
        glob = "".join(rng.choice(_GLOB_PIECES) for _ in range(rng.randint(1, 6)))
        try:
            oracle = legacy_path_regex(glob)
        except (ValueError, re.error):
            continue
        try:
            pattern = compile_path_glob(glob)
        except InvalidGlob as exc:
            raise AssertionError(f"{glob!r} compiled before and is refused now: {exc}") from exc
        for _ in range(8):
            path = "".join(rng.choice(_PATH_CHARS) for _ in range(rng.randint(0, 10)))
            expected = oracle.fullmatch(path) is not None
            assert pattern.matches(path) is expected, (glob, path, expected)
            compared += 1
    return {"comparisons": float(compared), "seconds": time.perf_counter() - start}


# -------------------------------------------------------------------------------------------- tag globs

TAG = 128  # the OCI tag grammar's longest tag


def tag_globs_are_linear() -> dict[str, float]:
    """``glob:`` policies and ``exclude`` globs of many stars against 128-character tags crafted to make a
    backtracking matcher explore every split: each choice within a fraction of a second, right answers."""
    crafted = ["a" * TAG, "a" * (TAG - 1) + "c", "a" * (TAG - 1) + "b", "a" * 64 + "-" * 64,
               "ab" * (TAG // 2), "a" * (TAG - 2) + "bc", "b" + "a" * (TAG - 1)]
    many = ["*a" * 40 + f"*{i}" for i in range(45)] + ["a*-*"]  # just under MAX_EXCLUDE_CHARS
    def glob_oracle(g: str) -> Callable[[str], bool]:
        return lambda tag: fnmatch.fnmatchcase(tag, g)

    def exclude_oracle(ex: list[str]) -> Callable[[str], bool]:
        return lambda tag: not any(fnmatch.fnmatchcase(tag, g) for g in ex)

    no_modifiers: dict[str, Any] = {}
    cases: list[tuple[str, dict[str, Any], Callable[[str], bool]]] = [
        (g, no_modifiers, glob_oracle(g)) for g in [
            "*a" * 60 + "*b", "*a" * 511 + "*b", "*" * 1023 + "b", "*?" * 120 + "*b", "*[ab]" * 100 + "*c",
            "a*" * 100 + "b*c", "*" + "a" * 127 + "*", "b*" + "a?" * 63, "*a" * 127 + "*",
        ]
    ] + [
        ("", {"exclude": ex}, exclude_oracle(ex))
        for ex in (["*a" * 60 + "*c", "*a" * 60 + "*b"], many)
    ]
    worst = 0.0
    total = 0.0
    for glob, modifiers, admits in cases:
        def run(glob: str = glob, modifiers: dict[str, Any] = modifiers) -> list[bool]:
            policy = parse_policy("glob:" + glob if glob else "alphabetical", modifiers)
            return [policy.choose([TagInfo(tag)]) is not None for tag in crafted]
        got, seconds = _timed(run)
        expected = [admits(tag) for tag in crafted]
        assert got == expected, (glob[:40], str(modifiers)[:60], got, expected)
        worst = max(worst, seconds)
        total += seconds
    too_many = ["*a" * 40 + f"*{i}" for i in range(60)]  # over MAX_EXCLUDE_CHARS
    for text, modifiers in [("glob:" + "*a" * 513, {}), ("alphabetical", {"exclude": too_many})]:
        try:
            parse_policy(text, modifiers)
        except InvalidPolicy as exc:
            assert "limit" in str(exc) or "over" in str(exc), exc
        else:
            raise AssertionError(f"an over-long glob was accepted: {text[:40]}")
    return {"cases": float(len(cases)), "seconds": total, "worst_choice_s": worst}


_TAG_PIECES = ["a", "b", "-", ".", "*", "?", "[ab]", "[!a]", "[a-c]", "[-a]"]


def tag_globs_agree_with_fnmatch(seed: int = 0, cases: int = 20_000) -> dict[str, float]:
    """Random globs and tags: ``glob:`` matches exactly what ``fnmatch.fnmatchcase`` matches."""
    rng = random.Random(seed)
    compared = 0
    start = time.perf_counter()
    for _ in range(cases):
        glob = "".join(rng.choice(_TAG_PIECES) for _ in range(rng.randint(1, 7)))
        try:
            policy = parse_policy("glob:" + glob)
        except InvalidPolicy as exc:
            raise AssertionError(f"glob:{glob} refused: {exc}") from exc
        for _ in range(6):
            tag = "a" + "".join(rng.choice("ab-.c") for _ in range(rng.randint(0, 9)))
            chosen = policy.choose([TagInfo(tag)])
            assert (chosen is not None) is fnmatch.fnmatchcase(tag, glob), (glob, tag)
            compared += 1
    return {"comparisons": float(compared), "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------------------------- discovery (CLI)

def _deployment(name: str, image: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          template:
            spec:
              containers:
              - name: {name}
                image: {image}
        """)


def _policy_file(targets: list[str], name: str = "web") -> str:
    lines = "".join(f"  - path: {json.dumps(t)}\n" for t in targets)
    return (
        "apiVersion: image-updater.io/v1alpha1\nkind: ImagePolicy\nmetadata: {name: " + name + "}\n"
        f"spec:\n  image: ghcr.io/acme/web\n  policy: semver:^1\n  targets:\n{lines}"
    )


def run_cli(
    *args: str, cwd: Path, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """``image-updater ARGS`` in a child process: (result, seconds, peak RSS of the child in MiB)."""
    return run_image_updater(list(args), timeout=timeout, cwd=cwd)


def discovery_survives_hostile_globs(tmp: Path) -> dict[str, float]:
    """A tree whose policy file targets exponential globs and a bad class: ``image-updater validate`` answers
    at once, names the bad glob by policy file and line, and still finds the targets the good globs give."""
    root = tmp / "hostile-globs"
    (root / "apps").mkdir(parents=True)
    (root / "policies").mkdir()
    deep = root / Path(*["d"] * 60)
    deep.mkdir(parents=True)
    (root / "apps" / ("a" * 200 + ".yaml")).write_text(_deployment("long", "ghcr.io/acme/web:1.0.0"))
    (root / "apps" / ("a" * 200 + "b.yaml")).write_text(_deployment("longb", "ghcr.io/acme/web:1.0.0"))
    (deep / "x.yaml").write_text(_deployment("deep", "ghcr.io/acme/web:1.0.0"))
    (deep / "y.yaml").write_text(_deployment("deepy", "ghcr.io/acme/web:1.0.0"))
    hostile = ["apps/" + "*a" * 14 + "*b.yaml", "**/" * 14 + "x.yaml"]
    (root / "policies" / "web.yaml").write_text(_policy_file(hostile))
    # an invalid definition is unusable as a whole: this one is reported, the one above still works
    (root / "policies" / "bad.yaml").write_text(_policy_file(["apps/*.yaml", "apps/[z-a]*.yaml"], "bad"))
    out, seconds, peak = run_cli("validate", "--format", "json", ".", cwd=root)
    assert out.returncode == 1, out.stderr[-2000:]
    report = json.loads(out.stdout)
    errors = [(e["file"], e["line"], e["message"]) for e in report["errors"]]
    assert len(errors) == 1, errors
    file, line, message = errors[0]
    assert (file, line) == ("policies/bad.yaml", 9), errors
    assert "[z-a]" in message and "range" in message, message
    assert report["targets"] == 2, report  # apps/aaa...b.yaml and d/.../x.yaml
    return {"seconds": seconds, "peak_rss_mib": peak}


# ----------------------------------------------------------------------------------------------- big YAML

#: The memory limit of the shipped Deployment (deploy/kubernetes/base/deployment.yaml).
DEPLOYMENT_MEMORY_LIMIT_MIB = 512


def _helm_values(size: int) -> str:
    """Helm values of about ``size`` characters: one image block, then many ordinary components."""
    parts = ["image:\n  repository: ghcr.io/acme/web\n  tag: 1.0.0\n"]
    total, i = len(parts[0]), 0
    while total < size:
        part = textwrap.dedent(f"""\
            component{i}:
              enabled: true
              replicas: {i % 5}
              labels: {{team: core, tier: "backend-{i}"}}
              resources:
                limits: {{cpu: 100m, memory: 128Mi}}
              env:
              - name: SETTING_{i}
                value: "some value for setting {i}"
              # a comment, as real values files have many
            """)
        parts.append(part)
        total += len(part)
        i += 1
    return "".join(parts)


def big_yaml_is_refused_in_bounded_memory(tmp: Path) -> dict[str, float]:
    """A 10 MB flow list (5 million nodes, under the 10 MiB size cap) next to a 2 MB Helm values file, a
    5,000-document manifest stream and a small Deployment, all targeted by a policy file: ``image-updater
    validate`` (a child process) reports the flow list once, naming it and the node limit, finds the targets
    of the other three, and its peak RSS stays well below the shipped Deployment's memory limit."""
    from image_updater.yamledit import MAX_NODES, MAX_YAML_CHARS

    root = tmp / "big-yaml"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "web.yaml").write_text(_policy_file(["**"]))
    flow = "image: ghcr.io/acme/web:1.0.0\nnumbers: [" + ",".join("7" for _ in range(5_000_000)) + "]\n"
    assert len(flow) < MAX_YAML_CHARS
    (root / "flow.yaml").write_text(flow)
    values = _helm_values(2 * 1024 * 1024)
    (root / "values.yaml").write_text(values)
    stream = "---\n".join(_deployment(f"web{i}", "ghcr.io/acme/web:1.0.0") for i in range(5000))
    (root / "stream.yaml").write_text(stream)
    (root / "small.yaml").write_text(_deployment("small", "ghcr.io/acme/web:1.0.0"))
    out, seconds, peak = run_cli("validate", "--format", "json", ".", cwd=root, timeout=600)
    assert out.returncode == 1, out.stderr[-2000:]
    report = json.loads(out.stdout)
    errors = [(e["file"], e["message"]) for e in report["errors"]]
    assert errors == [("flow.yaml", f"not parsed, left untouched: refused: more than {MAX_NODES} YAML nodes "
                                    "(the limit per file)")], errors
    assert report["targets"] == 1 + 5000 + 1, report  # values.yaml, stream.yaml, small.yaml
    return {"seconds": seconds, "peak_rss_mib": peak, "limit_mib": float(DEPLOYMENT_MEMORY_LIMIT_MIB),
            "values_mib": len(values) / 2**20, "stream_documents": 5000.0}


def pure_parser_budget_holds() -> dict[str, float]:
    """A file that libyaml rejects goes to the pure-Python parser (about 100 µs a node): with more than
    ``MAX_PURE_NODES`` nodes it is refused after that many, in bounded time."""
    from image_updater.errors import YamlEditError
    from image_updater.yamledit import MAX_PURE_NODES, parse_yaml

    # libyaml refuses ``{image: nginx:1.0}`` (YAML 1.2 allows it): the pure parser takes the whole file
    text = "{image: nginx:1.0}\n---\n[" + ",".join("7" for _ in range(MAX_PURE_NODES * 3)) + "]\n"
    start = time.perf_counter()
    try:
        parse_yaml(text, filename="pure.yaml")
    except YamlEditError as exc:
        message = str(exc)
    else:
        raise AssertionError("a file over the pure parser's node budget was composed")
    seconds = time.perf_counter() - start
    assert message == (f"pure.yaml: refused: more than {MAX_PURE_NODES} YAML nodes "
                       "(the limit per file for the pure-Python parser)"), message
    return {"seconds": seconds, "nodes_offered": float(MAX_PURE_NODES * 3)}


#: the scenarios that need a directory (``bench/globs.py`` runs them all)
TREE_SCENARIOS = ("big_yaml_is_refused_in_bounded_memory",)
