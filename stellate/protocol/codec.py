"""JSON codec for AIP frames: strict on input, reference-shaped on output.

Input rules (what a compatible peer may send): absent keys take their defaults (an absent
``client_type`` means ``device``), unknown keys are ignored, and everything else is checked
exactly — cattrs' default of converting ``"5"`` to ``5`` or ``"false"`` to ``True`` would let a
malformed peer through, so every scalar gets an exact-type hook. Output emits every key in the
reference's order, nulls included, so captured frames and ours compare key by key.

Bounds: a frame is JSON as RFC 8259 defines it, nested at most :data:`MAX_DEPTH` levels: no
``NaN`` or ``Infinity``, and no number too large for a double (``1e400`` would decode as
infinity, which no JSON text can carry back out). The output side refuses the same, so whatever
a peer gave us can be sent on, and whatever we send decodes on the other side.

Speed: every frame a fleet exchanges passes here, most of them heartbeats. A valid frame is
checked field by field against a plan made once per message class (``_FastPath``), without
cattrs' per-field dispatch; a frame that fails any check takes the cattrs path, which gives the
same verdict and says what is wrong. Frames that differ only in a few strings (a heartbeat's
time stamp, an ack's response id) are encoded once and filled in per use (``FrameTemplate``).
Both give exactly what the general path gives (the property tests compare them).
"""

from __future__ import annotations

import enum
import inspect
import json
import math
import uuid
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any, Generic, TypeVar

import attrs
import cattrs

from ..errors import RemoteError
from .messages import (
    ClientMessage,
    ClientMessageType,
    ClientType,
    ServerMessage,
    ServerMessageType,
    TaskStatus,
)

__all__ = [
    "MAX_DEPTH",
    "FrameTemplate",
    "ProtocolError",
    "decode_client",
    "decode_server",
    "encode_client",
    "encode_server",
    "share_strings",
]


class ProtocolError(RemoteError, ValueError):
    """A frame is not a valid AIP message; the text says what is wrong and where."""


#: Deepest nesting of arrays and objects a frame may have, the frame's own object being level
#: 1 (a device's ``system_info`` sits at level 3). Deeper frames are refused where they are
#: decoded, so no peer-made value can exhaust the stack of whoever walks it next (the encoder,
#: ``copy.deepcopy``, a JSON printer).
MAX_DEPTH = 64


_E = TypeVar("_E", bound=enum.Enum)
_M = TypeVar("_M", ClientMessage, ServerMessage)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _shown(value: object) -> str:
    """The offending value as JSON, cut short: error texts end up in logs and error frames."""
    try:
        # ASCII escapes: a peer's lone surrogate must never reach an outgoing frame raw.
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = ascii(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _wrong_type(expected: str, value: object) -> TypeError:
    if value is None:
        return TypeError(f"expected {expected}, got null")
    return TypeError(f"expected {expected}, got {_json_type(value)} {_shown(value)}")


def _structure_str(value: object, _: object) -> str:
    if type(value) is not str:
        raise _wrong_type("string", value)
    return value


def _structure_object(value: object, _: object) -> dict[str, Any]:
    if type(value) is not dict:
        raise _wrong_type("object", value)
    return value


def _structure_array(value: object, _: object) -> list[Any]:
    if type(value) is not list:
        raise _wrong_type("array", value)
    return value


def _enum_hook(enum_type: type[_E]) -> Any:
    allowed = ", ".join(repr(member.value) for member in enum_type)

    def structure(value: object, _: object) -> _E:
        if type(value) is not str:
            raise _wrong_type("string", value)
        try:
            return enum_type(value)
        except ValueError:
            raise ValueError(f"unknown value {_shown(value)} (expected one of {allowed})") from None

    return structure


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    converter.register_structure_hook(str, _structure_str)
    # Parametrised generics are not classes, so they are matched by predicate.
    converter.register_structure_hook_func(lambda t: t == dict[str, Any], _structure_object)
    converter.register_structure_hook_func(lambda t: t == list[Any], _structure_array)
    for enum_type in (ClientMessageType, ServerMessageType, TaskStatus, ClientType):
        converter.register_structure_hook(enum_type, _enum_hook(enum_type))
    return converter


_converter = _make_converter()


def _format_exception(exc: BaseException, _type: object) -> str:
    if isinstance(exc, KeyError):
        return "required key missing"
    return str(exc)


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity, which no other JSON parser does.
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent, refused when a double cannot hold it."""
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(f"number {shown} is out of range")
    return value


def depth_of(value: object) -> int:
    """How many levels of arrays and objects ``value`` nests (0 for a scalar), without
    recursion: a value too deep for the stack must still be measured."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        kind = type(item)
        if kind is dict:
            children: Any = item.values()  # type: ignore[attr-defined]
        elif kind is list:
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if type(child) in (dict, list))
    return deepest


