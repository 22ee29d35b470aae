"""Issue 10, classes 3 (second half) and 5: text from outside can neither forge a log line nor
repaint a terminal, and an id is readable text with one spelling.

``escape_text`` is checked on any string (nothing hidden survives, plain text is untouched),
the log filter on records carrying peer text, the id rule on look-alikes drawn by hypothesis
(each refused by the config, the server and the agent alike), and the display on the
strings a peer chooses (its platform, hostname, error texts).
"""

from __future__ import annotations

import io
import logging
import unicodedata

import pytest
from hardening_support import FIGURES
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from stellate.escape import escape_text, is_hidden
from stellate.protocol import ClientType
from stellate.protocol.ids import (
    MAX_ID_LENGTH,
    client_id_problem,
    constellation_id,
    device_id_problem,
)
from stellate.redact import RedactingFilter

HIDDEN_SAMPLES = [
    "\n",
    "\r",
    "\x1b",
    "\x00",
    "\x7f",
    "\x85",
    "\u00a0",
    "\u00ad",
    "\u200b",
    "\u200d",
    "\u202e",
    "\u2028",
    "\u2066",
    "\u3164",
    "\ufeff",
    "\ud800",
    "\ue000",
    "\U000e0041",
    "\ufe0f",
]


def visible(text: str) -> bool:
    return not any(is_hidden(ch) for ch in text)


@settings(max_examples=examples(500))
@given(st.text())
def test_escaped_text_has_nothing_hidden_and_plain_text_is_untouched(text: str) -> None:
    FIGURES["hostile texts tried"] += 1
    out = escape_text(text, limit=None)
    assert visible(out)
    assert "\n" not in out and "\x1b" not in out
    out.encode("utf-8")  # no lone surrogate left: every terminal can print it
    if visible(text):
        assert out == text


@given(st.text(min_size=1), st.integers(1, 50))
def test_escaped_text_is_cut_at_the_limit(text: str, limit: int) -> None:
    out = escape_text(text, limit=limit)
    if len(text) > limit:
        assert out.endswith(f"…({len(text) - limit} more characters)")
    else:
        assert "more characters" not in out or "more characters" in text


@pytest.mark.parametrize("ch", HIDDEN_SAMPLES)
def test_each_kind_of_hidden_character_is_escaped(ch: str) -> None:
    assert is_hidden(ch)
    out = escape_text(f"a{ch}b")
    assert out.startswith("a\\") and out.endswith("b") and visible(out)


def test_escape_takes_objects_whose_str_fails() -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert escape_text(Hostile()) == "<unprintable Hostile: RuntimeError>"


# -- the log filter ---------------------------------------------------------------------------


def logged(filt: RedactingFilter, message: str, *args: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(filt)
    logger = logging.getLogger(f"test_hostile_text.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.warning(message, *args)
    return stream.getvalue()


@settings(max_examples=examples(200))
@given(peer=st.text())
def test_a_peer_cannot_forge_a_log_line(peer: str) -> None:
    FIGURES["hostile texts tried"] += 1
    out = logged(RedactingFilter(), "device %s said: %s", peer, peer)
    assert out.count("\n") == 1 and out.endswith("\n")  # one record, one line
    assert visible(out[:-1])


def test_the_issue_examples_stay_on_their_line() -> None:
    forged = "dev1\n2026-01-01 ERROR stellate.server: fake line\x1b[2J\u202eevil"
    out = logged(RedactingFilter(["KEY"]), "registered %s with KEY", forged)
    assert out == (
        "registered dev1\\n2026-01-01 ERROR stellate.server: fake line\\x1b[2J\\u202eevil "
        "with ***\n"
    )


# -- the id rule ------------------------------------------------------------------------------

LOOK_ALIKES = [
    "good1\u200b",
    "good1 ",
    " good1",
    "good1\x00",
    "good1\n",
    "go\u00adod1",
    "good1\ufeff",
    "good1\u202e",
    "g\u3164ood1",
    "good1\ufe0f",
    "goode\u0301",  # NFD: 'e' + combining acute
    "good\u00a01",
    "good1\ud800",
    "a" * (MAX_ID_LENGTH + 1),
    "",
    "task@good1",
]


@pytest.mark.parametrize("device_id", LOOK_ALIKES)
def test_look_alike_and_malformed_device_ids_are_refused(device_id: str) -> None:
    assert device_id_problem(device_id) is not None
    assert client_id_problem(device_id, ClientType.DEVICE) is not None


@pytest.mark.parametrize(
    "device_id", ["good1", "windowsagent", "dev-01.lab_2", "gerät", "goodé", "工作站", "a" * 128]
)
def test_ordinary_ids_are_fine(device_id: str) -> None:
    assert device_id_problem(device_id) is None
    assert client_id_problem(constellation_id("task", device_id), ClientType.CONSTELLATION) is None


@given(st.text(max_size=MAX_ID_LENGTH + 5))
def test_an_accepted_id_is_visible_nfc_text_of_bounded_length(text: str) -> None:
    FIGURES["ids tried"] += 1
    if device_id_problem(text) is None:
        assert 1 <= len(text) <= MAX_ID_LENGTH
        assert visible(text) and not any(ch.isspace() for ch in text)
        assert unicodedata.is_normalized("NFC", text) and "@" not in text
        assert escape_text(text) == text
        text.encode("utf-8")


def test_roles_have_separate_id_shapes() -> None:
    """Issue 10, class 7: a device cannot hold ``task@dev``, a constellation cannot hold
    ``dev``."""
    assert client_id_problem("task@dev", ClientType.DEVICE) is not None
    assert client_id_problem("dev", ClientType.CONSTELLATION) is not None
    assert client_id_problem("task@dev", ClientType.CONSTELLATION) is None
    assert client_id_problem("my@task@dev", ClientType.CONSTELLATION) is None  # task "my@task"
    assert client_id_problem("task@", ClientType.CONSTELLATION) is not None
    assert client_id_problem("@dev", ClientType.CONSTELLATION) is not None
    assert client_id_problem("task@dev\u200b", ClientType.CONSTELLATION) is not None
