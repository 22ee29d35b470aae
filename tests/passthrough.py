"""A connection that hands everything on to the one it wraps: the base of the tests' wrappers
that watch a connection (count heartbeats, record errors) or break it (silence, faults)."""

from __future__ import annotations

from typing import Generic, TypeVar

from stellate.protocol.transport import Connection

C = TypeVar("C", bound=Connection)


class Passthrough(Generic[C]):
    """A ``Connection`` over ``inner``; a subclass overrides what it watches or breaks."""

    def __init__(self, inner: C) -> None:
        self.inner = inner

    async def send(self, message: str | bytes) -> None:
        await self.inner.send(message)

    async def receive(self) -> str | bytes:
        return await self.inner.receive()

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        await self.inner.aclose(code, reason)

    @property
    def closed(self) -> bool:
        return self.inner.closed
