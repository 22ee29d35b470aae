"""Issue 10, class 2: the API key never leaks, whatever the key and whatever the URL's shape.

A URL is drawn from parts (userinfo, host, port — including the invalid ``0`` and empty ones —,
path, query parameters named ``token``, ``x_token``, ``access_token``, ``api_key`` or harmless
ones, a fragment); the key goes where a user might put it (userinfo, a secret parameter, the
fragment) and where stellate puts it (``with_token``). Then every place a URL is shown is
searched for the key in every spelling it can travel in (raw, percent-encoded, escaped):
redacted URLs, config problems (``stellate validate``/``up``), ``--json`` profiles and the
printed profiles, connection errors from both connectors, a manager's failure reasons, events
and summaries, and every log record at DEBUG.
"""

from __future__ import annotations

import io
import json
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from byte_streams import receive_until
from hardening_support import FIGURES
from hypothesis import example, given, settings
from hypothesis import strategies as st
from log_records import Records
from profiles import examples
from real_time import HANG_GUARD

from stellate import Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.adapters.websocket import WebSocketConnector
from stellate.adapters.ws_server import HttpRequest
from stellate.cli.display import (
    DeviceReport,
    event_json,
    event_line,
    print_profiles,
    profiles_json,
)
from stellate.config import ConfigError, loads_config
from stellate.fsm import AgentProfile
from stellate.manager import ConstellationDeviceManager
from stellate.protocol import ConnectError
from stellate.text.escape import escape_text
from stellate.text.redact import LOG_FILTER, add_log_secret
from stellate.text.urls import redact_url, url_problems, with_token

K = "\x00K\x00"  # where the key goes in a drawn URL

keys = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=6,
    max_size=30,
).filter(lambda key: key.strip() and key.strip("*"))


@st.composite
def url_shapes(draw: st.DrawFn) -> str:
    """A URL template: ``K`` marks where a user placed the key (maybe nowhere)."""
    scheme = draw(st.sampled_from(["ws", "wss", "http"]))
    userinfo = draw(st.sampled_from(["", "", "user@", f"user:{K}@", f"{K}@"]))
    host = draw(st.sampled_from(["agents.test", "127.0.0.1", "[::1]"]))
    port = draw(st.sampled_from(["", ":5005", ":0", ":", ":99999"]))
    path = draw(st.sampled_from(["", "/", "/ws", "/a/b"]))
    params = draw(
        st.lists(
            st.sampled_from(
                [
                    "device=x",
                    f"token={K}",
                    "x_token=1",
                    f"access_token={K}",
                    f"api_key={K}",
                    "debug",
                    "name=token",
                ]
            ),
            max_size=3,
        )
    )
    query = ("?" + "&".join(params)) if params or draw(st.booleans()) else ""
    fragment = draw(st.sampled_from(["", "", "#", "#frag", f"#token={K}", f"#{K}"]))
    return f"{scheme}://{userinfo}{host}{port}{path}{query}{fragment}"


def spellings(key: str) -> set[str]:
    """Every form the key can take on its way to an output."""
    forms = {
        key,
        urllib.parse.quote(key, safe=""),
        urllib.parse.quote_plus(key, safe=""),
        urllib.parse.quote(key),
        escape_text(key, limit=None),
        json.dumps(key)[1:-1],
    }
    return {form for form in forms if len(form) >= 4}


def place(template: str, key: str) -> str:
    """Put the key where the template says, encoded as a user would have to."""
    head, hash_, fragment = template.partition("#")
    head, qmark, query = head.partition("?")
    head = head.replace(K, urllib.parse.quote(key, safe=""))
    query = query.replace(K, urllib.parse.quote_plus(key, safe=""))
    fragment = fragment.replace(K, urllib.parse.quote(key, safe=""))
    return head + qmark + query + hash_ + fragment


@contextmanager
def own_log_secrets() -> Iterator[None]:
    """Keys drawn here must not stay in the process-wide log filter (a key ``000000`` would
    mask every later ``000000`` of the whole test session)."""
    saved = set(LOG_FILTER._secrets)
    try:
        yield
    finally:
        LOG_FILTER._secrets.clear()
        LOG_FILTER._secrets.update(saved)


def control_key(key: str) -> str:
    """Another key of the same length, sharing no character with ``key``."""
    filler = next(ch for ch in "ZQXJ#" if ch not in key)
    return filler * len(key)


