"""A pytest plugin for ``make mutate``: each test's coverage under its node id, and its time.

Loaded with ``-p coverage_contexts`` under ``coverage run``: lines a test executes are recorded
in the context named by its node id, lines run outside any test (imports, collection) in the
empty context. ``tests/mutation/mutate.py`` then runs each mutant against the tests that
execute its line, fastest first, and against the module's whole list when the line runs at
import time. Test durations go to the file named by ``STELLATE_TEST_TIMES``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import coverage
import pytest

_times: dict[str, float] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    current = coverage.Coverage.current()
    if current is not None:
        current.switch_context(item.nodeid)
    started = time.perf_counter()
    try:
        return (yield)
    finally:
        _times[item.nodeid] = time.perf_counter() - started
        if current is not None:
            current.switch_context("")


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("STELLATE_TEST_TIMES")
    if target:
        with open(target, "w", encoding="utf-8") as out:
            json.dump(_times, out)
