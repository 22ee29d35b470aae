"""What each row means: declared with the table, held to the documented rules, checked when built.

``documented`` is an oracle written from the rules (the table's docstring and
docs/registration-flow.md), not from the declarations: it decodes states and triggers, which
only a test may do.
"""

from __future__ import annotations

import copy

import pytest

from stellate.fsm import (
    ACTIVE,
    AgentProfile,
    DeviceStatus,
    Meaning,
    OwnerCommand,
    Row,
    Trigger,
    rows,
)
from stellate.fsm.checks import table_problems
from stellate.fsm.lifecycle import DeviceLifecycle, LifecycleEngine, TransitionRecord
from stellate.fsm.states import STATE_SPECS
from stellate.fsm.table import TRANSITIONS, command_trigger, row_of

S, M, T, C = DeviceStatus, Meaning, Trigger, OwnerCommand
CALLBACKS = ("_leave_state", "_notify")


def documented(row: Row) -> set[Meaning]:
    """The meanings the documented rules give a row."""
    if row.internal:
        return {M.IGNORED}
    out = set()
    if row.dest is S.FAILED:
        out.add(M.GAVE_UP)
    if row.dest is S.CONNECTING:
        out.add(M.ATTEMPT)
    if row.trigger in (T.CONNECT, T.RETRY) and row.source in (S.DISCONNECTED, S.FAILED):
        out.add(M.RUN_STARTED)  # the owner's connect from rest: a fresh run
    if row.dest is S.BACKOFF:
        out.add(M.BACKS_OFF)
    if (
        row.source in (S.BACKOFF, S.FAILED)
        and row.trigger is T.TIMED_OUT
        and row.dest is S.CONNECTING
    ):
        out.add(M.WAIT_OVER)  # a wait before the next attempt is over
    if row.source is S.FAILED and row.trigger is T.TIMED_OUT:
        out.add(M.RUN_STARTED)  # retry_failed_after: a fresh run, as the owner's retry
    if row.source is S.TELEMETRY and row.dest is S.IDLE:
        out.add(M.READY)
        if row.trigger is T.TIMED_OUT:
            out.add(M.NO_TELEMETRY)
    if row.source in ACTIVE and row.dest is S.BACKOFF:
        out.add(M.LOST)
    if row.trigger is T.TASK_ASSIGNED:
        out.add(M.TASK_STARTED)
    if row.trigger is T.TASK_FINISHED:
        out.add(M.TASK_FINISHED)
    elif row.source is S.BUSY:
        out.add(M.TASK_INTERRUPTED)
    if row.dest is S.DISCONNECTED:
        out.add(M.STOPPED)
    return out


@pytest.mark.parametrize("row", rows(), ids=str)
def test_every_row_means_what_the_rules_say(row: Row) -> None:
    assert set(row.meanings) == documented(row)


def test_every_meaning_is_carried_by_some_row() -> None:
    assert {meaning for row in rows() for meaning in row.meanings} == set(Meaning)


def test_a_record_knows_its_row() -> None:
    record = TransitionRecord("d", T.CONNECTION_FAILED, S.IDLE, S.BACKOFF)
    assert record.row.step == (T.CONNECTION_FAILED, S.IDLE, S.BACKOFF)
    assert M.LOST in record.meanings
    with pytest.raises(KeyError):
        TransitionRecord("d", T.TASK_FINISHED, S.IDLE, S.BUSY)  # no such row


def _problems(transitions: list[dict[str, object]]) -> list[str]:
    return table_problems(STATE_SPECS, transitions, DeviceLifecycle, machine_callbacks=CALLBACKS)


def test_an_unknown_meaning_is_named() -> None:
    table = copy.deepcopy(TRANSITIONS)
    ready = next(r for r in table if r.get("before") == "_merge_telemetry")
    ready["meaning"] = ["redy"]
    assert any("meaning 'redy' is not a Meaning" in p for p in _problems(table))


