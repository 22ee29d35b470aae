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
  last one);
* **a constellation's id names its target**: ``TASK@D`` registers with ``target_id`` ``D`` and
  no other (:func:`target_problem`), so it can neither read another device's telemetry nor
  hold an id for a device that is not there (the server also wants ``D`` connected);
* **no look-alikes.** Ids held together (a server's registry, a config's devices, a manager's)
  must have different *skeletons* (Unicode Technical Standard #39, :func:`skeleton`): while
  ``dev-o`` is held, ``dev-\u043e`` (Cyrillic о) is not another id but a look-alike of it, and
  is refused (:class:`LookAlikes`); so are ``dev-0`` beside ``dev-O``. The skeleton maps each
  character to its prototype from Unicode's confusables data (``confusables.map``, version
  17.0.0): ``1`` and ``I`` read as ``l``, ``m`` as ``rn``, and so on.

Functions return the problem as a message (``None`` when the id is fine); the message never
repeats the id, so callers show it escaped (:func:`stellate.text.escape.escape_text`); a
look-alike's message names the id it looks like, escaped.
"""

from __future__ import annotations

import functools
import unicodedata
from importlib import resources

from ..text.escape import escape_text, is_hidden
from .messages import ClientType
from .rejections import INVALID_ID

__all__ = [
    "MAX_ID_LENGTH",
    "SEPARATOR",
    "LookAlikes",
    "client_id_problem",
    "constellation_id",
    "device_id_problem",
    "id_refusal",
    "look_alike_problem",
    "looks_like",
    "registration_refusal",
    "skeleton",
    "target_problem",
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
    return _refusal(client_id, client_type, client_id_problem(client_id, client_type))


def registration_refusal(
    client_id: str, client_type: ClientType, target_id: object, held: str | None
) -> str | None:
    """The sentence a server refuses a register frame's id with (``None``: it may register):
    the id rule (:func:`id_refusal`), then a constellation's target (:func:`target_problem`),
    then a look-alike of ``held``, the id the server holds with the same skeleton."""
    refusal = id_refusal(client_id, client_type)
    if refusal is not None:
        return refusal
    problem = None
    if client_type is ClientType.CONSTELLATION:
        problem = target_problem(client_id, target_id)
    if problem is None and held is not None:
        problem = look_alike_problem(client_id, held)
    return _refusal(client_id, client_type, problem)


def _refusal(client_id: object, client_type: ClientType, problem: str | None) -> str | None:
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


def target_problem(client_id: str, target_id: object) -> str | None:
    """Why a constellation registering as ``client_id`` may not name ``target_id``.

    ``TASK@D`` acts for ``D`` and nothing else: a missing ``target_id`` or another device's
    would let the id squat (held while ``D`` is not there, refusing the manager that needs it
    later) or lie (reading another device's telemetry under ``D``'s name).
    """
    device = client_id.rpartition(SEPARATOR)[2]
    if target_id is None:
        return f"a constellation must name its target_id: {escape_text(repr(device), limit=80)}"
    if target_id != device:
        return (
            f"names device {escape_text(repr(device), limit=80)} but its target_id is "
            f"{escape_text(repr(target_id), limit=80)}: TASK{SEPARATOR}DEVICE acts for DEVICE only"
        )
    return None


# -- look-alikes ---------------------------------------------------------------------------------


@functools.cache
def _prototypes() -> dict[int, str]:
    """Unicode TS #39's prototype of every confusable code point (``confusables.map``)."""
    table: dict[int, str] = {}
    text = resources.files(__package__).joinpath("confusables.map").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            source, *target = line.split()
            table[int(source, 16)] = "".join(chr(int(code, 16)) for code in target)
    return table


def skeleton(value: str) -> str:
    """The skeleton of Unicode Technical Standard #39 (section 4): NFD, each character replaced
    by its prototype, NFD again. Two ids with the same skeleton look alike (``dev-o`` and
    ``dev-\\u043e``, Cyrillic о; ``paypal`` and ``раураl``; ``rn`` and ``m``)."""
    mapped = unicodedata.normalize("NFD", value).translate(_prototypes())
    return unicodedata.normalize("NFD", mapped)


def looks_like(one: str, other: str) -> bool:
    """Two different ids that a reader could take for one another."""
    return one != other and skeleton(one) == skeleton(other)


class LookAlikes:
    """Ids held somewhere (a server's registry, a config, a manager), by skeleton: answers
    which held id a new one would be confused with. Several ids may share a skeleton only
    when they were added regardless (the caller decides); :meth:`of` names one of them."""

    def __init__(self) -> None:
        self._ids: dict[str, set[str]] = {}

    def of(self, value: str) -> str | None:
        """A held id that ``value`` looks like without being it, or ``None``."""
        for held in sorted(self._ids.get(skeleton(value), ())):
            if held != value:
                return held
        return None

    def add(self, value: str) -> None:
        self._ids.setdefault(skeleton(value), set()).add(value)

    def discard(self, value: str) -> None:
        key = skeleton(value)
        held = self._ids.get(key)
        if held is not None:
            held.discard(value)
            if not held:
                del self._ids[key]


def look_alike_problem(value: str, held: str) -> str:
    """The message refusing ``value`` because it looks like ``held`` (shown escaped)."""
    return (
        f"looks like {escape_text(repr(held), limit=80)} (the same skeleton, Unicode TS #39): "
        "ids a reader could confuse are refused"
    )
