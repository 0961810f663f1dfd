"""Text for an operator's terminal: nothing from a state file may drive the terminal.

A pod name or an error message can hold escape sequences (`ESC]0;…` retitles the window,
`ESC[2J` clears it) or bytes that are not text. Everything printed for humans passes through
`for_terminal`: control characters become visible `\\xNN`, lone surrogates become U+FFFD.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, and the C1 controls (8-bit CSI etc.)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def for_terminal(text: str) -> str:
    text = CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return _SURROGATE.sub("\ufffd", text)
