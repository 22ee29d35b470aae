"""redact_url / redact_text / RedactingFilter."""

from __future__ import annotations

import logging

import pytest
from log_records import filtered_logger

from stellate.text.redact import RedactingFilter, redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://127.0.0.1:5005/ws?token=abc", "ws://127.0.0.1:5005/ws?token=***"),
        ("ws://h/ws", "ws://h/ws"),
        ("ws://h/ws?token=", "ws://h/ws?token=***"),
        ("ws://h/ws?a=1&api_key=x&b=2", "ws://h/ws?a=1&api_key=***&b=2"),
        ("wss://h/ws?Client_Secret=x&password=y", "wss://h/ws?Client_Secret=***&password=***"),
        ("wss://bob:hunter2@h:443/ws", "wss://***@h:443/ws"),
        ("wss://bob@h/ws", "wss://***@h/ws"),
        ("ws://h/ws?token=a%26b&x=1#frag", "ws://h/ws?token=***&x=1#***"),
        ("ws://h/ws?debug=1&name=token", "ws://h/ws?debug=1&name=token"),
        ("ws://[::1:bad/ws?token=s", "ws://[::1:bad/ws?token=***"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_finds_urls_and_literal_secrets() -> None:
    text = "retry ws://h:1/ws?token=abc&x=1, proxy http://u:pw@p/ and key K€Y / K%E2%82%ACY"
    out = redact_text(text, ["K€Y"])
    assert "abc" not in out and "pw@" not in out and "K€Y" not in out and "%E2%82%AC" not in out
    assert "x=1" in out and "ws://h:1/ws?token=***" in out


def test_filter_redacts_messages_args_and_tracebacks() -> None:
    filt = RedactingFilter(["topsecret"])
    logger, stream = filtered_logger(filt)
    logger.info("connecting to %s", "ws://h/ws?token=topsecret")
    logger.info("key is %s", "topsecret")
    try:
        raise ValueError("bad key topsecret in ws://h/ws?token=zzz")
    except ValueError:
        logger.exception("failed")
    filt.add_secret("later")
    logger.warning("later on")
    out = stream.getvalue()
    assert "topsecret" not in out and "zzz" not in out and "later" not in out
    assert "ws://h/ws?token=***" in out and "ValueError" in out


def test_filter_keeps_ordinary_records_untouched() -> None:
    filt = RedactingFilter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "n=%d", (3,), None)
    assert filt.filter(record)
    assert record.args == (3,) and record.getMessage() == "n=3"


def test_a_logged_message_is_cut_after_ten_thousand_characters() -> None:
    """A log record's message is cut after 10,000 characters (``MESSAGE_LIMIT``), the cut said."""
    filt = RedactingFilter()
    for length, kept, cut in ((10_000, 10_000, 0), (10_001, 10_000, 1), (25_000, 10_000, 15_000)):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "a" * length, None, None)
        assert filt.filter(record)
        message = record.getMessage()
        assert message.startswith("a" * kept) and not message.startswith("a" * (kept + 1))
        assert message.endswith(f"…({cut} more characters)") if cut else message == "a" * length
