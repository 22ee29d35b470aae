"""Stage marks for callgrind: one instruction count per stage of one run.

Under ``valgrind --tool=callgrind``, ``mark("bring_up")`` dumps the counters gathered since the
previous mark (or the start) into a part file of their own and zeroes them, so one run gives
the instructions of each stage (bring-up, shutdown...) apart. Python cannot issue valgrind's
client requests itself: a ten-line C library does (``CALLGRIND_DUMP_STATS_AT``), compiled by
``python -m benchmarks.instructions`` (it needs a C compiler and valgrind's headers, both of the
``valgrind`` and ``gcc`` packages) and named to the worker by ``STELLATE_BENCH_MARKS``. Outside
callgrind, or without that variable, a mark does nothing.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

ENV = "STELLATE_BENCH_MARKS"

SOURCE = r"""
#include <valgrind/callgrind.h>
void stellate_mark(const char *stage) { CALLGRIND_DUMP_STATS_AT(stage); }
"""

_library: ctypes.CDLL | None = None
_loaded = False


def build(directory: Path) -> Path:
    """Compile the marks library into ``directory``; its path (for ``STELLATE_BENCH_MARKS``)."""
    source = directory / "marks.c"
    source.write_text(SOURCE)
    library = directory / "marks.so"
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-O1", "-o", str(library), str(source)],
        check=True,
        capture_output=True,
    )
    return library


def mark(stage: str) -> None:
    """Close the current stage under callgrind (a no-op otherwise)."""
    global _library, _loaded
    if not _loaded:
        _loaded = True
        path = os.environ.get(ENV)
        if path:
            _library = ctypes.CDLL(path)
    if _library is not None:
        _library.stellate_mark(stage.encode())
