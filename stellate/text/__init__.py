"""Text that crosses a trust boundary: one home for the helpers that make it safe to show.

* :mod:`.urls` — the one reading of a WebSocket URL (parse, rules, token, redaction);
* :mod:`.redact` — secrets masked in URLs, text and log records;
* :mod:`.escape` — peer text made safe for a log line or a terminal.

Every layer may import these; they import nothing else of stellate. Internal: applications use
what the documented packages export.
"""
