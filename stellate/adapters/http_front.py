"""The front of a listener: read one HTTP request head, then answer it or hand it on.

Why a front. Plain HTTP requests (``/api/health``, ``/metrics``) and WebSocket upgrades (``/ws``)
share one port, but trio-websocket's ``wrap_server_stream`` reads the request itself and knows
only upgrades. So every accepted stream meets this front first:

1. :class:`RequestReader` reads the request head with h11 — at most ``max_head_size`` bytes,
   counted from the request line to the blank line that ends the head, both included, however
   the bytes were split into reads; the caller's handshake deadline bounds the time. A peer
   that leaves, resets or sends something that is not HTTP ends here as :class:`PeerGone` or
   :class:`BadRequest`: data for one log line, never an exception that escapes.
2. A plain request is answered by the caller with :meth:`RequestReader.answer` (one request
   per connection, ``Connection: close``).
3. An upgrade is first checked by :func:`upgrade_problem` against the rules trio-websocket's
   wsproto will apply next (a property test holds the two to the same verdicts), then
   trio-websocket gets a :class:`ReplayStream` that hands back the bytes already read before
   reading on.

The :class:`ReplayStream` is also where the connection's traffic is counted (plain integer
additions on a shared :class:`Traffic`, one per read or write), and it carries the peer's
address, asked once at accept by :func:`peer_name`: ``getpeername`` on a socket the peer has
reset raises, so nothing after the accept asks the socket again.
"""

from __future__ import annotations

import http
import ssl
import urllib.parse
from collections.abc import Sequence
from enum import StrEnum

import attrs
import h11
import trio

from ..errors import RemoteError
from .listener import is_loopback_host

__all__ = [
    "BadRequest",
    "HandshakeFailure",
    "PeerGone",
    "ReplayStream",
    "RequestHead",
    "RequestReader",
    "Traffic",
    "host_problem",
    "origin_problem",
    "peer_name",
    "upgrade_problem",
]

#: Largest request head accepted, in bytes: the request line, the headers and the blank line
#: that ends them. One byte more is refused with 431.
DEFAULT_MAX_HEAD_SIZE = 16 * 1024
_RECEIVE_SIZE = 4096
_REASONS = {status.value: status.phrase.encode() for status in http.HTTPStatus}


class HandshakeFailure(StrEnum):
    """How a connection ended without a served WebSocket or a successful HTTP answer."""

    #: The peer closed the connection before a whole request (a TCP probe, or it gave up).
    CLOSED = "closed"
    #: The peer reset the connection (or it broke) before the handshake was done.
    RESET = "reset"
    #: The TLS handshake failed (not TLS, a certificate the client refused, a cut hello).
    TLS = "tls"
    #: Not an HTTP/1.x request, malformed, or a head over the size limit (400/431).
    BAD_REQUEST = "bad_request"
    #: An upgrade wsproto would refuse (400/426), or the WebSocket path without one (426).
    BAD_UPGRADE = "bad_upgrade"
    #: No complete request (or upgrade, or answer taken) within the handshake deadline.
    TIMEOUT = "timeout"
    #: No such path (404).
    NOT_FOUND = "not_found"
    #: A method other than GET/HEAD on an HTTP route (405).
    METHOD = "method"
    #: A WebSocket upgrade without the right ``?token=`` (403).
    BAD_TOKEN = "bad_token"
    #: An HTTP request without a key (401).
    UNAUTHORIZED = "unauthorized"
    #: An HTTP request with a wrong key, or any request to a keyless server off loopback (403).
    FORBIDDEN = "forbidden"
    #: Authenticated, but over the connection limits (503).
    BUSY = "busy"
    #: A listener bound to loopback asked for another host (``Host``: DNS rebinding; 421).
    MISDIRECTED = "misdirected"
    #: A WebSocket upgrade from a web page of another origin (``Origin``; 403).
    CROSS_ORIGIN = "cross_origin"


@attrs.define
class Traffic:
    """Bytes that crossed the listener's connections, both ways (TLS records included)."""

    received: int = 0
    sent: int = 0


@attrs.frozen
class RequestHead:
    """A request's method, target and headers (names lower-cased, values as sent).

    ``target`` may carry the API key (``?token=``): log ``path``, never ``target``.
    """

    method: str
    target: str
    headers: tuple[tuple[bytes, bytes], ...]

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urllib.parse.urlsplit(self.target).query

    @property
    def is_upgrade(self) -> bool:
        """The client asks for another protocol (a WebSocket, normally)."""
        return self.header(b"upgrade") is not None

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), or ``None``."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


