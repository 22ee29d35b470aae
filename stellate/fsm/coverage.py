"""Transition coverage: which rows of the table have fired.

A row is a ``table.Row`` as ``table.rows()`` lists it: two rows between the same states that
differ only by their guards (the stable and the flapping loss) are counted apart, and an
internal row (no state change) counts like any other. Recording is off by default and
costs one module-attribute test per transition while off (``DeviceLifecycle._notify`` checks
``enabled`` before calling ``record``). The test session turns it on (``tests/conftest.py``) and
reports ``transition coverage: N/M rows`` at the end.
"""

from __future__ import annotations

from .table import Row, rows

#: Read by the lifecycle before every ``record`` call; flip with ``enable``/``disable``.
enabled: bool = False

_fired: set[Row] = set()


def enable() -> None:
    """Start recording fired rows (already recorded rows are kept)."""
    global enabled
    enabled = True


def disable() -> None:
    """Stop recording; what was recorded stays readable through ``fired``."""
    global enabled
    enabled = False


def reset() -> None:
    """Forget every recorded row."""
    _fired.clear()


def record(row: Row) -> None:
    """Note that ``row`` fired."""
    _fired.add(row)


def fired() -> set[Row]:
    """A copy of the rows recorded so far."""
    return set(_fired)


def all_rows() -> list[Row]:
    """Every row of the table, in table order, without repeats."""
    return list(dict.fromkeys(rows()))


def report() -> tuple[int, int, list[Row]]:
    """``(covered, total, missing rows in table order)``."""
    table = all_rows()
    missing = [row for row in table if row not in _fired]
    return len(table) - len(missing), len(table), missing


def summary() -> list[str]:
    """The report as lines: ``transition coverage: N/M rows``, then one line per missing row."""
    covered, total, missing = report()
    lines = [f"transition coverage: {covered}/{total} rows"]
    lines.extend(f"  missing: {row}" for row in missing)
    return lines
