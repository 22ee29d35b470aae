"""Session-wide test setup: hypothesis profiles and the transition-coverage gate.

* Hypothesis: profile ``stellate`` (default: derandomized, no deadline, moderate example
  counts) and ``thorough`` (random, 10x examples); pick one with ``HYPOTHESIS_PROFILE``.
* Transition coverage: every row of the FSM table fired during the session is recorded and
  reported as ``transition coverage: N/M rows``. With ``STELLATE_COVERAGE_STRICT=1`` (set by
  ``make test`` for the full suite) a missing row fails the session.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from stellate.fsm import coverage

settings.register_profile(
    "stellate",
    deadline=None,
    derandomize=True,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "stellate"))

COVERAGE_STRICT_ENV = "STELLATE_COVERAGE_STRICT"


def pytest_sessionstart(session: pytest.Session) -> None:
    coverage.reset()
    coverage.enable()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    coverage.disable()
    covered, total, _missing = coverage.report()
    strict = os.environ.get(COVERAGE_STRICT_ENV, "") not in ("", "0")
    if strict and covered < total and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = coverage.summary()
    covered, total, _missing = coverage.report()
    for line in lines:
        terminalreporter.write_line(line, red=covered < total, green=covered == total)
    if covered < total and os.environ.get(COVERAGE_STRICT_ENV, "") not in ("", "0"):
        terminalreporter.write_line(
            f"{COVERAGE_STRICT_ENV} is set: missing rows fail the run", red=True
        )


def pytest_configure(config: pytest.Config) -> None:
    # Tests on real sockets hold two descriptors per connection: start from the hard open-file
    # limit, not the soft one (often 1,024). Tests needing more skip via fd_budget.
    from stellate.cli.limits import raise_open_file_limit

    raise_open_file_limit()