class PeerGone(RemoteError):
    """The peer closed or reset the connection (or failed TLS) before a whole request head."""

    def __init__(self, reason: HandshakeFailure) -> None:
        super().__init__(reason.value)
        #: ``CLOSED``, ``RESET`` or ``TLS``.
        self.reason = reason


class BadRequest(RemoteError):
    """The bytes are not an acceptable HTTP request; answer ``status`` and close."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail


def peer_name(stream: trio.abc.Stream) -> str:
    """The peer's address as ``host:port`` (IPv6 in brackets), or ``"unknown peer"``.

    Asked once, right after the accept: a peer that has already reset its connection makes
    ``getpeername`` raise ``OSError``, which must not cost more than this placeholder.
    """
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if not isinstance(stream, trio.SocketStream):
        return repr(stream)
    try:
        address = stream.socket.getpeername()
    except OSError:
        return "unknown peer"
    host, port = str(address[0]), address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class RequestReader:
    """Reads one request head from ``stream`` and writes the answer's bytes.

    One per connection. :meth:`read` returns the head; everything received so far (the head and
    any bytes the client sent after it) stays in :attr:`received` for a :class:`ReplayStream`.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        traffic: Traffic,
        *,
        max_head_size: int = DEFAULT_MAX_HEAD_SIZE,
    ) -> None:
        self._stream = stream
        self._traffic = traffic
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=max_head_size)
        self._max_head_size = max_head_size
        self._chunks: list[bytes] = []
        self._received = 0
        self._head: RequestHead | None = None

    @property
    def received(self) -> bytes:
        return b"".join(self._chunks)

    async def read(self) -> RequestHead:
        """The request head.

        Raises:
            PeerGone: the peer closed, reset or failed TLS first.
            BadRequest: not HTTP/1.x, malformed, or a head larger than ``max_head_size``.
        """
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431:
                    raise self._too_big() from None
                raise BadRequest(exc.error_status_hint, "malformed request") from None
            if isinstance(event, h11.Request):
                # h11 limits only a head still incomplete: one that ends inside the read that
                # crossed the limit would pass. Its size is what h11 consumed to parse it.
                size = self._received - len(self._h11.trailing_data[0])
                if size > self._max_head_size:
                    raise self._too_big()
                self._head = RequestHead(
                    method=event.method.decode("ascii", "replace"),
                    target=event.target.decode("ascii", "replace"),
                    headers=tuple((bytes(k), bytes(v)) for k, v in event.headers),
                )
                return self._head
            try:
                data = bytes(await self._stream.receive_some(_RECEIVE_SIZE))
            except trio.BrokenResourceError as exc:
                tls = isinstance(exc.__cause__, ssl.SSLError)
                raise PeerGone(HandshakeFailure.TLS if tls else HandshakeFailure.RESET) from None
            if not data:
                raise PeerGone(HandshakeFailure.CLOSED)
            self._traffic.received += len(data)
            self._received += len(data)
            self._chunks.append(data)
            self._h11.receive_data(data)

    def _too_big(self) -> BadRequest:
        return BadRequest(431, f"request head over the {self._max_head_size}-byte limit")

    async def answer(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str = "text/plain; charset=utf-8",
        headers: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Send a complete answer (``Connection: close``; no body for ``HEAD``).

        Works after :class:`BadRequest` too: h11 still lets the server say why. Returns False
        when the peer is already gone (nothing raised).
        """
        head = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
            *headers,
        ]
        reason = _REASONS.get(status, b"")
        data = self._h11.send(h11.Response(status_code=status, headers=head, reason=reason)) or b""
        if body and (self._head is None or self._head.method != "HEAD"):
            data += self._h11.send(h11.Data(data=body)) or b""
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        self._traffic.sent += len(data)
        return True


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` (an IPv6 address in brackets) as ``(host, port)``, the host in lower
    case and without brackets; ``None`` when malformed."""
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else None
    else:
        host, colon, after = value.rpartition(":")
        host, port_text = (host, after) if colon else (value, None)
        if ":" in host:  # an IPv6 address must be in brackets
            return None
    if not host:
        return None
    if port_text is None:
        return host.lower(), None
    if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return host.lower(), int(port_text)


def host_problem(head: RequestHead) -> str | None:
    """Why a listener bound to loopback must not answer ``head`` (``None``: it may).

    DNS rebinding: a web page from ``attacker.example`` whose name now resolves to 127.0.0.1
    reaches a loopback listener with ``Host: attacker.example``, and the browser lets the page
    read the answer (same origin, as far as it knows). Only a request addressed to this machine
    by a loopback name (``localhost``) or address (``127.0.0.1``, ``[::1]``) is answered, as
    Jupyter does; a browser always sends ``Host``.
    """
    value = head.header(b"host")
    if value is None:
        return "no Host header"
    try:
        split = _split_host(value.decode("ascii"))
    except UnicodeDecodeError:
        split = None
    if split is None:
        return "malformed Host header"
    if not is_loopback_host(split[0]):
        return "this server answers only requests to localhost or a loopback address"
    return None


_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def origin_problem(head: RequestHead) -> str | None:
    """Why a WebSocket upgrade from a web page must be refused (``None``: it may go on).

    A browser sends ``Origin`` with every WebSocket upgrade, and lets any page open one to any
    address: without this check, a page could register on a loopback server, or read a
    device's telemetry through it. Device agents and managers send no ``Origin``; an upgrade
    that carries one is taken only from the server's own origin (the ``Host`` it was sent to:
    same name, same port), as Jupyter and the Docker daemon do.
    """
    origin = head.header(b"origin")
    if origin is None:
        return None
    refused = "WebSocket upgrades from web pages of another origin are refused"
    host = head.header(b"host")
    try:
        scheme, separator, netloc = origin.decode("ascii").partition("://")
        target = _split_host(host.decode("ascii")) if host is not None else None
    except UnicodeDecodeError:
        return refused
    source = _split_host(netloc) if separator and "/" not in netloc else None
    default = _DEFAULT_PORTS.get(scheme.lower())
    if source is None or target is None or default is None:
        return refused
    if (source[0], source[1] or default) != (target[0], target[1] or default):
        return refused
    return None


#: The only WebSocket version (RFC 6455 §4.2.1, item 6).
WEBSOCKET_VERSION = b"13"


def upgrade_problem(head: RequestHead) -> tuple[int, str, list[tuple[str, str]]] | None:
    """Why this WebSocket upgrade must be refused, or ``None`` when trio-websocket will take it.

    RFC 6455 §4.2.1, checked the way wsproto's server handshake checks it (the last value of a
    repeated header counts, as there), plus what makes wsproto raise instead of refusing:
    every ``Connection``, ``Sec-WebSocket-Extensions`` and ``Sec-WebSocket-Protocol`` value must
    be ASCII and every ``Host`` valid IDNA (else ``UnicodeError`` escapes from trio-websocket's
    reader task). Anything wsproto would refuse must be refused here first: trio-websocket
    would answer it itself and then wait for a request it never gets, holding the connection
    until the handshake deadline. Returns ``(status, detail, headers to send)``.

    Checked on the head already parsed: handing the bytes to wsproto's own parser as well
    would cost more than the rest of the front together.
    """
    last: dict[bytes, bytes] = {}
    try:
        for name, value in head.headers:
            last[name] = value
            if name in (b"connection", b"sec-websocket-extensions", b"sec-websocket-protocol"):
                value.decode("ascii")
            elif name == b"host":
                value.decode("idna")
    except UnicodeError:
        return 400, "header is not ASCII", []
    if head.method != "GET":
        return 400, "Request method must be GET", []
    tokens = last.get(b"connection", b"").split(b",")
    if not any(token.strip().lower() == b"upgrade" for token in tokens):
        return 400, "Missing header, 'Connection: Upgrade'", []
    version = last.get(b"sec-websocket-version")
    if version != WEBSOCKET_VERSION:
        return (
            426 if version else 400,
            "Missing header, 'Sec-WebSocket-Version'",
            [("Sec-WebSocket-Version", WEBSOCKET_VERSION.decode())],
        )
    if b"sec-websocket-key" not in last:
        return 400, "Missing header, 'Sec-WebSocket-Key'", []
    if last.get(b"upgrade", b"").lower() != b"websocket":
        return 400, "Missing header, 'Upgrade: websocket'", []
    if b"host" not in last:
        return 400, "Missing header, 'Host'", []
    return None


class ReplayStream(trio.abc.Stream):
    """``stream``, but the first reads return ``replay`` (bytes already read from it).

    Counts every byte read and written into ``traffic``; ``repr`` is the peer's address, which
    is what trio-websocket reports as the remote end of a stream that is not a socket.
    """

    __slots__ = ("_peer", "_pending", "_stream", "_traffic")

    def __init__(self, stream: trio.abc.Stream, replay: bytes, peer: str, traffic: Traffic):
        self._stream = stream
        self._pending = replay
        self._peer = peer
        self._traffic = traffic

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._pending:
            size = len(self._pending) if max_bytes is None else max_bytes
            data, self._pending = self._pending[:size], self._pending[size:]
            await trio.lowlevel.checkpoint()
            return data
        received = await self._stream.receive_some(max_bytes)
        self._traffic.received += len(received)
        return received

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)
        self._traffic.sent += len(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()

    def __repr__(self) -> str:
        return self._peer
