"""errors.py holds every exception class of the package, and its docstring names each of them."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import image_updater
from image_updater import errors


def _exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(image_updater.__path__, "image_updater."):
        if info.name.endswith(".__main__"):  # importing it runs the CLI
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__.startswith("image_updater")
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_exception_class_of_the_package_is_defined_in_errors() -> None:
    classes = _exception_classes()
    assert "image_updater.errors.ImageUpdaterError" in classes
    elsewhere = sorted(name for name in classes if not name.startswith("image_updater.errors."))
    assert elsewhere == [], "define these in image_updater/errors.py (re-export them where they were)"


def test_the_errors_docstring_names_every_class_it_defines() -> None:
    assert errors.__doc__ is not None
    defined = [
        name for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == errors.__name__
    ]
    assert len(defined) > 20
    assert [name for name in defined if name not in errors.__doc__] == []
