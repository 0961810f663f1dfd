"""The JSON encoder that remembers: the same document as a plain conversion, every time."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import replace
from typing import Any

from kata_top.formats import jsonout
from kata_top.formats.jsonin import load_recording
from kata_top.model import Redirect, Snapshot
from tests.helpers import ROOT

RECORDING = os.path.join(ROOT, "tests", "data", "demo.ndjson")


def reference(obj: Any) -> Any:
    """The obvious conversion, kept here as the specification the fast one must meet."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {(jsonout.RENAMES.get(f.name, f.name) if isinstance(obj, Redirect) else f.name):
                reference(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [reference(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): reference(v) for k, v in obj.items()}
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
    # the same sandbox objects: the very same text, not an equal copy written again
    assert all(a is encoder.text(sb) for a, sb in zip(first, snaps[0].sandboxes, strict=True))
    # and a snapshot later, what the last one no longer held is written afresh
    encoder.dumps(replace(snaps[0], sandboxes=()))
    encoder.dumps(replace(snaps[0], sandboxes=()))
    assert encoder.text(snaps[0].sandboxes[0]) is not first[0]
