"""Replay: how long `kata-top --replay FILE` takes to show a recording, and what it holds.

Records `kata-top snapshot --watch 1 --count K` of a lab of N sandboxes (without QEMU), then
opens the recording in the dashboard on a pty as bench/ui.py runs it (160x48, Textual's real
driver): seconds from the start until the first screen shows the N sandboxes, then --seconds
of playing at 1 s (CPU as % of one core, peak RSS). With --baseline REV that commit's
packages, installed in a scratch virtualenv, run the same in turn with this tree's (as
installed too), --turns times each; medians; and each reads the whole recording from JSON
(`load_recording`: what `--remote` does with every answer), ms per snapshot.

Run as root: python3 bench/replay.py [--sandboxes 200] [--snapshots 80] [--traffic]
[--seconds 20] [--baseline REV [--turns 2]]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import CONSOLE_SCRIPT, checkout, installed_python
from bench.ui import Terminal
from kata_top.lab import build
from kata_top.lab.layout import Layout

LAYOUT = Layout(run_root="/run/ktreplay", prefix="ktreplay")


def play(python: str, recording: str, n: int, seconds: float) -> dict[str, float]:
    t0 = time.monotonic()
    term = Terminal([python, "-c", CONSOLE_SCRIPT, "--replay", recording, "--refresh", "1",
                     "--theme", "dark"], cwd="/")
    try:
        if not term.wait_for(f"{n} sandboxes".encode(), 600):
            raise SystemExit(f"the replay never showed {n} sandboxes: {term.tail[-300:]!r}")
        first = time.monotonic() - t0
        cpu0, t1 = term.cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        cpu = term.cpu_seconds() - cpu0
        wall = time.monotonic() - t1
        rss = term.peak_rss_mb()
    finally:
        term.quit()
    return {"first_screen_s": round(first, 2), "playing_cpu_percent": round(100 * cpu / wall, 1),
            "peak_rss_mb": round(rss, 1)}


READ_ALL = """
import gc, sys, time
from kata_top.cli.main import GC_THRESHOLDS
try:
    from kata_top.formats.recording import load_recording
except ImportError:  # a baseline from before kata_top/formats/recording.py
    from kata_top.formats.jsonin import load_recording
gc.set_threshold(*GC_THRESHOLDS)
t0 = time.perf_counter()
snaps, _ = load_recording(sys.argv[1])
print((time.perf_counter() - t0) / len(snaps) * 1000)
"""


def read_all_ms(python: str, recording: str) -> float:
    """Every snapshot of the recording read from JSON (`load_recording`, what `--replay`
    did up front and `--remote` does for each answer): ms per snapshot."""
    out = subprocess.run([python, "-c", READ_ALL, recording], capture_output=True, text=True,
                         check=True, cwd="/")
    return round(float(out.stdout.strip()), 1)


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sandboxes", type=int, default=200)
    ap.add_argument("--snapshots", type=int, default=80, help="the recording's length (1 s each)")
    ap.add_argument("--traffic", action="store_true",
                    help="every sandbox carries traffic (the lab's generator)")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long each replay plays")
    ap.add_argument("--baseline", metavar="REV")
    ap.add_argument("--turns", type=int, default=2)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/replay.py builds a lab: run it as root", file=sys.stderr)
        return 2
    n = args.sandboxes
    res: dict[str, Any] = {"sandboxes": n, "snapshots": args.snapshots, "traffic": args.traffic}
    build.down(LAYOUT)
    build.up(LAYOUT, build.UpOptions(sandboxes=n, qemu=False, scenario="plain",
                                     traffic=args.traffic))
    with tempfile.TemporaryDirectory(prefix="kt-replay-") as tmp:
        recording = os.path.join(tmp, "recording.ndjson")
        try:
            print(f"recording {args.snapshots} s of {n} sandboxes …", file=sys.stderr)
            with open(recording, "wb") as fh:
                subprocess.run([sys.executable, "-c", CONSOLE_SCRIPT, "--run-root",
                                LAYOUT.run_root, "snapshot", "--watch", "1", "--count",
                                str(args.snapshots)], stdout=fh, check=True)
        finally:
            build.down(LAYOUT)  # the replay reads the file only
        res["recording_mb"] = round(os.path.getsize(recording) / 2 ** 20, 1)
        with installed_python() as python:
            if not args.baseline:
                res["this_tree"] = play(python, recording, n, args.seconds)
            else:
                with checkout(args.baseline) as tree, installed_python(tree) as base:
                    ours: list[dict[str, float]] = []
                    theirs: list[dict[str, float]] = []
                    for _ in range(args.turns):
                        theirs.append(play(base, recording, n, args.seconds))
                        ours.append(play(python, recording, n, args.seconds))
                    res["read_ms_per_snapshot"] = {
                        "this_tree": read_all_ms(python, recording),
                        f"baseline_{args.baseline}": read_all_ms(base, recording)}
                res["this_tree"] = _medians(ours)
                res[f"baseline_{args.baseline}"] = _medians(theirs)
                res["first_screen_ratio"] = round(
                    res[f"baseline_{args.baseline}"]["first_screen_s"]
                    / res["this_tree"]["first_screen_s"], 1)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
