"""Not dumping idle namespaces again must never hide a change: real lab, real tc and link
changes, with the counters probe (RTM_GETSTATS) and with the whole-link-dump fallback."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest

from kata_top.collectors.netcollect import NetCollector
from kata_top.collectors.rtnetlink import NetnsDump
from kata_top.lab import build, traffic


def _cycle(nc: NetCollector, paths: list[str]) -> list[NetnsDump]:
    nc.begin_cycle(set())
    try:
        return [nc.collect(p).dump for p in paths]
    finally:
        nc.end_cycle()


def _idle_cycle(nc: NetCollector, paths: list[str]) -> list[NetnsDump]:
    """A cycle in which every namespace reused its tc dump (stray packets, such as the MLD
    reports IPv6 sends as it is switched off, make a namespace dump again)."""
    t0 = time.monotonic()
    while True:
        dumps = _cycle(nc, paths)
        if nc.tc_reused == len(paths):
            return dumps
        assert time.monotonic() - t0 < 15, "idle namespaces never reused their tc dump"
        time.sleep(0.2)


def _quiet(namespaces: list[str]) -> None:
    # IPv6 neighbour discovery in fresh namespaces would keep the links moving for a minute.
    for ns in namespaces:
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        "net.ipv6.conf.all.disable_ipv6=1"], check=True)


def _redirects(dump: NetnsDump) -> set[str]:
    return {f.dev for f in dump.filters for a in f.actions if a.kind == "mirred"}


@pytest.mark.parametrize("stats_probe", [True, False], ids=["getstats", "linkdump"])
def test_idle_namespaces_reuse_tc_and_every_change_shows_next_cycle(
        scratch_lab: Any, stats_probe: bool) -> None:
    man = build.up(scratch_lab, build.UpOptions(sandboxes=2, qemu=False, scenario="plain"))
    namespaces = [sb.netns for sb in man.sandboxes if sb.netns]
    _quiet([scratch_lab.node_ns, *namespaces])
    paths = [f"/run/netns/{ns}" for ns in namespaces]
    nc = NetCollector(stats_probe=stats_probe)  # False: as on a kernel without RTM_GETSTATS
    try:
        first = _idle_cycle(nc, paths)
        assert _redirects(first[0]) == {"eth0", "tap0_kata"}

        # Reused as they are: actions keep the times they were installed and last used (the
        # kernel's ages counted back from the dump), so ages move on by the clock alone.
        time.sleep(0.5)
        again = _idle_cycle(nc, paths)
        installed = [a.installed_at for f in first[0].filters for a in f.actions]
        later = [a.installed_at for f in again[0].filters for a in f.actions]
        assert installed and all(t is not None and time.time() - 3600 < t < time.time()
                                 for t in installed)
        # the same times whether the dump was reused or (a stray packet) read again
        assert all(t is not None and u is not None and abs(t - u) < 0.05
                   for t, u in zip(installed, later, strict=True))
        reused = _cycle(nc, paths)
        if nc.tc_reused == len(paths):
            assert reused[0].filters is again[0].filters

        # A removed redirect in an idle namespace shows in the very next cycle.
        _idle_cycle(nc, paths)
        subprocess.run(["tc", "-n", namespaces[0], "filter", "del", "dev", "eth0", "ingress"],
                       check=True)
        after = _cycle(nc, paths)
        assert nc.tc_reused <= 1
        assert _redirects(after[0]) == {"tap0_kata"}
        assert _redirects(after[1]) == {"eth0", "tap0_kata"}

        # So does a new qdisc, and traffic (counters) in the other namespace.
        subprocess.run(["tc", "-n", namespaces[0], "qdisc", "add", "dev", "tap0_kata", "root",
                        "handle", "1:", "htb"], check=True)
        before = sum(a.stats.packets for f in after[1].filters for a in f.actions)
        traffic.run(scratch_lab.node_ns, [man.sandboxes[1].spec.ip], seconds=0.3,
                    rate_pps=100)
        eth0_before = _link(after[1], "eth0").stats.rx_packets
        moved = _cycle(nc, paths)
        assert nc.tc_reused == 0
        assert any(q.kind == "htb" for q in moved[0].qdiscs)
        assert sum(a.stats.packets for f in moved[1].filters for a in f.actions) > before
        # traffic alone (nothing reconfigured): links from the counters probe, tc dumped
        assert nc.restatted == (1 if stats_probe else 0)
        assert _link(moved[1], "eth0").stats.rx_packets > eth0_before
    finally:
        nc.close()


def _link(dump: NetnsDump, name: str) -> Any:
    return next(lk for lk in dump.links if lk.name == name)


def test_link_changes_in_an_idle_namespace_show_next_cycle(scratch_lab: Any) -> None:
    """No packet moves when an MTU, a link state or an IPv6 setting changes: the link and
    IPv6-setting notifications, not the counters, make the namespace dump again."""
    man = build.up(scratch_lab, build.UpOptions(sandboxes=1, qemu=False, scenario="plain"))
    ns = next(sb.netns for sb in man.sandboxes if sb.netns)
    assert ns
    _quiet([scratch_lab.node_ns, ns])
    paths = [f"/run/netns/{ns}"]
    nc = NetCollector()
    try:
        first = _idle_cycle(nc, paths)[0]
        assert _link(first, "tap0_kata").mtu == 1500
        _idle_cycle(nc, paths)
        subprocess.run(["ip", "-n", ns, "link", "set", "tap0_kata", "mtu", "1400"], check=True)
        after = _cycle(nc, paths)[0]
        assert nc.tc_reused == 0
        assert _link(after, "tap0_kata").mtu == 1400

        _idle_cycle(nc, paths)
        subprocess.run(["ip", "-n", ns, "link", "set", "tap0_kata", "down"], check=True)
        down = _cycle(nc, paths)[0]
        assert nc.tc_reused == 0
        assert not _link(down, "tap0_kata").up

        # IPv6 switched back on shows once the kernel has brought it up (it tells so a moment
        # later); switched off, it shows at the very next cycle.
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        "net.ipv6.conf.eth0.disable_ipv6=0"], check=True)
        t0 = time.monotonic()
        while _link(_cycle(nc, paths)[0], "eth0").ipv6_disabled is not False:
            assert time.monotonic() - t0 < 15, "IPv6 switched on never showed"
            time.sleep(0.2)
        _idle_cycle(nc, paths)
        subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                        "net.ipv6.conf.eth0.disable_ipv6=1"], check=True)
        v6 = _cycle(nc, paths)[0]
        assert nc.tc_reused == 0
        assert _link(v6, "eth0").ipv6_disabled is True
    finally:
        nc.close()


def test_an_idle_sandbox_is_built_once(scratch_lab: Any) -> None:
    """The engine hands out the same model objects for an idle sandbox (what the encoders
    and the dashboard skip by identity), ages moved on, and a new one once it changes."""
    from kata_top.engine import Engine, EngineOptions

    man = build.up(scratch_lab, build.UpOptions(sandboxes=1, qemu=False, scenario="plain"))
    ns = next(sb.netns for sb in man.sandboxes if sb.netns)
    assert ns
    _quiet([scratch_lab.node_ns, ns])
    engine = Engine(EngineOptions(run_root=scratch_lab.run_root, with_vmm=False))
    try:
        t0 = time.monotonic()
        while True:
            a = engine.collect().snapshot.sandboxes[0]
            b = engine.collect().snapshot.sandboxes[0]
            if b.links is a.links:
                break
            assert time.monotonic() - t0 < 15, "an idle sandbox was never reused"
            time.sleep(0.2)
        assert b.qdiscs is a.qdiscs and b.redirects is a.redirects and b.pod is a.pod
        assert b is a  # filters too: an idle sandbox is the very same object
        subprocess.run(["ip", "-n", ns, "link", "set", "tap0_kata", "mtu", "1400"], check=True)
        c = engine.collect().snapshot.sandboxes[0]
        assert c.links is not b.links
        assert _link_of(c, "tap0_kata").mtu == 1400
    finally:
        engine.close()


def _link_of(sb: Any, name: str) -> Any:
    return next(lk for lk in sb.links if lk.name == name)


def test_one_shot_collection_reads_what_the_cached_one_reads(scratch_lab: Any) -> None:
    """`snapshot` once reads without the counters probe: the same links, qdiscs and filters.
    Its decode memo serves both namespaces: what is the same bytes in each is decoded once."""
    from msgspec.structs import replace

    man = build.up(scratch_lab, build.UpOptions(sandboxes=2, qemu=False, scenario="plain"))
    namespaces = [sb.netns for sb in man.sandboxes if sb.netns]
    _quiet([scratch_lab.node_ns, *namespaces])
    paths = [f"/run/netns/{ns}" for ns in namespaces]

    def ageless(d: NetnsDump) -> NetnsDump:
        return replace(d, filters=tuple(
            replace(f, actions=tuple(replace(a, installed_at=None, last_used_at=None)
                                     for a in f.actions)) for f in d.filters))

    cached, once = NetCollector(), NetCollector(one_shot=True)
    try:
        # (a stray packet between the two reads moves a counter: read both again)
        for _ in range(5):
            want = [ageless(d) for d in _idle_cycle(cached, paths)]
            got = [ageless(d) for d in _cycle(once, paths)]
            if got == want:
                break
        assert got == want
        assert all(d.filters and d.links for d in got)
        assert once.tc_reused == 0
        lo_qdiscs = [next(q for q in d.qdiscs if q.dev == "lo") for d in got]
        assert lo_qdiscs[0] is lo_qdiscs[1]  # one decode for the two namespaces' loopback
    finally:
        cached.close()
        once.close()


def test_a_busy_sandbox_off_screen_has_tc_read_every_few_seconds_and_changes_at_once(
        scratch_lab: Any) -> None:
    """The dashboard reads a busy sandbox's tc counters every cycle only while it is on
    screen (Pipeline.watch_closely); off screen its links' counters are read every cycle,
    its tc counters every EngineOptions.tc_busy_refresh_s — and a tc change made by hand
    still shows at the very next cycle."""
    from kata_top.engine import EngineOptions
    from kata_top.pipeline import Pipeline

    man = build.up(scratch_lab, build.UpOptions(sandboxes=2, qemu=False, scenario="plain"))
    specs = [sb for sb in man.sandboxes if sb.netns]
    _quiet([scratch_lab.node_ns, *[sb.netns for sb in specs if sb.netns]])
    src = Pipeline(EngineOptions(run_root=scratch_lab.run_root, with_vmm=False,
                                 tc_busy_refresh_s=600.0), host_every_s=None)
    try:
        snap = src.next()
        on, off = (next(sb.id for sb in snap.sandboxes if sb.netns.path and
                        sb.netns.path.endswith(spec.netns or "?")) for spec in specs)

        def redirected_in(s: Any, sid: str) -> int:
            sb = s.find(sid)
            return sum(r.packets for r in sb.redirects if r.direction == "in")

        def eth0_rx(s: Any, sid: str) -> int:
            return int(_link_of(s.find(sid), "eth0").stats.rx_packets)

        t0 = time.monotonic()
        while True:  # until both are idle: their tc dumps are current
            step = src.step()
            snap = step.snapshot
            if step.collection.reused_namespaces >= 2:
                break
            assert time.monotonic() - t0 < 15, "the namespaces never went idle"
            time.sleep(0.2)
        # Only now is one off screen: a stray packet before (a fresh namespace's last IPv6
        # or ARP chatter) would leave its tc unread for tc_busy_refresh_s, never idle.
        src.watch_closely([on])
        traffic.run(scratch_lab.node_ns, [spec.spec.ip for spec in specs], seconds=0.3,
                    rate_pps=100)
        busy = src.next()
        # on screen: tc read again; off screen: the links moved, tc is the last read's
        assert redirected_in(busy, on) > redirected_in(snap, on)
        assert eth0_rx(busy, off) > eth0_rx(snap, off)
        assert redirected_in(busy, off) == redirected_in(snap, off)
        assert on not in busy.tc_read_at and busy.tc_read_at.get(off) == snap.taken_at
        assert busy.find(off).qdiscs is snap.find(off).qdiscs

        # a filter deleted by hand while off screen and busy shows at the next cycle
        off_ns = next(spec.netns for spec in specs
                      if busy.find(off).netns.path.endswith(spec.netns or "?"))
        subprocess.run(["tc", "-n", off_ns, "filter", "del", "dev", "eth0", "ingress"],
                       check=True)
        traffic.run(scratch_lab.node_ns, [spec.spec.ip for spec in specs], seconds=0.2,
                    rate_pps=100)
        changed = src.next()
        assert {r.direction for r in changed.find(off).redirects if r.present} == {"out"}
        assert off not in changed.tc_read_at

        # on screen again: read every cycle
        src.watch_closely(None)
        traffic.run(scratch_lab.node_ns, [spec.spec.ip for spec in specs], seconds=0.2,
                    rate_pps=100)
        assert src.next().tc_read_at == {}
    finally:
        src.close()


def test_an_unwatched_sandbox_is_not_read_again_before_its_time_but_changes_show_at_once(
        scratch_lab: Any) -> None:
    """With EngineOptions.unwatched_refresh_s (the dashboard's rows off screen) a sandbox is
    not read at all before its time: packets that crossed do not show, its last snapshot
    stands with its rates, and Snapshot.links_read_at says since when. A filter deleted by hand
    still shows at the very next cycle (the namespace notified it); a watched sandbox is
    read every cycle, and once read again the rates count over the time since the read."""
    from kata_top.engine import EngineOptions
    from kata_top.pipeline import Pipeline

    man = build.up(scratch_lab, build.UpOptions(sandboxes=2, qemu=False, scenario="plain"))
    specs = [sb for sb in man.sandboxes if sb.netns]
    _quiet([scratch_lab.node_ns, *[sb.netns for sb in specs if sb.netns]])
    src = Pipeline(EngineOptions(run_root=scratch_lab.run_root, with_vmm=False,
                                 unwatched_refresh_s=600.0), host_every_s=None)
    ips = [spec.spec.ip for spec in specs]
    try:
        for _ in range(2):  # what the namespaces' set-up still notified, read while watched
            src.next()
            time.sleep(0.2)
        snap = src.next()  # every sandbox read here
        on, off = (next(sb.id for sb in snap.sandboxes if sb.netns.path and
                        sb.netns.path.endswith(spec.netns or "?")) for spec in specs)
        off_ns = next(spec.netns for spec in specs
                      if snap.find(off).netns.path.endswith(spec.netns or "?"))

        def eth0_rx(s: Any, sid: str) -> int:
            return int(_link_of(s.find(sid), "eth0").stats.rx_packets)

        src.watch_closely([on])
        traffic.run(scratch_lab.node_ns, ips, seconds=0.3, rate_pps=100)
        step = src.step()
        busy = step.snapshot
        assert eth0_rx(busy, on) > eth0_rx(snap, on)
        assert busy.find(off) is snap.find(off)  # not read: the last one stands, rates too
        assert busy.links_read_at == {off: snap.taken_at}
        assert busy.tc_read_at.get(off) == snap.taken_at
        assert step.collection.skipped_namespaces == 1

        # a filter deleted by hand shows at the next cycle, and the counters with it
        subprocess.run(["tc", "-n", off_ns, "filter", "del", "dev", "eth0", "ingress"],
                       check=True)
        changed = src.next()
        assert {r.direction for r in changed.find(off).redirects if r.present} == {"out"}
        assert off not in changed.links_read_at and off not in changed.tc_read_at
        # its rates count over the time since its last read, not since the last snapshot
        rx = eth0_rx(changed, off) - eth0_rx(snap, off)
        assert rx > 0
        assert changed.find(off).rates["link.eth0.rx_pps"] == pytest.approx(
            rx / (changed.taken_at - snap.taken_at), rel=0.01)

        src.watch_closely(None)  # everything on screen: read every cycle
        traffic.run(scratch_lab.node_ns, ips, seconds=0.2, rate_pps=100)
        step = src.step()
        assert step.snapshot.links_read_at == {} and step.collection.skipped_namespaces == 0
    finally:
        src.close()


def test_route_dump_asks_for_the_main_table_and_reads_what_a_whole_dump_reads(
        scratch_lab: Any) -> None:
    """With strict checking the kernel dumps the main table only (not the local table nor
    any other); the routes kata-top reads are the ones a dump of every table gives."""
    from kata_top.collectors.rtnetlink.decode import RT_TABLE_MAIN, decode_route
    from kata_top.collectors.rtnetlink.netlink import RTMSG, RtnlSocket

    man = build.up(scratch_lab, build.UpOptions(sandboxes=1, qemu=False, scenario="plain"))
    ns = next(sb.netns for sb in man.sandboxes if sb.netns)
    for args in (["10.99.0.0/24", "dev", "eth0", "table", "100"],
                 ["10.98.0.0/24", "dev", "eth0", "mtu", "1280"]):
        subprocess.run(["ip", "-n", ns, "route", "add", *args], check=True)
    sock = RtnlSocket.open(f"/run/netns/{ns}")
    try:
        assert sock.strict, "this kernel (>= 4.20) checks dump requests strictly"
        filtered = sock.dump_routes()
        sock.strict = False
        whole = sock.dump_routes()
    finally:
        sock.close()
    assert {RTMSG.unpack_from(b)[4] for b in filtered} == {RT_TABLE_MAIN}
    assert len(whole) > len(filtered)  # the local table's routes, table 100's
    names = {2: "eth0"}
    got = [r for r in (decode_route(b, names) for b in filtered) if r]
    assert got == [r for r in (decode_route(b, names) for b in whole) if r]
    assert {r.dst: r.mtu for r in got}["10.98.0.0/24"] == 1280
    assert "10.99.0.0/24" not in {r.dst for r in got}


def test_named_namespaces_taken_from_the_sandboxes_lookups_are_the_same(
        scratch_lab: Any) -> None:
    """named_netns takes the ids of the sandboxes' namespaces as the engine looked them up
    (by the /var/run/netns path Kata writes; /var/run is /run here) instead of looking them
    up again: same map."""
    import os

    from kata_top.collectors import netns

    man = build.up(scratch_lab, build.UpOptions(sandboxes=2, qemu=False, scenario="plain"))
    known = {path: netns.netns_id(path) for path in
             (os.path.join("/var/run/netns", sb.netns) for sb in man.sandboxes if sb.netns)}
    assert len(known) == 2
    named = netns.named_netns(known)
    assert named == netns.named_netns()
    assert {named[i] for i in known.values()} == {os.path.basename(p) for p in known}
    # it takes the ids it is given, not a second lookup of its own
    path, real = next(iter(known.items()))
    told = netns.NetnsId(real.dev, 1)
    assert netns.named_netns({path: told})[told] == os.path.basename(path)


def test_link_dumps_leave_out_ipv6_statistics_and_keep_the_counters(scratch_lab: Any) -> None:
    """RTEXT_FILTER_SKIP_STATS: no IPv6 statistics (never read, summed per possible CPU by
    the kernel), the link's own counters and everything decoded the same as a whole dump."""
    from msgspec.structs import replace

    from kata_top.collectors.rtnetlink import netlink
    from kata_top.collectors.rtnetlink.decode import AF_INET6, IFLA_AF_SPEC, decode_link
    from kata_top.collectors.rtnetlink.netlink import (
        ALL_LINKS,
        IFINFOMSG,
        RTM_GETLINK,
        RtnlSocket,
        attr_spans,
    )
    from kata_top.model import LinkStats

    def inet6_types(body: bytes) -> set[int]:
        out: set[int] = set()
        for t, a0, a1 in attr_spans(body, IFINFOMSG.size, len(body)):
            if t == IFLA_AF_SPEC:
                for fam, f0, f1 in attr_spans(body, a0, a1):
                    if fam == AF_INET6:
                        out |= {x for x, _, _ in attr_spans(body, f0, f1)}
        return out

    man = build.up(scratch_lab, build.UpOptions(sandboxes=1, qemu=False, scenario="plain"))
    ns = next(sb.netns for sb in man.sandboxes if sb.netns)
    traffic.run(scratch_lab.node_ns, [man.sandboxes[0].spec.ip], seconds=0.2, rate_pps=100)
    sock = RtnlSocket.open(f"/run/netns/{ns}")
    try:
        lean, whole = sock.dump_links(), sock.request(RTM_GETLINK, ALL_LINKS)
    finally:
        sock.close()
    assert netlink.link_dumps_skip_ipv6_stats() is True
    ipv6_stats = {3, 6}  # IFLA_INET6_STATS, IFLA_INET6_ICMP6STATS
    assert all(ipv6_stats <= inet6_types(b) for b in whole)
    assert not any(ipv6_stats & inet6_types(b) for b in lean)
    assert sum(map(len, lean)) < sum(map(len, whole))

    def no_counters(body: bytes) -> Any:
        link, nsid = decode_link(body)
        return replace(link, stats=None), nsid

    assert [no_counters(b) for b in lean] == [no_counters(b) for b in whole]
    eth0 = next(lk for lk, _ in map(decode_link, lean) if lk.name == "eth0")
    assert eth0.stats != LinkStats() and eth0.stats.rx_packets >= 10  # the pings came in
