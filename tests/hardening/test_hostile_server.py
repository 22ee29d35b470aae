"""Issue 7, item 4 (manager side): the constellation manager facing a hostile agent server.

A hand-written handler on the in-memory network registers nothing and plays a script on every
connection: garbage confirmations, device-info responses for another request, answers nobody
asked for, binary and huge frames, abrupt closes, silence. Under MockClock, the manager must
never crash, and each device must end in a state its guards explain:

* FAILED only by a rejection the server really sent (an ``error`` frame or ``status=error``
  while registering, or a 1008 close before registration: a refused key), or after exactly
  ``max_retries`` attempts;
* never more than ``max_retries`` attempts in a row;
* IDLE with degraded telemetry when the device info never (validly) comes: a device-info
  response for another request id is never merged;
* configured capabilities and metadata intact, whatever happened.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hardening_support import (
    FIGURES,
    MANAGER_TIMING,
    check_nothing_lost,
    lost_configuration,
    system_info_for,
)
from hostile_frames import DEEP_BEYOND, LONE_SURROGATE_FRAME, json_values
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stellate.adapters.memory import MemoryNetwork
from stellate.fsm import AgentProfile, DeviceStatus
from stellate.manager import ConstellationDeviceManager, EventKind, ManagerEvent
from stellate.protocol import Connection

S = DeviceStatus
HOST = "ws://hostile-server:5005"
DEVICES = ["d0", "d1"]
GOOD_INFO = {**system_info_for("d"), "hostname": "hostile-host"}
WRONG_INFO = {**system_info_for("d"), "hostname": "WRONG-host", "supported_features": ["WRONG"]}


def url_of(device_id: str) -> str:
    return f"{HOST}/ws/{device_id}"


def server_frame(**fields: Any) -> str:
    return json.dumps({"type": "heartbeat", "status": "ok", **fields})


CONFIRM = server_frame(response_id="c-1")
SERVER_TYPES = ["task", "heartbeat", "task_end", "command", "error", "device_info_request"]
SERVER_STATUSES = ["continue", "completed", "failed", "ok", "error"]
SERVER_KEYS = ["type", "status", "error", "response_id", "result", "actions", "timestamp"]


# -- the script a hostile server plays on every connection --------------------------------------


@attrs.frozen
class Send:
    frame: str | bytes


@attrs.frozen
class Info:
    """A device_info_response: for the request seen (``matching``), another id, or unasked."""

    which: str
    result: Any


@attrs.frozen
class Sleep:
    seconds: float


@attrs.frozen
class Close:
    code: int


Action = Send | Info | Sleep | Close


@st.composite
def hostile_server_frames(draw: st.DrawFn) -> str | bytes:
    kind = draw(
        st.sampled_from(
            [
                *("confirm", "bad_confirm", "error", "json", "wrong_type", "text", "huge"),
                *("deep", "binary", "ack_flood"),
            ]
        )
    )
    if kind == "confirm":
        return CONFIRM
    if kind == "bad_confirm":
        return json.dumps(
            {
                "type": draw(st.sampled_from(SERVER_TYPES)),
                "status": draw(st.sampled_from(SERVER_STATUSES)),
            }
        )
    if kind == "error":
        return json.dumps({"type": "error", "status": "error", "error": draw(st.text(max_size=30))})
    if kind == "json":
        return json.dumps(draw(json_values))
    if kind == "wrong_type":
        frame = {"type": "heartbeat", "status": "ok", "response_id": "x"}
        frame[draw(st.sampled_from(SERVER_KEYS))] = draw(json_values)
        return json.dumps(frame)
    if kind == "text":
        return draw(st.text(max_size=40))
    if kind == "huge":
        size = draw(st.integers(min_value=100_000, max_value=2_000_000))
        return draw(st.sampled_from([server_frame(error="x" * size), "y" * size]))
    if kind == "deep":  # beyond the recursion limit too: the manager must survive it
        depth = draw(st.integers(min_value=2, max_value=300) | st.just(DEEP_BEYOND))
        return server_frame(result="@").replace('"@"', "[" * depth + "]" * depth)
    if kind == "binary":
        return draw(st.binary(max_size=32))
    return server_frame()  # an ack nobody asked for


def actions() -> st.SearchStrategy[Action]:
    results = st.sampled_from(
        [GOOD_INFO, {"error": "Device d not found or no system info available"}, [], "x", None]
    ) | json_values.map(lambda v: v)
    return st.one_of(
        hostile_server_frames().map(Send),
        hostile_server_frames().map(Send),
        st.builds(Info, st.sampled_from(["matching", "other", "unasked"]), results),
        st.sampled_from([0.5, 3.0, 8.0]).map(Sleep),
        st.sampled_from([1000, 1001, 1008, 1011]).map(Close),
    )


@attrs.define
class HostileServer:
    """Plays ``script`` on every connection; registers nothing; then holds the line open."""

    script: list[Action]
    connections: Counter[str] = attrs.Factory(Counter)
    sent: int = 0

    async def handler(self, conn: Connection, info: Any) -> None:
        device_id = info.path.rsplit("/", 1)[-1]
        self.connections[device_id] += 1
        seen: list[str] = []
        request_seen = trio.Event()

        async def read() -> None:
            while True:
                frame = await conn.receive()
                data = json.loads(frame)
                if data["type"] == "device_info_request":
                    seen.append(data["request_id"])
                    request_seen.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            for action in self.script:
                if isinstance(action, Sleep):
                    await trio.sleep(action.seconds)
                    continue
                if isinstance(action, Close):
                    await conn.aclose(action.code, "hostile close")
                    return
                if isinstance(action, Info):
                    if action.which == "matching":
                        with trio.move_on_after(1.0):
                            await request_seen.wait()
                        rid, result = (seen[-1] if seen else None), action.result
                    else:
                        rid = "not-your-request" if action.which == "other" else None
                        result = WRONG_INFO
                    frame: str | bytes = json.dumps(
                        {
                            "type": "device_info_response",
                            "status": "ok",
                            "response_id": rid,
                            "result": result,
                        }
                    )
                else:
                    frame = action.frame
                self.sent += 1
                FIGURES["hostile frames at the manager"] += 1
                await conn.send(frame)
            await trio.sleep_forever()


def configured(device_id: str, max_retries: int) -> AgentProfile:
    return AgentProfile(
        device_id=device_id,
        server_url=url_of(device_id),
        os="configured-os",
        capabilities=("alpha", "beta"),
        metadata={"location": "lab", "owner": {"team": "x"}},
        max_retries=max_retries,
    )


def _rejects(script: list[Action]) -> bool:
    """Does the script send anything a registering client must take as a rejection?"""
    for action in script:
        if isinstance(action, Send) and isinstance(action.frame, str):
            try:
                data = json.loads(action.frame)
            except ValueError:
                continue
            if isinstance(data, dict) and (
                data.get("type") == "error" or data.get("status") == "error"
            ):
                return True
    return False


@attrs.define
class Outcome:
    manager: ConstellationDeviceManager
    server: HostileServer
    events: list[ManagerEvent]
    profiles: dict[str, AgentProfile]
    first_settled: dict[str, AgentProfile]


async def face(
    script: list[Action], max_retries: dict[str, int], *, linger: float = 60.0
) -> Outcome:
    """Run a manager against the hostile server until every device settled once, then
    ``linger`` virtual seconds more (lost leases, reconnections, the script again)."""
    server = HostileServer(script)
    events: list[ManagerEvent] = []
    async with MemoryNetwork(raise_handler_errors=False) as network, trio.open_nursery() as nursery:
        for d in max_retries:
            network.listen(url_of(d), server.handler)
        manager = ConstellationDeviceManager(
            task_name="victim",
            connector=network,
            rng=random.Random(3),
            timing=MANAGER_TIMING.evolve(heartbeat_interval=5.0, miss_limit=2),
            strict=True,
        )
        await nursery.start(manager.run)

        async def collect(stream: trio.MemoryReceiveChannel[ManagerEvent]) -> None:
            async for event in stream:
                events.append(event)

        nursery.start_soon(collect, manager.subscribe())
        with trio.fail_after(5_000):
            for d, n in max_retries.items():
                manager.add_device(configured(d, n))
            first = {d: await manager.wait_for(d, S.IDLE, S.FAILED) for d in max_retries}
            await trio.sleep(linger)
        outcome = Outcome(manager, server, events, manager.get_all_devices(), first)
        nursery.cancel_scope.cancel()
    return outcome


def check_guards(outcome: Outcome, script: list[Action], max_retries: dict[str, int]) -> None:
    manager = outcome.manager
    for d, limit in max_retries.items():
        trail = [e for e in outcome.events if e.device_id == d]
        assert all(e.profile.connection_attempts <= limit for e in trail), d
        for profile in (outcome.first_settled[d], outcome.profiles[d]):
            assert not lost_configuration(configured(d, limit), profile), (d, profile)
            merged = profile.metadata.get("system_info")
            if merged is not None:  # only ever from an answer to the request made
                assert merged["hostname"] == "hostile-host", (d, merged)
            assert "WRONG" not in profile.capabilities
        final = outcome.profiles[d]
        if final.status is S.FAILED:
            reason = manager.failure_reason(d) or ""
            if reason.startswith("registration rejected"):
                assert _rejects(script), (d, reason)
            elif reason.startswith("server rejected the API key"):  # a 1008 before registration
                assert Close(1008) in script, (d, reason)
            else:
                assert final.connection_attempts == limit, (d, reason)
                assert reason.startswith(f"gave up after {limit} attempts"), (d, reason)
        assert outcome.server.connections[d] >= 1
    check_nothing_lost({d: configured(d, n) for d, n in max_retries.items()}, outcome.profiles)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=st.lists(actions(), min_size=1, max_size=8),
    retries=st.tuples(st.integers(1, 3), st.integers(1, 3)),
)
@example(script=[Send(CONFIRM), Info("other", None), Send(b"\x00"), Send("{")], retries=(2, 1))
def test_manager_survives_a_hostile_server(script: list[Action], retries: tuple[int, int]) -> None:
    max_retries = dict(zip(DEVICES, retries, strict=True))
    outcome = trio.run(
        face, script, max_retries, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    check_guards(outcome, script, max_retries)


# -- the named cases, with exact outcomes --------------------------------------------------------


def run_face(script: list[Action], max_retries: int = 3, linger: float = 0.0) -> Outcome:
    async def main() -> Outcome:
        return await face(script, {"d0": max_retries}, linger=linger)

    outcome = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    check_guards(outcome, script, {"d0": max_retries})
    return outcome


@pytest.mark.parametrize(
    "garbage",
    [
        "not json at all",
        json.dumps({"type": "heartbeat", "status": "continue"}),
        json.dumps({"type": "task", "status": "ok"}),
        json.dumps({"type": "heartbeat", "status": 1}),
        json.dumps([CONFIRM]),
        b"\x01\x02",
        "y" * 3_000_000,
        Info("unasked", None),
    ],
    ids=["text", "continue", "task", "status-int", "array", "binary", "huge", "unasked-info"],
)
def test_garbage_confirmation_fails_after_exactly_max_retries(garbage: Any) -> None:
    action = garbage if isinstance(garbage, Info) else Send(garbage)
    outcome = run_face([action, Send(CONFIRM)], max_retries=3)
    final = outcome.profiles["d0"]
    assert final.status is S.FAILED and final.connection_attempts == 3
    assert outcome.server.connections["d0"] == 3
    assert "protocol violation" in (outcome.manager.failure_reason("d0") or "")


def test_error_while_registering_is_a_final_rejection() -> None:
    rejection = json.dumps({"type": "heartbeat", "status": "error", "error": "go away"})
    outcome = run_face([Send(rejection)], max_retries=3)
    assert outcome.profiles["d0"].status is S.FAILED
    assert outcome.server.connections["d0"] == 1  # no retry after a rejection
    assert outcome.manager.failure_reason("d0") == "registration rejected: go away"


def test_device_info_for_another_request_degrades_telemetry() -> None:
    """Confirmed, then only a device_info_response for someone else's request: IDLE once the
    telemetry deadline passes, nothing merged, configuration intact."""
    outcome = run_face([Send(CONFIRM), Info("other", None), Info("unasked", None)])
    first = outcome.first_settled["d0"]
    assert first.status is S.IDLE
    assert "system_info" not in first.metadata
    assert first.capabilities == ("alpha", "beta") and first.os == "configured-os"
    kinds = [e.kind for e in outcome.events]
    assert EventKind.READY in kinds and EventKind.TELEMETRY_MERGED not in kinds


def test_answers_without_requests_are_ignored_once_registered() -> None:
    """Acks nobody asked for, an unasked device_info_response and binary junk around the
    real answer: IDLE with the real telemetry merged (and only that)."""
    script: list[Action] = [
        Send(CONFIRM),
        Send(server_frame()),
        Info("unasked", None),
        Send(b"\xff"),
        Send(server_frame()),
        Info("matching", GOOD_INFO),
        Send(server_frame()),
        Send("garbage after registration"),
    ]
    outcome = run_face(script, linger=4.0)
    final = outcome.profiles["d0"]
    assert final.status is S.IDLE
    assert final.metadata["system_info"]["hostname"] == "hostile-host"
    assert final.capabilities[:2] == ("alpha", "beta") and "WRONG" not in final.capabilities


def test_silent_server_after_confirmation_loses_the_lease_and_keeps_the_profile() -> None:
    """Confirmed and answered once, then silence: IDLE, the lease expires (no acks), the device
    reconnects, and the script plays again; the merged telemetry and config survive it all."""
    outcome = run_face([Send(CONFIRM), Info("matching", GOOD_INFO)], linger=100.0)
    kinds = [e.kind for e in outcome.events]
    assert kinds.count(EventKind.CONNECTION_LOST) >= 2
    assert outcome.server.connections["d0"] >= 3
    assert outcome.profiles["d0"].metadata["system_info"]["hostname"] == "hostile-host"


# -- inputs that once crashed the manager -------------------------------------------------------


def test_deeply_nested_frame_from_the_server_does_not_crash_the_manager() -> None:
    """json.loads raises RecursionError (not ValueError) on deep nesting. It used to escape
    ConstellationSession.receive in the runner's reader and take the whole manager down (found
    by this suite as a strict xfail; fixed in d2b9384). Now: a protocol violation while
    registering, retried, FAILED after exactly max_retries attempts."""
    deep = "[" * DEEP_BEYOND + "]" * DEEP_BEYOND
    outcome = run_face([Send(deep), Send(CONFIRM)], max_retries=2)
    final = outcome.profiles["d0"]
    assert final.status is S.FAILED and final.connection_attempts == 2
    assert outcome.server.connections["d0"] == 2
    assert "protocol violation" in (outcome.manager.failure_reason("d0") or "")


def test_lone_surrogate_from_the_server_is_a_protocol_violation() -> None:
    outcome = run_face([Send(LONE_SURROGATE_FRAME)], max_retries=2)
    assert outcome.profiles["d0"].status is S.FAILED
    assert outcome.profiles["d0"].connection_attempts == 2
    reason = outcome.manager.failure_reason("d0") or ""
    assert "protocol violation: invalid ServerMessage: unknown value" in reason, reason
