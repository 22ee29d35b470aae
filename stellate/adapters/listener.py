"""Accepting connections without letting peers, or a full file table, flood the log.

Anyone who can reach the port can make the server notice something: a reset in the middle of
a handshake, bytes that are not HTTP, a wrong key, a socket that says nothing. Each is worth
at most one short line, and many of them only a count: :class:`QuietLog` writes the first few
lines of each kind per interval and then one summary of what it held back. It also keeps the
total per kind, which is what the metrics show.

:func:`serve_listeners` replaces ``trio.serve_listeners``, whose accept loop logs an ERROR with
a traceback ten times a second while the process is out of file descriptors (``EMFILE``). Here
the same condition costs one WARNING per interval; the loop keeps retrying, and serves again
as soon as descriptors are free.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

__all__ = [
    "ACCEPT_RETRY",
    "CAPACITY_ERRNOS",
    "QuietLog",
    "is_loopback_host",
    "serve_listeners",
]

#: accept() failures that mean "no room right now", not "this listener is broken".
CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Seconds to wait after such a failure before accepting again (trio waits the same).
ACCEPT_RETRY = 0.1
#: Seconds over which lines of one kind are limited, and after which a summary is written.
LOG_INTERVAL = 60.0


def is_loopback_host(host: str | None) -> bool:
    """True when binding ``host`` only exposes the server to this machine.

    ``None`` and ``""`` mean every interface; names other than ``localhost`` are not resolved
    and count as exposed (a name can point anywhere).
    """
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class QuietLog:
    """Log lines caused by peers: at most ``burst`` per kind per ``interval``, then a summary.

    ``counts`` holds every event noted, per kind, whether it was logged or not (it may be a
    counter shared with someone who reports it). Call :meth:`flush` once per interval (e.g.
    from :meth:`run`) so a summary is written even when no further event comes.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = LOG_INTERVAL,
        burst: int = 3,
        counts: Counter[str] | None = None,
    ) -> None:
        self._logger = logger
        self.interval = interval
        self._burst = burst
        self.counts: Counter[str] = counts if counts is not None else Counter()
        self._logged: Counter[str] = Counter()
        self._held: Counter[str] = Counter()
        self._window_ends = -math.inf

    def note(self, kind: str, level: int, message: str, *args: object) -> None:
        """Count one event of ``kind``; log ``message % args`` unless this kind had its share."""
        self.counts[kind] += 1
        now = trio.current_time()
        if now >= self._window_ends:
            self.flush(now)
        if self._logged[kind] < self._burst:
            self._logged[kind] += 1
            self._logger.log(level, message, *args)
        else:
            self._held[kind] += 1

    def flush(self, now: float | None = None) -> None:
        """Write one line for everything held back, and start a new interval."""
        if self._held:
            kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(self._held.items()))
            self._logger.info(
                "%d more like these within %g s, not logged one by one (%s)",
                self._held.total(),
                self.interval,
                kinds,
            )
        self._held.clear()
        self._logged.clear()
        self._window_ends = (trio.current_time() if now is None else now) + self.interval

    async def run(self) -> None:
        """Flush every interval, forever (run it in the listener's nursery)."""
        while True:
            await trio.sleep(self.interval)
            self.flush()


async def serve_listeners(
    handler: Callable[[Any], Awaitable[object]],
    listeners: Sequence[trio.abc.Listener[Any]],
    *,
    capacity_log: QuietLog,
    max_open: int | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept on every listener forever, one ``handler(stream)`` task per connection.

    The handler owns (and must close) its stream. An accept that fails for lack of resources
    (:data:`CAPACITY_ERRNOS`) is noted in ``capacity_log`` (kind: the errno's name) and
    retried after :data:`ACCEPT_RETRY`; any other accept error ends the server.

    ``max_open`` bounds the connections held at once, over all the listeners: at the bound,
    nothing more is accepted until one closes (the next ones wait in the kernel's backlog,
    holding no descriptor of ours). A side door such as a metrics port then costs at most that
    many descriptors, however many peers knock, and cannot starve the process's main work.
    """
    slots = None if max_open is None else trio.Semaphore(max_open)
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, handler, nursery, capacity_log, slots)
        task_status.started()


async def _accept_loop(
    listener: trio.abc.Listener[Any],
    handler: Callable[[Any], Awaitable[object]],
    nursery: trio.Nursery,
    capacity_log: QuietLog,
    slots: trio.Semaphore | None,
) -> None:
    async with listener:
        while True:
            if slots is not None:
                await slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as exc:
                if slots is not None:
                    slots.release()
                if exc.errno not in CAPACITY_ERRNOS:
                    raise
                name = errno.errorcode.get(exc.errno, str(exc.errno))
                capacity_log.note(
                    name,
                    logging.WARNING,
                    "cannot accept connections: %s (%s); still serving, retrying every %g s",
                    os.strerror(exc.errno),
                    name,
                    ACCEPT_RETRY,
                )
                await trio.sleep(ACCEPT_RETRY)
            else:
                nursery.start_soon(_serve_one, handler, stream, slots)


async def _serve_one(
    handler: Callable[[Any], Awaitable[object]], stream: Any, slots: trio.Semaphore | None
) -> None:
    try:
        await handler(stream)
    finally:
        if slots is not None:
            slots.release()
