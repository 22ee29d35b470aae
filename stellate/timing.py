"""Timing: every timing setting of a device's lifecycle, with its default, stated once.

A ``Timing`` is the one door every timing setting comes in by, everywhere: the config file's
``manager:`` block (``ManagerSettings.timing``), the manager
(``ConstellationDeviceManager(timing=...)``), the agent server (``ServerPolicy(timing=...)``),
the device agent (``DeviceAgent(timing=...)``), the heartbeat lease they share, the command's
flags and the test harness: none of them takes a timing setting on its own or computes one
from two others (``lease`` is said here). The state machine's deadlines name fields of
this class (``stellate/fsm/table.py`` declares which state waits on which), and the backoff
schedules below are the arithmetic those deadlines use.

Backoff. The reference reconnects after a fixed delay, so devices that fail together retry
together. Here the wait after the n-th failure in a row is drawn uniformly from ``[floor·d, d]``
with ``d = min(backoff_cap, reconnect_delay·2**(max(n, 1)-1))``: bounded (tests can assert the
bounds) and spread (a reconnect storm is smeared over time). n counts the failed attempts since
the owner's connect or retry, and goes on counting across activations: a loss of a connection
that stayed up ``stability_window`` seconds sets it back to 0 (that wait and the one after the
next failed attempt both use d = reconnect_delay), a loss of a shorter-lived one (a flap) counts
one more failure. While a device recovers from a loss (under a recovery window), a failed
attempt's wait climbs from the shorter of ``rejoin_delay`` and ``reconnect_delay`` instead:
``d = min(backoff_cap, min(rejoin_delay, reconnect_delay)·2**(n-1))`` (the wait right after the
loss still uses ``reconnect_delay``, which spreads the fleet's first attempts): a server that
restarts refuses a few attempts, and its devices should not then sit out the schedule's long
steps once it is back, while a server that stays down still sees the waits climb to the cap.
While a device recovers and the server answers but does not know its target yet, the wait is
drawn from ``[floor·rejoin_delay, rejoin_delay]``: short and jittered, and it does not climb
(the server is up; only the device agent is missing).

A way back from FAILED. A device that gave up (retries exhausted, the recovery window passed, a
refusal) starts a fresh run by itself ``retry_failed_after`` seconds later, as if its owner had
retried it: a device whose agent was away longer than the recovery window comes back once the
agent does, without anyone restarting the manager. ``None`` keeps the registration flow's rule
(FAILED waits for the owner's ``retry``: manual intervention).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import attrs

from .errors import FieldPath, InvalidFields

__all__ = [
    "DEFAULT_TIMING",
    "RandomSource",
    "RetryPolicy",
    "Timing",
    "default_random",
    "number_rule",
]


class RandomSource(Protocol):
    """The port the backoff draws from: ``random.Random`` or a seeded stand-in."""

    def uniform(self, a: float, b: float) -> float: ...


def default_random() -> random.Random:
    """An unseeded source for production; tests pass ``random.Random(seed)``."""
    return random.Random()


def number_rule(value: float, *, minimum: float, inclusive: bool) -> Iterator[str]:
    """What is wrong with ``value`` as a finite number ``>`` (or ``>=``) ``minimum``."""
    if not math.isfinite(value):
        yield f"must be a finite number, got {value!r}"
    elif value < minimum or (not inclusive and value == minimum):
        yield f"must be {'>=' if inclusive else '>'} {minimum:g}, got {value!r}"


#: Deadlines, and the waits between attempts (> 0: a wait of 0 would reconnect in a loop that
#: never yields, against a server that is down).
_POSITIVE = (
    "connect_timeout",
    "registration_timeout",
    "telemetry_timeout",
    "heartbeat_interval",
    "reconnect_delay",
    "rejoin_delay",
)
#: Windows: 0 is meaningful (no recovery window; every loss starts the backoff over).
_NON_NEGATIVE = ("backoff_cap", "recovery_window", "stability_window")
#: Waits that may be switched off (None); when set, > 0 like the other waits.
_OPTIONAL_POSITIVE = ("retry_failed_after",)


@attrs.frozen(kw_only=True)
class Timing:
    """How long a device waits for what, in seconds. Every field has a documented default.

    Raises:
        InvalidFields: a field breaks its rule (every broken rule is named at once; a
            ``ValueError``).
    """

    #: TCP connect + TLS + WebSocket handshake, counted from the moment a connect slot is held.
    connect_timeout: float = 30.0
    #: From REGISTER sent to the server's answer (the server gives a new socket as long).
    registration_timeout: float = 10.0
    #: From the telemetry request to its answer; telemetry never fails a device (it goes IDLE).
    telemetry_timeout: float = 10.0
    #: The first wait after a failure; later waits double up to ``backoff_cap``.
    reconnect_delay: float = 5.0
    #: The longest wait between two attempts (must be >= ``reconnect_delay``).
    backoff_cap: float = 60.0
    #: Each wait is drawn from ``[jitter_floor·d, d]`` (0: anywhere up to d; 1: no jitter).
    jitter_floor: float = 0.1
    #: The (non-climbing) wait while recovering, when the server answers but does not know
    #: the target yet (its agent has not re-joined).
    rejoin_delay: float = 2.0
    #: Seconds between heartbeats once a device is IDLE.
    heartbeat_interval: float = 30.0
    #: A peer is lost when this many heartbeats in a row go unanswered.
    miss_limit: int = 3
    #: After losing an activated device, keep reconnecting this long without spending
    #: ``max_retries`` (0: reconnects spend ``max_retries``, the reference's behaviour). The
    #: default leaves a restarted server and its device agents (which back off up to 30 s
    #: themselves) a minute and a half to come back before a device is given up.
    recovery_window: float = 120.0
    #: A connection must stay up this long for its loss not to count as a flap: flaps keep the
    #: reconnect delay climbing (0: every loss starts the backoff over).
    stability_window: float = 60.0
    #: A FAILED device starts a fresh run (as the owner's ``retry`` would) after this long
    #: (None: it stays FAILED until the owner retries it). The default brings back, within five
    #: minutes of its return, a device whose agent was away longer than the recovery window,
    #: while one refused for a reason no retry fixes (a wrong key, a final rejection) costs its
    #: server one short run of attempts every five minutes, not a retry loop.
    retry_failed_after: float | None = 300.0

    def __attrs_post_init__(self) -> None:
        problems = Timing.rule_violations(attrs.asdict(self, recurse=False))
        if problems:
            raise InvalidFields(problems)

    @classmethod
    def rule_violations(cls, values: Mapping[str, Any]) -> list[tuple[FieldPath, str]]:
        """``((field,), message)`` for every rule these (already well-typed) values break.

        Fields missing from ``values`` are skipped, so a caller holding only some of them
        (the config converter, after a type error elsewhere) still hears about the rest.
        """
        problems: list[tuple[FieldPath, str]] = []
        for name in _POSITIVE:
            if name in values:
                problems += [
                    ((name,), m) for m in number_rule(values[name], minimum=0.0, inclusive=False)
                ]
        for name in _OPTIONAL_POSITIVE:
            if values.get(name) is not None:
                problems += [
                    ((name,), m) for m in number_rule(values[name], minimum=0.0, inclusive=False)
                ]
        bad: set[str] = set()
        for name in _NON_NEGATIVE:
            if name in values:
                found = list(number_rule(values[name], minimum=0.0, inclusive=True))
                problems += [((name,), m) for m in found]
                if found:
                    bad.add(name)
        delay, cap = values.get("reconnect_delay"), values.get("backoff_cap")
        if (
            delay is not None
            and cap is not None
            and not bad & {"reconnect_delay", "backoff_cap"}
            and cap < delay
        ):
            problems.append(
                (("backoff_cap",), f"must be >= reconnect_delay ({delay:g}), got {cap!r}")
            )
        floor = values.get("jitter_floor")
        if floor is not None and not (math.isfinite(floor) and 0.0 <= floor <= 1.0):
            problems.append((("jitter_floor",), f"must be between 0 and 1, got {floor!r}"))
        miss_limit = values.get("miss_limit")
        if miss_limit is not None and miss_limit < 1:
            problems.append((("miss_limit",), f"must be >= 1, got {miss_limit}"))
        return problems

    def evolve(self, **changes: Any) -> Timing:
        """A copy with ``changes`` applied (validated like a new one)."""
        return attrs.evolve(self, **changes)

    @property
    def lease(self) -> float:
        """Seconds of unanswered heartbeats after which a peer counts as gone."""
        return self.heartbeat_interval * self.miss_limit

    # -- backoff schedules ----------------------------------------------------------------------
    def backoff_bounds(self, failures: int, *, recovering: bool = False) -> tuple[float, float]:
        """The interval the wait after the ``failures``-th failure in a row is drawn from
        (``recovering``: a failed attempt while recovering from a loss, which climbs from the
        shorter step; see the module's docstring)."""
        exponent = max(failures, 1) - 1
        step = min(self.rejoin_delay, self.reconnect_delay) if recovering else self.reconnect_delay
        # Cap the exponent first so a device retrying forever never overflows a float.
        ceiling = min(self.backoff_cap, step * 2.0 ** min(exponent, 60))
        return ceiling * self.jitter_floor, ceiling

    def backoff_delay(self, failures: int, rng: RandomSource) -> float:
        low, high = self.backoff_bounds(failures)
        return rng.uniform(low, high)

    def rejoin_bounds(self) -> tuple[float, float]:
        """The interval a wait for an absent target is drawn from (it never climbs)."""
        return self.rejoin_delay * self.jitter_floor, self.rejoin_delay


#: The defaults, for code that wants one number without building its own ``Timing``.
DEFAULT_TIMING = Timing()

#: The name ``Timing`` had while it held only the retry and deadline settings (kept so code
#: written against it still runs; new code says ``Timing``).
RetryPolicy = Timing
