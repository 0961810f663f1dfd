"""The lab builds real Kata-shaped sandboxes and removes every trace of them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from kata_top.collectors import state
from kata_top.collectors.procs import pid_alive
from kata_top.lab import build, processes
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import Manifest
from kata_top.lab.network import LabError
from tests.helpers import make_layout, need_qemu, need_root, ns_names


def _root_links() -> list[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True,
                         check=True)
    return sorted(lk["ifname"] for lk in json.loads(out.stdout))


def test_demo_lab_has_every_model_and_fault(demo_lab: tuple[Layout, Manifest]) -> None:
    _layout, man = demo_lab
    models = {sb.spec.model for sb in man.sandboxes}
    faults = set().union(*(sb.spec.faults for sb in man.sandboxes))
    assert models == {"tcfilter", "macvtap", "none"}
    assert faults == {"no-out-redirect", "mtu", "dead-vmm", "stale-shim-monitor", "route-mtu"}
    assert {sb.spec.runtime for sb in man.sandboxes} == {"go", "rs"}
    assert any(sb.spec.rx_rate_bps and sb.spec.tx_rate_bps for sb in man.sandboxes)
    for sb in man.sandboxes:
        assert len(sb.spec.id) == 64 and int(sb.spec.id, 16) >= 0
        if sb.netns:
            assert sb.netns in ns_names()


def test_state_files_parse_as_kata_schema(demo_lab: tuple[Layout, Manifest]) -> None:
    layout, man = demo_lab
    for sb in man.sandboxes:
        assert sb.state_file and os.path.exists(sb.state_file)
        rec = state.read_state_file(sb.spec.id, sb.state_file, sb.spec.runtime)
        assert rec.error is None
        assert rec.hypervisor == "qemu"
        # runtime-rs's QEMU save() records no pid (crates/hypervisor/src/qemu/inner.rs)
        assert rec.hypervisor_pid == (sb.qemu_pid if sb.spec.runtime == "go" else None)
        if sb.spec.runtime == "go":
            assert rec.pod_name == sb.spec.pod_name
            assert rec.pod_namespace == sb.spec.pod_namespace
            assert rec.model == sb.spec.model
            assert rec.tap_name == "tap0_kata"
            assert rec.rx_rate_bps == sb.spec.rx_rate_bps
            if sb.spec.model != "none":
                assert rec.netns_path == layout.netns_path(sb.spec)
        vm = layout.vm_dir(sb.spec)
        for name in ("pid", "qmp.sock", "console.sock", "vhost-fs.sock"):
            # runtime-rs binds qmp.sock in its working directory, the bundle
            where = layout.bundle_dir(sb.spec) if sb.spec.runtime == "rs" and \
                name == "qmp.sock" else vm
            assert os.path.exists(os.path.join(where, name)), name
        assert os.path.exists(os.path.join(vm, "extra-monitor.sock")) == bool(
            sb.spec.extra_monitor)


def _greeting(path: str, timeout: float) -> bytes | None:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(path)
        return s.recv(4096)
    except TimeoutError:
        return None
    finally:
        s.close()


def test_qmp_single_client_rule_bites(demo_lab: tuple[Layout, Manifest]) -> None:
    layout, man = demo_lab
    sb = next(s for s in man.sandboxes if s.spec.extra_monitor == "qmp"
              and "dead-vmm" not in s.spec.faults)
    vm = layout.vm_dir(sb.spec)
    # The shim stand-in holds qmp.sock: a second client is never greeted.
    assert _greeting(os.path.join(vm, "qmp.sock"), 0.5) is None
    # The extra monitor is free and names the sandbox.
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    s.connect(os.path.join(vm, "extra-monitor.sock"))
    f = s.makefile("rwb", buffering=0)
    assert b"QMP" in f.readline()
    f.write(b'{"execute":"qmp_capabilities"}\n')
    f.readline()
    f.write(b'{"execute":"query-name"}\n')
    assert json.loads(f.readline())["return"]["name"] == f"sandbox-{sb.spec.id}"
    s.close()
    # The shim keeps querying every 5 s.
    log = os.path.join(vm, "shim.log")
    with open(log) as fh:
        assert "running" in fh.read()


def test_dead_vmm_leaves_state_behind(demo_lab: tuple[Layout, Manifest]) -> None:
    _layout, man = demo_lab
    sb = next(s for s in man.sandboxes if "dead-vmm" in s.spec.faults)
    assert sb.qemu_pid and not pid_alive(sb.qemu_pid)
    assert sb.state_file and os.path.exists(sb.state_file)


def test_no_qemu_lab_up_down_leaves_nothing(scratch_lab: Layout) -> None:
    before_links = _root_links()
    man = build.up(scratch_lab, build.UpOptions(sandboxes=5, qemu=False))
    assert len(man.sandboxes) == 5
    assert {n for n in ns_names() if n.startswith(scratch_lab.prefix)}
    assert _root_links() == before_links, "the lab touched the root namespace's links"
    report = build.down(scratch_lab)
    assert report.namespaces >= 5
    assert not [n for n in ns_names() if n.startswith(scratch_lab.prefix)]
    assert not os.path.exists(scratch_lab.run_root)
    assert processes.lab_pids(scratch_lab.run_root) == []
    again = build.down(scratch_lab)
    assert again.sentence(scratch_lab.run_root).startswith("nothing to remove")


def test_failed_up_is_undone(scratch_lab: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    need_qemu()
    calls = {"n": 0}
    real = processes.start_qemu

    def flaky(*args: object, **kw: object) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            raise LabError("injected failure")
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(processes, "start_qemu", flaky)
    with pytest.raises(LabError, match=r"injected failure.*removed"):
        build.up(scratch_lab, build.UpOptions(sandboxes=4, scenario="plain"))
    assert not [n for n in ns_names() if n.startswith(scratch_lab.prefix)]
    assert processes.lab_pids(scratch_lab.run_root) == []
    assert not os.path.exists(scratch_lab.run_root)


def test_down_sweeps_a_crashed_up_without_manifest(scratch_lab: Layout) -> None:
    build.up(scratch_lab, build.UpOptions(sandboxes=2, qemu=False))
    os.unlink(os.path.join(scratch_lab.lab_dir, "manifest.json"))
    build.down(scratch_lab)
    assert not [n for n in ns_names() if n.startswith(scratch_lab.prefix)]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kata_top", "lab", *args], capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("args,needle", [
    (["up", "--sandboxes", "0"], "at least 1"),
    (["up", "--sandboxes", "-3"], "at least 1"),
    (["up", "--scenario", "nope", "--no-qemu"], "unknown scenario"),
    (["up", "--accel", "xen", "--no-qemu"], "tcg or kvm"),
])
def test_bad_input_one_sentence_nothing_made(args: list[str], needle: str) -> None:
    need_root()
    layout = make_layout("b")
    before = ns_names()
    proc = _cli("--run-root", layout.run_root, "--prefix", layout.prefix, *args)
    assert proc.returncode != 0
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert ns_names() == before
    assert not os.path.exists(layout.run_root)


def test_up_twice_refuses_and_down_twice_is_fine(scratch_lab: Layout) -> None:
    common = ["--run-root", scratch_lab.run_root, "--prefix", scratch_lab.prefix]
    assert _cli(*common, "up", "--sandboxes", "2", "--no-qemu").returncode == 0
    again = _cli(*common, "up", "--sandboxes", "2", "--no-qemu")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert _cli(*common, "down").returncode == 0
    second = _cli(*common, "down")
    assert second.returncode == 0 and "nothing to remove" in second.stdout


def test_missing_qemu_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    need_root()
    layout = make_layout("q")
    monkeypatch.setattr(processes, "qemu_binary", lambda: None)
    with pytest.raises(LabError, match="qemu-system-x86_64 is not installed"):
        build.up(layout, build.UpOptions(sandboxes=1))
    assert not os.path.exists(layout.run_root)


def test_refuses_real_node_roots() -> None:
    for root in ("/run", "/run/vc", "/run/kata", "/"):
        with pytest.raises(ValueError):
            Layout(run_root=root, prefix="x")


def test_traffic_moves_the_redirect_counters(demo_lab: tuple[Layout, Manifest]) -> None:
    from kata_top.lab import traffic

    layout, man = demo_lab
    sb = next(s for s in man.sandboxes if s.spec.model == "tcfilter" and not s.spec.faults
              and not s.spec.rx_rate_bps)

    def mirred_packets() -> int:
        out = subprocess.run(["tc", "-n", layout.pod_ns(sb.spec), "-s", "-j", "filter", "show",
                              "dev", "eth0", "ingress"], capture_output=True, text=True,
                             check=True)
        total = 0
        for f in json.loads(out.stdout):
            for a in f.get("options", {}).get("actions", []):
                total += a.get("stats", {}).get("packets", 0)
        return total

    before = mirred_packets()
    res = traffic.run(layout.node_ns, [sb.spec.ip], seconds=1.0, rate_pps=50)
    time.sleep(0.1)
    assert res[sb.spec.ip].udp_sent >= 40
    assert mirred_packets() - before >= 40


def test_not_root_is_one_sentence_and_nothing_made() -> None:
    need_root()  # to drop privileges we must have them
    layout = make_layout("n")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        msg = "no error"
        try:
            os.setegid(65534)
            os.seteuid(65534)
            build.up(layout, build.UpOptions(sandboxes=1, qemu=False))
        except LabError as exc:
            msg = str(exc)
        finally:
            os.write(w, msg.encode())
            os._exit(0)
    os.close(w)
    msg = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert "needs root" in msg and msg.count(".") <= 1
    assert not os.path.exists(layout.run_root)
    assert not [n for n in ns_names() if n.startswith(layout.prefix)]
