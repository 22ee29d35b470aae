"""The AIP agent server at the trio edge: sockets in, ``ServerSession`` decisions out.

Each connection is served by exactly one task (the one ``serve_websocket`` gives the handler),
which reads, feeds the session, and performs its actions. Nothing else ever writes to that
socket: when one connection must end another (a device left, so its constellations are told;
a stale registration is replaced), it leaves a notice on the other connection's handle and
cancels that connection's read, and the owner sends the last frame and closes. All waiting is
on trio deadlines (``CancelScope.deadline``), so ``trio.testing.MockClock`` drives the
registration deadline and the heartbeat lease in tests.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

import attrs
import trio

from .protocol.registry import ClientRegistry
from .protocol.session_client import default_new_id, default_now
from .protocol.session_server import (
    Close,
    Evict,
    Send,
    ServerAction,
    ServerPhase,
    ServerPolicy,
    ServerSession,
)
from .protocol.transport import Connection, ConnectionClosed

__all__ = ["API_KEY_ENV", "AgentServer", "add_serve_command"]

logger = logging.getLogger(__name__)

API_KEY_ENV = "STELLATE_API_KEY"
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20


@attrs.define
class _Notice:
    """Another connection asked this one to say ``frame`` and close."""

    frame: str | None
    code: int
    reason: str


@attrs.define
class _Handle:
    """What other tasks may touch of a connection: its notice slot and its read's scope."""

    conn: Connection
    notice: _Notice | None = None
    read_scope: trio.CancelScope | None = None


_SHUTDOWN_NOTICE = _Notice(None, 1001, "server shutting down")


class AgentServer:
    """An AIP agent server: devices register on it, constellations ask it about them.

    Args:
        api_key: shared key clients must present as ``?token=`` (checked at the handshake,
            constant-time; never logged). ``None`` accepts everyone.
        policy: registration deadline and heartbeat lease.
        max_message_size: a larger frame closes its connection with 1009.
        send_timeout: a peer that does not take a frame within this many seconds is dropped.
        close_timeout: seconds granted to a closing handshake.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        policy: ServerPolicy | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        send_timeout: float = 10.0,
        close_timeout: float = 5.0,
    ) -> None:
        self._api_key = api_key
        self.policy = policy or ServerPolicy()
        self.max_message_size = max_message_size
        self.send_timeout = send_timeout
        self.close_timeout = close_timeout
        self.registry = ClientRegistry()
        self._handles: dict[ServerSession, _Handle] = {}
        self._closing = False
        self._all_closed = trio.Event()
        self._all_closed.set()

    def __repr__(self) -> str:  # never shows the key
        return f"<AgentServer clients={len(self.registry)} connections={len(self._handles)}>"

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 5005,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``ws://host:port/ws`` until cancelled; ``nursery.start`` gets the bound port."""
        from .adapters.websocket import serve_websocket

        await serve_websocket(
            self._serve_accepted,
            host,
            port,
            api_key=self._api_key,
            max_message_size=self.max_message_size,
            close_timeout=self.close_timeout,
            task_status=task_status,
        )

    async def _serve_accepted(self, conn: Any, _request: Any) -> None:
        await self.handle_connection(conn)

    async def handle_connection(self, conn: Connection) -> None:
        """Serve one accepted connection until it ends (any transport: tests use memory)."""
        session = ServerSession(
            self.registry,
            trio.current_time(),
            policy=self.policy,
            now=default_now,
            new_id=default_new_id,
        )
        handle = _Handle(conn)
        if self._closing:
            handle.notice = _SHUTDOWN_NOTICE
        self._handles[session] = handle
        self._all_closed = trio.Event() if self._all_closed.is_set() else self._all_closed
        try:
            await self._serve_session(session, handle)
        finally:
            del self._handles[session]
            self._deliver(session.connection_lost(trio.current_time()))
            if not self._handles:
                self._all_closed.set()

    async def shutdown(self) -> None:
        """Close every connection with 1001 (going away) and wait, at most ``close_timeout``.

        Cancelling ``serve`` alone would drop the sockets without a closing handshake (the
        peers would see 1006); agents reconnect either way, but a clean 1001 tells them why.
        Connections accepted after this call are closed at once.
        """
        self._closing = True
        for handle in self._handles.values():
            if handle.notice is None:
                handle.notice = _SHUTDOWN_NOTICE
                if handle.read_scope is not None:
                    handle.read_scope.cancel()
        with trio.move_on_after(self.close_timeout):
            await self._all_closed.wait()

    async def _serve_session(self, session: ServerSession, handle: _Handle) -> None:
        conn = handle.conn
        while session.phase is not ServerPhase.CLOSED:
            if handle.notice is not None:
                await self._leave_on_notice(handle, handle.notice)
                return
            frame: str | bytes | None = None
            with trio.CancelScope(deadline=session.deadline) as scope:
                handle.read_scope = scope
                try:
                    frame = await conn.receive()
                except ConnectionClosed as exc:
                    logger.debug("%r: connection closed (%s)", session, exc.code)
                    return
                finally:
                    handle.read_scope = None
            if frame is None:
                if handle.notice is not None:
                    continue  # another connection asked us to leave
                actions = session.deadline_passed(trio.current_time())
            else:
                actions = session.receive(frame, trio.current_time())
            if not await self._perform(handle, actions):
                return

    async def _perform(self, handle: _Handle, actions: list[ServerAction]) -> bool:
        """Carry out a session's actions; False once the connection is finished."""
        self._deliver(actions)
        for action in actions:
            if isinstance(action, Send):
                if not await self._send(handle.conn, action.frame):
                    return False
            elif isinstance(action, Close):
                await self._close(handle.conn, action.code, action.reason)
                return False
        return True

    def _deliver(self, actions: list[ServerAction]) -> None:
        """Hand ``Evict`` actions to the connections they name (never blocks)."""
        for action in actions:
            if not isinstance(action, Evict):
                continue
            other = self._handles.get(action.session)
            if other is None or other.notice is not None:
                continue
            other.notice = _Notice(action.frame, action.code, action.reason)
            if other.read_scope is not None:
                other.read_scope.cancel()

    async def _leave_on_notice(self, handle: _Handle, notice: _Notice) -> None:
        if notice.frame is not None and not await self._send(handle.conn, notice.frame):
            return
        await self._close(handle.conn, notice.code, notice.reason)

    async def _send(self, conn: Connection, frame: str) -> bool:
        with trio.move_on_after(self.send_timeout) as scope:
            try:
                await conn.send(frame)
            except ConnectionClosed:
                return False
        if scope.cancelled_caught:
            # The transport's own teardown drops the socket once the handler returns.
            logger.warning("peer did not take a frame within %g s; dropping it", self.send_timeout)
            return False
        return True

    async def _close(self, conn: Connection, code: int, reason: str) -> None:
        with trio.move_on_after(self.close_timeout):
            await conn.aclose(code, reason)


