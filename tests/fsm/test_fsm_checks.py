"""Definition-time checks: the real table passes, and each check fires on a mutated copy."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

import stellate
from stellate.fsm.checks import TableError, check_table, table_problems
from stellate.fsm.lifecycle import DeviceLifecycle
from stellate.fsm.states import STATE_SPECS, Deadline, StateSpec
from stellate.fsm.table import TRANSITIONS
from stellate.fsm.trigger import Trigger

CALLBACKS = ("_leave_state", "_notify")


def problems(
    states: tuple[StateSpec, ...] = STATE_SPECS,
    transitions: list[dict[str, Any]] | None = None,
    **kw: Any,
) -> list[str]:
    rows = transitions if transitions is not None else copy.deepcopy(TRANSITIONS)
    return table_problems(states, rows, DeviceLifecycle, machine_callbacks=CALLBACKS, **kw)


def rows_without(predicate: Any) -> list[dict[str, Any]]:
    return [copy.deepcopy(r) for r in TRANSITIONS if not predicate(r)]


def first(predicate: Any) -> int:
    return next(i for i, r in enumerate(TRANSITIONS) if predicate(r))


def test_the_real_table_passes() -> None:
    assert problems() == []
    check_table(STATE_SPECS, TRANSITIONS, DeviceLifecycle, machine_callbacks=CALLBACKS)


def test_an_unreachable_state_is_named() -> None:
    # Nothing enters telemetry any more (and so nothing reaches idle that way either).
    rows = rows_without(lambda r: r["dest"] == "telemetry")
    found = problems(transitions=rows)
    assert "state 'telemetry' is unreachable from 'disconnected'" in found


def leaving_failed_by_its_deadline(row: dict[str, Any]) -> bool:
    return row["trigger"] == Trigger.TIMED_OUT and row["source"] == ["failed"]


def test_a_state_without_a_way_out_is_named() -> None:
    rows = rows_without(lambda r: r["trigger"] in (Trigger.RETRY, Trigger.DISCONNECT))
    rows = [r for r in rows if not leaving_failed_by_its_deadline(r)]
    # Without its deadline too (else the deadline's missing row is named as well).
    states = tuple(
        attrs.evolve(spec, deadline=None) if spec.status.value == "failed" else spec
        for spec in STATE_SPECS
    )
    found = problems(states, transitions=rows)
    assert "state 'failed' has no way out" in found
    assert set(problems(states, transitions=rows, final=("failed",))) == {
        f"trigger {t.value!r} is used by no row" for t in (Trigger.RETRY, Trigger.DISCONNECT)
    } | {f"the owner's command {c!r} is served by no row" for c in ("retry", "disconnect")}


def test_a_deadline_needs_its_timed_out_row_and_only_a_deadline_has_one() -> None:
    rows = rows_without(leaving_failed_by_its_deadline)
    assert problems(transitions=rows) == [
        "state 'failed' declares a deadline but no 'timed_out' row leaves it"
    ]
    states = tuple(
        attrs.evolve(spec, deadline=None) if spec.status.value == "failed" else spec
        for spec in STATE_SPECS
    )
    assert problems(states) == ["'timed_out' leaves state 'failed', which declares no deadline"]


def test_a_missing_guard_or_callback_is_named() -> None:
    rows = copy.deepcopy(TRANSITIONS)
    rows[first(lambda r: r.get("conditions") == "accepted")]["conditions"] = "acceptd"
    rows[first(lambda r: r.get("before") == "_merge_telemetry")]["before"] = "_merge"
    found = problems(transitions=rows)
    assert any("names 'acceptd', which DeviceLifecycle does not define" in p for p in found)
    assert any("(before) names '_merge'" in p for p in found)
    states = (attrs.evolve(STATE_SPECS[0], on_enter="_enter_nowhere"), *STATE_SPECS[1:])
    assert any("'_enter_nowhere'" in p for p in problems(states=states))
    assert any(
        "the machine names '_nope'" in p
        for p in table_problems(
            STATE_SPECS, TRANSITIONS, DeviceLifecycle, machine_callbacks=("_nope",)
        )
    )


def test_two_rows_that_could_both_fire_are_named() -> None:
    rows = copy.deepcopy(TRANSITIONS)
    # The flapping loss loses its guard: both loss rows could fire from idle and busy.
    del rows[first(lambda r: r.get("unless") == "stable")]["unless"]
    found = problems(transitions=rows)
    assert (
        "'connection_failed' from 'idle': two rows could both fire ([stable] and no guard); "
        "give them guards that exclude each other"
    ) in found
    assert any("from 'busy'" in p for p in found)


def test_rows_requiring_different_guards_could_both_fire() -> None:
    """Only a guard one row requires and the other excludes tells two rows apart."""
    rows = copy.deepcopy(TRANSITIONS)
    flapping = first(lambda r: r.get("unless") == "stable")
    del rows[flapping]["unless"]
    rows[flapping]["conditions"] = "retries_left"
    found = problems(transitions=rows)
    assert (
        "'connection_failed' from 'idle': two rows could both fire ([stable] and "
        "[retries_left]); give them guards that exclude each other"
    ) in found


def test_a_guard_both_rows_require_does_not_tell_them_apart() -> None:
    rows = copy.deepcopy(TRANSITIONS)
    rejected = first(lambda r: r["dest"] == "failed" and r.get("before") == "_record_rejection")
    rows[rejected]["unless"] = ["transient_rejection"]  # no longer excludes [accepted]
    found = problems(transitions=rows)
    assert any("'registration_answered' from 'registering'" in p for p in found)


def test_a_deadline_must_name_settings() -> None:
    def with_deadline(deadline: Deadline) -> tuple[StateSpec, ...]:
        return tuple(
            attrs.evolve(s, deadline=deadline) if s.status.value == "connecting" else s
            for s in STATE_SPECS
        )

    found = problems(states=with_deadline(Deadline(("connect_timout",))))
    assert (
        "state 'connecting': deadline names 'connect_timout', which is not a Timing setting"
        in found
    )
    found = problems(states=with_deadline(Deadline(("connect_timeout", "telemetry_timeout"))))
    assert "state 'connecting': a fixed deadline names exactly one setting" in found


def test_unknown_triggers_states_and_keys_are_named() -> None:
    rows = copy.deepcopy(TRANSITIONS)
    rows.append({"trigger": "teleport", "source": ["idle"], "dest": "mars", "when": "now"})
    found = problems(transitions=rows)
    assert any("'teleport' is not a Trigger" in p for p in found)
    assert any("state 'mars' is not declared" in p for p in found)
    assert any("unknown keys ['when']" in p for p in found)


def test_check_table_raises_with_every_problem() -> None:
    rows = rows_without(lambda r: r["dest"] == "telemetry")
    with pytest.raises(TableError) as info:
        check_table(STATE_SPECS, rows, DeviceLifecycle, machine_callbacks=CALLBACKS)
    assert info.value.problems and str(info.value).startswith("the transition table is broken")


def test_a_broken_table_fails_at_import(tmp_path: Path) -> None:
    """The check runs when the machine is built, at import: a copy of the package whose table
    misspells a guard cannot be imported, and the error names the row."""
    copy_of = tmp_path / "stellate"
    shutil.copytree(Path(stellate.__file__).parent, copy_of)
    table = copy_of / "fsm" / "table.py"
    source = table.read_text(encoding="utf-8")
    assert 'ACCEPTED = "accepted"' in source
    table.write_text(source.replace('ACCEPTED = "accepted"', 'ACCEPTED = "acceptd"'))
    code = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import stellate"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode != 0
    assert "TableError" in result.stderr
    assert "names 'acceptd', which DeviceLifecycle does not define" in result.stderr


def test_a_row_s_close_code_must_be_one_a_websocket_can_send() -> None:
    """RFC 6455 §7.4: an endpoint sends 1000-4999; anything else is refused by name."""
    for code, ok in ((999, False), (1000, True), (4999, True), (5000, False), ("1000", False)):
        rows = copy.deepcopy(TRANSITIONS)
        rows[0]["close"] = code
        named = [p for p in problems(transitions=rows) if "is not a WebSocket close code" in p]
        assert (named == []) is ok, (code, named)


def test_a_state_declared_twice_or_an_undeclared_initial_state_is_named() -> None:
    twice = (*STATE_SPECS, STATE_SPECS[1])
    assert "a state is declared twice" in problems(states=twice)
    assert "initial state 'nowhere' is not declared" in problems(initial="nowhere")
    assert not any("declared" in p for p in problems())


def test_a_state_s_missing_exit_hook_is_named() -> None:
    states = (*STATE_SPECS[:-1], attrs.evolve(STATE_SPECS[-1], on_exit="_exit_nowhere"))
    name = STATE_SPECS[-1].status.value
    assert f"state {name!r} names '_exit_nowhere', which DeviceLifecycle does not define" in (
        problems(states=states)
    )


def test_a_deadline_without_settings_is_refused_drawn_or_fixed() -> None:
    """A fixed deadline names exactly one setting; a drawn one names at least one."""
    one = "state 'connecting': a fixed deadline names exactly one setting"

    def named(deadline: Deadline) -> bool:
        states = tuple(
            attrs.evolve(s, deadline=deadline) if s.status.value == "connecting" else s
            for s in STATE_SPECS
        )
        return one in problems(states=states)

    assert named(Deadline(()))
    assert named(Deadline((), drawn=True))
    assert not named(Deadline(("connect_timeout",)))
    assert not named(Deadline(("connect_timeout",), drawn=True))
    assert not named(Deadline(("connect_timeout", "backoff_cap"), drawn=True))
