"""Hypothesis strategies for the fault harness: AIP frames, faults, schedules, fleets, and
fault schedules that force a given legal path.

Needs ``hypothesis`` (the ``testing`` extra). Every strategy shrinks toward the simple case:
short schedules, healthy servers, few devices, small ``max_retries``.

Timing discipline: a late answer is drawn at least 1.5× its timeout and an on-time one at most
half of it, so no draw sits on a deadline (where the outcome would depend on which of two
events scheduled for the same instant runs first).
"""

from __future__ import annotations

import json
import string
import unicodedata
from collections.abc import Sequence
from typing import Any, Literal

import attrs
from hypothesis import strategies as st

from ..fsm.paths import Path
from ..protocol.codec import encode_client, encode_server
from ..protocol.ids import MAX_ID_LENGTH, device_id_problem, skeleton
from ..protocol.messages import (
    ClientMessage,
    ClientMessageType,
    ClientType,
    ServerMessage,
    ServerMessageType,
    TaskStatus,
)
from ..timing import RetryPolicy, Timing
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
    GarbageOnRegister,
    GarbageTelemetry,
    HangConnect,
    Healthy,
    KeyRefusedAfterAccept,
    KeyRefusedOnRegister,
    NoRegistrationAnswer,
    NoTelemetryAnswer,
    Outage,
    Refuse,
    Reject,
    SilentAfterIdle,
    Stay,
    Telemetry,
    TelemetryNotFound,
)
from .fleet import FleetDevice
from .forcing import ALTERNATIVES, FINAL_REJECTION, attempt_kinds, build
from .strategies import system_infos

__all__ = [
    "EDGE_IDS",
    "FINAL_REJECTION",
    "FLEET_FLOORS",
    "attempt_faults",
    "client_frames",
    "device_ids",
    "fleet_devices",
    "fleet_timings",
    "fleets",
    "invalid_server_frames",
    "rejections",
    "schedule_for_path",
    "schedules",
    "server_frames",
]


_ID = st.text(alphabet=string.ascii_lowercase + string.digits + "_-", min_size=1, max_size=10)
_TEXT = st.text(max_size=20)

# -- AIP frames ---------------------------------------------------------------------------------


def server_frames(
    types: Sequence[ServerMessageType] = tuple(ServerMessageType),
    statuses: Sequence[TaskStatus] = tuple(TaskStatus),
) -> st.SearchStrategy[str]:
    """Well-formed server → client frames (they decode), of the given types and statuses."""
    return st.builds(
        ServerMessage,
        type=st.sampled_from(tuple(types)),
        status=st.sampled_from(tuple(statuses)),
        error=st.one_of(st.none(), _TEXT),
        response_id=st.one_of(st.none(), _ID),
        timestamp=st.just("2025-01-01T00:00:00+00:00"),
        result=st.one_of(st.none(), st.dictionaries(_ID, _TEXT, max_size=2)),
    ).map(encode_server)


def client_frames(
    types: Sequence[ClientMessageType] = tuple(ClientMessageType),
) -> st.SearchStrategy[str]:
    """Well-formed client → server frames of the given types."""
    return st.builds(
        ClientMessage,
        type=st.sampled_from(tuple(types)),
        status=st.sampled_from(tuple(TaskStatus)),
        client_type=st.sampled_from(tuple(ClientType)),
        client_id=st.one_of(st.none(), _ID),
        target_id=st.one_of(st.none(), _ID),
        request_id=st.one_of(st.none(), _ID),
        metadata=st.one_of(st.none(), st.dictionaries(_ID, _TEXT, max_size=2)),
    ).map(encode_client)


