"""The dashboard under load: 200 lab sandboxes, 1 s refresh, 60 s, in a real terminal.

kata-top runs as its own process on a pseudo-terminal (160×48 or --size, TERM=xterm-256color,
COLORTERM=truecolor unless --colorterm plain) with
Textual's real Linux driver, so everything an operator's session costs is counted: the
collection thread, the widgets, the compositor and the escape codes written to the tty.
The benchmark is only the keyboard and the screen on the other side of the pty.

Reports, over the measured window (after the first full snapshot is on screen):
- cpu: kata-top's user+system time from /proc/PID/stat as % of one core, and beside it the
  bytes a second written to the terminal (what an SSH link carries),
- rss: peak resident memory (VmHWM),
- key latency: a `j` written to the pty until the first byte of the redrawn screen comes
  back (median, p90, worst). Each press waits for 150 ms of screen silence first, so it is
  not confused with a refresh frame; a refresh that lands in the same moment still counts,
  as it would for an operator.
- idle: the same window with no key presses (collection + refresh only);
- detail_screen (--detail): the same with the first sandbox's detail screen open.

Targets: ≤ 10 % of one core, ≤ 150 MB, ≤ 100 ms.
Run as root: python3 bench/ui.py [--sandboxes 200] [--seconds 60] [--no-idle] [--detail]
[--traffic] [--size 140x40] [--colorterm plain,truecolor] [--baseline REV [--no-keys]]
(--no-keys with --baseline: each tree's idle screen in turn, per --colorterm: the bytes
over SSH in steady state)
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import statistics
import struct
import subprocess
import sys
import termios
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kata_top.lab import build
from kata_top.lab.layout import Layout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYOUT = Layout(run_root="/run/ktbenchu", prefix="ktbenchu")
COLS, ROWS = 160, 48
TICK = os.sysconf("SC_CLK_TCK")


class Terminal:
    """The operator's side of the pty: records when screen bytes arrive."""

    def __init__(self, argv: list[str], cwd: str = ROOT, colorterm: str = "truecolor") -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": colorterm,
               "KATA_TOP_CONFIG": "/tmp/kata-top-bench-config.json"}
        env.pop("NO_COLOR", None)
        if colorterm == "plain":
            env.pop("COLORTERM")
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                     env=env, start_new_session=True)
        os.close(slave)
        self.lock = threading.Lock()
        self.last_output = time.monotonic()
        self.arrivals: list[float] = []
        self.tail = b""
        self.total = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not data:
                return
            now = time.monotonic()
            with self.lock:
                self.last_output = now
                self.arrivals.append(now)
                self.tail = (self.tail + data)[-(1 << 16):]
                self.total += len(data)

    def wait_for(self, needle: bytes, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if needle in self.tail:
                    return True
            time.sleep(0.05)
        return False

    def wait_quiet(self, quiet: float, limit: float) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            with self.lock:
                if time.monotonic() - self.last_output >= quiet:
                    return
            time.sleep(0.005)

    def press(self, key: bytes, timeout: float = 3.0) -> float | None:
        """Milliseconds from writing key to the first screen bytes after it."""
        with self.lock:
            seen = len(self.arrivals)
        k0 = time.monotonic()
        os.write(self.master, key)
        end = k0 + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.arrivals) > seen:
                    return (self.arrivals[seen] - k0) * 1000
            time.sleep(0.0005)
        return None

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime

    def thread_cpu(self) -> dict[int, float]:
        """CPU seconds per thread id (the main thread's id is the pid)."""
        out: dict[int, float] = {}
        for tid in os.listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK
        return out

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def quit(self) -> int | None:
        os.write(self.master, b"q")
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # our own child, by its pid
            self.proc.wait()
            return None
        finally:
            os.close(self.master)


