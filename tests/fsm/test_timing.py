"""Timing: one settings object, its defaults stated once and shared, its rules all reported."""

from __future__ import annotations

import math

import attrs
import pytest

from stellate.agent.device_agent import DEFAULT_HEARTBEAT_INTERVAL
from stellate.config import ManagerSettings, loads_config
from stellate.manager import ConstellationDeviceManager
from stellate.protocol import ServerPolicy
from stellate.testing import FleetTiming
from stellate.timing import DEFAULT_TIMING, RetryPolicy, Timing


def _timing_fields(value: object) -> dict[str, object]:
    return {f.name: getattr(value, f.name) for f in attrs.fields(Timing)}


def test_every_holder_takes_its_defaults_from_timing() -> None:
    assert _timing_fields(ManagerSettings()) == _timing_fields(Timing())
    assert ConstellationDeviceManager().timing == Timing()
    # the harness models the reference's rules: no recovery or stability window
    assert FleetTiming().policy == Timing(recovery_window=0.0, stability_window=0.0)
    server = ServerPolicy()
    assert (server.registration_timeout, server.heartbeat_interval, server.miss_limit) == (
        DEFAULT_TIMING.registration_timeout,
        DEFAULT_TIMING.heartbeat_interval,
        DEFAULT_TIMING.miss_limit,
    )
    assert DEFAULT_TIMING.heartbeat_interval == DEFAULT_HEARTBEAT_INTERVAL
    assert RetryPolicy is Timing


def test_manager_keywords_are_sugar_over_timing() -> None:
    base = Timing(connect_timeout=7.0, recovery_window=0.0)
    manager = ConstellationDeviceManager(timing=base, reconnect_delay=1.0, miss_limit=5)
    assert manager.timing == attrs.evolve(base, reconnect_delay=1.0, miss_limit=5)
    assert ConstellationDeviceManager(stability_window=3.0).timing.stability_window == 3.0


def test_config_hands_the_manager_every_timing() -> None:
    config = loads_config(
        "manager: {reconnect_delay: 1.5, recovery_window: 30, stability_window: 0,"
        " connect_timeout: 60}\n"
        "devices: [{device_id: d, server_url: 'ws://h/ws'}]\n"
    )
    timing = config.manager.timing()
    assert isinstance(timing, Timing) and type(timing) is Timing
    assert (timing.reconnect_delay, timing.recovery_window, timing.stability_window) == (
        1.5,
        30.0,
        0.0,
    )
    assert ConstellationDeviceManager.from_config(config).timing == timing


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"connect_timeout": 0.0}, "connect_timeout", "must be > 0, got 0.0"),
        ({"heartbeat_interval": -1.0}, "heartbeat_interval", "must be > 0"),
        ({"registration_timeout": math.inf}, "registration_timeout", "finite"),
        ({"reconnect_delay": 0.0}, "reconnect_delay", "must be > 0"),  # no zero-wait spin
        ({"rejoin_delay": 0.0}, "rejoin_delay", "must be > 0"),
        ({"backoff_cap": -1.0}, "backoff_cap", "must be >= 0"),
        ({"recovery_window": -1.0}, "recovery_window", "must be >= 0"),
        ({"stability_window": math.nan}, "stability_window", "finite"),
        ({"rejoin_delay": -2.0}, "rejoin_delay", "must be > 0"),
        ({"reconnect_delay": 10.0, "backoff_cap": 5.0}, "backoff_cap", r"reconnect_delay \(10\)"),
        ({"jitter_floor": 1.5}, "jitter_floor", "between 0 and 1"),
        ({"miss_limit": 0}, "miss_limit", "must be >= 1, got 0"),
    ],
)
def test_each_rule_names_its_field(changes: dict[str, float], field: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"{field}: .*{message}"):
        Timing(**changes)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=field):
        DEFAULT_TIMING.evolve(**changes)


def test_every_broken_rule_is_reported_at_once() -> None:
    problems = Timing.timing_violations(
        {"connect_timeout": 0.0, "miss_limit": 0, "jitter_floor": -1.0, "other": "ignored"}
    )
    assert [name for name, _ in problems] == ["connect_timeout", "jitter_floor", "miss_limit"]


def test_lease_is_interval_times_misses() -> None:
    assert Timing(heartbeat_interval=10.0, miss_limit=4).lease == 40.0


def test_rejoin_bounds_do_not_climb() -> None:
    timing = Timing(rejoin_delay=2.0, jitter_floor=0.25)
    assert timing.rejoin_bounds() == (0.5, 2.0)
