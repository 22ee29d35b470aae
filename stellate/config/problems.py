"""What a failed load reports: a list of problems, each one line an editor can jump to."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

import attrs

from ..errors import LocalError


@attrs.frozen
class Problem:
    """One problem in a config file.

    ``str(problem)`` is ``FILE:LINE: FIELD: MESSAGE`` (the form compilers use, so editors and
    CI annotate the line); ``FIELD`` is left out for problems with the file as a whole. ``line``
    is 1-based; 0 means no line applies (the file could not be read).
    """

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        if self.field:
            return f"{self.file}:{self.line}: {self.field}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


class ConfigError(LocalError):
    """A config could not be loaded. ``problems`` holds every problem found, in file order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        header = f"invalid configuration ({count} problem{'' if count == 1 else 's'})"
        super().__init__("\n".join([header, *(f"  {problem}" for problem in self.problems)]))


def describe(value: Any, *, redact: bool = False) -> str:
    """How a YAML value reads in a message: ``string '5'``, ``float 3.9``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int):
        kind = "integer"
    elif isinstance(value, float):
        kind = "float"
    elif isinstance(value, str):
        kind = "string"
    elif isinstance(value, list):
        return "a list"
    elif isinstance(value, dict):
        return "a mapping"
    elif isinstance(value, datetime.datetime):
        return "timestamp" if redact else f"timestamp {value.isoformat()}"
    elif isinstance(value, datetime.date):
        return "date" if redact else f"date {value.isoformat()}"
    else:
        kind = type(value).__name__
    if redact:
        return kind
    if isinstance(value, bool):
        return f"{kind} {str(value).lower()}"
    return f"{kind} {value!r}"
