"""The JSON Schema of `kata-top/snapshot/1` and `kata-top/event/1`: msgspec's, from the model.

`python -m kata_top.formats.schema_gen > kata_top/formats/schema/snapshot-1.json` (and
`… schema_gen event-1.json > …/event-1.json`) regenerates the committed files; a test fails
when the model and a committed schema drift apart.

What the contract adds to msgspec's schema: every key is required (the writer writes every
field, defaults too) and no other key is allowed; a class's description is its docstring's
first paragraph.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from kata_top import model

_DRAFT = "https://json-schema.org/draft/2020-12/schema"


def _strict(d: dict[str, Any]) -> dict[str, Any]:
    d.pop("title", None)
    props = d["properties"]
    out: dict[str, Any] = {"type": "object", "properties": props, "required": list(props),
                           "additionalProperties": False}
    description = d.get("description")
    if description:
        out["description"] = " ".join(description.split("\n\n")[0].split())
    return out


def _document(cls: type, title: str, schema_const: str) -> dict[str, Any]:
    (_ref,), components = msgspec.json.schema_components([cls], ref_template="#/$defs/{name}")
    defs = {name: _strict(d) for name, d in components.items()}
    root = defs.pop(cls.__name__)
    props = root["properties"]
    props.pop("schema", None)
    root["properties"] = {"schema": {"const": schema_const}, **props}
    root["required"] = ["schema", *props]
    doc = {"$schema": _DRAFT, "$id": f"https://kata-top.invalid/schema/{title}",
           "title": schema_const, **root, "$defs": dict(sorted(defs.items()))}
    out: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(doc))  # defaults as JSON
    return out


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
    doc = _document(model.Snapshot, "snapshot-1.json", model.SCHEMA)
    doc["properties"]["served"] = SERVED
    return doc


def event_schema() -> dict[str, Any]:
    """`kata-top/event/1`: one line of `kata-top events --json` and of /api/v1/events."""
    return _document(model.Event, "event-1.json", "kata-top/event/1")


SCHEMAS = {"snapshot-1.json": snapshot_schema, "event-1.json": event_schema}

if __name__ == "__main__":
    import sys

    name = sys.argv[1] if len(sys.argv) > 1 else "snapshot-1.json"
    print(json.dumps(SCHEMAS[name](), indent=1))
