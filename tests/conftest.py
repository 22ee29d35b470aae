"""Session-wide test setup: hypothesis profiles and the transition-coverage gate.

* Hypothesis: the profiles live in ``profiles.py`` (``stellate`` by default: derandomized;
  ``thorough`` and ``ci``: random, more examples); pick one with ``HYPOTHESIS_PROFILE``.
* Strict mode: a bug in a device's task fails the test instead of only that device.
* Transition coverage: every row of the FSM table fired during the session is recorded. A run
  of the whole suite reports ``transition coverage: N/M rows`` and each missing row; with
  ``STELLATE_COVERAGE_STRICT=1`` (set by ``make test``) a missing row fails it. A run of part
  of the suite (some paths, ``-k``, ``-m``, deselected or ignored tests) cannot be expected to
  fire every row: it prints one line and the gate does not apply.
* ``loopback_clock``: the ``MockClock`` for tests driving real loopback sockets under virtual
  time (``real_time.py`` says why ``autojump_clock`` races the kernel there).
* ``hang_guard``: a trio test on real sockets asks for it (``pytestmark =
  pytest.mark.usefixtures("hang_guard")``) and fails after ``HANG_GUARD`` instead of hanging.
* ``ca``, ``server_context``, ``cafile``: a trustme CA, a server TLS context for 127.0.0.1 and
  localhost issued by it, and the CA's certificate as a file, for tests of wss:// and https.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import profiles  # registers and loads the hypothesis profiles
import pytest
import trio
import trio.testing
import trustme
from real_time import HANG_GUARD, LOOPBACK_AUTOJUMP

from stellate.fsm import coverage

COVERAGE_STRICT_ENV = "STELLATE_COVERAGE_STRICT"

# A bug in a device's task is contained in production (that device fails, the fleet runs on);
# in the test suite it must fail the test instead. Managers built here are given strict=True
# (the helpers do it; tests/api/test_contracts.py checks every construction); the command,
# which the suite also runs, reads it from the environment where it starts
# (stellate.cli.up.STRICT_ENV).
os.environ.setdefault("STELLATE_STRICT", "1")

_deselected = 0


def _strict() -> bool:
    return os.environ.get(COVERAGE_STRICT_ENV, "") not in ("", "0")


def _whole_suite(config: pytest.Config) -> bool:
    """True if this session runs every test of the configured ``testpaths``."""
    option = config.option
    if _deselected or option.keyword or option.markexpr:
        return False
    if any(getattr(option, name, None) for name in ("ignore", "ignore_glob", "deselect")):
        return False
    if any("::" in arg for arg in config.args):
        return False
    root = config.rootpath.resolve()
    wanted = {(root / p).resolve() for p in config.getini("testpaths")} or {root}
    given = {Path(arg).resolve() for arg in config.args}
    return not config.args or root in given or given >= wanted


def pytest_deselected(items: list[pytest.Item]) -> None:
    global _deselected
    _deselected += len(items)


def pytest_sessionstart(session: pytest.Session) -> None:
    coverage.reset()
    coverage.enable()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    coverage.disable()
    covered, total, _missing = coverage.report()
    gated = _strict() and _whole_suite(session.config)
    if gated and covered < total and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_report_header(config: pytest.Config) -> str:
    return f"hypothesis profile: {profiles.PROFILE}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    covered, total, _missing = coverage.report()
    if not _whole_suite(terminalreporter.config):
        terminalreporter.write_line(
            f"transition coverage: {covered}/{total} rows (part of the suite ran: not gated)"
        )
        return
    for line in coverage.summary():
        terminalreporter.write_line(line, red=covered < total, green=covered == total)
    if covered < total and _strict():
        terminalreporter.write_line(
            f"{COVERAGE_STRICT_ENV} is set: missing rows fail the run", red=True
        )


def pytest_configure(config: pytest.Config) -> None:
    # Tests on real sockets hold two descriptors per connection: start from the hard open-file
    # limit, not the soft one (often 1,024). Tests needing more skip via fd_budget.
    from stellate.cli.limits import raise_open_file_limit

    raise_open_file_limit()


@pytest.fixture
def loopback_clock() -> trio.testing.MockClock:
    """Virtual time for a test driving real loopback sockets: jumps only once every task has
    been blocked ``real_time.LOOPBACK_AUTOJUMP`` real seconds, never while bytes are in flight
    in the kernel (``autojump_clock`` would; ``real_time`` says why and what it costs)."""
    return trio.testing.MockClock(autojump_threshold=LOOPBACK_AUTOJUMP)


@pytest.fixture
async def hang_guard() -> AsyncIterator[None]:
    """The test fails after ``HANG_GUARD`` seconds (real ones, or virtual under a MockClock)
    instead of hanging: only a hang meets it."""
    with trio.fail_after(HANG_GUARD):
        yield


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 and localhost, issued by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def cafile(ca: trustme.CA, tmp_path: Path) -> str:
    """``ca``'s certificate in a PEM file, as ``--cafile`` takes it."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)