# --- CLI --------------------------------------------------------------------------------------


def add_serve_command(subparsers: Any) -> None:
    """Add ``stellate serve`` to the CLI's subparsers."""
    p = subparsers.add_parser(
        "serve",
        help="run an AIP agent server (devices register, constellations query)",
        description="Run an AIP agent server on ws://HOST:PORT/ws.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=5005, help="port (default: 5005; 0: any free port)")
    p.add_argument(
        "--api-key",
        default=None,
        help=f"shared key clients pass as ?token= (default: ${API_KEY_ENV})",
    )
    defaults = ServerPolicy()
    p.add_argument(
        "--registration-timeout",
        type=float,
        default=defaults.registration_timeout,
        help="seconds a new socket has to send its register frame (default: %(default)s)",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=float,
        default=defaults.heartbeat_interval,
        help="expected device heartbeat period in seconds (default: %(default)s)",
    )
    p.add_argument(
        "--miss-limit",
        type=int,
        default=defaults.miss_limit,
        help="missed heartbeats before a device is declared lost (default: %(default)s)",
    )
    p.set_defaults(handler=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    policy = ServerPolicy(
        registration_timeout=args.registration_timeout,
        heartbeat_interval=args.heartbeat_interval,
        miss_limit=args.miss_limit,
    )
    server = AgentServer(api_key=api_key, policy=policy)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(server.serve, args.host, args.port)
                auth = " (token required)" if api_key else ""
                print(f"stellate agent server on ws://{args.host}:{port}/ws{auth}", flush=True)
                async for _ in signals:
                    break
                await server.shutdown()
                nursery.cancel_scope.cancel()

    failure: BaseException | None = None
    try:
        trio.run(main)
    except* OSError as group:  # bind failures (address in use, permission)
        failure = group.exceptions[0]
    if failure is not None:
        reason = failure.strerror if isinstance(failure, OSError) and failure.strerror else failure
        print(f"cannot serve on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 1
    print("stopped", file=sys.stderr)
    return 0
