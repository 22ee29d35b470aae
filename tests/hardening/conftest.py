"""Reports what the hardening suite did: frames thrown, faults injected, devices flapped, lost;
hostile upgrade answers, configs, texts, ids and keys tried, and what got through (crashes and
keys leaked are always printed, zero included)."""

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
    "upgrade answers tried",
    "hostile configs tried",
    "hostile texts tried",
    "ids tried",
    "oversize registrations tried",
    "key leak cases tried",
    "key leak checks",
    "keys leaked",
    "squat attempts tried",
    "look-alike ids tried",
    "deep frames tried",
    "non-JSON numbers tried",
    "browser requests tried",
    "side-door connections tried",
    "flags tried",
    "limit boundaries tried",
    "crashes",
)
#: Printed whenever the suite ran their tests, zero included: these must stay at 0.
_ALWAYS = {
    "keys leaked": ("key leak cases tried",),
    "crashes": ("upgrade answers tried", "hostile configs tried"),
}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    for figure, witnesses in _ALWAYS.items():
        if any(witness in FIGURES for witness in witnesses):
            FIGURES[figure] += 0
    keys = [k for k in _ORDER if k in FIGURES] + sorted(set(FIGURES) - set(_ORDER))
    figures = ", ".join(f"{key}: {FIGURES[key]}" for key in keys)
    terminalreporter.write_line(f"hardening: {figures}")
    lost = "; ".join(LOSSES) if LOSSES else "nothing"
    terminalreporter.write_line(f"hardening: lost: {lost}", red=bool(LOSSES), green=not LOSSES)
