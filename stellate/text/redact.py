"""Keep secrets out of logs, exception messages and displays; keep peer text on its line.

AIP authenticates with ``?token=KEY`` on the WebSocket URL, so a URL is a secret until redacted.
The reference server leaks the key into its access log; stellate formats every URL it shows
through :func:`redact_url` (from :mod:`stellate.text.urls`), and the CLI installs :data:`LOG_FILTER`
on its log handlers (:func:`install_log_redaction`) as a second line of defence for anything
that slips through: it masks secret-looking URL parameters anywhere in a record, and every key
handed to :func:`add_log_secret` literally (the server, the agent and the CLI hand theirs over).

The same filter escapes what a record's message would otherwise write raw: a newline, an
escape sequence or a zero-width character in a peer's id or error text cannot start a forged
log line or repaint a terminal (:func:`stellate.text.escape.escape_text`; call sites escape peer
text too, for handlers this filter is not on).
"""

from __future__ import annotations

import json
import logging
import math
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

from .escape import DEFAULT_LIMIT, escape_text
from .urls import MASK, SECRET_WORDS, is_secret_param, redact_url

__all__ = [
    "LOG_FILTER",
    "MASK",
    "RedactingFilter",
    "add_log_secret",
    "install_log_redaction",
    "is_secret_param",
    "redact_start",
    "redact_text",
    "redact_url",
    "safe_json",
    "shown",
]

