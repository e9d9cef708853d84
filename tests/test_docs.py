"""The docs tell the truth: the commands shown in README.md and docs/*.md are run and their shown output
compared, so that a change of behaviour (or of the docs) that makes them disagree fails here.

- console sessions (```` ```console ```` blocks of ``$ command`` lines and their output) made only of
  ``image-updater select``/``validate``, ``printf ... | image-updater select``, ``cat FILE`` and ``echo $?``
  are run in a scratch directory: a ``cat`` of a file that does not exist there writes the shown text to it
  first (it is the example's input); stdout must be exactly the shown output, stderr empty;
- README's ``printf ... | image-updater select ...    # -> TAG`` lines print TAG;
- the example files (``<!-- example: GROUP/PATH -->`` before a YAML block) are written out per group; a
  session marked ``<!-- output: GROUP: ... -->`` runs in that group's directory, one marked
  ``<!-- doctest -->`` in the repository's root (read-only commands only), and ``validate`` accepts
  every group but ``invalid`` (with ``-c config.yaml`` where the group has one), as automation.md says;
- ``validate`` accepts examples/gitops-repo and policies/;
- every flag of an ``image-updater COMMAND ...`` line or code span, and every flag in a paragraph marked
  ``<!-- flags: COMMAND... -->``, is in that command's ``--help``;
- the key tables of docs/configuration.md list exactly the settings model's fields, and every YAML block of
  the docs that is a config file loads;
- every ``IMAGE_UPDATER_...=value`` example of configuration.md's "Environment variables" is accepted,
  unless the doc says it ``gives `an error` ``, in which case loading fails with that message.

- ``plan`` outputs (``<!-- output: GROUP: plan ... -->``, a table or a diff) are run against a real
  distribution registry holding, for every field the group's files hold, its current tag and the tag the
  doc shows it moving to (built a day later); the output must be the shown one, digests aside (a test
  registry's images have digests of their own). What this cannot check is that the shown tag is the one the
  policy picks among *other* tags the prose mentions; it does check that the policy admits it over the
  current one, and every file:line, resource, container, policy, origin, skip, count and diff line.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from image_updater.cli import COMMANDS, build_parser, main
from image_updater.errors import ConfigError
from image_updater.settings import (
    AuthSettings,
    CommitSettings,
    ConcurrencySettings,
    HttpSettings,
    LogSettings,
    MigrationSettings,
    NotificationSettings,
    PullRequestSettings,
    RegistrySettings,
    Settings,
    ShardingSettings,
    SigningSettings,
    SourceSettings,
    load_settings,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent

_FENCE = re.compile(r"^( *)```(\w*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*(.*?)\s*-->\s*$")
_RUNNABLE = re.compile(
    r"(cat \S+|echo \$\?|(printf '[^']*' \| )?image-updater (select|validate)( .*)?)"
)
_COMMAND = re.compile(rf"\bimage-updater ({'|'.join(COMMANDS)})\b([^`#|]*)")
_SPAN_COMMAND = re.compile(rf"({'|'.join(COMMANDS)}) (-.*)")
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    markers: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _blocks(doc: Path) -> list[Block]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, start = len(match.group(1)), i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        markers: list[str] = []
        j = start - 1
        while j >= 0 and (found := _MARKER.match(lines[j])) is not None:
            markers.append(found.group(1))
            j -= 1
        out.append(Block(doc, start + 1, match.group(2), "\n".join(body) + "\n", markers))
        i += 1
    return out


BLOCKS = [block for doc in DOCS for block in _blocks(doc)]


def _prose(doc: Path) -> str:
    """The text of ``doc`` outside fenced blocks."""
    kept: list[str] = []
    inside = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line) or (inside and line.strip() == "```"):
            inside = not inside
            continue
        if not inside:
            kept.append(line)
    return "\n".join(kept)


def _spans(text: str) -> list[str]:
    """Markdown code spans (a span may run over a line break, which reads as a space)."""
    return [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", text)]


# -- console sessions -----------------------------------------------------------------------------------


ROOT_GROUP = "<repository>"  # <!-- doctest --> before a console block: run it in the repository's root


@dataclass
class Session:
    block: Block
    steps: list[tuple[str, str]]  # (command, shown output)
    group: str | None

    def __str__(self) -> str:
        return str(self.block)


def _sessions() -> list[Session]:
    sessions: list[Session] = []
    for block in BLOCKS:
        if block.lang != "console":
            continue
        steps: list[tuple[str, list[str]]] = []
        for line in block.text.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], []))
            elif steps:
                steps[-1][1].append(line)
        if not steps or not all(_RUNNABLE.fullmatch(command) for command, _ in steps):
            continue
        group = next((m.split(":")[1].strip() for m in block.markers if m.startswith("output:")), None)
        if "doctest" in block.markers:
            group = ROOT_GROUP
        sessions.append(Session(block, [(c, "".join(f"{o}\n" for o in out)) for c, out in steps], group))
    return sessions


SESSIONS = _sessions()


def _env(tmp: Path) -> dict[str, str]:
    # no IMAGE_UPDATER_* variable: outputs name "+ environment" when one is set; HOME holds the cache
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_UPDATER_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp / "home"),
               DOCKER_CONFIG=str(tmp / "docker"))
    return env


def _example_groups() -> dict[str, dict[str, str]]:
    groups: dict[str, dict[str, str]] = {}
    for block in BLOCKS:
        for marker in block.markers:
            if marker.startswith("example:"):
                group, _, path = marker.removeprefix("example:").strip().partition("/")
                groups.setdefault(group, {})[path] = block.text
    return groups


GROUPS = _example_groups()


def _write_group(tmp: Path, group: str) -> Path:
    root = tmp / group
    for path, text in GROUPS[group].items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    return root


def test_the_doc_test_finds_what_it_checks() -> None:
    commands = [c for s in SESSIONS for c, _ in s.steps]
    assert sum("image-updater select" in c for c in commands) >= 2
    assert sum("image-updater validate" in c for c in commands) >= 2
    assert {"annotations", "invalid", "markers", "policyfiles", "config", "fluxv2", "argocd"} <= set(GROUPS)


@pytest.mark.parametrize("session", SESSIONS, ids=str)
def test_console_session_prints_what_the_doc_shows(session: Session, tmp_path: Path) -> None:
    if session.group == ROOT_GROUP:
        cwd = ROOT  # read-only commands on the repository's own files (examples/, policies/)
    else:
        cwd = _write_group(tmp_path, session.group) if session.group else tmp_path / "work"
    cwd.mkdir(parents=True, exist_ok=True)
    env = _env(tmp_path)
    last = 0
    for command, shown in session.steps:
        if command == "echo $?":
            assert shown == f"{last}\n", f"{session.block}: exit code {last}, the doc shows {shown!r}"
            continue
        if command.startswith("cat ") and not (cwd / command[4:]).exists():
            (cwd / command[4:]).write_text(shown, encoding="utf-8")  # the example's input
        done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=60, check=False)
        last = done.returncode
        assert done.stdout == shown, f"{session.block}: `{command}` printed\n{done.stdout}"
        assert done.stderr == "", f"{session.block}: `{command}` wrote to stderr:\n{done.stderr}"


def _readme_selects() -> Iterator[tuple[str, str]]:
    for block in BLOCKS:
        for line in block.text.splitlines():
            match = re.fullmatch(r"(printf '[^']*' \| image-updater select .*?)\s+# -> (\S+)", line.strip())
            if match:
                yield match.group(1), match.group(2)


@pytest.mark.parametrize(("command", "chosen"), list(_readme_selects()))
def test_select_lines_print_the_tag_they_show(command: str, chosen: str, tmp_path: Path) -> None:
    done = subprocess.run(["bash", "-c", command], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, f"{chosen}\n"), done.stderr


# -- validate ---------------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("IMAGE_UPDATER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IMAGE_UPDATER_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_validate_accepts_every_example_but_the_invalid_one(
    group: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = _write_group(tmp_path, group)
    args = ["validate", str(root)]
    if (root / "config.yaml").exists():
        # configuration.md: its policy_dirs do not exist here, which IMAGE_UPDATER_POLICY_DIRS='[]' silences
        monkeypatch.setenv("IMAGE_UPDATER_POLICY_DIRS", "[]")
        args[1:1] = ["-c", str(root / "config.yaml")]
    code = main(args)
    out = capsys.readouterr().out
    if group == "invalid":
        assert code == 1, out
    else:
        assert (code, out.splitlines()[-1].endswith(": ok")) == (0, True), out


@pytest.mark.parametrize("path", ["examples/gitops-repo", "policies"])
def test_validate_accepts_the_shipped_examples(
    path: str, capsys: pytest.CaptureFixture[str], clean_env: None
) -> None:
    code = main(["validate", str(ROOT / path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.endswith(": ok\n")


# -- flags ------------------------------------------------------------------------------------------------


def _help_flags(command: str) -> set[str]:
    parser = build_parser(only=command)
    sub = next(a for a in parser._actions if a.dest == "command")
    assert isinstance(sub, argparse._SubParsersAction)
    return set(_FLAG.findall(sub.choices[command].format_help()))


def _flag_mentions() -> Iterator[tuple[str, str, str]]:
    """(command, flag, where) for every flag the docs give an image-updater command."""
    for doc in DOCS:
        texts = [block.text for block in _blocks(doc)] + _spans(_prose(doc))
        for text in texts:
            for line in text.splitlines():
                for match in _COMMAND.finditer(line):
                    for flag in _FLAG.findall(match.group(2)):
                        yield match.group(1), flag, f"{doc.relative_to(ROOT)}: {line.strip()[:80]}"
        for span in _spans(_prose(doc)):
            span_match = _SPAN_COMMAND.match(span)  # `run --once`, `plan --format json`
            if span_match:
                for flag in _FLAG.findall(span_match.group(2)):
                    yield span_match.group(1), flag, f"{doc.relative_to(ROOT)}: `{span}`"
        lines = doc.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines):
            marker = _MARKER.match(line)
            if marker is None or not marker.group(1).startswith("flags:"):
                continue
            paragraph: list[str] = []
            for following in lines[number + 1:]:
                if not following.strip():
                    break
                paragraph.append(following)
            # spans naming a command (`run --once`, `image-updater check IMAGE --explain`) are its own
            spans = [span for span in _spans("\n".join(paragraph))
                     if not (_SPAN_COMMAND.match(span) or _COMMAND.search(span))]
            for command in marker.group(1).removeprefix("flags:").split():
                for flag in _FLAG.findall("\n".join(spans)):
                    yield command, flag, f"{doc.relative_to(ROOT)}:{number + 1}"


def test_every_flag_the_docs_mention_exists() -> None:
    mentions = list(_flag_mentions())
    assert len(mentions) >= 20
    helps = {command: _help_flags(command) for command in COMMANDS}
    missing = [f"{where}: {command} has no {flag}" for command, flag, where in mentions
               if flag not in helps[command]]
    assert missing == []


# -- settings ---------------------------------------------------------------------------------------------

TABLES: dict[str, type[BaseModel]] = {
    "Top level": Settings, "`sources`": SourceSettings, "`sources[].auth`": AuthSettings,
    "`sources[].pull_request`": PullRequestSettings,
    "`commit`": CommitSettings, "`registries`": RegistrySettings, "`http`": HttpSettings,
    "`log`": LogSettings, "`sharding`": ShardingSettings, "`concurrency`": ConcurrencySettings,
    "`commit.signing`": SigningSettings, "`notifications`": NotificationSettings,
    "`migration`": MigrationSettings,
}


def _reference_keys() -> dict[str, list[str]]:
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    reference = text.split("\n## Reference\n", 1)[1].split("\n## ", 1)[0]
    keys: dict[str, list[str]] = {}
    for section in reference.split("\n### ")[1:]:
        title, _, body = section.partition("\n")
        keys[title.strip()] = re.findall(r"^\| `([a-z_]+)` \|", body, flags=re.MULTILINE)
    return keys


def test_reference_tables_list_exactly_the_settings() -> None:
    keys = _reference_keys()
    assert set(keys) == set(TABLES)
    for title, model in TABLES.items():
        assert sorted(keys[title]) == sorted(model.model_fields), title


def _config_blocks() -> list[Block]:
    from ruamel.yaml import YAML

    found = []
    for block in BLOCKS:
        if block.lang != "yaml":
            continue
        documents = list(YAML(typ="safe", pure=True).load_all(block.text))
        data = documents[0] if len(documents) == 1 else None
        if isinstance(data, dict) and data and set(data) <= set(Settings.model_fields):
            if isinstance(data.get("notifications"), dict):  # distribution's config.yml, not ours
                continue
            found.append(block)
    return found


@pytest.mark.parametrize("block", _config_blocks(), ids=str)
def test_config_examples_load(block: Block, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(block.text, encoding="utf-8")
    load_settings(config, env={})


BASE_CONFIG = """\
sources:
  - {name: a, url: https://git.example.com/a.git, paths: [clusters/production, clusters/test]}
  - {name: b, url: https://git.example.com/b.git}
registries:
  - {prefix: ghcr.io}
  - {prefix: quay.io}
"""
NOT_A_SETTING = {"IMAGE_UPDATER_CONFIG"}  # names the config file itself


def _env_examples() -> list[tuple[str, str, str | None]]:
    """(variable, value, the error the doc says it gives or None) from configuration.md."""
    text = _prose(ROOT / "docs" / "configuration.md")
    section = text.split("\n## Environment variables\n", 1)[1].split("\n## ", 1)[0]
    examples: list[tuple[str, str, str | None]] = []
    for match in re.finditer(r"`(IMAGE_UPDATER_\w+)=([^`]*)`(\s+gives\s+`([^`]+)`)?", section):
        value = match.group(2)
        if len(value) > 1 and value[0] == value[-1] == "'":
            value = value[1:-1]
        error = " ".join(match.group(4).split()) if match.group(4) else None
        examples.append((match.group(1), value, error))
    return examples


ENV_EXAMPLES = _env_examples()


def test_the_env_examples_are_found() -> None:
    assert len(ENV_EXAMPLES) >= 14
    assert sum(error is not None for *_, error in ENV_EXAMPLES) >= 5


@pytest.mark.parametrize(("variable", "value", "error"), ENV_EXAMPLES, ids=[e[0] for e in ENV_EXAMPLES])
def test_env_examples_do_what_the_doc_says(
    variable: str, value: str, error: str | None, tmp_path: Path
) -> None:
    if variable in NOT_A_SETTING:
        return
    config = tmp_path / "config.yaml"
    config.write_text(BASE_CONFIG, encoding="utf-8")
    if error is None:
        load_settings(config, env={variable: value})
        return
    with pytest.raises(ConfigError) as info:
        load_settings(config, env={variable: value})
    message = " ".join(str(info.value).split())
    for fragment in error.split("..."):
        assert fragment.strip(" ,") in message, f"{variable}={value}: {message}"


# -- plan outputs against a real registry holding the tags they mention ------------------------------------

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha256:[0-9a-f]{12}…")


def _plan_sessions() -> list[tuple[Block, str, str]]:
    """(block, group, command) of the ``plan`` outputs shown as a table or a diff."""
    found = []
    for block in BLOCKS:
        marker = next((m for m in block.markers if m.startswith("output:")), None)
        if block.lang != "console" or marker is None:
            continue
        _, group, command = (part.strip() for part in marker.split(":", 2))
        lines = block.text.splitlines()
        if command.startswith("plan") and len(lines) > 1 and lines[1].startswith(("FILE:LINE", "--- a/")):
            found.append((block, group, lines[0].removeprefix("$ ")))
    return found


def _diff_lines(shown: str) -> dict[str, tuple[str, str]]:
    """FILE:LINE -> (old line, new line) of a unified diff's changed lines (edits keep line numbers)."""
    changed: dict[str, tuple[str, str]] = {}
    file, number = "", 0
    removed: list[str] = []
    for line in shown.splitlines():
        if line.startswith("+++ b/"):
            file = line.removeprefix("+++ b/")
        elif line.startswith("--- a/"):
            continue
        elif (hunk := re.match(r"@@ -\d+(?:,\d+)? \+(\d+)", line)) is not None:
            number, removed = int(hunk.group(1)), []
        elif line.startswith("-"):
            removed.append(line[1:])
        elif line.startswith("+"):
            changed[f"{file}:{number}"] = (removed.pop(0) if removed else "", line[1:])
            number += 1
        else:
            removed, number = [], number + 1
    return changed


def _new_values(shown: str, targets: Any) -> dict[str, str]:
    """FILE:LINE -> the new value of each target the shown table or diff updates."""
    if shown.startswith("FILE:LINE"):
        return _rows(shown)
    changed = _diff_lines(shown)
    values: dict[str, str] = {}
    for target in targets:
        where = f"{target.file}:{target.line}"
        if where not in changed or target.part in ("name", "digest", "digest-hex"):
            continue
        before, after = changed[where]
        start = before.find(target.value)
        values[where] = after[start:start + len(target.value) + len(after) - len(before)].strip("\"'")
    return values


def _rows(shown: str) -> dict[str, str]:
    """FILE:LINE -> the NEW cell of the table's update rows."""
    rows: dict[str, str] = {}
    for line in shown.splitlines()[1:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells[4]
    return rows


def _tag_of(value: str) -> str:
    value = value.split("@", 1)[0]
    tail = value.rsplit("/", 1)[-1]
    return tail.split(":", 1)[1] if ":" in tail else tail


@pytest.mark.parametrize(("block", "group", "command"), _plan_sessions(), ids=lambda v: str(v))
def test_plan_output_is_what_the_doc_shows(
    block: Block, group: str, command: str, tmp_path: Path, registry_factory: Any
) -> None:
    from datetime import UTC, datetime, timedelta

    from image_updater.checkout import discover_directory
    from tests.servers import ImagePusher

    root = _write_group(tmp_path, group)
    shown = block.text.split("\n", 1)[1]
    discovery, _texts = discover_directory(root)
    rows = _new_values(shown, discovery.targets)
    old = datetime.now(UTC) - timedelta(days=30)
    tags: dict[tuple[str, str], dict[str, datetime]] = {}
    for target in discovery.targets:
        image = target.image
        wanted = tags.setdefault((image.registry, image.repository), {})
        wanted.setdefault(image.effective_tag, old)
        new = rows.get(f"{target.file}:{target.line}")
        if new is not None:  # the registry holds the tag the doc shows as chosen, built after the others
            wanted[_tag_of(new)] = old + timedelta(days=1)
    registry = registry_factory()
    with ImagePusher(registry.url) as pusher:
        for (_host, repository), built in tags.items():
            pusher.push_many(repository, built)
    config = tmp_path / "config.yaml"
    config.write_text("registries:\n" + "".join(
        f"  - {{prefix: {host}, api_url: '{registry.url}'}}\n" for host in sorted({h for h, _ in tags})
    ), encoding="utf-8")
    done = subprocess.run(["bash", "-c", f"{command} -c {config}"], cwd=root, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120, check=False)
    assert _DIGEST.sub("sha256:…", done.stdout) == _DIGEST.sub("sha256:…", shown), (
        f"{block}: `{command}` printed\n{done.stdout}\n{done.stderr}")
