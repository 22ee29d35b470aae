"""The transition-coverage recorder itself (the session's record is left intact)."""

from __future__ import annotations

import pytest

from stellate.fsm import AgentProfile, Row, Trigger, coverage, rows
from stellate.fsm import DeviceStatus as S
from stellate.fsm.lifecycle import LifecycleEngine


@pytest.fixture
def scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A private record for this test; monkeypatch puts the session's back afterwards."""
    monkeypatch.setattr(coverage, "_fired", set())
    monkeypatch.setattr(coverage, "enabled", coverage.enabled)


def test_report_counts_rows(scratch: None) -> None:
    coverage.reset()
    covered, total, missing = coverage.report()
    assert covered == 0 and total == len(set(rows())) == len(missing)
    coverage.record(missing[0])
    assert coverage.report() == (1, total, missing[1:])
    assert coverage.summary()[0] == f"transition coverage: 1/{total} rows"
    assert coverage.summary()[1] == "  missing: {} {} -> {}".format(*missing[1].step)


def test_lifecycle_records_only_while_enabled(scratch: None) -> None:
    engine = LifecycleEngine()
    coverage.disable()
    lc = engine.create(AgentProfile("d", "ws://x/ws"))
    lc.fire(Trigger.CONNECT)
    assert coverage.fired() == set()
    coverage.enable()
    lc.fire(Trigger.CONNECTION_OPENED)
    (opened,) = coverage.fired()
    assert opened.step == (Trigger.CONNECTION_OPENED, "connecting", "connected")
    assert (opened.conditions, opened.unless) == ((), ())
    engine.release(lc)


def test_rows_are_unique() -> None:
    assert len(coverage.all_rows()) == len(rows())


def test_scratch_leaves_the_session_record(monkeypatch: pytest.MonkeyPatch) -> None:
    session = coverage._fired
    with monkeypatch.context() as m:
        m.setattr(coverage, "_fired", set())
        coverage.record(Row(Trigger.RETRY, S.BUSY, S.IDLE))
    assert coverage._fired is session and Row(Trigger.RETRY, S.BUSY, S.IDLE) not in session


def test_rows_differing_only_by_guards_are_counted_apart(scratch: None) -> None:
    """The stable and the flapping loss go idle -> backoff: two rows, two coverage entries."""
    coverage.reset()
    losses = [r for r in rows() if r.step == (Trigger.CONNECTION_FAILED, "idle", "backoff")]
    assert len(losses) == 2
    coverage.record(losses[0])
    assert losses[1] in coverage.report()[2]
    line = coverage.summary()[1 + coverage.report()[2].index(losses[1])]
    assert line.endswith("[!stable]") or line.endswith("[stable]")