# In free text: a secret-looking query (or fragment) parameter, and URL userinfo. A value
# already masked (``***``) followed by punctuation stays as is, so redacting a message that
# quotes a redacted URL in parentheses ("failed (wss://h/ws?token=***): reason") keeps the "):".
_TEXT_PARAM = re.compile(
    rf"(?P<head>[?&;#][\w.~%-]*(?:{SECRET_WORDS})[\w.~%-]*=)"
    r"(?P<value>\*\*\*(?=[)\],.:]|$)|[^&;#\s'\"<>]*)",
    re.IGNORECASE,
)
_TEXT_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]*@")
#: A URL's authority that runs on to the end of a text: cut there, its userinfo's "@" is unseen.
_OPEN_AUTHORITY = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]*$")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Redact secret URL parameters, URL userinfo and the given literal secrets in text.

    Literal secrets are also matched in their percent-encoded forms, since they usually travel
    inside URLs, escaped, as peer text is shown, and JSON-escaped.
    """
    for secret in secrets:
        if not secret:
            continue
        for form in _forms(secret):
            text = text.replace(form, MASK)
    return _mask_url_parts(text)


def redact_start(text: str, limit: int) -> str:
    """The first ``limit`` characters of ``text``, redacted as :func:`redact_text` would.

    Redacting only the start bounds the cost of a peer's megabyte-long text. A cut can fall
    inside a URL's authority before the "@" that would show it holds userinfo (a password
    longer than the part looked at): an authority running on to the cut is masked whole.
    """
    if len(text) <= limit:
        return redact_text(text)
    start = redact_text(text[:limit])
    if "://" not in start:
        return start
    return _OPEN_AUTHORITY.sub(lambda m: m.group("head") + MASK, start)


def _mask_url_parts(text: str) -> str:
    """``text`` with secret-looking URL parameters and URL userinfo masked."""
    if "=" in text:
        text = _TEXT_PARAM.sub(lambda m: m.group("head") + MASK, text)
    if "://" in text:
        text = _TEXT_USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)
    return text


def _forms(secret: str) -> list[str]:
    """The spellings ``secret`` travels in (URLs, escaped peer text, JSON), longest first."""
    forms = {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret, safe=""),
        escape_text(secret, limit=None),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    return sorted(forms, key=len, reverse=True)


#: A record's message is cut after this many characters (peer text is also cut where logged).
MESSAGE_LIMIT = 10_000


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites records so no secret, and no hidden character, reaches a
    handler.

    Attach it to *handlers* (``handler.addFilter(...)``): filters on a logger do not see records
    propagated from child loggers. The record's message is formatted once, redacted, and stored
    back with no arguments; an attached traceback is formatted and redacted into ``exc_text``,
    which formatters use as is.

    Args:
        secrets: literal strings to mask wherever they appear (e.g. the API key).
    """

    def __init__(self, secrets: Iterable[str] = (), name: str = "") -> None:
        super().__init__(name)
        self._secrets: set[str] = {s for s in secrets if s}

    def add_secret(self, secret: str) -> None:
        """Mask ``secret`` from now on (empty strings are ignored)."""
        if secret:
            self._secrets.add(secret)

    @property
    def secrets(self) -> frozenset[str]:
        """The literal secrets this filter masks."""
        return frozenset(self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it
            return True
        redacted = escape_text(redact_text(message, self._secrets), limit=MESSAGE_LIMIT)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _escape_lines(redact_text(record.exc_text, self._secrets))
        if record.stack_info:
            record.stack_info = _escape_lines(redact_text(record.stack_info, self._secrets))
        return True


def _escape_lines(text: str) -> str:
    """A traceback keeps its lines; anything else hidden in it is escaped."""
    return "\n".join(escape_text(line, limit=None) for line in text.split("\n"))


#: The process-wide filter: on the CLI's handlers and on trio-websocket's logger.
LOG_FILTER = RedactingFilter()


def add_log_secret(secret: str | None) -> None:
    """Mask ``secret`` (and its percent-encoded form) in every record :data:`LOG_FILTER` sees."""
    if secret:
        LOG_FILTER.add_secret(secret)


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Put :data:`LOG_FILTER` on every handler of ``logger`` (default: the root logger).

    Idempotent. Handlers added later are not covered: call it after configuring logging.
    """
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if LOG_FILTER not in handler.filters:
            handler.addFilter(LOG_FILTER)


# -- what the process prints ----------------------------------------------------------------------
#
# A peer's text can carry a key: a server that echoes the API key in an error, in telemetry, or
# in an HTTP refusal's reason. Log records pass LOG_FILTER; what the CLI prints (stdout JSON,
# progress lines, profiles, a stop line) and what an HTTP route answers pass the two functions
# below, which mask every key handed to :func:`add_log_secret` in this process.


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception as exc:  # a peer-made object whose __str__ fails
        return f"<unprintable {type(value).__name__}: {type(exc).__name__}>"


def shown(value: object, limit: int | None = DEFAULT_LIMIT) -> str:
    """``value`` as safe output on one line: every key this process knows and every
    secret-looking URL part masked, hidden characters escaped, cut after ``limit``."""
    return escape_text(redact_text(_as_text(value), LOG_FILTER.secrets), limit=limit)


def _redacted(value: Any, secrets: frozenset[str]) -> Any:
    """A copy of ``value`` whose strings (keys too) are masked and whose numbers are JSON."""
    if isinstance(value, str):
        return redact_text(value, secrets)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {
            redact_text(_as_text(key), secrets): _redacted(item, secrets)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redacted(item, secrets) for item in value]
    return redact_text(_as_text(value), secrets)


def safe_json(value: Any, **dumps: Any) -> str:
    """``json.dumps(value, **dumps)``, always valid JSON, never showing a secret.

    Every string (keys included) has each key this process knows and every secret-looking URL
    part masked; a number JSON cannot hold (NaN, an infinity) becomes ``null``; anything else
    that is not JSON becomes its (masked) text. Masking works on the values, never on the
    text, so a key that looks like JSON punctuation cannot break the document. Most documents
    hold nothing to mask: they are dumped once and searched, and walked only when needed.
    """
    secrets = LOG_FILTER.secrets
    try:
        text = json.dumps(value, allow_nan=False, **dumps)
    except (TypeError, ValueError):
        pass  # not JSON as it is: the walk settles it
    else:
        # What masking the strings would change shows in the text too: JSON escapes quotes,
        # backslashes and non-ASCII, and the needles are escaped the same way; a URL
        # parameter's name and its mask are plain ASCII.
        needles = {json.dumps(form)[1:-1] for secret in secrets for form in _forms(secret)}
        if not any(needle in text for needle in needles) and _mask_url_parts(text) == text:
            return text
    return json.dumps(_redacted(value, secrets), allow_nan=False, **dumps)
