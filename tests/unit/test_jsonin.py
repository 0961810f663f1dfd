"""Snapshots read back from JSON (recordings, `--remote`): untrusted input, damaged every way
hypothesis finds, is a snapshot or a RecordingError, never anything else."""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kata_top.formats import jsonin, jsonout
from kata_top.model import SCHEMA, Snapshot
from tests.helpers import ROOT

with open(os.path.join(ROOT, "tests", "data", "demo.ndjson"), "rb") as _fh:
    RAW = [line for line in _fh if line.strip()]
DOCS = [json.loads(line) for line in RAW]


def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document: object keys and list indexes."""
    out = [at]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*at, i))
    return out


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10 ** 308)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


@st.composite
def damaged_documents(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(DOCS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]  # a field missing
        else:
            parent[path[-1]] = draw(JSON_VALUES)  # a field of any JSON shape
    return doc


def _read_both(doc: Any) -> Snapshot | jsonin.RecordingError:
    """The document read as bytes and as parsed values: the same snapshot or both refused."""
    try:
        got: Snapshot | jsonin.RecordingError = jsonin.decode(json.dumps(doc).encode())
    except jsonin.RecordingError as exc:
        got = exc
    try:
        parsed: Snapshot | jsonin.RecordingError = jsonin.snapshot_from_dict(doc)
    except jsonin.RecordingError as exc:
        parsed = exc
    assert type(got) is type(parsed), (got, parsed)
    if isinstance(got, Snapshot):
        assert got == parsed
    return got


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(damaged_documents())
def test_a_damaged_document_is_a_snapshot_or_a_recording_error(doc: Any) -> None:
    got = _read_both(doc)
    if isinstance(got, Snapshot):
        # what was read writes and reads back to itself: the model holds nothing its
        # contract does not allow
        assert jsonin.decode(jsonout.encode(got)) == got
    else:
        assert str(got)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(RAW), st.data())
def test_any_bytes_are_a_snapshot_or_a_recording_error(line: bytes, data: st.DataObject) -> None:
    """Cut off, a byte changed, bad UTF-8, nothing at all: RecordingError, never another."""
    cut = data.draw(st.integers(0, len(line)))
    at = data.draw(st.integers(0, max(0, cut - 1)))
    raw = bytearray(line[:cut])
    if raw:
        raw[at] = data.draw(st.integers(0, 255))
    try:
        jsonin.decode(bytes(raw))
    except jsonin.RecordingError as exc:
        assert str(exc)


def test_every_demo_snapshot_reads_back_to_what_it_wrote() -> None:
    with open(os.path.join(ROOT, "tests", "data", "demo.golden.ndjson"), "rb") as fh:
        written = [json.loads(line) for line in fh]
    for raw, doc, again in zip(RAW, DOCS, written, strict=True):
        snap = jsonin.decode(raw)
        assert snap == jsonin.snapshot_from_dict(doc)
        assert jsonout.snapshot_to_dict(snap) == again


def test_ages_are_read_back_as_times() -> None:
    snap = jsonin.decode(RAW[0])
    sb, doc = next((sb, d) for sb, d in zip(snap.sandboxes, DOCS[0]["sandboxes"], strict=True)
                   if any(f.actions for f in sb.filters))
    action = sb.filters[0].actions[0]
    age = doc["filters"][0]["actions"][0]["installed_s"]
    assert action.installed_at == pytest.approx(snap.taken_at - age)


@pytest.mark.parametrize("field", ["taken_at", "duration_ms"])
def test_an_integer_too_large_for_a_float_is_a_recording_error(field: str) -> None:
    doc = copy.deepcopy(DOCS[0])
    doc[field] = 10 ** 400
    with pytest.raises(jsonin.RecordingError, match=f"out of range - at `\\$.{field}`"):
        jsonin.decode(json.dumps(doc))


def test_a_wrong_value_deep_inside_is_named_by_its_path() -> None:
    doc = copy.deepcopy(DOCS[0])
    doc["sandboxes"][0]["links"][1]["mtu"] = "big"
    with pytest.raises(jsonin.RecordingError, match=r"^snapshot: Expected `int`, got `str` - "
                       r"at `\$\.sandboxes\[0\]\.links\[1\]\.mtu`$"):
        jsonin.decode(json.dumps(doc))
    doc["sandboxes"][0]["links"][1]["mtu"] = True  # a bool is no int
    with pytest.raises(jsonin.RecordingError, match="got `bool`"):
        jsonin.decode(json.dumps(doc))


def test_what_is_not_a_snapshot_says_so() -> None:
    for doc in ({"schema": "kata-top/check/1", "taken_at": 1.0, "findings": []},
                {**DOCS[0], "schema": "kata-top/snapshot/2"}, [DOCS[0]], "snapshot", None):
        with pytest.raises(jsonin.RecordingError,
                           match=f"^not a kata-top snapshot \\(schema {SCHEMA} expected\\)$"):
            jsonin.decode(json.dumps(doc))
        with pytest.raises(jsonin.RecordingError, match="not a kata-top snapshot"):
            jsonin.snapshot_from_dict(doc)
    with pytest.raises(jsonin.RecordingError, match="not JSON"):
        jsonin.decode(b'{"schema": NaN}')
    unnamed = {k: v for k, v in DOCS[0].items() if k != "schema"}
    with pytest.raises(jsonin.RecordingError, match="not a kata-top snapshot"):
        jsonin.decode(json.dumps(unnamed))  # the model's default is no answer
    assert jsonin.decode(json.dumps({**unnamed, "schema": SCHEMA})).schema == SCHEMA  # last


def test_nesting_is_bounded() -> None:
    """A value nested past the recursion limit (in a field that holds any JSON, a finding's
    evidence) is refused as damage, not a RecursionError."""
    doc = copy.deepcopy(DOCS[0])
    sb = next(sb for sb in doc["sandboxes"] if sb["findings"])
    sb["findings"][0]["evidence"] = {"x": "NEST"}
    deep = json.dumps(doc).replace('"NEST"', "[" * 100_000 + "]" * 100_000)
    with pytest.raises(jsonin.RecordingError, match="nested too deep"):
        jsonin.decode(deep)
    sb["findings"][0]["evidence"] = {"x": [[[[1]]]]}  # nested as evidence is: read
    assert jsonin.decode(json.dumps(doc)).sandboxes


def test_unknown_keys_are_skipped() -> None:
    """A newer kata-top's extra keys do not stop a replay (the schema forbids them in what
    kata-top writes, tests/unit/test_schema.py)."""
    doc = copy.deepcopy(DOCS[0])
    doc["new_field"] = {"x": 1}
    doc["sandboxes"][0]["new_field"] = 1
    assert jsonin.decode(json.dumps(doc)) == jsonin.decode(RAW[0])
