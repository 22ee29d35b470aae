"""JSON codec for AIP frames: strict on input, reference-shaped on output.

Input rules (what a compatible peer may send): absent keys take their defaults (an absent
``client_type`` means ``device``), unknown keys are ignored, and everything else is checked
exactly — cattrs' default of converting ``"5"`` to ``5`` or ``"false"`` to ``True`` would let a
malformed peer through, so every scalar gets an exact-type hook. Output emits every key in the
reference's order, nulls included, so captured frames and ours compare key by key.
"""

from __future__ import annotations

import enum
import json
from typing import Any, TypeVar

import cattrs

from .messages import (
    ClientMessage,
    ClientMessageType,
    ClientType,
    ServerMessage,
    ServerMessageType,
    TaskStatus,
)

__all__ = [
    "ProtocolError",
    "decode_client",
    "decode_server",
    "encode_client",
    "encode_server",
]


class ProtocolError(ValueError):
    """A frame is not a valid AIP message; the text says what is wrong and where."""


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


def _decode(text: str | bytes, cls: type[_M]) -> _M:
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ProtocolError(f"frame is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("frame is nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"frame is not a JSON object: got {_json_type(data)}")
    try:
        return _converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        lines = cattrs.transform_error(exc, path="$", format_exception=_format_exception)
        raise ProtocolError(f"invalid {cls.__name__}: " + "; ".join(lines)) from None


def _encode(message: ClientMessage | ServerMessage) -> str:
    data = _converter.unstructure(message)
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))  # as the reference does
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            # A string echoed from a peer may hold a lone surrogate, which UTF-8 (and so a
            # WebSocket text frame) cannot carry: send the same JSON value, escaped.
            text = json.dumps(data, separators=(",", ":"))
    return text


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
