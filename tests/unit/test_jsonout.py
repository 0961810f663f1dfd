"""The snapshot's JSON: the document the previous writer wrote, byte for byte (but for
non-ASCII, now UTF-8), and what the contract says of tc actions' ages."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from msgspec.structs import fields, replace

from kata_top.formats import jsonin, jsonout
from kata_top.formats.recording import load_recording
from kata_top.model import Action, Redirect, Snapshot
from tests.helpers import ROOT

RECORDING = os.path.join(ROOT, "tests", "data", "demo.ndjson")
# The demo recording read and written again by kata-top 0.2.0 (commit b6150cc), whose
# writer escaped non-ASCII, and the freshness maps added since (links_read_at, tc_read_at:
# empty in a recording read back): what every snapshot written now must still be.
GOLDEN = os.path.join(ROOT, "tests", "data", "demo.golden.ndjson")


def reference(obj: Any, now: float = 0.0) -> Any:
    """The obvious conversion, kept here as the specification: tc actions' times are
    written as ages at the snapshot's time, in hundredths."""
    if isinstance(obj, Snapshot):
        now = obj.taken_at
    if isinstance(obj, Action):
        return {f.encode_name: (None if getattr(obj, f.name) is None else
                                max(0.0, round(now - getattr(obj, f.name), 2)))
                if f.name.endswith("_at") else reference(getattr(obj, f.name), now)
                for f in fields(obj)}
    if hasattr(type(obj), "__struct_fields__"):
        return {f.encode_name: reference(getattr(obj, f.name), now) for f in fields(obj)}
    if isinstance(obj, tuple | list):
        return [reference(x, now) for x in obj]
    if isinstance(obj, dict):
        return {str(k): reference(v, now) for k, v in obj.items()}
    return obj


def _escaped(text: str) -> str:
    """text with non-ASCII as json's ensure_ascii writes it (\\uXXXX, surrogate pairs)."""
    def one(m: re.Match[str]) -> str:
        return json.dumps(m.group(0))[1:-1]
    return re.sub(r"[^\x00-\x7f]", one, text)


def test_the_document_is_the_one_written_before() -> None:
    """Read from the demo recording and written again: the previous writer's output, byte
    for byte once non-ASCII is escaped as it escaped it; indented, json's indent=2."""
    snaps, warning = load_recording(RECORDING)
    with open(GOLDEN, encoding="ascii") as fh:
        golden = fh.read().splitlines()
    assert warning is None and len(snaps) == len(golden) == 3
    for snap, old in zip(snaps, golden, strict=True):
        new = jsonout.dumps(snap)
        assert _escaped(new) == old
        assert _escaped(jsonout.dumps(snap, indent=2)) == json.dumps(json.loads(old), indent=2)
        assert jsonout.encode(snap) == new.encode()
        assert jsonout.snapshot_to_dict(snap) == json.loads(old)
    assert "\\u2192" in golden[0] and "→" in jsonout.dumps(snaps[0])


def test_non_ascii_is_written_as_utf8_and_reads_back() -> None:
    snap = _stream()[-3]
    data = jsonout.encode(snap)
    assert "wëb-\u2603".encode() in data and b"\\u" not in data
    assert jsonin.decode(data) == jsonin.decode(_escaped(data.decode()).encode())


def _stream() -> list[Snapshot]:
    """The demo recording, then steps that keep most objects and change a few."""
    snaps, _ = load_recording(RECORDING)
    last = snaps[-1]
    sb = last.sandboxes[0]
    changed = replace(sb, state="stale", links=sb.links[1:],
                      filters=tuple(replace(f, prio=f.prio + 1) for f in sb.filters),
                      pod=replace(sb.pod, name="wëb-\u2603\"quoted\"\n"),
                      rates={"vm.in_bps": 123456.789, "link.eth0.rx_pps": 0.1 + 0.2})
    return [*snaps, replace(last, taken_at=last.taken_at + 1),  # every object kept
            replace(last, taken_at=last.taken_at + 2,
                    sandboxes=(changed, *last.sandboxes[1:])),
            replace(last, taken_at=last.taken_at + 3, sandboxes=last.sandboxes[1:]),
            snaps[0]]


def test_the_writer_writes_what_a_plain_conversion_writes() -> None:
    for snap in _stream():
        expected = reference(snap)
        assert next(iter(expected)) == "schema"  # first, for humans reading the stream
        assert jsonout.dumps(snap) == json.dumps(expected, separators=(",", ":"),
                                                 ensure_ascii=False)
        assert jsonout.snapshot_to_dict(snap) == expected
    redirect = Redirect("in", "eth0", "tap0_kata", True)
    assert list(jsonout.to_plain(redirect))[:4] == ["direction", "from", "to", "present"]


def test_the_same_action_is_older_at_a_later_snapshot() -> None:
    """Actions keep times; JSON shows ages at each snapshot's time, also when every object
    is the very same as a snapshot before."""
    snaps, _ = load_recording(RECORDING)
    snap = next(s for s in snaps if any(f.actions for sb in s.sandboxes for f in sb.filters))

    def ages(text: str) -> list[float]:
        return [a["installed_s"] for sb in json.loads(text)["sandboxes"]
                for f in sb["filters"] for a in f["actions"] if a["installed_s"] is not None]

    first = ages(jsonout.dumps(snap))
    later = ages(jsonout.dumps(replace(snap, taken_at=snap.taken_at + 30)))
    assert first and later == [round(a + 30, 2) for a in first]


def test_bytes_that_were_no_utf8_and_c1_controls_are_escaped_and_read_back() -> None:
    """A pod name holding a lone surrogate (bytes that were no UTF-8, kept by
    surrogateescape) is written with json's escape, as before, and read back; a C1 control
    (U+009B is CSI to a terminal) is escaped, never written raw."""
    snaps, _ = load_recording(RECORDING)
    sb = snaps[0].sandboxes[0]
    for name in ("web\udcff-0", "web\x9b2J-0\x85"):
        snap = replace(snaps[0], sandboxes=(replace(sb, pod=replace(sb.pod, name=name)),))
        data = jsonout.encode(snap)
        assert b"\xc2" not in data and b"\x1b" not in data
        assert json.dumps(name)[1:-1].encode() in data  # json's own escapes
        assert jsonin.decode(data) == jsonin.decode(jsonout.encode(jsonin.decode(data)))
        assert jsonin.decode(data).sandboxes[0].pod.name == name
        assert jsonout.to_plain(snap.sandboxes[0].pod)["name"] == name
        assert jsonout.sandbox_to_dict(snap.sandboxes[0], snap.taken_at)["pod"]["name"] == name
        indented = jsonout.dumps(snap, indent=2)
        assert json.loads(indented)["sandboxes"][0]["pod"]["name"] == name