def _malformed() -> st.SearchStrategy[str | bytes]:
    """Frames that are not AIP at all: not JSON, not an object, missing or bad fields, binary."""
    return st.one_of(
        st.sampled_from(["", "nope", "{", "null", "[]", "42", '"heartbeat"']),
        st.dictionaries(_ID, st.one_of(st.none(), st.integers(), _TEXT), max_size=3)
        .filter(lambda d: "type" not in d)
        .map(json.dumps),
        st.builds(
            lambda t, s: json.dumps({"type": t, "status": s}),
            st.sampled_from(["heartbeat", "error", "register", "bogus", 7]),
            st.sampled_from(["okay", "", None, 1]),
        ),
        st.binary(max_size=8),
    )


def invalid_server_frames(
    phase: Literal["registering", "registered"],
) -> st.SearchStrategy[str | bytes]:
    """Frames a constellation must treat as protocol violations in ``phase``.

    ``registering``: anything but a confirmation (heartbeat/ok) or a rejection (an error type or
    status). ``registered``: anything but a heartbeat, an error or a device-info answer to the
    outstanding request — including a device-info answer for some other request.
    """
    if phase == "registering":
        unexpected = server_frames(
            types=[t for t in ServerMessageType if t not in _ANSWERS_WHILE_REGISTERING],
            statuses=[s for s in TaskStatus if s is not TaskStatus.ERROR],
        )
    else:
        unexpected = st.one_of(
            server_frames(
                types=[
                    ServerMessageType.TASK,
                    ServerMessageType.TASK_END,
                    ServerMessageType.COMMAND,
                    ServerMessageType.DEVICE_INFO_REQUEST,
                ]
            ),
            st.builds(
                lambda result: encode_server(
                    ServerMessage(
                        type=ServerMessageType.DEVICE_INFO_RESPONSE,
                        status=TaskStatus.OK,
                        response_id="not-your-request",
                        result=result,
                    )
                ),
                st.dictionaries(_ID, _TEXT, max_size=2),
            ),
        )
    return st.one_of(_malformed(), unexpected)


_ANSWERS_WHILE_REGISTERING = (ServerMessageType.HEARTBEAT, ServerMessageType.ERROR)

# -- faults ---------------------------------------------------------------------------------------


def rejections(*, final: bool = False) -> st.SearchStrategy[Reject]:
    """``Reject`` faults with the reference's texts (or, with ``final``, a text that stays a
    rejection while a device recovers from a loss)."""
    if final:
        return st.just(Reject(FINAL_REJECTION))
    return st.sampled_from(
        [Reject(DUPLICATE_CLIENT_ID), Reject(TARGET_NOT_CONNECTED), Reject(FINAL_REJECTION)]
    )


def _on_time(timeout: float) -> st.SearchStrategy[float]:
    return st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=timeout * 0.5))


def _late(timeout: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=timeout * 1.5, max_value=timeout * 3.0)


def _system_info() -> st.SearchStrategy[dict[str, Any]]:
    return system_infos()


def _answered_telemetry(policy: RetryPolicy) -> st.SearchStrategy[tuple[Telemetry, bool]]:
    """(telemetry behaviour, whether the device registered system info) that get an answer."""
    return st.one_of(
        st.builds(lambda d: (Answer(d), True), _on_time(policy.telemetry_timeout)),
        st.just((TelemetryNotFound(), True)),
        st.just((Answer(), False)),  # the server has no system info: "not found"
    )


def _unanswered_telemetry(policy: RetryPolicy) -> st.SearchStrategy[Telemetry]:
    return st.one_of(
        st.just(NoTelemetryAnswer()),
        st.builds(GarbageTelemetry, invalid_server_frames("registered")),
        st.builds(Answer, _late(policy.telemetry_timeout)),
    )


def _staying() -> st.SearchStrategy[AfterIdle]:
    return st.one_of(
        st.just(Stay()),
        st.builds(
            GarbageAfterIdle,
            invalid_server_frames("registered"),
            st.integers(min_value=1, max_value=3),
        ),
    )


def _losing() -> st.SearchStrategy[AfterIdle]:
    return st.one_of(
        st.just(SilentAfterIdle()),
        st.builds(DropAfterIdle, st.integers(min_value=1, max_value=3), st.booleans()),
    )


