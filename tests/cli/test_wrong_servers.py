"""Pointed at the wrong server: the real ``stellate`` says what is wrong, once, in its words.

A server URL without ``/ws`` meets an AIP server's 404: the agent says where AIP servers
answer, and a fleet of 200 agents says it three times, not 200. A URL pointing at a plain web
server gets "not an AIP server" instead of the page's HTML cut twice. The servers here are
small threads on 127.0.0.1 answering every request with one fixed answer, counting requests, so
a test knows when every agent has tried (no sleeps).
"""

from __future__ import annotations

import http.server
import json
import re
import signal
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cli_support import STELLATE
from real_time import HANG_GUARD

from stellate.adapters.ws_handshake import NOT_AIP

#: What stellate's agent server answers an upgrade on a path other than /ws.
AIP_404 = (
    b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 34\r\n"
    b'Connection: close\r\n\r\n{"detail": "no WebSocket at \'/\'"}'
)


class _Counting(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answer: bytes, wanted: int) -> None:
        self.answer = answer
        self.requests = 0
        self.wanted = wanted
        self.enough = threading.Event()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Answer)


class _Answer(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, _Counting)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            received += chunk
        self.request.sendall(server.answer)
        with server.lock:
            server.requests += 1
            if server.requests >= server.wanted:
                server.enough.set()


@contextmanager
def answering(answer: bytes, wanted: int = 1) -> Iterator[_Counting]:
    server = _Counting(answer, wanted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_agents_without_ws_are_told_where_aip_servers_answer_once_per_fleet() -> None:
    with answering(AIP_404, wanted=200) as server:
        port = server.server_address[1]
        proc = subprocess.Popen(
            [
                *(str(STELLATE), "agent", "--server", f"ws://127.0.0.1:{port}"),
                *("--count", "200", "--device-id-prefix", "dev"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.enough.wait(HANG_GUARD), "the agents never all tried"
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=HANG_GUARD)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    warnings = [line for line in err.splitlines() if " WARNING " in line]
    assert 1 <= len(warnings) <= 3, err  # 200 agents, one failure: three lines at most
    for line in warnings:
        assert "refused the WebSocket upgrade: HTTP 404 Not Found" in line
        assert f"AIP servers answer on /ws: try ws://127.0.0.1:{port}/ws" in line


class _WebPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_error(404, "File not found")  # an HTML page, as python -m http.server does

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_plain_web_server_is_not_an_aip_server(tmp_path: Path) -> None:
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"ws://127.0.0.1:{web.server_address[1]}/ws"
        config = tmp_path / "devices.yaml"
        config.write_text(
            f"devices:\n  - {{device_id: d, server_url: '{url}', max_retries: 1}}\n", "utf-8"
        )
        result = subprocess.run(
            [str(STELLATE), "up", "--once", "--json", str(config)],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
            check=False,
        )
    finally:
        web.shutdown()
        web.server_close()
    assert result.returncode == 1, result.stderr
    (profile,) = json.loads(result.stdout)
    reason = profile["failure_reason"]
    assert reason.endswith(f"refused the WebSocket upgrade: HTTP 404 File not found ({NOT_AIP})")
    for text in (reason, result.stderr):
        assert "<" not in text and "DOCTYPE" not in text
        assert len(re.findall(r"more characters\)", text)) == 0
