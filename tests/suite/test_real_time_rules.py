"""The suite's rule for real sockets and virtual time, checked on the source of every test.

A ``MockClock`` with ``autojump_threshold=0`` (pytest-trio's ``autojump_clock``) jumps to the
next deadline whenever every task waits, including while bytes are still in flight in the
kernel: a test that drives real loopback sockets with it times a valid exchange out on a
loaded machine (CI's slice found one). Such a test uses ``loopback_clock`` (``real_time.py``)
or memory streams. This check reads every function under ``tests/`` and ``examples/`` and
fails on one that both asks for an autojump of 0 and touches a real socket.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: What a real socket looks like in this suite's source.
REAL_SOCKET = re.compile(
    r"""\b127\.0\.0\.1\b|\braw_server\(|\bopen_tcp_\w+\(|\bserve_tcp\b|\btrio\.socket\."""
    r"""|\bserve_websocket\b|\bserver\.serve\b|\bstart_server\(|\breal_url\b|\bserve_fleet\b"""
)
#: An autojump of 0: pytest-trio's fixture, or a literal threshold of 0.
AUTOJUMP_ZERO = re.compile(r"\bautojump_clock\b|autojump_threshold\s*=\s*0(?:\.0*)?(?![\d.])")


def offenders(path: Path, root: Path = ROOT) -> list[str]:
    source = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            text = ast.get_source_segment(source, node) or ""
            if AUTOJUMP_ZERO.search(text) and REAL_SOCKET.search(text):
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name}")
    return found


def test_no_real_socket_runs_under_an_autojump_of_zero() -> None:
    files = sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "examples").rglob("*.py")])
    assert len(files) > 50
    bad = [line for path in files if path != Path(__file__) for line in offenders(path)]
    assert bad == [], "use loopback_clock (tests/real_time.py) or memory streams:\n" + "\n".join(
        bad
    )


def test_the_check_sees_the_case_it_is_for(tmp_path: Path) -> None:
    planted = tmp_path / "test_planted.py"
    planted.write_text(
        "async def test_x(nursery, autojump_clock):\n"
        "    port = await raw_server(nursery, handler)\n"
        "def test_y():\n"
        "    trio.run(f, clock=trio.testing.MockClock(autojump_threshold=0))\n"
        "    url = 'ws://127.0.0.1:5/ws'\n"
        "def test_fine(loopback_clock):\n"
        "    url = 'ws://127.0.0.1:5/ws'\n"
        "def test_memory():\n"
        "    trio.run(f, clock=trio.testing.MockClock(autojump_threshold=0))\n"
        "def test_z(nursery):\n"
        "    clock = trio.testing.MockClock(autojump_threshold=0.0)\n"
        "    await nursery.start(server.serve, '127.0.0.1', 0)\n"
        "def test_real_seconds():\n"
        "    clock = trio.testing.MockClock(autojump_threshold=0.5)\n"
        "    await nursery.start(server.serve, '127.0.0.1', 0)\n",
        encoding="utf-8",
    )
    names = [line.split()[-1] for line in offenders(planted, tmp_path)]
    assert names == ["test_x", "test_y", "test_z"]
