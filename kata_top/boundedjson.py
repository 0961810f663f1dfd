"""JSON from untrusted bytes with bounded nesting.

Python's decoders (json, msgspec) recurse once per level: a line of 100,000 `[` raises
RecursionError (not ValueError) from inside the decoder, and a document just under the
interpreter's limit decodes, then overflows the first recursive walk over it. Every reader of
a file, a socket or a server's answer decodes through `loads` (or checks with `check_depth`
first): anything nested deeper than MAX_DEPTH is a ValueError like any other bad JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64  # kata-top's own documents and Kata's state files nest under 12
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKET = bytes(c for c in range(256) if c not in b"[]{}")


class TooDeep(ValueError):
    """Nested deeper than MAX_DEPTH."""


def check_depth(data: bytes | str, max_depth: int = MAX_DEPTH) -> None:
    """TooDeep when data's arrays/objects nest deeper than max_depth. Cheap for what kata-top
    reads: a document with fewer brackets than the limit cannot nest past it; otherwise the
    strings are cut out and innermost pairs removed, one level per pass, in C."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKET)
    for _ in range(max_depth):
        if not brackets:
            return
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(brackets):
            return  # unbalanced: the decoder says what is wrong with it
        brackets = shorter
    if brackets:
        raise TooDeep(f"nested deeper than {max_depth} levels")


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, with ValueError (never RecursionError) for input nested too deep."""
    check_depth(data, max_depth)
    try:
        return json.loads(data)
    except RecursionError as exc:  # a limit lower than ours (a deep caller's stack)
        raise TooDeep("nested too deep") from exc
