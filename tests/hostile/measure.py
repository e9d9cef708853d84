"""Peak memory of an ``image-updater`` child process, measured honestly.

``ru_maxrss`` is the wrong figure for a child: Linux carries a process's peak across ``exec``, so a child of a
test worker that has grown to 300 MiB reports at least 300 MiB whatever it did, and ``RUSAGE_CHILDREN`` is the
largest of every child so far. ``VmHWM`` in ``/proc/<pid>/status`` belongs to the new program image alone: the
child reads its own at exit and writes it to a file named by an environment variable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["run_image_updater"]

ROOT = Path(__file__).resolve().parents[2]

_WRAPPER = """\
import atexit, os, runpy, sys

def _peak():
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM:'):
                with open(os.environ['IMAGE_UPDATER_TEST_PEAK_FILE'], 'w') as out:
                    out.write(line.split()[1])

atexit.register(_peak)
sys.argv = ['image-updater', *sys.argv[1:]]
runpy.run_module('image_updater', run_name='__main__')
"""


def run_image_updater(
    args: list[str], *, timeout: float, env: dict[str, str] | None = None, **kwargs: Any
) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """``image-updater ARGS`` in a child process: (result, seconds, the child's own peak RSS in MiB).

    ``subprocess.TimeoutExpired`` propagates: the caller says what a hang means for its scenario."""
    with tempfile.TemporaryDirectory(prefix="peak-") as tmp:
        peak_file = Path(tmp) / "peak"
        child_env = {**(os.environ if env is None else env), "PYTHONPATH": str(ROOT),
                     "IMAGE_UPDATER_TEST_PEAK_FILE": str(peak_file)}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _WRAPPER, *args], capture_output=True, text=True,
                              timeout=timeout, env=child_env, **kwargs)
        seconds = time.perf_counter() - started
        if not peak_file.exists():
            raise AssertionError(f"image-updater {args} wrote no peak figure: {done.stderr[-2000:]}")
        return done, seconds, int(peak_file.read_text()) / 1024
