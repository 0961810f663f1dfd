"""Faults planted as they happen on nodes (`faults` scenario): each named for what it is, every
printed fix run as printed, and rates that iproute2 confirms (delivered vs attempted vs
dropped)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from kata_top import diagnose, summary
from kata_top.engine import Engine, EngineOptions
from kata_top.lab import build, traffic
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from kata_top.lab.network import run_batch
from kata_top.model import Finding, Sandbox, Snapshot
from kata_top.rates import with_rates
from tests.helpers import ROOT, need_qemu, running_lab


@pytest.fixture(scope="module")
def faults_lab() -> Iterator[tuple[Layout, Manifest]]:
    need_qemu()
    with running_lab("f", build.UpOptions(sandboxes=8, scenario="faults")) as lab:
        yield lab


def _annotated(layout: Layout, pause: float = 0.0) -> Snapshot:
    engine = Engine(EngineOptions(run_root=layout.run_root))
    try:
        first = engine.collect().snapshot
        if pause:
            time.sleep(pause)
        return diagnose.annotate(with_rates(engine.collect().snapshot, first))
    finally:
        engine.close()


def _sb(snap: Snapshot, pod: str) -> Sandbox:
    return next(s for s in snap.sandboxes if s.pod.name == pod)


def _codes(sb: Sandbox) -> dict[str, Finding]:
    return {f.code: f for f in sb.findings}


def _ns(man: Manifest, pod: str) -> str:
    ns = next(s.netns for s in man.sandboxes if s.spec.pod_name == pod)
    assert ns
    return ns


def _run_printed(fix: str) -> None:
    """The raw equivalent in a fix, `(= cmd && cmd)`, run by a shell exactly as printed."""
    m = re.search(r"\(= (.*)\)$", fix)
    assert m, fix
    out = subprocess.run(["sh", "-c", m.group(1)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, (m.group(1), out.stderr)


def _kata_redirect(layout: Layout, man: Manifest, pod: str, *args: str) -> None:
    out = subprocess.run([sys.executable, "-m", "kata_top", "redirect", "add", pod, *args,
                          "--run-root", layout.run_root, "--yes"], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr + out.stdout


def _drawn(sb: Sandbox) -> str:
    """The detail's datapath diagram as text."""
    from rich.console import Console

    from kata_top.widgets.datapath import datapath

    console = Console(record=True, width=200)
    console.print(datapath(sb))
    return console.export_text()


def _filters(ns: str, dev: str) -> list[str]:
    out = subprocess.run(["tc", "-n", ns, "-j", "filter", "show", "dev", dev, "ingress"],
                         capture_output=True, text=True, check=True)
    return [a.get("to_dev", "") for f in json.loads(out.stdout or "[]")
            for a in f.get("options", {}).get("actions", [])]


def test_redirect_to_another_device_is_named_and_both_fixes_work(
        faults_lab: tuple[Layout, Manifest]) -> None:
    layout, man = faults_lab
    ns = _ns(man, "elsewhere-1")
    for how in ("raw", "kata-top"):
        sb = _sb(_annotated(layout), "elsewhere-1")
        f = _codes(sb)["KT-S004"]
        assert f.severity == "critical" and f.evidence["redirects_to"] == {"out": "eth1"}
        assert "eth1" in f.summary and "KT-S002" not in _codes(sb)
        assert summary.redirect_health(sb) == "out→eth1"
        drawn = _drawn(sb)
        assert "WRONG TARGET" in drawn and "tap0_kata→eth1 (Kata: eth0)" in drawn
        assert f.evidence["commands"][0].startswith("tc filter del dev tap0_kata")
        if how == "raw":
            _run_printed(f.fix)
        else:
            _kata_redirect(layout, man, "elsewhere-1", "--direction", "out")
        assert _filters(ns, "tap0_kata") == ["eth0"], how  # the wrong one is gone
        fixed = _sb(_annotated(layout), "elsewhere-1")
        assert summary.redirect_health(fixed) == "both", how
        assert not {"KT-S002", "KT-S004"} & set(_codes(fixed)), how
        if how == "raw":  # plant the fault again, for the other fix
            run_batch(["tc", "-n", ns], ["filter del dev tap0_kata parent ffff:",
                                         "filter add dev tap0_kata parent ffff: protocol all "
                                         "u32 match u8 0 0 action mirred egress redirect dev "
                                         "eth1"])