def leaked(produce: Callable[[str], list[str]], key: str) -> list[str]:
    """The outputs ``produce(key)`` shows that show the key.

    A spelling of the key counts as leaked where it appears more often than in the same
    outputs produced with a control key: a key that happens to be a word of a message
    (``discon`` in "disconnected") is not a leak; the key itself is.
    """
    with own_log_secrets():
        outputs, control = produce(key), produce(control_key(key))
    FIGURES["key leak checks"] += len(outputs)
    found = [
        text
        for text, other in zip(outputs, control, strict=True)
        for form in spellings(key)
        if text.count(form) > other.count(form)
    ]
    FIGURES["keys leaked"] += len(found)
    return found


def shown(template: str, key: str) -> list[str]:
    """What ``stellate validate``/``up`` and the display show of a URL made with ``key``."""
    url = with_token(place(template, key), key)
    profile = AgentProfile(device_id="dev", server_url=url)
    printed = io.StringIO()
    report = DeviceReport(profile, failure_reason="x", last_error="y")
    print_profiles([report], printed)
    outputs = [redact_url(url), "; ".join(url_problems(url)), profiles_json([report])]
    outputs += [printed.getvalue(), repr(profile)]
    text = (
        f"manager: {{api_key: {json.dumps(key)}}}\n"
        f"devices:\n  - {{device_id: dev, server_url: {json.dumps(url)}}}\n"
    )
    try:
        outputs.append(repr(loads_config(text)))
    except ConfigError as exc:
        outputs.append(str(exc))
    return outputs


@settings(max_examples=examples(300))
@given(template=url_shapes(), key=keys)
def test_the_key_is_never_shown_whatever_the_url(template: str, key: str) -> None:
    FIGURES["key leak cases tried"] += 1
    assert leaked(partial(shown, template), key) == []


def test_the_key_goes_into_the_query_not_after_a_fragment() -> None:
    """Issue 10, 2(a): the key was appended after the '#', sent nowhere, shown everywhere."""
    url = with_token("ws://h:1/ws#frag", "s3cret-key")
    assert url == "ws://h:1/ws?token=s3cret-key#frag"
    assert url_problems(url) == [
        "must not have a fragment ('#...'; RFC 6455 forbids it in a WebSocket URL; write a "
        "literal '#' as %23), got 'ws://h:1/ws?token=***#***'"
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://h/ws?x_token=1", "ws://h/ws?x_token=1&token=K%26Y"),
        ("ws://h/ws?access_token=x", "ws://h/ws?access_token=x&token=K%26Y"),
        ("ws://h/ws?tokens=2", "ws://h/ws?tokens=2&token=K%26Y"),
        ("ws://h/ws?name=token%3D", "ws://h/ws?name=token%3D&token=K%26Y"),
        ("ws://h/ws?token=mine", "ws://h/ws?token=mine"),
        ("ws://h/ws?token=", "ws://h/ws?token="),
        ("ws://h/ws?a=1&token=z&b=2", "ws://h/ws?a=1&token=z&b=2"),
        ("ws://h/ws?", "ws://h/ws?token=K%26Y"),
        ("ws://h", "ws://h?token=K%26Y"),
        ("wss://u:p@h:9/ws?q=1#f", "wss://u:p@h:9/ws?q=1&token=K%26Y#f"),
    ],
)
def test_with_token_reads_parameter_names_not_substrings(url: str, expected: str) -> None:
    """Issue 10, 2(c): ``x_token`` or ``access_token`` is not ``token``."""
    assert with_token(url, "K&Y") == expected


def test_a_config_error_about_a_url_with_a_key_shows_it_redacted() -> None:
    """Issue 10, 2(b)."""
    text = "devices:\n  - {device_id: d, server_url: 'ws://h:0/ws?token=TOPSECRET#x'}\n"
    with pytest.raises(ConfigError) as caught:
        loads_config(text)
    assert "TOPSECRET" not in str(caught.value)
    assert "got 'ws://h:0/ws?token=***#***'" in str(caught.value)


# -- the running system -----------------------------------------------------------------------

SERVER = "ws://agents.test:5005"


