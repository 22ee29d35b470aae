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

import logging
import re
import urllib.parse
from collections.abc import Iterable

from .escape import escape_text
from .urls import MASK, SECRET_WORDS, is_secret_param, redact_url

__all__ = [
    "LOG_FILTER",
    "MASK",
    "RedactingFilter",
    "add_log_secret",
    "install_log_redaction",
    "is_secret_param",
    "redact_text",
    "redact_url",
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


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Redact secret URL parameters, URL userinfo and the given literal secrets in text.

    Literal secrets are also matched in their percent-encoded forms, since they usually travel
    inside URLs, and escaped, as peer text is shown.
    """
    for secret in secrets:
        if not secret:
            continue
        forms = {
            secret,
            urllib.parse.quote(secret, safe=""),
            urllib.parse.quote_plus(secret, safe=""),
            escape_text(secret, limit=None),
        }
        for form in sorted(forms, key=len, reverse=True):
            text = text.replace(form, MASK)
    if "=" in text:
        text = _TEXT_PARAM.sub(lambda m: m.group("head") + MASK, text)
    if "://" in text:
        text = _TEXT_USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)
    return text


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
