"""Change detection as pure logic: diffs, the kernel's notifications, kata-top's own actions,
the audit log's tail, and `since` as untrusted input."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from kata_top.cli.events import _print as print_event
from kata_top.events.audit_tail import AuditTail
from kata_top.events.diff import diff_events
from kata_top.events.journal import JournalError, read_journal
from kata_top.events.query import event_matches, parse_since
from kata_top.formats.recording import load_recording
from kata_top.model import TcChange
from tests.helpers import RECORDING

SNAPS, _ = load_recording(RECORDING)
BASE = SNAPS[-1]
SB = next(s for s in BASE.sandboxes if s.pod.name == "web-0")


def _with(**changes: Any) -> Any:
    return replace(BASE, sandboxes=tuple(replace(s, **changes) if s.id == SB.id else s
                                         for s in BASE.sandboxes))


def test_a_redirect_lost_between_two_snapshots() -> None:
    out_gone = tuple(replace(r, present=False) if r.direction == "out" else r
                     for r in SB.redirects)
    (e,) = diff_events(BASE, _with(redirects=out_gone))
    assert (e.kind, e.severity, e.before, e.after, e.sandbox_id) == \
        ("redirect-removed", "critical", True, False, SB.id)
    assert e.by is None and e.source == "diff"


def test_a_finding_is_cleared_only_when_its_evidence_is_gone() -> None:
    """A sandbox whose namespace could not be read this time has no findings, but nothing
    was fixed: no `finding-cleared`; once read again without the fault, cleared."""
    from kata_top.model import Finding, SandboxError

    f = Finding("KT-S002", "critical", "redirect out is missing", {}, "fix", SB.id)
    broken = _with(findings=(f,))
    unread = _with(findings=(), links=(), redirects=(),
                   errors=(SandboxError("netns", "reading /run/netns/x: busy"),))
    assert not [e for e in diff_events(broken, unread) if e.kind == "finding-cleared"]
    fixed = _with(findings=())
    assert [e.kind for e in diff_events(broken, fixed) if e.kind == "finding-cleared"] == [
        "finding-cleared"]


def test_notifications_tell_what_the_diff_cannot_see() -> None:
    changes = {SB.id: [TcChange(True, "eth0", "ffff:", 7, "tap0_kata"),
                       TcChange(False, "eth0", "ffff:", 7, "tap0_kata")]}
    events = diff_events(BASE, BASE, changes)  # nothing differs between the two snapshots
    assert [(e.kind, e.source, e.after["prio"]) for e in events] == [
        ("filter-added", "netlink", 7), ("filter-removed", "netlink", 7)]


def test_kata_tops_own_action_is_attributed() -> None:
    limited = _with(rate_limits=(*SB.rate_limits, replace(
        BASE.sandboxes[0].rate_limits[0] if BASE.sandboxes[0].rate_limits else
        next(r for s in BASE.sandboxes for r in s.rate_limits), direction="in",
        rate_bps=5_000_000)))
    entry = {"sandbox": SB.id, "pod": "default/web-0", "operation": "ratelimit in 5Mbit",
             "ok": True, "changed": True, "result": "done"}
    events = {e.kind: e for e in diff_events(BASE, limited, actions=[entry])}
    assert events["action"].by == "kata-top" and events["action"].source == "audit"
    assert events["rate-limit-set"].by == "kata-top"
    hand = {e.kind: e for e in diff_events(BASE, limited)}
    assert hand["rate-limit-set"].by is None


def test_audit_tail_reads_only_what_is_new(tmp_path: Any) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text(json.dumps({"operation": "old"}) + "\n")
    tail = AuditTail(str(log))
    assert tail.new_entries() == []  # what was there before is history
    with open(log, "a") as fh:
        fh.write(json.dumps({"operation": "new"}) + "\n" + '{"operation": "half')
    assert [e["operation"] for e in tail.new_entries()] == ["new"]
    with open(log, "a") as fh:
        fh.write('"}\n')
    assert [e["operation"] for e in tail.new_entries()] == ["half"]
    os.replace(log, tmp_path / "audit.jsonl.1")  # rotated: the new log from its start
    log.write_text(json.dumps({"operation": "after-rotation"}) + "\n")
    assert [e["operation"] for e in tail.new_entries()] == ["after-rotation"]
    fresh = AuditTail(str(tmp_path / "not-yet.jsonl"))
    (tmp_path / "not-yet.jsonl").write_text(json.dumps({"operation": "first"}) + "\n")
    assert [e["operation"] for e in fresh.new_entries()] == ["first"]


@given(st.text(max_size=50))
def test_since_parses_or_says_why(text: str) -> None:
    try:
        when = parse_since(text, 1_000_000.0)
    except ValueError as exc:
        assert "--since" in str(exc)
    else:
        assert isinstance(when, float)


ANY_JSON = st.none() | st.booleans() | st.integers() | st.integers(min_value=10 ** 17) \
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6) \
    | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=3), st.none())


@st.composite
def journal_lines(draw: st.DrawFn) -> bytes:
    """A journal line as a full disk or a hand may leave it."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=30))
    doc: dict[str, Any] = {"schema": draw(st.sampled_from(["kata-top/event/1", "other"]))}
    for key in ("at", "kind", "severity", "summary", "sandbox_id", "pod", "by", "before"):
        if draw(st.booleans()):
            doc[key] = draw(ANY_JSON | st.just(1_795_000_000.5))
    return json.dumps(doc).encode()  # (json.dumps writes nan and inf as NaN, Infinity)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(journal_lines(), max_size=6))
