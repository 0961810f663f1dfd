"""The JSON Schema of `kata-top/snapshot/1`, derived from the model's type hints.

`python -m kata_top.formats.schema_gen > kata_top/formats/schema/snapshot-1.json` (and
`… schema_gen event-1.json > …/event-1.json`) regenerates the committed files; a test fails
when the model and a committed schema drift apart.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from typing import Any

from kata_top import model
from kata_top.formats.jsonout import json_key


def _description(tp: type) -> str | None:
    """The class docstring's first paragraph (a dataclass without one gets a generated
    signature as __doc__, which is not a description)."""
    doc = inspect.getdoc(tp) or ""
    if not doc or doc.startswith(f"{tp.__name__}("):
        return None
    return " ".join(doc.split("\n\n")[0].split())


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
                key = json_key(tp, f.name)
                props[key] = _schema(hints[f.name], defs)
                required.append(key)
            defs[name] = {"type": "object", "properties": props, "required": required,
                          "additionalProperties": False}
            description = _description(tp)
            if description:
                defs[name]["description"] = description
        return {"$ref": f"#/$defs/{name}"}
    simple = {int: "integer", float: "number", str: "string", bool: "boolean"}
    if tp in simple:
        return {"type": simple[tp]}
    if tp is Any:
        return {}
    raise TypeError(f"no schema for {tp!r}")


# Only in a document a running `kata-top serve` answered (kata_top/warm.py): not in the model,
# not required, absent from a document collected by the command itself.
SERVED = {
    "description": "Present when the document is a running kata-top serve's last collection "
                   "(the warm path of a one-shot command): where it came from and its age.",
    "type": "object",
    "properties": {"by": {"const": "kata-top serve"}, "socket": {"type": "string"},
                   "age_s": {"type": "number"}, "taken_at": {"type": "number"}},
    "required": ["by", "socket", "age_s", "taken_at"],
    "additionalProperties": False,
}


def snapshot_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    _schema(model.Snapshot, defs)
    root = dict(defs.pop("Snapshot"))
    root["properties"] = {**root["properties"], "schema": {"const": model.SCHEMA},
                          "served": SERVED}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://kata-top.invalid/schema/snapshot-1.json",
            "title": model.SCHEMA, **root, "$defs": dict(sorted(defs.items()))}


def event_schema() -> dict[str, Any]:
    """`kata-top/event/1`: one line of `kata-top events --json` and of /api/v1/events."""
    defs: dict[str, Any] = {}
    _schema(model.Event, defs)
    root = dict(defs.pop("Event"))
    root["properties"] = {"schema": {"const": "kata-top/event/1"}, **root["properties"]}
    root["required"] = ["schema", *root["required"]]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://kata-top.invalid/schema/event-1.json",
            "title": "kata-top/event/1", **root, "$defs": dict(sorted(defs.items()))}


SCHEMAS = {"snapshot-1.json": snapshot_schema, "event-1.json": event_schema}

if __name__ == "__main__":
    import sys

    name = sys.argv[1] if len(sys.argv) > 1 else "snapshot-1.json"
    print(json.dumps(SCHEMAS[name](), indent=1))
