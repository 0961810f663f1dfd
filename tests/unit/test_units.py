"""Pure logic: rate parsing, selection, parsers of untrusted input (property tests)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from kata_top import diagnose
from kata_top.collectors import hostcheck, qmp, state, vmm_proc
from kata_top.collectors.rtnetlink import decode as rtnl
from kata_top.collectors.rtnetlink import netlink
from kata_top.formats import jsonin, jsonout, recording
from kata_top.lab.layout import Layout
from kata_top.lab.scenario import build as build_specs
from kata_top.lab.statefiles import persist_json
from kata_top.lab.statefiles_rs import state_json
from kata_top.model import (
    Finding,
    HostInfo,
    Hypervisor,
    Link,
    LinkStats,
    NetnsInfo,
    PeerInfo,
    Pod,
    Redirect,
    Route,
    Sandbox,
    Snapshot,
)
from kata_top.select import SelectError, resolve
from kata_top.units import fmt_rate, parse_rate, tc_rate
from tests.helpers import ROOT


# ---- rates -------------------------------------------------------------------------------
@pytest.mark.parametrize("text,bps", [("50mbit", 50_000_000), ("10Mbit", 10_000_000),
                                      ("1gbit", 1_000_000_000), ("500kbit", 500_000),
                                      ("1000000", 1_000_000), ("2.5mbit", 2_500_000),
                                      (" 8bit ", 8)])
def test_parse_rate(text: str, bps: int) -> None:
    assert parse_rate(text) == bps


@pytest.mark.parametrize("text", ["fast", "-5", "0", "1e99bit", "", "10mbps", "5 bits",
                                  "99999tbit", "0.1bit"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


@given(st.text(max_size=30))
def test_parse_rate_never_crashes(text: str) -> None:
    try:
        assert parse_rate(text) > 0
    except ValueError as exc:
        assert str(exc)


@given(st.integers(min_value=8, max_value=10**12))
def test_tc_rate_round_trips(bps: int) -> None:
    assert parse_rate(tc_rate(bps)) == bps


def test_fmt_rate() -> None:
    assert fmt_rate(20_000_000) == "20Mbit" and fmt_rate(1500) == "1.5kbit"
    assert fmt_rate(None) == "-"


# ---- selection ---------------------------------------------------------------------------
def _sb(sid: str, name: str | None = None, ns: str | None = None, **kw: object) -> Sandbox:
    return Sandbox(id=sid, runtime="go", state="running", pod=Pod(name, ns),
                   hypervisor=Hypervisor("qemu", 1, True), netns=NetnsInfo(None, None),
                   **{"network_model": "tcfilter", **kw})  # type: ignore[arg-type]


def test_resolve() -> None:
    sbs = [_sb("ab" + "0" * 62, "web", "default"), _sb("ac" + "0" * 62, "web", "batch"),
           _sb("bb" + "0" * 62, "db", "default")]
    assert resolve(sbs, "default/web").id.startswith("ab")
    assert resolve(sbs, "bb").id.startswith("bb")
    assert resolve(sbs, "db").id.startswith("bb")
    with pytest.raises(SelectError, match="ambiguous"):
        resolve(sbs, "a")
    with pytest.raises(SelectError, match="ambiguous"):
        resolve(sbs, "web")
    with pytest.raises(SelectError, match="no sandbox matches"):
        resolve(sbs, "x/y")


# ---- state files -------------------------------------------------------------------------
def test_lab_state_files_parse() -> None:
    layout = Layout("/run/ktx", "ktx")
    for spec in build_specs("demo", 9):
        if spec.runtime == "rs":
            # runtime-rs saves no pid and no virtiofsd pid (qemu/inner.rs save())
            rec = state.parse_rs_state(spec.id, "p", state_json(layout, spec))
            assert rec.hypervisor_pid is None and rec.virtiofsd_pid is None
            continue
        rec = state.parse_persist(spec.id, "p", persist_json(layout, spec, 42, 43, False))
        assert rec.error is None and rec.pod_name == spec.pod_name
        assert rec.model == spec.model and rec.rx_rate_bps == spec.rx_rate_bps
        assert rec.virtiofsd_pid == 43 and rec.guest_mac


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=6),
    max_leaves=25)


def _typed(rec: state.StateRecord) -> None:
    """Every field of a record has its declared type, whatever the file held."""
    for name in ("state", "pod_name", "pod_namespace", "pod_uid", "netns_path", "tap_name",
                 "guest_mac", "hypervisor", "api_socket"):
        value = getattr(rec, name)
        assert value is None or isinstance(value, str), (name, value)
    for name in ("hypervisor_pid", "virtiofsd_pid"):
        value = getattr(rec, name)
        assert value is None or (isinstance(value, int) and not isinstance(value, bool)), name
    assert rec.model in (None, "tcfilter", "macvtap", "none")
    assert isinstance(rec.rx_rate_bps, int) and isinstance(rec.tx_rate_bps, int)


@given(json_values)
def test_persist_parser_takes_anything(doc: object) -> None:
    rec = state.parse_persist("x" * 64, "p", doc)
    assert rec.id == "x" * 64 and rec.runtime == "go"
    if isinstance(doc, dict):
        assert rec.error is None  # any object is a (perhaps empty) record
    else:
        assert rec.error is not None and "not an object" in rec.error
    _typed(rec)


@given(st.dictionaries(st.sampled_from(["State", "HypervisorState", "Network", "Config",
                                        "SandboxContainer"]), json_values))
def test_persist_parser_takes_wrong_types_in_known_keys(doc: dict[str, object]) -> None:
    rec = state.parse_persist("x", "p", doc)
    assert rec.error is None
    _typed(rec)
    assert rec.state == (doc["State"] if isinstance(doc.get("State"), str) and doc["State"]
                         else None)


@given(json_values)
def test_rs_parser_takes_anything(doc: object) -> None:
    rec = state.parse_rs_state("y", "p", doc)
    assert rec.runtime == "rs" and (rec.error is None) == isinstance(doc, dict)
    _typed(rec)


@given(st.binary(max_size=400))
@settings(max_examples=200)
def test_state_file_reader_on_garbage(tmp_path_factory: pytest.TempPathFactory,
                                      data: bytes) -> None:
    path = tmp_path_factory.mktemp("s") / "persist.json"
    path.write_bytes(data)
    rec = state.read_state_file("z", str(path), "go", retries=0)
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        assert rec.error is not None and rec.error.startswith("corrupt state file")
        return
    if isinstance(doc, dict):
        assert rec.error is None
    else:
        assert rec.error is not None and "not an object" in rec.error


def test_state_file_retry_sees_a_rewrite(tmp_path: object) -> None:
    import threading
    import time

    path = os.path.join(str(tmp_path), "persist.json")
    with open(path, "w") as fh:
        fh.write('{"State": "run')  # half written, as Kata's truncate+write can leave it

    def finish() -> None:
        time.sleep(0.01)
        with open(path, "w") as fh:
            fh.write('{"State": "running"}')

    t = threading.Thread(target=finish)
    t.start()
    rec = state.read_state_file("z", path, "go", retries=3, retry_delay=0.02)
    t.join()
    assert rec.error is None and rec.state == "running"


def test_an_entry_of_run_netns_goes_by_its_var_run_path_where_var_run_is_run() -> None:
    """The engine hands named_netns the ids it looked up by the paths state files name
    (Kata writes /var/run/netns/<name>)."""
    from kata_top.collectors import netns

    paths = netns.entry_paths("cni-1")
    assert paths[0] == "/run/netns/cni-1"
    alias = os.path.realpath("/var/run") == "/run"
    assert paths[1:] == (("/var/run/netns/cni-1",) if alias else ())


# ---- netlink and proc parsers ------------------------------------------------------------
@given(st.binary(max_size=300))
def test_netlink_attrs_stay_inside_the_message(data: bytes) -> None:
    attrs = netlink.parse_attrs(data)
    listed = netlink.parse_attr_list(data)
    assert all(0 <= t <= netlink.NLA_TYPE_MASK for t in attrs)
    assert sum(4 + len(v) for _t, v in listed) <= len(data)  # nothing read past the end
    assert attrs == dict(listed)  # the dict view is the list's, the last of a type winning


@given(st.binary(max_size=300), st.frozensets(st.integers(0, 40), max_size=4))
def test_first_attributes_are_the_walks_first_of_each_wanted_type(
        data: bytes, wanted: frozenset[int]) -> None:
    """first_attrs stops early: what it returns is still, per wanted type, the first one the
    whole walk sees (the walk in order, duplicates kept)."""
    first: dict[int, bytes] = {}
    for t, v in netlink.parse_attr_list(data):
        if t in wanted:
            first.setdefault(t, v)
    assert netlink.first_attrs(data, 0, wanted) == first


@given(st.tuples(st.integers(1, 0x3FFF), st.binary(max_size=60)), st.binary(max_size=3))
def test_a_well_formed_attribute_reads_back_whatever_follows(attr: tuple[int, bytes],
                                                             tail: bytes) -> None:
    atype, payload = attr
    assert netlink.parse_attrs(netlink.attr(atype, payload) + tail).get(atype) == payload


@given(st.binary(max_size=80), st.text(max_size=20), st.integers(0, 2**32 - 1),
       st.integers(0, 255))
def test_peer_facts_of_any_link_message(junk: bytes, name: str, mtu: int, oper: int) -> None:
    """A veth peer's facts: the name, MTU and operstate a message carries, whatever else it
    carries; a message too short for its header is the decoder's documented error."""
    import struct

    from kata_top.collectors.rtnetlink import decode as rtnl

    body = (netlink.IFINFOMSG.pack(0, 1, 7, 0, 0) + junk
            + netlink.attr(rtnl.IFLA_IFNAME, name.encode() + b"\0")
            + netlink.attr(rtnl.IFLA_MTU, netlink.U32.pack(mtu))
            + netlink.attr(rtnl.IFLA_OPERSTATE, bytes([oper])))
    index, (got_name, got_mtu, got_oper) = rtnl.link_facts(body)
    assert index == 7
    assert isinstance(got_name, str) and isinstance(got_mtu, int) and isinstance(got_oper, str)
    if not junk and "\0" not in name:  # junk may hold attributes of its own
        assert (got_name, got_mtu) == (name or "if7", mtu or 0)
        assert got_oper == (rtnl.OPERSTATES[oper] if oper < len(rtnl.OPERSTATES)
                            else "unknown")
    with pytest.raises(struct.error):
        rtnl.link_facts(body[: netlink.IFINFOMSG.size - 1])


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.binary(max_size=64),
       st.lists(st.tuples(st.integers(0, 20), st.binary(max_size=20)), max_size=6))
