"""transitions is pinned exactly: stellate uses two of its private parts.

``DeviceLifecycle.accepts`` calls ``Machine._can_trigger`` and ``_SharedMachine`` replaces the
``Machine.models`` list (see stellate/fsm/lifecycle.py). Neither is public API, so a new
release of transitions may change them without notice: this test fails on any version other
than the one pinned in pyproject.toml, so an upgrade is a decision, not an accident.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

from transitions import Machine

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
