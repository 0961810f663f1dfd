"""The Snapshot as the versioned JSON contract (`kata_top/formats/schema/snapshot-1.json`).

msgspec writes the model as it is: the JSON keys are the fields' (or the name a field gives,
kata_top/model.py), in their order. One thing is written other than the model holds it: tc
actions' times. The model keeps when an action was installed and last used, so an unchanged
filter is the very same object cycle after cycle; the contract shows ages, seconds before the
snapshot's time (`installed_s`, `last_used_s`), made here when the document is written.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec.structs import replace

from kata_top.model import Action, Filter, Sandbox, Snapshot

_ENCODER = msgspec.json.Encoder()
_ANY = msgspec.json.Encoder(enc_hook=str)  # to_plain's: what JSON has no form for, as str()
_PLAIN = msgspec.json.Decoder()


def age(at: float | None, now: float) -> float | None:
    """A time as seconds before `now` (USER_HZ resolution, as the kernel counts them)."""
    return None if at is None else max(0.0, round(now - at, 2))


def _aged_action(a: Action, now: float) -> Action:
    if a.installed_at is None and a.last_used_at is None:
        return a
    # the same fields, holding ages: they are written as `installed_s` and `last_used_s`
    return replace(a, installed_at=age(a.installed_at, now),
                   last_used_at=age(a.last_used_at, now))


def _aged_filter(f: Filter, now: float) -> Filter:
    if not f.actions:
        return f
    return replace(f, actions=tuple([_aged_action(a, now) for a in f.actions]))


def aged(sb: Sandbox, now: float) -> Sandbox:
    """The sandbox as the contract writes it: its tc actions' times as ages at `now`."""
    if not sb.filters:
        return sb
    return replace(sb, filters=tuple([_aged_filter(f, now) for f in sb.filters]))


def _aged_snapshot(snap: Snapshot) -> Snapshot:
    now = snap.taken_at
    return replace(snap, sandboxes=tuple([aged(sb, now) for sb in snap.sandboxes]))


def encode(snap: Snapshot) -> bytes:
    """The compact document, UTF-8."""
    return _text(_aged_snapshot(snap))


# C1 controls (U+0080-U+009F; in UTF-8 0xC2 then 0x80-0x9F) are escaped: a terminal may
# act on them (U+009B is CSI)
_C1 = re.compile(b"\xc2([\x80-\x9f])")


def _c1(m: re.Match[bytes]) -> bytes:
    return b"\\u00%02x" % m.group(1)[0]


def _text(obj: Any) -> bytes:
    try:
        data = _ENCODER.encode(obj)
    except UnicodeEncodeError:
        # A string holding a lone surrogate (bytes the OS gave that are no UTF-8, kept by
        # surrogateescape) has no UTF-8: json's escapes for it (formats/jsonin.py reads
        # them back).
        import json

        return json.dumps(msgspec.to_builtins(obj), separators=(",", ":")).encode()
    return _C1.sub(_c1, data) if b"\xc2" in data else data


def dumps(snap: Snapshot, indent: int | None = None) -> str:
    data = encode(snap)
    if indent:
        try:
            data = msgspec.json.format(data, indent=indent)
        except msgspec.DecodeError:  # a lone surrogate's escape (see `_text`)
            import json

            return json.dumps(json.loads(data), indent=indent)
    return data.decode()


def to_plain(obj: Any) -> Any:
    """obj as plain JSON values (dicts, lists, primitives), as it is written; what JSON has
    no form for, as its str(). (A sandbox's tc actions' ages: `sandbox_to_dict`.)"""
    try:
        return _PLAIN.decode(_ANY.encode(obj))
    except UnicodeEncodeError:  # a lone surrogate (see `_text`)
        import json

        return json.loads(json.dumps(msgspec.to_builtins(obj, enc_hook=str)))


def sandbox_to_dict(sb: Sandbox, now: float) -> dict[str, Any]:
    """One sandbox as its JSON object; tc actions' ages at `now` (the snapshot's time)."""
    d: dict[str, Any] = to_plain(aged(sb, now))
    return d


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    d: dict[str, Any] = to_plain(_aged_snapshot(snap))
    return d