def run(seconds: float, n: int, presses: bool, detail: bool = False,
        python: str = sys.executable, colorterm: str = "truecolor",
        settle: float = 2.0) -> dict[str, object]:
    """`python`: this checkout's, or --baseline's installed python (run from /, so that the
    checkout is not first on its path)."""
    from bench.common import CONSOLE_SCRIPT

    term = Terminal([python, "-c", CONSOLE_SCRIPT, "--run-root", LAYOUT.run_root,
                     "--refresh", "1", "--theme", "dark"],
                    cwd=ROOT if python == sys.executable else "/", colorterm=colorterm)
    try:
        t_start = time.monotonic()
        if not term.wait_for(f"{n} sandboxes".encode(), 60):
            raise SystemExit(f"the dashboard never showed {n} sandboxes; last screen bytes: "
                             f"{term.tail[-400:]!r}")
        first_screen_s = time.monotonic() - t_start
        if detail:
            term.wait_quiet(0.15, 1.5)
            os.write(term.master, b"\r")  # Enter: the first sandbox's detail screen
            if not term.wait_for(b"Problems", 10):
                raise SystemExit("the detail screen did not open")
        time.sleep(settle)  # let the first cycles' rates (and the TREND history) settle
        cpu0, t0, bytes0 = term.cpu_seconds(), time.monotonic(), term.total
        threads0 = term.thread_cpu()
        latencies: list[float] = []
        missed = 0
        while time.monotonic() - t0 < seconds:
            if presses:
                term.wait_quiet(0.15, 1.5)
                ms = term.press(b"j")
                if ms is None:
                    missed += 1
                else:
                    latencies.append(ms)
            time.sleep(1.3)
        wall = time.monotonic() - t0
        cpu = term.cpu_seconds() - cpu0
        threads = {tid: v - threads0.get(tid, 0.0) for tid, v in term.thread_cpu().items()}
        ui_cpu = threads.pop(term.proc.pid, 0.0)
        busiest = max(threads.values(), default=0.0)
        out_bytes = term.total - bytes0
        rss = term.peak_rss_mb()
    finally:
        rc = term.quit()
    res: dict[str, object] = {
        "cpu_percent_of_one_core": round(100 * cpu / wall, 1),
        "tty_bytes_per_s": round(out_bytes / wall),
        # The UI (event loop, widgets, compositor) runs on the main thread; collection runs
        # in a worker thread, the busiest of the others.
        "ui_thread_cpu_percent": round(100 * ui_cpu / wall, 1),
        "collector_thread_cpu_percent": round(100 * busiest / wall, 1),
        "peak_rss_mb": round(rss, 1),
        "tty_kib_per_s": round(out_bytes / wall / 1024, 2),
        "first_full_screen_s": round(first_screen_s, 2), "exit_code": rc}
    if presses:
        lat = sorted(latencies)
        res.update({"key_presses": len(lat), "keys_without_redraw": missed,
                    "key_latency_median_ms": round(statistics.median(lat), 1) if lat else None,
                    "key_latency_p90_ms": round(lat[int(0.9 * (len(lat) - 1))], 1)
                    if lat else None,
                    "key_latency_max_ms": round(lat[-1], 1) if lat else None})
    return res


def main() -> int:
    global COLS, ROWS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sandboxes", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--no-idle", action="store_true", help="skip the run without key presses")
    ap.add_argument("--traffic", action="store_true",
                    help="every sandbox carries traffic (the lab's generator, 20 pps each)")
    ap.add_argument("--detail", action="store_true",
                    help="also measure with a sandbox's detail screen open (no key presses)")
    ap.add_argument("--baseline", metavar="REV",
                    help="run that commit's dashboard and this tree's in turn, twice each "
                         "(with keys), on the same lab")
    ap.add_argument("--size", default=f"{COLS}x{ROWS}", metavar="COLSxROWS",
                    help=f"the terminal (default {COLS}x{ROWS})")
    ap.add_argument("--colorterm", default="truecolor", metavar="LIST",
                    help="COLORTERM for the dashboard, comma-separated runs: truecolor, "
                         "plain (unset: 256 colours); default truecolor")
    ap.add_argument("--settle", type=float, default=2.0, metavar="SECONDS",
                    help="wait this long after the first full screen before measuring "
                         "(default 2; 15 for steady state: the TREND column full)")
    ap.add_argument("--no-keys", action="store_true",
                    help="with --baseline: idle runs only (the screen's own refreshes)")
    args = ap.parse_args()
    COLS, ROWS = (int(v) for v in args.size.lower().split("x"))
    colorterms = [c.strip() for c in args.colorterm.split(",") if c.strip()]
    if os.geteuid() != 0:
        print("bench/ui.py builds a lab: run it as root", file=sys.stderr)
        return 2
    build.down(LAYOUT)
    build.up(LAYOUT, build.UpOptions(sandboxes=args.sandboxes, qemu=False, scenario="plain",
                                     traffic=args.traffic))
    try:
        results: dict[str, object] = {}
        if args.baseline:
            # the baseline and this tree in turn, twice: the lab's first minutes are busier
            # (IPv6 neighbour discovery), and whichever ran first would pay for them
            from bench.common import checkout, installed_python

            keys = not args.no_keys
            with checkout(args.baseline) as tree, installed_python(tree) as python:
                for i in (1, 2):
                    for ct in colorterms:
                        tag = f"{'with_keys' if keys else 'idle'}_{ct}_{i}"
                        results[f"baseline_{args.baseline}_{tag}"] = run(
                            args.seconds, args.sandboxes, presses=keys, python=python,
                            colorterm=ct, settle=args.settle)
                        results[tag] = run(args.seconds, args.sandboxes, presses=keys,
                                           colorterm=ct, settle=args.settle)
        else:
            for ct in colorterms:
                results[f"with_keys_{ct}"] = run(args.seconds, args.sandboxes, presses=True,
                                                 colorterm=ct)
        if not args.no_idle and not args.no_keys:
            for ct in colorterms:
                results[f"idle_{ct}"] = run(args.seconds, args.sandboxes, presses=False,
                                            colorterm=ct)
        if args.detail:
            results["detail_screen"] = run(args.seconds, args.sandboxes, presses=False,
                                           detail=True)
    finally:
        build.down(LAYOUT)
    print(json.dumps({"sandboxes": args.sandboxes, "seconds": args.seconds,
                      "traffic": args.traffic,
                      "refresh_s": 1, "terminal": f"{COLS}x{ROWS}", **results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
