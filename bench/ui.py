"""The dashboard under load: 200 lab sandboxes, 1 s refresh, 60 s, headless.

Reports the process's CPU time (as % of one core over the run), peak RSS, and key-press-to-
screen latency (a `j` press until the cursor row moved and the screen was refreshed), median
and worst. The app runs in this process through Textual's headless test driver, so the
numbers include the driver's own (small) overhead.
Run as root: python3 bench/ui.py [--sandboxes 200] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("KATA_TOP_CONFIG", "/tmp/kata-top-bench-config.json")

from kata_top.engine import EngineOptions
from kata_top.lab import build
from kata_top.lab.layout import Layout
from kata_top.settings import Settings
from kata_top.source import LiveSource
from widgets.app import KataTopApp
from widgets.sandbox_table import SandboxTable

LAYOUT = Layout(run_root="/run/ktbenchu", prefix="ktbenchu")


async def drive(seconds: float, n: int) -> dict[str, float]:
    app = KataTopApp(LiveSource(EngineOptions(run_root=LAYOUT.run_root)), refresh=1.0,
                     theme="kata-dark", write=False, settings=Settings())
    latencies: list[float] = []
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.screen.query_one(SandboxTable)
        while table.row_count < n:
            await pilot.pause(0.1)
        cpu0 = time.process_time()
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            before = table.cursor_row
            k0 = time.perf_counter()
            await pilot.press("k" if before >= n - 1 else "j")
            while table.cursor_row == before:
                await pilot.pause(0.001)
            await pilot.pause()
            latencies.append((time.perf_counter() - k0) * 1000)
            await pilot.pause(1.5)
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - t0
        await pilot.press("q")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"cpu_percent_of_one_core": round(100 * cpu / wall, 1),
            "peak_rss_mb": round(peak_mb, 1),
            "key_latency_median_ms": round(statistics.median(latencies), 1),
            "key_latency_max_ms": round(max(latencies), 1), "key_presses": len(latencies)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sandboxes", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    build.down(LAYOUT)
    build.up(LAYOUT, build.UpOptions(sandboxes=args.sandboxes, qemu=False, scenario="plain"))
    try:
        res = asyncio.run(drive(args.seconds, args.sandboxes))
    finally:
        build.down(LAYOUT)
    print(json.dumps({"sandboxes": args.sandboxes, "seconds": args.seconds, **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
