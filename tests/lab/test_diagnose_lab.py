"""Every planted fault of the demo lab is found with its code and severity; nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from kata_top import diagnose
from kata_top.collectors import hostcheck
from kata_top.engine import Engine, EngineOptions
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from kata_top.model import Snapshot
from kata_top.rates import with_rates
from tests.helpers import ROOT, need_root


@pytest.fixture(scope="module")
def annotated(demo_lab: tuple[Layout, Manifest]) -> Snapshot:
    layout, _ = demo_lab
    engine = Engine(EngineOptions(run_root=layout.run_root))
    try:
        first = engine.collect().snapshot
        return diagnose.annotate(with_rates(engine.collect().snapshot, first))
    finally:
        engine.close()


def _codes(snap: Snapshot, pod: str) -> dict[str, str]:
    sb = next(s for s in snap.sandboxes if s.pod.name == pod)
    return {f.code: f.severity for f in sb.findings}


def test_missing_redirect(annotated: Snapshot) -> None:
    assert _codes(annotated, "no-out-redirect-3")["KT-S002"] == "critical"


def test_mtu_mismatch(annotated: Snapshot) -> None:
    assert _codes(annotated, "mtu-mismatch-4")["KT-S010"] == "warning"


def test_dead_qemu_with_state_left(annotated: Snapshot) -> None:
    assert _codes(annotated, "dead-vm-8") == {"KT-S020": "critical"}


def test_stale_shim_monitor_socket(annotated: Snapshot) -> None:
    """The demo's mtu-mismatch sandbox was started with a socket file nobody listens on
    (kata-containers#6427); the others' shims listen, and say so."""
    sb = next(s for s in annotated.sandboxes if s.pod.name == "mtu-mismatch-4")
    assert sb.shim_monitor == "refused"
    f = next(f for f in sb.findings if f.code == "KT-S044")
    assert f.severity == "warning" and f.evidence["state"] == "refused"
    assert f.evidence["socket"].endswith(f"/vc/sbs/{sb.id}/shim-monitor.sock")
    assert "rm " in f.fix
    alive = [s for s in annotated.sandboxes if s.shim and s.pod.name != "mtu-mismatch-4"]
    assert alive and all(s.shim_monitor == "listening" for s in alive)
    assert not [s.pod.name for s in alive if any(f.code == "KT-S044" for f in s.findings)]


def test_missing_shim_monitor_socket(scratch_lab: Layout) -> None:
    from kata_top.lab import build

    man = build.up(scratch_lab, build.UpOptions(sandboxes=1, qemu=True, guest=False,
                                                scenario="plain"))
    spec = man.sandboxes[0].spec
    engine = Engine(EngineOptions(run_root=scratch_lab.run_root, with_vmm=False))
    try:
        sock = os.path.join(scratch_lab.state_dir(spec), "shim-monitor.sock")
        t0 = time.monotonic()
        while not os.path.exists(sock):  # the shim binds it a moment after it starts
            assert time.monotonic() - t0 < 20, "the lab's shim never listened"
            time.sleep(0.1)
        first = engine.collect().snapshot.sandboxes[0]
        assert first.shim is not None and first.shim_monitor == "listening"
        os.unlink(sock)
        sb = diagnose.annotate(engine.collect().snapshot).sandboxes[0]
        assert sb.shim_monitor == "missing"  # seen at the next refresh, not 30 s later
        assert {f.code: f.severity for f in sb.findings}.get("KT-S044") == "warning"
    finally:
        engine.close()


def test_route_mtu_below_the_device_mtu(annotated: Snapshot) -> None:
    """The demo's throttled sandbox has a default route with MTU 1400 on a 1500 eth0, as
    Cilium sets it (cilium/cilium#38033); the others have no route MTU and stay clean."""
    sb = next(s for s in annotated.sandboxes if s.pod.name == "throttled-2")
    f = next(f for f in sb.findings if f.code == "KT-S016")
    assert f.severity == "warning"
    assert f.evidence["routes"] == [{"dst": "default", "dev": "eth0", "mtu": 1400}]
    assert f.evidence["device_mtu"] == 1500
    others = [s for s in annotated.sandboxes if s.pod.name != "throttled-2"]
    assert not [s.pod.name for s in others if any(f.code == "KT-S016" for f in s.findings)]


def test_rate_limiter(annotated: Snapshot) -> None:
    codes = _codes(annotated, "throttled-2")
    assert codes["KT-S050"] == "info"
    assert "KT-S051" not in codes  # tc matches what Kata was configured with


def test_healthy_sandboxes_get_no_warning(annotated: Snapshot) -> None:
    for pod in ("web-0", "api-1", "web-9", "macvtap-5", "hostnet-6"):
        bad = {c: s for c, s in _codes(annotated, pod).items() if s != "info"}
        assert not bad, (pod, bad)
    rs = next(s for s in annotated.sandboxes if s.runtime == "rs")
    assert all(f.severity == "info" for f in rs.findings)


def test_check_json_and_snapshot_agree(demo_lab: tuple[Layout, Manifest]) -> None:
    layout, _ = demo_lab
    chk = subprocess.run([sys.executable, "-m", "kata_top", "check", "--json", "--run-root",
                          layout.run_root], capture_output=True, text=True, cwd=ROOT,
                         check=False)
    assert chk.returncode == 1  # criticals are planted
    snap = subprocess.run([sys.executable, "-m", "kata_top", "snapshot", "--json",
                           "--run-root", layout.run_root], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    # `check` measures rates over a second; a one-shot snapshot has none, so the findings
    # judged on rates (those with hysteresis, `quiet_cycles`) are only in check's
    from_check = {(f["sandbox"], f["code"]) for f in json.loads(chk.stdout)["findings"]
                  if f["sandbox"] and "quiet_cycles" not in f["evidence"]}
    from_snap = {(sb["id"], f["code"]) for sb in json.loads(snap.stdout)["sandboxes"]
                 for f in sb["findings"]}
    assert from_check == from_snap


def test_check_exit_codes(demo_lab: tuple[Layout, Manifest]) -> None:
    layout, man = demo_lab
    healthy = next(s for s in man.sandboxes if s.spec.pod_name == "web-0")

    def check(*args: str) -> int:
        return subprocess.run([sys.executable, "-m", "kata_top", "check", "--run-root",
                               layout.run_root, *args], capture_output=True, cwd=ROOT,
                              check=False).returncode

    # host warnings (no /dev/vhost-net here) count too: the exit tells about the whole node
    assert check("--sandbox", "no-out-redirect-3") == 1
    assert check("--sandbox", "nope/nope") == 2
    assert healthy


def test_kernel_probe_leaves_nothing_behind() -> None:
    need_root()
    before = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    results = hostcheck.probe_kernel()
    assert {r.name for r in results} >= {"tun", "sch_ingress", "cls_u32+act_mirred", "sch_htb"}
    assert all(r.ok for r in results if r.name in ("tun", "sch_ingress", "cls_u32+act_mirred"))
    assert subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout == before


def test_rate_limiters_not_where_kata_puts_them(scratch_lab: Layout) -> None:
    """macvtap: a tx HTB on an ifb that nothing is redirected to shapes nothing (KT-S052),
    until the tap's ingress feeds it; tcfilter: a Kata-shaped HTB on an ifb is not where Kata
    puts tx (KT-S053)."""
    from kata_top.lab import build
    from kata_top.lab.network import rate_limit_lines, redirect_lines, run_batch

    man = build.up(scratch_lab, build.UpOptions(sandboxes=6, qemu=True, guest=False,
                                                scenario="demo"))
    by_pod = {sb.spec.pod_name: sb for sb in man.sandboxes}
    mac, web = by_pod["macvtap-5"], by_pod["web-0"]
    assert mac.netns and web.netns

    def findings(pod: str) -> dict[str, Any]:
        engine = Engine(EngineOptions(run_root=scratch_lab.run_root, with_vmm=False))
        try:
            sb = next(s for s in diagnose.annotate(engine.collect().snapshot).sandboxes
                      if s.pod.name == pod)
        finally:
            engine.close()
        return {f.code: f for f in sb.findings}

    run_batch(["ip", "-n", mac.netns], ["link add ifb0 type ifb", "link set ifb0 up"])
    run_batch(["tc", "-n", mac.netns], rate_limit_lines("ifb0", 10_000_000))
    f = findings("macvtap-5")["KT-S052"]
    assert f.severity == "warning" and f.evidence == {"ifb": "ifb0", "tap": "tap0_kata"}
    run_batch(["tc", "-n", mac.netns], ["qdisc add dev tap0_kata ingress",
                                        *redirect_lines("tap0_kata", "ifb0")])
    fed = findings("macvtap-5")
    assert "KT-S052" not in fed and "KT-S053" not in fed
    # Kata's own macvtap tx shape, but by hand: the sandbox's TxRateLimiterMaxRate is 0
    assert fed["KT-S054"].evidence["dev"] == "ifb0" and fed["KT-S054"].evidence["shape"] == \
        "kata-htb"

    run_batch(["ip", "-n", web.netns], ["link add ifb1 type ifb", "link set ifb1 up"])
    run_batch(["tc", "-n", web.netns], rate_limit_lines("ifb1", 10_000_000))
    assert findings("web-0")["KT-S053"].evidence == {"dev": "ifb1", "model": "tcfilter"}


def test_virtiofsd_left_behind(scratch_lab: Layout) -> None:
    """A virtiofsd whose sandbox has neither state nor VMM shows as an orphan row with
    KT-S024; the lab's real sandbox beside it gets no such finding."""
    import secrets
    from dataclasses import replace

    from kata_top.lab import build
    from kata_top.lab.processes import start_virtiofsd

    man = build.up(scratch_lab, build.UpOptions(sandboxes=1, qemu=False, scenario="plain"))
    ghost = replace(man.sandboxes[0].spec, id=secrets.token_hex(32))
    os.makedirs(scratch_lab.vm_dir(ghost), mode=0o700)
    pid = start_virtiofsd(scratch_lab, ghost)  # ended by the fixture's lab down
    engine = Engine(EngineOptions(run_root=scratch_lab.run_root, with_vmm=False))
    try:
        snap = diagnose.annotate(engine.collect().snapshot)
    finally:
        engine.close()
    row = next(s for s in snap.sandboxes if s.id == ghost.id)
    assert row.state == "orphan" and [v.pid for v in row.virtiofsd] == [pid]
    f = next(f for f in row.findings if f.code == "KT-S024")
    assert f.severity == "warning" and f.evidence["pids"] == [pid] and f"kill {pid}" in f.fix
    real = next(s for s in snap.sandboxes if s.id == man.sandboxes[0].spec.id)
    assert not any(f.code in ("KT-S021", "KT-S024") for f in real.findings)


def test_network_namespace_left_behind(scratch_lab: Layout) -> None:
    """A named namespace with a Kata tap nobody holds and no sandbox using it: KT-H030 from
    `check`; the lab's own namespaces (in use) are not named."""
    from kata_top.lab import build
    from kata_top.lab.network import run_batch

    man = build.up(scratch_lab, build.UpOptions(sandboxes=1, qemu=True, guest=False,
                                                scenario="plain"))
    ghost = f"{scratch_lab.prefix}-cni-left"
    run_batch(["ip"], [f"netns add {ghost}"])  # removed by the fixture's lab down (prefix)
    run_batch(["ip", "-n", ghost], ["tuntap add dev tap0_kata mode tap",
                                    "link set tap0_kata up"])
    out = subprocess.run([sys.executable, "-m", "kata_top", "check", "--json", "--run-root",
                          scratch_lab.run_root], capture_output=True, text=True, cwd=ROOT,
                         check=False)
    found = [f for f in json.loads(out.stdout)["findings"] if f["code"] == "KT-H030"]
    mine = [f for f in found if f["evidence"]["netns"] == ghost]
    assert len(mine) == 1 and mine[0]["evidence"]["taps"] == ["tap0_kata"]
    assert mine[0]["severity"] == "warning" and f"ip netns delete {ghost}" in mine[0]["fix"]
    own = {sb.netns for sb in man.sandboxes} | {scratch_lab.node_ns}
    assert not [f for f in found if f["evidence"]["netns"] in own]
