"""The Snapshot as the versioned JSON contract (`kata_top/formats/schema/snapshot-1.json`)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from kata_top.model import Redirect, Sandbox, Snapshot

RENAMES = {"from_dev": "from", "to_dev": "to"}


_PRIMITIVE = (str, int, float, bool, type(None))
_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {}  # class -> (attribute, JSON key)


def _fields(cls: type) -> tuple[tuple[str, str], ...]:
    out = _FIELDS.get(cls)
    if out is None:
        renames = RENAMES if cls is Redirect else {}
        out = _FIELDS[cls] = tuple((f.name, renames.get(f.name, f.name))
                                   for f in dataclasses.fields(cls))
    return out


class Encoder:
    """Model objects to plain JSON values, remembering the last snapshot's.

    The model is immutable, and an idle sandbox is built from the very objects it was made
    of a cycle before (kata_top/engine.py): a stream (snapshot --watch, serve) converts only
    what changed. The plain values handed out are shared between calls: never mutate them.
    """

    def __init__(self, remember: bool = True) -> None:
        self._remember = remember
        self._prev: dict[int, tuple[Any, Any]] = {}  # id -> (the object, its plain value)
        self._now: dict[int, tuple[Any, Any]] = {}

    def plain(self, obj: Any) -> Any:
        if isinstance(obj, _PRIMITIVE):
            return obj
        cls = type(obj)
        if cls is tuple or dataclasses.is_dataclass(cls):
            if self._remember:
                hit = self._now.get(id(obj)) or self._prev.get(id(obj))
                if hit is not None and hit[0] is obj:
                    self._now[id(obj)] = hit
                    return hit[1]
            plain = self._convert(obj)
            if self._remember:
                self._now[id(obj)] = (obj, plain)  # holding obj keeps its id from reuse
            return plain
        return self._convert(obj)

    def _convert(self, obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            conv = self.plain
            return {key: conv(getattr(obj, name)) for name, key in _fields(type(obj))}
        if isinstance(obj, tuple | list):
            return [self.plain(x) for x in obj]
        if isinstance(obj, dict):
            return {str(k): self.plain(v) for k, v in obj.items()}
        return obj

    def snapshot(self, snap: Snapshot) -> dict[str, Any]:
        """The snapshot as the JSON contract's document; forgets what it no longer holds."""
        d: dict[str, Any] = self.plain(snap)
        self._prev, self._now = self._now, {}
        # schema first, for humans reading the stream
        return {"schema": d["schema"], **{k: v for k, v in d.items() if k != "schema"}}

    def dumps(self, snap: Snapshot, indent: int | None = None) -> str:
        return json.dumps(self.snapshot(snap), indent=indent,
                          separators=None if indent else (",", ":"))


def to_plain(obj: Any) -> Any:
    return Encoder(remember=False).plain(obj)


def sandbox_to_dict(sb: Sandbox) -> dict[str, Any]:
    d: dict[str, Any] = to_plain(sb)
    return d


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    return Encoder(remember=False).snapshot(snap)


def dumps(snap: Snapshot, indent: int | None = None) -> str:
    return Encoder(remember=False).dumps(snap, indent)
