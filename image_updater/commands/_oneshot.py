"""The cyclic garbage collector in a one-shot command (every command but the daemon's ``run``).

``cli.main`` runs such a command inside ``one_shot()``; the command calls ``settle()`` once it has imported
what it needs and before its work (``cli`` after loading the command module; ``_planning`` after the
settings and after the registry layer). What is alive at that point (modules, classes, functions,
validators, the settings) lives until the process exits, so the collector is told to stop traversing it
(``gc.freeze``). Without it, a ``plan`` of 20 images spends ~35 ms of its CPU in two collections that free
~2,000 of ~48,000 objects: one in the middle of its imports and the interpreter's final one at exit.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["one_shot", "settle"]

_active = False  # inside one_shot()
_froze = False  # settle() froze objects since one_shot() began


def settle() -> None:
    """Freeze what is alive now, inside ``one_shot()`` only: never in the daemon, a test calling a command's
    helpers, or a process that froze objects of its own."""
    global _froze
    if _active and (_froze or gc.get_freeze_count() == 0):
        gc.freeze()
        _froze = True


@contextmanager
def one_shot(*, program: bool) -> Iterator[None]:
    """Let ``settle()`` freeze during the block. ``program``: the process ends right after the block (the
    console script, ``python -m image_updater``), so the frozen objects stay frozen and the final collection
    at exit need not traverse them; otherwise (a caller in the same process) they go back to the oldest
    generation at the end."""
    global _active, _froze
    _active, _froze = True, False
    try:
        yield
    finally:
        if _froze and not program:
            gc.unfreeze()
        _active, _froze = False, False