async def _manager_outputs(template: str, key: str) -> list[str]:
    """A manager with the key adds a device at ``url`` (which fails, one way or another)."""
    url = place(template, key)
    outputs: list[str] = []

    async def hang_up(conn: Any, _info: Any) -> None:
        await conn.aclose(1011, f"no (token={key})")

    async with MemoryNetwork() as network:
        network.listen(f"{SERVER}/ws", hang_up, api_key=key)
        manager = ConstellationDeviceManager(
            api_key=key,
            connector=network.connector,
            timing=Timing(reconnect_delay=0.1, backoff_cap=0.2),
            strict=True,
        )
        async with manager, manager.events() as events:
            await manager.register_device("dev", url, max_retries=2)
            outputs += [manager.failure_reason("dev") or "", manager.describe("dev")]
            lifecycle = manager.device_registry.lifecycle("dev")
            report = DeviceReport(lifecycle.profile, lifecycle.failure_reason, lifecycle.last_error)
            printed = io.StringIO()
            print_profiles([report], printed)
            outputs += [profiles_json([report]), printed.getvalue(), repr(lifecycle.profile)]
            while True:
                try:
                    event = events.receive_nowait()
                except trio.WouldBlock:
                    break
                outputs += [event_line(event), event_json(event), str(event.reason)]
    return outputs


@settings(max_examples=examples(80))
@given(template=url_shapes(), key=keys)
def test_a_manager_never_leaks_the_key_in_reasons_events_or_logs(template: str, key: str) -> None:
    FIGURES["key leak cases tried"] += 1

    def produce(key: str) -> list[str]:
        with Records() as records:
            outputs: list[str] = trio.run(
                _manager_outputs, template, key, clock=trio.testing.MockClock(autojump_threshold=0)
            )
        return [*outputs, "\n".join(record.getMessage() for record in records.records)]

    assert leaked(produce, key) == []


@settings(max_examples=examples(40))
@given(template=url_shapes(), key=keys)
def test_the_real_connector_never_leaks_the_key(template: str, key: str) -> None:
    """Real sockets: every host is replaced by 127.0.0.1 on a port nobody listens on."""
    FIGURES["key leak cases tried"] += 1

    def produce(key: str) -> list[str]:
        url = with_token(place(template, key), key)
        for host in ("agents.test", "[::1]"):
            url = url.replace(host, "127.0.0.1")
        url = url.replace(":5005", ":9")  # discard: refused on loopback

        async def attempt() -> str:
            try:
                async with WebSocketConnector(connect_timeout=5).open(url):
                    return "connected?!"
            except ConnectError as exc:
                return str(exc)

        return [trio.run(attempt)]

    assert leaked(produce, key) == []


class Recording:
    """A connector that records the URLs it is asked to open, and refuses them all."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def open(self, url: str) -> Any:
        self.urls.append(url)
        raise ConnectError("connection refused (recorded)")


@pytest.mark.parametrize(
    ("url", "opened"),
    [
        ("ws://h:1/ws?x_token=1", "ws://h:1/ws?x_token=1&token=K%26Y"),
        ("ws://h:1/ws?access_token=x", "ws://h:1/ws?access_token=x&token=K%26Y"),
        ("ws://h:1/ws?token=mine", "ws://h:1/ws?token=mine"),
        ("ws://h:1/ws", "ws://h:1/ws?token=K%26Y"),
        ("ws://h:1/ws#f", "ws://h:1/ws?token=K%26Y#f"),
    ],
)
async def test_the_manager_adds_its_key_by_parameter_name(
    url: str, opened: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Issue 10, 2(c): the manager looked for the substring ``token=``."""
    connector = Recording()
    with own_log_secrets():
        async with ConstellationDeviceManager(
            api_key="K&Y", connector=connector, strict=True
        ) as manager:  # type: ignore[arg-type]
            assert not await manager.register_device("dev", url, max_retries=1)
    assert connector.urls[0] == opened


# -- issue 21, class 5: peer text that carries the key --------------------------------------------
#
# A server that echoes the API key in its error text, in telemetry, or in an HTTP refusal's
# reason and body got it printed by `stellate up --json` (failure_reason, last_error, os), by the
# progress lines, and by `stellate agent`'s stop line. Every output now masks every key the
# process knows (stellate.text.redact.shown / safe_json), not only log records.

ECHO = "ws://echo.test:5005"


