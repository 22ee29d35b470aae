"""Timing: one settings object, its defaults stated once and shared, its rules all reported."""

from __future__ import annotations

import math
import re
from pathlib import Path

import attrs
import pytest

from stellate.agent.device_agent import AGENT_TIMING
from stellate.config import ManagerSettings, loads_config
from stellate.manager import ConstellationDeviceManager
from stellate.protocol import ServerPolicy
from stellate.testing import HARNESS_TIMING
from stellate.timing import DEFAULT_TIMING, RetryPolicy, Timing


def test_every_holder_takes_its_defaults_from_timing() -> None:
    assert ManagerSettings().timing == Timing()
    assert ConstellationDeviceManager(strict=True).timing == Timing()
    # the harness models the reference's rules: no recovery or stability window, and FAILED
    # waits for the owner
    assert (
        Timing(recovery_window=0.0, stability_window=0.0, retry_failed_after=None) == HARNESS_TIMING
    )
    assert ServerPolicy().timing == DEFAULT_TIMING == Timing()
    # an agent differs only in coming back sooner and connecting faster: its heartbeat is
    # everyone's
    agent = AGENT_TIMING.evolve(reconnect_delay=5.0, backoff_cap=60.0, connect_timeout=30.0)
    assert agent == Timing()
    assert RetryPolicy is Timing


def test_the_manager_takes_its_timing_whole() -> None:
    base = Timing(connect_timeout=7.0, recovery_window=0.0, reconnect_delay=1.0, miss_limit=5)
    assert ConstellationDeviceManager(timing=base, strict=True).timing is base
    # no shorthand beside it: each setting has one door
    for name in ("miss_limit", "backoff_cap", "connect_timeout", "stability_window"):
        with pytest.raises(TypeError):
            ConstellationDeviceManager(**{name: 3.0})  # type: ignore[arg-type]


def test_galaxy_s_constructor_is_a_deprecated_door_into_the_timing() -> None:
    with pytest.warns(DeprecationWarning, match="timing=stellate.Timing"):
        manager = ConstellationDeviceManager("galaxy", 10.0, 2.0, strict=True)
    assert manager.timing == Timing(heartbeat_interval=10.0, reconnect_delay=2.0)
    with pytest.warns(DeprecationWarning):
        assert ConstellationDeviceManager(reconnect_delay=1.0, strict=True).timing == Timing(
            reconnect_delay=1.0
        )
    with pytest.raises(TypeError, match="inside timing="):  # said twice: which one wins?
        ConstellationDeviceManager(heartbeat_interval=10.0, timing=Timing(), strict=True)


def test_config_hands_the_manager_every_timing() -> None:
    config = loads_config(
        "manager: {reconnect_delay: 1.5, recovery_window: 30, stability_window: 0,"
        " connect_timeout: 60}\n"
        "devices: [{device_id: d, server_url: 'ws://h/ws'}]\n"
    )
    timing = config.manager.timing
    assert isinstance(timing, Timing) and type(timing) is Timing
    assert (timing.reconnect_delay, timing.recovery_window, timing.stability_window) == (
        1.5,
        30.0,
        0.0,
    )
    assert ConstellationDeviceManager.from_config(config, strict=True).timing is timing


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
    problems = Timing.rule_violations(
        {"connect_timeout": 0.0, "miss_limit": 0, "jitter_floor": -1.0, "other": "ignored"}
    )
    assert [path for path, _ in problems] == [
        ("connect_timeout",),
        ("jitter_floor",),
        ("miss_limit",),
    ]


def test_lease_is_interval_times_misses() -> None:
    assert Timing(heartbeat_interval=10.0, miss_limit=4).lease == 40.0


def test_rejoin_bounds_do_not_climb() -> None:
    timing = Timing(rejoin_delay=2.0, jitter_floor=0.25)
    assert timing.rejoin_bounds() == (0.5, 2.0)


def test_every_default_is_the_documented_one() -> None:
    """docs/configuration.md's table of the manager block states each Timing field's default:
    the code holds the same numbers (a default changed in one place only fails here)."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    documented = {
        name: float(value)
        for name, value in re.findall(r"^\| `(\w+)`\s*\|[^|]*\|\s*`([-\d.]+)`\s*\|", docs, re.M)
        if name in attrs.fields_dict(Timing)
    }
    assert set(documented) == set(attrs.fields_dict(Timing))
    assert documented == {name: float(v) for name, v in attrs.asdict(Timing()).items()}
