"""The `kata-top/snapshot/1` contract: the committed schema is the model's, it names its
version, requires every key and allows no other, and what kata-top writes follows it."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import jsonschema
import pytest

from kata_top.formats import jsonout, schema_gen
from kata_top.formats.recording import load_recording
from kata_top.model import SCHEMA, Snapshot
from tests.helpers import ROOT

SCHEMA_DIR = os.path.join(ROOT, "kata_top", "formats", "schema")


def _committed(name: str) -> dict[str, Any]:
    with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as fh:
        out: dict[str, Any] = json.load(fh)
    return out


@pytest.mark.parametrize("name", sorted(schema_gen.SCHEMAS))
def test_the_committed_file_is_the_generated_one(name: str) -> None:
    with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as fh:
        text = fh.read()
    assert text == json.dumps(schema_gen.SCHEMAS[name](), indent=1) + "\n", (
        f"regenerate: python -m kata_top.formats.schema_gen {name} > "
        f"kata_top/formats/schema/{name}")


def _objects(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("(root)", schema), *schema["$defs"].items()]


def test_version_required_keys_and_nothing_else() -> None:
    schema = _committed("snapshot-1.json")
    assert schema["title"] == SCHEMA == "kata-top/snapshot/1"
    assert schema["properties"]["schema"] == {"const": SCHEMA}
    assert next(iter(schema["properties"])) == "schema"
    assert schema["required"][:4] == ["schema", "taken_at", "host", "sandboxes"]
    for name, obj in _objects(schema):
        assert obj["type"] == "object", name
        assert obj["additionalProperties"] is False, name
        # every key, defaults too; but `served`, only in a running serve's answer (warm.py)
        optional = {"served"} if name == "(root)" else set()
        assert obj["required"] == [k for k in obj["properties"] if k not in optional], name
    # the model's every class is described, with JSON's names for renamed fields
    assert {"Sandbox", "Link", "Action", "Redirect", "Finding", "Event"} <= set(schema["$defs"])
    assert {"installed_s", "last_used_s"} <= set(schema["$defs"]["Action"]["properties"])
    assert {"from", "to"} <= set(schema["$defs"]["Redirect"]["properties"])


def _demo() -> list[Snapshot]:
    snaps, _ = load_recording(os.path.join(ROOT, "tests", "data", "demo.ndjson"))
    return snaps


def test_what_kata_top_writes_follows_the_schema() -> None:
    schema = _committed("snapshot-1.json")
    for snap in _demo():
        jsonschema.validate(json.loads(jsonout.encode(snap)), schema)
    empty = Snapshot(taken_at=1.0, host=_demo()[0].host, sandboxes=())
    jsonschema.validate(jsonout.snapshot_to_dict(empty), schema)


@pytest.mark.parametrize("damage", ["extra-root", "extra-deep", "missing", "version"])
def test_the_schema_refuses_what_the_contract_does_not_allow(damage: str) -> None:
    schema = _committed("snapshot-1.json")
    doc = copy.deepcopy(jsonout.snapshot_to_dict(_demo()[0]))
    if damage == "extra-root":
        doc["extra"] = 1
    elif damage == "extra-deep":
        doc["sandboxes"][0]["links"][0]["stats"]["extra"] = 1
    elif damage == "missing":
        del doc["sandboxes"][0]["rates"]  # a field with a default is still written
    else:
        doc["schema"] = "kata-top/snapshot/2"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