def test_any_journal_prints_or_skips_each_line(tmp_path: Any, lines: list[bytes]) -> None:
    """`kata-top events` over a damaged journal: a line is an event it can filter and print,
    or skipped; never a traceback."""
    path = os.path.join(str(tmp_path), "events.ndjson")
    with open(path, "wb") as fh:
        fh.write(b"\n".join(lines) + b"\n")
    out = io.StringIO()
    try:
        docs = read_journal(path)
    except JournalError as exc:  # nothing there is even JSON: the CLI says so in one line
        assert "not a kata-top journal" in str(exc)
        return
    with contextlib.redirect_stdout(out):
        for doc in docs:
            assert isinstance(doc["at"], int | float) and math.isfinite(doc["at"])
            for since, sandbox in ((None, None), (1_000.0, "web-0"), (1e300, "ab")):
                event_matches(doc, since, sandbox)
            print_event(doc, as_json=False)
            print_event(doc, as_json=True)


def test_since_forms() -> None:
    assert parse_since("10m", 1000.0) == 400.0
    assert parse_since("90", 1000.0) == 910.0
    assert parse_since("2026-11-24T10:00:00+00:00", 0) == 1795514400.0


def test_traffic_history_covers_fifteen_minutes_in_bounded_points() -> None:
    from kata_top.history import TrafficHistory, marks, resample

    hist = TrafficHistory()
    for t in range(20 * 60):  # twenty minutes at one snapshot a second
        hist.add(float(t), [("a", float(t), 1.0), ("b", 2.0, 2.0)])
    pts = hist.points("a")
    assert len(pts) <= 60 + 1 + 61 and len(hist) <= 2 * (61 + 60)  # buckets, pending, raw
    assert pts[-1][0] == 1199.0 and pts[0][0] <= 1199.0 - 14 * 60  # 15 minutes back
    cols_in, _ = resample(pts, 45, 1199.0)
    assert len(cols_in) == 45 and None not in cols_in
    assert cols_in == sorted(c for c in cols_in if c is not None)  # a rising ramp stays rising
    early, _ = resample(pts[-5:], 45, 1199.0)
    assert early[0] is None and early[-1] is not None  # before the first sample: no data
    assert marks([1199.0 - 450, 5.0], 45, 1199.0).count("▲") == 1  # 5 s is outside
    hist.add(1200.0, [("b", 0.0, 0.0)])
    assert hist.points("a") == []  # a sandbox that is gone is forgotten


def test_committed_schemas_match_the_model_and_event_lines_follow_theirs() -> None:
    import jsonschema

    from kata_top.events.journal import event_line
    from kata_top.formats.schema_gen import SCHEMAS
    from kata_top.model import Event
    from tests.helpers import ROOT

    for name, make in SCHEMAS.items():
        with open(os.path.join(ROOT, "kata_top", "formats", "schema", name)) as fh:
            assert json.load(fh) == make(), f"regenerate {name}: python -m " \
                "kata_top.formats.schema_gen NAME > kata_top/formats/schema/NAME"
    e = Event(at=1.5, kind="mtu-changed", severity="warning", summary="x", sandbox_id="a",
              before=1500, after=1400)
    jsonschema.validate(json.loads(event_line(e)), SCHEMAS["event-1.json"]())


def test_drops_that_flap_are_one_start_and_one_stop() -> None:
    from kata_top.events.drops import DropTracker

    d = DropTracker()
    key = ("a", "tap0_kata")
    assert d.update(key, 0.0, 0.0) is None  # first look: still
    turns = [d.update(key, float(t), 1.0 if t % 15 == 0 else 0.0) for t in range(1, 121)]
    assert turns.count("started") == 1 and turns.count("stopped") == 0  # a drop every 15 s
    turns = [d.update(key, float(t), 0.0) for t in range(121, 200)]
    assert turns.count("stopped") == 1  # after 30 s of quiet, once
