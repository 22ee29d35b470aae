"""What an id may be: the one rule the config, the server, the agent and the manager apply.

An id names a device on a server, in a config, in logs and on the terminal, so it must be text
a person can read and compare. An id is refused (never registered, never loaded) unless:

* it is 1 to :data:`MAX_ID_LENGTH` characters long;
* every character is visible: no whitespace, no control, format (zero-width, bidi override),
  surrogate, private-use or unassigned code point, no invisible "default ignorable" letter
  (:func:`stellate.text.escape.is_hidden` is that test), so ``good1``, ``good1\\u200b``, ``good1 ``
  and ``good1\\x00`` cannot be four different devices;
* it is in Unicode normal form C, so ``é`` written as one code point or as ``e`` plus a
  combining accent is not two ids;
* **roles have separate id shapes.** A constellation registers for device ``D`` as
  ``TASK@D`` (the reference's form, :func:`constellation_id`); so a *device* id may not contain
  :data:`SEPARATOR` and a *constellation* id must: a device named ``task@dev`` can never hold
  the id a constellation needs for ``dev``, and a constellation can never hold a device's id.
  A task name follows the id rule and may itself contain ``@`` (the device is what follows the
  last one).

Functions return the problem as a message (``None`` when the id is fine); the message never
repeats the id, so callers show it escaped (:func:`stellate.text.escape.escape_text`).
"""

from __future__ import annotations

import unicodedata

from ..text.escape import escape_text, is_hidden
from .messages import ClientType
from .rejections import INVALID_ID

__all__ = [
    "MAX_ID_LENGTH",
    "SEPARATOR",
    "client_id_problem",
    "constellation_id",
    "device_id_problem",
    "task_name_problem",
]

#: Longest device id or task name, in characters.
MAX_ID_LENGTH = 128
#: Separates the task name from the device id in a constellation's client id.
SEPARATOR = "@"


def _text_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters, got {len(value)}"
    for index, ch in enumerate(value):
        if ch.isspace():
            return f"must not contain whitespace (U+{ord(ch):04X} at position {index})"
        if is_hidden(ch):
            name = unicodedata.name(ch, "a control or unassigned code point")
            where = f"U+{ord(ch):04X} {name} at position {index}"
            return f"must not contain invisible characters ({where})"
    if not unicodedata.is_normalized("NFC", value):
        return "must be in Unicode normal form C (an accented letter as one character)"
    return None


def device_id_problem(value: object) -> str | None:
    """Why ``value`` cannot be a device id (``None``: it can)."""
    problem = _text_problem(value)
    if problem is None and SEPARATOR in str(value):
        return (
            f"must not contain {SEPARATOR!r} (it separates a constellation's task name from "
            f"the device id: TASK{SEPARATOR}DEVICE)"
        )
    return problem


def task_name_problem(value: object) -> str | None:
    """Why ``value`` cannot be a constellation's task name (``None``: it can)."""
    return _text_problem(value)


def constellation_id(task_name: str, device_id: str) -> str:
    """The client id a constellation registers with for ``device_id``: ``TASK@DEVICE``."""
    return f"{task_name}{SEPARATOR}{device_id}"


def id_refusal(client_id: object, client_type: ClientType) -> str | None:
    """The sentence a refused id gets (``invalid device id 'a b': must not contain
    whitespace ...``; ``None``: the id is fine), the same from the server, the manager and the
    agent. The id is shown escaped and cut: it may be anything a peer or a config sent."""
    problem = client_id_problem(client_id, client_type)
    if problem is None:
        return None
    shown = escape_text(repr(client_id), limit=80)
    return INVALID_ID.format(role=client_type.value, client_id=shown, problem=problem)


def client_id_problem(client_id: object, client_type: ClientType) -> str | None:
    """Why a register frame's ``client_id`` is refused for ``client_type`` (``None``: fine)."""
    if client_type is ClientType.DEVICE:
        return device_id_problem(client_id)
    if not isinstance(client_id, str) or SEPARATOR not in client_id:
        return f"a constellation's client_id must be TASK{SEPARATOR}DEVICE"
    task, _, device = client_id.rpartition(SEPARATOR)
    problem = task_name_problem(task)
    if problem is not None:
        return f"task name {problem}"
    problem = device_id_problem(device)
    if problem is not None:
        return f"device id {problem}"
    return None
