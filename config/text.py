"""Text from users on an operator's terminal."""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` with every character that is not printable escaped as Python would write it.

    Names (agents, tokens, credentials) are anyone's text; printed raw, control characters
    and bidirectional overrides in them could move the cursor, erase lines or reorder what an
    operator reads (ESC [1A ESC [2K: up a line, clear it).
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
