"""The Snapshot as the versioned JSON contract (`kata_top/schema/snapshot-1.json`)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from kata_top.model import Redirect, Sandbox, Snapshot

RENAMES = {"from_dev": "from", "to_dev": "to"}


def _convert(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            key = RENAMES.get(f.name, f.name) if isinstance(obj, Redirect) else f.name
            out[key] = _convert(getattr(obj, f.name))
        return out
    if isinstance(obj, tuple | list):
        return [_convert(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _convert(v) for k, v in obj.items()}
    return obj


def sandbox_to_dict(sb: Sandbox) -> dict[str, Any]:
    d: dict[str, Any] = _convert(sb)
    return d


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    d: dict[str, Any] = _convert(snap)
    # schema first, for humans reading the stream
    return {"schema": d.pop("schema"), **d}


def dumps(snap: Snapshot, indent: int | None = None) -> str:
    return json.dumps(snapshot_to_dict(snap), indent=indent, separators=None if indent else
                      (",", ":"))