def _healthy(
    policy: RetryPolicy, *, answered: bool | None, idle: st.SearchStrategy[AfterIdle]
) -> st.SearchStrategy[Healthy]:
    @st.composite
    def build(draw: st.DrawFn) -> Healthy:
        got_answer = draw(st.booleans()) if answered is None else answered
        if got_answer:
            telemetry, has_info = draw(_answered_telemetry(policy))
        else:
            telemetry, has_info = draw(_unanswered_telemetry(policy)), draw(st.booleans())
        return Healthy(
            system_info=draw(_system_info()) if has_info else None,
            register_delay=draw(_on_time(policy.registration_timeout)),
            telemetry=telemetry,
            idle=draw(idle),
        )

    return build()


def attempt_faults(
    policy: RetryPolicy | None = None, *, outages: bool = False
) -> st.SearchStrategy[AttemptFault]:
    """Any one attempt's fault (shrinks toward ``Healthy()``).

    Args:
        policy: the manager's timeouts, so late and on-time answers are drawn well apart.
        outages: also draw ``Outage`` entries (their effect depends on the backoff).
    """
    policy = policy or RetryPolicy()
    options: list[st.SearchStrategy[AttemptFault]] = [
        st.just(Healthy()),
        _healthy(policy, answered=None, idle=st.one_of(_staying(), _losing())),
        st.sampled_from(
            [
                Refuse(),
                Forbidden(),
                KeyRefusedAfterAccept(),
                KeyRefusedOnRegister(),
                HangConnect(),
                DropAfterAccept(),
                NoRegistrationAnswer(),
                DropAfterRegister(),
                DropDuringTelemetry(),
            ]
        ),
        rejections(),
        st.builds(Busy, st.sampled_from([0.0, 1.0, 30.0]) | st.floats(0.0, 600.0)),
        st.builds(GarbageOnRegister, invalid_server_frames("registering")),
        st.builds(lambda d: Healthy(register_delay=d), _late(policy.registration_timeout)),
    ]
    if outages:
        options.append(st.builds(Outage, st.floats(min_value=1.0, max_value=120.0)))
    return st.one_of(*options)


def schedules(
    policy: RetryPolicy | None = None, *, max_size: int = 6, outages: bool = False
) -> st.SearchStrategy[list[AttemptFault]]:
    """Fault schedules: one fault per connection attempt (shrinks toward ``[]``)."""
    return st.lists(attempt_faults(policy, outages=outages), max_size=max_size)


# -- fleets ---------------------------------------------------------------------------------------


@st.composite
def fleet_timings(draw: st.DrawFn) -> Timing:
    """Manager timings the configuration accepts, mixed: the defaults' neighbourhood and far
    from it (heartbeats from 1 s to 2 min, a cap equal to the delay or minutes above it, short
    and long deadlines), ``miss_limit`` 1–4; no recovery window (the reference's rule) or one
    of seconds to minutes; no stability window (every loss starts the backoff over) or one
    that makes short-lived connections flaps; rejoin delays of 0.5–5 s; the jitter floor at
    its default, at either end (0: anywhere down to no wait; 1: no jitter) or anywhere between.
    FAILED waits for the owner (``retry_failed_after=None``): the fleet's checks treat it as
    where a run ends.

    ``reconnect_delay`` is at least 0.5 s (the configuration's floor is any value > 0), so a
    device that retries forever against a server that is down makes a bounded number of
    attempts in a run's virtual time.
    """
    reconnect_delay = draw(st.floats(min_value=0.5, max_value=30.0))
    return Timing(
        heartbeat_interval=draw(
            st.one_of(
                st.sampled_from([30.0, 20.0, 45.5]), st.floats(min_value=1.0, max_value=120.0)
            )
        ),
        miss_limit=draw(st.integers(min_value=1, max_value=4)),
        reconnect_delay=reconnect_delay,
        backoff_cap=reconnect_delay + draw(st.floats(min_value=0.0, max_value=300.0)),
        connect_timeout=draw(st.floats(min_value=1.0, max_value=60.0)),
        registration_timeout=draw(st.floats(min_value=1.0, max_value=30.0)),
        telemetry_timeout=draw(st.floats(min_value=1.0, max_value=30.0)),
        rejoin_delay=draw(st.floats(min_value=0.5, max_value=5.0)),
        recovery_window=draw(
            st.one_of(
                st.just(0.0),
                st.floats(min_value=1.0, max_value=60.0),
                st.floats(min_value=60.0, max_value=600.0),
            )
        ),
        stability_window=draw(st.one_of(st.just(0.0), st.floats(min_value=1.0, max_value=300.0))),
        jitter_floor=draw(
            st.one_of(st.just(0.1), st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))
        ),
        retry_failed_after=None,
    )


