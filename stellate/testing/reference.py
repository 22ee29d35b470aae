"""Small references for the fleet checks, written from the documented rules.

A check that computes its expectation by calling the production function it checks can never
see a bug in that function: both sides move together. So the fleet checks
(:meth:`~stellate.testing.fleet.FleetResult.problems`) compute what a correct manager does from
the rules as the README, ``docs/configuration.md`` and the flow document state them, restated
here on purpose, in a second and deliberately plain form. Nothing in this module imports the
code it checks (``stellate.fsm.profile``, ``stellate.fsm.policy``, the runner).

* :func:`merged_fields` — phase 4's merge rule: ``os`` ← ``platform``; ``capabilities`` ←
  configured ∪ ``supported_features`` (configured first, then new features in the order the
  device gave them, no duplicates); ``metadata.system_info`` ← the eight system keys;
  ``custom_metadata`` and ``tags`` copied when present; configured metadata kept.
* :func:`backoff_bounds` — the wait after the n-th failure of a run is drawn uniformly from
  ``[floor·d, d]`` with ``d = min(backoff_cap, reconnect_delay·2**(n-1))``, ``floor`` = 0.1.
* :func:`backoff_failure_counts` — which n each wait of a path uses: every attempt counts one,
  the owner's connect starts the count over, activation (IDLE) resets it, and a wait that
  follows a loss after activation counts as the first.
* :func:`lease_expiry` — a device whose server falls silent is lost once ``miss_limit``
  heartbeats in a row went unanswered: ``heartbeat_interval × miss_limit`` after the first
  unanswered one, not before.

These are also useful to your own tests as oracles; they are small enough to read in one
sitting and check against the documents by eye.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "JITTER_FLOOR",
    "SYSTEM_KEYS",
    "backoff_bounds",
    "backoff_failure_counts",
    "lease_expiry",
    "merged_fields",
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

#: The documented lower end of a jittered wait, as a fraction of its ceiling.
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
    failures: int, *, reconnect_delay: float, backoff_cap: float
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
    return JITTER_FLOOR * ceiling, ceiling


def backoff_failure_counts(steps: Sequence[tuple[str, str, str]]) -> list[int]:
    """For each entry into ``backoff`` along ``steps`` (``(trigger, source, dest)``), the n of
    :func:`backoff_bounds` its wait uses."""
    counts: list[int] = []
    attempts = 0
    for trigger, _source, dest in steps:
        if trigger in ("connect", "retry"):
            attempts = 0
        if dest == "connecting":
            attempts += 1
        elif dest == "idle":
            attempts = 0
        elif dest == "backoff":
            counts.append(max(attempts, 1))
    return counts


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
