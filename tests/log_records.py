"""Every log record of the process while installed: for tests that check what a peer or an
input can make stellate log (no traceback, no key, one short line), whoever logs it."""

from __future__ import annotations

import logging


class Records(logging.Handler):
    """A context manager: on the root logger at DEBUG while inside, everything kept."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._level = logging.NOTSET

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.exc_info or r.stack_info]

    def ours(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name.startswith("stellate")]

    def __enter__(self) -> Records:
        root = logging.getLogger()
        self._level = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._level)
