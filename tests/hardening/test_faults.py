"""Issue 7, item 5: kill the socket or the server during each of the five phases.

For one device and for 500 (in memory, under MockClock), then 50 on real sockets: every device
ends as its guard says — IDLE again when the server comes back and a retry is left, FAILED
after exactly ``max_retries`` attempts when it does not — and no profile loses a configured
capability or metadata entry. The phase of each fault is exact: ``FaultConnector`` strikes at
the open/send/receive the device performs in that phase (see ``hardening_support``).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
import trio
import trio.testing
from hardening_support import (
    FIGURES,
    Fault,
    Fleet,
    lost_telemetry,
    until_all_idle_again,
)

from stellate.adapters.memory import MemoryNetwork
from stellate.fsm import AgentProfile, DeviceStatus
from stellate.manager import ManagerEvent

S = DeviceStatus
#: The five phases a live device passes through, in order (phase 1, configuration, is
#: DISCONNECTED: there is no socket to kill before ``connect``).
PHASES = (S.CONNECTING, S.CONNECTED, S.REGISTERING, S.TELEMETRY, S.IDLE)
#: restored: the server is back at once (max_retries 3); exhausted: a single attempt allowed
#: (max_retries 1); gone: the server never comes back (max_retries 3).
OUTCOMES = ("restored", "exhausted", "gone")
VIRTUAL_LIMIT = 10_000.0  # virtual seconds: a run that has not settled by then is hung
#: A 500-device fleet heartbeats every 5 virtual seconds; a hang must fail fast in real time.
FLEET_VIRTUAL_LIMIT = 600.0


def max_retries_for(outcome: str) -> int:
    return 1 if outcome == "exhausted" else 3


def expected(phase: DeviceStatus, outcome: str) -> tuple[DeviceStatus, int, int]:
    """(final status, connection_attempts, connects after the fault) the guards imply.

    A loss in IDLE starts from attempts reset to 0 (activation), so it always backs off and
    gets a full ``max_retries`` attempts; a loss in an attempting phase has used one already.
    """
    if outcome == "restored":
        return S.IDLE, 0, 1
    if outcome == "exhausted":
        return (S.IDLE, 0, 1) if phase is S.IDLE else (S.FAILED, 1, 0)
    return S.FAILED, 3, 3 if phase is S.IDLE else 2


async def until_hit_and_settled(
    events: trio.MemoryReceiveChannel[ManagerEvent], faults: dict[str, Fault]
) -> dict[str, list[ManagerEvent]]:
    """Consume events until every device was hit in its phase and then reached IDLE/FAILED.

    "Hit" is read off the stream itself (a ``connection_failed`` out of the fault's phase), so
    an IDLE reached before the fault is never mistaken for the recovery after it.
    """
    pending = set(faults)
    hit: set[str] = set()
    after: dict[str, list[ManagerEvent]] = {d: [] for d in faults}
    async for event in events:
        d = event.device_id
        if d not in pending:
            continue
        record = event.record
        if d not in hit:
            if record.trigger == "connection_failed" and record.source is faults[d].phase:
                hit.add(d)
            else:
                continue
        after[d].append(event)
        if record.dest in (S.IDLE, S.FAILED):
            pending.discard(d)
            if not pending:
                break
    return after


def check_outcome(
    fleet: Fleet,
    faults: dict[str, Fault],
    outcomes: dict[str, str],
    before: dict[str, AgentProfile],
) -> None:
    profiles = fleet.profiles()
    for d, fault in faults.items():
        status, attempts, reconnects = expected(fault.phase, outcomes[d])
        profile = profiles[d]
        where = f"{d} killed in {fault.phase} ({outcomes[d]})"
        assert fault.fired, where
        assert profile.status is status, where
        assert profile.connection_attempts == attempts, where
        assert fleet.connector.opens_after_fault[d] == reconnects, where
        if status is S.FAILED:
            reason = fleet.manager.failure_reason(d) or ""
            assert reason.startswith(f"gave up after {attempts} attempts"), (where, reason)
        else:
            # Re-registered and telemetry merged again (the agent was there all along).
            assert profile.metadata["system_info"]["hostname"] == f"host-{d}", where
        assert not lost_telemetry(before[d], profile), where
    fleet.check_nothing_lost()


async def socket_kill_run(assignments: dict[str, tuple[DeviceStatus, str]]) -> Fleet:
    """One fleet; device ``d``'s socket is killed in ``assignments[d]``'s phase."""
    ids = list(assignments)
    async with MemoryNetwork() as network, trio.open_nursery() as nursery:
        fleet = Fleet(network, ids, max_retries=lambda d: max_retries_for(assignments[d][1]))
        faults = {
            d: Fault(phase, permanent=out == "gone") for d, (phase, out) in assignments.items()
        }
        fleet.connector.faults.update(faults)
        with trio.fail_after(VIRTUAL_LIMIT if len(ids) < 10 else FLEET_VIRTUAL_LIMIT):
            async with fleet.manager.events() as events:
                await fleet.start(nursery)
                after = await until_hit_and_settled(events, faults)
        # The stream's IDLE-before-the-fault was skipped; snapshot "before" = configured and,
        # where telemetry merged, what it merged (the agent's info is fixed, so it is stable).
        before = {d: fleet.configured[d] for d in ids}
        outcomes = {d: outcome for d, (_phase, outcome) in assignments.items()}
        check_outcome(fleet, faults, outcomes, before)
        for d, trail in after.items():
            # After the hit, the path is backoff → connecting → … and nothing else.
            assert trail[0].record.trigger == "connection_failed", d
            assert all(e.record.dest is not S.DISCONNECTED for e in trail), d
        for agent in fleet.agents:  # the device side never noticed
            assert agent.registrations == 1 and agent.failures == 0
        FIGURES["devices flapped"] += len(ids)
        nursery.cancel_scope.cancel()
    return fleet


@pytest.mark.parametrize("outcome", OUTCOMES)
@pytest.mark.parametrize("phase", PHASES, ids=lambda p: p.value)
def test_socket_killed_in_each_phase_one_device(phase: DeviceStatus, outcome: str) -> None:
    trio.run(
        socket_kill_run,
        {"solo": (phase, outcome)},
        clock=trio.testing.MockClock(autojump_threshold=0),
    )


def test_socket_killed_in_each_phase_500_devices() -> None:
    """500 devices, each killed in one of the five phases, each with one of the outcomes."""
    assignments = {
        f"dev{i:03d}": (PHASES[i % len(PHASES)], OUTCOMES[(i // len(PHASES)) % len(OUTCOMES)])
        for i in range(500)
    }
    fleet = trio.run(
        socket_kill_run, assignments, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    assert fleet.connector.injected == 500


def _ids(n: int) -> Iterable[str]:
    return [f"dev{i:03d}" for i in range(n)]


# -- the whole server killed (every socket, the registry) and restarted -------------------------


async def server_kill_run(phase: DeviceStatus, restart: bool) -> Fleet:
    """One device; the whole server dies the moment it is in ``phase``; maybe comes back."""
    max_retries = 5 if restart else 3
    async with MemoryNetwork() as network, trio.open_nursery() as nursery:
        fleet = Fleet(network, ["solo"], max_retries=lambda _d: max_retries)
        faults = {"solo": Fault(phase, kind="server")}
        fleet.connector.faults.update(faults)
        with trio.fail_after(VIRTUAL_LIMIT):
            async with fleet.manager.events() as events:
                await fleet.start(nursery)
                await fleet.server_killed.wait()
                if restart:
                    await fleet.restart_server()
                await until_hit_and_settled(events, faults)
        profile = fleet.profiles()["solo"]
        if restart:
            assert profile.status is S.IDLE
            assert profile.connection_attempts == 0
            assert fleet.host.server.registry.get("hardening@solo") is not None
        else:
            assert profile.status is S.FAILED
            assert profile.connection_attempts == max_retries
            assert fleet.connector.opens_after_fault["solo"] == expected(phase, "gone")[2]
        fleet.check_nothing_lost()
        FIGURES["devices flapped"] += 1
        nursery.cancel_scope.cancel()
    return fleet


@pytest.mark.parametrize("restart", [True, False], ids=["restarted", "never-back"])
@pytest.mark.parametrize("phase", PHASES, ids=lambda p: p.value)
def test_server_killed_in_each_phase_one_device(phase: DeviceStatus, restart: bool) -> None:
    trio.run(server_kill_run, phase, restart, clock=trio.testing.MockClock(autojump_threshold=0))


def test_server_killed_and_restarted_500_devices() -> None:
    """500 devices, no jitter (every device retries at the same instant): the server is killed
    while the fleet is half-way through its first registration (the moment the 250th device is
    REGISTERING, the others wherever they are) and restarted. Every device is IDLE again, with
    attempts reset and its telemetry merged. (Each phase, exactly, for 500 devices: the
    socket-kill test above; whole-server kills of an IDLE fleet: the flap test.)
    """
    ids = list(_ids(500))

    async def main() -> None:
        async with MemoryNetwork() as network, trio.open_nursery() as nursery:
            fleet = Fleet(network, ids, max_retries=lambda _d: 5, herd=True)
            with trio.fail_after(FLEET_VIRTUAL_LIMIT):
                async with fleet.manager.events() as events:
                    fleet.connector.faults[ids[250]] = Fault(S.REGISTERING, kind="server")
                    await fleet.start(nursery)
                    await fleet.server_killed.wait()
                    await fleet.restart_server()
                    await until_all_idle_again(events, ids)
            FIGURES["devices flapped"] += len(ids)
            assert fleet.host.kills == 1
            profiles = fleet.profiles()
            assert all(p.status is S.IDLE and p.connection_attempts == 0 for p in profiles.values())
            assert len(fleet.host.server.registry) == 2 * len(ids)  # agents + constellations
            fleet.check_nothing_lost()
            for d in ids:
                assert profiles[d].metadata["system_info"]["hostname"] == f"host-{d}"
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_server_restart_during_first_registration_with_agent_back_late() -> None:
    """The server dies while the device is CONNECTED on its very first attempt and comes back
    at once (both doors open); the device's agent reconnects later than the constellation.
    "Target device 'solo' is not connected" is then a server in flux, not a rejection: the
    device retries and ends IDLE. (Found by this suite as a strict xfail; fixed in 7e4a781.)"""

    async def main() -> None:
        async with MemoryNetwork() as network, trio.open_nursery() as nursery:
            fleet = Fleet(network, ["solo"], max_retries=lambda _d: 5)
            agent = fleet.agents[0]
            agent.timing = agent.timing.evolve(reconnect_delay=8.0, backoff_cap=8.0)
            fleet.connector.faults["solo"] = Fault(S.CONNECTED, kind="server")
            with trio.fail_after(VIRTUAL_LIMIT):
                await fleet.start(nursery)
                await fleet.server_killed.wait()
                fleet.host.restart()
                fleet.host.open_constellation_door()  # a real restart: no order between clients
                profile = await fleet.manager.wait_for("solo", S.IDLE, S.FAILED)
            assert profile.status is S.IDLE, fleet.manager.failure_reason("solo")
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