#: Ids at the edges of what the id rule (``stellate.protocol.ids``) accepts: one character,
#: the longest, digits only, other scripts, look-alikes that differ in case or by one composed
#: letter, emoji, punctuation the URL and the client id (``TASK@DEVICE``) must carry untouched.
EDGE_IDS: tuple[str, ...] = (
    "a",
    "0",
    "x" * MAX_ID_LENGTH,
    "Device",
    "device",
    "DEVICE",
    "設備-01",
    "ñandú",
    "nandu",
    "Ωmega",
    "straße",
    "İstanbul",
    "دستگاه",
    "🚀-rocket",
    "a.b:c/d?e#f",
    "100%_sure",
    "d-0",
)

_ID_CHARACTERS = st.characters(
    categories=("L", "N", "P", "S"), exclude_characters="@", max_codepoint=0x1FFFF
)


def _accepted_id(device_id: str) -> bool:
    """The one id rule (``stellate.protocol.ids``) that the config, server and agent apply."""
    return device_id_problem(device_id) is None


def device_ids() -> st.SearchStrategy[str]:
    """Device ids the configuration accepts: short ASCII (what a failure shrinks to), any
    script, and the edge cases of :data:`EDGE_IDS`."""
    return st.one_of(
        st.from_regex(r"[a-z][a-z0-9_-]{0,7}", fullmatch=True),
        st.sampled_from(EDGE_IDS),
        st.text(_ID_CHARACTERS, min_size=1, max_size=24)
        .map(lambda text: unicodedata.normalize("NFC", text))
        .filter(_accepted_id),
    )


@st.composite
def fleet_devices(
    draw: st.DrawFn,
    device_id: str,
    policy: RetryPolicy | None = None,
    *,
    max_schedule: int = 6,
    outages: bool = False,
) -> FleetDevice:
    """One device: configuration (max_retries 1–5 or ``None``, os, capabilities, metadata),
    a schedule, and how often its owner retries it once FAILED (0–2)."""
    schedule: list[AttemptFault] = draw(schedules(policy, max_size=max_schedule, outages=outages))
    return FleetDevice(
        device_id=device_id,
        schedule=tuple(schedule),
        max_retries=draw(st.one_of(st.integers(min_value=1, max_value=5), st.none())),
        os=draw(st.one_of(st.none(), st.sampled_from(["windows", "linux", "darwin"]))),
        capabilities=draw(
            st.lists(st.sampled_from(["gui", "cli", "office", "browser"]), unique=True)
        ),
        metadata=draw(st.dictionaries(st.sampled_from(["location", "tier"]), _ID, max_size=2)),
        retries=draw(st.integers(min_value=0, max_value=2)),
    )


#: The least size of a drawn fleet, by size class (drawn uniformly, shrinking to the first):
#: small fleets are cheap to run, large ones are drawn often enough that every default run has
#: several of 40 devices or more.
FLEET_FLOORS: tuple[int, ...] = (1, 1, 8, 8, 40, 45, 50)