def _too_deep(text: str | bytes, data: dict[str, Any]) -> bool:
    # Counting brackets is cheap and settles nearly every frame (a heartbeat has one object).
    if isinstance(text, str):
        opened = text.count("{") + text.count("[")
    else:
        opened = text.count(b"{") + text.count(b"[")
    return opened > MAX_DEPTH and depth_of(data) > MAX_DEPTH


class _FastPath(Generic[_M]):
    """Builds a message from a decoded JSON object when every field is exactly valid.

    One check per field, planned once from the class: an enum field takes one of its strings,
    an optional string a string or null, an optional object or array a dict or list or null,
    ``Any`` anything. ``build`` returns None as soon as a check fails (or a required key is
    absent): the caller then runs the cattrs path, which gives the same verdict with a reason.
    """

    def __init__(self, cls: type[_M]) -> None:
        self._cls: type[_M] = cls
        attrs.resolve_types(cls)
        fields: tuple[attrs.Attribute[Any], ...] = attrs.fields(cls)
        self._plan: list[tuple[str, type | None, dict[str, Any] | None, bool, Any]] = []
        for field in fields:
            exact, members = self._check(field.type)
            required = field.default is attrs.NOTHING
            self._plan.append((field.name, exact, members, required, field.default))

    @staticmethod
    def _check(annotation: Any) -> tuple[type | None, dict[str, Any] | None]:
        """(the exact type a non-null value must have, the enum's members by value)."""
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            return str, {member.value: member for member in annotation}
        if annotation is Any:
            return None, None
        optional = {str | None: str, dict[str, Any] | None: dict, list[Any] | None: list}
        if annotation in optional:
            return optional[annotation], None
        raise TypeError(f"no fast check for {annotation!r}")  # a new field type: add one

    def build(self, data: dict[str, Any]) -> _M | None:
        values: dict[str, Any] = {}
        for name, exact, members, required, default in self._plan:
            if name not in data:
                if required:
                    return None
                values[name] = default
                continue
            value = data[name]
            if members is not None:  # an enum: never null
                if type(value) is not str or value not in members:
                    return None
                value = members[value]
            elif exact is not None and value is not None and type(value) is not exact:
                return None
            values[name] = value
        return self._cls(**values)


_FAST: dict[type[Any], _FastPath[Any]] = {
    ClientMessage: _FastPath(ClientMessage),
    ServerMessage: _FastPath(ServerMessage),
}


_TOO_DEEP = f"frame is nested more than {MAX_DEPTH} levels deep"


def _decode(text: str | bytes, cls: type[_M]) -> _M:
    try:
        data = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(_TOO_DEEP) from None
    if not isinstance(data, dict):
        raise ProtocolError(f"frame is not a JSON object: got {_json_type(data)}")
    if _too_deep(text, data):
        raise ProtocolError(_TOO_DEEP)
    message: _M | None = _FAST[cls].build(data)
    if message is not None:
        return message
    return _structure_strictly(data, cls)


def _structure_strictly(data: dict[str, Any], cls: type[_M]) -> _M:
    """The cattrs path: the reference for what is valid, and the source of the error texts."""
    try:
        return _converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        lines = cattrs.transform_error(exc, path="$", format_exception=_format_exception)
        raise ProtocolError(f"invalid {cls.__name__}: " + "; ".join(lines)) from None


def _encode(message: ClientMessage | ServerMessage) -> str:
    deepest = 1 + max(depth_of(value) for value in attrs.astuple(message, recurse=False))
    if deepest > MAX_DEPTH:
        raise ProtocolError(f"cannot encode the frame: {_TOO_DEEP} ({deepest})")
    return _dumps(_converter.unstructure(message))


