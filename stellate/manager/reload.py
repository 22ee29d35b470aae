"""What a reload of devices.yaml changes: the plan, the report, and why one is refused.

A reload compares the devices the manager was given from a file (``ConfiguredDevice``: the
profile phase 1 makes and ``auto_connect``) with the file's devices now: a device only in the new
file is added, one only in the old is removed (disconnected cleanly), one in both whose entry
changed is restarted (removed, then added: its connection is new), and one whose entry is the
same is not touched at all (no reconnect). The ``manager:`` block is not reloaded: a change there
(the task name, a timing, the key) applies to every device and takes a restart, so a reload
that would change it is refused whole (:class:`ReloadRefused`) and changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from ..errors import LocalError
from .sharing import ConfiguredDevice

__all__ = ["ReloadPlan", "ReloadRefused", "ReloadReport", "plan_reload"]


class ReloadRefused(LocalError):
    """A reload that would change what only a restart applies (``manager:`` settings).
    Nothing was changed."""


@attrs.frozen
class ReloadPlan:
    """Device ids by what a reload does to them, in the new file's order (removed: the old's)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()


def plan_reload(
    old: Mapping[str, ConfiguredDevice], new: Mapping[str, ConfiguredDevice]
) -> ReloadPlan:
    """What going from ``old`` to ``new`` (device id → entry) does to each device."""
    return ReloadPlan(
        added=tuple(d for d in new if d not in old),
        removed=tuple(d for d in old if d not in new),
        changed=tuple(d for d in new if d in old and new[d] != old[d]),
        unchanged=tuple(d for d in new if d in old and new[d] == old[d]),
    )


@attrs.frozen
class ReloadReport:
    """What a reload did: devices added, removed (disconnected cleanly), restarted because
    their entry changed, and how many were left untouched. ``not_started``: added or changed
    devices that could not be started here (id → why), e.g. an id that looks like one added
    in code."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    unchanged: int = 0
    not_started: Mapping[str, str] = attrs.field(factory=dict)

    def text(self) -> str:
        """``1 added (dev-51), 1 removed (dev-07), 0 changed, 49 unchanged``."""

        def part(word: str, ids: tuple[str, ...]) -> str:
            shown = ", ".join(ids[:5]) + (f", +{len(ids) - 5} more" if len(ids) > 5 else "")
            return f"{len(ids)} {word}" + (f" ({shown})" if ids else "")

        line = ", ".join(
            [
                part("added", self.added),
                part("removed", self.removed),
                part("changed", self.changed),
                f"{self.unchanged} unchanged",
            ]
        )
        if self.not_started:
            line += "; not started: " + "; ".join(
                f"{device}: {why}" for device, why in self.not_started.items()
            )
        return line

    def to_dict(self) -> dict[str, object]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": list(self.changed),
            "unchanged": self.unchanged,
            "not_started": dict(self.not_started),
        }
