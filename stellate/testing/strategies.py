"""Hypothesis strategies for stellate's values: system info, profiles, policies, legal paths.

Needs ``hypothesis`` (the ``testing`` extra). Strategies are grouped by the part of stellate
they feed; add new groups (configs, frames, faults, …) as new sections below.

``legal_paths(max_retries)`` walks the transition table on real lifecycles, one step at a time,
offering at each state the successors that reach a final state soonest first — so hypothesis
shrinks a failing path toward the shortest path that still fails.
"""

from __future__ import annotations

import math
import string
from typing import Any

from hypothesis import strategies as st

from ..fsm.event_data import EventData
from ..fsm.lifecycle import LifecycleEngine
from ..fsm.paths import Path, Step, events_for, flow_triggers
from ..fsm.profile import AgentProfile
from ..fsm.states import DeviceStatus
from ..fsm.trigger import Trigger
from ..timing import RetryPolicy

__all__ = [
    "FEATURES",
    "PLATFORMS",
    "agent_profiles",
    "legal_paths",
    "retry_policies",
    "system_infos",
]

# -- shared building blocks ------------------------------------------------------------------

#: Feature names devices report (those of the registration flow's example, plus a few), so
#: capabilities and ``supported_features`` overlap often enough to exercise de-duplication.
FEATURES: tuple[str, ...] = (
    "gui",
    "cli",
    "browser",
    "file_system",
    "office",
    "windows_apps",
    "linux_apps",
    "mac_apps",
    "web_browsing",
    "office_applications",
    "file_management",
)

#: Platforms as UFO's DeviceInfoProvider reports them (``unknown`` when collection failed).
PLATFORMS: tuple[str, ...] = ("windows", "linux", "darwin", "unknown")

_NAME = st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-1000, max_value=1000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
)


def _json_values() -> st.SearchStrategy[Any]:
    """Small JSON-like values (what YAML metadata and AIP frames may carry)."""
    return st.recursive(
        _SCALAR,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(_NAME, inner, max_size=3),
        ),
        max_leaves=6,
    )


def _feature() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(FEATURES), _NAME)


# -- fsm: telemetry, profiles, policies -------------------------------------------------------


@st.composite
def system_infos(
    draw: st.DrawFn, *, extras: bool | None = None, ill_typed: bool | None = None
) -> dict[str, Any]:
    """``system_info`` dicts shaped like a REGISTER frame's (tests/frames/device_register.json).

    ``supported_features`` may repeat a feature or overlap the configured capabilities.

    Args:
        extras: True: always add ``custom_metadata`` and ``tags``; False: never;
            None (default): each independently, sometimes.
        ill_typed: True: some keys hold a JSON value of another type than the frame's (a
            ``platform`` that is a number or null, ``supported_features`` that is a string or
            holds non-strings, ...: what a buggy or hostile device may send, which the merge
            must take without failing); False: never; None (default): sometimes.
    """
    hostname = draw(_NAME)
    info: dict[str, Any] = {
        "device_id": draw(_NAME),
        "platform": draw(st.sampled_from(PLATFORMS)),
        "os_version": draw(st.text(alphabet=string.printable.strip(), max_size=24)),
        "cpu_count": draw(st.integers(min_value=0, max_value=512)),
        "memory_total_gb": draw(
            st.floats(min_value=0.0, max_value=4096.0, allow_nan=False).map(lambda g: round(g, 2))
        ),
        "hostname": hostname,
        "ip_address": str(draw(st.ip_addresses())),
        "supported_features": draw(st.lists(_feature(), max_size=8)),
        "platform_type": draw(st.sampled_from(("computer", "mobile", "server", "unknown"))),
        "schema_version": "1.0",
    }
    for key, values in (
        ("custom_metadata", st.dictionaries(_NAME, _json_values(), max_size=3)),
        ("tags", st.lists(_NAME, max_size=4)),
    ):
        if extras is True or (extras is None and draw(st.booleans())):
            info[key] = draw(values)
    if ill_typed is True or (ill_typed is None and draw(st.booleans())):
        wrong: st.SearchStrategy[Any] = st.one_of(
            _SCALAR, st.lists(_SCALAR, max_size=3), st.just({"x": 1})
        )
        keys = sorted(info)
        for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4, unique=True)):
            value = draw(wrong)
            if key == "supported_features" and draw(st.booleans()):
                value = [*info[key], value]  # a list holding something else than names
            info[key] = value
    return info


