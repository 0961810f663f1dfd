"""The JSON encoder that remembers: the same document as a plain conversion, every time."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kata_top.formats import jsonout
from kata_top.formats.recording import load_recording
from kata_top.model import Action, Redirect, Snapshot
from tests.helpers import ROOT

RECORDING = os.path.join(ROOT, "tests", "data", "demo.ndjson")


def reference(obj: Any, now: float = 0.0) -> Any:
    """The obvious conversion, kept here as the specification the fast one must meet: tc
    actions' times are written as ages at the snapshot's time, in hundredths."""
    if isinstance(obj, Snapshot):
        now = obj.taken_at
    if isinstance(obj, Action):
        return {"installed_s" if f.name == "installed_at" else "last_used_s"
                if f.name == "last_used_at" else f.name:
                (None if getattr(obj, f.name) is None else
                 max(0.0, round(now - getattr(obj, f.name), 2)))
                if f.name.endswith("_at") else reference(getattr(obj, f.name), now)
                for f in dataclasses.fields(obj)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {({"from_dev": "from", "to_dev": "to"}.get(f.name, f.name)
                 if isinstance(obj, Redirect) else f.name):
                reference(getattr(obj, f.name), now) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [reference(x, now) for x in obj]
    if isinstance(obj, dict):
        return {str(k): reference(v, now) for k, v in obj.items()}
    return obj


def _stream() -> list[Snapshot]:
    """The demo recording, then steps that keep most objects and change a few."""
    snaps, _ = load_recording(RECORDING)
    last = snaps[-1]
    sb = last.sandboxes[0]
    changed = replace(sb, state="stale", links=sb.links[1:],
                      filters=tuple(replace(f, prio=f.prio + 1) for f in sb.filters),
                      pod=replace(sb.pod, name="wëb-\u2603\"quoted\"\n"),
                      rates={"vm.in_bps": 1e300 * 10, "link.eth0.rx_pps": 0.1 + 0.2})
    return [*snaps, replace(last, taken_at=last.taken_at + 1),  # every object kept
            replace(last, taken_at=last.taken_at + 2,
                    sandboxes=(changed, *last.sandboxes[1:])),
            replace(last, taken_at=last.taken_at + 3, sandboxes=last.sandboxes[1:]),
            snaps[0]]  # back to objects forgotten two steps ago


def test_remembering_encoder_writes_what_a_plain_conversion_writes() -> None:
    encoder = jsonout.Encoder()
    for snap in _stream():
        expected = {"schema": snap.schema, **{k: v for k, v in reference(snap).items()
                                             if k != "schema"}}
        assert encoder.snapshot(snap) == expected
        assert encoder.dumps(snap) == json.dumps(expected, separators=(",", ":"))
        assert encoder.dumps(snap).startswith("{\"schema\":")
        assert jsonout.snapshot_to_dict(snap) == expected


def test_remembering_encoder_reuses_what_did_not_change() -> None:
    snaps, _ = load_recording(RECORDING)
    encoder = jsonout.Encoder()
    encoder.dumps(snaps[0])
    first = [encoder.text(sb) for sb in snaps[0].sandboxes]
    again = encoder.dumps(replace(snaps[0], taken_at=snaps[0].taken_at + 1))
    assert json.loads(again)["taken_at"] == snaps[0].taken_at + 1
    # the same sandbox objects: the very same text, not an equal copy written again — for
    # every part; a sandbox with filters is put together anew, as its actions' ages move on
    links = [encoder.text(sb.links) for sb in snaps[0].sandboxes]
    encoder.dumps(replace(snaps[0], taken_at=snaps[0].taken_at + 2))
    assert all(a is encoder.text(sb.links) for a, sb in
               zip(links, snaps[0].sandboxes, strict=True))
    assert all(a is encoder.text(sb) for a, sb in zip(first, snaps[0].sandboxes, strict=True)
               if not sb.filters)
    # and a snapshot later, what the last one no longer held is written afresh
    encoder.dumps(replace(snaps[0], sandboxes=()))
    encoder.dumps(replace(snaps[0], sandboxes=()))
    assert encoder.text(snaps[0].sandboxes[0].links) is not links[0]


def test_the_same_action_is_older_at_a_later_snapshot() -> None:
    """Actions keep times; JSON shows ages at each snapshot's time, also when every object
    is the very same as a snapshot before."""
    snaps, _ = load_recording(RECORDING)
    snap = next(s for s in snaps if any(f.actions for sb in s.sandboxes for f in sb.filters))
    encoder = jsonout.Encoder()

    def ages(text: str) -> list[float]:
        return [a["installed_s"] for sb in json.loads(text)["sandboxes"]
                for f in sb["filters"] for a in f["actions"] if a["installed_s"] is not None]

    first = ages(encoder.dumps(snap))
    later = ages(encoder.dumps(replace(snap, taken_at=snap.taken_at + 30)))
    assert first and later == [round(a + 30, 2) for a in first]


def test_one_shot_writers_write_what_a_plain_conversion_writes() -> None:
    """`snapshot --json` (Encoder(remember=False)) writes with per-class writers unrolled
    from the model's annotations; the document is the reference's, byte for byte."""
    for snap in _stream():
        expected = {"schema": snap.schema, **{k: v for k, v in reference(snap).items()
                                             if k != "schema"}}
        assert jsonout.dumps(snap) == json.dumps(expected, separators=(",", ":"))


@functools.cache
def _with_actions() -> Snapshot:
    snaps, _ = load_recording(RECORDING)
    return next(s for s in snaps if any(f.actions for sb in s.sandboxes for f in sb.filters))


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.tuples(inner, inner), max_leaves=4)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_writer_never_trusts_an_annotation(data: st.DataObject) -> None:
    """A value of another type than its field's annotation (a bool for an int, a tuple for a
    string, NaN) is still written as the reference writes it: the writers check exact types
    and hand anything else to the general path."""
    snap = _with_actions()
    sb = next(sb for sb in snap.sandboxes if sb.filters and sb.filters[0].actions)
    f0 = sb.filters[0]
    targets: list[tuple[Any, str]] = [
        (sb, f.name) for f in dataclasses.fields(sb) if f.name not in ("filters",)]
    targets += [(sb.links[0], f.name) for f in dataclasses.fields(sb.links[0])]
    targets += [(f0.actions[0], f.name) for f in dataclasses.fields(f0.actions[0])
                if not f.name.endswith("_at")]
    obj, name = data.draw(st.sampled_from(targets))
    value = data.draw(_VALUES)
    changed = replace(obj, **{name: value})
    if obj is sb:
        new_sb = changed
    elif obj is sb.links[0]:
        new_sb = replace(sb, links=(changed, *sb.links[1:]))
    else:
        new_sb = replace(sb, filters=(replace(f0, actions=(changed, *f0.actions[1:])),
                                      *sb.filters[1:]))
    one = replace(snap, sandboxes=(new_sb,))
    expected = {"schema": one.schema, **{k: v for k, v in reference(one).items()
                                        if k != "schema"}}
    assert jsonout.dumps(one) == json.dumps(expected, separators=(",", ":"))
