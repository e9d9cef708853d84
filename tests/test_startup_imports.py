"""What ``image-updater plan`` imports, checked in a fresh interpreter (issue 16: start-up of ``plan``), and
what it leaves to the cyclic collector.

A tree without targets asks no registry, so neither pydantic-settings nor httpx may be loaded for it when
nothing configures image-updater; a config file or an ``IMAGE_UPDATER_*`` variable still loads and validates
the settings, and a tree with targets still goes through the registry layer. Behaviour only: no timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import json, sys
from image_updater.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("pydantic", "pydantic_settings", "httpx", "httpcore", "anyio", "h11",
                           "importlib.metadata", "image_updater.registry", "image_updater.settings",
                           "httpx._main", "click", "rich", "shutil")
               if sys.modules.get(m))
print(json.dumps({"code": code, "heavy": heavy}))
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    image-updater.io/policy: semver:^1
spec:
  template:
    spec:
      containers:
        - name: web
          image: 127.0.0.1:9/acme/web:1.0.0
"""


def probe(*args: str, env: dict[str, str] | None = None, cwd: Path) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("IMAGE_UPDATER_")}
    clean.update(env or {})
    clean["HOME"] = str(cwd)  # the default cache_dir, should a registry be asked
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=clean,
                          cwd=cwd, timeout=60, check=False)
    assert done.stdout, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def test_plan_of_an_empty_tree_imports_no_settings_and_no_http(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    result = probe("plan", "--format", "json", str(tmp_path / "tree"), cwd=tmp_path)
    assert result["code"] == 0, result["stderr"]
    assert result["heavy"] == []


def test_the_environment_still_configures_and_is_validated(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    result = probe("plan", str(tmp_path / "tree"), env={"IMAGE_UPDATER_INTERVAL": "0s"}, cwd=tmp_path)
    assert result["code"] == 2
    assert "interval" in str(result["stderr"])
    result = probe("plan", str(tmp_path / "tree"), env={"IMAGE_UPDATER_LOG__LEVEL": "debug"}, cwd=tmp_path)
    assert result["code"] == 0, result["stderr"]
    assert "image_updater.settings" in list(result["heavy"])  # type: ignore[call-overload]


def test_a_config_file_is_read_and_validated(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    config = tmp_path / "config.yaml"
    config.write_text("policy_dirs: [/nonexistent/policies]\n")
    result = probe("plan", "-c", str(config), "--format", "json", str(tmp_path / "tree"), cwd=tmp_path)
    assert result["code"] == 1  # the policy_dirs entry is reported as an error entry
    assert "policy_dirs entry is not a directory" in str(result["stderr"])
    # validated by image_updater.settings, a plain pydantic model: pydantic-settings is not loaded
    heavy = list(result["heavy"])  # type: ignore[call-overload]
    assert "image_updater.settings" in heavy and "pydantic" in heavy and "pydantic_settings" not in heavy
    # pydantic's plugin loader is answered with none: no entry-point scan, no importlib.metadata
    assert "importlib.metadata" not in heavy


def test_a_tree_with_targets_asks_the_registry_without_httpx_httpcore_or_anyio(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "web.yaml").write_text(DEPLOYMENT)
    # port 9 (discard) on loopback: nothing listens, the image's entry is an error
    result = probe("plan", "--format", "json", str(tmp_path / "tree"), cwd=tmp_path)
    assert result["code"] == 1
    heavy = list(result["heavy"])  # type: ignore[call-overload]
    assert "h11" in heavy and "image_updater.registry" in heavy and "image_updater.settings" in heavy
    # the registry client speaks HTTP/1.1 itself (registry/http11.py, on h11): no httpx client (nor its CLI),
    # no httpcore pool, no anyio on the plan path
    assert "httpx" not in heavy and "httpcore" not in heavy and "anyio" not in heavy
    # nor shutil (with bz2 and lzma): argparse's formatters and tempfile would import it
    assert "shutil" not in heavy
    assert "pydantic_settings" not in heavy
    assert "httpx._main" not in heavy and "click" not in heavy and "rich" not in heavy


GC_PROBE = """
import gc, json, sys
from image_updater import cli
before = gc.get_threshold()[0]
seen = []
real = cli._main
def spy(args, first):
    seen.append(gc.get_threshold()[0])
    return real(args, first)
cli._main = spy
try:
    code = cli.main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "before": before, "during": seen[0], "after": gc.get_threshold()[0]}))
"""


def gc_probe(*args: str, cwd: Path) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", GC_PROBE, *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60, check=False)
    assert done.stdout, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_one_shot_commands_collect_cycles_less_often_and_the_daemon_keeps_the_default(tmp_path: Path) -> None:
    from image_updater.cli import ONE_SHOT_GC_THRESHOLD

    (tmp_path / "tree").mkdir()
    plan = gc_probe("plan", str(tmp_path / "tree"), cwd=tmp_path)
    default = plan["before"]
    assert isinstance(default, int) and default < ONE_SHOT_GC_THRESHOLD
    assert plan == {"code": 0, "before": default, "during": ONE_SHOT_GC_THRESHOLD, "after": default}
    version = gc_probe("version", cwd=tmp_path)
    assert version == {"code": 0, "before": default, "during": ONE_SHOT_GC_THRESHOLD, "after": default}
    daemon = gc_probe("run", "--help", cwd=tmp_path)  # argparse exits after printing the help
    assert daemon == {"code": 0, "before": default, "during": default, "after": default}


FREEZE_PROBE = """
import gc, json, sys
from image_updater import cli
from image_updater.commands import _oneshot
import image_updater.commands.plan as plan_command
seen = []
real = plan_command.plan_path
def spy(*args, **kwargs):
    try:
        return real(*args, **kwargs)
    finally:
        seen.append(gc.get_freeze_count())
plan_command.plan_path = spy
_oneshot.settle()  # outside a one-shot main(): nothing is frozen
outside = gc.get_freeze_count()
code = cli.main(sys.argv[1:])  # a caller in the same process: unfrozen on return
after_argv = gc.get_freeze_count()
program = cli.main()  # as the program: left frozen, the process ends next
print(json.dumps({"outside": outside, "codes": [code, program], "during": seen,
                  "after_argv": after_argv, "after_program": gc.get_freeze_count()}))
"""


def test_one_shot_commands_freeze_what_their_imports_left_and_callers_get_it_back(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "web.yaml").write_text(DEPLOYMENT)
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("IMAGE_UPDATER_")}
    clean["HOME"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", FREEZE_PROBE, "plan", "--format", "json",
                           str(tmp_path / "tree")], capture_output=True, text=True, env=clean, cwd=tmp_path,
                          timeout=60, check=False)
    assert done.stdout, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["outside"] == 0
    assert result["codes"] == [1, 1]  # port 9: the image's entry is an error
    during = result["during"]
    assert len(during) == 2 and all(count > 1000 for count in during)  # modules, classes, settings
    assert result["after_argv"] == 0
    assert result["after_program"] > 1000


def test_plan_of_a_tree_without_targets_starts_no_event_loop(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    code = ("import sys\nfrom image_updater.cli import main\ncode = main(sys.argv[1:])\n"
            "print(code, 'asyncio' in sys.modules, 'ssl' in sys.modules)")
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("IMAGE_UPDATER_")}
    done = subprocess.run([sys.executable, "-c", code, "plan", "--format", "json", str(tmp_path / "tree")],
                          capture_output=True, text=True, env=clean, cwd=tmp_path, timeout=60, check=False)
    assert done.stdout.splitlines()[-1] == "0 False False", done.stderr


@pytest.mark.parametrize("columns", [None, "57", "0", "junk"])
def test_the_help_width_is_shutils(monkeypatch: pytest.MonkeyPatch, columns: str | None) -> None:
    """The parsers' formatters read the terminal width as shutil.get_terminal_size does, without shutil."""
    import shutil

    from image_updater.commands import HelpFormatter, terminal_columns

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert terminal_columns() == shutil.get_terminal_size().columns
    assert HelpFormatter("x")._width == terminal_columns() - 2