@st.composite
def fleets(
    draw: st.DrawFn,
    *,
    min_size: int = 1,
    max_size: int = 50,
    policy: RetryPolicy | None = None,
    outages: bool = True,
) -> list[FleetDevice]:
    """Fleets of ``min_size``–``max_size`` devices with ids no reader could confuse
    (:func:`device_ids`, distinct skeletons: ``stellate.protocol.ids``).

    The size is weighted (:data:`FLEET_FLOORS`): about two fleets in seven are small (a
    handful of devices), two have 8 or more, three 40 to 50. Drawn as a list, so a failing
    fleet shrinks by dropping any device, not just the last.
    """
    floor = min(max(draw(st.sampled_from(FLEET_FLOORS)), min_size), max_size)
    devices = draw(
        st.lists(fleet_devices("?", policy, outages=outages), min_size=floor, max_size=max_size)
    )
    # Distinct to a reader, not only to Python: a manager refuses look-alikes (one skeleton).
    ids = draw(
        st.lists(device_ids(), min_size=len(devices), max_size=len(devices), unique_by=skeleton)
    )
    return [attrs.evolve(d, device_id=i) for d, i in zip(devices, ids, strict=True)]


# -- forcing a path -------------------------------------------------------------------------------


def _varied(fault: AttemptFault, policy: RetryPolicy) -> st.SearchStrategy[AttemptFault]:
    """``fault``, or the same alternative with drawn frames, delays and system info (shrinking
    back to ``fault``)."""
    if not isinstance(fault, Healthy) or fault.register_delay:
        return st.just(fault)
    info: st.SearchStrategy[Any] = (
        st.just(None)
        if fault.system_info is None
        else st.one_of(st.just(fault.system_info), system_infos())
    )
    telemetry: st.SearchStrategy[Telemetry] = st.just(fault.telemetry)
    if isinstance(fault.telemetry, Answer):
        late = fault.telemetry.delay >= policy.telemetry_timeout
        delays = _late(policy.telemetry_timeout) if late else _on_time(policy.telemetry_timeout)
        telemetry = st.one_of(telemetry, st.builds(Answer, delays))
    elif isinstance(fault.telemetry, GarbageTelemetry):
        telemetry = st.one_of(
            telemetry, st.builds(GarbageTelemetry, invalid_server_frames("registered"))
        )
    idle: st.SearchStrategy[AfterIdle] = st.just(fault.idle)
    beats = st.integers(min_value=1, max_value=3)
    if isinstance(fault.idle, GarbageAfterIdle):
        idle = st.one_of(
            idle, st.builds(GarbageAfterIdle, invalid_server_frames("registered"), beats)
        )
    elif isinstance(fault.idle, DropAfterIdle):
        idle = st.one_of(idle, st.builds(DropAfterIdle, beats, st.just(fault.idle.notice)))
    return st.builds(
        lambda i, t, d: attrs.evolve(fault, system_info=i, telemetry=t, idle=d),
        info,
        telemetry,
        idle,
    )


@st.composite
def schedule_for_path(draw: st.DrawFn, path: Path, policy: RetryPolicy) -> list[AttemptFault]:
    """A schedule that forces a correct manager down exactly ``path``.

    For each attempt of the path, hypothesis picks one of the alternatives of its kind
    (:data:`~.forcing.ALTERNATIVES`: a refused connect may be ``Refuse`` or ``Forbidden``, a
    timed-out telemetry request may be unanswered, answered late or answered with garbage, and
    so on), then varies its frames, delays and system info.
    :func:`~.forcing.schedules_for_path` is the deterministic counterpart (every alternative).

    Args:
        path: a legal path from ``stellate.fsm.paths.paths`` or the ``legal_paths`` strategy.
        policy: the manager's timeouts (the manager must be built with the same).

    Raises:
        ValueError: the path has a step no fault can force.
    """
    schedule: list[AttemptFault] = []
    for kind in attempt_kinds(path):
        names = tuple(draw(st.sampled_from(ALTERNATIVES[part])) for part in kind)
        fault = build(kind, names, policy, draw(st.integers(min_value=0, max_value=255)))
        schedule.append(draw(_varied(fault, policy)))
    return schedule
