"""redact_url / redact_text / RedactingFilter."""

from __future__ import annotations

import json
import logging
import math
import sys
from collections.abc import Iterator

import pytest
from log_records import filtered_logger

from stellate.text import redact
from stellate.text.redact import (
    LOG_FILTER,
    RedactingFilter,
    add_log_secret,
    install_log_redaction,
    redact_text,
    redact_url,
    safe_json,
    shown,
)


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


# -- the spellings of a key, the filter's parts, and what the process prints -----------------------


@pytest.fixture
def process_key() -> Iterator[str]:
    """A key handed to the process-wide filter, taken back after the test."""
    saved = set(LOG_FILTER._secrets)
    add_log_secret('k"é y')
    try:
        yield 'k"é y'
    finally:
        LOG_FILTER._secrets.clear()
        LOG_FILTER._secrets.update(saved)


@pytest.mark.parametrize(
    ("secret", "spelling"),
    [
        ("k é/y", "k é/y"),  # as it is
        ("k é/y", "k%20%C3%A9%2Fy"),  # percent-encoded, as in a URL
        ("k é/y", "k+%C3%A9%2Fy"),  # form-encoded
        ("k\x1bey", "k\\x1bey"),  # escaped, as peer text is shown
        ('k"é', 'k\\"\\u00e9'),  # JSON-escaped, ASCII only
        ('k"é', 'k\\"é'),  # JSON-escaped, non-ASCII kept
    ],
)
def test_a_literal_secret_is_masked_in_every_spelling_it_travels_in(
    secret: str, spelling: str
) -> None:
    assert redact_text(f"<{spelling}>", [secret]) == "<***>"


def test_a_spelling_is_masked_whole_even_when_another_is_inside_it() -> None:
    # "ab%" percent-encoded is "ab%25": masked whole, not as "ab%" then a stray "25".
    assert redact_text("[ab%25] [ab%]", ["ab%"]) == "[***] [***]"


def test_an_empty_secret_is_ignored_and_masks_nothing() -> None:
    assert redact_text("key K9 and more", ["", "K9"]) == "key *** and more"
    filt = RedactingFilter(["", "K9"])
    filt.add_secret("")
    assert filt.secrets == frozenset({"K9"})
    saved = set(LOG_FILTER._secrets)
    add_log_secret("")
    add_log_secret(None)
    assert LOG_FILTER._secrets == saved


def test_text_without_a_parameter_or_a_scheme_is_left_as_it_is() -> None:
    for text in ("token abc", "a=1 token=2", "ws:/h?x", "://@"):
        assert redact_text(text) == (text if "://" not in text else "://@")
    assert redact_text("see ws://h/ws;token=abc") == "see ws://h/ws;token=***"
    assert redact_text("(wss://h/ws?token=***): refused") == "(wss://h/ws?token=***): refused"


def test_a_traceback_already_formatted_and_a_stack_are_redacted_keeping_their_lines() -> None:
    filt = RedactingFilter(["topsecret"])
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", None, None)
    record.exc_text = "Traceback:\n  key topsecret\x1b[2J\nValueError"
    record.stack_info = "Stack:\n  ws://h/ws?token=zzz\u200b"
    assert filt.filter(record)
    assert record.exc_text == "Traceback:\n  key ***\\x1b[2J\nValueError"
    assert record.stack_info == "Stack:\n  ws://h/ws?token=***"


def test_an_exception_is_formatted_once_and_redacted() -> None:
    filt = RedactingFilter(["topsecret"])
    try:
        raise ValueError("topsecret")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "m", None, sys.exc_info())
    assert filt.filter(record)
    assert record.exc_text is not None and record.exc_text.endswith("ValueError: ***")


def test_a_record_whose_message_cannot_be_formatted_is_passed_on_unchanged() -> None:
    filt = RedactingFilter(["k"])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d k", ("not a number",), None)
    assert filt.filter(record)
    assert record.msg == "%d k" and record.args == ("not a number",)


def test_the_filter_is_installed_once_on_each_handler_of_the_root_by_default() -> None:
    root = logging.getLogger()
    handler = logging.NullHandler()
    root.addHandler(handler)
    try:
        install_log_redaction()
        install_log_redaction()
        assert handler.filters.count(LOG_FILTER) == 1
    finally:
        root.removeHandler(handler)
    own = logging.getLogger("stellate.test.redact")
    mine = logging.NullHandler()
    own.addHandler(mine)
    try:
        install_log_redaction(own)
        assert mine.filters == [LOG_FILTER]
    finally:
        own.removeHandler(mine)


def test_shown_masks_the_process_keys_escapes_and_cuts(process_key: str) -> None:
    assert shown(f"echo {process_key}\n") == "echo ***\\n"
    assert shown("x" * 30, limit=10) == "x" * 10 + "…(20 more characters)"

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert shown(Unprintable()) == "<unprintable Unprintable: RuntimeError>"


def test_safe_json_masks_keys_and_url_parameters_in_strings_and_keys(process_key: str) -> None:
    value = {
        "url": "ws://h/ws?token=abc",
        process_key: [process_key, 1, 2.5, True, None],
        "nested": ({"x": f"say {process_key}"},),
    }
    assert json.loads(safe_json(value)) == {
        "url": "ws://h/ws?token=***",
        "***": ["***", 1, 2.5, True, None],
        "nested": [{"x": "say ***"}],
    }


def test_safe_json_is_plain_json_when_nothing_needs_masking(process_key: str) -> None:
    value = {"a": [1, "two", None], "b": {"c": 3.5}}
    assert safe_json(value, sort_keys=True) == json.dumps(value, sort_keys=True)


def test_safe_json_writes_what_json_cannot_hold_as_null_or_its_masked_text(
    process_key: str,
) -> None:
    class Thing:
        def __str__(self) -> str:
            return "thing ws://u:pw@h/"

    value = {"nan": math.nan, "inf": -math.inf, "ok": 1.0, "thing": Thing(), 3: "three"}
    assert json.loads(safe_json(value)) == {
        "nan": None,
        "inf": None,
        "ok": 1.0,
        "thing": "thing ws://***@h/",
        "3": "three",
    }
    assert redact._redacted(7, frozenset()) == 7 and redact._redacted(False, frozenset()) is False


def test_safe_json_is_always_valid_json_even_with_nothing_to_mask() -> None:
    assert safe_json({"x": math.nan, "y": [math.inf]}) == '{"x": null, "y": [null]}'
    assert safe_json({"url": "ws://h/ws?token=abc"}) == '{"url": "ws://h/ws?token=***"}'


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("ws://u:p@h/ws", 100, "ws://***@h/ws"),  # short: all of it, redacted
        ("ws://u:p@h/ws", 13, "ws://***@h/ws"),  # exactly the limit
        ("see ws://user:secret@h", 12, "see ws://***"),  # the cut falls inside the userinfo
        ("see ws://host/path", 15, "see ws://host/p"),  # past the authority: nothing hidden
        ("a?token=abcdef", 10, "a?token=***"),  # a secret parameter's value cut
        ("plain text", 5, "plain"),
    ],
)
def test_redact_start_looks_at_the_start_and_hides_what_a_cut_leaves_open(
    text: str, limit: int, expected: str
) -> None:
    assert redact.redact_start(text, limit) == expected
