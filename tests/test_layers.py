"""The pure core touches no files: what import-linter cannot see.

``pyproject.toml``'s contract "The pure core touches no files and runs no programs" forbids the pure core the
modules that list, open, write or rename files (``os``, ``pathlib``, ``tempfile``, ...). The builtin
``open`` (and ``__import__``, ``exec``, ``eval``, which could reach those modules anyway) needs no import, so
this test reads the source of every module that contract names and refuses any call of them.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = "The pure core touches no files and runs no programs"
FORBIDDEN_CALLS = frozenset({"open", "__import__", "exec", "eval", "compile", "breakpoint", "input"})


def _pure_core() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["name"] == CONTRACT:
            modules: list[str] = contract["source_modules"]
            return modules
    raise AssertionError(f"pyproject.toml has no contract {CONTRACT!r}")


def _sources(module: str) -> list[Path]:
    base = ROOT.joinpath(*module.split("."))
    if base.is_dir():
        return sorted(base.rglob("*.py"))
    return [base.with_suffix(".py")]


def forbidden_calls(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` of every call of a builtin that reaches files or code without an import."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                found.append((node.lineno, func.id))
    return sorted(found)


def test_the_detector_finds_what_it_looks_for() -> None:
    assert forbidden_calls("x = 1\nwith open('f', 'w') as h:\n    h.write('')\n") == [(2, "open")]
    assert forbidden_calls("m = __import__('os')\nre.compile('x')\n") == [(1, "__import__")]


@pytest.mark.parametrize("module", _pure_core())
def test_the_pure_core_calls_no_file_builtins(module: str) -> None:
    files = _sources(module)
    assert files and all(path.is_file() for path in files), module
    problems = [f"{path.relative_to(ROOT)}:{line}: {name}()"
                for path in files for line, name in forbidden_calls(path.read_text(encoding="utf-8"))]
    assert problems == []
