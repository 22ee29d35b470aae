"""Every log record of the process while installed: for tests that check what a peer or an
input can make stellate log (no traceback, no key, one short line), whoever logs it; and a
logger of its own behind a filter, for tests of a filter."""

from __future__ import annotations

import io
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


def filtered_logger(filt: logging.Filter) -> tuple[logging.Logger, io.StringIO]:
    """A fresh logger at DEBUG whose one handler writes through ``filt`` into the returned
    stream (nothing propagates to the root): what a filter lets out, and nothing else."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(filt)
    logger = logging.getLogger(f"{__name__}.filtered.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return logger, stream
