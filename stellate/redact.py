"""Keep secrets out of logs, exception messages and displays.

AIP authenticates with ``?token=KEY`` on the WebSocket URL, so a URL is a secret until redacted.
The reference server leaks the key into its access log; stellate formats every URL it shows
through :func:`redact_url`, and the CLI installs :data:`LOG_FILTER` on its log handlers
(:func:`install_log_redaction`) as a second line of defence for anything that slips through:
it masks secret-looking URL parameters anywhere in a record, and every key handed to
:func:`add_log_secret` literally (the server, the agent and the CLI hand theirs over).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Iterable

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

MASK = "***"

# A query parameter is secret when its name mentions one of these words: token, api_key,
# apikey, access_token, client_secret, password, passwd, pwd, auth, signature, sig...
_SECRET_NAME = re.compile(r"token|key|secret|passw(?:or)?d|pwd|auth|sig(?:nature)?", re.IGNORECASE)

# In free text: a secret-looking query parameter, and the password part of URL userinfo. A value
# already masked (``***``) followed by punctuation stays as is, so redacting a message that
# quotes a redacted URL in parentheses ("failed (wss://h/ws?token=***): reason") keeps the "):".
_TEXT_PARAM = re.compile(
    r"(?P<head>[?&;][\w.~%-]*(?:token|key|secret|passw(?:or)?d|pwd|auth|sig(?:nature)?)"
    r"[\w.~%-]*=)(?P<value>\*\*\*(?=[)\],.:]|$)|[^&;#\s'\"<>]*)",
    re.IGNORECASE,
)
_TEXT_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]*@")


def is_secret_param(name: str) -> bool:
    """True when a query parameter named ``name`` should never be shown."""
    return _SECRET_NAME.search(name) is not None


def redact_url(url: str) -> str:
    """Return ``url`` with secret query values and the userinfo password replaced by ``***``.

    Everything else (scheme, host, port, path, other parameters, their order and encoding) is
    kept, so a redacted URL still says where a connection went. Never raises: a string that does
    not parse as a URL is redacted as free text.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            if ":" in userinfo:
                user = userinfo.split(":", 1)[0]
                netloc = f"{user}:{MASK}@{hostport}"
        query = parts.query
        if query:
            query = "&".join(_redact_pair(pair) for pair in query.split("&"))
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return redact_text(url)


def _redact_pair(pair: str) -> str:
    name, sep, _value = pair.partition("=")
    if sep and is_secret_param(urllib.parse.unquote_plus(name)):
        return f"{name}={MASK}"
    return pair


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Redact secret URL parameters, userinfo passwords and the given literal secrets in text.

    Literal secrets are also matched in their percent-encoded form, since they usually travel
    inside URLs.
    """
    for secret in secrets:
        if not secret:
            continue
        text = text.replace(secret, MASK)
        quoted = urllib.parse.quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, MASK)
    if "=" in text:
        text = _TEXT_PARAM.sub(lambda m: m.group("head") + MASK, text)
    if "://" in text:
        text = _TEXT_USERINFO.sub(lambda m: m.group("head") + MASK + "@", text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites records so no secret reaches a handler.

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
        redacted = redact_text(message, self._secrets)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, self._secrets)
        return True


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