def test_missing_ingress_qdisc_is_named_and_both_fixes_work(
        faults_lab: tuple[Layout, Manifest]) -> None:
    layout, man = faults_lab
    ns = _ns(man, "no-ingress-2")
    for how in ("raw", "kata-top"):
        sb = _sb(_annotated(layout), "no-ingress-2")
        f = _codes(sb)["KT-S005"]
        assert f.evidence["devices"] == ["tap0_kata"] and "tap0_kata" in f.summary
        assert "no ingress qdisc" in f.summary
        assert f.evidence["commands"][0] == "tc qdisc add dev tap0_kata ingress"
        assert summary.redirect_health(sb) == "in only"  # the finding and diagram name why
        assert "NO INGRESS QDISC" in _drawn(sb)
        if how == "raw":
            _run_printed(f.fix)
        else:
            _kata_redirect(layout, man, "no-ingress-2", "--direction", "out")
        fixed = _sb(_annotated(layout), "no-ingress-2")
        assert summary.redirect_health(fixed) == "both", how
        assert not {"KT-S002", "KT-S005"} & set(_codes(fixed)), how
        if how == "raw":
            run_batch(["tc", "-n", ns], ["qdisc del dev tap0_kata ingress"])


def _ip_tap(ns: str) -> dict[str, int]:
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", "tap0_kata"],
                         capture_output=True, text=True, check=True)
    tx = json.loads(out.stdout)[0]["stats64"]["tx"]
    return {"packets": tx["packets"], "dropped": tx["dropped"]}


def _tc_mirred(ns: str, dev: str) -> dict[str, int]:
    out = subprocess.run(["tc", "-n", ns, "-s", "-j", "filter", "show", "dev", dev, "ingress"],
                         capture_output=True, text=True, check=True)
    acts = [a for f in json.loads(out.stdout or "[]")
            for a in f.get("options", {}).get("actions", [])]
    return {"packets": sum(a["stats"]["packets"] for a in acts),
            "overlimits": sum(a["stats"].get("overlimits", 0) for a in acts)}


def _counts(sb: Sandbox) -> tuple[int, int, int, int]:
    """The in redirect's attempts and failures, the tap's tx packets and drops."""
    red = next(r for r in sb.redirects if r.direction == "in")
    tap = next(lk for lk in sb.links if lk.name == "tap0_kata").stats
    return red.packets, red.overlimits + red.drops, tap.tx_packets, tap.tx_dropped


