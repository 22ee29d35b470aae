"""Regressions for bugs the harness found in the runner (fixed)."""

from __future__ import annotations

from stellate.fsm import DeviceStatus
from stellate.testing.fleet import HARNESS_TIMING, FleetDevice, run_fleet


def test_miss_limit_one_keeps_a_healthy_device_idle() -> None:
    timing = HARNESS_TIMING.evolve(heartbeat_interval=30.0, miss_limit=1)
    result = run_fleet([FleetDevice("d", max_retries=None)], timing=timing, grace=300.0)
    outcome = result.devices["d"]
    assert outcome.status is DeviceStatus.IDLE
    assert result.changed_in_grace == [], [e.record.step for _t, e in outcome.events]
