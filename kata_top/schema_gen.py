"""The JSON Schema of `kata-top/snapshot/1`, derived from the model's type hints.

`python -m kata_top.schema_gen > kata_top/schema/snapshot-1.json` regenerates the committed
file; a test fails when the model and the committed schema drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from kata_top import model
from kata_top.jsonout import RENAMES

DESCRIPTIONS = {
    "Snapshot": "One collection cycle of a node running Kata Containers.",
    "Sandbox": "A Kata sandbox: state files, processes, network namespace and VMM.",
    "Redirect": "One direction of the tcfilter model: in = eth0 → tap (into the VM).",
    "RateLimit": "A shaping qdisc; shape `kata-htb` is Kata's own (htb 1: default 2).",
    "Vmm": "The VMM's view; `source` says who answered, `reason` why QMP was not asked.",
    "Finding": "A diagnosed problem with a stable code, severity, evidence and fix.",
}


def _schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_schema(a, defs) for a in typing.get_args(tp)]}
    if tp is type(None):
        return {"type": "null"}
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin is tuple:
        return {"type": "array", "items": _schema(typing.get_args(tp)[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema(typing.get_args(tp)[1], defs)}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            hints = typing.get_type_hints(tp, vars(model))
            props = {}
            required = []
            for f in dataclasses.fields(tp):
                key = RENAMES.get(f.name, f.name) if tp is model.Redirect else f.name
                props[key] = _schema(hints[f.name], defs)
                required.append(key)
            defs[name] = {"type": "object", "properties": props, "required": required,
                          "additionalProperties": False}
            if name in DESCRIPTIONS:
                defs[name]["description"] = DESCRIPTIONS[name]
        return {"$ref": f"#/$defs/{name}"}
    simple = {int: "integer", float: "number", str: "string", bool: "boolean"}
    if tp in simple:
        return {"type": simple[tp]}
    if tp is Any:
        return {}
    raise TypeError(f"no schema for {tp!r}")


def snapshot_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    _schema(model.Snapshot, defs)
    root = dict(defs.pop("Snapshot"))
    root["properties"] = {**root["properties"], "schema": {"const": model.SCHEMA}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://kata-top.invalid/schema/snapshot-1.json",
            "title": model.SCHEMA, **root, "$defs": dict(sorted(defs.items()))}


if __name__ == "__main__":
    print(json.dumps(snapshot_schema(), indent=1))
