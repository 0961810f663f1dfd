"""The engine on a real lab: counters agree with iproute2, faults stay inside their sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from kata_top.engine import Engine, EngineOptions
from kata_top.lab import build
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from kata_top.model import Sandbox, Snapshot
from tests.helpers import ROOT, need_qemu, ns_names


def _collect(layout: Layout, **kw: object) -> Snapshot:
    engine = Engine(EngineOptions(run_root=layout.run_root, **kw))  # type: ignore[arg-type]
    try:
        return engine.collect().snapshot
    finally:
        engine.close()


def _by_pod(snap: Snapshot, name: str) -> Sandbox:
    return next(sb for sb in snap.sandboxes if sb.pod.name == name)


def _tc(ns: str, *args: str) -> list[dict[str, object]]:
    out = subprocess.run(["tc", "-n", ns, "-s", "-j", *args], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout or "[]")  # type: ignore[no-any-return]


def _ip_links(ns: str) -> dict[str, dict[str, object]]:
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show"], capture_output=True,
                         text=True, check=True)
    return {lk["ifname"]: lk for lk in json.loads(out.stdout)}


def test_every_lab_sandbox_is_found(demo_lab: tuple[Layout, Manifest]) -> None:
    layout, man = demo_lab
    snap = _collect(layout)
    assert {sb.id for sb in snap.sandboxes} == {s.spec.id for s in man.sandboxes}
    states = {sb.pod.name or sb.runtime: sb.state for sb in snap.sandboxes}
    dead = next(s for s in man.sandboxes if "dead-vmm" in s.spec.faults)
    assert states[dead.spec.pod_name] == "stale"
    assert all(st == "running" for name, st in states.items() if name != dead.spec.pod_name)
    rs = next(sb for sb in snap.sandboxes if sb.runtime == "rs")
    assert rs.network_model == "tcfilter" and rs.redirects


def test_counters_match_iproute2(demo_lab: tuple[Layout, Manifest]) -> None:
    """kata-top's value <= iproute2's read right after, for links, qdiscs and mirred."""
    layout, man = demo_lab
    snap = _collect(layout)
    for spec in (s.spec for s in man.sandboxes if s.netns):
        sb = next(x for x in snap.sandboxes if x.id == spec.id)
        ns = layout.pod_ns(spec)
        links = _ip_links(ns)
        for lk in sb.links:
            st = links[lk.name]["stats64"]  # type: ignore[index]
            assert lk.stats.rx_packets <= st["rx"]["packets"]  # type: ignore[index]
            assert lk.stats.tx_bytes <= st["tx"]["bytes"]  # type: ignore[index]
            assert lk.mtu == links[lk.name]["mtu"]
        qd = _tc(ns, "qdisc", "show")
        for q in sb.qdiscs:
            theirs = [x for x in qd if x["dev"] == q.dev and x["kind"] == q.kind]
            assert theirs, (q.dev, q.kind)
            assert q.stats.packets <= theirs[0]["packets"]  # type: ignore[operator]
        for dev in {f.dev for f in sb.filters}:
            acts = [a for f in _tc(ns, "filter", "show", "dev", dev, "ingress")
                    for a in f.get("options", {}).get("actions", [])]  # type: ignore[attr-defined]
            ours = [a for f in sb.filters if f.dev == dev for a in f.actions]
            assert len(ours) == len(acts)
            for a, b in zip(ours, acts, strict=True):
                assert a.kind == b["kind"]
                assert a.stats.packets <= b["stats"]["packets"]


def test_routes_match_iproute2(demo_lab: tuple[Layout, Manifest]) -> None:
    """Each pod namespace's main-table unicast routes as `ip -j route` lists them, with the
    MTU metric where one is set."""
    layout, man = demo_lab
    snap = _collect(layout)
    seen_mtu = False
    for spec in (s.spec for s in man.sandboxes if s.netns):
        sb = next(x for x in snap.sandboxes if x.id == spec.id)
        theirs = []
        for fam in ("-4", "-6"):
            out = subprocess.run(["ip", fam, "-n", layout.pod_ns(spec), "-j", "route", "show",
                                  "table", "main"], capture_output=True, text=True, check=True)
            for r in json.loads(out.stdout or "[]"):
                if r.get("type", "unicast") != "unicast":
                    continue
                dst = r["dst"] if r["dst"] == "default" or "/" in r["dst"] else \
                    f"{r['dst']}/{32 if fam == '-4' else 128}"
                mtu = next((m["mtu"] for m in r.get("metrics", []) if "mtu" in m), None)
                theirs.append((dst, r.get("dev"), r.get("gateway"), mtu))
        ours = [(r.dst, r.dev, r.gateway, r.mtu) for r in sb.routes]
        assert sorted(ours, key=str) == sorted(theirs, key=str), spec.pod_name
        seen_mtu = seen_mtu or any(r.mtu for r in sb.routes)
    assert seen_mtu  # the demo's route-mtu fault was read


def test_idle_counters_equal_iproute2(scratch_lab: Layout) -> None:
    """Once a sandbox is idle (a new namespace sends IPv6 ND for a few seconds), equal."""
    build.up(scratch_lab, build.UpOptions(sandboxes=2, qemu=False, scenario="plain"))
    man = Manifest.load(scratch_lab.run_root)
    assert man is not None

    def compare() -> list[tuple[int, int, int, int]]:
        snap = _collect(scratch_lab)
        out = []
        for spec in (s.spec for s in man.sandboxes):
            sb = next(x for x in snap.sandboxes if x.id == spec.id)
            acts = [a for f in _tc(scratch_lab.pod_ns(spec), "filter", "show", "dev", "eth0",
                                   "ingress")
                    for a in f.get("options", {}).get("actions", [])]  # type: ignore[attr-defined]
            red_in = next(r for r in sb.redirects if r.direction == "in")
            out.append((red_in.packets, sum(a["stats"]["packets"] for a in acts),
                        red_in.bytes, sum(a["stats"]["bytes"] for a in acts)))
        return out

    deadline = time.monotonic() + 20
    while True:
        rows = compare()
        if all(a == b and c == d for a, b, c, d in rows) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(a == b and c == d for a, b, c, d in rows), rows


def test_redirects_limits_and_models(demo_lab: tuple[Layout, Manifest]) -> None:
    layout, _man = demo_lab
    snap = _collect(layout)
    web = _by_pod(snap, "web-0")
    assert {(r.direction, r.from_dev, r.to_dev, r.present) for r in web.redirects} == {
        ("in", "eth0", "tap0_kata", True), ("out", "tap0_kata", "eth0", True)}
    tap = next(lk for lk in web.links if lk.name == "tap0_kata")
    assert tap.kind == "tun" and tap.tun and tap.tun.type == "tap" and tap.tun.multi_queue
    eth0 = next(lk for lk in web.links if lk.name == "eth0")
    assert eth0.kind == "veth" and eth0.peer and eth0.peer.name and eth0.peer.name.startswith(
        "veth") and eth0.peer.netns == layout.node_ns
    broken = _by_pod(snap, "no-out-redirect-3")
    assert {r.direction: r.present for r in broken.redirects} == {"in": True, "out": False}
    throttled = _by_pod(snap, "throttled-2")
    assert {(r.direction, r.dev, r.rate_bps, r.shape) for r in throttled.rate_limits} == {
        ("in", "tap0_kata", 20_000_000, "kata-htb"), ("out", "eth0", 10_000_000, "kata-htb")}
    assert throttled.configured_rate_limits == {"in": 20_000_000, "out": 10_000_000}
    mtu = _by_pod(snap, "mtu-mismatch-4")
    assert next(lk for lk in mtu.links if lk.name == "eth0").peer.mtu == 1450  # type: ignore[union-attr]
    assert _by_pod(snap, "macvtap-5").network_model == "macvtap"
    hostnet = _by_pod(snap, "hostnet-6")
    assert hostnet.network_model == "none" and hostnet.netns.source == "proc"
    assert [lk.name for lk in hostnet.links] == ["tap0_kata"]


def test_vmm_sections(demo_lab: tuple[Layout, Manifest]) -> None:
    layout, man = demo_lab
    snap = _collect(layout)
    for spec in (s.spec for s in man.sandboxes):
        sb = next(x for x in snap.sandboxes if x.id == spec.id)
        v = sb.vmm
        assert v is not None
        if "dead-vmm" in spec.faults:
            assert v.status == "dead"
            continue
        if spec.extra_monitor:
            assert v.source == "extra-monitor", v
            assert v.status == "running"
            assert v.monitor_kind == spec.extra_monitor
            assert v.name == f"sandbox-{spec.id}"
            nic = v.nics[0]
            assert nic.mac == sb.guest_mac
            assert nic.tap == "tap0_kata"
            assert v.query_ms is not None and v.query_ms > 0
        else:
            assert v.source == "proc" and v.status == "unknown"
            assert v.reason and "extra_monitor_socket" in v.reason
            assert v.memory_bytes == 128 << 20 and v.vcpus == 1
            if spec.model != "macvtap":
                assert "tap0_kata" in v.taps_held
        assert sb.virtiofsd and sb.virtiofsd[0].alive
        assert sb.virtiofsd[0].thread_pool_size == 1


def test_vmm_monitors_are_asked_at_most_every_refresh(demo_lab: tuple[Layout, Manifest]) -> None:
    layout, man = demo_lab
    with_monitor = {s.spec.id for s in man.sandboxes
                    if s.spec.extra_monitor and "dead-vmm" not in s.spec.faults}
    assert with_monitor

    def asked(snap: Snapshot) -> dict[str, float | None]:
        return {sb.id: sb.vmm.queried_at if sb.vmm else None for sb in snap.sandboxes
                if sb.id in with_monitor}

    engine = Engine(EngineOptions(run_root=layout.run_root, vmm_refresh_s=60.0))
    try:
        first = asked(engine.collect().snapshot)
        assert all(t is not None for t in first.values())
        time.sleep(0.05)
        assert asked(engine.collect().snapshot) == first  # reused: no monitor was opened
        fresh = asked(engine.collect(fresh_vmm=True).snapshot)  # `r` in the dashboard
        assert all(fresh[sid] > first[sid] for sid in first)  # type: ignore[operator]
    finally:
        engine.close()
    every = Engine(EngineOptions(run_root=layout.run_root))  # snapshot: always asks
    try:
        a = asked(every.collect().snapshot)
        time.sleep(0.05)
        b = asked(every.collect().snapshot)
        assert all(b[sid] > a[sid] for sid in a)  # type: ignore[operator]
    finally:
        every.close()


def test_default_path_never_touches_qmp_sock(demo_lab: tuple[Layout, Manifest]) -> None:
    """Audit hooks see every connect(): none may go to a Kata-managed qmp.sock."""
    layout, man = demo_lab
    code = f"""
