"""Hostile state and faults: crafted run roots, fake monitors, fuzzed netlink, bad files.

Each case is a class of failure from a sick or hostile node. What must hold for every one:
nothing hangs (every test is bounded by its timeout), no traceback, and one bad sandbox is
that sandbox's error while the healthy one beside it is collected in full.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kata_top.collectors import qmp, state
from kata_top.collectors.rtnetlink import decode as rtnl
from kata_top.collectors.rtnetlink import netlink
from kata_top.collectors.safeopen import UnsafeFile, read_file, read_under
from kata_top.engine import Engine, EngineOptions
from kata_top.formats import jsonout
from kata_top.formats.jsonin import RecordingError
from kata_top.formats.recording import load_recording
from tests.helpers import ROOT
from tests.run_roots import SCHEMA, assert_schema_valid, collect, persist, run_root

pytestmark = pytest.mark.timeout(60)


# ---- files that are not what they claim -------------------------------------------------


def test_symlinked_sandbox_directory_is_not_followed(tmp_path: Any) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "persist.json").write_text(json.dumps(persist()))
    root = run_root(tmp_path / "root", {})
    os.symlink(str(elsewhere), os.path.join(root, "vc", "sbs", "f" * 64))
    assert [sb.id for sb in collect(root).sandboxes] == []


def test_safe_reads_refuse_what_they_must(tmp_path: Any) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("x" * 100)
    os.symlink("/etc/hostname", tmp_path / "d" / "link")
    os.mkfifo(tmp_path / "d" / "fifo")
    assert read_under(str(tmp_path), "d/f", 100) == b"x" * 100
    for rel, words in (("d/f", "over 10"), ("d/link", "symlink"), ("d/fifo", "FIFO"),
                       ("d/../d/f", "plain path")):
        with pytest.raises(UnsafeFile, match=words):
            read_under(str(tmp_path), rel, 10 if rel == "d/f" else 100)
    os.symlink(str(tmp_path / "d"), tmp_path / "dirlink")
    with pytest.raises(UnsafeFile, match="symlink"):
        read_under(str(tmp_path), "dirlink/f", 100)
    with pytest.raises(UnsafeFile, match="FIFO"):
        read_file(str(tmp_path / "d" / "fifo"), 100)


# ---- hypothesis: any state file, any netlink bytes ---------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(
                        ["State", "Network", "NetworkID", "HypervisorState", "Pid", "Type",
                         "Config", "ContainerConfigs", "Annotations", "Endpoints", "Veth",
                         "NetPair", "TAPIface", "Name", "HardAddr", "x"]), inner, max_size=5),
                    max_leaves=20)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=JSON)
def test_any_persist_json_is_a_sandbox_never_a_crash(tmp_path: Any, doc: Any) -> None:
    root = run_root(tmp_path / "r", {"9" * 64: doc})
    snap = collect(root)
    assert [sb.id for sb in snap.sandboxes] == ["9" * 64]
    assert_schema_valid(snap)


@given(st.binary(min_size=20, max_size=300))
def test_tc_decoders_fail_only_in_ways_the_collector_isolates(data: bytes) -> None:
    names = {1: "eth0"}
    for fn in (rtnl.decode_qdisc, rtnl.decode_class, rtnl.decode_filter):
        # These the collector isolates (the namespace's socket is reset, the sandbox carries
        # the error); anything else escapes this and fails the test.
        with contextlib.suppress(ValueError, LookupError, ArithmeticError):
            fn(data, names)


def test_short_64_bit_htb_rate_is_ignored() -> None:
    opts = netlink.attr(rtnl.TCA_HTB_RATE64, b"\x01\x02")  # 2 bytes where 8 belong
    body = netlink.TCMSG.pack(0, 1, 0x10001, 0x10000, 0) + netlink.attr(
        rtnl.TCA_KIND, b"htb\x00") + netlink.attr(rtnl.TCA_OPTIONS, opts)
    cls = rtnl.decode_class(body, {1: "eth0"})
    assert cls.kind == "htb" and cls.rate_bps is None


# ---- monitors that answer nonsense -------------------------------------------------------
GREETING = (b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, '
            b'"package": ""}, "capabilities": []}}\n')
NONSENSE = {"query-status": {"status": {"nested": 1}}, "query-name": {"name": 42},
            "query-cpus-fast": [{"thread-id": "x"}, {"thread-id": -5}, {"thread-id": True}],
            "query-memory-size-summary": {"base-memory": "lots", "plugged-memory": -1},
            "query-pci": {"not": "a list"}, "query-chardev": [{"label": 7}],
            "human-monitor-command": 12, "query-rx-filter": [{"name": 1, "main-mac": 2}]}


@contextmanager
def nonsense_monitor(path: str) -> Iterator[None]:
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.sendall(GREETING)
            buf, dec = "", json.JSONDecoder()
            while data := conn.recv(65536):  # requests arrive as bare JSON, no newline
                buf += data.decode()
                while buf.strip():
                    try:
                        req, end = dec.raw_decode(buf.lstrip())
                    except ValueError:
                        break
                    buf = buf.lstrip()[end:]
                    cmd = req.get("execute")
                    ret = {} if cmd == "qmp_capabilities" else NONSENSE.get(cmd, {})
                    reply: dict[str, Any] = {"return": ret}
                    if "id" in req:
                        reply["id"] = req["id"]
                    conn.sendall(json.dumps(reply).encode() + b"\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield
    finally:
        srv.close()


def test_monitor_answers_of_the_wrong_type_never_reach_the_model(tmp_path: Any) -> None:
    import asyncio

    from kata_top.collectors.vmm import _from_monitor
    from kata_top.model import Vmm

    path = str(tmp_path / "m.sock")
    with nonsense_monitor(path):
        facts = asyncio.run(qmp.query_monitor(path, 5.0))
    assert facts.status == "unknown" and facts.name is None
    assert facts.memory_bytes is None and facts.plugged_memory_bytes is None
    assert facts.vcpu_threads == [] and facts.devices == [] and facts.chardevs == ["?"]
    vmm = _from_monitor(Vmm(source="proc", status="unknown"), facts, "extra-monitor")
    assert vmm.status == "unknown"
    jsonschema.validate(jsonout.to_plain(vmm), {"$defs": SCHEMA["$defs"],
                                                "$ref": "#/$defs/Vmm"})


# ---- output to an operator's terminal ----------------------------------------------------


def test_fixes_are_shell_quoted() -> None:
    from kata_top.diagnose.redirects import _fix, repair_commands
    from kata_top.model import Hypervisor, NetnsInfo, Pod, Redirect, Sandbox

    sb = Sandbox(id="x; rm -rf / #", runtime="go", state="running", pod=Pod(None, None),
                 hypervisor=Hypervisor("qemu", 1, True), network_model="tcfilter",
                 netns=NetnsInfo(path="/run/netns/a b", inode=None))
    r = Redirect("out", "tap 0", "eth0", False, elsewhere="x;y", elsewhere_prio=1)
    fix = _fix(sb, ["out"], repair_commands(r, "elsewhere"))
    assert "'x; rm -rf / '" in fix and "'/run/netns/a b'" in fix  # the id's first 12
    assert "dev 'tap 0'" in fix


# ---- readers of what operators hand us -----------------------------------------------------
def test_recordings_with_bad_lines(tmp_path: Any) -> None:
    good = os.path.join(ROOT, "tests", "data", "demo.ndjson")
    with open(good, "rb") as fh:
        first = fh.readline()
    cases = {"utf8": first + b'{"schema": "\xff\xfe"}\n',
             "deep": first + b"[" * 100_000 + b"\n",
             "inf": first + first.replace(b'"taken_at":', b'"taken_at":Infinity,"x":', 1)}
    for name, data in cases.items():
        path = tmp_path / f"{name}.ndjson"
        path.write_bytes(data)
        snaps, warning = load_recording(str(path))
        assert len(snaps) == 1 and warning and "line 2" in warning, name
    bad_first = tmp_path / "inf-first.ndjson"
    bad_first.write_bytes(first.replace(b'"taken_at":', b'"taken_at":Infinity,"x":', 1))
    with pytest.raises(RecordingError):
        load_recording(str(bad_first))
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(RecordingError, match="FIFO"):
        load_recording(str(tmp_path / "fifo"))


def test_config_that_is_a_fifo_deep_or_out_of_bounds(tmp_path: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from kata_top.settings import Settings

    cfg = tmp_path / "config.json"
    monkeypatch.setenv("KATA_TOP_CONFIG", str(cfg))
    os.mkfifo(cfg)
    assert Settings.load() == Settings()  # returned at once, not blocked on the FIFO
    os.unlink(cfg)
    cfg.write_text("[" * 100_000)
    assert Settings.load() == Settings()
    for bad in (1e-9, 1e308, -1, True):
        cfg.write_text(json.dumps({"refresh": bad}))
        assert Settings.load().refresh == 1.0, bad
    out = subprocess.run([sys.executable, "-m", "kata_top", "--refresh", "inf",
                          "--run-root", str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 2 and "--refresh" in out.stderr and "Traceback" not in out.stderr


def test_rate_of_four_hundred_digits_is_a_usage_error(tmp_path: Any) -> None:
    out = subprocess.run([sys.executable, "-m", "kata_top", "ratelimit", "set", "x", "--in",
                          "9" * 400, "--dry-run", "--run-root", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr) < 400  # the number is not echoed back whole


# ---- costs that must not grow with broken sandboxes ---------------------------------------
def test_corrupt_state_files_are_not_reread_every_cycle(tmp_path: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root = run_root(tmp_path / "root", {f"{i:064x}": b"" for i in range(20)})
    reads: list[str] = []
    real = state.read_state_file

    def counting(*args: Any, **kw: Any) -> state.StateRecord:
        reads.append(args[1])
        return real(*args, **kw)

    monkeypatch.setattr(state, "read_state_file", counting)
    engine = Engine(EngineOptions(run_root=root, with_vmm=False))
    try:
        engine.collect()
        assert len(reads) == 20
        engine.collect()
        assert len(reads) == 20  # unchanged corrupt files: the cached error
        with open(os.path.join(root, "vc", "sbs", f"{0:064x}", "persist.json"), "w") as fh:
            fh.write("{}")
        engine.collect()
        assert len(reads) == 21  # only the one that changed
    finally:
        engine.close()


def test_a_mistyped_run_root_costs_no_recursive_watches(tmp_path: Any) -> None:
    from kata_top.collectors.watch import StateWatcher, watch_paths

    deep = tmp_path / "usr"
    for i in range(30):
        (deep / f"d{i}" / "x" / "y").mkdir(parents=True)
    watcher = StateWatcher(watch_paths(str(deep)), lambda: None)
    try:
        # vc/sbs and kata: not there, said so (/run/netns too on a node that never had one)
        assert [m for m in watcher.missing if m.startswith(str(deep))] == [
            str(deep / "vc" / "sbs"), str(deep / "kata")]
        assert watcher.watch_count <= 2  # /run/netns at most, never the tree
    finally:
        if watcher.running:
            watcher.stop()


def test_a_stopped_watcher_wakes_nobody(tmp_path: Any) -> None:
    """A UI that has gone must not be called back: not by an event handled while it stops,
    nor by a second look counting down (it once woke a Textual app whose loop was closed)."""
    import time

    from kata_top.collectors import watch
    from kata_top.collectors.watch import StateWatcher

    woken: list[float] = []
    watcher = StateWatcher([str(tmp_path)], lambda: woken.append(time.monotonic()),
                           min_interval=0.0)
    watcher.start()
    watcher.fire()  # an event: a wake now, a second look later
    assert len(woken) == 1
    watcher.stop()
    watcher.fire()  # handled in the notifier's thread just as it stops
    time.sleep(watch.SECOND_LOOK_S + 0.3)
    assert len(woken) == 1


async def test_a_wake_after_the_dashboard_exits_is_dropped() -> None:
    from kata_top.formats.recording import load_recording
    from kata_top.settings import Settings
    from kata_top.sources.replay import ReplaySource
    from kata_top.widgets.app import KataTopApp
    from tests.helpers import RECORDING

    app = KataTopApp(ReplaySource(load_recording(RECORDING)[0]), refresh=3600,
                     theme="kata-dark", settings=Settings())
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.pause()
    app.wake_from_watcher()  # the watcher's thread, a moment late: nothing raised