def test_rows_differing_only_by_guards_must_mean_the_same() -> None:
    """The stable loss alone is declared lost: the same step would mean two things."""
    table = copy.deepcopy(TRANSITIONS)
    flapping = next(r for r in table if r.get("before") == "_lose_flapping")
    del flapping["meaning"]
    found = _problems(table)
    assert any(
        p.startswith("'connection_failed' from 'idle' to 'backoff': rows that differ only by")
        for p in found
    ), found


def test_the_step_of_a_loss_means_lost_whichever_guard_held() -> None:
    losses = [r for r in rows() if r.step == (T.CONNECTION_FAILED, S.IDLE, S.BACKOFF)]
    assert len(losses) == 2 and {r.meanings for r in losses} == {row_of(*losses[0].step).meanings}


# -- the owner's commands ------------------------------------------------------------------------


def documented_command(state: DeviceStatus, command: OwnerCommand) -> Trigger | None:
    """What the owner's command fires, as the rules say (None: nothing to do)."""
    if command is C.DISCONNECT:
        return None if state is S.DISCONNECTED else T.DISCONNECT
    if state is S.FAILED:
        return T.RETRY  # connect and retry both retry a failed device
    if command is C.CONNECT and state in (S.DISCONNECTED, S.BACKOFF):
        return T.CONNECT  # a fresh run, or the backoff cut short
    return None


@pytest.mark.parametrize("command", list(OwnerCommand))
@pytest.mark.parametrize("state", list(DeviceStatus))
def test_each_command_fires_what_the_rules_say(state: DeviceStatus, command: OwnerCommand) -> None:
    assert command_trigger(state, command) == documented_command(state, command)
    engine = LifecycleEngine()
    lifecycle = engine.create(AgentProfile("d", "ws://h/ws", status=state))
    try:
        trigger = lifecycle.serving(command)
        assert trigger == documented_command(state, command)
        if trigger is not None:
            lifecycle.fire(trigger)  # served means accepted
    finally:
        engine.release(lifecycle)


@pytest.mark.parametrize("command", list(OwnerCommand))
@pytest.mark.parametrize("state", list(DeviceStatus))
def test_serve_fires_what_serving_names_and_changes_nothing_else(
    state: DeviceStatus, command: OwnerCommand
) -> None:
    engine = LifecycleEngine()
    asked = engine.create(AgentProfile("d", "ws://h/ws", status=state))
    served = engine.create(AgentProfile("d", "ws://h/ws", status=state))
    try:
        trigger = asked.serving(command)
        effects = served.serve(command)
        if trigger is None:
            assert effects is None
            assert served.profile == AgentProfile("d", "ws://h/ws", status=state)
        else:
            assert effects == asked.fire(trigger)
            assert served.profile == asked.profile and served.timeout == asked.timeout
    finally:
        engine.release(asked)
        engine.release(served)


def test_a_command_served_twice_from_one_state_is_named() -> None:
    table = copy.deepcopy(TRANSITIONS)
    from_backoff = next(r for r in table if r.get("serves") == [C.CONNECT] and "before" not in r)
    from_backoff["serves"] = []  # connect no longer cuts a backoff short...
    retry = next(r for r in table if r["trigger"] == T.RETRY)
    retry["serves"] = [C.RETRY, C.CONNECT, C.DISCONNECT]  # ...and retry claims disconnect
    found = _problems(table)
    assert (
        "'disconnect' from 'failed' is served by 2 triggers (disconnect, retry): the owner's "
        "command must be one" in found
    ), found
    for row in table:
        row.pop("serves", None)
    table[0]["serves"] = ["reboot"]
    found = _problems(table)
    assert any("serves 'reboot', which is not an OwnerCommand" in p for p in found), found


def test_a_command_no_row_serves_is_named() -> None:
    table = copy.deepcopy(TRANSITIONS)
    for row in table:
        if row["trigger"] == T.DISCONNECT:
            del row["serves"]
    assert "the owner's command 'disconnect' is served by no row" in _problems(table)
