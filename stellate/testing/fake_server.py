"""A scriptable fake AIP agent server on the in-memory transport, with faults on demand.

:class:`FakeAgentServer` gives every device its own address on a
:class:`~stellate.adapters.memory.MemoryNetwork` (``ws://agent-<n>.fake.test:5000/ws``) and a
schedule of :mod:`~stellate.testing.faults`, one per connection attempt. Its
:attr:`~FakeAgentServer.connector` is what the manager connects through: it looks up the
fault of the attempt and sets the network up for it (refuse, 403, hang) before delegating to
the network's own ``open``, so the real in-memory adapter does the refusing and the hanging.
Accepted connections are served by a handler that speaks AIP frames through the codec.

Everything the server saw is kept: the fault each attempt met (:meth:`~FakeAgentServer.applied`),
with the time it started, and every frame from the manager that broke the protocol
(:attr:`~FakeAgentServer.violations`: an empty list means the manager spoke correct AIP).

Like the reference server it refuses a registration for a device that already has a live one
(``client_id ... is already registered``): with several managers sharing a fleet, that is the
agent server's fence against two of them registering one device. Each such registration is
listed in :attr:`~FakeAgentServer.duplicates` (an empty list: never two registrations of one
device at once), and :meth:`~FakeAgentServer.registrations` counts the live ones.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import attrs
import trio

from ..adapters.memory import MemoryConnection, MemoryNetwork
from ..adapters.websocket import AcceptedRequest
from ..protocol.codec import ProtocolError, decode_client, encode_server
from ..protocol.messages import (
    ClientMessage,
    ClientMessageType,
    ClientType,
    ServerMessage,
    ServerMessageType,
    TaskStatus,
)
from ..protocol.rejections import ALREADY_REGISTERED
from ..protocol.rejections import CLOSE_POLICY_VIOLATION as KEY_REFUSED_CODE
from ..protocol.transport import ConnectError, Connection, ConnectionClosed
from .faults import (
    Answer,
    AttemptFault,
    Busy,
    DropAfterAccept,
    DropAfterIdle,
    DropAfterRegister,
    DropDuringTelemetry,
    Fault,
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
    TelemetryNotFound,
    normalize,
)

__all__ = ["Attempt", "FakeAgentServer", "FaultConnector"]

logger = logging.getLogger(__name__)

_WRONG_KEY = "not-the-key-you-sent"

Frame = str | bytes


@attrs.define
class Attempt:
    """One connection attempt as the fake server saw it.

    Attributes:
        index: 0 for the device's first attempt.
        fault: the fault this attempt met (a ``Refuse()`` for an attempt an outage refused).
        started_at: ``trio.current_time()`` when the manager called ``open``.
        outage: True if an ``Outage`` entry refused it.
        heartbeats: when each heartbeat of this connection reached the server.
        last_sent_at: when the server last sent the device a frame on this connection
            (``None``: it sent nothing) — the device's last sign that the server is alive.
    """

    index: int
    fault: AttemptFault
    started_at: float
    outage: bool = False
    heartbeats: list[float] = attrs.Factory(list)
    last_sent_at: float | None = None


@attrs.define
class _Device:
    device_id: str
    url: str
    schedule: tuple[AttemptFault, ...]
    then: AttemptFault
    next_entry: int = 0
    outage_until: float | None = None
    attempts: list[Attempt] = attrs.Factory(list)
    current: AttemptFault | None = None
    #: The current connection has reached a state it keeps (IDLE with ``Stay``).
    settled: bool = False
    #: Live (confirmed, not yet closed) registrations of the device.
    registered: int = 0


def _server_frame(**fields: Any) -> str:
    return encode_server(ServerMessage(timestamp="2025-01-01T00:00:00+00:00", **fields))


class FakeAgentServer:
    """A scriptable AIP agent server with one address per device.

    Args:
        network: the in-memory network to serve on (it must be running when devices connect).
        api_key: if set, connections must carry ``?token=<api_key>`` (as a real server's).
        host: the domain the per-device addresses are made in.
    """

    def __init__(
        self,
        network: MemoryNetwork,
        *,
        api_key: str | None = None,
        host: str = "fake.test:5000",
    ) -> None:
        self.network = network
        self.api_key = api_key
        self._host = host
        self._devices: dict[str, _Device] = {}
        self._by_origin: dict[str, _Device] = {}
        self._ids = itertools.count()
        self._response_ids = itertools.count(1)
        #: Frames from the manager that broke AIP, as ``"device: what was wrong"``.
        self.violations: list[str] = []
        #: Handlers currently serving a connection (0 once every socket is gone).
        self.live_handlers = 0
        #: Registrations that arrived while the device had a live one (refused), as
        #: ``"t=SECONDS: device: registered twice"``.
        self.duplicates: list[str] = []
        self.connector = FaultConnector(self)

    # -- scripting ---------------------------------------------------------------------------

    def script(
        self, device_id: str, schedule: Sequence[Fault] = (), *, then: Fault | None = None
    ) -> str:
        """Give ``device_id`` an address and a schedule; return the URL to configure it with.

        Args:
            device_id: the device the manager will register.
            schedule: the fault each successive connection attempt meets.
            then: what attempts after the schedule meet (default ``Healthy()``).

        Raises:
            ValueError: the device already has a script.
        """
        if device_id in self._devices:
            raise ValueError(f"device {device_id!r} is already scripted")
        url = f"ws://agent-{next(self._ids)}.{self._host}/ws"
        device = _Device(
            device_id,
            url,
            tuple(normalize(f) for f in schedule),
            normalize(then) if then is not None else Healthy(),
        )
        self._devices[device_id] = device
        self._by_origin[_origin(url)] = device
        return url

    def url(self, device_id: str) -> str:
        """The address :meth:`script` gave ``device_id``."""
        return self._devices[device_id].url

    def applied(self, device_id: str) -> list[Attempt]:
        """Every attempt ``device_id`` made so far, with the fault it met."""
        return list(self._devices[device_id].attempts)

    def registrations(self, device_id: str) -> int:
        """Live (confirmed, not yet closed) registrations for ``device_id``: at most 1."""
        return self._devices[device_id].registered

    def settled(self, device_id: str) -> bool:
        """True while the device's current connection is one the server will keep healthy."""
        return self._devices[device_id].settled

    @property
    def device_ids(self) -> list[str]:
        return list(self._devices)

    # -- the connector side --------------------------------------------------------------------

    def _begin_attempt(self, url: str) -> tuple[_Device | None, AttemptFault | None]:
        device = self._by_origin.get(_origin(url))
        if device is None:
            return None, None
        now = trio.current_time()
        index = len(device.attempts)
        device.settled = False
        entry: AttemptFault = (
            device.schedule[device.next_entry]
            if device.next_entry < len(device.schedule)
            else device.then
        )
        if isinstance(entry, Outage):
            if device.outage_until is None:
                device.outage_until = now + entry.seconds
            if now < device.outage_until:
                device.attempts.append(Attempt(index, Refuse(), now, outage=True))
                device.current = Refuse()
                return device, Refuse()
            device.outage_until = None
            device.next_entry += 1
            return self._begin_attempt(url)
        device.next_entry += 1
        device.attempts.append(Attempt(index, entry, now))
        device.current = entry
        return device, entry

    def _prepare(self, device: _Device, fault: AttemptFault) -> None:
        """Set the network up so that its own ``open`` refuses, forbids or hangs."""
        self.network.hang(device.url, isinstance(fault, HangConnect))
        if isinstance(fault, Refuse):
            self.network.unlisten(device.url)
            return
        key = _WRONG_KEY if isinstance(fault, Forbidden) else self.api_key

        index = len(device.attempts) - 1

        async def handler(conn: Connection, info: AcceptedRequest) -> None:
            await self._serve(device, fault, conn, index)

        self.network.listen(device.url, handler, api_key=key)

    # -- the server side -----------------------------------------------------------------------

    async def _serve(
        self, device: _Device, fault: AttemptFault, conn: Connection, index: int
    ) -> None:
        self.live_handlers += 1
        try:
            async with trio.open_nursery() as nursery:
                connection = _Connection(self, device, fault, conn, nursery, device.attempts[index])
                try:
                    with suppress(ConnectionClosed):
                        await connection.run()
                finally:
                    if connection.registered:
                        device.registered -= 1
                nursery.cancel_scope.cancel()
        finally:
            self.live_handlers -= 1
            if len(device.attempts) - 1 == index:
                device.settled = False

    def _violation(self, device: _Device, what: str) -> None:
        logger.warning("fake server: device %s: %s", device.device_id, what)
        self.violations.append(f"{device.device_id}: {what}")

    def _next_response_id(self) -> str:
        return f"fake-{next(self._response_ids)}"


class _Connection:
    """One accepted socket, served according to its fault."""

    def __init__(
        self,
        server: FakeAgentServer,
        device: _Device,
        fault: AttemptFault,
        conn: Connection,
        nursery: trio.Nursery,
        attempt: Attempt,
    ) -> None:
        self.server = server
        self.device = device
        self.fault = fault
        self.conn = conn
        self.nursery = nursery
        self.attempt = attempt
        self.client_id = "?"
        #: This connection's registration was confirmed and counts as live.
        self.registered = False

    async def send(self, frame: Frame) -> None:
        """Send ``frame`` to the device, noting when (every frame is a sign of life)."""
        await self.conn.send(frame)
        self.attempt.last_sent_at = trio.current_time()

    async def run(self) -> None:
        frame = await self.conn.receive()
        if not self._check_register(frame):
            await self.conn.aclose(1008, "invalid first frame")
            return
        if self.device.registered:  # the reference server's answer to a duplicate client_id
            self.server.duplicates.append(
                f"t={trio.current_time():.3f}: {self.device.device_id}: registered twice"
            )
            text = ALREADY_REGISTERED.format(client_id=self.client_id)
            await self.send(self._error(text))
            await self.conn.aclose(1000, text[:120])
            return
        fault = self.fault
        if isinstance(fault, DropAfterAccept):  # the connector should have dropped it already
            self._drop()
        elif isinstance(fault, NoRegistrationAnswer):
            await self._drain()
        elif isinstance(fault, DropAfterRegister):
            self._drop()
        elif isinstance(fault, KeyRefusedAfterAccept | KeyRefusedOnRegister):
            await self.conn.aclose(KEY_REFUSED_CODE, "API key refused")
        elif isinstance(fault, Reject):
            text = fault.text(self.device.device_id, self.client_id)
            await self.send(self._error(text))
            await self.conn.aclose(1000, text[:120])
        elif isinstance(fault, GarbageOnRegister):
            await self.send(fault.frame)
            await self._drain()
        elif isinstance(fault, DropDuringTelemetry):
            await self.send(self._confirmation())
            await self._registered(fault)
        elif isinstance(fault, Healthy):
            if fault.register_delay:
                # Answer late, but notice (as a real server's reader would) when the device
                # gives up and closes first: the handler must not outlive the connection.
                with trio.move_on_after(fault.register_delay):
                    await self._drain()
            await self.send(self._confirmation())
            await self._registered(fault)
        else:  # Refuse / Busy / Forbidden / HangConnect / Outage never reach a handler
            raise AssertionError(f"{fault!r} reached the handler")

    # -- after the confirmation ---------------------------------------------------------------

    async def _registered(self, fault: DropDuringTelemetry | Healthy) -> None:
        heartbeats = 0
        while True:
            message = self._decode(await self.conn.receive())
            if message is None:
                continue
            if message.type is ClientMessageType.DEVICE_INFO_REQUEST:
                if isinstance(fault, DropDuringTelemetry):
                    self._drop()
                    return
                self._check_target(message.target_id)
                await self._telemetry(fault, message.request_id)
            elif message.type is ClientMessageType.HEARTBEAT:
                heartbeats += 1
                self.attempt.heartbeats.append(trio.current_time())
                if message.client_type is not ClientType.CONSTELLATION:
                    self.server._violation(self.device, "heartbeat without client_type")
                if isinstance(fault, Healthy) and not await self._idle(fault, heartbeats):
                    return
            else:
                self.server._violation(self.device, f"unexpected {message.type.value} frame")

    async def _telemetry(self, fault: Healthy, request_id: str | None) -> None:
        telemetry = fault.telemetry
        if isinstance(telemetry, NoTelemetryAnswer):
            self._settle_unless_lost(fault)
            return
        if isinstance(telemetry, GarbageTelemetry):
            self._settle_unless_lost(fault)
            await self.send(telemetry.frame)
            return
        info = None if isinstance(telemetry, TelemetryNotFound) else fault.system_info
        result: Any = (
            dict(info)
            if info is not None
            else {"error": f"Device {self.device.device_id} not found or no system info available"}
        )
        answer = _server_frame(
            type=ServerMessageType.DEVICE_INFO_RESPONSE,
            status=TaskStatus.OK,
            response_id=request_id,
            result=result,
        )
        delay = telemetry.delay if isinstance(telemetry, Answer) else 0.0
        # Settled before the answer goes out: the device may be IDLE the moment it arrives.
        self._settle_unless_lost(fault)
        if delay:
            self.nursery.start_soon(self._send_later, delay, answer)
        else:
            await self.send(answer)

    def _settle_unless_lost(self, fault: Healthy) -> None:
        if isinstance(fault.idle, Stay | GarbageAfterIdle):
            self.device.settled = True

    async def _send_later(self, delay: float, frame: str) -> None:
        await trio.sleep(delay)
        with suppress(ConnectionClosed):
            await self.send(frame)

    async def _idle(self, fault: Healthy, heartbeats: int) -> bool:
        """Answer one heartbeat as ``fault.idle`` says; False once the socket is gone."""
        idle = fault.idle
        if isinstance(idle, SilentAfterIdle):
            return True
        if isinstance(idle, DropAfterIdle) and heartbeats >= idle.after_heartbeats:
            if idle.notice:
                text = f"Target device '{self.device.device_id}' disconnected"
                await self.send(self._error(text))
                await self.conn.aclose(1000, text[:120])
            else:
                self._drop()
            return False
        if isinstance(idle, GarbageAfterIdle) and heartbeats == idle.after_heartbeats:
            await self.send(idle.frame)
        await self.send(self._ack())
        return True

    # -- helpers ------------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Read and ignore everything until the manager closes the socket."""
        while True:
            await self.conn.receive()

    def _drop(self) -> None:
        if isinstance(self.conn, MemoryConnection):
            self.conn.abort()
        else:  # pragma: no cover - only memory connections reach the fake
            self.nursery.start_soon(self.conn.aclose, 1011, "dropped")

    def _decoded(self, frame: str | bytes, which: str) -> ClientMessage | None:
        """The message ``frame`` holds, or None once it is noted as a violation."""
        if isinstance(frame, bytes):
            self.server._violation(self.device, f"binary {which}")
            return None
        try:
            return decode_client(frame)
        except ProtocolError as exc:
            self.server._violation(self.device, f"undecodable {which}: {exc}")
            return None

    def _decode(self, frame: str | bytes) -> ClientMessage | None:
        message = self._decoded(frame, "frame")
        if message is not None and message.client_id != self.client_id:
            self.server._violation(self.device, f"client_id {message.client_id!r} changed")
        return message

    def _check_register(self, frame: str | bytes) -> bool:
        message = self._decoded(frame, "first frame")
        if message is None:
            return False
        device_id = self.device.device_id
        problems = []
        if message.type is not ClientMessageType.REGISTER:
            problems.append(f"first frame is {message.type.value}, not register")
        if message.client_type is not ClientType.CONSTELLATION:
            problems.append(f"registers as {message.client_type.value}, not constellation")
        if not (message.client_id or "").endswith(f"@{device_id}"):
            problems.append(f"client_id {message.client_id!r} does not name {device_id!r}")
        if message.target_id != device_id:
            problems.append(f"target_id {message.target_id!r} is not {device_id!r}")
        metadata = message.metadata or {}
        if metadata.get("targeted_device_id") != device_id:
            problems.append("metadata.targeted_device_id does not name the device")
        for problem in problems:
            self.server._violation(self.device, problem)
        self.client_id = message.client_id or "?"
        return not problems

    def _check_target(self, target_id: str | None) -> None:
        if target_id != self.device.device_id:
            self.server._violation(self.device, f"device_info_request for {target_id!r}")

    def _confirmation(self) -> str:
        if not self.registered:
            self.registered = True
            self.device.registered += 1
        return self._ack()

    def _ack(self) -> str:
        return _server_frame(
            type=ServerMessageType.HEARTBEAT,
            status=TaskStatus.OK,
            response_id=self.server._next_response_id(),
        )

    def _error(self, text: str) -> str:
        return _server_frame(
            type=ServerMessageType.ERROR,
            status=TaskStatus.ERROR,
            error=text,
            response_id=self.server._next_response_id(),
        )


class FaultConnector:
    """The ``Connector`` a manager uses to reach a :class:`FakeAgentServer`.

    Each ``open`` is one connection attempt: it takes the device's next fault, sets the
    network up for it and delegates to ``MemoryNetwork.open``. URLs the server did not hand out
    go straight to the network. Every client connection it yields is remembered, so a test can
    check that none is left open (:attr:`open_connections`).
    """

    def __init__(self, server: FakeAgentServer) -> None:
        self._server = server
        self._clients: list[MemoryConnection] = []

    @property
    def open_connections(self) -> int:
        """Client connections handed out and not yet closed."""
        self._clients = [c for c in self._clients if not c.closed]
        return len(self._clients)

    @asynccontextmanager
    async def open(self, url: str) -> AsyncIterator[Connection]:
        """Connect as the device's next scheduled fault dictates.

        Raises (on entering):
            ConnectError: the fault refuses the connection (``Refuse``, ``Forbidden``,
                ``Busy``, an ``Outage``), or the network does.
        """
        device, fault = self._server._begin_attempt(url)
        if isinstance(fault, Busy):  # the server's HTTP front answers 503 before any socket
            raise ConnectError(
                f"{_origin(url)} refused the WebSocket upgrade: HTTP 503",
                status=503,
                retry_after=fault.retry_after,
            )
        if device is not None and fault is not None:
            self._server._prepare(device, fault)
        async with self._server.network.open(url) as conn:
            self._clients.append(conn)
            if isinstance(fault, DropAfterAccept):
                conn.abort()
            elif isinstance(fault, KeyRefusedAfterAccept):  # closed before REGISTER can go out
                await conn.aclose(KEY_REFUSED_CODE, "API key refused")
            yield conn


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0]
    return f"{scheme}://{host}"
