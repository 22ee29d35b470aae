"""docs/deployment.md: every command in it is run, parsed or verified, as its marker says.

Each fenced block is preceded by a marker:

* ``<!-- test: run -->``: run with bash (``set -euo pipefail``) in order, in a temporary
  directory that stands for ``/etc/stellate`` (``ETC``), with the installed ``stellate`` first
  on PATH;
* ``<!-- test: server -->``: a ``stellate serve`` command started in the background (its
  port replaced by a free one, in it and in the blocks that follow) until the next run block
  has run;
* ``<!-- test: unit NAME -->``: a systemd unit, written with the real path of ``stellate`` and
  checked with ``systemd-analyze verify`` (skipped, with the reason, where that is missing);
* ``<!-- test: host -->``: commands that change a host (installing, ``systemctl``): bash checks
  their syntax only.

In every block, each ``stellate`` command line is parsed by stellate's own parser, so a
documented flag that does not exist fails here. A block without a marker fails the suite.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from real_time import HANG_GUARD

from stellate.cli import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
BIN = Path(sys.executable).parent
INSTALLED = "/opt/stellate/venv/bin/stellate"
DOC_PORT = "5443"
_BLOCK = re.compile(r"(?:<!-- test: (\w+)(?: (\S+))? -->\n)?```(\w+)\n(.*?)```", re.DOTALL)


@attrs.frozen
class Block:
    kind: str | None
    name: str | None
    text: str


def blocks() -> list[Block]:
    return [
        Block(kind or None, name or None, text)
        for kind, name, _lang, text in _BLOCK.findall(DOC.read_text(encoding="utf-8"))
    ]


def stellate_lines(text: str) -> Iterator[list[str]]:
    """Each ``stellate ...`` command of a block (an ``ExecStart=`` too) as its arguments."""
    joined = text.replace("\\\n", " ")
    for line in joined.splitlines():
        line = line.removeprefix("ExecStart=").strip()
        for prefix in (INSTALLED + " ", "stellate "):
            if line.startswith(prefix):
                words = shlex.split(line.removeprefix(prefix).split(" | ")[0])
                yield [w for w in words if w != "&"]


def test_every_block_has_a_marker_and_every_stellate_line_parses() -> None:
    found = blocks()
    assert {b.kind for b in found} == {"run", "server", "unit", "host"}
    assert all(b.kind is not None for b in found), [b.text[:60] for b in found if not b.kind]
    parser = build_parser()
    parsed = 0
    for block in found:
        for argv in stellate_lines(block.text):
            if argv == ["--version"]:
                continue
            parser.parse_args(argv)  # exits (SystemExit 2) on an unknown flag
            parsed += 1
    assert parsed >= 8  # init, validate (three), serve, the three units


def test_the_host_blocks_are_valid_shell() -> None:
    for block in blocks():
        if block.kind == "host":
            subprocess.run(["bash", "-n", "-c", block.text], check=True, timeout=HANG_GUARD)


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def test_the_run_blocks_run_as_written(tmp_path: Path) -> None:
    for tool in ("openssl", "curl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    etc = tmp_path / "etc"
    env = {"ETC": str(etc), "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)}
    port = free_port()
    server: subprocess.Popen[str] | None = None
    outputs: list[str] = []
    try:
        for block in blocks():
            text = block.text.replace(f":{DOC_PORT}", f":{port}").replace(
                f"--port {DOC_PORT}", f"--port {port}"
            )
            if block.kind == "server":
                server = start_server(text, env, tmp_path)
            elif block.kind == "run":
                result = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", text],
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=HANG_GUARD,
                    check=False,
                )
                assert result.returncode == 0, (text, result.stdout, result.stderr)
                outputs.append(result.stdout)
                if server is not None:
                    stop(server)
                    server = None
    finally:
        if server is not None:
            stop(server)
    keys, fleet, control_key, tls, client, validate = outputs
    assert keys == f"600 {etc}/api.key\n"
    assert control_key == f"600 {etc}/control.key\n"
    assert fleet.splitlines()[-1] == "OK: 3 devices"
    assert tls.strip().endswith("server.pem: OK")
    assert client.splitlines() == [
        "Verify return code: 0 (ok)",
        '{"status": "healthy", "online_clients": []}',
    ]
    assert validate == "OK: 3 devices\n"


def start_server(text: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    (argv,) = list(stellate_lines(text))
    expanded = [re.sub(r"\$ETC|\$\{ETC\}", env["ETC"], word) for word in argv]
    proc = subprocess.Popen(
        [str(BIN / "stellate"), *expanded],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    timer = threading.Timer(HANG_GUARD, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        timer.cancel()
    assert "stellate agent server on wss://127.0.0.1:" in line, (line, proc.stderr)
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = [b for b in blocks() if b.kind == "unit"]
    assert {b.name for b in units} == {
        "stellate-serve.service",
        "stellate-agent.service",
        "stellate-up.service",
    }
    for unit in units:
        assert unit.name is not None
        path = tmp_path / unit.name
        path.write_text(unit.text.replace(INSTALLED, str(BIN / "stellate")), encoding="utf-8")
        result = subprocess.run(
            ["systemd-analyze", "verify", str(path)],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
            check=False,
        )
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
            unit.name,
            result.stdout,
            result.stderr,
        )
