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
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from hardening_support import FIGURES
from hypothesis import given, settings
from hypothesis import strategies as st
from log_records import Records
from profiles import examples

from stellate import Timing
from stellate.adapters.memory import MemoryNetwork
from stellate.adapters.websocket import WebSocketConnector
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
from stellate.text.redact import LOG_FILTER
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