import sys
seen = []
sys.addaudithook(lambda ev, args: seen.append(str(args[1])) if ev == "socket.connect" else None)
from kata_top.engine import Engine, EngineOptions
e = Engine(EngineOptions(run_root={layout.run_root!r}))
for _ in range(3):
    e.collect()
e.close()
bad = [a for a in seen if a.endswith("qmp.sock")]
print(len(seen), len(bad))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    total, bad = map(int, out.stdout.split())
    assert total > 0 and bad == 0
    # the shim stand-in keeps its 5 s queries going
    sb = next(s for s in man.sandboxes if not s.spec.faults)
    log = os.path.join(layout.vm_dir(sb.spec), "shim.log")
    with open(log) as fh:
        assert all(line.split()[2] == "running" for line in fh.read().splitlines())


def test_qmp_primary_on_held_socket_is_busy_and_closed(demo_lab: tuple[Layout, Manifest]) -> None:
    layout, man = demo_lab
    spec = next(s.spec for s in man.sandboxes if not s.spec.extra_monitor and not s.spec.faults
                and s.spec.model == "tcfilter" and s.spec.runtime == "go")
    fds_before = len(os.listdir("/proc/self/fd"))
    engine = Engine(EngineOptions(run_root=layout.run_root, qmp_primary=True,
                                  primary_deadline=0.3))
    t0 = time.monotonic()
    snap = engine.collect().snapshot
    elapsed = time.monotonic() - t0
    sb = next(x for x in snap.sandboxes if x.id == spec.id)
    assert sb.vmm is not None and sb.vmm.reason and sb.vmm.reason.startswith("busy")
    assert elapsed < 30  # the 0.3 s deadline ended it; the runtime's stand-in holds it forever
    engine.close()
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_faults_stay_in_their_sandbox(scratch_lab: Layout) -> None:
    man = build.up(scratch_lab, build.UpOptions(sandboxes=4, qemu=False, scenario="plain"))
    a, b, c, _d = man.sandboxes
    # a truncated persist.json, an empty one, and a namespace deleted under the engine
    assert a.state_file and b.state_file
    with open(a.state_file, "w") as fh:
        fh.write('{"State": "running", "Network": {')
    with open(b.state_file, "w") as fh:
        fh.write("")
    subprocess.run(["ip", "netns", "del", scratch_lab.pod_ns(c.spec)], check=True)
    before = ns_names()
    snap = _collect(scratch_lab)
    assert ns_names() == before, "reading created a namespace"
    by_id = {sb.id: sb for sb in snap.sandboxes}
    assert len(by_id) == 4
    assert by_id[a.spec.id].state == "corrupt" and by_id[a.spec.id].errors
    assert "corrupt" in by_id[a.spec.id].errors[0].message
    assert by_id[b.spec.id].state == "corrupt"
    assert any("gone" in e.message for e in by_id[c.spec.id].errors)
    healthy = by_id[_d.spec.id]
    assert not healthy.errors and healthy.redirects and all(r.present for r in healthy.redirects)


