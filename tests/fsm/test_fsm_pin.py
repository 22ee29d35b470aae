"""transitions is pinned exactly: stellate relies on two of its parts that are not public.

stellate/fsm/lifecycle.py's docstring lists them and why (the one place that says so). A new
release of transitions may change them without notice: the first test fails on any version
other than the one pinned in pyproject.toml, and one test per use holds it to the behaviour
stellate relies on, so an upgrade is a decision, not an accident.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import attrs
import pytest
from transitions import Machine

from stellate.fsm import AgentProfile, DeviceStatus, IllegalTransition, Trigger
from stellate.fsm import coverage as fsm_coverage
from stellate.fsm.event_data import (
    ConnectionFailed,
    EventData,
    InternalError,
    ProtocolViolated,
    TaskAssigned,
)
from stellate.fsm.lifecycle import DeviceLifecycle, LifecycleEngine, _ModelRegistry
from stellate.fsm.paths import EVENT_VARIANTS
from stellate.fsm.table import rows

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def pinned() -> str:
    match = re.search(r'"transitions==([^"]+)"', PYPROJECT.read_text(encoding="utf-8"))
    assert match, "pyproject.toml must pin transitions exactly (transitions==X.Y.Z)"
    return match.group(1)


def test_installed_transitions_is_the_pinned_version() -> None:
    assert version("transitions") == pinned()


def test_the_private_parts_stellate_uses_are_there() -> None:
    machine = Machine(model=None, states=["a"], initial="a")
    assert callable(getattr(machine, "_can_trigger", None))
    assert isinstance(machine.models, list)


PROBE = AgentProfile(device_id="pin", server_url="ws://127.0.0.1/ws", max_retries=3)
#: Events for the triggers the path enumerator does not vary.
EXTRA_VARIANTS: dict[Trigger, tuple[EventData, ...]] = {
    Trigger.TASK_ASSIGNED: (TaskAssigned("t"),),
    Trigger.INTERNAL_ERROR: (InternalError("bug"),),
    Trigger.PROTOCOL_VIOLATION: (ProtocolViolated("garbage"),),
}


def _cases() -> Iterator[tuple[DeviceStatus, Trigger | EventData]]:
    for state in DeviceStatus:
        for trigger in Trigger:
            for event in {**EVENT_VARIANTS, **EXTRA_VARIANTS}.get(trigger, (trigger,)):
                yield state, event


@pytest.fixture
def engine() -> Iterator[LifecycleEngine]:
    engine = LifecycleEngine()
    yield engine


def _at(engine: LifecycleEngine, state: DeviceStatus) -> DeviceLifecycle:
    return engine.create(attrs.evolve(PROBE, status=state, connection_attempts=1))


def test_can_trigger_answers_what_fire_then_does(engine: LifecycleEngine) -> None:
    """Use 1: ``accepts`` (``Machine._can_trigger``) says yes exactly when ``fire`` succeeds,
    guards included, in every state for every event, and asking changes nothing."""
    checked = disagree = 0
    for state, event in _cases():
        asked = _at(engine, state)
        before = (asked.profile, asked.timeout, asked.failure_reason)
        answer = asked.accepts(event)
        assert (asked.profile, asked.timeout, asked.failure_reason) == before
        fired = _at(engine, state)
        try:
            fired.fire(event)
            legal = True
        except IllegalTransition:
            legal = False
        disagree += answer != legal
        checked += 1
        engine.release(asked)
        engine.release(fired)
    assert disagree == 0 and checked > len(DeviceStatus) * len(Trigger)


def test_the_models_registry_serves_what_the_machine_does_with_models(
    engine: LifecycleEngine,
) -> None:
    """Use 2: ``Machine.models`` replaced by ``_ModelRegistry``; transitions' own
    ``add_model``/``remove_model``/triggering work through it, keyed by identity."""
    machine = engine._machine
    assert isinstance(machine.models, _ModelRegistry)
    twins = [engine.create(PROBE), engine.create(PROBE)]  # equal profiles, two devices
    assert len(machine.models) == 2 and all(t in machine.models for t in twins)
    twins[0].fire(Trigger.CONNECT)  # a trigger reaches its own model only
    assert (twins[0].status, twins[1].status) == (
        DeviceStatus.CONNECTING,
        DeviceStatus.DISCONNECTED,
    )
    engine.release(twins[0])  # transitions' remove_model on the registry
    assert twins[0] not in machine.models and twins[1] in machine.models
    assert list(machine.models) == [twins[1]] and len(engine) == 1
    with pytest.raises(ValueError):
        engine.release(twins[0])
    engine.release(twins[1])


def test_the_fired_row_travels_with_its_transition(
    engine: LifecycleEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The extension point (not a private part): each transition is built as the machine's
    ``transition_cls`` with its row, so the coverage gate is told which of two rows between
    the same states fired."""
    recorded: list[Any] = []
    monkeypatch.setattr(fsm_coverage, "enabled", True)
    monkeypatch.setattr(fsm_coverage, "record", recorded.append)
    table = set(rows())
    for attempts, max_retries in ((1, 3), (3, 3)):  # retries left, then none: two guarded rows
        profile = attrs.evolve(
            PROBE,
            status=DeviceStatus.CONNECTING,
            connection_attempts=attempts,
            max_retries=max_retries,
        )
        lifecycle = engine.create(profile)
        lifecycle.fire(ConnectionFailed("refused"))
        engine.release(lifecycle)
    # Both are rows of the table as written, guards included: a row recorded without its
    # guards' names (or with something else than names) is no row of the table.
    assert len(recorded) == 2 and recorded[0] != recorded[1]
    assert all(row in table for row in recorded)
