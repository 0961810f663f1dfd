"""`kata-top drops` on a lab whose sandboxes each lose packets one way: the reason, the
sandbox and the hop of each, and a control sandbox that gets nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from kata_top.lab import build, network
from tests.helpers import ROOT, need_root, require, running_lab
from tests.lab.drops_lab import ENV, flood, tap_holder

CONTROL, QDISC, DOWN, STALL, MTU = range(5)


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[dict[str, Any], list[str]]]:
    """One 4 s trace over five sandboxes: a healthy control, a rate limit that overflows, a
    tap that is down, a VMM that never reads its tap, a guest sending frames above the node
    veth's MTU. Yields the JSON report and the sandbox ids by role."""
    need_root()
    import shutil

    require(shutil.which("bpftrace") is not None, "needs bpftrace")
    opts = build.UpOptions(sandboxes=5, scenario="plain", qemu=False)
    with running_lab("dr", opts) as (layout, man), ExitStack() as stack:
        specs = [s.spec for s in man.sandboxes]
        for i, mode in ((CONTROL, "drain"), (QDISC, "drain"), (DOWN, "drain"),
                        (STALL, "stall"), (MTU, "send")):
            stack.enter_context(tap_holder(layout, man, i, mode))
        network.run_batch(["tc", "-n", layout.pod_ns(specs[QDISC])],
                                network.rate_limit_lines("tap0_kata", 1_000_000))
        network.run_batch(["ip", "-n", layout.pod_ns(specs[DOWN])],
                                ["link set tap0_kata down"])
        network.run_batch(["ip", "-n", layout.node_ns],
                                [f"link set {layout.node_veth(specs[MTU])} mtu 1400"])
        sender = threading.Thread(target=flood, args=(
            layout.node_ns, [specs[i].ip for i in (CONTROL, QDISC, DOWN, STALL)], 12.0))
        sender.start()
        try:
            out = subprocess.run([sys.executable, "-m", "kata_top", "drops", "--json",
                                  "--seconds", "4", "--run-root", layout.run_root],
                                 capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=90,
                                 check=False)
        finally:
            sender.join()
        assert out.returncode == 0, out.stderr
        yield json.loads(out.stdout), [s.id for s in specs]


def _drops(report: dict[str, Any], sid: str, side: str = "sandbox") -> set[tuple[str, str, str]]:
    return {(d["reason"], d["hop"], d["device"]) for s in report["sandboxes"]
            if s["sandbox_id"] == sid and s["side"] == side for d in s["drops"]}


def test_a_rate_limit_that_overflows_is_qdisc_drop_on_the_tap(traced: Any) -> None:
    report, ids = traced
    assert ("QDISC_DROP", "tap", "tap0_kata") in _drops(report, ids[QDISC])


def test_a_tap_that_is_down_is_tc_ingress_on_eth0(traced: Any) -> None:
    report, ids = traced
    assert ("TC_INGRESS", "mirred", "eth0") in _drops(report, ids[DOWN])


def test_a_vmm_that_does_not_drain_is_full_ring_at_the_vmm(traced: Any) -> None:
    report, ids = traced
    got = _drops(report, ids[STALL])
    assert ("FULL_RING", "vmm", "tap0_kata") in got
    line = next(d for s in report["sandboxes"] if s["sandbox_id"] == ids[STALL]
                for d in s["drops"] if d["reason"] == "FULL_RING")
    assert line["function"] == "tun_net_xmit" and "VMM is not reading" in line["meaning"]


def test_a_frame_above_the_node_veths_mtu_dies_at_the_node_veth(traced: Any) -> None:
    """This kernel (6.18) gives no specific reason: NOT_SPECIFIED, where the veth hands the
    frame to its peer; kata-top places it on the node veth hop and names the MTU."""
    report, ids = traced
    got = {(r, h) for r, h, _ in _drops(report, ids[MTU])}
    assert got & {("NOT_SPECIFIED", "node-veth"), ("PKT_TOO_BIG", "node-veth")}, got
    line = next(d for s in report["sandboxes"] if s["sandbox_id"] == ids[MTU]
                for d in s["drops"] if d["hop"] == "node-veth")
    assert "MTU" in line["meaning"]


def test_the_control_sandbox_loses_nothing(traced: Any) -> None:
    report, ids = traced
    assert not [s for s in report["sandboxes"] if s["sandbox_id"] == ids[CONTROL]]
    # and each faulty sandbox got only its own reasons
    assert {r for r, _, _ in _drops(report, ids[QDISC])} == {"QDISC_DROP"}
    assert {r for r, _, _ in _drops(report, ids[STALL])} == {"FULL_RING"}


def test_the_report_follows_its_schema(traced: Any) -> None:
    import jsonschema

    from kata_top.drops.schema import drops_schema

    report, _ = traced
    assert report["schema"] == "kata-top/drops/1"
    jsonschema.validate(report, drops_schema())


async def test_the_dashboard_key_traces_and_marks_the_hop() -> None:
    """Live: `D` in a stalled sandbox's detail runs the trace (a worker, through the
    source), the header counts down, and the datapath marks the VMM hop with FULL_RING."""
    need_root()
    import shutil

    from kata_top.engine import EngineOptions
    from kata_top.settings import Settings
    from kata_top.sources.live import LiveSource
    from kata_top.widgets.app import KataTopApp
    from tests.unit.test_ui import settle, shown_text

    require(shutil.which("bpftrace") is not None, "needs bpftrace")
    opts = build.UpOptions(sandboxes=2, scenario="plain", qemu=False)
    with running_lab("du", opts) as (layout, man), \
            tap_holder(layout, man, 0, "drain"), tap_holder(layout, man, 1, "stall"):
        specs = [s.spec for s in man.sandboxes]
        sender = threading.Thread(target=flood, args=(layout.node_ns,
                                                      [s.ip for s in specs], 25.0))
        sender.start()
        source = LiveSource(EngineOptions(run_root=layout.run_root, with_vmm=False))
        app = KataTopApp(source, refresh=1.0, theme="kata-dark", settings=Settings())
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                await settle(pilot)
                app.open_sandbox(specs[1].id)
                await pilot.pause(0.5)
                await pilot.press("D")
                for _ in range(200):  # the header says so once bpftrace is attached
                    await pilot.pause(0.1)
                    if "left of 10" in str(app.header_text()):
                        break
                assert "left of 10" in str(app.header_text())
                for _ in range(400):
                    await pilot.pause(0.1)
                    if app.drops is not None:
                        break
                await pilot.pause(1.5)  # a collection after it: the findings too
                text = shown_text(app.screen)
                assert "✖ FULL_RING" in text, text
                assert app.drops is not None
                assert {s.sandbox_id for s in app.drops.sandboxes} == {specs[1].id}
                sb = app.snapshot.find(specs[1].id) if app.snapshot else None
                assert sb is not None and "KT-S080" in {f.code for f in sb.findings}
        finally:
            sender.join()
