"""Text meant for a person at a terminal, made unable to drive that terminal.

A human output of the command line (explain, the sweep and report tables, forget, every error
line) prints values that come from the platform's rows: a display name, a reason carrying a
database error's text. A name such as ``"\\x1b[2J\\x1b]0;pwned\\x07"`` would clear the
operator's screen and retitle the window; ``"\\u202e"`` would reverse what follows it; a
newline would forge a line of the layout. ``terminal_safe`` escapes all of these, visibly, the
way Python's ``repr`` writes them (``\\x1b``, ``\\u202e``), so the operator sees that the value
holds them. Machine outputs (JSON, CSV) are left exact: JSON escapes control characters itself,
and a CSV is data for a program.
"""

from __future__ import annotations

import re

# C0 controls (ESC among them: with it escaped, no escape sequence remains, CSI, OSC or other),
# DEL, C1 controls (U+0080-U+009F: 8-bit CSI and OSC), the line and paragraph separators, and
# the bidirectional formatting characters (embeddings, overrides, isolates, marks) that reorder
# what a terminal shows. Zero-width joiners stay: emoji need them and they move nothing.
_OTHER_UNSAFE = r"\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_ANY_UNSAFE = re.compile(rf"[\x00-\x1f{_OTHER_UNSAFE}]")
_UNSAFE_BUT_NEWLINE = re.compile(rf"[\x00-\x09\x0b-\x1f{_OTHER_UNSAFE}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every character that could move the cursor, change the terminal's state or
    reorder the display written as an escape (``\\x1b``). ``keep_newlines`` leaves ``\\n`` alone:
    for a whole rendered layout, whose lines are ours; a single value gets its newlines escaped."""
    pattern = _UNSAFE_BUT_NEWLINE if keep_newlines else _ANY_UNSAFE
    return pattern.sub(_escape, text)
