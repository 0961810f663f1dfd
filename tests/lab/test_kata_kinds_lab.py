"""A node of every runtime x VMM Kata ships, as Kata's source leaves it (scenario `kinds`).

One test per point of issue #30's "Why": Cloud Hypervisor is asked (by Content-Length, one
connection at a time), runtime-rs pods are named from the shim's bundle, a jailed Firecracker
runs (its metrics FIFO never opened), Dragonball is read from the shim, l3forwarding shows as
itself, and the lab's runtime-rs state carries no pid or api_socket.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kata_top.engine import EngineOptions
from kata_top.formats import prometheus
from kata_top.lab import build, traffic, vmms
from kata_top.lab.layout import Layout
from kata_top.lab.manifest import LabSandbox, Manifest
from kata_top.lab.network import guest_mac
from kata_top.lab.scenario import KIND_SCENARIOS
from kata_top.model import Sandbox, Snapshot
from kata_top.pipeline import Pipeline
from tests.helpers import ROOT, make_layout, need_qemu, running_lab

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def kinds_lab() -> Iterator[tuple[Layout, Manifest]]:
    need_qemu()
    with running_lab("k", build.UpOptions(sandboxes=len(KIND_SCENARIOS), scenario="kinds",
                                          guest=False)) as lab:
        yield lab


def _collect(layout: Layout) -> Snapshot:
    """One snapshot with its findings, as `kata-top snapshot` takes it."""
    pipe = Pipeline(EngineOptions(run_root=layout.run_root, one_shot=True), host_every_s=None,
                    events=False)
    try:
        return pipe.next()
    finally:
        pipe.close()


def _by_kind(man: Manifest) -> dict[str, LabSandbox]:
    out = {}
    for sb in man.sandboxes:
        for kind, (rt, hv, model) in KIND_SCENARIOS.items():
            if (sb.spec.runtime, sb.spec.hypervisor, sb.spec.model) == (rt, hv, model):
                out[kind] = sb
    return out


def _sandbox(snap: Snapshot, sb: LabSandbox) -> Sandbox:
    return next(s for s in snap.sandboxes if s.id == sb.spec.id)


def test_cloud_hypervisor_is_asked(kinds_lab: tuple[Layout, Manifest]) -> None:
    layout, man = kinds_lab
    kinds = _by_kind(man)
    ips = [kinds[k].spec.ip for k in ("go-clh", "rs-clh")]
    traffic.run(f"{man.prefix}-node", ips, 1.0, 50)
    snap = _collect(layout)
    for kind in ("go-clh", "rs-clh"):
        sb = _sandbox(snap, kinds[kind])
        assert sb.state == "running" and sb.vmm is not None, kind
        assert sb.vmm.source == "api" and sb.vmm.status == "running", (kind, sb.vmm)
        assert sb.vmm.version == "48.0.0" and sb.vmm.vcpus == 1
        nic = sb.vmm.nics[0]
        assert nic.tap == "tap0_kata" and nic.mac == guest_mac(kinds[kind].spec)
        # the VMM's own counters: packets the redirect sent into the tap reached the VMM
        assert nic.rx_frames and nic.rx_bytes, (kind, nic)
        assert sb.vmm.sources["counters"] == "GET /api/v1/vm.counters"
        assert sb.vmm.query_ms is not None and sb.vmm.query_ms < 500
    text = prometheus.render(snap)
    assert text.count("kata_top_vmm_nic_rx_frames_total{") == 2


def test_runtime_rs_pods_are_named_from_the_bundle(kinds_lab: tuple[Layout, Manifest]) -> None:
    layout, man = kinds_lab
    snap = _collect(layout)
    rs = [sb for sb in man.sandboxes if sb.spec.runtime == "rs"]
    assert len(rs) == 4
    for sb in rs:
        got = _sandbox(snap, sb)
        assert (got.pod.namespace, got.pod.name) == (sb.spec.pod_namespace, sb.spec.pod_name)
        assert got.pod.uid


IN_OPEN = 0x20


def _watch_opens(paths: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = int(libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
    assert fd >= 0
    for p in paths:
        assert libc.inotify_add_watch(fd, p.encode(), IN_OPEN) >= 0
    return fd


def _opened(fd: int) -> bool:
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False


def test_a_jailed_firecracker_runs_and_its_fifos_stay_the_shims(
        kinds_lab: tuple[Layout, Manifest]) -> None:
    layout, man = kinds_lab
    fc = _by_kind(man)["go-fc"]
    fifos = [os.path.join(layout.fc_vm_path(fc.spec), name) for name in vmms.FC_FIFOS]
    watch = _watch_opens(fifos)
    try:
        snap = _collect(layout)
        subprocess.run([sys.executable, "-m", "kata_top", "--run-root", layout.run_root,
                        "snapshot", "--json"], check=True, capture_output=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=ROOT))
        assert not _opened(watch), "kata-top opened Firecracker's metrics or log FIFO"
    finally:
        os.close(watch)
    sb = _sandbox(snap, fc)
    assert sb.state == "running" and sb.hypervisor.alive
    assert sb.hypervisor.pid == fc.vmm_standin_pid
    assert not [f for f in sb.findings if f.code == "KT-S020"]
    assert sb.vmm is not None and sb.vmm.source == "api" and sb.vmm.status == "running"
    nic = sb.vmm.nics[0]
    assert nic.tap == "tap0_kata" and nic.rx_rate_bps == fc.spec.rx_rate_bps
    led = vmms.read_ledger(layout, fc.spec)
    assert all(method == "GET" for _pid, method, _path in led["requests"])  # type: ignore


def test_dragonball_is_read_from_the_shim(kinds_lab: tuple[Layout, Manifest]) -> None:
    layout, man = kinds_lab
    db = _by_kind(man)["rs-dragonball"]
    sb = _sandbox(_collect(layout), db)
    assert sb.state == "running" and sb.hypervisor.kind == "dragonball"
    assert sb.hypervisor.pid == db.shim_pid and sb.shim and sb.shim.pid == db.shim_pid
    assert sb.vmm is not None and sb.vmm.source == "proc"
    assert len(sb.vmm.vcpu_threads) == 1 and sb.vmm.taps_held == ("tap0_kata",)
    assert "no API socket" in (sb.vmm.reason or "")


def test_runtime_rs_extra_monitor_is_found_in_qemus_working_directory(
        kinds_lab: tuple[Layout, Manifest]) -> None:
    """runtime-rs gives QEMU `-monitor unix:path=debug-monitor.sock` (HMP), relative to the
    bundle QEMU runs in; qmp.sock, bound there by the shim, is never touched."""
    layout, man = kinds_lab
    rs = _by_kind(man)["rs-qemu"]
    sb = _sandbox(_collect(layout), rs)
    assert sb.vmm is not None and sb.vmm.source == "extra-monitor", sb.vmm
    assert sb.vmm.monitor_kind == "hmp" and sb.vmm.status == "running"
    assert os.path.exists(os.path.join(layout.bundle_dir(rs.spec), "qmp.sock"))


def test_l3forwarding_is_shown_as_itself(kinds_lab: tuple[Layout, Manifest]) -> None:
    layout, man = kinds_lab
    sb = _sandbox(_collect(layout), _by_kind(man)["rs-l3fwd"])
    assert sb.network_model == "l3forwarding" and sb.endpoint == "virtual"
    assert sb.redirects == ()
    assert not [f for f in sb.findings if f.severity != "info" and f.code != "KT-S040"], \
        sb.findings


def test_the_labs_runtime_rs_state_is_what_runtime_rs_saves(
        kinds_lab: tuple[Layout, Manifest]) -> None:
    _layout, man = kinds_lab
    for sb in man.sandboxes:
        if sb.spec.runtime != "rs":
            continue
        assert sb.state_file is not None
        with open(sb.state_file) as fh:
            hv = json.load(fh)["hypervisor"]
        assert hv["pid"] is None and hv["api_socket"] == "" and hv["virtiofs_daemon_pid"] == 0
        assert (hv["netns"] is None) == (sb.spec.hypervisor == "qemu")


def test_no_vmm_api_sees_two_kata_top_connections(kinds_lab: tuple[Layout, Manifest]) -> None:
    """Four engines in this process and three `snapshot` processes at once: at the stand-in,
    no kata-top process ever has more than one connection open; the shim keeps its one."""
    layout, man = kinds_lab
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-m", "kata_top", "--run-root",
                               layout.run_root, "snapshot", "--json"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(3)]
    errors: list[BaseException] = []

    def engine() -> None:
        try:
            for _ in range(3):
                _collect(layout)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=engine) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for p in procs:
        assert p.wait(timeout=120) == 0
    assert not errors
    asked = 0
    for sb in man.sandboxes:
        if sb.spec.hypervisor not in ("clh", "firecracker"):
            continue
        led: dict[str, Any] = vmms.read_ledger(layout, sb.spec)
        by_pid = {int(k): v for k, v in led["max_by_pid"].items()}
        assert by_pid.pop(sb.shim_pid) == 1  # Kata's runtime: one for the VM's life
        assert by_pid and max(by_pid.values()) == 1, led["max_by_pid"]
        assert led["full"] == 0
        asked += len(by_pid)
    assert asked >= 3 * 4  # every CH/FC sandbox was asked by this process and each snapshot


@pytest.mark.parametrize("scenario", list(KIND_SCENARIOS))
def test_each_kind_is_a_lab_up_scenario(scenario: str) -> None:
    need_qemu()
    layout = make_layout("c")
    env = dict(os.environ, PYTHONPATH=ROOT)
    base = [sys.executable, "-m", "kata_top"]
    lab = [*base, "lab", "--run-root", layout.run_root, "--prefix", layout.prefix]
    try:
        subprocess.run([*lab, "up", "--scenario", scenario, "--sandboxes", "1", "--no-guest"],
                       check=True, capture_output=True, timeout=120, env=env)
        out = subprocess.run([*base, "--run-root", layout.run_root, "snapshot", "--json"],
                             check=True, capture_output=True, timeout=60, env=env, text=True)
        (sb,) = json.loads(out.stdout)["sandboxes"]
        runtime, hypervisor, model = KIND_SCENARIOS[scenario]
        assert (sb["runtime"], sb["network_model"], sb["state"]) == (runtime, model, "running")
        assert sb["hypervisor"]["kind"] == {"clh": "cloud-hypervisor"}.get(hypervisor,
                                                                             hypervisor)
        assert sb["pod"]["name"] == f"{scenario}-0"
    finally:
        subprocess.run([*lab, "down"], capture_output=True, timeout=60, env=env)
