"""The errors stellate raises: one root, split by where the fault lies (as h11 splits its own).

Every exception class of the package derives from :class:`StellateError`, so an application
catches one class to catch anything stellate raises; ``tests/api/test_errors.py`` walks every
module and holds each class to it. Below the root, the blame:

* :class:`LocalError`: the cause is on this side — the calling code, its arguments, its
  configuration file, the transition table. Calling again the same way fails the same way:
  fix the call. (``IllegalTransition``, ``UnknownDevice``, ``ConfigError``, ``InvalidFields``,
  ``InvalidUrl``, ``InsecureBindError``, ``SessionStateError``...)
* :class:`RemoteError`: the cause is at the other end of a connection — a peer that refused,
  misbehaved or went away, or the network between. Data about that peer, often worth another
  attempt later. (``TransportError`` and its ``ConnectError`` and ``ConnectionClosed``,
  ``ProtocolError``, ``AgentRefused``...)

A class that Python users would already catch by a builtin keeps that builtin as a second base
(``UnknownDevice`` is a ``KeyError``, ``InvalidFields`` a ``ValueError``), so code written
before the root existed still catches what it caught.

This module imports nothing of stellate: every layer may import it.
"""

from __future__ import annotations

__all__ = [
    "FieldPath",
    "InvalidFields",
    "LocalError",
    "RemoteError",
    "StellateError",
    "format_path",
]


class StellateError(Exception):
    """The root of every exception stellate defines."""


class LocalError(StellateError):
    """Our side is at fault: the call, its arguments or the configuration (fix them)."""


class RemoteError(StellateError):
    """The other end is at fault: a peer or the network (data about it; maybe retry later)."""


#: A field's position inside a document or an object: keys and list indices, outermost first.
FieldPath = tuple[str | int, ...]


def format_path(path: FieldPath) -> str:
    """``("devices", 0, "max_retries")`` → ``devices[0].max_retries``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


class InvalidFields(LocalError, ValueError):
    """One or more fields broke their rules; ``violations`` lists them all.

    Each violation is ``(path, message)``, the path relative to the object that raised. Raised by
    every value class that checks its fields when built (``Timing``, the config's classes), so
    one call names every broken field, not the first.
    """

    def __init__(self, violations: list[tuple[FieldPath, str]]) -> None:
        self.violations = tuple(violations)
        super().__init__(
            "; ".join(f"{format_path(path)}: {message}" for path, message in self.violations)
        )
