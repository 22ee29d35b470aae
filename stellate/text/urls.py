"""URLs: parse, add the API key, redact. The only place stellate reads a URL.

Two kinds are read here: the WebSocket URLs of agent servers (most of this module) and the
fleet store's ``redis://`` / ``rediss://`` URL (:func:`parse_store_url`, at the end).

AIP authenticates with the shared key in the URL (``ws://host:port/ws?token=KEY``), so a URL is
a secret until redacted, and every component that reads one must agree on what it says: the
config validates with :func:`url_problems`, the connector opens what :func:`parse_ws_url`
returns, the manager and the agent add the key with :func:`with_token`, and everything that
shows a URL (messages, logs, ``--json``, the display) shows :func:`redact_url`.

Rules (RFC 6455 section 3, plus what a config can get wrong):

* the scheme is ``ws`` or ``wss``; there is a host; the port, if written, is 1-65535 (not 0,
  not empty as in ``ws://h:/ws``);
* no whitespace or control characters anywhere (``urllib`` would silently delete some of
  them, so the URL shown and the URL used would differ);
* **no fragment**: RFC 6455 forbids ``#...`` in a WebSocket URL. A fragment is never sent,
  and a key appended after it would be lost (and leak into whatever shows the URL), so it is
  refused, not dropped: a literal ``#`` in a query value is written ``%23``.

The key goes into the query as ``token=`` (percent-encoded), before any fragment, unless a
parameter named exactly ``token`` is already there (``x_token`` and ``access_token`` are other
parameters). Redaction masks userinfo, the fragment, and the value of every query parameter
whose name looks secret (:func:`is_secret_param`); it never raises.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from collections.abc import Container

import attrs

from ..errors import LocalError

__all__ = [
    "MASK",
    "SECRET_WORDS",
    "STORE_SCHEMES",
    "TOKEN_PARAM",
    "InvalidUrl",
    "StoreUrl",
    "WsUrl",
    "is_secret_param",
    "parse_store_url",
    "parse_ws_url",
    "redact_url",
    "store_url_problems",
    "token_of",
    "url_problems",
    "with_token",
]

#: What a secret is replaced with wherever it would be shown.
MASK = "***"
#: The query parameter that carries the AIP key.
TOKEN_PARAM = "token"

_DEFAULT_PORTS = {"ws": 80, "wss": 443}

#: A query parameter is secret when its name mentions one of these words (case ignored): token,
#: api_key, apikey, access_token, client_secret, password, passwd, pwd, auth, signature, sig...
SECRET_WORDS = r"token|key|secret|passw(?:or)?d|pwd|auth|sig(?:nature)?"
_SECRET_NAME = re.compile(SECRET_WORDS, re.IGNORECASE)


class InvalidUrl(LocalError, ValueError):
    """A URL that cannot be used as a WebSocket URL. The message shows it redacted."""


@attrs.frozen
class WsUrl:
    """A valid ``ws://`` / ``wss://`` URL, split into what a client needs to connect."""

    host: str
    port: int
    #: The request target: path (``/`` if empty) and query, as sent in the request line.
    resource: str
    secure: bool
    #: The redacted form, for messages.
    safe: str

    @property
    def host_header(self) -> str:
        """``Host:`` header value: brackets for IPv6, the port only when not the default."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS["wss" if self.secure else "ws"]
        return shown if self.port == default else f"{shown}:{self.port}"

    @property
    def address(self) -> str:
        """``host:port`` for messages about the TCP connection (``[::1]:5005`` for IPv6)."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{shown}:{self.port}"


def is_secret_param(name: str) -> bool:
    """True when a query parameter named ``name`` should never be shown."""
    return _SECRET_NAME.search(name) is not None


def _split_checked(
    url: str, schemes: Container[str], expected: str
) -> tuple[urllib.parse.SplitResult | None, str, list[str]]:
    """The rules every URL read here obeys: no whitespace or control characters (``urllib``
    would silently delete some), splittable, one of ``schemes``, a host. Returns the parts
    (None when the URL cannot be read further), its redacted form, and the problems found."""
    safe = redact_url(url)
    bad = [ch for ch in url if ch.isspace() or unicodedata.category(ch)[0] == "C"]
    if bad:
        what = _name(bad[0])
        return (
            None,
            safe,
            [f"must not contain whitespace or control characters ({what}), got {safe!r}"],
        )
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:  # unbalanced IPv6 brackets
        return None, safe, [f"is not a valid URL ({exc}), got {safe!r}"]
    if parts.scheme not in schemes:
        return None, safe, [f"must be a {expected} URL, got {safe!r}"]
    problems = [] if parts.hostname else [f"has no host, got {safe!r}"]
    return parts, safe, problems


def url_problems(url: str) -> list[str]:
    """Everything wrong with ``url`` as a WebSocket URL (empty: it is fine), each message
    naming the URL in its redacted form."""
    parts, safe, problems = _split_checked(url, _DEFAULT_PORTS, "ws:// or wss://")
    if parts is None:
        return problems
    port_text = parts.netloc.rpartition("@")[2].rpartition("]")[2]
    if port_text.endswith(":"):
        problems.append(f"has an empty port (write it, or leave out the ':'), got {safe!r}")
    else:
        try:
            port = parts.port
        except ValueError:
            problems.append(f"has an invalid port (1-65535), got {safe!r}")
        else:
            if port == 0:
                problems.append(f"has port 0 (a server's port is 1-65535), got {safe!r}")
    if "#" in url:
        problems.append(
            "must not have a fragment ('#...'; RFC 6455 forbids it in a WebSocket URL; "
            f"write a literal '#' as %23), got {safe!r}"
        )
    return problems


