"""Reports what the hardening suite did: frames thrown, faults injected, devices flapped, lost."""

from __future__ import annotations

import pytest
from hardening_support import FIGURES, LOSSES

_ORDER = (
    "hostile frames tried",
    "hostile frames at the manager",
    "faults injected",
    "server kills",
    "devices flapped",
    "device flaps",
)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    keys = [k for k in _ORDER if k in FIGURES] + sorted(set(FIGURES) - set(_ORDER))
    figures = ", ".join(f"{key}: {FIGURES[key]}" for key in keys)
    terminalreporter.write_line(f"hardening: {figures}")
    lost = "; ".join(LOSSES) if LOSSES else "nothing"
    terminalreporter.write_line(f"hardening: lost: {lost}", red=bool(LOSSES), green=not LOSSES)
