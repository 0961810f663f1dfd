"""Drop traces without the kernel: the reason table, bpftrace's output (untrusted),
attribution to sandboxes and hops, the text and the `kata-top/drops/1` schema."""

from __future__ import annotations

import json
import os

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kata_top.collectors.droptrace import script
from kata_top.drops.attribute import build_report
from kata_top.drops.model import DropCount, RawTrace
from kata_top.drops.parse import parse_output, reason_name, reason_names
from kata_top.drops.schema import drops_schema
from kata_top.formats.dropsout import render_text, to_plain
from kata_top.formats.recording import load_recording
from tests.helpers import RECORDING, ROOT

FORMAT = os.path.join(ROOT, "tests", "data", "kfree_skb-format-6.18.txt")
SNAP = load_recording(RECORDING)[0][0]


def _names() -> dict[int, str]:
    with open(FORMAT) as fh:
        return reason_names(fh.read())


def test_reasons_come_from_the_kernels_format() -> None:
    names = _names()
    assert names[80] == "FULL_RING" and names[73] == "TC_INGRESS"
    assert names[64] == "QDISC_DROP" and names[93] == "PKT_TOO_BIG"
    assert len(names) > 120
    assert reason_names("print fmt: \"%d\", REC->x") == {}


def test_an_unknown_or_subsystem_reason_keeps_its_number() -> None:
    assert reason_name(999, {}) == "REASON_999"
    assert reason_name((3 << 16) | 5, {}) == "SUBSYS_3_5"


def test_bpftrace_json_is_read() -> None:
    out = "\n".join([
        '{"type": "attached_probes", "data": {"probes": 2}}',
        '{"type": "map", "data": {"@drops": {"4026532385,80,tun_net_xmit,tap0_kata": 812,'
        ' "4026532385,73,__netif_receive_skb_core,eth0,x": 3}}}',
        '{"type": "map", "data": {"@nodev": {"105,sk_stream_kill_queues": 48}}}',
        '{"type": "printf", "data": "window_ns=10250000000\\n"}',
        'not json', '{"type": "map", "data": {"@drops": {"x,1,f,d": 1, "1,2,f,d": -1}}}'])
    got = parse_output(out, _names())
    assert got.attached
    assert DropCount(4026532385, "tap0_kata", "FULL_RING", 80, "tun_net_xmit", 812) in got.counts
    # a device name may hold a comma: it goes last and keeps it
    assert DropCount(4026532385, "eth0,x", "TC_INGRESS", 73, "__netif_receive_skb_core",
                     3) in got.counts
    assert DropCount(0, None, "QUEUE_PURGE", 105, "sk_stream_kill_queues", 48) in got.counts
    assert got.skipped == 3
    assert got.window_ns == 10_250_000_000  # what the counts cover, by the kernel's clock


@given(st.lists(st.one_of(st.text(max_size=200), st.builds(
    lambda k, v, m: json.dumps({"type": "map", "data": {m: {k: v}}}),
    st.text(max_size=60), st.one_of(st.integers(), st.text(), st.none(), st.floats()),
    st.sampled_from(["@drops", "@nodev", "@x"]))), max_size=20))
def test_any_output_parses_or_is_skipped(lines: list[str]) -> None:
    got = parse_output(lines, {80: "FULL_RING"})
    for c in got.counts:
        assert c.count >= 0 and c.function and c.reason


def test_the_script_keys_put_the_device_last() -> None:
    s = script(10)
    assert "ksym(args->location), $dev->name]" in s and "interval:s:10 { exit(); }" in s
    assert 'printf("window_ns=%lld' in s


def _sb(pod: str):  # type: ignore[no-untyped-def]
    return next(s for s in SNAP.sandboxes if s.pod.name == pod)


def _raw(*counts: DropCount) -> RawTrace:
    return RawTrace(counts=counts, seconds=10.0, traced_seconds=10.0, started_at=1.0)


