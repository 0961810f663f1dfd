"""Faults named for what they are, as pure logic: redirect states, host probes judged against
the sandboxes, findings on everything still there (the lab side: tests/lab/test_truth_lab.py)."""

from __future__ import annotations

from typing import Any

from kata_top.collectors import hostcheck
from kata_top.model import (
    HostInfo,
    Hypervisor,
    NetnsInfo,
    Pod,
    Redirect,
    Sandbox,
    Snapshot,
)


def _sb(sid: str, **kw: Any) -> Sandbox:
    return Sandbox(id=sid, runtime="go",
                   **{"network_model": "tcfilter", "netns": NetnsInfo(None, None),
                      "pod": Pod(None, None), "state": "running",
                      "hypervisor": Hypervisor("qemu", 1, True), **kw})


def _host(tmp_path: Any, devs: tuple[str, ...]) -> dict[str, Any]:
    dev = tmp_path / "dev"
    (dev / "net").mkdir(parents=True)
    for name in devs:
        (dev / name).symlink_to("/dev/null")
    return {f.code: f for f in hostcheck.host_findings(dev_root=str(tmp_path), probe=False,
                                                       config_paths=(), netlink_results=[])}


def test_netlink_families_kata_opens_are_probed_and_named(tmp_path: Any) -> None:
    """Seed 000: a kernel without netfilter netlink (or xfrm_user) fails Kata's netlink
    handle with `protocol not supported`; the finding names the kernel option and Kata's
    text. The probe itself opens a socket per family on this host."""
    import errno

    def lacks_netfilter(proto: int) -> None:
        if proto == 12:
            raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")

    results = hostcheck.probe_netlink(lacks_netfilter)
    found = {f.code: f for f in hostcheck.host_findings(
        dev_root=str(tmp_path), probe=False, config_paths=(), netlink_results=results)}
    f = found["KT-H011"]
    assert f.severity == "critical" and "CONFIG_NETFILTER_NETLINK" in f.summary
    assert "protocol not supported" in f.summary and f.evidence["family"] == "netlink-netfilter"
    assert "CONFIG_XFRM_USER" not in f.summary
    assert all(r.ok for r in hostcheck.probe_netlink())  # this host has both


def test_host_vhost_net_finding_follows_the_sandboxes_disable_vhost_net(tmp_path: Any) -> None:
    from kata_top.diagnose.hostfacts import in_context

    host = _host(tmp_path, ("kvm", "vhost-vsock", "net/tun"))
    h002 = host["KT-H002"]
    assert "Kata fails" not in h002.summary and h002.evidence["kernel_option"] == \
        "CONFIG_VHOST_NET"

    def snap(*disable: bool | None) -> Snapshot:
        sbs = tuple(_sb(f"{i:064x}", disable_vhost_net=d) for i, d in enumerate(disable))
        return Snapshot(taken_at=1.0, host=HostInfo("n", "k", "/run", True), sandboxes=sbs)

    (off,) = in_context([h002], snap(True, True))
    assert off.severity == "info" and "DisableVhostNet: true" in off.summary
    (on,) = in_context([h002], snap(True, False))
    assert on.severity == "critical" and on.evidence["sandboxes_using_vhost_net"] == [
        f"{1:064x}"[:12]]
    (unknown,) = in_context([h002], snap(None))
    assert unknown == h002


def test_each_redirect_state_is_told_the_same_everywhere() -> None:
    """A redirect to the wrong device is `elsewhere` (named), not `missing`; no ingress qdisc
    is named; a target down is `failing`: the overview, the findings and their printed fixes
    say the same."""
    from kata_top import derive, summary
    from kata_top.diagnose import sandbox_findings
    from kata_top.model import Link, LinkStats, Redirect

    def link(name: str, up: bool = True) -> Link:
        return Link(name, 2, "veth", 1500, None, "up" if up else "down", up, True, LinkStats())

    ok_in = Redirect("in", "eth0", "tap0_kata", True, prio=49152)
    cases = {
        "elsewhere": (Redirect("out", "tap0_kata", "eth0", False, elsewhere="eth1",
                               elsewhere_prio=49152), "out→eth1", "KT-S004",
                      ["tc filter del dev tap0_kata parent ffff: prio 49152",
                       "tc filter add dev tap0_kata parent ffff: protocol all u32 match u8 0 0 "
                       "action mirred egress redirect dev eth0"]),
        "no-qdisc": (Redirect("out", "tap0_kata", "eth0", False, ingress_qdisc=False),
                     "in only", "KT-S005",
                     ["tc qdisc add dev tap0_kata ingress",
                      "tc filter add dev tap0_kata parent ffff: protocol all u32 match u8 0 0 "
                      "action mirred egress redirect dev eth0"]),
        "missing": (Redirect("out", "tap0_kata", "eth0", False), "in only", "KT-S002",
                    ["tc filter add dev tap0_kata parent ffff: protocol all u32 match u8 0 0 "
                     "action mirred egress redirect dev eth0"]),
    }
    for state, (out, text, code, cmds) in cases.items():
        sb = _sb("a" * 64, redirects=(ok_in, out), tap_name="tap0_kata",
                 links=(link("eth0"), link("tap0_kata")),
                 netns=NetnsInfo("/run/netns/cni-1", None, name="cni-1"))
        assert derive.redirect_states(sb) == {"in": "ok", "out": state}
        assert summary.redirect_health(sb) == text
        f = next(f for f in sandbox_findings(sb, None) if f.code == code)
        assert f.evidence["commands"] == cmds
        assert f.fix.endswith("(= " + " && ".join(f"ip netns exec cni-1 {c}" for c in cmds)
                              + ")")
        assert not {"KT-S001", "KT-S002", "KT-S004", "KT-S005"} - {code} & {
            x.code for x in sandbox_findings(sb, None)}
    down = _sb("b" * 64, redirects=(ok_in, Redirect("out", "tap0_kata", "eth0", True)),
               tap_name="tap0_kata", links=(link("eth0"), link("tap0_kata", up=False)))
    assert derive.redirect_states(down)["in"] == "failing"
    assert summary.redirect_health(down) == "in failing"


