"""Every legal registration path, replayed on a real lifecycle (exhaustively and sampled)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from fsm_support import WINDOWSAGENT, Monotonic, S, replay, step_event
from hypothesis import given
from hypothesis import strategies as st
from seed_example import SEED_SYSTEM_INFO

from stellate.fsm import SYSTEM_INFO_KEYS, AgentProfile, Timing, Trigger
from stellate.fsm.lifecycle import LifecycleEngine
from stellate.fsm.paths import Path, Step, count_paths, paths
from stellate.testing import agent_profiles, legal_paths, system_infos

#: Regression figures: how many legal paths the table allows (losses=0). Each attempt may end
#: in 12 ways on the last attempt (6 failures, a refusal, 3 refused keys, 2 activations) and
#: back off in 6 ways before it (7 from the second attempt on, where a refusal for an absent
#: target is transient): 12, then 6 + 6·12 = 78, 6 + 6·6 + 6·7·12 = 546, ...
PATH_COUNTS = {1: 12, 2: 78, 3: 546, 4: 3822, 5: 26754}

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
        elif last.trigger == Trigger.AUTH_REJECTED:
            assert lifecycle.failure_reason == "server rejected the API key"
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
        st.lists(st.none() | system_infos(ill_typed=False), min_size=telemetry, max_size=telemetry),
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
    assert len(paths(5)) == 26754


@pytest.mark.parametrize(
    ("max_retries", "losses", "window"),
    [
        *[(1, 0, 0), (2, 0, 0), (3, 0, 0), (4, 0, 0), (5, 0, 0), (1, 1, 0), (2, 1, 0), (1, 2, 0)],
        *[(1, 1, 1), (1, 1, 3), (2, 1, 2), (1, 2, 2)],  # with a recovery window
    ],
)
def test_count_paths_agrees_with_paths(max_retries: int, losses: int, window: int) -> None:
    listed = paths(max_retries, losses, window)
    assert count_paths(max_retries, losses, window) == len(listed) == len(set(listed))


#: The recovery window replayed: long enough, and passed when a path says so.
WINDOW = Timing(recovery_window=60.0)


def _window_passes(step: Step, lost: bool) -> bool:
    """A failure while recovering that ends FAILED can only mean the window passed."""
    return (
        lost
        and step.dest == S.FAILED
        and step.trigger in (Trigger.CONNECTION_FAILED, Trigger.TIMED_OUT)
    )


@pytest.mark.parametrize(("max_retries", "window"), [(1, 1), (1, 3), (2, 2)])
def test_every_path_through_a_recovery_window_replays(max_retries: int, window: int) -> None:
    """After a loss, attempts do not spend max_retries: a recovery ends IDLE, or FAILED only
    when the window passes (or on a final refusal), however many attempts it took."""
    beyond_max_retries = False
    for path in paths(max_retries, losses=1, window_attempts=window):
        mono = Monotonic()
        lc = ENGINE.create(
            attrs.evolve(WINDOWSAGENT, max_retries=max_retries), timing=WINDOW, monotonic=mono
        )
        try:
            for step in path:
                if _window_passes(step, lc.recovering_since is not None):
                    mono.now += WINDOW.recovery_window
                lc.fire(step_event(step))
                assert lc.status == step.dest
                beyond_max_retries |= lc.profile.connection_attempts > max_retries
            last = path[-1]
            if lc.state == S.FAILED and last.trigger in (
                Trigger.CONNECTION_FAILED,
                Trigger.TIMED_OUT,
            ):
                reason = lc.failure_reason or ""
                lost = any(s.source == S.IDLE for s in path)
                assert reason.startswith("recovery window of 60s passed") is lost, reason
                # the loss said why ("refused"): the reason names the last error, whatever
                # ended the window (an attempt's failure, or a wait's end that says nothing)
                assert not lost or "(last error: no connection)" not in reason, reason
        finally:
            ENGINE.release(lc)
    assert beyond_max_retries is (window > max_retries)


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
    with pytest.raises(ValueError):
        paths(1, window_attempts=-1)
