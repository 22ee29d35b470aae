"""stellate.text.urls: the one reading of a WebSocket URL (parse, rules, token, redaction)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stellate.text.urls import InvalidUrl, WsUrl, parse_ws_url, redact_url, token_of, url_problems


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://h/ws", WsUrl("h", 80, "/ws", False, "ws://h/ws")),
        ("wss://h", WsUrl("h", 443, "/", True, "wss://h")),
        (
            "ws://h:5005/ws?a=1&token=k",
            WsUrl("h", 5005, "/ws?a=1&token=k", False, "ws://h:5005/ws?a=1&token=***"),
        ),
        ("wss://[::1]:8443/x", WsUrl("::1", 8443, "/x", True, "wss://[::1]:8443/x")),
        ("WS://H/ws", WsUrl("h", 80, "/ws", False, "WS://H/ws")),
    ],
)
def test_parse_ws_url(url: str, expected: WsUrl) -> None:
    assert parse_ws_url(url) == expected


def test_host_header_names_the_port_only_when_not_the_default() -> None:
    assert parse_ws_url("ws://h/ws").host_header == "h"
    assert parse_ws_url("ws://h:443/ws").host_header == "h:443"
    assert parse_ws_url("wss://h:443/ws").host_header == "h"
    assert parse_ws_url("wss://[::1]:9/ws").host_header == "[::1]:9"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://h/ws", "must be a ws:// or wss:// URL"),
        ("h:5005", "must be a ws:// or wss:// URL"),
        ("ws:///ws", "has no host"),
        ("ws://h:0/ws", "has port 0"),
        ("ws://h:/ws", "has an empty port"),
        ("ws://[::1]:/ws", "has an empty port"),
        ("ws://h:65536/ws", "has an invalid port (1-65535)"),
        ("ws://h:-1/ws", "has an invalid port (1-65535)"),
        ("ws://h:x/ws", "has an invalid port (1-65535)"),
        ("ws://h/ws#frag", "must not have a fragment"),
        ("ws://h/ws#", "must not have a fragment"),
        ("ws://h/w s", "must not contain whitespace or control characters (U+0020 SPACE)"),
        ("ws://h/ws\n", "must not contain whitespace or control characters (U+000A"),
        ("ws://h/\u200bws", "(U+200B ZERO WIDTH SPACE)"),
        ("ws://[::1/ws", "is not a valid URL"),
    ],
)
def test_every_rule_is_a_problem_and_parse_refuses(url: str, problem: str) -> None:
    problems = url_problems(url)
    assert any(problem in p for p in problems), problems
    with pytest.raises(InvalidUrl, match=r".+"):
        parse_ws_url(url)


def test_problems_show_the_url_redacted() -> None:
    (problem,) = url_problems("ws://u:pw@h:0/ws?token=K")
    assert problem == "has port 0 (a server's port is 1-65535), got 'ws://***@h:0/ws?token=***'"


@pytest.mark.parametrize(
    ("target", "token"),
    [
        ("/ws?token=K", "K"),
        ("/ws?a=1&token=K%26Y&b", "K&Y"),
        ("/ws?token=a+b", "a b"),
        ("/ws?token=", ""),
        ("/ws?token=1&token=1", None),  # ambiguous: not authenticated
        ("/ws?x_token=K", None),
        ("/ws", None),
        ("ws://h/ws?token=K#token=Z", "K"),
    ],
)
def test_token_of(target: str, token: str | None) -> None:
    assert token_of(target) == token


@given(st.text())
def test_redact_url_takes_any_text_and_is_idempotent(text: str) -> None:
    shown = redact_url(text)
    assert redact_url(shown) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ws://h/ws?tok\nen=K", "ws://h/ws?token=***"),  # urllib deletes the newline
        ("ws://h/ws?\tpassword=K&x=1", "ws://h/ws?password=***&x=1"),
        ("ws://K@h/ws", "ws://***@h/ws"),
        ("ws://h/ws#K", "ws://h/ws#***"),
        ("ws://h/ws?%74oken=K", "ws://h/ws?%74oken=***"),
    ],
)
def test_redaction_reads_the_url_as_urllib_does(url: str, shown: str) -> None:
    assert redact_url(url) == shown