def test_drops_are_placed_per_sandbox_and_hop() -> None:
    web, thr = _sb("web-0"), _sb("throttled-2")
    peer = next(lk.peer.name for lk in web.links if lk.peer)
    raw = _raw(DropCount(web.netns.inode or 0, "tap0_kata", "FULL_RING", 80, "tun_net_xmit", 9),
               DropCount(web.netns.inode or 0, "eth0", "TC_INGRESS", 73, "x", 4),
               DropCount(thr.netns.inode or 0, "tap0_kata", "QDISC_DROP", 64, "y", 7),
               DropCount(thr.netns.inode or 0, "eth0", "NOT_SPECIFIED", 2,
                         "__dev_forward_skb2", 2),
               DropCount(4026531840, peer, "NOT_SPECIFIED", 2, "z", 5),
               DropCount(4026531840, "ens3", "NO_SOCKET", 3, "udp", 1))
    rep = build_report(raw, SNAP)
    by = {(s.sandbox_id, s.side): {(d.reason, d.hop) for d in s.drops} for s in rep.sandboxes}
    assert by[(web.id, "sandbox")] == {("FULL_RING", "vmm"), ("TC_INGRESS", "mirred")}
    assert by[(thr.id, "sandbox")] == {("QDISC_DROP", "tap"), ("NOT_SPECIFIED", "node-veth")}
    assert by[(web.id, "node")] == {("NOT_SPECIFIED", "node-veth")}
    assert [o.netns_inode for o in rep.other] == [4026531840] and rep.total == 28
    text = render_text(rep)
    assert "the VMM is not reading the tap" in text and "rate limit on the tap is full" in text
    assert "node side" in text and "in no sandbox" in text
    jsonschema.validate(json.loads(json.dumps(to_plain(rep))), drops_schema())
    only = build_report(raw, SNAP, {thr.id}, "throttled-2")
    assert {s.sandbox_id for s in only.sandboxes} == {thr.id} and only.other == ()


def test_the_committed_schema_is_the_models() -> None:
    with open(os.path.join(ROOT, "kata_top", "formats", "schema", "drops-1.json")) as fh:
        assert json.load(fh) == drops_schema()


def test_a_trace_feeds_the_sandboxs_findings() -> None:
    from dataclasses import replace

    from kata_top.diagnose.drop_findings import MAX_AGE, with_drop_findings

    web, thr = _sb("web-0"), _sb("throttled-2")
    raw = _raw(DropCount(web.netns.inode or 0, "tap0_kata", "FULL_RING", 80, "tun_net_xmit",
                         812))
    rep = replace(build_report(raw, SNAP), started_at=SNAP.taken_at)
    got = with_drop_findings(SNAP, rep)
    f = next(f for f in got.find(web.id).findings if f.code == "KT-S080")  # type: ignore[union-attr]
    assert f.severity == "critical" and "not draining" in f.summary
    assert f.evidence["count"] == 812 and f.evidence["device"] == "tap0_kata"
    assert f.evidence["function"] == "tun_net_xmit"
    assert got.find(thr.id) is thr  # nothing dropped there: untouched
    stale = replace(rep, started_at=SNAP.taken_at - MAX_AGE - 1)
    assert with_drop_findings(SNAP, stale) is SNAP


def test_a_node_without_bpftrace_btf_or_privilege_says_so_in_one_line(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    from kata_top.collectors import droptrace

    out = subprocess.run([sys.executable, "-m", "kata_top", "drops", "--seconds", "1",
                          "--run-root", str(tmp_path)], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PATH": str(tmp_path)}, timeout=60,
                         check=False)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "kata-top drops: bpftrace is not installed; apt-get install bpftrace (Debian/Ubuntu; "
        "dnf install bpftrace on Fedora/RHEL)"]
    monkeypatch.setattr(droptrace.shutil, "which", lambda name: "/usr/bin/bpftrace")
    real_exists = os.path.exists
    monkeypatch.setattr(droptrace.os.path, "exists",
                        lambda p: False if p == droptrace.BTF else real_exists(p))
    with pytest.raises(droptrace.TraceUnavailable, match="CONFIG_DEBUG_INFO_BTF"):
        droptrace.bpftrace_path()
    monkeypatch.setattr(droptrace.os.path, "exists", lambda p: True)
    monkeypatch.setattr(droptrace, "_capable", lambda bit: False)
    with pytest.raises(droptrace.TraceUnavailable, match="needs root"):
        droptrace.bpftrace_path()


def test_an_unreadable_tracepoint_format_is_one_sentence(tmp_path: object) -> None:
    """The format file gone (the tracer's child already exited, tracefs unreadable): a
    TraceUnavailable every caller prints, never an OSError's traceback."""
    from kata_top.collectors import droptrace

    with pytest.raises(droptrace.TraceUnavailable, match="cannot read"):
        droptrace.read_reasons(os.path.join(str(tmp_path), "no-tracefs"))
