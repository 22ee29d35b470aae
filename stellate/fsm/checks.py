"""Definition-time checks of the transition table: a broken table fails at import, loudly.

``lifecycle.py`` runs :func:`check_table` on the declarations of ``table.py`` before it builds
the machine, so an edit that strands a state, names a guard that does not exist, lets two rows
of one trigger fire together or gives a deadline no setting is refused with a message naming
the row. The checks read only the declarations (no machine is built): tests run them on mutated
copies of the table to show that each one fires.

What is checked:

* every row names a known trigger, declared states and only keys ``transitions`` understands
  (and ``meaning``);
* every state is reachable from the initial one (guards ignored);
* every state has a way out (a row to another state), unless tagged final;
* every guard and callback named by a row or a state exists on the model;
* no two rows for one (trigger, source) could both fire: each pair must be told apart by a
  guard one requires and the other excludes (``conditions`` vs ``unless``);
* every deadline names ``Timing`` settings (one, unless the deadline is drawn), a state with a
  deadline has a ``timed_out`` row out of it, and ``timed_out`` leaves only states with one
  (the runner fires it when the deadline passes: it must be legal there, and only there);
* every trigger is used by some row;
* every declared meaning is a ``Meaning``, and rows that differ only by their guards mean the
  same (so a fired step's meaning does not depend on which guard held);
* a declared close code is a WebSocket close code (1000-4999);
* every command a row serves is an ``OwnerCommand``, each is served somewhere, and by at most
  one trigger from any state (the owner's command is never ambiguous).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations
from typing import Any

import attrs

from ..errors import LocalError
from ..timing import Timing
from .meaning import Meaning
from .states import INITIAL, StateSpec
from .table import MACHINE_KEYS, expand, guard_label, names
from .trigger import OwnerCommand, Trigger

__all__ = ["TableError", "check_table", "table_problems"]

#: Keys a row may carry: ``transitions``' own, and what the row means.
ROW_KEYS = frozenset({*MACHINE_KEYS, "meaning", "serves", "close"})
#: Callback keys of a row whose values name model methods.
_CALLBACK_KEYS = ("conditions", "unless", "before", "after", "prepare")


class TableError(LocalError):
    """The transition table breaks a definition-time rule (every problem is listed)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n  ".join(self.problems)
        super().__init__(f"the transition table is broken ({len(problems)} problems):\n  {lines}")


def _guards(conditions: Iterable[str], unless: Iterable[str]) -> str:
    label = guard_label(conditions, unless)
    return f"[{label}]" if label else "no guard"


def _row_name(row: Mapping[str, Any]) -> str:
    guards = _guards(names(row.get("conditions")), names(row.get("unless")))
    sources = list(names(row.get("source")))
    return f"{row.get('trigger')}: {sources} -> {row.get('dest')} {guards}"


