"""Text from outside, made safe to show on one log line or in one terminal cell.

A peer chooses its device id, hostname, platform, error texts and close reasons; a config file
chooses ids and capabilities. Written raw, a newline in one of them forges a log line, an
escape sequence (``\\x1b[2J``) repaints the terminal, a right-to-left override reverses what
follows, and a lone surrogate makes the terminal's encoder raise. :func:`escape_text` is the one
function that turns such text into something printable: every character that is not visible
(controls, format characters such as zero-width spaces and bidi overrides, surrogates,
private-use and unassigned code points, line and paragraph separators, and the invisible
"default ignorable" letters such as U+3164) becomes a Python-style escape (``\\n``, ``\\x1b``,
``\\u200b``), and long text is cut. (A backslash stays as it is: an escape in the output may
also be a peer's literal text, but it can never be a control character.)

:func:`is_hidden` is the character rule itself; the id rule (``stellate.protocol.ids``) refuses
the same characters.
"""

from __future__ import annotations

__all__ = ["DEFAULT_LIMIT", "escape_text", "is_hidden"]

#: Characters of peer text kept by default before the rest is cut (a 1 MiB error text must
#: not become a 1 MiB log line).
DEFAULT_LIMIT = 300

# Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt): code points a
# renderer shows as nothing. Most are format characters (already refused by category); the
# rest are letters, marks or symbols that look like nothing (U+115F, U+3164, variation
# selectors...).
_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)

_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def is_hidden(ch: str) -> bool:
    """True when ``ch`` is not a visible character (or a plain space) on a terminal."""
    if ch == " ":
        return False
    if not ch.isprintable():  # Cc, Cf, Cs, Co, Cn, Zl, Zp and every Zs but the ASCII space
        return True
    code = ord(ch)
    return code >= 0x00AD and any(low <= code <= high for low, high in _IGNORABLE)


def _escape_char(ch: str) -> str:
    short = _SHORT_ESCAPES.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_text(text: object, limit: int | None = DEFAULT_LIMIT) -> str:
    """``text`` (``str()`` of it if not a string) with every hidden character escaped.

    At most ``limit`` characters of the input are kept (``None``: all), the cut marked with
    ``…(N more characters)``. Plain text comes back unchanged. Never raises.
    """
    if not isinstance(text, str):
        try:
            text = str(text)
        except Exception as exc:  # a peer-made object whose __str__ fails
            text = f"<unprintable {type(text).__name__}: {type(exc).__name__}>"
    cut = 0
    if limit is not None and len(text) > limit:
        cut = len(text) - limit
        text = text[:limit]
    if text.isprintable() and not _has_ignorable(text):
        out = text
    else:
        out = "".join(_escape_char(ch) if is_hidden(ch) else ch for ch in text)
    if cut:
        out += f"…({cut} more characters)"
    return out


def _has_ignorable(text: str) -> bool:
    return not text.isascii() and any(is_hidden(ch) for ch in text)