def test_route_decoder_on_any_message(family: int, dst_len: int, rtype: int, junk: bytes,
                                      attrs: list[tuple[int, bytes]]) -> None:
    """Routes from the kernel are untrusted bytes too: a Route with the documented shapes,
    None, or the decoder's documented error for a message shorter than its header."""
    import struct

    from kata_top.collectors.rtnetlink import decode as rtnl

    body = netlink.RTMSG.pack(family, dst_len, 0, 0, 254, 4, 0, rtype, 0) + b"".join(
        netlink.attr(t, v) for t, v in attrs) + junk
    r = rtnl.decode_route(body, {2: "eth0"})
    if r is not None:
        assert family in (2, 10) and rtype == 1
        assert r.dst == "default" or "/" in r.dst
        assert r.mtu is None or r.mtu > 0
        assert r.dev is None or isinstance(r.dev, str)
    with pytest.raises(struct.error):
        rtnl.decode_route(body[: netlink.RTMSG.size - 1], {})


def test_route_with_an_mtu_metric() -> None:
    import socket as so

    from kata_top.collectors.rtnetlink import decode as rtnl

    metrics = netlink.attr(rtnl.RTA_METRICS, netlink.attr(rtnl.RTAX_MTU, netlink.U32.pack(1400)))
    body = (netlink.RTMSG.pack(so.AF_INET, 0, 0, 0, 254, 3, 0, 1, 0)
            + netlink.attr(rtnl.RTA_GATEWAY, so.inet_aton("10.77.255.254"))
            + netlink.attr(rtnl.RTA_OIF, netlink.U32.pack(2)) + metrics)
    assert rtnl.decode_route(body, {2: "eth0"}) == Route(dst="default", dev="eth0",
                                                          gateway="10.77.255.254", mtu=1400)
    local = netlink.RTMSG.pack(so.AF_INET, 32, 0, 0, 255, 2, 0, 2, 0)  # table local
    assert rtnl.decode_route(local, {}) is None


