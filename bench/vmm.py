"""Extra-monitor query time: per sandbox (median) and all together, on a real QEMU lab.

Builds `lab up --sandboxes N --scenario tcfilter` (every sandbox has a QMP extra monitor; the
shim stand-ins hold qmp.sock), times `lab up` itself, then:
- each sandbox's full query (status, name, cpus, memory, pci, chardevs, network, rx-filter)
  alone, repeated, median per sandbox and median of those,
- all N together as the engine runs them (bounded concurrency), median of rounds.
Run as root: python3 bench/vmm.py [--sandboxes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kata_top.collectors import qmp
from kata_top.collectors.vmm import VmmTarget, collect_vmms
from kata_top.lab import build
from kata_top.lab.layout import Layout

LAYOUT = Layout(run_root="/run/ktbenchv", prefix="ktbenchv")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sandboxes", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    build.down(LAYOUT)
    t0 = time.perf_counter()
    man = build.up(LAYOUT, build.UpOptions(sandboxes=args.sandboxes, scenario="tcfilter"))
    up_s = time.perf_counter() - t0
    try:
        socks = [os.path.join(LAYOUT.vm_dir(sb.spec), "extra-monitor.sock")
                 for sb in man.sandboxes]
        per: list[float] = []
        for path in socks:
            times = []
            for _ in range(args.rounds):
                t = time.perf_counter()
                asyncio.run(qmp.query_monitor(path, 1.0))
                times.append((time.perf_counter() - t) * 1000)
            per.append(statistics.median(times))
        targets = [VmmTarget(sb.spec.id, "qemu", sb.qemu_pid, (), LAYOUT.vm_dir(sb.spec))
                   for sb in man.sandboxes]
        together = []
        for _ in range(args.rounds):
            t = time.perf_counter()
            res = collect_vmms(targets)
            together.append((time.perf_counter() - t) * 1000)
            assert all(v.source == "extra-monitor" for v in res.values()), res
    finally:
        build.down(LAYOUT)
    row = {"sandboxes": args.sandboxes, "lab_up_with_qemu_s": round(up_s, 1),
           "per_sandbox_median_ms": round(statistics.median(per), 2),
           "per_sandbox_max_median_ms": round(max(per), 2),
           "all_together_median_ms": round(statistics.median(together), 1)}
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
