"""JSON from untrusted bytes with bounded nesting.

Decoders recurse once per level (msgspec's and json's alike): a line of 100,000 `[` raises
RecursionError (not ValueError) from inside the decoder, and a document just under the
interpreter's limit decodes, then overflows the first recursive walk over it. Every reader of
a file, a socket or a server's answer decodes through `loads` (or checks with `check_depth`
before its own typed decoder): anything nested deeper than MAX_DEPTH is a ValueError like any
other bad JSON.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

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
        raise TooDeep(f"nested too deep (over {max_depth} levels)")


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in data; ValueError (never RecursionError) when it is not JSON or is
    nested deeper than max_depth."""
    check_depth(data, max_depth)
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        if b"\\ud" not in (data.encode("utf-8", "surrogatepass") if isinstance(data, str)
                           else data).lower():
            raise ValueError(str(exc)) from None
        # msgspec refuses the escape of a lone surrogate (\udcff), which kata-top itself
        # writes for a string of bytes that were no UTF-8: the standard reader takes it
        import json

        return json.loads(data)
    except RecursionError as exc:  # a limit lower than ours (a deep caller's stack)
        raise TooDeep("nested too deep") from exc
