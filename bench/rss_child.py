"""The daemon under tracemalloc (bench/daemon.py --only rss --tracemalloc 50,250): a debug run, not a measure.

Runs ``python -m image_updater`` with the given arguments after starting ``tracemalloc`` and wrapping
``Metrics.pass_finished`` (called once at the end of every pass, on the event loop) so that after each pass
named in BENCH_TRACEMALLOC_AT the garbage is collected and a snapshot is dumped into BENCH_TRACEMALLOC_DIR
as ``pass-<n>.snap`` (BENCH_TRACEMALLOC_FRAMES frames, default 1; 0: no tracemalloc), with the live objects
counted by type, the allocated blocks, pymalloc's and glibc's figures and the threads in ``pass-<n>.json``.
BENCH_NO_RELEASE=1 replaces the daemon's after-pass ``release_free_memory`` by a no-op, BENCH_NO_TUNE=1 its
start-up ``tune_allocator`` (before/after runs). BENCH_ALLOC_SERIES=<file> appends, after every pass, one JSON
line of glibc's ``mallinfo2`` figures, sqlite's ``sqlite3_memory_used`` and the interpreter's allocated blocks
(cheap: no garbage collection, no object walk).
bench/daemon.py diffs them. Nothing of this is in the daemon itself.
"""

# ruff: noqa: E402 (the imports below must follow the sys.path fix)
from __future__ import annotations

import os
import sys

sys.path[:] = [
    p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))
]

import contextlib
import ctypes
import functools
import gc
import itertools
import json
import threading
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any


def _pymalloc_stats(scratch: Path) -> dict[str, int]:
    """The summary of ``sys._debugmallocstats`` (arenas, bytes in used/free blocks), which writes to fd 2."""
    saved = os.dup(2)
    try:
        with scratch.open("wb") as file:
            os.dup2(file.fileno(), 2)
            sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    stats: dict[str, int] = {}
    for line in scratch.read_text().splitlines():
        if line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            with contextlib.suppress(ValueError):
                stats[key.strip("# ").strip()] = int(value.strip().replace(",", ""))
    return stats


_MALLINFO_NAMES = (
    "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
)


@functools.cache
def _mallinfo_fn() -> Any:
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO_NAMES]

    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2


def _mallinfo() -> dict[str, int]:
    """glibc's ``mallinfo2``: main-arena bytes from sbrk, mmapped bytes, bytes in use and free, over all
    arenas (empty where the C library has none)."""
    fn = _mallinfo_fn()
    if fn is None:
        return {}
    info = fn()
    return {name: int(getattr(info, name)) for name in _MALLINFO_NAMES}


@functools.cache
def _sqlite_fns() -> tuple[Any, Any] | None:
    import _sqlite3

    try:
        lib = ctypes.CDLL(_sqlite3.__file__)  # its libsqlite3's symbols resolve through it
        used, high = lib.sqlite3_memory_used, lib.sqlite3_memory_highwater
    except (OSError, AttributeError):
        return None
    used.restype = high.restype = ctypes.c_int64
    high.argtypes = [ctypes.c_int]
    return used, high


def _sqlite_memory() -> dict[str, int]:
    """sqlite's own count of the bytes it holds (page cache, schema, statements) and its high-water mark."""
    fns = _sqlite_fns()
    if fns is None:
        return {}
    return {"sqlite_used": int(fns[0]()), "sqlite_highwater": int(fns[1](0))}


def _hint(obj: object) -> str:
    """A few keys or items of a container, to tell which one it is."""
    try:
        if isinstance(obj, dict):
            return repr(list(itertools.islice(obj, 3)))[:120]
        if isinstance(obj, (list, tuple, set, frozenset)):
            return repr([type(x).__qualname__ for x in itertools.islice(obj, 3)])[:120]
        return repr(obj)[:120]
    except Exception as exc:  # a repr may raise anything
        return f"<{type(exc).__name__}>"


