"""Flatten a cattrs error tree into findings: a field path and a message each.

cattrs reports a failed structure as nested exception groups whose notes name the attribute or
index at each level (``cattrs.transform_error`` walks the same tree to build ``$.a[0].b``
strings). Here the path is kept as a tuple, so the loader can follow it through the YAML node
tree to a line number, and each leaf becomes a message written for the person editing the file.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator

import attrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from ..errors import FieldPath, InvalidFields
from .converter import TypeMismatch, inline_fields, known_keys
from .model import SECRET_FIELDS


@attrs.frozen
class Finding:
    """One problem at ``path``; ``at_key`` when the key itself (not its value) is at fault."""

    path: FieldPath
    message: str
    at_key: bool = False


def unknown_key_message(key: object, known: list[str]) -> str:
    """``unknown key 'max_retrys' (did you mean 'max_retries'?)``; lists the keys otherwise."""
    message = f"unknown key {key!r}"
    close = difflib.get_close_matches(key, known, n=1) if isinstance(key, str) else []
    if close:
        return f"{message} (did you mean {close[0]!r}?)"
    return f"{message} (expected one of: {', '.join(known)})"


def findings(exc: BaseException, path: FieldPath = ()) -> Iterator[Finding]:
    """Every leaf problem under ``exc``, with its path from the document root."""
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        inline = inline_fields(exc.cl)
        for sub, note in with_notes:  # an inline field's keys are written beside its siblings
            yield from findings(sub, path if note.name in inline else (*path, note.name))
        for sub in without:
            yield from findings(sub, path)
    elif isinstance(exc, IterableValidationError):
        with_index, rest = exc.group_exceptions()
        for sub, index_note in with_index:
            yield from findings(sub, (*path, index_note.index))
        for sub in rest:
            yield from findings(sub, path)
    elif isinstance(exc, ForbiddenExtraKeysError):
        known = known_keys(exc.cl)
        for key in sorted(exc.extra_fields, key=str):
            yield Finding((*path, key), unknown_key_message(key, known), at_key=True)
    elif isinstance(exc, InvalidFields):
        for relative, message in exc.violations:
            yield Finding((*path, *relative), message)
    elif isinstance(exc, TypeMismatch):
        secret = bool(path) and path[-1] in SECRET_FIELDS
        yield Finding(path, exc.message(redact=secret))
    elif isinstance(exc, KeyError):
        yield Finding(path, "required key missing")
    else:  # pragma: no cover - every hook raises one of the above; keep the report anyway
        yield Finding(path, f"invalid value ({type(exc).__name__}: {exc})")