def test_unreadable_state_dir_and_garbage(scratch_lab: Layout) -> None:
    man = build.up(scratch_lab, build.UpOptions(sandboxes=2, qemu=False, scenario="plain"))
    a = man.sandboxes[0]
    assert a.state_file
    with open(a.state_file, "w") as fh:
        json.dump([1, 2, 3], fh)
    bogus = os.path.join(scratch_lab.run_root, "vc", "sbs", "f" * 64)
    os.makedirs(bogus)
    os.chmod(bogus, 0)
    snap = _collect(scratch_lab)
    assert len(snap.sandboxes) == 3
    errs = {sb.id: sb.errors for sb in snap.sandboxes}
    assert errs[a.spec.id] and "not an object" in errs[a.spec.id][0].message


def test_vmm_exiting_mid_collection(scratch_lab: Layout) -> None:
    need_qemu()
    man = build.up(scratch_lab, build.UpOptions(sandboxes=2, scenario="tcfilter"))
    victim = man.sandboxes[0]
    assert victim.qemu_pid
    engine = Engine(EngineOptions(run_root=scratch_lab.run_root))
    engine.collect()
    os.kill(victim.qemu_pid, signal.SIGKILL)
    snap = engine.collect().snapshot
    engine.close()
    sb = next(x for x in snap.sandboxes if x.id == victim.spec.id)
    other = next(x for x in snap.sandboxes if x.id != victim.spec.id)
    assert sb.vmm is not None and sb.vmm.status == "dead" and sb.state == "stale"
    assert other.vmm is not None and other.vmm.status == "running"