@st.composite
def agent_profiles(
    draw: st.DrawFn,
    *,
    max_retries: st.SearchStrategy[int | None] | None = None,
    status: DeviceStatus = DeviceStatus.DISCONNECTED,
) -> AgentProfile:
    """Configured profiles, as Phase 1 creates them (no attempts, no heartbeat, no task).

    Args:
        max_retries: strategy for ``max_retries``; default ``None`` (retry forever) or 1–10.
        status: the status the profile starts in.
    """
    retries = draw(
        max_retries
        if max_retries is not None
        else st.one_of(st.none(), st.integers(min_value=1, max_value=10))
    )
    host = draw(st.one_of(st.just("localhost"), st.ip_addresses(v=4).map(str)))
    port = draw(st.integers(min_value=1, max_value=65535))
    return AgentProfile(
        device_id=draw(_NAME),
        server_url=f"ws://{host}:{port}/ws",
        os=draw(st.one_of(st.none(), st.sampled_from(PLATFORMS))),
        capabilities=draw(st.lists(_feature(), max_size=5, unique=True)),
        metadata=draw(
            st.dictionaries(
                st.one_of(
                    st.sampled_from(("location", "performance", "description", "tags")), _NAME
                ),
                _json_values(),
                max_size=4,
            )
        ),
        status=status,
        max_retries=retries,
    )


def _valid_policy(*, reconnect_delay: float, cap_above: float, **rest: Any) -> RetryPolicy:
    return RetryPolicy(
        reconnect_delay=reconnect_delay, backoff_cap=reconnect_delay + cap_above, **rest
    )


def retry_policies() -> st.SearchStrategy[RetryPolicy]:
    """Valid ``Timing`` values, every field drawn (positive delays and deadlines, a cap at
    least the delay, jitter floor in [0, 1], ``miss_limit`` 1–10, windows of 0 s or more,
    ``retry_failed_after`` None or a positive wait)."""
    seconds = st.floats(min_value=0.0, max_value=600.0, allow_nan=False)
    deadlines = st.floats(min_value=0.001, max_value=600.0, allow_nan=False)
    return st.builds(
        _valid_policy,
        reconnect_delay=deadlines,
        cap_above=seconds,
        jitter_floor=st.floats(min_value=0.0, max_value=1.0),
        connect_timeout=deadlines,
        registration_timeout=deadlines,
        telemetry_timeout=deadlines,
        rejoin_delay=deadlines,
        heartbeat_interval=deadlines,
        miss_limit=st.integers(min_value=1, max_value=10),
        recovery_window=seconds,
        stability_window=seconds,
        retry_failed_after=st.none() | deadlines,
    )


# -- fsm: legal paths --------------------------------------------------------------------------

_IDLE = DeviceStatus.IDLE.value
_FAILED = DeviceStatus.FAILED.value


Event = tuple[Trigger, Trigger | EventData]
#: (max_retries, state, attempts, recovering from a loss): all a successor depends on.
_Key = tuple[int | None, str, int, bool]
_Option = tuple[Step, Event, _Key]

_ENGINE = LifecycleEngine()
#: The timing ``paths()`` enumerates by default: no recovery window (reconnects after a loss
#: spend ``max_retries``), so every path is bounded, and FAILED, where a path ends, waits for
#: the owner.
_PATH_TIMING = RetryPolicy(recovery_window=0.0, retry_failed_after=None)
#: A sequence of events that leads to each key seen so far (how to get a probe there).
_REACH: dict[_Key, tuple[Event, ...]] = {}
_SUCCESSORS: dict[_Key, tuple[_Option, ...]] = {}
#: Fewest steps to a goal (IDLE, FAILED, or None: either), by goal then key.
_DISTANCE: dict[str | None, dict[_Key, float]] = {}


def _start(max_retries: int | None) -> _Key:
    key = (max_retries, DeviceStatus.DISCONNECTED.value, 0, False)
    _REACH.setdefault(key, ())
    return key


def _replay(max_retries: int | None, events: tuple[Event, ...]) -> _Key:
    """Drive a fresh probe from DISCONNECTED through ``events``; return where it ends.

    Probes only ever move through ``fire``: this module never sets a status itself.
    """
    probe = AgentProfile(
        device_id="strategy-probe", server_url="ws://127.0.0.1/ws", max_retries=max_retries
    )
    lifecycle = _ENGINE.create(probe, timing=_PATH_TIMING)
    try:
        for _trigger, event in events:
            lifecycle.fire(event)
        attempts = lifecycle.profile.connection_attempts
        if max_retries is None:  # no limit: only whether an attempt failed before matters
            attempts = min(attempts, 2)  # (the transient-refusal guard reads it)
        return max_retries, lifecycle.status, attempts, lifecycle.recovering_since is not None
    finally:
        _ENGINE.release(lifecycle)