def _sizes(objects: list[object]) -> tuple[dict[str, int], dict[str, list[Any]]]:
    """Bytes of the gc-tracked objects by type (``sys.getsizeof``: a container's own table or array), and the
    containers of 2 KiB or more by id (type, bytes, length, hint), so that one growing in place shows."""
    sizes: Counter[str] = Counter()
    big: dict[str, list[Any]] = {}
    for obj in objects:
        try:
            size = sys.getsizeof(obj)
        except Exception:  # a __sizeof__ may raise anything
            continue
        sizes[type(obj).__qualname__] += size
        if size >= 2048:
            try:
                length = len(obj)  # type: ignore[arg-type]
            except Exception:  # no len(), or one that raises
                length = -1
            big[str(id(obj))] = [type(obj).__qualname__, size, length, _hint(obj)]
    return dict(sizes), big


def main() -> int:
    # tracemalloc slows every allocation (8 frames: about 20x on this machine); 1 frame names the line
    frames = int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "1"))
    dump_at = {int(x) for x in os.environ.get("BENCH_TRACEMALLOC_AT", "").split(",") if x.strip()}
    out = Path(os.environ["BENCH_TRACEMALLOC_DIR"])
    series = os.environ.get("BENCH_ALLOC_SERIES")
    out.mkdir(parents=True, exist_ok=True)
    if frames > 0:
        tracemalloc.start(frames)
    from image_updater.cli import main as cli_main
    from image_updater.metrics import Metrics

    original = Metrics.pass_finished
    count = 0

    def pass_finished(self: Metrics, *args: Any, **kwargs: Any) -> None:
        nonlocal count
        original(self, *args, **kwargs)
        count += 1
        if series:
            with open(series, "a") as file:
                row = {"pass": count, "blocks": sys.getallocatedblocks(), **_mallinfo(), **_sqlite_memory()}
                file.write(json.dumps(row) + "\n")
        if count in dump_at:
            gc.collect()
            if tracemalloc.is_tracing():
                tracemalloc.take_snapshot().dump(str(out / f"pass-{count}.snap"))
            # live objects by type and the interpreter's allocated blocks: cheap, and enough to see what grows
            objects = gc.get_objects()
            types = Counter(type(o).__qualname__ for o in objects)
            sizes, big = _sizes(objects)
            del objects
            threads = sorted(t.name for t in threading.enumerate())
            (out / f"pass-{count}.json").write_text(json.dumps({
                "allocated_blocks": sys.getallocatedblocks(), "threads": threads, "gc_types": dict(types),
                "pymalloc": _pymalloc_stats(out / "debugmallocstats.txt"), "glibc": _mallinfo(),
                "sqlite": _sqlite_memory(), "gc_type_bytes": sizes, "big_containers": big,
            }))

    Metrics.pass_finished = pass_finished  # type: ignore[method-assign]
    if os.environ.get("BENCH_NO_RELEASE") == "1":  # the daemon as it was before issue 16's fix
        import image_updater.daemon

        image_updater.daemon.release_free_memory = lambda: False
    if os.environ.get("BENCH_RECYCLE_EXECUTOR") == "1":  # an experiment: fresh worker threads every pass
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        import image_updater.daemon

        release = image_updater.daemon.release_free_memory

        def recycle_then_release() -> bool:
            # a thread's glibc tcache goes back to its arena when the thread exits: swap the loop's default
            # executor (asyncio.to_thread's) for a new one and let the old one's threads finish and exit
            loop = asyncio.get_running_loop()
            old = getattr(loop, "_default_executor", None)
            loop.set_default_executor(ThreadPoolExecutor(thread_name_prefix="asyncio"))
            if old is not None:
                old.shutdown(wait=False)
            return release()

        image_updater.daemon.release_free_memory = recycle_then_release
    if os.environ.get("BENCH_NO_TUNE") == "1":  # the daemon without its start-up allocator tuning
        import image_updater.daemon

        image_updater.daemon.tune_allocator = lambda environ=None: False
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
