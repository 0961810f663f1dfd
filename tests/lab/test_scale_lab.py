"""1,000 sandboxes: the same truth as at ten. Counters bracketed by iproute2 where traffic
moves and where it does not, and a change made by hand with tc between two refreshes shows
at the next one, while the idle namespaces are not dumped again."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

from kata_top.engine import Engine, EngineOptions
from kata_top.lab import build, traffic
from kata_top.model import Sandbox
from tests.helpers import child_pids

SANDBOXES = 1000


def _mirred_packets(ns: str, dev: str) -> int:
    out = subprocess.run(["tc", "-n", ns, "-s", "-j", "filter", "show", "dev", dev, "ingress"],
                         capture_output=True, text=True, check=True)
    return sum(a["stats"]["packets"] for f in json.loads(out.stdout or "[]")
               for a in f.get("options", {}).get("actions", []))


def _rx_packets(ns: str, dev: str) -> int:
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev],
                         capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout)[0]["stats64"]["rx"]["packets"])


def _red_in(sb: Sandbox) -> int:
    return next(r.packets for r in sb.redirects if r.direction == "in")


def _eth0_rx(sb: Sandbox) -> int:
    return next(lk.stats.rx_packets for lk in sb.links if lk.name == "eth0")


def test_a_thousand_sandboxes_tell_the_truth(scratch_lab: Any) -> None:
    man = build.up(scratch_lab, build.UpOptions(sandboxes=SANDBOXES, qemu=False,
                                                scenario="plain"))
    specs = {sb.spec.id: sb for sb in man.sandboxes}
    engine = Engine(EngineOptions(run_root=scratch_lab.run_root, with_vmm=False))
    try:
        # Steady state first: a fresh lab's IPv6 chatter keeps namespaces busy a while.
        t0 = time.monotonic()
        while True:
            got = engine.collect()
            snap = got.snapshot
            assert len(snap.sandboxes) == SANDBOXES
            assert not [sb.id for sb in snap.sandboxes if sb.errors]
            if got.reused_namespaces >= SANDBOXES - 5:
                break
            assert time.monotonic() - t0 < 120, "the lab never went idle"
            time.sleep(1)

        ids = sorted(specs)
        busy, idle = ids[:4], ids[4:8]
        # Traffic into four sandboxes while the engine collects: their counters bracketed by
        # iproute2 read before and after the collection, the idle ones equal to it.
        sender = threading.Thread(target=traffic.run, args=(
            scratch_lab.node_ns, [specs[i].spec.ip for i in busy], 4.0, 200))
        sender.start()
        try:
            time.sleep(1.0)
            before = {i: (_mirred_packets(specs[i].netns, "eth0"),
                          _rx_packets(specs[i].netns, "eth0")) for i in busy + idle}
            got = engine.collect()
            snap = got.snapshot
            after = {i: (_mirred_packets(specs[i].netns, "eth0"),
                         _rx_packets(specs[i].netns, "eth0")) for i in busy + idle}
        finally:
            sender.join()
        by_id = {sb.id: sb for sb in snap.sandboxes}
        for i in busy:
            assert before[i][0] <= _red_in(by_id[i]) <= after[i][0]
            assert before[i][1] <= _eth0_rx(by_id[i]) <= after[i][1]
            assert before[i][0] < after[i][0]  # traffic was moving
        for i in idle:
            assert (_red_in(by_id[i]), _eth0_rx(by_id[i])) == before[i] == after[i]
        assert got.reused_namespaces >= SANDBOXES - 20  # the idle ones were not dumped

        # A redirect removed by hand in an idle sandbox shows at the very next refresh.
        victim = specs[idle[0]]
        subprocess.run(["tc", "-n", victim.netns, "filter", "del", "dev", "tap0_kata",
                        "ingress"], check=True)
        gone = {sb.id: sb for sb in engine.collect().snapshot.sandboxes}[idle[0]]
        assert {r.direction: r.present for r in gone.redirects} == {"in": True, "out": False}
        assert {r.direction: r.present for r in
                {sb.id: sb for sb in snap.sandboxes}[idle[1]].redirects} == {"in": True,
                                                                             "out": True}

        # The same node read once by two processes (`snapshot`'s forked helper,
        # collectors/read_ahead.py): the same truth as the steady engine, the redirect
        # removed by hand included, idle counters equal to iproute2's, no helper left.
        children = child_pids()
        once = Engine(EngineOptions(run_root=scratch_lab.run_root, with_vmm=False,
                                    one_shot=True, read_workers=2))
        try:
            shared = {sb.id: sb for sb in once.collect().snapshot.sandboxes}
        finally:
            once.close()
        assert child_pids() == children
        steady = {sb.id: sb for sb in engine.collect().snapshot.sandboxes}
        assert shared.keys() == steady.keys()
        assert not [i for i, sb in shared.items() if sb.errors]
        for i, sb in shared.items():
            assert [(lk.name, lk.kind, lk.peer) for lk in sb.links] == \
                [(lk.name, lk.kind, lk.peer) for lk in steady[i].links], i
            assert [(r.direction, r.present) for r in sb.redirects] == \
                [(r.direction, r.present) for r in steady[i].redirects], i
        assert {r.direction: r.present for r in shared[idle[0]].redirects} == \
            {"in": True, "out": False}
        for i in idle[1:]:
            assert (_red_in(shared[i]), _eth0_rx(shared[i])) == (
                _mirred_packets(specs[i].netns, "eth0"), _rx_packets(specs[i].netns, "eth0"))
    finally:
        engine.close()