def table_problems(
    states: Sequence[StateSpec],
    transitions: Sequence[Mapping[str, Any]],
    model: type,
    *,
    initial: str = INITIAL,
    machine_callbacks: Iterable[str] = (),
    final: Iterable[str] = (),
) -> list[str]:
    """Every rule the declarations break, one readable line each (empty: the table is sound).

    Args:
        states: the state declarations.
        transitions: the rows, as ``transitions`` declarations.
        model: the class whose methods the guards and callbacks name.
        initial: the initial state's name.
        machine_callbacks: callbacks the machine itself is built with (must exist on ``model``).
        final: states allowed to have no way out.
    """
    problems: list[str] = []
    state_names = [spec.status.value for spec in states]
    known = set(state_names)
    if len(known) != len(state_names):
        problems.append("a state is declared twice")
    if initial not in known:
        problems.append(f"initial state {initial!r} is not declared")

    def missing(what: str, name: str) -> None:
        if not callable(getattr(model, name, None)):
            problems.append(f"{what} names {name!r}, which {model.__name__} does not define")

    for name in machine_callbacks:
        missing("the machine", name)
    for spec in states:
        for hook in (spec.on_enter, spec.on_exit):
            if hook:
                missing(f"state {spec.status.value!r}", hook)
        deadline = spec.deadline
        if deadline is not None:
            settings = {f.name for f in attrs.fields(Timing)}
            for setting in deadline.settings:
                if setting not in settings:
                    problems.append(
                        f"state {spec.status.value!r}: deadline names {setting!r}, "
                        "which is not a Timing setting"
                    )
            if not deadline.settings or (not deadline.drawn and len(deadline.settings) != 1):
                problems.append(
                    f"state {spec.status.value!r}: a fixed deadline names exactly one setting"
                )

    triggers = {t.value for t in Trigger}
    for row in transitions:
        where = _row_name(row)
        extra = set(row) - ROW_KEYS
        if extra:
            problems.append(f"row {where}: unknown keys {sorted(extra)}")
        if row.get("trigger") not in triggers:
            problems.append(f"row {where}: {row.get('trigger')!r} is not a Trigger")
        dest = row.get("dest")  # None: an internal row (no state change)
        for state in (*names(row.get("source")), *(() if dest is None else (dest,))):
            if state not in known:
                problems.append(f"row {where}: state {state!r} is not declared")
        for key in _CALLBACK_KEYS:
            for name in names(row.get(key)):
                missing(f"row {where} ({key})", name)
        meanings = {m.value for m in Meaning}
        for meaning in names(row.get("meaning")):
            if meaning not in meanings:
                problems.append(f"row {where}: meaning {meaning!r} is not a Meaning")
        close = row.get("close", 1000)
        if not (isinstance(close, int) and 1000 <= close <= 4999):
            problems.append(f"row {where}: close {close!r} is not a WebSocket close code")
        for command in names(row.get("serves")):
            if command not in {c.value for c in OwnerCommand}:
                problems.append(f"row {where}: serves {command!r}, which is not an OwnerCommand")
    if problems:
        return problems  # the graph checks below assume well-formed rows

    expanded = expand(list(transitions))  # type: ignore[arg-type]
    used = {r.trigger.value for r in expanded}
    problems += [f"trigger {t!r} is used by no row" for t in sorted(triggers - used)]

    successors: dict[str, set[str]] = {name: set() for name in state_names}
    for r in expanded:
        successors[r.source.value].add(r.dest.value)
    seen, todo = {initial}, [initial]
    while todo:
        for nxt in successors[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    problems += [
        f"state {n!r} is unreachable from {initial!r}" for n in state_names if n not in seen
    ]
    timed = {r.source.value for r in expanded if r.trigger is Trigger.TIMED_OUT}
    with_deadline = {spec.status.value for spec in states if spec.deadline is not None}
    problems += [
        f"state {n!r} declares a deadline but no {Trigger.TIMED_OUT.value!r} row leaves it"
        for n in state_names
        if n in with_deadline - timed
    ]
    problems += [
        f"{Trigger.TIMED_OUT.value!r} leaves state {n!r}, which declares no deadline"
        for n in state_names
        if n in timed - with_deadline
    ]
    finals = set(final)
    problems += [
        f"state {n!r} has no way out"
        for n in state_names
        if n not in finals and not successors[n] - {n}
    ]

    meant: dict[tuple[str, str, str], frozenset[Meaning]] = {}
    for r in expanded:
        first = meant.setdefault(r.step, r.meanings)
        if first != r.meanings:
            problems.append(
                f"{r.trigger.value!r} from {r.source.value!r} to {r.dest.value!r}: rows "
                f"that differ only by guards mean different things ({sorted(first)} and "
                f"{sorted(r.meanings)})"
            )

    serving: dict[tuple[str, str], set[str]] = {}
    for r in expanded:
        for command in r.serves:
            serving.setdefault((r.source.value, command.value), set()).add(r.trigger.value)
    for (source, command), served_by in serving.items():
        if len(served_by) > 1:
            problems.append(
                f"{command!r} from {source!r} is served by {len(served_by)} triggers "
                f"({', '.join(sorted(served_by))}): the owner's command must be one"
            )
    problems += [
        f"the owner's command {c.value!r} is served by no row"
        for c in OwnerCommand
        if not any(c in r.serves for r in expanded)
    ]

    by_key: dict[tuple[str, str], list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
    for r in expanded:
        by_key.setdefault((r.trigger.value, r.source.value), []).append((r.conditions, r.unless))
    for (name, source), guards in by_key.items():
        for (c1, u1), (c2, u2) in combinations(guards, 2):
            if not (set(c1) & set(u2) or set(u1) & set(c2)):
                problems.append(
                    f"{name!r} from {source!r}: two rows could both fire "
                    f"({_guards(c1, u1)} and {_guards(c2, u2)}); "
                    "give them guards that exclude each other"
                )
    return problems


def check_table(
    states: Sequence[StateSpec],
    transitions: Sequence[Mapping[str, Any]],
    model: type,
    **options: Any,
) -> None:
    """Raise ``TableError`` listing every problem :func:`table_problems` finds."""
    problems = table_problems(states, transitions, model, **options)
    if problems:
        raise TableError(problems)
