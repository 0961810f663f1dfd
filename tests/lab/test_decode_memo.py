"""The decode memo must give exactly what a fresh decode gives, for every message, every cycle.

It is fed real dumps of a lab with mirred redirects, HTB limits and traffic between rounds, so
counters and action ages move while the configuration stays, and then the configuration moves.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from kata_top.collectors.rtnetlink import decode as rtnl
from kata_top.collectors.rtnetlink.memo import DecodeMemo, filter_layout, link_layout, masked
from kata_top.collectors.rtnetlink.netlink import (
    IFLA_STATS64,
    RTM_GETQDISC,
    RTM_GETTCLASS,
    RTM_GETTFILTER,
    RtnlSocket,
)
from kata_top.lab import build, traffic


def _check_round(sock: RtnlSocket, memo: DecodeMemo) -> dict[str, int]:
    """Decode each raw message both ways; they must be equal. Counts what was compared."""
    seen = {"links": 0, "qdiscs": 0, "classes": 0, "filters": 0, "actions": 0}
    links = sock.dump_links()
    decoded = [rtnl.decode_link(b) for b in links]
    assert [memo.link(b) for b in links] == decoded
    seen["links"] += len(links)
    names = {lk.ifindex: lk.name for lk, _ in decoded}
    for b in sock.dump_tc(RTM_GETQDISC):
        ifindex, q = rtnl.decode_qdisc(b, names)
        assert memo.qdisc(b, names) == (ifindex, q)
        seen["qdiscs"] += 1
        if q.kind == "htb":
            for c in sock.dump_tc(RTM_GETTCLASS, ifindex=ifindex):
                assert memo.tc_class(c, names) == rtnl.decode_class(c, names)
                seen["classes"] += 1
        parent = rtnl.INGRESS_HANDLE if q.kind == "ingress" else \
            int(q.handle.rstrip(":"), 16) << 16 if q.kind == "htb" else None
        if parent is None:
            continue
        for f in sock.dump_tc(RTM_GETTFILTER, ifindex=ifindex, parent=parent):
            now = time.time()  # the dump's time: actions' ages become times from it
            want = rtnl.decode_filter(f, names, now)
            assert memo.filter(f, names, now) == want
            if want is not None:
                seen["filters"] += 1
                seen["actions"] += len(want.actions)
    memo.rotate()
    return seen


def test_memo_equals_fresh_decode_across_traffic_and_changes(scratch_lab: Any) -> None:
    man = build.up(scratch_lab, build.UpOptions(sandboxes=4, qemu=False, scenario="demo"))
    sockets = {sb.netns: RtnlSocket.open(f"/run/netns/{sb.netns}")
               for sb in man.sandboxes if sb.netns}
    memos = {ns: DecodeMemo() for ns in sockets}
    try:
        totals: dict[str, int] = {}
        for round_no in range(4):
            if round_no in (1, 2):
                traffic.run(scratch_lab.node_ns, [sb.spec.ip for sb in man.sandboxes],
                            seconds=0.5, rate_pps=200)
            if round_no == 3:
                # A configuration change under the memo: a new MTU and a removed redirect.
                ns = next(iter(sockets))
                subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "mtu", "1400"],
                               check=True)
                subprocess.run(["tc", "-n", ns, "filter", "del", "dev", "eth0", "ingress"],
                               check=True)
            for ns, sock in sockets.items():
                for k, v in _check_round(sock, memos[ns]).items():
                    totals[k] = totals.get(k, 0) + v
        # The comparison covered every kind of object, actions with counters included.
        assert all(totals[k] > 0 for k in ("links", "qdiscs", "classes", "filters", "actions"))
    finally:
        for sock in sockets.values():
            sock.close()


def test_layouts_find_the_moving_parts(scratch_lab: Any) -> None:
    man = build.up(scratch_lab, build.UpOptions(sandboxes=1, qemu=False, scenario="tcfilter"))
    ns = man.sandboxes[0].netns
    assert ns
    sock = RtnlSocket.open(f"/run/netns/{ns}")
    try:
        eth0 = next(b for b in sock.dump_links() if rtnl.decode_link(b)[0].name == "eth0")
        assert any(span[2] == IFLA_STATS64 for span in link_layout(eth0))
        # Same configuration with other counters: the masked bytes are equal.
        traffic.run(scratch_lab.node_ns, [man.sandboxes[0].spec.ip], seconds=0.3,
                    rate_pps=100)
        again = next(b for b in sock.dump_links() if rtnl.decode_link(b)[0].name == "eth0")
        assert eth0 != again
        assert masked(eth0, link_layout(eth0)) == masked(again, link_layout(again))
        ingress = [b for b in sock.dump_tc(RTM_GETTFILTER, ifindex=rtnl.decode_link(eth0)[0]
                                           .ifindex, parent=rtnl.INGRESS_HANDLE)]
        spans = [span for b in ingress for span in filter_layout(b)]
        assert spans, "the mirred action's statistics and ages were not found"
    finally:
        sock.close()
