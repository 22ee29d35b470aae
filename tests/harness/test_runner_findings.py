"""Bugs the harness found in code owned elsewhere, pinned as strict xfails until fixed."""

from __future__ import annotations

import pytest

from stellate.fsm import DeviceStatus
from stellate.testing.fleet import FleetDevice, FleetTiming, run_fleet


@pytest.mark.xfail(
    strict=True,
    reason=(
        "BUG: runner._heartbeat with miss_limit=1: the lease (interval × 1) expires at the "
        "same instant the first heartbeat is due, and the expiry is checked first, so a "
        "device on a perfectly healthy server is declared lost after one interval, forever "
        "(the first heartbeat is never even sent)."
    ),
)
def test_miss_limit_one_keeps_a_healthy_device_idle() -> None:
    timing = FleetTiming(heartbeat_interval=30.0, miss_limit=1)
    result = run_fleet([FleetDevice("d", max_retries=None)], timing=timing, grace=300.0)
    outcome = result.devices["d"]
    assert outcome.status is DeviceStatus.IDLE
    assert result.changed_in_grace == [], [e.record.step for _t, e in outcome.events]