def _echoing_server(key: str) -> Any:
    """A server whose every text is the key: its refusals, its telemetry."""

    async def handler(conn: Any, _info: Any) -> None:
        target = ""
        while True:
            frame = json.loads(await conn.receive())
            target = frame.get("target_id") or target
            if frame["type"] == "device_info_request" and target == "dev-inf":
                request_id = json.dumps(frame.get("request_id"))
                await conn.send(  # 1e400: a number no double holds, sent as it is
                    f'{{"type": "device_info_response", "status": "ok", '
                    f'"response_id": {request_id}, "result": {{"memory_total_gb": 1e400}}}}'
                )
                continue
            if frame["type"] == "register" and target == "dev-err":
                answer = {"type": "error", "status": "error", "error": f"bad key {key}!"}
                await conn.send(json.dumps(answer))
                await conn.aclose(1000, f"no {key}"[:100])
                return
            if frame["type"] == "device_info_request":
                result = {
                    "platform": f"linux {key}",
                    "hostname": key,
                    "ip_address": f"10.0.0.1 ({key})",
                    "custom_metadata": {key: key},
                    "tags": [key],
                }
                answer = {"type": "device_info_response", "status": "ok", "result": result}
                answer["response_id"] = frame.get("request_id")
            else:
                answer = {"type": "heartbeat", "status": "ok", "response_id": "r"}
            await conn.send(json.dumps(answer))

    return handler


class _RefusingWith:
    """Routes ``/http`` to an HTTP refusal whose reason and body are the key."""

    def __init__(self, inner: Any, key: str) -> None:
        self._inner, self._key = inner, key

    def open(self, url: str) -> Any:
        if "/http" in url:
            raise ConnectError(
                f"WebSocket handshake with {redact_url(url)} refused: HTTP 403 {self._key} "
                f"({self._key} is not welcome)",
                status=403,
            )
        return self._inner.open(url)


async def _echo_outputs(key: str) -> list[str]:
    """Everything `stellate up` would print (and the fleet port serve) after a bring-up whose
    every peer text is the key."""
    from stellate.cli.display import PlainDisplay, fleet_summary
    from stellate.manager.metrics import fleet_routes

    add_log_secret(key)  # what `stellate up` does with the fleet's key where it starts
    async with MemoryNetwork() as network:
        network.listen(f"{ECHO}/ws", _echoing_server(key), api_key=key)
        manager = ConstellationDeviceManager(
            api_key=key,
            connector=_RefusingWith(network.connector, key),
            timing=Timing(reconnect_delay=0.1, backoff_cap=0.2),
            strict=True,
        )
        lines = io.StringIO()
        plain = PlainDisplay(lines, 3)
        outputs: list[str] = []
        documents: list[str] = []  # the JSON ones
        async with manager, manager.events() as events:
            for device_id, path in (("dev-echo", "/ws"), ("dev-err", "/ws"), ("dev-http", "/http")):
                manager.add_device(
                    AgentProfile(device_id=device_id, server_url=ECHO + path, max_retries=1)
                )
            for device_id in ("dev-echo", "dev-err", "dev-http"):
                await manager.wait_for(device_id)
            while True:
                try:
                    event = events.receive_nowait()
                except trio.WouldBlock:
                    break
                plain.event(event)
                outputs.append(event_line(event))
                documents.append(event_json(event))
            registry = manager.device_registry
            reports = [
                DeviceReport(p, manager.failure_reason(d), registry.lifecycle(d).last_error)
                for d, p in manager.get_all_devices().items()
            ]
            assert reports[0].profile.os is not None  # the echoed telemetry was merged
            printed = io.StringIO()
            print_profiles(reports, printed)
            fleet = fleet_routes(manager)["/api/fleet"]
            answer = fleet(HttpRequest("GET", "/api/fleet", "", "127.0.0.1:1"))
            outputs += [
                lines.getvalue(),
                printed.getvalue(),
                fleet_summary(reports, ["dev-echo", "dev-err", "dev-http"]),
            ]
            documents += [profiles_json(reports), answer.body.decode()]
    for text in documents:
        json.loads(text)  # masked, and still JSON
    return outputs + documents