def _successors(key: _Key) -> tuple[_Option, ...]:
    """The registration-flow steps legal at ``key``, decided by the engine."""
    if key not in _SUCCESSORS:
        max_retries, state, _attempts, _lost = key
        reach = _REACH[key]
        triggers = flow_triggers(state)
        found: dict[Step, _Option] = {}
        for trigger in triggers:
            for fired in events_for(trigger):
                event = (trigger, fired)
                nxt = _replay(max_retries, (*reach, event))
                _REACH.setdefault(nxt, (*reach, event))
                step = Step(trigger, state, nxt[1])
                found.setdefault(step, (step, event, nxt))
        _SUCCESSORS[key] = tuple(found.values())
    return _SUCCESSORS[key]


def _distance(key: _Key, goal: str | None = None) -> float:
    """Fewest steps from ``key`` to ``goal`` (IDLE or FAILED; ``None``: either), ``inf`` if it
    cannot be reached (the graph may have cycles: a device that retries forever comes back to
    the same key)."""
    memo = _DISTANCE.setdefault(goal, {})
    if key in memo:
        return memo[key]
    goals = (_IDLE, _FAILED) if goal is None else (goal,)
    reachable: list[_Key] = []
    todo, seen = [key], {key}
    while todo:
        current = todo.pop()
        reachable.append(current)
        if current[1] in (_IDLE, _FAILED):
            continue
        for _s, _e, nxt in _successors(current):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    inf = math.inf
    dist = {k: 0.0 if k[1] in goals else memo.get(k, inf) for k in reachable}
    changed = True
    while changed:
        changed = False
        for k in reachable:
            if dist[k] == 0 or k[1] in (_IDLE, _FAILED):
                continue
            best = 1 + min(dist.get(n, memo.get(n, inf)) for _s, _e, n in _successors(k))
            if best < dist[k]:
                dist[k], changed = best, True
    memo.update(dist)
    return dist[key]


@st.composite
def legal_paths(
    draw: st.DrawFn, max_retries: int | None, *, losses: int = 0, max_attempts: int = 8
) -> Path:
    """Legal registration paths for a device with ``max_retries``: the same set as
    ``stellate.fsm.paths.paths(max_retries, losses)``, drawn by walking the table.

    First the path's shape is drawn — how many losses after IDLE (0 to ``losses``) and whether
    it ends IDLE or FAILED — so paths that reach IDLE and lose their server come up as often as
    quick failures; then each step is chosen among the successors that can still end that way,
    ordered shortest-way-there first, so failures shrink toward short paths.

    Args:
        max_retries: the device's retry limit (>= 1), or ``None`` (retry forever: paths are
            unbounded, so each run to IDLE or FAILED is cut at ``max_attempts`` attempts, after
            which the walk takes the shortest way on).
        losses: how many times a path may lose its connection after IDLE and go on.
        max_attempts: see ``max_retries``.
    """
    if max_retries is not None and max_retries < 1:
        raise ValueError("max_retries must be >= 1 or None")
    # Half the paths have no loss, half 1 to ``losses`` (or none): the three shapes (IDLE,
    # FAILED, lost and back) come up about equally often.
    losses_left = draw(st.integers(min_value=0, max_value=losses)) if draw(st.booleans()) else 0
    ending = draw(st.sampled_from([_FAILED, _IDLE]))
    key = _start(max_retries)
    path: list[Step] = []
    attempts = 0
    while True:
        if key[1] == _FAILED or (key[1] == _IDLE and losses_left == 0):
            break
        options = _successors(key)
        if key[1] == _IDLE:  # a loss, and on
            options = tuple(o for o in options if o[0].trigger == Trigger.CONNECTION_FAILED)
            losses_left -= 1
            attempts = 0
        goal: str | None = _IDLE if losses_left else ending
        ranked = sorted(
            (o for o in options if _distance(o[2], goal) < math.inf),
            key=lambda option: _distance(option[2], goal),
        )
        if not ranked:  # that ending cannot be reached from here: any way out
            goal = None
            ranked = sorted(options, key=lambda option: _distance(option[2]))
        if attempts >= max_attempts:
            best = _distance(ranked[0][2], goal)
            ranked = [o for o in ranked if _distance(o[2], goal) == best]
        step, _event, key = draw(st.sampled_from(ranked))
        attempts += step.dest == DeviceStatus.CONNECTING.value
        path.append(step)
    return tuple(path)
