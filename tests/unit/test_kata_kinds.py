"""Kata as its source leaves a node, per runtime and VMM: the parsers and the VMM API client.

The state files are the lab's writers (kata_top/lab/statefiles*.py, each field cited from
Kata's source); the API server is the lab's VMM stand-in (micro_http's rules) run as a plain
process on a socket in tmp_path.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kata_top import derive
from kata_top.collectors import bundle, state, vmm_api, vmm_http
from kata_top.collectors.procs import ProcessIndex, _short_id
from kata_top.collectors.vmm_find import attach
from kata_top.lab.layout import Layout
from kata_top.lab.scenario import build as build_specs
from kata_top.lab.statefiles import persist_json
from kata_top.lab.statefiles_rs import state_json
from kata_top.lab.vmm_standin import SOURCE
from kata_top.model import Link, LinkStats, Route

pytestmark = pytest.mark.timeout(60)
LAYOUT = Layout("/run/ktx", "ktx")


def _spec(kind: str) -> Any:
    return build_specs(kind, 1)[0]


# ---- state files ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rs-qemu", "rs-clh", "rs-dragonball", "rs-l3fwd"])
def test_runtime_rs_state_names_no_pid_no_api_socket(kind: str) -> None:
    spec = _spec(kind)
    rec = state.parse_rs_state(spec.id, "p", json.loads(json.dumps(state_json(LAYOUT, spec))))
    assert rec.error is None and rec.hypervisor == spec.hypervisor
    assert rec.hypervisor_pid is None and rec.api_socket is None and rec.pod_name is None
    # QEMU's save() keeps no netns; Cloud Hypervisor's and Dragonball's do
    assert (rec.netns_path is None) == (spec.hypervisor == "qemu")
    assert rec.endpoint_type == "virtual" and rec.tap_name == "tap0_kata"


def test_go_state_per_hypervisor() -> None:
    clh, fc, qemu = _spec("go-clh"), _spec("go-fc"), _spec("go-qemu")
    rec = state.parse_persist(clh.id, "p", persist_json(LAYOUT, clh, 7, 8, False))
    assert rec.api_socket == f"/run/ktx/vc/vm/{clh.id}/clh-api.sock"
    # pkg/hypervisors/hypervisor_state.go names it VirtiofsDaemonPid
    assert rec.virtiofsd_pid == 8 and rec.hypervisor == "clh" and rec.hypervisor_pid == 7
    rec = state.parse_persist(fc.id, "p", persist_json(LAYOUT, fc, 7, 8, False))
    assert rec.hypervisor_pid == 7 and rec.virtiofsd_pid is None and rec.api_socket is None
    rec = state.parse_persist(qemu.id, "p", persist_json(LAYOUT, qemu, 7, 8, False))
    assert rec.netns_path == LAYOUT.netns_path(qemu) and rec.virtiofsd_pid == 8


# ---- the VMM found without a pid -----------------------------------------------------------
def test_firecracker_found_by_its_truncated_id_and_dragonball_as_the_shim() -> None:
    fc, db = _spec("go-fc"), _spec("rs-dragonball")
    argv = ("/firecracker", "--id", fc.id[:32], "--start-time-us", "1", "--config-file",
            "/fcConfig.json")
    assert _short_id(argv) == fc.id[:32]
    idx = ProcessIndex(vmm_short={fc.id[:32]: 10}, shim={db.id: 20})
    idx.vmm_kind[fc.id[:32]] = "firecracker"
    records = {fc.id: state.StateRecord(id=fc.id, runtime="go", path="p",
                                        hypervisor="firecracker"),
               db.id: state.StateRecord(id=db.id, runtime="rs", path="p",
                                        hypervisor="dragonball")}
    attach(idx, records)
    assert idx.vmm == {fc.id: 10, db.id: 20}
    assert idx.vmm_kind[db.id] == "dragonball"


def test_api_socket_paths_from_kata_source() -> None:
    sid = "a" * 64
    assert vmm_api.api_socket("clh", sid, "rs", "/run", ()) == f"/run/kata/{sid}/ch-api.sock"
    assert vmm_api.api_socket("clh", sid, "go", "/run", ()) == f"/run/vc/vm/{sid}/clh-api.sock"
    assert vmm_api.api_socket("firecracker", sid, "go", "/run", ()) == \
        f"/run/vc/firecracker/{sid[:32]}/root/run/firecracker.socket"
    # the socket the state names, as a DaemonSet sees the host's /run under /host/run
    root = tempfile.mkdtemp(prefix="kt", dir="/tmp")
    sock = os.path.join(root, "vc", "vm", sid, "other.sock")
    os.makedirs(os.path.dirname(sock))
    s = socket.socket(socket.AF_UNIX)
    s.bind(sock)
    try:
        got = vmm_api.api_socket("clh", sid, "go", root, ("cloud-hypervisor",),
                                 recorded=f"/run/vc/vm/{sid}/other.sock")
        assert got == sock
    finally:
        s.close()
        shutil.rmtree(root)


# ---- the network model ---------------------------------------------------------------------
def _link(name: str, kind: str) -> Link:
    return Link(name=name, ifindex=1, kind=kind, mtu=1500, mac=None, operstate="up", up=True,
                carrier=True, stats=LinkStats())


def test_l3forwarding_is_its_own_model_and_netkit_an_endpoint_kind() -> None:
    links = [_link("eth0", "veth"), _link("tap0_kata", "tun")]
    routes = [Route(dst="10.0.0.5/32", dev="tap0_kata")]
    assert derive.infer_model(None, links, [], "tap0_kata", routes) == "l3forwarding"
    assert derive.infer_model(None, links, [], "tap0_kata", ()) == "none"
    assert derive.endpoint_kind(None, [_link("eth0", "netkit")], "eth0") == "netkit"


# ---- the bundle ----------------------------------------------------------------------------
def test_pod_from_the_shims_bundle(tmp_path: Any) -> None:
    spec = _spec("rs-clh")
    from kata_top.lab.bundle import oci_spec

    cwd = tmp_path / "4242" / "cwd"
    cwd.mkdir(parents=True)
    (cwd / "config.json").write_text(json.dumps(oci_spec(LAYOUT, spec)))
    assert bundle.pod_of_shim(4242, str(tmp_path))[:2] == (spec.pod_name, spec.pod_namespace)
    # a symlink in its place is never followed; a FIFO never blocks
    (cwd / "config.json").unlink()
    (cwd / "config.json").symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "elsewhere.json").write_text(json.dumps(oci_spec(LAYOUT, spec)))
    assert bundle.pod_of_shim(4242, str(tmp_path)) == (None, None, None)
    (cwd / "config.json").unlink()
    os.mkfifo(cwd / "config.json")
    assert bundle.pod_of_shim(4242, str(tmp_path)) == (None, None, None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=6),
    max_leaves=25)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_any_spec_is_names_or_none(doc: Any) -> None:
    names = bundle.parse_spec(json.dumps(doc).encode())
    assert all(n is None or isinstance(n, str) for n in names)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(vmm_api.CLH_PATHS + vmm_api.FC_PATHS), json_values))
def test_any_api_answer_is_facts_never_a_crash(answers: dict[str, Any]) -> None:
    for facts in (vmm_api.clh_facts(answers), vmm_api.fc_facts(answers)):
        assert facts["status"] in ("created", "running", "paused", "shutdown", "debug",
                                   "unknown")
        assert all(n.tap is None or isinstance(n.tap, str) for n in facts["nics"])


# ---- the API client against micro_http's rules ---------------------------------------------
@pytest.fixture(params=["cloud-hypervisor", "firecracker"])
def standin(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[str, str, str]]:
    script = tmp_path / request.param
    script.write_text(SOURCE)
    sock = str(tmp_path / "api.sock")
    ledger = str(tmp_path / "ledger.json")
    env = dict(os.environ, KATA_TOP_LAB_VMM_LEDGER=ledger, KATA_TOP_LAB_VMM=json.dumps(
        {"tap": "tap0_kata", "mac": "02:00:00:00:00:01", "rx_bps": 8000}))
    flag = "--api-socket" if request.param == "cloud-hypervisor" else "--api-sock"
    proc = subprocess.Popen([sys.executable, str(script), flag, sock], env=env)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(ledger) and time.monotonic() < deadline:
            time.sleep(0.02)
        yield request.param, sock, ledger
    finally:
        proc.kill()
        proc.wait()


def _ask(kind: str, sock: str, deadline: float = 1.0) -> dict[str, object]:
    paths = vmm_api.CLH_PATHS if kind == "cloud-hypervisor" else vmm_api.FC_PATHS
    return asyncio.run(vmm_http.get_many(sock, paths, deadline))


def test_keep_alive_answers_come_by_content_length(standin: tuple[str, str, str]) -> None:
    """micro_http never closes: reading to EOF (HTTP/1.0 style) would run into the deadline.
    Three answers on one connection come back well within it."""
    kind, sock, ledger = standin
    start = time.monotonic()
    answers = _ask(kind, sock, deadline=2.0)
    assert time.monotonic() - start < 1.0
    facts = vmm_api.clh_facts(answers) if kind == "cloud-hypervisor" \
        else vmm_api.fc_facts(answers)
    assert facts["status"] == "running" and facts["nics"][0].tap == "tap0_kata"
    if kind == "firecracker":
        assert facts["nics"][0].rx_rate_bps == 8000
    with open(ledger) as fh:
        led = json.load(fh)
    assert led["max_by_pid"][str(os.getpid())] == 1
    assert {m for _pid, m, _p in led["requests"]} == {"GET"}


def test_one_read_at_a_time_per_vmm(standin: tuple[str, str, str]) -> None:
    kind, sock, ledger = standin
    results: list[object] = []

    def worker() -> None:
        try:
            results.append(_ask(kind, sock))
        except vmm_http.ApiBusy as exc:
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert any(isinstance(r, dict) for r in results)
    with open(ledger) as fh:
        assert json.load(fh)["max_by_pid"][str(os.getpid())] == 1


def test_a_full_server_is_busy_not_an_error(standin: tuple[str, str, str]) -> None:
    """Ten connections held (micro_http's MAX_CONNECTIONS): the eleventh gets its 503."""
    kind, sock, _ledger = standin
    held = []
    try:
        for _ in range(10):
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            held.append(s)
        time.sleep(0.2)
        with pytest.raises(vmm_http.ApiBusy, match="503"):
            _ask(kind, sock)
    finally:
        for s in held:
            s.close()


def test_a_silent_api_costs_its_deadline_and_no_socket_stays_open() -> None:
    """Accepted, never answered (a VMM stuck on its main loop): an error after the deadline,
    the connection closed, and the next read is not refused as busy."""
    path = os.path.join(tempfile.mkdtemp(prefix="kt", dir="/tmp"), "api.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)
    try:
        for _ in range(2):
            start = time.monotonic()
            with pytest.raises(vmm_http.ApiError, match="no answer within 200 ms"):
                asyncio.run(vmm_http.get_many(path, ["/api/v1/vmm.ping"], 0.2))
            assert time.monotonic() - start < 1.0
            conn, _ = srv.accept()
            conn.settimeout(1.0)
            assert conn.recv(4096).startswith(b"GET /api/v1/vmm.ping HTTP/1.1")
            assert conn.recv(4096) == b""  # closed by the client at its deadline
            conn.close()
    finally:
        srv.close()
        shutil.rmtree(os.path.dirname(path))


def test_a_remote_hypervisor_sandbox_is_not_stale(tmp_path: Any) -> None:
    """Kata's `remote` hypervisor runs the VM elsewhere: no local VMM is no dead VMM."""
    from kata_top.engine import EngineOptions
    from kata_top.pipeline import Pipeline
    from tests.run_roots import persist, run_root

    root = run_root(tmp_path, {"b" * 64: persist(HypervisorState={"Type": "remote"})})
    pipe = Pipeline(EngineOptions(run_root=root, one_shot=True), host_every_s=None,
                    events=False)
    try:
        (sb,) = pipe.next().sandboxes
    finally:
        pipe.close()
    assert sb.state == "running" and sb.vmm is not None and sb.vmm.status == "unknown"
    assert "remote" in (sb.vmm.reason or "")
    assert not [f for f in sb.findings if f.code == "KT-S020"]


def test_a_command_line_cannot_point_the_api_read_outside_the_run_root() -> None:
    sid = "c" * 64
    for root in ("/run", "/run/ktx"):
        for sock in ("/var/run/docker.sock", "/run/containerd/containerd.sock"):
            got = vmm_api.api_socket("clh", sid, "go", root, ("cloud-hypervisor",
                                     "--api-socket", sock))
            assert got == f"{root}/vc/vm/{sid}/clh-api.sock"


def test_a_cancelled_read_leaves_the_vmm_askable(standin: tuple[str, str, str]) -> None:
    """The cycle's overall deadline cancels reads still under way: the socket is closed and
    the next cycle may ask again."""
    kind, sock, _ledger = standin
    paths = vmm_api.CLH_PATHS if kind == "cloud-hypervisor" else vmm_api.FC_PATHS

    async def cancelled() -> None:
        task = asyncio.ensure_future(vmm_http.get_many(sock, paths, 5.0))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    assert vmm_http._in_use == set()
    assert _ask(kind, sock)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["sandbox_type", "resource", "hypervisor"]),
                       json_values) | json_values)
def test_any_runtime_rs_state_is_a_record_never_a_crash(doc: Any) -> None:
    rec = state.parse_rs_state("d" * 64, "p", doc)
    assert rec.hypervisor_pid is None or isinstance(rec.hypervisor_pid, int)
    assert rec.run_dir is None or isinstance(rec.run_dir, str)
