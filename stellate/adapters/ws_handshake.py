"""The client's check of a server's answer to the WebSocket upgrade (sans-IO: bytes in, verdict).

trio-websocket reads the answer with wsproto, and a malformed one does not end as an error the
caller can handle: a bad status line, a wrong ``Sec-WebSocket-Accept`` or a missing
``Upgrade`` header makes its reader try to *send* an HTTP rejection (which a client cannot),
so an h11 ``LocalProtocolError`` escapes with no word about the server; a server that closes
or resets mid-handshake leaves it waiting until the connect timeout. The connector therefore
shows the same bytes to an :class:`UpgradeCheck` first (``ws_client`` puts it in the stream's
path for the handshake only). It parses the answer with h11 and the client rules of RFC 6455
section 4.1, and ends every handshake that is not a clean ``101`` with :class:`UpgradeFailed`
and a reason: which rule was broken, or the server's refusal with its status, its reason text
and ``Retry-After``. trio-websocket then only ever sees a valid ``101``.

Everything the server wrote that ends up in a reason is escaped and cut
(:func:`stellate.text.escape.escape_text`).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import math
import re
import time

import h11

from ..errors import RemoteError
from ..text.escape import escape_text

__all__ = [
    "MAX_ANSWER_HEADER_BYTES",
    "MAX_RETRY_AFTER",
    "UpgradeCheck",
    "UpgradeFailed",
    "parse_retry_after",
]

#: An answer whose status line and headers are longer than this is refused (h11's default).
MAX_ANSWER_HEADER_BYTES = 16 * 1024
#: Of a refusal's body, this much is read for its reason; the rest is not waited for.
MAX_REASON_BODY_BYTES = 4 * 1024
#: Characters of the server's reason text shown in a message: short, so that the message that
#: carries it (URL, status, "gave up after N attempts: ") stays under the displays' own limit
#: and is never cut a second time.
REASON_LIMIT = 120
#: What a refusal says instead of its body when the body is a web page: whoever answered is a
#: web server or a proxy, not an AIP server (whose refusals are plain text or JSON).
NOT_AIP = "an HTML page: a web server or proxy answered, not an AIP server"
#: A ``Retry-After`` longer than this (seconds) is taken as this: a server cannot park a
#: client for days.
MAX_RETRY_AFTER = 3600.0

#: Content types of a web page (never an AIP server's refusal).
_PAGE_TYPES = frozenset({b"text/html", b"application/xhtml+xml"})
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_KEY_HEADER = re.compile(rb"\r\nsec-websocket-key:[ \t]*([^\r\n]*?)[ \t]*\r\n", re.IGNORECASE)
_END_OF_HEAD = re.compile(rb"\n\r?\n")  # where h11 sees the blank line
#: The usual answer, read without h11: an HTTP/1.1 ``101`` whose head came in one read, every
#: header a token name and a value of printable ASCII. Anything else (and a head in pieces)
#: is read by h11, which gives every other verdict and its reason.
_TOKEN = rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CLEAN_101 = re.compile(
    rb"HTTP/1\.1 101[ ][\x20-\x7e]*\r\n((?:" + _TOKEN + rb":[\x20-\x7e]*\r\n)*)\r\n"
)
_CLEAN_HEADER = re.compile(rb"(" + _TOKEN + rb"):[ ]*([\x20-\x7e]*?)[ ]*\r\n")
#: Headers whose value h11 checks further (a number, a coding): their answers go through h11.
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


class UpgradeFailed(RemoteError):
    """The upgrade did not succeed; ``reason`` says why in words (no URL: the caller adds it).

    ``status`` is the HTTP status of a refusal (``None`` when the answer was not a valid HTTP
    response at all); ``retry_after`` the seconds its ``Retry-After`` asked for.
    """

    def __init__(
        self, reason: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def accept_token(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``Sec-WebSocket-Key: key``."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def parse_retry_after(value: bytes | str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date).

    ``None`` for a missing or unreadable value; a date in the past gives 0; anything longer
    than :data:`MAX_RETRY_AFTER` gives that. ``now`` is the wall-clock time (``time.time()``).
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = value.strip()
    if text.isdigit() and text.isascii():
        seconds = float(int(text[:12]))  # 12 digits is already ~30,000 years
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # RFC 9110: HTTP dates are GMT
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


def _tokens(values: list[bytes]) -> set[bytes]:
    return {token.strip().lower() for value in values for token in value.split(b",")}


class UpgradeCheck:
    """Watches one client handshake: the request we send, then the server's answer.

    Feed it with :meth:`request_sent` (the bytes of our upgrade request, as they are sent) and
    :meth:`answer_received` (every chunk read, ``b""`` at end of stream). The latter returns
    ``True`` once the answer is a valid ``101`` (every later byte is WebSocket data) and
    raises :class:`UpgradeFailed` as soon as the answer cannot become one.
    """

    def __init__(self, *, max_header_bytes: int = MAX_ANSWER_HEADER_BYTES) -> None:
        self._request = b""
        self._key: bytes | None = None
        self._http: h11.Connection | None = None  # made for an answer the fast path passes on
        self._max_header_bytes = max_header_bytes
        self._received = 0
        self._head: bytes | None = b""  # the answer until its blank line (None: seen it)
        self._refusal: h11.Response | None = None
        self._body = b""
        self.accepted = False

    def request_sent(self, data: bytes) -> None:
        """Our side wrote ``data`` (the upgrade request, possibly in pieces)."""
        if self._key is not None:
            return
        self._request += data
        end = self._request.find(b"\r\n\r\n")
        if end < 0:
            return
        match = _KEY_HEADER.search(self._request[: end + 2])
        if match is None:  # never: trio-websocket always sends one; a bug on our side
            raise RuntimeError("the upgrade request has no Sec-WebSocket-Key")
        self._key = match.group(1)
        self._request = b""

    def _reader(self) -> h11.Connection:
        """h11, for an answer that is not a clean ``101`` in one read."""
        http = self._http
        if http is None:
            http = h11.Connection(h11.CLIENT, max_incomplete_event_size=self._max_header_bytes)
            # h11 must believe it sent the request to read the answer: a stand-in with the
            # same upgrade headers (the bytes it would write are not used).
            http.send(
                h11.Request(
                    method="GET",
                    target="/",
                    headers=[("Host", "-"), ("Upgrade", "websocket"), ("Connection", "Upgrade")],
                )
            )
            http.send(h11.EndOfMessage())
            self._http = http
        return http

    def answer_received(self, data: bytes) -> bool:
        """The server sent ``data`` (``b""``: it closed). True once the upgrade is accepted.

        Raises:
            UpgradeFailed: the answer is a refusal, is not valid HTTP, breaks RFC 6455, or
                ended before it was complete.
        """
        if self.accepted:
            return True
        if self._key is None:
            raise UpgradeFailed(self._early(data))
        if self._received == 0 and self._clean_101(data):
            self._received = len(data)
            self.accepted = True
            return True
        self._received += len(data)
        self._check_head_size(data)
        http = self._reader()
        http.receive_data(data)
        while True:
            try:
                event = http.next_event()
            except h11.RemoteProtocolError as exc:
                raise UpgradeFailed(self._malformed(exc, closed=not data)) from None
            if event is h11.NEED_DATA:
                if not data:  # h11 waits for more, and there is none
                    raise UpgradeFailed(self._cut_short())
                return False  # a pending refusal's body may follow (see refusal_pending)
            if isinstance(event, h11.InformationalResponse):
                if event.status_code != 101:
                    raise UpgradeFailed(
                        f"the server answered HTTP {event.status_code} (informational) instead "
                        "of 101 Switching Protocols"
                    )
                self._check_101(list(event.headers))
                self.accepted = True
                return True
            if isinstance(event, h11.Response):
                self._refusal = event
            elif isinstance(event, h11.Data):
                room = MAX_REASON_BODY_BYTES - len(self._body)
                self._body += bytes(event.data[:room])
                if len(self._body) >= MAX_REASON_BODY_BYTES:
                    raise self.refused()
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                raise self.refused()

    @property
    def refusal_pending(self) -> bool:
        """A refusal's status and headers are in, its body (the reason text) is still coming."""
        return self._refusal is not None

    def _check_head_size(self, data: bytes) -> None:
        """h11 bounds only an *incomplete* head; a complete one in one read must be bounded
        here (the head is also the most a client keeps of a refusal's headers)."""
        if self._head is None:
            return
        self._head += data
        end = _END_OF_HEAD.search(self._head)
        size = len(self._head) if end is None else end.start()
        if size > self._max_header_bytes:
            raise UpgradeFailed(
                f"the answer's headers are longer than {self._max_header_bytes} bytes"
            )
        if end is not None:
            self._head = None

    # --- verdicts ---------------------------------------------------------------------------

    @staticmethod
    def _early(data: bytes) -> str:
        if not data:
            return "the server closed the connection before the upgrade request was sent"
        return "the server spoke before it was asked (it sent bytes before our upgrade request)"

    def _cut_short(self) -> str:
        if self._refusal is not None:
            raise self.refused()
        if self._received == 0:
            return "the server closed the connection without answering the WebSocket upgrade"
        return (
            f"the server closed the connection in the middle of its answer "
            f"(after {self._received} bytes)"
        )

    def _malformed(self, exc: h11.RemoteProtocolError, *, closed: bool) -> str:
        if self._refusal is not None:
            raise self.refused()
        if closed:
            return self._cut_short()
        detail = str(exc)
        if "buffer" in detail.lower() and "too long" in detail.lower():
            return f"the answer's headers are longer than {self._max_header_bytes} bytes"
        return f"the answer is not valid HTTP ({escape_text(detail, REASON_LIMIT)})"

    def _clean_101(self, data: bytes) -> bool:
        """The answer is a ``101`` whose whole head is in ``data`` and plain enough to read
        without h11 (see ``_CLEAN_101``); its headers are then held to the same rules.

        Raises:
            UpgradeFailed: it is such a ``101``, and breaks a rule of RFC 6455.
        """
        match = _CLEAN_101.match(data)
        if match is None or match.end() > self._max_header_bytes:
            return False
        # Every line of the head is a header (_CLEAN_101 made sure): one pair per line.
        headers = [(n.lower(), v) for n, v in _CLEAN_HEADER.findall(match.group(1))]
        if any(name in _FRAMING for name, _ in headers):
            return False
        self._check_101(headers)
        return True

    def _check_101(self, headers: list[tuple[bytes, bytes]]) -> None:
        """A ``101`` answer's headers (lower-case names) against the client rules of RFC 6455
        section 4.1."""
        rules = (
            (b"upgrade" in _tokens(_header(headers, b"connection")), "'Connection: Upgrade'"),
            (_tokens(_header(headers, b"upgrade")) == {b"websocket"}, "'Upgrade: websocket'"),
        )
        for ok, header in rules:
            if not ok:
                raise UpgradeFailed(f"the 101 answer lacks {header} (RFC 6455 section 4.1)")
        accept = _header(headers, b"sec-websocket-accept")
        assert self._key is not None
        if accept != [accept_token(self._key)]:
            raise UpgradeFailed(
                "the 101 answer's Sec-WebSocket-Accept does not match our key (the server, "
                "or something between, is not answering this handshake)"
            )
        for name, what in (
            (b"sec-websocket-extensions", "an extension"),
            (b"sec-websocket-protocol", "a subprotocol"),
        ):
            if _header(headers, name):
                raise UpgradeFailed(f"the 101 answer selects {what} we did not offer")

    def refused(self) -> UpgradeFailed:
        """The refusal, with as much of its body as arrived (only when ``refusal_pending``)."""
        assert self._refusal is not None
        response = self._refusal
        status = response.status_code
        phrase = escape_text(bytes(response.reason).decode("latin-1"), REASON_LIMIT)
        text = f"HTTP {status}" + (f" {phrase}" if phrase else "")
        body = self._body.decode("utf-8", errors="replace").strip()
        kind = b"".join(_header(list(response.headers), b"content-type")).split(b";")[0]
        if kind.strip().lower() in _PAGE_TYPES or body[:1] == "<":
            text += f" ({NOT_AIP})"
        elif body:
            text += f" ({escape_text(' '.join(body.split()), REASON_LIMIT)})"
        retry = _header(list(response.headers), b"retry-after")
        retry_after = parse_retry_after(retry[0]) if retry else None
        if retry_after is not None:
            text += f", retry after {retry_after:g} s"
        return UpgradeFailed(text, status=status, retry_after=retry_after)
