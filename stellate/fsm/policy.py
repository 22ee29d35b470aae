"""Retry and deadline policy, and the jittered exponential backoff it implies.

The reference reconnects after a fixed delay, so devices that fail together retry together.
Here the n-th wait is drawn uniformly from ``[floor·d, d]`` with ``d = min(cap, base·2**(n-1))``:
bounded (tests can assert the bounds) and spread (a reconnect storm is smeared over time).
"""

from __future__ import annotations

import random
from typing import Protocol

import attrs


class RandomSource(Protocol):
    """The port the backoff draws from: ``random.Random`` or a seeded stand-in."""

    def uniform(self, a: float, b: float) -> float: ...


def _non_negative(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attr.name} must be >= 0, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """Per-device timing. Defaults follow Galaxy's (30 s connect, 5 s reconnect delay)."""

    reconnect_delay: float = attrs.field(default=5.0, validator=_non_negative)
    backoff_cap: float = attrs.field(default=60.0, validator=_non_negative)
    jitter_floor: float = attrs.field(default=0.1)
    connect_timeout: float = attrs.field(default=30.0, validator=_non_negative)
    registration_timeout: float = attrs.field(default=10.0, validator=_non_negative)
    telemetry_timeout: float = attrs.field(default=10.0, validator=_non_negative)

    def backoff_bounds(self, failures: int) -> tuple[float, float]:
        """The interval the wait after the ``failures``-th consecutive failure is drawn from."""
        exponent = max(failures, 1) - 1
        # Cap the exponent first so a device retrying forever never overflows a float.
        ceiling = min(self.backoff_cap, self.reconnect_delay * 2.0 ** min(exponent, 60))
        return ceiling * self.jitter_floor, ceiling

    def backoff_delay(self, failures: int, rng: RandomSource) -> float:
        low, high = self.backoff_bounds(failures)
        return rng.uniform(low, high)


def default_random() -> random.Random:
    """An unseeded source for production; tests pass ``random.Random(seed)``."""
    return random.Random()
