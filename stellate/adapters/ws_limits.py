"""Limits shared by the WebSocket client and server, and the log filter on trio-websocket.

trio-websocket logs every handshake event at DEBUG, the request target (``/ws?token=KEY``)
included, so :data:`~stellate.text.redact.LOG_FILTER` sits on its logger (``trio-websocket``) from
import on; a server adds its key to that filter. A filter on a logger sees the records logged
*on that logger*, which is where trio-websocket logs (it has no child loggers), so every handler
anywhere only gets the redacted text.
"""

from __future__ import annotations

import logging

from ..text.redact import LOG_FILTER

#: Larger incoming messages close the connection with 1009 (trio-websocket's default too).
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20

if LOG_FILTER not in logging.getLogger("trio-websocket").filters:
    logging.getLogger("trio-websocket").addFilter(LOG_FILTER)
