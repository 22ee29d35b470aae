"""Every legal registration path, replayed on a real lifecycle (exhaustively and sampled)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from fsm_support import WINDOWSAGENT, S, replay
from hypothesis import given
from hypothesis import strategies as st
from seed_example import SEED_SYSTEM_INFO

from stellate.fsm import SYSTEM_INFO_KEYS, AgentProfile, LifecycleEngine, Trigger
from stellate.fsm.paths import Path, count_paths, paths
from stellate.testing import agent_profiles, legal_paths, system_infos

#: Regression figures: how many legal paths the table allows (losses=0).
PATH_COUNTS = {1: 9, 2: 57, 3: 345, 4: 2073, 5: 12441}

ENGINE = LifecycleEngine()


@functools.cache
def path_set(max_retries: int, losses: int = 0) -> frozenset[Path]:
    return frozenset(paths(max_retries, losses))


def check_end(
    start: AgentProfile, path: Path, infos: list[Mapping[str, Any] | None], max_retries: int
) -> None:
    run = replay(ENGINE, start, path, infos)
    lifecycle, profile = run.lifecycle, run.lifecycle.profile

    assert run.recorder.steps == [tuple(step) for step in path]
    assert lifecycle.timeout is None
    last = path[-1]
    last_heartbeat = run.clock.last if run.activations else None
    if last.dest == S.IDLE:
        assert profile == attrs.evolve(
            run.expected,
            status=S.IDLE,
            connection_attempts=0,
            current_task_id=None,
            last_heartbeat=last_heartbeat,
        )
        assert profile.last_heartbeat is not None
        assert lifecycle.failure_reason is None
        if any(info is not None for info in infos):
            assert set(profile.metadata["system_info"]) == set(SYSTEM_INFO_KEYS)
            assert len(set(profile.capabilities)) == len(profile.capabilities)
            assert profile.capabilities[: len(start.capabilities)] == start.capabilities
    else:
        assert last.dest == S.FAILED
        assert profile == attrs.evolve(
            run.expected,
            status=S.FAILED,
            connection_attempts=run.attempts_at_end,
            last_heartbeat=last_heartbeat,
        )
        assert lifecycle.failure_reason
        if last.trigger == Trigger.REGISTRATION_ANSWERED:
            assert lifecycle.failure_reason == "registration rejected: nope"
            assert 1 <= profile.connection_attempts <= max_retries
        else:
            assert profile.connection_attempts == max_retries
            assert lifecycle.failure_reason.startswith(f"gave up after {max_retries} attempts")


# -- exhaustive --------------------------------------------------------------------------------


@pytest.mark.parametrize("max_retries", [1, 2, 3])
@pytest.mark.parametrize("with_info", [True, False], ids=["system_info", "no_info"])
def test_every_path_replays(max_retries: int, with_info: bool) -> None:
    start = attrs.evolve(WINDOWSAGENT, max_retries=max_retries)
    for path in paths(max_retries):
        telemetry = sum(step.trigger == Trigger.TELEMETRY_RECEIVED for step in path)
        infos = [SEED_SYSTEM_INFO if with_info else None] * telemetry
        check_end(start, path, infos, max_retries)


@pytest.mark.parametrize("max_retries", [1, 2])
def test_every_path_with_one_loss_replays(max_retries: int) -> None:
    start = attrs.evolve(WINDOWSAGENT, max_retries=max_retries)
    for number, path in enumerate(paths(max_retries, losses=1)):
        telemetry = sum(step.trigger == Trigger.TELEMETRY_RECEIVED for step in path)
        infos: list[Mapping[str, Any] | None] = [
            (SEED_SYSTEM_INFO if (number + i) % 2 else None) for i in range(telemetry)
        ]
        check_end(start, path, infos, max_retries)


# -- sampled -----------------------------------------------------------------------------------


@given(st.data())
def test_sampled_paths_replay(data: st.DataObject) -> None:
    max_retries = data.draw(st.integers(min_value=1, max_value=5), label="max_retries")
    losses = data.draw(st.integers(min_value=0, max_value=1), label="losses")
    path = data.draw(legal_paths(max_retries, losses=losses), label="path")
    start = data.draw(agent_profiles(max_retries=st.just(max_retries)), label="profile")
    telemetry = sum(step.trigger == Trigger.TELEMETRY_RECEIVED for step in path)
    infos = data.draw(
        st.lists(st.none() | system_infos(), min_size=telemetry, max_size=telemetry),
        label="infos",
    )
    check_end(start, path, infos, max_retries)


@given(
    st.integers(min_value=1, max_value=5).flatmap(lambda n: st.tuples(st.just(n), legal_paths(n)))
)
def test_walked_paths_are_enumerated_paths(case: tuple[int, Path]) -> None:
    max_retries, path = case
    assert path in path_set(max_retries)


# -- counting ----------------------------------------------------------------------------------


def test_path_counts_regression() -> None:
    assert {n: count_paths(n) for n in PATH_COUNTS} == PATH_COUNTS
    assert len(paths(5)) == 12441


@pytest.mark.parametrize(
    ("max_retries", "losses"), [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (1, 1), (2, 1), (1, 2)]
)
def test_count_paths_agrees_with_paths(max_retries: int, losses: int) -> None:
    listed = paths(max_retries, losses)
    assert count_paths(max_retries, losses) == len(listed) == len(set(listed))


def test_paths_end_in_idle_or_failed_and_start_disconnected() -> None:
    for path in paths(3, losses=1):
        assert path[0].source == S.DISCONNECTED
        assert path[-1].dest in (S.IDLE, S.FAILED)
        for before, after in itertools.pairwise(path):
            assert before.dest == after.source


def test_paths_refuse_bad_bounds() -> None:
    with pytest.raises(ValueError):
        paths(0)
    with pytest.raises(ValueError, match="too many"):
        paths(5, losses=2)