def parse_ws_url(url: str) -> WsUrl:
    """Split a WebSocket URL into host, port and request target.

    Raises:
        InvalidUrl: any of the rules in this module's docstring is broken (the message names
            every problem, with the URL redacted).
    """
    problems = url_problems(url)
    if problems:
        raise InvalidUrl("; ".join(problems))
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    assert host is not None  # url_problems checked
    secure = parts.scheme == "wss"
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    return WsUrl(host, port, resource, secure, redact_url(url))


def _query_names(query: str) -> set[str]:
    return {name for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True)}


def with_token(url: str, api_key: str | None) -> str:
    """``url`` with ``token=API_KEY`` added to its query, unless it already has a ``token``.

    The key is percent-encoded; the parameter goes at the end of the query and before any
    fragment (which :func:`parse_ws_url` then refuses, with the key still in the right place).
    A URL ``urllib`` cannot split is returned unchanged: opening it fails with a clear error.
    """
    if not api_key:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if TOKEN_PARAM in _query_names(parts.query):
        return url
    added = urllib.parse.urlencode({TOKEN_PARAM: api_key})
    query = f"{parts.query}&{added}" if parts.query else added
    return urllib.parse.urlunsplit(parts._replace(query=query))


def token_of(target: str) -> str | None:
    """The ``token`` value of a request target or URL (``/ws?token=K`` → ``K``).

    Several ``token`` parameters mean none (an ambiguous request is not authenticated).
    """
    query = target.partition("#")[0].partition("?")[2]
    tokens = [v for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True) if k == "token"]
    return tokens[0] if len(tokens) == 1 else None


def redact_url(url: str) -> str:
    """``url`` with userinfo, the fragment and secret query values replaced by ``***``.

    Everything else (scheme, host, port, path, other parameters, their order and encoding)
    is kept, so a redacted URL still says where a connection went. Never raises: the URL is
    cut at the same places ``urllib.parse.urlsplit`` cuts it (after removing the characters
    it removes), whether or not it is valid.
    """
    for ch in "\t\r\n":
        url = url.replace(ch, "")
    head, hash_, fragment = url.partition("#")
    head, qmark, query = head.partition("?")
    scheme_end = head.find("://")
    if scheme_end >= 0:
        start = scheme_end + 3
        end = head.find("/", start)
        end = len(head) if end < 0 else end
        netloc = head[start:end]
        if "@" in netloc:
            head = f"{head[:start]}{MASK}@{netloc.rpartition('@')[2]}{head[end:]}"
    if query:
        query = "&".join(_redact_pair(pair) for pair in query.split("&"))
    return head + qmark + query + (hash_ + MASK if fragment else hash_)


def _redact_pair(pair: str) -> str:
    name, sep, _value = pair.partition("=")
    if sep and is_secret_param(urllib.parse.unquote_plus(name)):
        return f"{name}={MASK}"
    return pair


def _name(ch: str) -> str:
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'control character')}"


# --- the fleet store's URL ----------------------------------------------------------------------
#
# ``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`` (``rediss://``: over TLS). The password is a
# secret like the AIP key: every message shows the URL through :func:`redact_url`, which masks
# the userinfo. Nothing else may follow: a query or fragment would be an option stellate does
# not read, silently ignored, so it is refused.

#: The store's URL schemes and their default ports.
STORE_SCHEMES = {"redis": 6379, "rediss": 6379}


@attrs.frozen
class StoreUrl:
    """A valid fleet store URL, split into what a client needs to connect."""

    host: str
    port: int
    db: int
    tls: bool
    username: str | None = attrs.field(default=None, repr=False)
    #: From the URL's userinfo (percent-decoded); never shown.
    password: str | None = attrs.field(default=None, repr=False)
    #: The redacted form, for messages.
    safe: str = ""


def store_url_problems(url: str) -> list[str]:
    """Everything wrong with ``url`` as a fleet store URL (empty: it is fine), each message
    naming the URL in its redacted form."""
    parts, safe, problems = _split_checked(url, STORE_SCHEMES, "redis:// or rediss://")
    if parts is None:
        return problems
    try:
        port = parts.port
    except ValueError:
        problems.append(f"has an invalid port (1-65535), got {safe!r}")
    else:
        if port == 0 or parts.netloc.endswith(":"):
            problems.append(f"has an invalid port (1-65535), got {safe!r}")
    db = parts.path.removeprefix("/")
    if db and not (db.isascii() and db.isdigit()):
        problems.append(f"must name its database as a number (redis://HOST:PORT/0), got {safe!r}")
    if parts.query or "?" in url:
        problems.append(f"must not have a query (no option is read from it), got {safe!r}")
    if "#" in url:
        problems.append(f"must not have a fragment, got {safe!r}")
    return problems


def parse_store_url(url: str) -> StoreUrl:
    """Split a fleet store URL into host, port, database, credentials and TLS.

    Raises:
        InvalidUrl: a rule above is broken (the message names every problem, URL redacted).
    """
    problems = store_url_problems(url)
    if problems:
        raise InvalidUrl("; ".join(problems))
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname
    assert host is not None  # store_url_problems checked
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    return StoreUrl(
        host=host,
        port=parts.port or STORE_SCHEMES[parts.scheme],
        db=int(parts.path.removeprefix("/") or 0),
        tls=parts.scheme == "rediss",
        username=username,
        password=password or None,
        safe=redact_url(url),
    )
