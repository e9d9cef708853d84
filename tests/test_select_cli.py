"""``image-updater select``: the real console script (and ``python -m image_updater``) in a subprocess.

Covers the CLI contract: tags (and RFC 3339 build times) on stdin, the chosen tag alone on stdout, exit 1 with
a message on stderr when nothing qualifies, exit 2 for an invalid policy or malformed input, the modifier
flags, and that ``select`` imports none of the heavy libraries.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from image_updater.commands.select import parse_rfc3339, read_tags
from image_updater.errors import ConfigError

SCRIPT = Path(sys.executable).with_name("image-updater")


def select(*args: str, stdin: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "image_updater"] if module else [str(SCRIPT)]
    return subprocess.run(
        [*command, "select", *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_acceptance_semver_tilde() -> None:
    result = select("semver:~1.2", stdin="1.2.3\n1.2.10\n1.3.0\nv1.2.11-rc.1\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, "1.2.10\n", "")


def test_python_dash_m_works_the_same() -> None:
    result = select("semver:~1.2", stdin="1.2.3\n1.2.10\n1.3.0\nv1.2.11-rc.1\n", module=True)
    assert (result.returncode, result.stdout) == (0, "1.2.10\n")


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("semver:~1.x.y", "invalid policy 'semver:~1.x.y': cannot parse '~1.x.y'"),
        ("semver:>=", "dangling operator '>='"),
        ("semver:", "semver needs a range"),
        ("glob:[abc", "invalid glob '[abc': unclosed '['"),
        ("regex:(", "invalid regex '('"),
        ("newest:x", "newest takes no argument"),
        ("sem:1", "unknown kind 'sem'"),
    ],
)
def test_invalid_policy_exits_2_naming_the_bad_part(policy: str, message: str) -> None:
    result = select(policy, stdin="1.0.0\n")
    assert result.returncode == 2
    assert result.stdout == ""
    assert message in result.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--min-age", "soon"], "invalid min_age 'soon'"),
        (["--exclude", "[x"], "invalid exclude glob '[x'"),
        (["--extract", "$1"], "extract needs a filter"),
        (["--filter", "^(a)", "--extract", "$2"], "filter has no group 2"),
        (["--flavour", "a b"], "invalid flavour 'a b'"),
    ],
)
def test_invalid_modifier_exits_2(flags: list[str], message: str) -> None:
    result = select("semver:*", *flags, stdin="1.0.0\n")
    assert (result.returncode, result.stdout) == (2, "")
    assert message in result.stderr


def test_no_qualifying_tag_exits_1_with_nothing_on_stdout() -> None:
    result = select("semver:~5", stdin="1.0.0\n2.0.0-rc.1\nlatest\n")
    assert (result.returncode, result.stdout) == (1, "")
    assert "no tag qualifies for semver:~5 among 3 read from stdin" in result.stderr
    assert "1 filtered" in result.stderr and "1 excluded" in result.stderr and "1 prerelease" in result.stderr


def test_empty_stdin_exits_1() -> None:
    result = select("alphabetical", stdin="")
    assert (result.returncode, result.stdout) == (1, "")
    assert "among 0 read from stdin" in result.stderr


def test_build_times_order_glob() -> None:
    stdin = (
        "main-aaa 2024-05-01T10:00:00Z\n"
        "main-bbb 2024-05-01T12:00:00+02:00\n"  # 10:00Z as well: tie, natural order decides
        "main-ccc\t2024-05-01T09:59:59.999999999Z\n"
        "pr-1 2024-06-01T00:00:00Z\n"
        "\n"
        "main-ddd\n"
    )
    result = select("glob:main-*", stdin=stdin)
    assert (result.returncode, result.stdout, result.stderr) == (0, "main-bbb\n", "")


@pytest.mark.parametrize(
    ("stdin", "line"),
    [
        ("1.0 2024-05-01T10:00:00Z\n1.1 yesterday\n", 2),
        ("1.0 2024-05-01T10:00:00\n", 1),  # no offset
        ("\n\n1.0 2024-05-01\n", 3),
        ("1.0 2024-13-01T10:00:00Z\n", 1),
        ("1.0 2024-05-01T10:00:00Z extra\n", 1),
    ],
)
def test_malformed_build_time_exits_2_naming_the_line(stdin: str, line: int) -> None:
    result = select("glob:*", stdin=stdin)
    assert (result.returncode, result.stdout) == (2, "")
    assert f"stdin line {line}: malformed build time" in result.stderr


def test_invalid_tags_on_stdin_are_never_chosen() -> None:
    result = select("alphabetical", stdin="a\nz/z\nzz+1\n" + "z" * 129 + "\n")
    assert (result.returncode, result.stdout) == (0, "a\n")


def test_crlf_input() -> None:
    result = select("numerical", stdin="9\r\n10\r\n")
    assert (result.returncode, result.stdout) == (0, "10\n")


@pytest.mark.parametrize(
    ("args", "stdin", "chosen"),
    [
        (["semver:*", "--current", "1.16-perl"], "1.27\n1.27-perl\n1.27-alpine\n1.26-perl\n", "1.27-perl"),
        (["semver:*", "--current", "v1.0"], "1.2\n1.2.0\nv1.2\nv1.2.0\n", "v1.2"),
        (["semver:*"], "1.2.4\nv1.2.4\n", "v1.2.4"),  # no current tag: the lexically greatest spelling
        (["semver:*"], "v1.2.4\n1.2.4\n", "v1.2.4"),
        (["semver:>=2.0.0-0 <3.0.0"], "2.0.0\n2.1.0-rc.1\n3.0.0-rc.1\n", "2.1.0-rc.1"),
        (["semver:*", "--flavour", "alpine"], "1.27\n1.27-alpine\n", "1.27-alpine"),
        (["semver:*", "--flavor", "any"], "1.26\n1.27-alpine\n", "1.27-alpine"),
        (["semver:*", "--prerelease"], "1.0.0\n1.1.0-rc.1\n", "1.1.0-rc.1"),
        (["semver:>=1.0.0-0", "--no-prerelease"], "1.0.0\n1.1.0-rc.1\n", "1.0.0"),
        (["semver:*", "--exclude", "1.2.*", "--exclude", "1.1.*"], "1.0.0\n1.1.0\n1.2.0\n", "1.0.0"),
        (["numerical", "--filter", "^main-[a-f0-9]+-(?P<ts>[0-9]+)", "--extract", "$ts"],
         "main-abc-100\nmain-def-99\npr-1-1000\n", "main-abc-100"),
        (["newest", "--min-age", "1h"], "a 2000-01-01T00:00:00Z\nb 2999-01-01T00:00:00Z\nc\n", "a"),
        (["digest", "--current", "latest"], "1.0\nlatest\n", "latest"),
        (["digest:stable"], "1.0\nstable\n", "stable"),
        (["regex:^v\\d+$"], "v1\nv22\nv3x\n", "v22"),
        (["alphabetical:desc"], "b\na\nc\n", "a"),
    ],
)
def test_modifier_flags(args: list[str], stdin: str, chosen: str) -> None:
    result = select(*args, stdin=stdin)
    assert (result.returncode, result.stdout, result.stderr) == (0, chosen + "\n", "")


def test_help() -> None:
    result = subprocess.run(
        [str(SCRIPT), "select", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert "--current TAG" in result.stdout and "--min-age DUR" in result.stdout


def test_select_imports_only_the_pure_core() -> None:
    code = (
        "import sys\n"
        "from image_updater.cli import main\n"
        "rc = main(['select', 'semver:~1.2', '--current', '1.2.0'])\n"
        "heavy = {'pydantic', 'pydantic_settings', 'httpx', 'git', 'ruamel', 'apscheduler', 'jinja2',"
        " 'semver', 'tenacity', 'prometheus_client'}\n"
        "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], input="1.2.3\n", capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.splitlines()[-1] == "0 []", result.stderr


# -- the stdin reader, in process


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01t10:00:00z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01 10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00.5Z", datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2024-05-01T10:00:00.123456789Z", datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-05-01T12:30:00+02:30", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T05:00:00-05:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    "text",
    [
        "", "2024-05-01", "2024-05-01T10:00:00", "2024-05-01T10:00Z", "20240501T100000Z",
        "2024-02-30T10:00:00Z", "2024-05-01T25:00:00Z", "2024-05-01T10:00:00+24:00", "2024-05-01T10:00:00.Z",
        "\uff12024-05-01T10:00:00Z",
    ],
)
def test_parse_rfc3339_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not an RFC 3339 date-time"):
        parse_rfc3339(text)


def test_read_tags() -> None:
    infos = read_tags(["1.0\n", "   \n", "1.1  2024-05-01T10:00:00+01:00  \n"])
    assert [(i.tag, i.created) for i in infos] == [
        ("1.0", None),
        ("1.1", datetime(2024, 5, 1, 10, tzinfo=timezone(timedelta(hours=1)))),
    ]
    with pytest.raises(ConfigError, match="stdin line 2"):
        read_tags(["1.0\n", "1.1 nope\n"])