def _dumps(data: dict[str, Any]) -> str:
    try:  # as the reference does, but never NaN or Infinity, which are not JSON
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise ProtocolError(f"cannot encode the frame as JSON: {exc}") from None
    if not text.isascii() and not _utf8_ok(text):
        # A string echoed from a peer may hold a lone surrogate, which UTF-8 (and so a
        # WebSocket text frame) cannot carry: send the same JSON value, escaped.
        text = json.dumps(data, separators=(",", ":"))
    return text


def _utf8_ok(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class FrameTemplate:
    """A frame encoded once, with some of its strings filled in per use.

    ``build`` makes the message from string values (a heartbeat from its client id and time
    stamp); ``fill(*values)`` returns exactly ``encode_*(build(*values))``, without building or
    serialising the message: the template encoded it once with a unique mark in each value's
    place, and only the values are escaped per use. A value that would change how the whole
    frame is escaped (a lone surrogate) takes the general path. One template serves every
    device: it holds no device's data.
    """

    __slots__ = ("_build", "_order", "_parts")

    def __init__(self, build: Callable[..., ClientMessage | ServerMessage]) -> None:
        count = len(inspect.signature(build).parameters)
        marks = [json.dumps(f"@@stellate-slot-{uuid.uuid4().hex}@@") for _ in range(count)]
        data = _converter.unstructure(build(*(json.loads(mark) for mark in marks)))
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        found = sorted((text.find(mark), i) for i, mark in enumerate(marks))
        self._build = build
        self._parts: tuple[str, ...] | None = None
        self._order = tuple(i for _, i in found)
        # The shortcut holds when the fixed text is sent as it is (no escaping of the whole
        # frame) and every value appears exactly once.
        if _utf8_ok(text) and all(at >= 0 and text.count(marks[i]) == 1 for at, i in found):
            parts, rest = [], text
            for i in self._order:
                before, _, rest = rest.partition(marks[i])
                parts.append(before)
            self._parts = (*parts, rest)

    def fill(self, *values: str) -> str:
        """``encode_*(build(*values))``, quickly."""
        parts = self._parts
        if (
            parts is None
            or len(values) != len(self._order)
            or not all(value.isascii() or _utf8_ok(value) for value in values)
        ):
            return _encode(self._build(*values))
        out = [parts[0]]
        for i, part in zip(self._order, parts[1:], strict=True):
            out.append(encode_basestring(values[i]))
            out.append(part)
        return "".join(out)


#: Short strings met in telemetry, one copy each (see ``share_strings``).
_SHARED: dict[str, str] = {}
#: At most this many shared strings; past it, new strings are kept as they come.
SHARED_STRINGS_CAP = 4096
_SHARED_LENGTH_CAP = 64
_SHARED_DEPTH_CAP = 8


def share_strings(value: Any, _depth: int = 0) -> Any:
    """``value`` (decoded JSON) with its short strings, keys included, replaced by shared copies.

    A fleet's devices report the same keys, platform names and feature names, and each decoded
    frame holds its own copy of every one of them for as long as the profiles that keep them
    live. The table is bounded (a peer cannot grow it without limit), and so is the depth
    walked: below it, values are kept as they are.
    """
    kind = type(value)
    if kind is str:
        if len(value) > _SHARED_LENGTH_CAP:
            return value
        shared = _SHARED.get(value)
        if shared is None:
            if len(_SHARED) >= SHARED_STRINGS_CAP:
                return value
            shared = _SHARED[value] = value
        return shared
    if _depth >= _SHARED_DEPTH_CAP:
        return value
    if kind is dict:
        return {share_strings(k): share_strings(v, _depth + 1) for k, v in value.items()}
    if kind is list:
        return [share_strings(v, _depth + 1) for v in value]
    return value


def decode_client(text: str | bytes) -> ClientMessage:
    """Parse a client → server frame.

    Raises:
        ProtocolError: not JSON, not an object, a wrong type, or an unknown enum value.
    """
    return _decode(text, ClientMessage)


def decode_server(text: str | bytes) -> ServerMessage:
    """Parse a server → client frame.

    Raises:
        ProtocolError: not JSON, not an object, a wrong type, or an unknown enum value.
    """
    return _decode(text, ServerMessage)


def encode_client(message: ClientMessage) -> str:
    """Serialise with every key of the reference, in its order, nulls included."""
    return _encode(message)


def encode_server(message: ServerMessage) -> str:
    """Serialise with every key of the reference, in its order, nulls included."""
    return _encode(message)
