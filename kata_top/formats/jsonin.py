"""Snapshots back from their JSON form: recordings (`--replay`) and `--remote`'s answers.

The input is untrusted (a file from another machine, cut off, edited; a server that is not
kata-top's): msgspec decodes it straight into the model, every value checked against the
model's type hints (a Literal's values, an int that is no bool, a number JSON can hold: no
NaN), its nesting bounded by the interpreter's recursion limit. Anything else raises
RecordingError, which names the path of a bad field. Keys the model does not know are
skipped. tc actions' ages (`installed_s`, `last_used_s`) become times again, counted back
from the snapshot's `taken_at` (kata_top/formats/jsonout.py writes them).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from msgspec.structs import replace

from kata_top.model import SCHEMA, Action, Filter, Sandbox, Snapshot


class RecordingError(ValueError):
    pass


class _Head(msgspec.Struct):
    """A document's `schema`, whatever else it holds."""

    schema: Any = None


_DECODER = msgspec.json.Decoder(Snapshot)
_HEAD = msgspec.json.Decoder(_Head)
_ANY = msgspec.json.Decoder()
_NOT_OURS = f"not a kata-top snapshot (schema {SCHEMA} expected)"
_SCHEMA_FIRST = re.compile(rb'\s*\{\s*"schema"\s*:\s*"' + re.escape(SCHEMA.encode()) + rb'"')


def decode(data: bytes | str) -> Snapshot:
    """The snapshot in one JSON document; RecordingError says what is wrong with it."""
    if isinstance(data, str):
        data = data.encode()
    try:
        snap = _DECODER.decode(data)
        # `schema` is required of a document, though the model has a default for it: kata-top
        # writes it first, anything else is asked again
        if not _SCHEMA_FIRST.match(data) and _HEAD.decode(data).schema != SCHEMA:
            raise RecordingError(_NOT_OURS)
    except msgspec.ValidationError as exc:
        raise RecordingError(_why(data, exc)) from None
    except msgspec.DecodeError as exc:
        # msgspec refuses the escape of a lone surrogate (\\udcff), which kata-top writes for
        # a string of bytes that were no UTF-8 (formats/jsonout.py): the standard reader
        # takes it
        doc = _json_loads(data)
        if doc is _NOT_JSON:
            raise RecordingError(f"not JSON: {exc}") from None
        return snapshot_from_dict(doc)
    except RecursionError:
        raise RecordingError("nested too deep") from None
    return _checked(snap)


_NOT_JSON: Any = object()


def _json_loads(data: bytes) -> Any:
    import json

    try:  # (NaN and Infinity are json's, not JSON)
        return json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError):  # (UnicodeDecodeError is a ValueError)
        return _NOT_JSON


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def whole(data: bytes) -> bool:
    """data is one JSON document (a line of a recording is not cut off)."""
    try:
        _ANY.decode(data)
    except msgspec.DecodeError:
        return _json_loads(data) is not _NOT_JSON
    except (msgspec.MsgspecError, RecursionError):
        return False
    return True


def _why(data: bytes, exc: msgspec.ValidationError) -> str:
    """What is wrong with a document that is JSON but not a snapshot the model can hold."""
    try:
        head = _HEAD.decode(data)
    except RecursionError:
        return "nested too deep"
    except msgspec.MsgspecError:  # not even an object
        return _NOT_OURS
    return f"snapshot: {exc}" if head.schema == SCHEMA else _NOT_OURS


def snapshot_from_dict(doc: Any) -> Snapshot:
    """The snapshot in a document already parsed (dicts, lists, primitives)."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise RecordingError(_NOT_OURS)
    try:
        snap = msgspec.convert(doc, Snapshot)
    except msgspec.ValidationError as exc:
        raise RecordingError(f"snapshot: {exc}") from None
    except RecursionError:
        raise RecordingError("nested too deep") from None
    return _checked(snap)


def _checked(snap: Snapshot) -> Snapshot:
    if snap.schema != SCHEMA:
        raise RecordingError(_NOT_OURS)
    now = snap.taken_at
    return replace(snap, sandboxes=tuple([_timed(sb, now) for sb in snap.sandboxes]))


def _time(age: float | None, now: float) -> float | None:
    return None if age is None else now - age


def _timed(sb: Sandbox, now: float) -> Sandbox:
    """The sandbox with its tc actions' ages (as read) made times."""
    if not any(a.installed_at is not None or a.last_used_at is not None
               for f in sb.filters for a in f.actions):
        return sb

    def action(a: Action) -> Action:
        return replace(a, installed_at=_time(a.installed_at, now),
                       last_used_at=_time(a.last_used_at, now))

    def filt(f: Filter) -> Filter:
        return replace(f, actions=tuple([action(a) for a in f.actions])) if f.actions else f

    return replace(sb, filters=tuple([filt(f) for f in sb.filters]))
