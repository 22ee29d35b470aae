"""Forcing a legal path: which faults make a correct manager take each attempt of it.

A path (``stellate.fsm.paths.paths``) is a sequence of connection attempts, each entering
``connecting`` and ending in one of a few ways. Every way of ending is an *attempt kind*
(refused, the connect hangs, rejected, telemetry answered and then the server stays, …) and
each kind can be caused by several faults, its *alternatives*: a transient refusal may be
either of the reference's two texts, an unanswered telemetry request may be no answer, garbage
or a late answer. (Garbage in answer to REGISTER is a ``protocol_violation``, which the
enumerated flow leaves out like our own bugs: random fleets and the hostile-server tests meet
it.) :data:`ALTERNATIVES` is that catalogue; the alternatives are named by
:func:`~.faults.fault_kinds`, so what the fake server actually applied can be counted against it.

:func:`schedules_for_path` gives, for one path, one schedule per *variant*: in variant ``j`` the
``i``-th attempt of kind ``k`` meets alternative ``(i + j) mod len(ALTERNATIVES[k])``, and there are
as many variants as the path's largest kind has alternatives — so across a path's variants every
alternative of every kind appears at every attempt of that kind (a round-robin covering design).
Frames, system infos and delays rotate too (the ``flavour``), so a run meets many of each.

The hypothesis strategy ``fault_strategies.schedule_for_path`` draws from the same catalogue.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ..fsm.paths import Path, Step
from ..fsm.states import DeviceStatus
from ..fsm.trigger import Trigger
from ..timing import RetryPolicy
from .faults import (
    DUPLICATE_CLIENT_ID,
    TARGET_NOT_CONNECTED,
    AfterIdle,
    Answer,
    AttemptFault,
    Busy,
    DropAfterAccept,
    DropAfterIdle,
    DropAfterRegister,
    DropDuringTelemetry,
    Forbidden,
    GarbageAfterIdle,
    GarbageTelemetry,
    HangConnect,
    Healthy,
    KeyRefusedAfterAccept,
    KeyRefusedOnRegister,
    NoRegistrationAnswer,
    NoTelemetryAnswer,
    Refuse,
    Reject,
    SilentAfterIdle,
    Stay,
    Telemetry,
    TelemetryNotFound,
    fault_kinds,
)

__all__ = [
    "ALTERNATIVES",
    "FINAL_REJECTION",
    "GARBAGE_AFTER_REGISTRATION",
    "GARBAGE_WHILE_REGISTERING",
    "SYSTEM_INFOS",
    "alternatives_used",
    "attempt_kinds",
    "attempts_of",
    "build",
    "schedules_for_path",
    "variants",
]

#: A rejection text that stays final even while a device recovers from a loss.
FINAL_REJECTION = "client_id '{client_id}' is not allowed on this server"

#: Answers to REGISTER that are neither a confirmation nor a rejection: protocol violations
#: (``GarbageOnRegister``), which the enumerated flow leaves out, so no attempt kind uses them.
GARBAGE_WHILE_REGISTERING: tuple[str | bytes, ...] = (
    "nope",
    b"\x00\x01binary",
    "[]",
    '{"type": "task", "status": "ok"}',
    '{"type": "heartbeat", "status": "bogus"}',
    '{"status": "ok"}',
)

#: Frames a registered constellation must ignore (including an answer to another request).
GARBAGE_AFTER_REGISTRATION: tuple[str | bytes, ...] = (
    "{",
    b"\xff\xfe",
    "null",
    '{"type": "task", "status": "ok"}',
    '{"type": "device_info_response", "status": "ok", "response_id": "not-yours",'
    ' "result": {"platform": "evil"}}',
)

#: System infos a healthy server reports, rotated so merges see overlap with the configured
#: capabilities, repeated features, extras (``custom_metadata``, ``tags``) and none of them.
SYSTEM_INFOS: tuple[Mapping[str, Any], ...] = (
    {
        "device_id": "pc",
        "platform": "windows",
        "os_version": "10.0.22631",
        "cpu_count": 16,
        "memory_total_gb": 32.0,
        "hostname": "DESKTOP-DEV01",
        "ip_address": "192.168.1.100",
        "supported_features": ["gui", "cli", "browser", "file_system", "office", "windows_apps"],
        "platform_type": "computer",
        "schema_version": "1.0",
    },
    {
        "device_id": "box",
        "platform": "linux",
        "os_version": "6.1",
        "cpu_count": 4,
        "memory_total_gb": 7.5,
        "hostname": "box",
        "ip_address": "10.0.0.7",
        "supported_features": ["cli", "cli", "linux_apps", "gui"],
        "platform_type": "server",
        "schema_version": "1.0",
        "custom_metadata": {"rack": "b2", "owner": {"team": "ops"}},
        "tags": ["ci", "gpu"],
    },
    {
        "device_id": "mac",
        "platform": "darwin",
        "os_version": "14.4",
        "cpu_count": 10,
        "memory_total_gb": 16.0,
        "hostname": "mac.local",
        "ip_address": "::1",
        "supported_features": [],
        "platform_type": "computer",
        "schema_version": "1.0",
    },
)

#: Builds an alternative's fault for a policy and a flavour (which frame, info, delay).
Maker = Callable[[RetryPolicy, int], AttemptFault]


def _pick(values: Sequence[Any], flavour: int) -> Any:
    return values[flavour % len(values)]


def _healthy(flavour: int, *, telemetry: Telemetry, idle: AfterIdle, info: bool) -> Healthy:
    return Healthy(
        system_info=_pick(SYSTEM_INFOS, flavour) if info else None,
        telemetry=telemetry,
        idle=idle,
    )


def _fixed(fault: AttemptFault) -> Maker:
    return lambda _policy, _flavour: fault


#: Telemetry alternatives (answered / unanswered) and idle alternatives (stays / lost) combine
#: into one healthy attempt; :func:`schedules_for_path` rotates each on its own.
_TELEMETRY: dict[
    str, tuple[tuple[str, Callable[[RetryPolicy, int], tuple[Telemetry, bool]]], ...]
] = {
    "telemetry answered": (
        (
            "telemetry answered",
            lambda p, f: (Answer(_pick((0.0, p.telemetry_timeout / 2), f)), True),
        ),
        ("telemetry answered: no system info", lambda p, f: (Answer(), False)),
        ("TelemetryNotFound", lambda p, f: (TelemetryNotFound(), True)),
    ),
    "telemetry unanswered": (
        ("NoTelemetryAnswer", lambda p, f: (NoTelemetryAnswer(), True)),
        (
            "GarbageTelemetry",
            lambda p, f: (GarbageTelemetry(_pick(GARBAGE_AFTER_REGISTRATION, f)), True),
        ),
        ("telemetry answered late", lambda p, f: (Answer(p.telemetry_timeout * 1.5), True)),
    ),
}
_IDLE: dict[str, tuple[tuple[str, Callable[[int], AfterIdle]], ...]] = {
    "stays idle": (
        ("Stay", lambda f: Stay()),
        ("GarbageAfterIdle", lambda f: GarbageAfterIdle(_pick(GARBAGE_AFTER_REGISTRATION, f))),
    ),
    "lost after idle": (
        ("SilentAfterIdle", lambda f: SilentAfterIdle()),
        ("DropAfterIdle", lambda f: DropAfterIdle(1 + f % 2)),
        ("DropAfterIdle(notice)", lambda f: DropAfterIdle(1 + f % 2, notice=True)),
    ),
}

#: Every attempt kind and the faults that cause it (healthy attempts: see ``_TELEMETRY`` and
#: ``_IDLE``, listed here under their own kinds).
ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "refused": ("Refuse", "Busy"),
    "key refused": ("Forbidden",),
    "key refused on accept": ("KeyRefusedAfterAccept",),
    "key refused on register": ("KeyRefusedOnRegister",),
    "connect hangs": ("HangConnect",),
    "dropped on accept": ("DropAfterAccept",),
    "register unanswered": ("NoRegistrationAnswer", "register answered late"),
    "register broken": ("DropAfterRegister",),
    "target not yet known while recovering": (
        "Reject(target not connected)",
        "Reject(duplicate)",
    ),
    "rejected": ("Reject(duplicate)", "Reject(target not connected)", "Reject(other)"),
    "rejected while recovering": ("Reject(other)",),
    "dropped in telemetry": ("DropDuringTelemetry",),
    **{kind: tuple(name for name, _ in options) for kind, options in _TELEMETRY.items()},
    **{kind: tuple(name for name, _ in options) for kind, options in _IDLE.items()},
}

_MAKERS: dict[str, Maker] = {
    "Refuse": _fixed(Refuse()),
    "Busy": lambda p, f: Busy(retry_after=p.reconnect_delay * (1 + f % 3)),
    "Forbidden": _fixed(Forbidden()),
    "KeyRefusedAfterAccept": _fixed(KeyRefusedAfterAccept()),
    "KeyRefusedOnRegister": _fixed(KeyRefusedOnRegister()),
    "HangConnect": _fixed(HangConnect()),
    "DropAfterAccept": _fixed(DropAfterAccept()),
    "NoRegistrationAnswer": _fixed(NoRegistrationAnswer()),
    "register answered late": lambda p, f: Healthy(register_delay=p.registration_timeout * 1.5),
    "DropAfterRegister": _fixed(DropAfterRegister()),
    "Reject(target not connected)": _fixed(Reject(TARGET_NOT_CONNECTED)),
    "Reject(duplicate)": _fixed(Reject(DUPLICATE_CLIENT_ID)),
    "Reject(other)": _fixed(Reject(FINAL_REJECTION)),
    "DropDuringTelemetry": _fixed(DropDuringTelemetry()),
}


def attempts_of(path: Path) -> list[list[Step]]:
    """Split a path into connection attempts (each begins by entering CONNECTING)."""
    attempts: list[list[Step]] = []
    for step in path:
        if step.dest == DeviceStatus.CONNECTING.value:
            attempts.append([])
        elif attempts:
            attempts[-1].append(step)
    return attempts


_S = DeviceStatus


def attempt_kinds(path: Path) -> list[tuple[str, ...]]:
    """The kind of each attempt of ``path`` (a healthy attempt: its telemetry kind and its
    idle kind).

    Raises:
        ValueError: an attempt no fault can force.
    """
    out: list[tuple[str, ...]] = []
    recovering = False
    for steps in attempts_of(path):
        sig = [(s.trigger, s.source, s.dest) for s in steps]
        at = [(t, src) for t, src, _d in sig]
        kind: tuple[str, ...]
        if at[:1] == [(Trigger.CONNECTION_FAILED, _S.CONNECTING)]:
            kind = ("refused",)
        elif at[:1] == [(Trigger.AUTH_REJECTED, _S.CONNECTING)]:
            kind = ("key refused",)
        elif at[1:2] == [(Trigger.AUTH_REJECTED, _S.CONNECTED)]:
            kind = ("key refused on accept",)
        elif at[2:3] == [(Trigger.AUTH_REJECTED, _S.REGISTERING)]:
            kind = ("key refused on register",)
        elif at[:1] == [(Trigger.TIMED_OUT, _S.CONNECTING)]:
            kind = ("connect hangs",)
        elif at[1:2] == [(Trigger.CONNECTION_FAILED, _S.CONNECTED)]:
            kind = ("dropped on accept",)
        elif at[2:3] == [(Trigger.TIMED_OUT, _S.REGISTERING)]:
            kind = ("register unanswered",)
        elif at[2:3] == [(Trigger.CONNECTION_FAILED, _S.REGISTERING)]:
            kind = ("register broken",)
        elif sig[2:3] == [(Trigger.REGISTRATION_ANSWERED, _S.REGISTERING, _S.BACKOFF)]:
            kind = ("target not yet known while recovering",)
        elif sig[2:3] == [(Trigger.REGISTRATION_ANSWERED, _S.REGISTERING, _S.FAILED)]:
            kind = ("rejected while recovering" if recovering else "rejected",)
        elif at[3:4] == [(Trigger.CONNECTION_FAILED, _S.TELEMETRY)]:
            kind = ("dropped in telemetry",)
        elif at[3:4] and at[3][0] in (Trigger.TELEMETRY_RECEIVED, Trigger.TIMED_OUT):
            answered = at[3][0] == Trigger.TELEMETRY_RECEIVED
            lost = at[4:5] == [(Trigger.CONNECTION_FAILED, _S.IDLE)]
            kind = (
                "telemetry answered" if answered else "telemetry unanswered",
                "lost after idle" if lost else "stays idle",
            )
            recovering = True
        else:
            raise ValueError(f"no fault forces the attempt {sig}")
        out.append(kind)
        if sig and sig[-1][2] == _S.BACKOFF:
            recovering = True  # the runner now treats the reference's rejections as transient
    return out


def build(
    kind: tuple[str, ...], names: tuple[str, ...], policy: RetryPolicy, flavour: int
) -> AttemptFault:
    """The fault for an attempt of ``kind`` choosing alternative ``names`` (one per part)."""
    if len(kind) == 1:
        return _MAKERS[names[0]](policy, flavour)
    telemetry_kind, idle_kind = kind
    telemetry, info = dict(_TELEMETRY[telemetry_kind])[names[0]](policy, flavour)
    idle = dict(_IDLE[idle_kind])[names[1]](flavour)
    return _healthy(flavour, telemetry=telemetry, idle=idle, info=info)


def variants(path: Path) -> int:
    """How many schedules :func:`schedules_for_path` gives for ``path``."""
    return max(
        (len(ALTERNATIVES[part]) for kind in attempt_kinds(path) for part in kind), default=1
    )


def schedules_for_path(
    path: Path, policy: RetryPolicy, *, flavours: Iterator[int] | None = None
) -> list[list[AttemptFault]]:
    """One schedule per variant of ``path`` (see the module docstring).

    Args:
        path: a legal path.
        policy: the manager's timing (late answers are 1.5× their deadline, on-time ones at
            most half of it).
        flavours: the source of flavours (default: counting from 0 for this path).
    """
    kinds = attempt_kinds(path)
    count = variants(path)
    flavours = flavours if flavours is not None else itertools.count()
    out = []
    for j in range(count):
        schedule = []
        for i, kind in enumerate(kinds):
            names = tuple(ALTERNATIVES[part][(i + j) % len(ALTERNATIVES[part])] for part in kind)
            schedule.append(build(kind, names, policy, next(flavours)))
        out.append(schedule)
    return out


def alternatives_used(
    path: Path, applied: Sequence[AttemptFault], policy: RetryPolicy
) -> set[tuple[str, str]]:
    """``(attempt kind, alternative)`` pairs the faults a device actually met exercised along
    ``path`` (read from the fake server's log, so an alternative counts only if applied)."""
    used: set[tuple[str, str]] = set()
    for kind, fault in zip(attempt_kinds(path), applied, strict=False):
        for part, name in zip(kind, fault_kinds(fault, policy), strict=False):
            used.add((part, name))
    return used


# -- covering many losses ---------------------------------------------------------------------


def _is_loss(step: Step) -> bool:
    return step.trigger == Trigger.CONNECTION_FAILED and step.source == _S.IDLE


@functools.cache
def segments(max_retries: int) -> tuple[list[Path], list[Path]]:
    """``(first, after_loss)``: the ways a device's first run goes (from ``connect`` to IDLE or
    FAILED) and the ways a run after a loss goes (from the loss to IDLE or FAILED).

    Attempts start over at IDLE and a device is recovering after any loss, so what happens after
    a loss does not depend on what came before: the legal paths with ``n`` losses are exactly
    the first runs that end IDLE, followed by ``n - 1`` runs after a loss that end IDLE,
    followed by one run after a loss (``paths(r, n)`` is that product, plus the shorter ones).
    """
    from ..fsm.paths import paths

    first = paths(max_retries, 0)
    after: dict[Path, None] = {}
    for path in paths(max_retries, 1):
        cut = next((i for i, step in enumerate(path) if _is_loss(step)), None)
        if cut is not None:
            after.setdefault(path[cut:], None)
    return first, list(after)


def covering_paths(max_retries: int, losses: int) -> list[Path]:
    """Paths with exactly ``losses`` losses such that every first run and every run after a
    loss appears at every position (a covering design over :func:`segments`, instead of their
    full product: ``paths(3, 2)`` has 2.5 million members, this about as many as the longest
    list of segments)."""
    if losses < 1:
        raise ValueError("covering_paths is for paths with at least one loss")
    first, after = segments(max_retries)
    first_idle = [p for p in first if p[-1].dest == _S.IDLE]
    after_idle = [p for p in after if p[-1].dest == _S.IDLE]
    count = max(len(first_idle), len(after))
    out = []
    for n in range(count):
        path = first_idle[n % len(first_idle)]
        for k in range(1, losses):
            path += after_idle[(n + k * 7) % len(after_idle)]
        out.append(path + after[n % len(after)])
    return out
