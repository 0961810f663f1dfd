"""Snapshots read back from JSON (recordings, `--remote`): the compiled builders against the
reflective reading they replaced, on documents damaged every way hypothesis finds."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import types
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kata_top import model
from kata_top.formats import jsonin
from kata_top.formats.jsonout import AGES, json_key
from tests.helpers import ROOT

with open(os.path.join(ROOT, "tests", "data", "demo.ndjson"), "rb") as _fh:
    DOCS = [json.loads(line) for line in _fh if line.strip()]


def reference_build(tp: Any, value: Any, path: str, taken_at: float) -> Any:
    """The reading the compiled builders replaced (the type hints walked for every value),
    kept as their oracle. An integer too large for a float raised OverflowError here."""
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
                return reference_build(arg, value, path, taken_at)
            except jsonin.RecordingError as exc:
                errors.append(str(exc))
        raise jsonin.RecordingError(errors[0] if errors else f"{path}: bad value")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise jsonin.RecordingError(f"{path}: {value!r} not one of {typing.get_args(tp)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise jsonin.RecordingError(f"{path}: expected a list")
        (inner, _ellipsis) = typing.get_args(tp)
        return tuple(reference_build(inner, v, f"{path}[{i}]", taken_at)
                     for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise jsonin.RecordingError(f"{path}: expected an object")
        kt, vt = typing.get_args(tp)
        return {reference_build(kt, str(k), f"{path} key", taken_at) if kt is not str
                else str(k): reference_build(vt, v, f"{path}.{k}", taken_at)
                for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise jsonin.RecordingError(f"{path}: expected an object")
        hints = typing.get_type_hints(tp, vars(model))
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(tp):
            key = json_key(tp, f.name)
            if key in value:
                kwargs[f.name] = reference_build(hints[f.name], value[key], f"{path}.{key}",
                                                 taken_at)
                if tp is model.Action and f.name in AGES and kwargs[f.name] is not None:
                    kwargs[f.name] = taken_at - kwargs[f.name]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise jsonin.RecordingError(f"{path}: missing {key}")
        return tp(**kwargs)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and \
                math.isfinite(value):
            return float(value)
        raise jsonin.RecordingError(f"{path}: expected a finite number")
    if tp in (int, str, bool):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise jsonin.RecordingError(f"{path}: expected {tp.__name__}")
    raise jsonin.RecordingError(f"{path}: unsupported type {tp}")


def reference(doc: Any) -> model.Snapshot:
    if not isinstance(doc, dict) or doc.get("schema") != model.SCHEMA:
        raise jsonin.RecordingError(f"not a kata-top snapshot (schema {model.SCHEMA} "
                                    "expected)")
    taken_at = doc.get("taken_at")
    try:
        at = float(taken_at) if isinstance(taken_at, int | float) \
            and not isinstance(taken_at, bool) else 0.0
    except OverflowError:
        at = 0.0
    try:
        snap: model.Snapshot = reference_build(model.Snapshot, doc, "snapshot", at)
    except OverflowError:
        raise jsonin.RecordingError("expected a finite number") from None
    return snap


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
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
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


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(damaged_documents())
def test_compiled_builders_read_what_the_reflective_reading_read(doc: Any) -> None:
    """Same snapshot, or the same error naming the same field; where the old reading raised
    OverflowError (an integer of hundreds of digits), a RecordingError."""
    try:
        expected: Any = reference(doc)
    except jsonin.RecordingError as exc:
        expected = exc
    try:
        got: Any = jsonin.snapshot_from_dict(doc)
    except jsonin.RecordingError as exc:
        got = exc
    if isinstance(expected, Exception):
        assert isinstance(got, jsonin.RecordingError), got
        if str(expected) == "expected a finite number":  # the old OverflowError
            assert "expected a finite number" in str(got)
        else:
            assert str(got) == str(expected)
    else:
        assert got == expected


def test_every_demo_snapshot_reads_as_before() -> None:
    for doc in DOCS:
        assert jsonin.snapshot_from_dict(doc) == reference(doc)


@pytest.mark.parametrize("field", ["taken_at", "duration_ms"])
def test_an_integer_too_large_for_a_float_is_a_recording_error(field: str) -> None:
    doc = copy.deepcopy(DOCS[0])
    doc[field] = 10 ** 400
    with pytest.raises(jsonin.RecordingError, match=f"snapshot.{field}: expected a finite"):
        jsonin.snapshot_from_dict(doc)


def test_a_wrong_value_deep_inside_is_named_by_its_path() -> None:
    doc = copy.deepcopy(DOCS[0])
    doc["sandboxes"][0]["links"][1]["mtu"] = "big"
    with pytest.raises(jsonin.RecordingError,
                       match=r"^snapshot\.sandboxes\[0\]\.links\[1\]\.mtu: expected int$"):
        jsonin.snapshot_from_dict(doc)
