"""The Snapshot as the versioned JSON contract (`kata_top/formats/schema/snapshot-1.json`)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from kata_top.model import Redirect, Sandbox, Snapshot

RENAMES = {"from_dev": "from", "to_dev": "to"}


def to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            key = RENAMES.get(f.name, f.name) if isinstance(obj, Redirect) else f.name
            out[key] = to_plain(getattr(obj, f.name))
        return out
    if isinstance(obj, tuple | list):
        return [to_plain(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    return obj


def sandbox_to_dict(sb: Sandbox) -> dict[str, Any]:
    d: dict[str, Any] = to_plain(sb)
    return d


def snapshot_to_dict(snap: Snapshot) -> dict[str, Any]:
    d: dict[str, Any] = to_plain(snap)
    # schema first, for humans reading the stream
    return {"schema": d.pop("schema"), **d}


def dumps(snap: Snapshot, indent: int | None = None) -> str:
    return json.dumps(snapshot_to_dict(snap), indent=indent, separators=None if indent else
                      (",", ":"))