@pytest.mark.parametrize("pod", ["tap-down-3", "dead-mtu-5"])
def test_rates_say_where_the_packets_went(faults_lab: tuple[Layout, Manifest], pod: str) -> None:
    """UDP into a sandbox whose redirect cannot deliver: kata-top's into-VM rate is what the
    tap handed to the VMM (nothing), beside what mirred attempted and what failed (tap down:
    mirred overlimits) or what the tap dropped (dead VMM: tx_dropped); iproute2 (`ip -s
    link`, `tc -s filter`) counts the same packets."""
    layout, man = faults_lab
    spec = next(s.spec for s in man.sandboxes if s.spec.pod_name == pod)
    ns = _ns(man, pod)
    engine = Engine(EngineOptions(run_root=layout.run_root))
    try:
        first = engine.collect().snapshot
        ip0, tc0 = _ip_tap(ns), _tc_mirred(ns, "eth0")
        res = traffic.run(layout.node_ns, [spec.ip], seconds=1.0, rate_pps=100)
        time.sleep(0.2)
        ip1, tc1 = _ip_tap(ns), _tc_mirred(ns, "eth0")
        snap = diagnose.annotate(with_rates(engine.collect().snapshot, first))
    finally:
        engine.close()
    assert res[spec.ip].udp_sent >= 80
    sb, sb0 = _sb(snap, pod), _sb(first, pod)
    dt = snap.taken_at - first.taken_at
    r = sb.rates
    # iproute2's counts between its two reads, which the engine's two collections bracket
    # (the node's own stray packets between the reads of the two may differ by a few)
    attempted = tc1["packets"] - tc0["packets"]
    failed = tc1["overlimits"] - tc0["overlimits"]
    delivered = ip1["packets"] - ip0["packets"]
    dropped = ip1["dropped"] - ip0["dropped"]
    assert attempted >= 80 and delivered == 0

    ours = {k: b - a for k, a, b in zip(("attempted", "failed", "delivered", "dropped"),
                                         _counts(sb0), _counts(sb), strict=True)}
    theirs = {"attempted": attempted, "failed": failed, "delivered": delivered,
              "dropped": dropped}
    assert all(abs(ours[k] - theirs[k]) <= max(5, theirs[k] // 20) for k in ours), (
        ours, theirs)
    assert r["vm.in_pps"] == 0.0  # nothing reached the VM, whatever mirred counted
    assert r["vm.in_attempted_pps"] == pytest.approx(ours["attempted"] / dt, rel=0.01)
    # the failures, each where iproute2 counts it: mirred's overlimits, the tap's drops
    assert r["vm.in_failed_pps"] == pytest.approx(ours["failed"] / dt, rel=0.01, abs=0.01)
    assert r["vm.in_dropped_pps"] == pytest.approx(ours["dropped"] / dt, rel=0.01, abs=0.01)
    # the same split in the JSON contract and in Prometheus' series
    from kata_top.formats import jsonout
    from kata_top.formats.prometheus import render

    doc = json.loads(jsonout.dumps(snap))
    js = next(x for x in doc["sandboxes"] if x["id"] == sb.id)
    assert js["rates"]["vm.in_pps"] == 0.0 and js["rates"]["vm.in_attempted_pps"] > 0
    red_in = next(x for x in js["redirects"] if x["direction"] == "in")
    assert red_in["overlimits"] + red_in["drops"] >= failed
    prom = render(snap)

    def series(name: str, **labels: str) -> float:
        for line in prom.splitlines():
            if line.startswith(f"kata_top_{name}{{") and f'sandbox_id="{sb.id}"' in line \
                    and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(name)

    tap = next(lk for lk in sb.links if lk.name == "tap0_kata")
    assert series("vm_delivered_packets_total", direction="in") == tap.stats.tx_packets
    assert series("vm_dropped_packets_total", direction="in") == tap.stats.tx_dropped
    assert series("redirect_failed_packets_total", direction="in") == \
        red_in["overlimits"] + red_in["drops"]
    if pod == "tap-down-3":
        assert series("redirect_state", direction="in", state="failing") == 1
        assert failed == attempted
        f = _codes(sb)["KT-S006"]
        assert "tap0_kata is down" in f.summary and f.evidence["commands"] == [
            "ip link set dev tap0_kata up"]
        assert summary.redirect_health(sb) == "in failing"
        assert "KT-S012" not in _codes(sb)  # eth0's ingress drops are the redirect's failures
    else:
        # nothing holds the tap: its queue is off, mirred's hand-over fails
        assert failed + dropped >= attempted, (failed, dropped, attempted)
        f = _codes(sb)["KT-S020"]  # said once, with what is lost
        assert "redirect's packets are lost" in f.summary and f.evidence["lost_in_pps"] > 0
        assert not {"KT-S006", "KT-S007", "KT-S012"} & set(_codes(sb))
        assert summary.redirect_health(sb) == "in failing"


def test_dead_vmm_keeps_the_network_findings_and_events_do_not_clear_them(
        faults_lab: tuple[Layout, Manifest]) -> None:
    """A VMM killed under a sandbox with an MTU mismatch: KT-S020 is added, KT-S010 stays
    (no `finding-cleared`); one dead from the start keeps it as well."""
    import os
    import signal

    from kata_top.events.diff import diff_events

    layout, man = faults_lab
    assert _codes(_sb(_annotated(layout), "dead-mtu-5"))["KT-S010"].severity == "warning"
    victim = next(s for s in man.sandboxes if s.spec.pod_name == "mtu-7")
    before = _annotated(layout)
    assert "KT-S010" in _codes(_sb(before, "mtu-7"))
    assert victim.qemu_pid
    os.kill(victim.qemu_pid, signal.SIGKILL)  # the lab started it; ended by its pid
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{victim.qemu_pid}"):
        time.sleep(0.05)
    after = diagnose.annotate(_annotated(layout), before)
    sb = _sb(after, "mtu-7")
    assert {"KT-S020", "KT-S010"} <= set(_codes(sb))
    events = [e for e in diff_events(before, after) if e.sandbox_id == sb.id]
    kinds = {(e.kind, e.after if e.kind == "finding-raised" else e.before) for e in events}
    assert ("vmm-exited", victim.qemu_pid) in kinds and ("finding-raised", "KT-S020") in kinds
    assert not [e for e in events if e.kind == "finding-cleared"], events


def test_a_limit_kata_does_not_hold_is_a_warning_with_its_counts(
        faults_lab: tuple[Layout, Manifest]) -> None:
    """An HTB added by hand on the tap while the sandbox's RxRateLimiterMaxRate is 0: not
    Kata's (KT-S054, both values named), its overlimits and drops shown; a sandbox whose
    limits match its configuration has none."""
    layout, man = faults_lab
    spec = next(s.spec for s in man.sandboxes if s.spec.pod_name == "foreign-limit-4")
    traffic.run(layout.node_ns, [spec.ip], seconds=0.5, rate_pps=100)
    sb = _sb(_annotated(layout), "foreign-limit-4")
    assert sb.configured_rate_limits == {"in": 0, "out": 0}
    f = _codes(sb)["KT-S054"]
    assert f.severity == "warning" and "KT-S050" not in _codes(sb)
    assert "5Mbit" in f.summary and "RxRateLimiterMaxRate is 0" in f.summary
    lim = next(r for r in sb.rate_limits if r.dev == "tap0_kata")
    assert f.evidence["overlimits"] == lim.overlimits and f.evidence["drops"] == lim.drops
    assert "held back" in f.summary or "nothing held back" in f.summary
    assert summary.rate_limit_text(sb) == "in 5Mbit not Kata's"
    assert "ratelimit clear" in f.fix and "tc qdisc del dev tap0_kata root" in f.fix
    web = _sb(_annotated(layout), "web-0")
    assert not {"KT-S050", "KT-S051", "KT-S054"} & set(_codes(web))


def test_orphan_judgement_is_scoped_to_every_known_run_root(scratch_lab: Layout) -> None:
    """Three namespaces with a Kata tap nobody holds and no sandbox of this run root: one
    recorded by a sandbox of another run root (never an orphan), one a process is still in
    (named, without `ip netns delete`), one truly left behind (`ip netns delete`)."""
    import os
    import shutil

    from tests.helpers import TEST_PREFIX

    build.up(scratch_lab, build.UpOptions(sandboxes=1, qemu=False, scenario="plain"))
    names = {k: f"{scratch_lab.prefix}-cni-{k}" for k in ("other", "held", "left")}
    other_root = f"/run/{TEST_PREFIX}o"
    sleeper = None
    try:
        for name in names.values():
            run_batch(["ip"], [f"netns add {name}"])  # swept by the fixture's lab down
            run_batch(["ip", "-n", name], ["tuntap add dev tap0_kata mode tap",
                                           "link set tap0_kata up"])
        sid = "e" * 64
        state_dir = os.path.join(other_root, "vc", "sbs", sid)
        os.makedirs(state_dir)
        with open(os.path.join(state_dir, "persist.json"), "w") as fh:
            json.dump({"State": "running", "Network": {
                "NetworkID": f"/run/netns/{names['other']}"}}, fh)
        sleeper = subprocess.Popen(["ip", "netns", "exec", names["held"], "sleep", "60"])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not subprocess.run(
                ["ip", "netns", "pids", names["held"]], capture_output=True,
                text=True).stdout.strip():
            time.sleep(0.05)
        out = subprocess.run([sys.executable, "-m", "kata_top", "check", "--json",
                              "--run-root", scratch_lab.run_root], capture_output=True,
                             text=True, cwd=ROOT, check=False)
        found = {f["evidence"]["netns"]: f for f in json.loads(out.stdout)["findings"]
                 if f["code"] == "KT-H030"}
        assert names["other"] not in found
        assert sleeper.pid in found[names["held"]]["evidence"]["pids"]
        assert "ip netns delete" not in found[names["held"]]["fix"]
        assert f"ip netns delete {names['left']}" in found[names["left"]]["fix"]
    finally:
        if sleeper is not None:
            sleeper.kill()
            sleeper.wait()
        shutil.rmtree(other_root, ignore_errors=True)


def test_ipv6_off_and_vcpus_from_the_state_file(faults_lab: tuple[Layout, Manifest]) -> None:
    """IPv6 off in the pod's namespace is named with Kata's EACCES (-13) on fe80:: (seed 001)
    as the case it is not; the VM's vCPUs come from the state file when no monitor told."""
    layout, _ = faults_lab
    snap = _annotated(layout)
    f = _codes(_sb(snap, "ipv6-off-6"))["KT-S015"]
    assert f.severity == "info" and "EACCES (-13)" in f.summary and "fe80::" in f.summary
    web = _sb(snap, "web-0")
    assert web.config_vcpus == 1 and web.vmm is not None and web.vmm.source == "proc"
    assert summary.resources_text(web).startswith("1c")


def test_a_failing_redirects_printed_fix_works(faults_lab: tuple[Layout, Manifest]) -> None:
    """The tap set down: KT-S006's fix, run as printed, brings the redirect back to `both`."""
    layout, man = faults_lab
    f = _codes(_sb(_annotated(layout), "tap-down-3"))["KT-S006"]
    out = subprocess.run(["sh", "-c", f.fix], capture_output=True, text=True, check=False)
    assert out.returncode == 0, (f.fix, out.stderr)
    fixed = _sb(_annotated(layout), "tap-down-3")
    assert summary.redirect_health(fixed) == "both" and "KT-S006" not in _codes(fixed)
    run_batch(["ip", "-n", _ns(man, "tap-down-3")], ["link set tap0_kata down"])  # as it was