def test_journals_and_audit_entries_stay_with_their_run_root() -> None:
    """Two run roots on one node (same pod names): each journal, each stream's audit events
    and each `events` reading holds its own root's only."""
    from kata_top.events.diff import diff_events
    from kata_top.events.journal import default_journal
    from kata_top.events.query import event_matches

    assert default_journal("/run") == default_journal("/var/run/")
    assert default_journal("/run/lab-a") != default_journal("/run/lab-b") != \
        default_journal("/run")
    sb = _sb("c" * 64, pod=Pod("web-0", "default"))

    def snap(root: str) -> Snapshot:
        return Snapshot(taken_at=1.0, host=HostInfo("n", "k", root, True), sandboxes=(sb,))

    mine = {"sandbox": sb.id, "operation": "redirect add out", "ok": True, "changed": True}
    other_root = {**mine, "run_root": "/run/lab-b"}
    other_sandbox = {**mine, "sandbox": "d" * 64}
    events = diff_events(snap("/run/lab-a"), snap("/run/lab-a"),
                         actions=[mine, other_root, other_sandbox])
    assert [(e.kind, e.sandbox_id, e.run_root) for e in events] == [
        ("action", sb.id, "/run/lab-a")]
    doc = {"at": 1.0, "run_root": "/run/lab-b", "sandbox_id": sb.id}
    assert not event_matches(doc, None, None, "/run/lab-a")
    assert event_matches(doc, None, None, "/run/lab-b")


def test_the_small_ones_say_what_is_so() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from kata_top import summary
    from kata_top.diagnose import sandbox_findings
    from kata_top.engine.beside import VIRTIOFSD_RATE_FLAGS, virtiofsd_opts
    from kata_top.model import Action, ActionStats, Vmm
    from kata_top.widgets.detail_text import last_used
    from kata_top.widgets.modals import help_table

    # --rlimit-nofile is the open-files limit, not a rate limit
    argv = ("virtiofsd", "--rlimit-nofile=1048576", "--thread-pool-size=1")
    assert virtiofsd_opts(argv)["nofile"] == "1048576"
    assert not [a for a in argv if a.startswith(VIRTIOFSD_RATE_FLAGS)]
    # no pid recorded: no `pid None`
    stale = _sb("f" * 64, state="stale", hypervisor=Hypervisor("clh", None, False))
    s020 = next(f for f in sandbox_findings(stale, None) if f.code == "KT-S020")
    assert "None" not in s020.summary
    # a filter that never matched was never used
    never = Action("mirred", "redirect", "egress", "eth0", 2, ActionStats(), 100.0, 100.0)
    assert last_used(never, 141.0) == "never"
    used = Action("mirred", "redirect", "egress", "eth0", 2, ActionStats(packets=3), 100.0,
                  120.0)
    assert last_used(used, 141.0) == "21s ago"
    # vCPUs from the state file when no monitor told
    sb = _sb("a" * 64, vmm=Vmm("proc", "running", memory_bytes=128 << 20), config_vcpus=2)
    assert summary.resources_text(sb).startswith("2c/")
    # the help names the detail tabs' keys
    app = SimpleNamespace(BINDINGS=[], _keymap={}, HELP_SECTIONS=None)
    console = Console(record=True, width=160)
    console.print(help_table(SimpleNamespace(app=app), False))  # type: ignore[arg-type]
    assert "Tab, then ← →" in console.export_text()


def test_a_redirect_sent_elsewhere_is_told_so_by_the_event() -> None:
    from kata_top.events.diff import diff_events

    ok = (Redirect("in", "eth0", "tap0_kata", True), Redirect("out", "tap0_kata", "eth0", True))
    moved = (ok[0], Redirect("out", "tap0_kata", "eth0", False, elsewhere="eth1",
                             elsewhere_prio=49152))

    def snap(reds: tuple[Redirect, ...]) -> Snapshot:
        return Snapshot(taken_at=1.0, host=HostInfo("n", "k", "/run", True),
                        sandboxes=(_sb("a" * 64, redirects=reds),))

    (e,) = [e for e in diff_events(snap(ok), snap(moved)) if e.kind == "redirect-removed"]
    assert "sent to eth1 instead" in e.summary


def test_the_overview_and_the_detail_mark_what_is_lost_on_the_way_in() -> None:
    from kata_top.widgets.detail_text import lost_text
    from kata_top.widgets.overview_columns import cell

    failing = _sb("a" * 64, rates={"vm.in_bps": 0.0, "vm.in_attempted_bps": 131_000.0,
                                   "vm.in_failed_pps": 16.0, "vm.in_dropped_pps": 0.0})
    text, role = cell("in", failing, [])
    assert text.endswith("!") and role == "bad"
    assert "tried" in lost_text(failing) and "lost 16 pkt/s" in lost_text(failing)
    fine = _sb("b" * 64, rates={"vm.in_bps": 8000.0, "vm.in_failed_pps": 0.0})
    assert cell("in", fine, [])[1] == "" and lost_text(fine) == ""