def test_qemu_cmdline_as_kata_writes_it() -> None:
    argv = ["/usr/bin/qemu-system-x86_64", "-name", "sandbox-" + "a" * 64, "-machine",
            "q35,accel=kvm", "-m", "2048M,slots=10,maxmem=8G", "-smp",
            "1,cores=1,threads=1,sockets=4,maxcpus=4",
            "-netdev", "tap,id=network-0,vhost=on,vhostfds=3:4,fds=5:6",
            "-device", "driver=virtio-net-pci,netdev=network-0,mac=02:42:AC:11:00:02,mq=on"]
    pv = vmm_proc.parse_qemu_cmdline(argv)
    assert pv.machine == "q35" and pv.accel == "kvm" and pv.memory_bytes == 2048 << 20
    assert pv.vcpus == 1
    nic = pv.nics[0]
    assert nic.mac == "02:42:ac:11:00:02" and nic.vhost is True and nic.fds == (5, 6)
    assert nic.queues == 2


def test_info_network_parse() -> None:
    text = ("net0: index=0,type=nic,model=virtio-net-pci,macaddr=02:aa:bb:cc:dd:ee\r\n"
            " \\ network-0: index=0,type=tap,ifname=tap0_kata,script=no,downscript=no\r\n")
    nics = qmp.parse_info_network(text.replace("\r", ""))
    assert nics[0].tap == "tap0_kata" and nics[0].mac == "02:aa:bb:cc:dd:ee"


