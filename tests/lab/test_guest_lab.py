"""With booted guests: traffic crosses the redirects both ways, and actions really bite."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from kata_top import actions
from kata_top.lab import build, traffic
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from tests.helpers import need_qemu, running_lab


@pytest.fixture(scope="module")
def guest_lab() -> Iterator[tuple[Layout, Manifest]]:
    need_qemu()
    opts = build.UpOptions(sandboxes=2, scenario="tcfilter", guest=True)
    with running_lab("g", opts) as (layout, man):
        ips = [sb.spec.ip for sb in man.sandboxes]
        deadline = time.monotonic() + 90
        silent = ips
        while time.monotonic() < deadline:  # TCG boots take a few seconds each
            res = traffic.run(layout.node_ns, ips, seconds=1.0, rate_pps=0)
            silent = [ip for ip, r in res.items() if not r.ping_replies]
            if not silent:
                break
        if silent:
            pytest.fail(f"no guest answered ping within 90 s: {', '.join(silent)} (the guest "
                        "kernel or initramfs did not boot; see the lab's QEMU console logs)")
        yield layout, man


def _pings(layout: Layout, ip: str, seconds: float = 2.0) -> int:
    return traffic.run(layout.node_ns, [ip], seconds=seconds, rate_pps=0,
                       ping_every=0.2)[ip].ping_replies


def test_ping_crosses_both_redirects(guest_lab: tuple[Layout, Manifest]) -> None:
    layout, man = guest_lab
    for lab_sb in man.sandboxes:
        sb = actions.find_sandbox(layout.run_root, lab_sb.spec.id)
        before = {r.direction: r.packets for r in sb.redirects}
        assert _pings(layout, lab_sb.spec.ip) >= 5
        after = {r.direction: r.packets for r in
                 actions.find_sandbox(layout.run_root, lab_sb.spec.id).redirects}
        assert after["in"] > before["in"] and after["out"] > before["out"]
        # iproute2 agrees the out (tap -> eth0) mirred counted the replies
        out = subprocess.run(["tc", "-n", layout.pod_ns(lab_sb.spec), "-s", "filter", "show",
                              "dev", "tap0_kata", "ingress"], capture_output=True, text=True,
                             check=True).stdout
        assert "Egress Redirect to device eth0" in out


def test_removing_in_redirect_stops_replies(guest_lab: tuple[Layout, Manifest]) -> None:
    layout, man = guest_lab
    spec = man.sandboxes[0].spec
    sb = actions.find_sandbox(layout.run_root, spec.id)
    assert actions.execute(actions.plan_redirect(sb, "remove", "in"), audit=False).ok
    try:
        assert _pings(layout, spec.ip) == 0
        broken = actions.find_sandbox(layout.run_root, spec.id)
        assert {r.direction: r.present for r in broken.redirects}["in"] is False
    finally:
        sb = actions.find_sandbox(layout.run_root, spec.id)
        assert actions.execute(actions.plan_redirect(sb, "add", "in"), audit=False).ok
    assert _pings(layout, spec.ip) >= 5


def _tap_tx_bytes(layout: Layout, ns: str) -> int:
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", "tap0_kata"],
                         capture_output=True, text=True, check=True).stdout
    import json

    return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])


def test_rate_limit_holds_a_flood(guest_lab: tuple[Layout, Manifest]) -> None:
    layout, man = guest_lab
    spec = man.sandboxes[1].spec
    ns = layout.pod_ns(spec)
    sb = actions.find_sandbox(layout.run_root, spec.id)
    assert actions.execute(actions.plan_ratelimit(sb, {"in": 1_000_000}), audit=False).ok
    try:
        traffic.run(layout.node_ns, [spec.ip], seconds=1.0, rate_pps=800, payload_bytes=1000)
        start_b, t0 = _tap_tx_bytes(layout, ns), time.monotonic()
        traffic.run(layout.node_ns, [spec.ip], seconds=4.0, rate_pps=800, payload_bytes=1000)
        rate = (_tap_tx_bytes(layout, ns) - start_b) * 8 / (time.monotonic() - t0)
        assert 0.85e6 <= rate <= 1.15e6, f"{rate / 1e6:.2f} Mbit/s"
    finally:
        sb = actions.find_sandbox(layout.run_root, spec.id)
        assert actions.execute(actions.plan_ratelimit(sb, {"in": None}), audit=False).ok
    start_b, t0 = _tap_tx_bytes(layout, ns), time.monotonic()
    traffic.run(layout.node_ns, [spec.ip], seconds=2.0, rate_pps=800, payload_bytes=1000)
    free = (_tap_tx_bytes(layout, ns) - start_b) * 8 / (time.monotonic() - t0)
    assert free > 3e6, f"after clearing: {free / 1e6:.2f} Mbit/s"


def test_into_the_vm_is_what_the_guest_took_as_iproute2_counts_it(
        guest_lab: tuple[Layout, Manifest]) -> None:
    """With a guest draining its NIC, what the tap handed to the VMM (`ip -s link` TX of the
    tap) is what kata-top calls into the VM, beside the in redirect's attempts (`tc -s
    filter`): the same packets, nothing failed or dropped."""
    import json

    from kata_top.engine import Engine, EngineOptions
    from kata_top.rates import with_rates

    layout, man = guest_lab
    spec = man.sandboxes[1].spec
    ns = layout.pod_ns(spec)

    def iproute2() -> tuple[int, int, int]:
        link = json.loads(subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev",
                                          "tap0_kata"], capture_output=True, text=True,
                                         check=True).stdout)[0]["stats64"]["tx"]
        filt = json.loads(subprocess.run(["tc", "-n", ns, "-s", "-j", "filter", "show", "dev",
                                          "eth0", "ingress"], capture_output=True, text=True,
                                         check=True).stdout)
        sent = sum(a["stats"]["packets"] for f in filt
                   for a in f.get("options", {}).get("actions", []))
        return link["packets"], link["dropped"], sent

    engine = Engine(EngineOptions(run_root=layout.run_root))
    try:
        first = engine.collect().snapshot
        before = iproute2()
        traffic.run(layout.node_ns, [spec.ip], seconds=1.0, rate_pps=100)
        time.sleep(0.3)
        after = iproute2()
        snap = with_rates(engine.collect().snapshot, first)
    finally:
        engine.close()
    delivered, dropped, attempted = (b - a for a, b in zip(before, after, strict=True))
    assert attempted >= 80 and dropped == 0 and delivered >= attempted - 5
    sb = next(s for s in snap.sandboxes if s.id == spec.id)
    dt = snap.taken_at - first.taken_at
    r = sb.rates
    assert r["vm.in_pps"] * dt == pytest.approx(delivered, abs=6)
    assert r["vm.in_attempted_pps"] * dt == pytest.approx(attempted, abs=6)
    assert r["vm.in_failed_pps"] == 0.0 and r["vm.in_dropped_pps"] == 0.0