def test_not_root_still_prints(demo_lab: tuple[Layout, Manifest]) -> None:
    """As an unprivileged user: exit 3, a complete JSON document, and the reason."""
    import io
    from contextlib import redirect_stdout

    import kata_top.collectors.hostcheck  # noqa: F401 - imported before the uid drops
    from kata_top.cli.main import main

    layout, _ = demo_lab
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to nobody, run the CLI, hand back exit code and output
        os.close(r)
        code = 99
        try:
            # Once as root first, output dropped: every module the command imports lazily is
            # loaded before the interpreter's own files may become unreadable (a Python
            # installed under a 0700 /root).
            with redirect_stdout(io.StringIO()):
                main(["snapshot", "--json", "--run-root", layout.run_root])
            os.setgroups([])
            os.setegid(65534)
            os.seteuid(65534)
            buf = io.StringIO()
            with redirect_stdout(buf):
                code = main(["snapshot", "--json", "--run-root", layout.run_root])
            os.write(w, f"{code}\n{buf.getvalue()}".encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    code_s, _, body = data.decode().partition("\n")
    assert int(code_s) == 3
    doc = json.loads(body)
    assert doc["schema"] == "kata-top/snapshot/1"
    assert any("root" in e["message"] for e in doc["errors"])


def test_json_output_follows_the_committed_schema(demo_lab: tuple[Layout, Manifest]) -> None:
    import jsonschema

    from kata_top.formats.schema_gen import snapshot_schema

    committed_path = os.path.join(ROOT, "kata_top",
                                  "formats", "schema", "snapshot-1.json")
    with open(committed_path) as fh:
        committed = json.load(fh)
    assert committed == snapshot_schema(), "regenerate: python -m kata_top.formats.schema_gen"
    layout, _ = demo_lab
    out = subprocess.run([sys.executable, "-m", "kata_top", "snapshot", "--watch", "0.3",
                          "--count", "2", "--run-root", layout.run_root], capture_output=True,
                         text=True, check=True,
                         cwd=ROOT)
    lines = out.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        jsonschema.validate(json.loads(line), committed)
    second = json.loads(lines[1])
    assert any(sb["rates"] for sb in second["sandboxes"])


def test_ipv6_disabled_is_read_from_the_kernel(scratch_lab: Layout) -> None:
    need_qemu()  # a sandbox without a VMM is stale and reports only that
    man = build.up(scratch_lab, build.UpOptions(sandboxes=1, scenario="plain"))
    ns = scratch_lab.pod_ns(man.sandboxes[0].spec)
    subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                    "net.ipv6.conf.tap0_kata.disable_ipv6=1"], check=True)
    from kata_top.diagnose import annotate

    sb = annotate(_collect(scratch_lab)).sandboxes[0]
    links = {lk.name: lk for lk in sb.links}
    assert links["tap0_kata"].ipv6_disabled is True and links["eth0"].ipv6_disabled is False
    assert any(f.code == "KT-S014" for f in sb.findings)
