"""Skipping idle namespaces' tc dumps must never hide a change: real lab, real tc changes."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from collectors.netcollect import NetCollector
from collectors.rtnl import NetnsDump
from kata_top.lab import build, traffic


def _cycle(nc: NetCollector, paths: list[str]) -> list[NetnsDump]:
    nc.begin_cycle(set())
    try:
        return [nc.collect(p)[1] for p in paths]
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


def test_idle_namespaces_reuse_tc_and_every_change_shows_next_cycle(scratch_lab: Any) -> None:
    man = build.up(scratch_lab, build.UpOptions(sandboxes=2, qemu=False, scenario="plain"))
    namespaces = [sb.netns for sb in man.sandboxes if sb.netns]
    _quiet([scratch_lab.node_ns, *namespaces])
    paths = [f"/run/netns/{ns}" for ns in namespaces]
    nc = NetCollector()
    try:
        first = _idle_cycle(nc, paths)
        assert _redirects(first[0]) == {"eth0", "tap0_kata"}

        # Ages move on while reused.
        time.sleep(0.5)
        again = _idle_cycle(nc, paths)
        age = [a.installed_s for f in first[0].filters for a in f.actions]
        later = [a.installed_s for f in again[0].filters for a in f.actions]
        assert all(b is not None and a is not None and b >= a + 0.4
                   for a, b in zip(age, later, strict=True))

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
        moved = _cycle(nc, paths)
        assert nc.tc_reused == 0
        assert any(q.kind == "htb" for q in moved[0].qdiscs)
        assert sum(a.stats.packets for f in moved[1].filters for a in f.actions) > before
    finally:
        nc.close()
