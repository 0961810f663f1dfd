"""The JSON Schema of `kata-top/drops/1`, derived from kata_top/drops/model.py's type hints.

`python -m kata_top.drops.schema > kata_top/formats/schema/drops-1.json` regenerates the
committed file; tests/unit/test_drops.py fails when the two drift apart.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import types
import typing
from typing import Any

from kata_top.drops import model


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
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if tp.__name__ not in defs:
            hints = typing.get_type_hints(tp, vars(model))
            names = [f.name for f in dataclasses.fields(tp)]
            defs[tp.__name__] = {
                "type": "object", "description": " ".join(
                    (inspect.getdoc(tp) or "").split("\n\n")[0].split()),
                "properties": {n: _schema(hints[n], defs) for n in names},
                "required": names, "additionalProperties": False}
        return {"$ref": f"#/$defs/{tp.__name__}"}
    simple = {int: "integer", float: "number", str: "string", bool: "boolean"}
    return {"type": simple[tp]}


def drops_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    _schema(model.DropReport, defs)
    root = dict(defs.pop("DropReport"))
    root["properties"] = {**root["properties"], "schema": {"const": model.SCHEMA}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://kata-top.invalid/schema/drops-1.json",
            "title": model.SCHEMA, **root, "$defs": dict(sorted(defs.items()))}


if __name__ == "__main__":
    print(json.dumps(drops_schema(), indent=1))
