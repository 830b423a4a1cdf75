"""Text from workloads and campaigns made safe to show: no terminal escapes, no control bytes.

Whatever a workload prints or a campaign names (commands, labels, errors, log tails, metric
names) may carry escape sequences that would move a viewer's cursor, retitle the terminal,
hide text, or end up as raw bytes in report.md. Every such text passes through
``strip_terminal_escapes`` before it reaches the report, the viewer or the terminal.

This module is pure.
"""

from __future__ import annotations

import re

__all__ = ["one_line", "strip_terminal_escapes"]

# ECMA-48 escape sequences (https://ecma-international.org/publications-and-standards/
# standards/ecma-48/): CSI (ESC [ or 8-bit 0x9b), OSC/DCS/SOS/PM/APC strings up to BEL or ST
# (or the end of the text), other two- and three-byte ESC sequences, then any remaining C0
# control except \n and \t, DEL, and C1 controls.
_ESCAPES_RE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|\Z)"
    r"|\x1b[ -/]*[0-~]?"
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]",
    re.DOTALL,
)
_BREAKS_RE = re.compile(r"[\n\t\u2028\u2029\x85]+")


def strip_terminal_escapes(text: str) -> str:
    """Remove terminal escape sequences and control characters from workload output.

    Removes CSI sequences (colours, cursor moves), OSC and other string sequences (window
    titles, hyperlinks) up to their terminator, other ESC sequences, C1 controls and every C0
    control except ``\\n`` and ``\\t`` (``\\r`` included), so that a workload's output cannot
    move the viewer's cursor, retitle the terminal or hide text. Sequences as in ECMA-48.

    Args:
        text: decoded output, any length.

    Returns:
        The text without escapes; printable characters are kept unchanged.
    """
    return _ESCAPES_RE.sub("", text)


def one_line(text: str) -> str:
    """``strip_terminal_escapes``, then line and paragraph breaks and tabs become one space:
    for a label, a table cell or a one-line error."""
    return _BREAKS_RE.sub(" ", strip_terminal_escapes(text))
