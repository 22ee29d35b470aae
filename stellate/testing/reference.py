"""Small references for the fleet checks, written from the documented rules.

A check that computes its expectation by calling the production function it checks can never
see a bug in that function: both sides move together. So the fleet checks
(:meth:`~stellate.testing.fleet.FleetResult.problems`) compute what a correct manager does from
the rules as the README, ``docs/configuration.md`` and the flow document state them, restated
here on purpose, in a second and deliberately plain form. Nothing in this module imports the
code it checks (``stellate.fsm.profile``, ``stellate.timing``, the runner); it reads only
the table's declared group of activated states.

* :func:`merged_fields` — phase 4's merge rule: ``os`` ← ``platform``; ``capabilities`` ←
  configured ∪ ``supported_features`` (configured first, then new features in the order the
  device gave them, no duplicates); ``metadata.system_info`` ← the eight system keys;
  ``custom_metadata`` and ``tags`` copied when present; configured metadata kept.
* :func:`backoff_bounds` — the wait after the n-th failure of a run is drawn uniformly from
  ``[floor·d, d]`` with ``d = min(backoff_cap, reconnect_delay·2**(n-1))``, ``floor`` the
  configured ``jitter_floor`` (0.1 unless set).
* :func:`rejoin_bounds` — a wait for a target that has not re-joined: ``[floor·rejoin_delay,
  rejoin_delay]``, never climbing.
* :func:`backoff_waits` — which bounds each wait of a timed path uses: n counts failed
  attempts since the owner's connect or retry, across activations; the loss of a connection
  that stayed up the stability window sets it back to 0, a flap counts one more; a transient
  refusal while recovering under a recovery window waits the flat rejoin delay; no wait runs
  past the recovery window's end.
* :func:`transient_refusal` — the refusals a recovering device backs off from instead of
  failing: the reference server's "Target device 'D' is not connected" and "client_id 'C' is
  already registered; duplicate registrations are not allowed" (README, "Registration"), any
  other text being final.
* :func:`lease_expiry` — a device whose server falls silent is lost once ``miss_limit``
  heartbeats in a row went unanswered: ``heartbeat_interval × miss_limit`` after the first
  unanswered one, not before.

These are also useful to your own tests as oracles; they are small enough to read in one
sitting and check against the documents by eye.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..fsm.states import ACTIVE

__all__ = [
    "JITTER_FLOOR",
    "SYSTEM_KEYS",
    "Wait",
    "backoff_bounds",
    "backoff_waits",
    "climbing_step",
    "lease_expiry",
    "merged_fields",
    "rejoin_bounds",
    "transient_refusal",
]

#: The eight keys phase 4 copies into ``metadata["system_info"]`` (the flow document's list).
SYSTEM_KEYS = (
    "platform",
    "os_version",
    "cpu_count",
    "memory_total_gb",
    "hostname",
    "ip_address",
    "platform_type",
    "schema_version",
)

#: The documented default lower end of a jittered wait, as a fraction of its ceiling
#: (``jitter_floor`` in docs/configuration.md).
JITTER_FLOOR = 0.1


def merged_fields(
    os: str | None,
    capabilities: Iterable[str],
    metadata: Mapping[str, Any],
    system_info: Mapping[str, Any],
) -> tuple[str | None, tuple[str, ...], dict[str, Any]]:
    """``(os, capabilities, metadata)`` after merging one telemetry answer into them."""
    new_os = os
    if isinstance(system_info.get("platform"), str):
        new_os = system_info["platform"]
    merged = list(capabilities)
    features = system_info.get("supported_features")
    for feature in features if isinstance(features, list | tuple) else ():
        if isinstance(feature, str) and feature not in merged:
            merged.append(feature)
    new_metadata = dict(metadata)
    new_metadata["system_info"] = {key: system_info.get(key) for key in SYSTEM_KEYS}
    for key in ("custom_metadata", "tags"):
        if key in system_info:
            new_metadata[key] = system_info[key]
    return new_os, tuple(merged), new_metadata


def backoff_bounds(
    failures: int,
    *,
    reconnect_delay: float,
    backoff_cap: float,
    jitter_floor: float = JITTER_FLOOR,
) -> tuple[float, float]:
    """The interval the wait after the ``failures``-th failure (≥ 1) is drawn from."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    ceiling = reconnect_delay
    for _ in range(failures - 1):
        if ceiling >= backoff_cap or ceiling == 0:
            break
        ceiling *= 2
    ceiling = min(ceiling, backoff_cap)
    return jitter_floor * ceiling, ceiling


def climbing_step(*, reconnect_delay: float, rejoin_delay: float, recovering: bool) -> float:
    """The first wait a failed attempt's backoff climbs from: ``reconnect_delay``, or, for an
    attempt that failed while recovering from a loss under a recovery window, the shorter of
    ``rejoin_delay`` and ``reconnect_delay``."""
    if recovering and rejoin_delay < reconnect_delay:
        return rejoin_delay
    return reconnect_delay


def rejoin_bounds(
    *, rejoin_delay: float, jitter_floor: float = JITTER_FLOOR
) -> tuple[float, float]:
    """The interval a wait for a target that has not re-joined is drawn from (flat)."""
    return jitter_floor * rejoin_delay, rejoin_delay


