"""Collection speed: kata-top's engine vs the obvious shell loop, side by side in one run.

For 1, 50 and 200 lab sandboxes (`lab up --no-qemu --scenario plain`) it times, per round:
- kata-top: one full network + process collection (Engine.collect, VMM queries off: no QEMU),
- baseline: per namespace `ip netns exec NS ip -s -j link show`, `tc -s -j qdisc show`,
  `tc -s -j filter show dev eth0 ingress`, `tc -s -j filter show dev tap0_kata ingress`,
and reports the medians and their ratio. kata-top is timed twice: as it runs (idle namespaces
reuse their tc dump, collectors/netcollect.py) and with every namespace's tc dumped each round,
the cost on a node where every sandbox carries traffic. Also times `kata-top snapshot --json`
(wall clock, interpreter start included). Run as root: python3 bench/collect.py [--sizes 1,50,200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import shell_loop
from kata_top.collectors import netcollect
from kata_top.engine import Engine, EngineOptions
from kata_top.lab import build
from kata_top.lab.layout import Layout

LAYOUT = Layout(run_root="/run/ktbench", prefix="ktbench")
TC_FULL = netcollect.TC_FULL_EVERY_S


def timed(fn: object, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,50,200")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--baseline-rounds", type=int, default=3)
    args = ap.parse_args()
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        build.down(LAYOUT)
        t0 = time.perf_counter()
        man = build.up(LAYOUT, build.UpOptions(sandboxes=n, qemu=False, scenario="plain"))
        up_s = time.perf_counter() - t0
        try:
            namespaces = [sb.netns for sb in man.sandboxes if sb.netns]
            engine = Engine(EngineOptions(run_root=LAYOUT.run_root, with_vmm=False))
            engine.collect()  # warm: sockets opened, processes indexed
            ours = timed(engine.collect, args.rounds)
            got = engine.collect()
            reused, snap = got.reused_namespaces, got.snapshot
            assert len(snap.sandboxes) == n and not any(sb.errors for sb in snap.sandboxes)
            # The same with every namespace's tc dumped every round (no idle skipping): what a
            # node where every sandbox carries traffic costs.
            netcollect.TC_FULL_EVERY_S = 0.0
            full = timed(engine.collect, args.rounds)
            netcollect.TC_FULL_EVERY_S = TC_FULL
            engine.close()
            base = timed(lambda ns=namespaces: shell_loop(ns), args.baseline_rounds)
            walls = []
            for _ in range(5):
                t1 = time.perf_counter()
                subprocess.run([sys.executable, "-m", "kata_top", "snapshot", "--json",
                                "--run-root", LAYOUT.run_root], capture_output=True, check=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
                walls.append((time.perf_counter() - t1) * 1000)
        finally:
            build.down(LAYOUT)
        row = {"sandboxes": n, "lab_up_s": round(up_s, 2),
               "kata_top_median_ms": round(statistics.median(ours), 2),
               "idle_namespaces_skipped_last_round": reused,
               "kata_top_all_tc_dumped_median_ms": round(statistics.median(full), 2),
               "shell_loop_median_ms": round(statistics.median(base), 1),
               "ratio": round(statistics.median(base) / statistics.median(ours), 1),
               "ratio_all_tc_dumped": round(statistics.median(base) / statistics.median(full), 1),
               "snapshot_json_wall_median_ms": round(statistics.median(walls), 1)}
        results.append(row)
        print(json.dumps(row), flush=True)
    print("\n| sandboxes | kata-top median | every tc dumped | shell loop median | ratio |"
          " `snapshot --json` wall | lab up (no QEMU) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['sandboxes']} | {r['kata_top_median_ms']} ms | "
              f"{r['kata_top_all_tc_dumped_median_ms']} ms | "
              f"{r['shell_loop_median_ms']} ms | {r['ratio']}× ({r['ratio_all_tc_dumped']}×) | "
              f"{r['snapshot_json_wall_median_ms']} ms | {r['lab_up_s']} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