@settings(max_examples=examples(30))
@given(key=keys)
@example(key="s3cret-key-echoed")
@example(key='", "os": "')  # a key that looks like JSON punctuation
def test_a_key_echoed_by_a_peer_is_masked_in_everything_printed(key: str) -> None:
    FIGURES["key leak cases tried"] += 1

    def produce(key: str) -> list[str]:
        with own_log_secrets():
            outputs: list[str] = trio.run(
                _echo_outputs, key, clock=trio.testing.MockClock(autojump_threshold=0)
            )
        return outputs

    assert leaked(produce, key) == []


# -- the same, end to end: the commands' own output on real sockets -------------------------------

ECHOED_KEY = "echo-KEY-9c1f-never-printed"


async def _refuse_http(stream: trio.SocketStream) -> None:
    """Answers any upgrade with a 403 whose reason phrase and body carry the key."""
    async with stream:
        if b"\r\n\r\n" not in await receive_until(stream, b"\r\n\r\n"):
            return
        body = f"go away, {ECHOED_KEY}".encode()
        await stream.send_all(
            f"HTTP/1.1 403 {ECHOED_KEY}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )


async def _run(*argv: str) -> tuple[int, str, str]:
    result = await trio.run_process(
        [sys.executable, "-m", "stellate", *argv],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def _no_key(*texts: str) -> None:
    for text in texts:
        FIGURES["key leak checks"] += 1
        found = [form for form in spellings(ECHOED_KEY) if form in text]
        FIGURES["keys leaked"] += len(found)
        assert not found, text


async def test_stellate_up_masks_a_key_its_servers_echo(tmp_path: Path) -> None:
    """`stellate up --once --json` and `--once`: a refusal whose reason and body are the key, a
    registration refused with the key in its text, telemetry made of the key (os, hostname,
    custom metadata) and a number that is not JSON: stdout is strict JSON, and the key is
    nowhere in stdout or stderr."""
    FIGURES["key leak cases tried"] += 1
    from stellate.adapters.ws_server import serve_websocket

    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            aip = await nursery.start(
                partial(serve_websocket, _echoing_server(ECHOED_KEY), "127.0.0.1", 0)
            )
            (refuser,) = await nursery.start(
                partial(trio.serve_tcp, _refuse_http, 0, host="127.0.0.1")
            )
            http = refuser.socket.getsockname()[1]
            config = tmp_path / "devices.yaml"
            url = f"ws://127.0.0.1:{aip}/ws"
            devices = {"dev-echo": url, "dev-err": url, "dev-http": f"ws://127.0.0.1:{http}/ws"}
            devices["dev-inf"] = url
            lines = [
                f"manager: {{task_name: t, api_key: {ECHOED_KEY}, reconnect_delay: 0.1, "
                "backoff_cap: 0.2}",
                "devices:",
                *(
                    f"  - {{device_id: {d}, server_url: '{u}', max_retries: 2}}"
                    for d, u in devices.items()
                ),
            ]
            config.write_text("\n".join(lines) + "\n")
            code, out, err = await _run("up", str(config), "--once", "--json")
            assert code == 1, err  # dev-err and dev-http failed
            profiles = json.loads(out, parse_constant=lambda name: pytest.fail(name))
            by_id = {p["device_id"]: p for p in profiles}
            assert by_id["dev-echo"]["status"] == "idle" and "***" in by_id["dev-echo"]["os"]
            _no_key(out, err)
            code, out, err = await _run("up", str(config), "--once")
            assert code == 1
            _no_key(out, err)
            nursery.cancel_scope.cancel()


async def test_stellate_agent_masks_a_key_in_its_stop_line() -> None:
    """A server refusing the registration with the key in its text: the agent stops (exit 2)
    and its stop line says why without the key."""
    FIGURES["key leak cases tried"] += 1
    from stellate.adapters.ws_server import serve_websocket

    async def refuse(conn: Any, _info: Any) -> None:
        await conn.receive()
        error = {"type": "error", "status": "error", "error": f"unwelcome ({ECHOED_KEY})"}
        await conn.send(json.dumps(error))
        await conn.aclose(1000, "no")

    with trio.fail_after(HANG_GUARD):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(partial(serve_websocket, refuse, "127.0.0.1", 0))
            code, out, err = await _run(
                "agent",
                "--server",
                f"ws://127.0.0.1:{port}/ws",
                "--device-id",
                "d1",
                "--api-key",
                ECHOED_KEY,
            )
            assert code == 2 and "stopped" in err and "unwelcome (***)" in err, err
            _no_key(out, err)
            nursery.cancel_scope.cancel()