#: The reference server's two refusals that say the server does not know the device *yet*
#: (README, "Registration"), as (prefix, suffix) around the id it names.
_TRANSIENT_TEXTS = (
    ("Target device '", "' is not connected"),
    ("client_id '", "' is already registered; duplicate registrations are not allowed"),
)


def transient_refusal(text: str) -> bool:
    """True if a registration refused with ``text`` is one of the reference's two transient
    refusals (whatever id it names), False for any other text (a final refusal)."""
    return any(
        text.startswith(head) and text.endswith(tail) and len(text) >= len(head) + len(tail)
        for head, tail in _TRANSIENT_TEXTS
    )


@attrs.frozen
class Wait:
    """What a wait between attempts must be: drawn from ``[low, high]``, and cut short at
    ``until`` (the recovery window's end) if it is set and comes first."""

    low: float
    high: float
    until: float | None = None
    #: The failure count n its bounds use (0 for a rejoin wait, which does not climb).
    failures: int = 0
    #: The server's Retry-After on the failure before it: the wait lasts at least this long.
    floor: float = 0.0

    def waited(self, drawn: float, at: float) -> float:
        """How long a wait that drew ``drawn`` at ``at`` lasts: at least the server's
        Retry-After, and never past ``until``."""
        wait = max(drawn, self.floor)
        return wait if self.until is None else max(min(wait, self.until - at), 0.0)


def backoff_waits(
    steps: Sequence[tuple[float, str, str, str]],
    *,
    reconnect_delay: float,
    backoff_cap: float,
    rejoin_delay: float,
    recovery_window: float = 0.0,
    stability_window: float = 0.0,
    jitter_floor: float = JITTER_FLOOR,
    retry_after: Sequence[float | None] = (),
) -> list[Wait]:
    """Each wait along a device's timed path (``(time, trigger, source, dest)`` steps).

    The documented rule: n counts the failed attempts since the owner's ``connect`` or
    ``retry`` and goes on across activations; the loss of a connection that stayed up at least
    ``stability_window`` seconds (counted from IDLE) sets n back to 0, the loss of a
    shorter-lived one (a flap) counts as one more failure; each wait uses ``max(n, 1)``. The
    wait after a loss climbs from ``reconnect_delay``; under a recovery window, a failed
    attempt after the loss climbs from ``min(rejoin_delay, reconnect_delay)``. A
    device recovering from a loss under a recovery window that is refused with a transient
    rejection ("target not yet known", "id still held") waits ``[floor·rejoin_delay,
    rejoin_delay]`` and n does not move; under a recovery window no wait runs past its end.
    ``retry_after`` gives, step by step, the server's Retry-After on the failure that step
    records (None or missing: it sent none): the wait after it lasts at least that long.
    """
    out: list[Wait] = []
    n = 0
    activated: float | None = None
    lost: float | None = None
    for index, (at, trigger, source, dest) in enumerate(steps):
        floor = (retry_after[index] if index < len(retry_after) else None) or 0.0
        if trigger == "retry" or (trigger == "connect" and source != "backoff"):
            n, activated, lost = 0, None, None  # the owner's fresh run (not "connect now")
        if dest == "idle" and source == "telemetry":
            activated, lost = at, None
        if dest != "backoff":
            continue
        step = reconnect_delay
        if source in ACTIVE:  # a loss after activation (the table's group of states)
            stable = activated is not None and at - activated >= stability_window
            n = 0 if stable else n + 1
            lost = at
        elif trigger == "registration_answered" and lost is not None and recovery_window > 0:
            low, high = rejoin_bounds(rejoin_delay=rejoin_delay, jitter_floor=jitter_floor)
            out.append(Wait(low, high, lost + recovery_window, 0, floor))
            continue
        else:
            n += 1
            step = climbing_step(
                reconnect_delay=reconnect_delay,
                rejoin_delay=rejoin_delay,
                recovering=lost is not None and recovery_window > 0,
            )
        low, high = backoff_bounds(
            max(n, 1), reconnect_delay=step, backoff_cap=backoff_cap, jitter_floor=jitter_floor
        )
        until = lost + recovery_window if lost is not None and recovery_window > 0 else None
        out.append(Wait(low, high, until, max(n, 1), floor))
    return out


def lease_expiry(
    heartbeats: Sequence[float], last_answer: float, *, interval: float, miss_limit: int
) -> list[float]:
    """When a device whose server answered last at ``last_answer`` must count it as lost.

    ``heartbeats`` are the times the device's heartbeats reached the server. The first one
    sent after the last answer is the first unanswered; the device is lost exactly one lease
    (``interval × miss_limit``) after it. A heartbeat at the very instant of the last answer
    may count either way (which of the two happened first is not observable), so this returns
    every acceptable instant: one, or two on such a tie. Empty if no heartbeat went
    unanswered.
    """
    lease = interval * miss_limit
    tie = 1e-9 * max(1.0, abs(last_answer))
    after = [t for t in heartbeats if t >= last_answer - tie]
    if not after:
        return []
    if after[0] <= last_answer + tie:  # a heartbeat and the last answer at the same instant
        return [t + lease for t in after[:2]]
    return [after[0] + lease]
