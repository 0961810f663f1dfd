"""Snapshots back from their JSON form (recordings for `--replay`), driven by the type hints.

The input is untrusted (a file from another machine, cut off, edited): a value of the wrong
shape raises RecordingError with the path of the bad field.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import math
import types
import typing
from functools import cache
from typing import Any

from kata_top import model
from kata_top.formats.jsonout import AGES, json_key
from kata_top.model import SCHEMA, Snapshot

# The snapshot's time while its document is read: tc actions' ages count back from it.
_TAKEN_AT: contextvars.ContextVar[float] = contextvars.ContextVar("taken_at", default=0.0)


class RecordingError(ValueError):
    pass


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(model))


def _build(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _build(arg, value, path)
            except RecordingError as exc:
                errors.append(str(exc))
        raise RecordingError(errors[0] if errors else f"{path}: bad value")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise RecordingError(f"{path}: {value!r} not one of {typing.get_args(tp)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise RecordingError(f"{path}: expected a list")
        (inner, _ellipsis) = typing.get_args(tp)
        return tuple(_build(inner, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordingError(f"{path}: expected an object")
        kt, vt = typing.get_args(tp)
        return {_build(kt, str(k), f"{path} key") if kt is not str else str(k):
                _build(vt, v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecordingError(f"{path}: expected an object")
        hints = _hints(tp)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(tp):
            key = json_key(tp, f.name)
            if key in value:
                kwargs[f.name] = _build(hints[f.name], value[key], f"{path}.{key}")
                if tp is model.Action and f.name in AGES and kwargs[f.name] is not None:
                    kwargs[f.name] = _TAKEN_AT.get() - kwargs[f.name]  # an age: a time
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordingError(f"{path}: missing {key}")
        return tp(**kwargs)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and \
                math.isfinite(value):
            return float(value)
        raise RecordingError(f"{path}: expected a finite number")
    if tp in (int, str, bool):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise RecordingError(f"{path}: expected {tp.__name__}")
    raise RecordingError(f"{path}: unsupported type {tp}")


def snapshot_from_dict(doc: Any) -> Snapshot:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise RecordingError(f"not a kata-top snapshot (schema {SCHEMA} expected)")
    taken_at = doc.get("taken_at")
    token = _TAKEN_AT.set(float(taken_at) if isinstance(taken_at, int | float)
                          and not isinstance(taken_at, bool) else 0.0)
    try:
        snap: Snapshot = _build(Snapshot, doc, "snapshot")
    finally:
        _TAKEN_AT.reset(token)
    return snap


def load_recording(path: str) -> tuple[list[Snapshot], str | None]:
    """All snapshots of an NDJSON recording, and a warning if it ends early (cut off).

    Raises RecordingError when not even the first line is a snapshot.
    """
    snaps: list[Snapshot] = []
    warning: str | None = None
    from collectors.safeopen import open_regular

    try:
        fh = open_regular(path)
    except OSError as exc:
        raise RecordingError(f"cannot open {path}: {exc.strerror or exc}") from exc
    with fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                # Per line: bad UTF-8 or nesting deep enough to exhaust the stack is this
                # line's damage (UnicodeDecodeError is a ValueError), never a traceback.
                snaps.append(snapshot_from_dict(json.loads(raw.decode("utf-8"))))
            except (ValueError, RecursionError, RecordingError) as exc:
                if not snaps:
                    raise RecordingError(f"{path} is not a kata-top recording (line {n}: "
                                         f"{str(exc)[:120]}); make one with "
                                         "`kata-top snapshot --watch 1 > FILE`") from exc
                warning = f"recording ends early: line {n} is cut off or damaged; " \
                          f"{len(snaps)} snapshots loaded"
                break
    if not snaps:
        raise RecordingError(f"{path} is empty: no snapshots to replay")
    return snaps, warning