# ---- recordings and findings -------------------------------------------------------------
def _snap(t: float, eth_rx_pps: float, red_in_pps: float) -> Snapshot:
    sb = _sb("c" * 64, "web", "default",
             links=(Link("eth0", 2, "veth", 1500, None, "up", True, True, LinkStats(),
                         peer=PeerInfo(5, 0, "node", "veth1", 1500)),),
             redirects=(Redirect("in", "eth0", "tap0_kata", True),
                        Redirect("out", "tap0_kata", "eth0", True)),
             rates={"link.eth0.rx_pps": eth_rx_pps, "redirect.in.pps": red_in_pps})
    return Snapshot(taken_at=t, host=HostInfo("n", "k", "/run", True), sandboxes=(sb,))


def test_recording_round_trip() -> None:
    snap = _snap(1.0, 3.0, 0.0)
    doc = json.loads(jsonout.dumps(snap))
    assert jsonin.snapshot_from_dict(doc) == snap
    with pytest.raises(jsonin.RecordingError):
        jsonin.snapshot_from_dict({"schema": "other"})
    doc["sandboxes"][0]["links"][0]["mtu"] = "big"
    with pytest.raises(jsonin.RecordingError, match="mtu"):
        jsonin.snapshot_from_dict(doc)


def test_cut_recording_loads_what_it_can(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "rec.ndjson")
    line = jsonout.dumps(_snap(1.0, 0, 0))
    with open(path, "w") as fh:
        fh.write(line + "\n" + line + "\n" + line[: len(line) // 2])
    snaps, warning = recording.load_recording(path)
    assert len(snaps) == 2 and warning and "cut off" in warning
    with open(path, "w") as fh:
        fh.write("hello\n")
    with pytest.raises(jsonin.RecordingError, match="not a kata-top recording"):
        recording.load_recording(path)


def test_rate_finding_has_hysteresis(tmp_path: object) -> None:
    """Replayed from a recording, a flapping condition must not flap the finding."""
    path = os.path.join(str(tmp_path), "flapping.ndjson")
    with open(path, "w") as fh:
        for i in range(12):
            stalled = i % 2 == 0  # eth0 receives, the in redirect counts nothing, then does
            fh.write(jsonout.dumps(_snap(float(i), 5.0, 0.0 if stalled else 5.0)) + "\n")
    recorded, warning = recording.load_recording(path)
    assert warning is None and len(recorded) == 12
    prev: Snapshot | None = None
    present = []
    for snap in recorded:
        cur = diagnose.annotate(snap, prev)
        present.append(any(f.code == "KT-S003" for f in cur.sandboxes[0].findings))
        prev = cur
    assert all(present), present
    # and it clears after CLEAR_AFTER quiet cycles
    for i in range(diagnose.CLEAR_AFTER):
        prev = diagnose.annotate(_snap(100.0 + i, 5.0, 5.0), prev)
    assert not any(f.code == "KT-S003" for f in prev.sandboxes[0].findings)


def test_findings_have_codes_severities_and_fixes() -> None:
    snap = diagnose.annotate(replace(_snap(1.0, 0, 0), sandboxes=(replace(
        _snap(1.0, 0, 0).sandboxes[0], redirects=(Redirect("in", "eth0", "tap0_kata", True),
                                                  Redirect("out", "tap0_kata", "eth0",
                                                           False))),)))
    f: Finding = next(f for f in snap.sandboxes[0].findings if f.code == "KT-S002")
    assert f.severity == "critical" and "redirect add" in f.fix and f.evidence


# ---- import hygiene ----------------------------------------------------------------------
# What `kata-top snapshot --json` may import of kata-top itself: the read path, nothing of the
# lab, the UI, the exporter or the write path (a one-shot command pays every import at start).
SNAPSHOT_IMPORTS = {
    "kata_top.collectors", "kata_top.collectors.netns", "kata_top.collectors.procs",
    "kata_top.collectors.safeopen", "kata_top.collectors.shimsock", "kata_top.collectors.state",
    "kata_top.collectors.vmm_target", "kata_top", "kata_top.boundedjson",
    "kata_top.warm", "kata_top.cli.fast",  # a running serve first (here: a miss)
    "kata_top.cli", "kata_top.cli.common", "kata_top.cli.hints", "kata_top.cli.main",
    "kata_top.cli.snapshot", "kata_top.derive", "kata_top.diagnose",
    "kata_top.diagnose.findings", "kata_top.diagnose.limits", "kata_top.diagnose.redirects",
    "kata_top.diagnose.report",
    "kata_top.engine",
    "kata_top.engine.beside", "kata_top.engine.core", "kata_top.engine.kinds",
    "kata_top.engine.options",
    "kata_top.engine.sandbox", "kata_top.engine.vmm_cache",
    "kata_top.formats", "kata_top.formats.jsonout", "kata_top.formats.terminal",
    "kata_top.fsutil", "kata_top.logs", "kata_top.model", "kata_top.model_types",
    "kata_top.pipeline", "kata_top.rates", "kata_top.stream",
    "kata_top.select", "kata_top.settings", "kata_top.units"}
# … nor what only other commands need, the standard dataclasses and json (the model and the
# records the read path uses are msgspec Structs, and msgspec reads and writes its JSON), or (on
# a node without sandboxes) the netlink side. (msgspec itself imports `inspect`.)
SNAPSHOT_NEVER = ("textual", "rich", "pyroute2", "qemu", "psutil", "asyncio", "dataclasses",
                  "json", "tempfile", "shutil", "http", "prometheus_client", "logging", "socket")


def test_headless_path_imports_only_the_read_path(tmp_path: object) -> None:
    os.makedirs(os.path.join(str(tmp_path), "vc", "sbs"))  # Kata's run root, no sandbox
    code = ("import sys\nfrom kata_top.cli.main import main\n"
            f"rc = main(['snapshot', '--json', '--run-root', {str(tmp_path)!r}])\n"
            "print('MODULES', repr(sorted(sys.modules)), file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=False)
    line = next(ln for ln in out.stderr.splitlines() if ln.startswith("MODULES "))
    modules = set(ast.literal_eval(line[len("MODULES "):]))  # (json: not imported in there)
    ours = {m for m in modules if m.split(".")[0] in ("kata_top", "collectors", "widgets")}
    assert all(m.startswith("kata_top") for m in ours), ours
    assert ours <= SNAPSHOT_IMPORTS, sorted(ours - SNAPSHOT_IMPORTS)
    assert not [m for m in modules if m.split(".")[0] in SNAPSHOT_NEVER], sorted(
        m for m in modules if m.split(".")[0] in SNAPSHOT_NEVER)
    assert json.loads(out.stdout)["sandboxes"] == []


def test_ipv6_mismatch_between_eth0_and_tap() -> None:
    def link(name: str, off: bool) -> Link:
        return Link(name, 2, "veth", 1500, None, "up", True, True, LinkStats(),
                    ipv6_disabled=off)

    sb = _sb("d" * 64, "web", "default", links=(link("eth0", False), link("tap0_kata", True)),
             tap_name="tap0_kata")
    codes = {f.code: f.severity for f in diagnose.sandbox_findings(sb, None)}
    assert codes.get("KT-S014") == "warning"
    both = replace(sb, links=(link("eth0", True), link("tap0_kata", True)))
    assert {f.code: f.severity for f in diagnose.sandbox_findings(both, None)}.get(
        "KT-S015") == "info"
    fine = replace(sb, links=(link("eth0", False), link("tap0_kata", False)))
    assert not {f.code for f in diagnose.sandbox_findings(fine, None)} & {"KT-S014", "KT-S015"}


def test_vm_direction_of_tun_and_macvtap() -> None:
    from kata_top.rates import sandbox_rates

    def sb_with(kind: str, rx: int, tx: int) -> Sandbox:
        tap = Link("tap0_kata", 3, kind, 1500, None, "up", True, True,
                   LinkStats(rx_bytes=rx, tx_bytes=tx))
        return _sb("f" * 64, links=(tap,), tap_name="tap0_kata", network_model="none")

    for kind, to_vm in (("tun", "tx"), ("macvtap", "rx")):
        prev = sb_with(kind, 0, 0)
        cur = sb_with(kind, 1000 if to_vm == "rx" else 0, 1000 if to_vm == "tx" else 0)
        r = sandbox_rates(cur, prev, 1.0)
        assert r["vm.in_bps"] == 8000 and r["vm.out_bps"] == 0, kind


def test_run_root_before_or_after_the_command() -> None:
    from kata_top.cli.main import build_parser

    for argv, root in ((["--run-root", "/x", "snapshot"], "/x"),
                       (["snapshot", "--run-root", "/y"], "/y"),
                       (["--run-root", "/w", "check", "--json"], "/w")):
        assert build_parser(argv).parse_args(argv).run_root == root


def test_oversized_netlink_reply_is_an_error_not_half_a_dump() -> None:
    sock = netlink.RtnlSocket.open(None)
    try:
        netlink.reset_receive_buffer(32)
        with pytest.raises(netlink.NetlinkError, match="larger than the buffer"):
            sock.dump_links()
        assert netlink.receive_buffer_size() == 64  # grown for the next read
    finally:
        # the thread's shared buffer is module state: restored whatever happened above
        netlink.reset_receive_buffer()
    try:
        assert any(rtnl.decode_link(b)[0].name == "lo" for b in sock.dump_links())
    finally:
        sock.close()


def test_a_vmm_seen_dead_after_its_sandbox_was_seen_alive_makes_it_stale() -> None:
    from kata_top.engine.sandbox import with_vmm as _with_vmm
    from kata_top.model import Vmm

    alive = replace(_sb("a" * 64, "web", "default"), hypervisor=Hypervisor("qemu", 42, True))
    dead = Vmm(source="none", status="dead", reason="the VMM process is not running")
    sb = _with_vmm(alive, dead)
    assert sb.state == "stale" and not sb.hypervisor.alive and sb.vmm == dead
    orphan = _with_vmm(replace(alive, state="orphan"), dead)
    assert orphan.state == "orphan" and not orphan.hypervisor.alive
    running = Vmm(source="extra-monitor", status="running")
    assert _with_vmm(alive, running).state == "running"
    assert _with_vmm(alive, None) is alive


# ---- the host probe, on hosts described rather than this one -----------------------------
def _host(tmp_path: Any, devices: tuple[str, ...], config: str | None) -> dict[str, Any]:
    dev = tmp_path / "dev"
    (dev / "net").mkdir(parents=True)
    for name in devices:  # a real character device stands in for each present node
        os.symlink("/dev/null", dev / name)
    paths: tuple[str, ...] = ()
    if config is not None:
        (tmp_path / "configuration.toml").write_text(config)
        paths = (str(tmp_path / "configuration.toml"),)
    return {f.code: f for f in hostcheck.host_findings(dev_root=str(tmp_path), probe=False,
                                                       config_paths=paths)}


def test_vhost_net_finding_on_hosts_with_and_without_the_device(tmp_path: Any) -> None:
    all_devs = ("kvm", "vhost-net", "vhost-vsock", "net/tun")
    present = _host(tmp_path / "a", all_devs, None)
    assert not {"KT-H001", "KT-H002", "KT-H003", "KT-H004"} & present.keys()
    missing = _host(tmp_path / "b", ("kvm", "vhost-vsock", "net/tun"),
                    "[hypervisor.qemu]\ndisable_vhost_net = false\n")
    f = missing["KT-H002"]
    assert f.severity == "critical" and "modprobe vhost_net" in f.fix
    assert f.evidence["state"] == "missing" and f.evidence["disable_vhost_net"] is False
    # without a Kata configuration that insists on vhost-net, it is a warning
    assert _host(tmp_path / "c", ("kvm",), None)["KT-H002"].severity == "warning"
    # a regular file where the device belongs is not the device
    (tmp_path / "d" / "dev" / "net").mkdir(parents=True)
    (tmp_path / "d" / "dev" / "vhost-net").write_text("")
    found = hostcheck.host_findings(dev_root=str(tmp_path / "d"), probe=False, config_paths=())
    assert next(x for x in found if x.code == "KT-H002").evidence["state"] == \
        "not a character device"


def test_what_kata_does_with_its_extra_monitor_configuration(tmp_path: Any) -> None:
    """Each case as Kata's source handles it: the Go runtime refuses an unknown value and
    ignores the monitor without enable_debug; runtime-rs binds any QMP variant on the primary
    qmp.sock (the bind fails); hmp or qmp with debug are fine."""

    def codes(name: str, body: str) -> dict[str, Finding]:
        d = tmp_path / name
        d.mkdir(parents=True)
        conf = d / "configuration.toml"
        conf.write_text("[hypervisor.qemu]\n" + body)
        return {f.code: f for f in hostcheck.host_findings(
            dev_root=str(tmp_path), probe=False, config_paths=(str(conf),))
            if f.code.startswith("KT-H02")}

    bad = codes("go-bad", 'extra_monitor_socket = "qmp-json"\nenable_debug = true\n')
    assert bad["KT-H024"].severity == "critical" and "qmp-json" in bad["KT-H024"].summary
    ignored = codes("go-nodebug", 'extra_monitor_socket = "qmp"\nenable_debug = false\n')
    assert set(ignored) == {"KT-H023"} and "enable_debug = true" in ignored["KT-H023"].fix
    assert codes("go-ok", 'extra_monitor_socket = "qmp"\nenable_debug = true\n') == {}
    assert codes("go-hmp", 'extra_monitor_socket = "hmp"\nenable_debug = true\n') == {}
    rs = codes("runtime-rs", 'extra_monitor_socket = "qmp"\nenable_debug = true\n')
    assert set(rs) == {"KT-H025"} and rs["KT-H025"].severity == "critical"
    assert rs["KT-H025"].evidence["runtime"] == "runtime-rs"
    assert codes("runtime-rs-hmp", 'extra_monitor_socket = "hmp"\nenable_debug = true\n') == {}
    assert set(codes("none", 'path = "/usr/bin/qemu-system-x86_64"\n')) == {"KT-H022"}


def test_tc_rates_count_over_the_reads_of_tc_not_the_snapshots() -> None:
    """A busy sandbox off screen has its tc counters read every few seconds only
    (EngineOptions.tc_busy_refresh_s): between reads its redirect and qdisc rates are the
    last ones, and at the next read they count over the time since the last read — never a
    zero for counters not read, nor a burst for counters read late."""
    from kata_top.model import Qdisc, QdiscStats, Snapshot
    from kata_top.rates import with_rates

    def snap(at: float, eth_rx: int, red: int, drops: int) -> Snapshot:
        eth0 = Link("eth0", 2, "veth", 1500, None, "up", True, True,
                    LinkStats(rx_packets=eth_rx, rx_bytes=eth_rx * 100))
        sb = _sb("e" * 64, links=(eth0,), tap_name="tap0_kata",
                 redirects=(Redirect("in", "eth0", "tap0_kata", True, packets=red,
                                     bytes=red * 100),
                            Redirect("out", "tap0_kata", "eth0", True)),
                 qdiscs=(Qdisc("eth0", "ingress", "ffff:", "ffff:fff1",
                               QdiscStats(drops=drops)),))
        return Snapshot(taken_at=at, host=HostInfo("n", "k", "/run", True), sandboxes=(sb,))

    sid = "e" * 64
    s0 = snap(100.0, 0, 0, 0)
    s1 = with_rates(snap(101.0, 10, 10, 1), s0)  # read: 10 pkt/s in, 1 drop/s
    assert s1.sandboxes[0].rates["redirect.in.pps"] == 10.0
    # not read at 102 and 103 (the counters are 101's): the link moves on, tc rates stand
    s2 = with_rates(replace(snap(102.0, 30, 10, 1), tc_read_at={sid: 101.0}), s1)
    r2 = s2.sandboxes[0].rates
    assert r2["link.eth0.rx_pps"] == 20.0
    assert r2["redirect.in.pps"] == 10.0 and r2["vm.in_attempted_pps"] == 10.0
    assert r2["qdisc.eth0.ffff:.drops_ps"] == 1.0
    s3 = with_rates(replace(snap(103.0, 50, 10, 1), tc_read_at={sid: 101.0}), s2, {})
    assert s3.sandboxes[0].rates["redirect.in.pps"] == 10.0
    # read at 104: 60 more packets since the read at 101, over 3 s
    s4 = with_rates(snap(104.0, 70, 70, 7), s3)
    r4 = s4.sandboxes[0].rates
    assert r4["redirect.in.pps"] == 20.0 and r4["qdisc.eth0.ffff:.drops_ps"] == 2.0
    assert r4["link.eth0.rx_pps"] == 20.0


def test_a_sandbox_not_read_keeps_its_snapshot_and_counts_over_the_time_since_its_read(
        ) -> None:
    """EngineOptions.unwatched_refresh_s: a sandbox the engine did not read (Snapshot.links_read_at)
    is the previous snapshot's, rates and all — never zero rates from counters not read —
    and once read again its rates count over the time since that read, not a burst."""
    from kata_top.model import Snapshot
    from kata_top.rates import with_rates

    sid = "a" * 64

    def snap(at: float, rx: int) -> Snapshot:
        eth0 = Link("eth0", 2, "veth", 1500, None, "up", True, True,
                    LinkStats(rx_packets=rx, rx_bytes=rx * 100))
        return Snapshot(taken_at=at, host=HostInfo("n", "k", "/run", True),
                        sandboxes=(_sb(sid, links=(eth0,)),))

    memo: dict[str, Sandbox] = {}
    s0 = with_rates(snap(100.0, 0), None, memo)
    s1 = with_rates(snap(101.0, 10), s0, memo)  # read: 10 pkt/s
    assert s1.sandboxes[0].rates["link.eth0.rx_pps"] == 10.0
    # not read at 102 and 103: the engine hands out the same sandbox (its counters 101's)
    raw = s1.sandboxes[0]
    same = Snapshot(taken_at=102.0, host=s1.host, sandboxes=(raw,), links_read_at={sid: 101.0})
    memo[sid] = raw
    s2 = with_rates(same, s1, memo)
    assert s2.sandboxes[0] is s1.sandboxes[0]
    # … or a new object built from the same counters (another input changed): rates stand
    s3 = with_rates(replace(same, taken_at=103.0, sandboxes=(replace(raw, pod=Pod("x", "y")),)),
                    s2, memo)
    assert s3.sandboxes[0].rates["link.eth0.rx_pps"] == 10.0
    assert s3.sandboxes[0].pod.name == "x"
    # read at 104: 60 more packets since the read at 101, over 3 s — not over 1 s
    s4 = with_rates(snap(104.0, 70), s3, memo)
    assert s4.sandboxes[0].rates["link.eth0.rx_pps"] == 20.0
    # without the engine's word the same counters are a still sandbox (zero rates)
    s5 = with_rates(replace(same, links_read_at={}), s1)
    assert s5.sandboxes[0].rates["link.eth0.rx_pps"] == 0.0


def test_pending_polls_sockets_numbered_beyond_select_s_limit() -> None:
    """A node with 1,000 sandboxes holds netlink sockets numbered past 1,024, where select()
    fails: RtnlSocket.pending() must answer for them too."""
    import resource
    import socket

    from kata_top.collectors.rtnetlink.netlink import RtnlSocket

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    high = 1500
    if soft <= high:
        assert hard == resource.RLIM_INFINITY or hard > high, "hard limit too low for this test"
        resource.setrlimit(resource.RLIMIT_NOFILE, (high + 1, hard))
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        os.dup2(a.fileno(), high)
        moved = socket.socket(fileno=high)
        sock = RtnlSocket(moved, False, False)
        assert not sock.pending()
        b.send(b"x")
        assert sock.pending()
        moved.close()
    finally:
        a.close()
        b.close()
        if soft <= high:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_open_files_limit_is_raised_to_fit_a_socket_per_namespace() -> None:
    """kata_top/fdlimit.py: a soft limit of 1,024 with 1,000 namespaces is raised (up to the
    hard limit, never past it), and a hard limit too low is reported, not exceeded."""
    code = ("import resource\nfrom kata_top.fdlimit import ensure_room\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 4096))\n"
            "print(ensure_room(1000), resource.getrlimit(resource.RLIMIT_NOFILE))\n"
            "print(ensure_room(10), resource.getrlimit(resource.RLIMIT_NOFILE))\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1100))\n"
            "print(ensure_room(1000), resource.getrlimit(resource.RLIMIT_NOFILE))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.splitlines()
    assert out == ["(2512, 1256) (2512, 4096)", "(2512, 266) (2512, 4096)",
                   "(1100, 1256) (1100, 1100)"]


def test_the_dashboard_reads_rows_off_screen_every_few_seconds(tmp_path: Any) -> None:
    """The dashboard's live source spares sandboxes off screen (their reads every
    UNWATCHED_REFRESH_S, their tc every TC_BUSY_REFRESH_S); `snapshot --watch`, `serve` and
    `check` build their engines without either (kata_top/cli/common.py)."""
    from kata_top.cli.common import pipeline_for
    from kata_top.cli.dashboard import _source
    from kata_top.cli.main import build_parser
    from kata_top.engine import TC_BUSY_REFRESH_S, UNWATCHED_REFRESH_S
    from kata_top.settings import Settings

    argv = ["--run-root", str(tmp_path)]
    src, _warning = _source(build_parser(argv).parse_args(argv), Settings())
    try:
        opts = src.opts  # type: ignore[attr-defined]
        assert opts.unwatched_refresh_s == UNWATCHED_REFRESH_S > 0
        assert opts.tc_busy_refresh_s == TC_BUSY_REFRESH_S > 0 and not opts.one_shot
    finally:
        src.close()
    argv = ["snapshot", "--run-root", str(tmp_path)]
    pipeline = pipeline_for(build_parser(argv).parse_args(argv))
    assert pipeline.opts.unwatched_refresh_s == 0 and pipeline.opts.tc_busy_refresh_s == 0
    pipeline.close()
