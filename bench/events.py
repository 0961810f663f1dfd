"""What event detection and the traffic history cost, on a lab of N sandboxes.

- detection: the median collection (LiveSource.next without events: engine, rates, findings)
  beside the median of the event detection on the same snapshots (diff plus notifications),
  and their ratio;
- history: the memory of 15 minutes of traffic for N sandboxes at one snapshot a second
  (tracemalloc), the dashboard's TrafficHistory filled as it fills.

Run as root: python3 bench/events.py [--sandboxes 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kata_top.diagnose import annotate  # noqa: E402
from kata_top.engine import Engine, EngineOptions  # noqa: E402
from kata_top.events.diff import diff_events  # noqa: E402
from kata_top.history import TrafficHistory  # noqa: E402
from kata_top.lab import build  # noqa: E402
from kata_top.lab.layout import Layout  # noqa: E402
from kata_top.rates import with_rates  # noqa: E402

LAYOUT = Layout(run_root="/run/ktbevents", prefix="ktbevents")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sandboxes", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    build.down(LAYOUT)
    build.up(LAYOUT, build.UpOptions(sandboxes=args.sandboxes, qemu=False, scenario="plain"))
    try:
        engine = Engine(EngineOptions(run_root=LAYOUT.run_root, with_vmm=False))
        prev = annotate(engine.collect().snapshot)
        collect_ms, detect_ms = [], []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            got = engine.collect()
            snap = annotate(with_rates(got.snapshot, prev), prev)
            t1 = time.perf_counter()
            diff_events(prev, snap, got.tc_changes, [])
            t2 = time.perf_counter()
            collect_ms.append((t1 - t0) * 1000)
            detect_ms.append((t2 - t1) * 1000)
            prev = snap
        engine.close()
    finally:
        build.down(LAYOUT)
    tracemalloc.start()
    hist = TrafficHistory()
    ids = [f"{i:064x}" for i in range(args.sandboxes)]
    for t in range(15 * 60):
        hist.add(float(t), [(sid, 1e6 + t, 2e5) for sid in ids])
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    row = {"sandboxes": args.sandboxes,
           "collection_median_ms": round(statistics.median(collect_ms), 2),
           "event_detection_median_ms": round(statistics.median(detect_ms), 3),
           "detection_share_percent": round(statistics.median(detect_ms)
                                            / statistics.median(collect_ms) * 100, 1),
           "history_15min_mb": round(current / 1e6, 2), "history_points": len(hist)}
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
