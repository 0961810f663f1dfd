"""Events on the lab: each change made by hand or by kata-top shows as the right event within
one refresh, with before/after values, kata-top's own actions attributed to it and the
hand-made ones not; a filter added and removed between two collections is still reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from kata_top import actions
from kata_top.engine import EngineOptions
from kata_top.lab import build
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from kata_top.model import Event
from kata_top.sources.live import LiveSource
from tests.helpers import ROOT, need_qemu, running_lab
from tests.serve_helpers import http_get, serving


@pytest.fixture(scope="module")
def event_lab() -> Iterator[tuple[Layout, Manifest]]:
    need_qemu()
    with running_lab("e", build.UpOptions(sandboxes=3, scenario="plain")) as lab:
        yield lab


def _next_events(source: LiveSource, kinds: set[str], tries: int = 5) -> list[Event]:
    """Events of these kinds within a few collections (one refresh in the dashboard)."""
    seen: list[Event] = []
    for _ in range(tries):
        seen += [e for e in source.next().events if e.kind in kinds]
        if seen:
            return seen
    return seen


def test_changes_by_hand_and_by_kata_top(event_lab: tuple[Layout, Manifest], tmp_path: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    layout, man = event_lab
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))  # the audit log the source tails
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # ... is the per-user one, under tmp
    source = LiveSource(EngineOptions(run_root=layout.run_root, with_vmm=False))
    monkeypatch.undo()
    try:
        source.next()
        spec0, spec1, spec2 = (sb.spec for sb in man.sandboxes)
        ns0, ns1 = layout.pod_ns(spec0), layout.pod_ns(spec1)

        # a redirect deleted with tc by hand: removed, from the kernel's notification
        subprocess.run(["tc", "-n", ns0, "filter", "del", "dev", "tap0_kata", "ingress"],
                       check=True)
        (e,) = [x for x in _next_events(source, {"filter-removed"}) if x.sandbox_id == spec0.id]
        assert e.source == "netlink" and e.by is None and e.after["dev"] == "tap0_kata"

        # an MTU changed: before and after
        subprocess.run(["ip", "-n", ns1, "link", "set", "eth0", "mtu", "1400"], check=True)
        (e,) = _next_events(source, {"mtu-changed"})
        assert (e.before, e.after, e.sandbox_id) == (1500, 1400, spec1.id)

        # a link flapped
        subprocess.run(["ip", "-n", ns1, "link", "set", "tap0_kata", "down"], check=True)
        (e,) = _next_events(source, {"link-down"})
        assert e.sandbox_id == spec1.id and "tap0_kata" in e.summary
        subprocess.run(["ip", "-n", ns1, "link", "set", "tap0_kata", "up"], check=True)
        assert _next_events(source, {"link-up"})

        # a filter added and removed between two collections: both still reported
        tc = ["tc", "-n", ns1, "filter"]
        subprocess.run([*tc, "add", "dev", "eth0", "parent", "ffff:", "prio", "7", "protocol",
                        "ip", "u32", "match", "u8", "0", "0", "action", "mirred", "egress",
                        "redirect", "dev", "tap0_kata"], check=True)
        subprocess.run([*tc, "del", "dev", "eth0", "parent", "ffff:", "prio", "7"], check=True)
        got = {(x.kind, x.after["prio"]) for x in source.next().events
               if x.kind in ("filter-added", "filter-removed")}
        assert got == {("filter-added", 7), ("filter-removed", 7)}

        # a rate limit set and cleared with kata-top: attributed to it
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        sb = actions.find_sandbox(layout.run_root, spec2.id)
        assert actions.execute(actions.plan_ratelimit(sb, {"in": 5_000_000})).ok
        monkeypatch.undo()
        events = _next_events(source, {"rate-limit-set", "action"})
        events += [x for x in source.next().events if x.kind in ("rate-limit-set", "action")]
        kinds = {(x.kind, x.by) for x in events}
        assert ("action", "kata-top") in kinds and ("rate-limit-set", "kata-top") in kinds
        limit = next(x for x in events if x.kind == "rate-limit-set")
        assert (limit.before, limit.after) == (None, 5_000_000)
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        sb = actions.find_sandbox(layout.run_root, spec2.id)
        assert actions.execute(actions.plan_ratelimit(sb, {"in": None})).ok
        monkeypatch.undo()
        cleared = _next_events(source, {"rate-limit-cleared"})
        assert [(x.before, x.after, x.by) for x in cleared] == [(5_000_000, None, "kata-top")]

        # a QEMU killed (the lab started it; ended by its pid)
        os.kill(spec2_pid := next(s.qemu_pid for s in man.sandboxes
                                  if s.spec.id == spec2.id), signal.SIGKILL)
        (e,) = _next_events(source, {"vmm-exited"})
        assert e.sandbox_id == spec2.id and e.before == spec2_pid and e.severity == "critical"
    finally:
        source.close()


def test_recordings_and_serve_carry_the_events(event_lab: tuple[Layout, Manifest]) -> None:
    layout, man = event_lab
    spec = man.sandboxes[0].spec
    ns = layout.pod_ns(spec)
    with serving(layout.run_root, "--min-interval", "0") as (url, _p):
        http_get(url + "/metrics")
        subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "mtu", "1300"], check=True)
        http_get(url + "/metrics")
        _s, _h, body = http_get(url + "/api/v1/events?since=5m")
        docs = [json.loads(line) for line in body.decode().splitlines()]
        assert any(d["kind"] == "mtu-changed" and d["after"] == 1300 for d in docs)
        assert all(d["schema"] == "kata-top/event/1" for d in docs)
        _s, _h, metrics = http_get(url + "/metrics")
        assert b'kata_top_events_total{kind="mtu-changed"}' in metrics
    proc = subprocess.Popen([sys.executable, "-m", "kata_top", "snapshot", "--watch", "0.5",
                             "--count", "3", "--run-root", layout.run_root, "--log-file",
                             os.devnull], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "mtu", "1500"], check=True)
    rest = proc.stdout.read()
    proc.wait(60)
    recorded = [json.loads(line) for line in [first, *rest.splitlines()]]
    assert any(e["kind"] == "mtu-changed" and e["after"] == 1500
               for snap in recorded for e in snap["events"])
