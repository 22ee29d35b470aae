"""stellate.testing's strategies produce what they promise."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

import stellate.testing
from stellate.fsm import SYSTEM_INFO_KEYS, AgentProfile, DeviceStatus, RetryPolicy, Trigger
from stellate.fsm.paths import Path
from stellate.testing import agent_profiles, legal_paths, retry_policies, system_infos

FIND = settings(database=None, derandomize=True, max_examples=500)


@given(system_infos(ill_typed=False))
def test_system_infos_look_like_a_register_frame(info: dict[str, Any]) -> None:
    assert set(SYSTEM_INFO_KEYS) | {"device_id", "supported_features"} <= set(info)
    assert set(info) - set(SYSTEM_INFO_KEYS) <= {
        "device_id",
        "supported_features",
        "custom_metadata",
        "tags",
    }
    assert isinstance(info["cpu_count"], int) and isinstance(info["memory_total_gb"], float)
    assert all(isinstance(f, str) for f in info["supported_features"])


def test_ill_typed_system_infos_are_drawn() -> None:
    strings = {"platform": str, "cpu_count": int, "supported_features": list}
    seen = find(
        system_infos(ill_typed=True),
        lambda i: any(not isinstance(i[k], t) for k, t in strings.items()),
        settings=FIND,
    )
    assert seen


@given(st.booleans().flatmap(lambda on: st.tuples(st.just(on), system_infos(extras=on))))
def test_system_infos_extras_switch(case: tuple[bool, dict[str, Any]]) -> None:
    extras, info = case
    assert ("custom_metadata" in info) is extras and ("tags" in info) is extras


@given(agent_profiles())
def test_agent_profiles_are_freshly_configured(profile: AgentProfile) -> None:
    assert profile.status == DeviceStatus.DISCONNECTED
    assert profile.connection_attempts == 0 and profile.last_heartbeat is None
    assert profile.current_task_id is None
    assert profile.server_url.startswith("ws://") and profile.server_url.endswith("/ws")
    assert len(set(profile.capabilities)) == len(profile.capabilities)
    assert profile.max_retries is None or profile.max_retries >= 1


@given(retry_policies())
def test_retry_policies_are_valid(policy: RetryPolicy) -> None:
    assert isinstance(policy, RetryPolicy) and 0 <= policy.jitter_floor <= 1


def test_legal_paths_shrink_to_a_shortest_path() -> None:
    def length(path: Path) -> int:
        return len(path)

    for n in (1, 2, 3, 5):  # connect, then the key refused at the handshake
        assert length(find(legal_paths(n), lambda _: True, settings=FIND)) == 2
    to_idle = find(legal_paths(5), lambda p: p[-1].dest == "idle", settings=FIND)
    assert [s.dest for s in to_idle] == [
        "connecting",
        "connected",
        "registering",
        "telemetry",
        "idle",
    ]


@given(st.data())
def test_legal_paths_with_losses_recover_through_backoff(data: st.DataObject) -> None:
    path = data.draw(legal_paths(2, losses=2))
    idles = [i for i, step in enumerate(path) if step.dest == "idle"]
    assert len(idles) <= 3
    for i in idles[:-1] if path[-1].dest == "idle" else idles:
        assert path[i + 1].trigger == Trigger.CONNECTION_FAILED and path[i + 1].dest == "backoff"


def test_legal_paths_rejects_a_limit_below_one() -> None:
    with pytest.raises(ValueError):
        find(legal_paths(0), lambda _: True, settings=FIND)


@given(st.data())
def test_legal_paths_for_a_device_that_retries_forever_end_and_never_exhaust(
    data: st.DataObject,
) -> None:
    path = data.draw(legal_paths(None, losses=1, max_attempts=4))
    assert path[-1].dest in ("idle", "failed")
    if path[-1].dest == "failed":  # only a refusal ends a device that retries forever
        assert path[-1].trigger in (Trigger.REGISTRATION_ANSWERED, Trigger.AUTH_REJECTED)


def test_legal_paths_reach_idle_and_lose_it_as_often_as_they_fail() -> None:
    endings: list[str] = []

    @settings(max_examples=60, database=None)
    @given(legal_paths(3, losses=2))
    def collect(path: Path) -> None:
        endings.append("loss" if any(s.source == "idle" for s in path) else path[-1].dest)

    collect()
    assert min(endings.count(e) for e in ("idle", "failed", "loss")) >= 6, endings


def test_package_reexports_lazily() -> None:
    for name in stellate.testing.__all__:
        assert getattr(stellate.testing, name) is not None
    with pytest.raises(AttributeError):
        _ = stellate.testing.no_such_strategy
