"""Exit statuses: one rule for every ``stellate`` command.

* 0: done. For a command that runs until stopped (``serve``, ``agent``, ``up`` without
  ``--once``), Ctrl-C or SIGTERM *is* the normal end: it closes every connection and exits 0,
  so a supervisor (systemd) sees a clean stop.
* 1: a device or the server failed (the command says which).
* 2: a usage or configuration problem (nothing was started).
* 130: interrupted: a command that ends by itself (``up --once``, ``validate``, ``init``,
  ``diagram``) stopped by Ctrl-C or SIGTERM before its end, or any command whose clean stop
  was cut short by a second Ctrl-C.
"""

from __future__ import annotations

from typing import Final

OK: Final = 0
FAILED: Final = 1
USAGE: Final = 2
INTERRUPTED: Final = 130


def when_stopped(*, runs_until_stopped: bool) -> int:
    """The status of a command stopped by a signal after a clean stop (the rule above)."""
    return OK if runs_until_stopped else INTERRUPTED
