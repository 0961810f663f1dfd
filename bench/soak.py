"""Churn soak: a node that keeps changing under a live collection, measured for leaks.

On a lab of N sandboxes (`lab up --no-qemu`, default 200) plus a few with QEMU, for
--minutes (default 10):
- churn: every 0.4 s a sandbox is created (a namespace of the lab's prefix + Kata's state
  file) or destroyed (namespace deleted first, state a moment later: the collector sees the
  half-gone sandbox), so ≥ 2 creations/destructions per second; every 2 s a healthy sandbox's
  redirect filter is replaced with `tc`; every 30 s one of the QEMU sandboxes is killed and
  its state left behind;
- readers: the dashboard's source (LiveSource, collections every second on its own thread,
  as the dashboard's worker runs it) and a `kata-top snapshot --watch 1` process;
- each minute: the reader process's fds, threads and RSS, collections made, exceptions that
  escaped a collection (must be 0), and whether `snapshot --watch` still streams.
After the churn stops and its leftovers are removed: fds and threads must be back at start.

A second phase (--broken): collection time of the N healthy sandboxes alone, then with 20
broken ones beside them (empty, FIFO and symlinked state files, FIFO and vanished namespace
paths), medians and their ratio.

Run as root: python3 bench/soak.py [--sandboxes 200] [--minutes 10]; --minutes 0.5 --sandboxes
20 is the short variant tests/test_soak_lab.py runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kata_top.engine import EngineOptions  # noqa: E402
from kata_top.lab import build  # noqa: E402
from kata_top.lab.layout import Layout  # noqa: E402
from kata_top.logs import setup_logging  # noqa: E402
from kata_top.sources.live import LiveSource  # noqa: E402

LAYOUT = Layout(run_root="/run/ktbsoak", prefix="ktbsoak")
QEMU_LAYOUT = Layout(run_root="/run/ktbsoakq", prefix="ktbsoakq")


def use_prefix(prefix: str) -> None:
    """Labs of their own (a test runs the short variant beside whatever else runs)."""
    global LAYOUT, QEMU_LAYOUT
    LAYOUT = Layout(run_root=f"/run/{prefix}", prefix=prefix)
    QEMU_LAYOUT = Layout(run_root=f"/run/{prefix}q", prefix=f"{prefix}q")


def own_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def own_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def persist_doc(netns: str, name: str) -> dict[str, Any]:
    return {"State": "running", "HypervisorState": {"Type": "qemu", "Pid": 0},
            "Network": {"NetworkID": netns, "Endpoints": []},
            "Config": {"ContainerConfigs": [{"Annotations": {
                "io.kubernetes.cri.sandbox-name": name,
                "io.kubernetes.cri.sandbox-namespace": "churn"}}]}}


class Churn:
    """Creates and destroys sandboxes under the lab's prefix and run root (so `lab down`
    removes whatever is left), replaces filters, kills the QEMU lab's VMMs."""

    def __init__(self, qemu_pids: list[int]) -> None:
        self.live: list[tuple[str, str]] = []  # (namespace, state dir)
        self.n = 0
        self.stop = threading.Event()
        self.actions = 0
        self.qemu_pids = qemu_pids
        self.sbs = os.path.join(LAYOUT.run_root, "vc", "sbs")

    def create(self) -> None:
        self.n += 1
        ns = f"{LAYOUT.prefix}-churn{self.n}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        sdir = os.path.join(self.sbs, f"{self.n:064x}")
        os.makedirs(sdir)
        with open(os.path.join(sdir, "persist.json"), "w") as fh:
            json.dump(persist_doc(f"/run/netns/{ns}", f"churn-{self.n}"), fh)
        self.live.append((ns, sdir))

    def destroy(self) -> None:
        ns, sdir = self.live.pop(0)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        time.sleep(0.05)  # the namespace is gone, the state not yet: a half-gone sandbox
        shutil.rmtree(sdir)

    def replace_filter(self, namespaces: list[str], i: int) -> None:
        ns = namespaces[i % len(namespaces)]
        tc = ["ip", "netns", "exec", ns, "tc"]
        subprocess.run([*tc, "filter", "del", "dev", "eth0", "ingress"], check=False,
                       capture_output=True)
        subprocess.run([*tc, "filter", "add", "dev", "eth0", "parent", "ffff:", "protocol",
                        "all", "u32", "match", "u8", "0", "0", "action", "mirred", "egress",
                        "redirect", "dev", "tap0_kata"], check=False, capture_output=True)

    def run(self, namespaces: list[str]) -> None:
        i = 0
        while not self.stop.wait(0.4):
            i += 1
            if len(self.live) < 10 or i % 2:
                self.create()
            else:
                self.destroy()
            self.actions += 1
            if i % 4 == 0:
                self.replace_filter(namespaces, i)
            if i % 60 == 0 and self.qemu_pids:
                os.kill(self.qemu_pids.pop(), signal.SIGKILL)  # a QEMU the lab started

    def cleanup(self) -> None:
        while self.live:
            self.destroy()


def soak(args: argparse.Namespace, man: Any, qman: Any) -> dict[str, Any]:
    namespaces = [sb.netns for sb in man.sandboxes if sb.netns]
    source = LiveSource(EngineOptions(run_root=LAYOUT.run_root, with_vmm=True,
                                      vmm_refresh_s=5.0))
    source.next()
    qsource = LiveSource(EngineOptions(run_root=QEMU_LAYOUT.run_root, vmm_refresh_s=5.0))
    qsource.next()
    fds0, threads0, rss0 = own_fds(), threading.active_count(), own_rss_mb()
    watch = subprocess.Popen([sys.executable, "-m", "kata_top", "snapshot", "--watch", "1",
                              "--run-root", LAYOUT.run_root, "--log-file", os.devnull],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    lines = [0]

    def read_watch() -> None:
        assert watch.stdout is not None
        for _ in watch.stdout:
            lines[0] += 1

    reader = threading.Thread(target=read_watch, daemon=True)
    reader.start()
    churn = Churn([sb.qemu_pid for sb in qman.sandboxes if sb.qemu_pid])
    churner = threading.Thread(target=churn.run, args=(namespaces,), daemon=True)
    churner.start()
    escaped, collections, errors_seen = 0, 0, 0
    minutes: list[dict[str, Any]] = []
    start = time.monotonic()
    next_log = start + 60
    try:
        while time.monotonic() - start < args.minutes * 60:
            t0 = time.monotonic()
            for src in (source, qsource):
                try:
                    snap = src.next()
                    collections += 1
                    errors_seen += sum(1 for sb in snap.sandboxes if sb.errors)
                except Exception as exc:  # must never happen: counted and reported
                    escaped += 1
                    print(f"ESCAPED: {type(exc).__name__}: {exc}", file=sys.stderr)
            now = time.monotonic()
            if now >= next_log or now - start >= args.minutes * 60:
                entry = {"minute": round((now - start) / 60, 1), "fds": own_fds(),
                         "threads": threading.active_count(), "rss_mb": round(own_rss_mb(), 1),
                         "collections": collections, "churn_actions": churn.actions,
                         "escaped_exceptions": escaped, "watch_lines": lines[0],
                         "watch_alive": watch.poll() is None}
                minutes.append(entry)
                print(json.dumps(entry), flush=True)
                next_log = now + 60
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
    finally:
        churn.stop.set()
        churner.join()
        churn.cleanup()
        watch.terminate()
        watch.wait(10)
        reader.join(10)
        watch_err = watch.stderr.read() if watch.stderr else ""
        for pipe in (watch.stdout, watch.stderr):
            if pipe is not None:
                pipe.close()
    source.next()  # one collection on the settled node lets it drop what is gone
    qsource.next()
    result = {"minutes": args.minutes, "churn_actions": churn.actions,
              "churn_per_s": round(churn.actions / (args.minutes * 60), 2),
              "collections": collections, "escaped_exceptions": escaped,
              "sandbox_errors_seen": errors_seen,
              "fds_start_end": [fds0, own_fds()],
              "threads_start_end": [threads0, threading.active_count()],
              "rss_mb_start_end": [round(rss0, 1), round(own_rss_mb(), 1)],
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "watch_lines": lines[0], "watch_traceback": "Traceback" in watch_err}
    source.close()
    qsource.close()
    return result


def broken_phase(args: argparse.Namespace) -> dict[str, Any]:
    """Median collection of the healthy sandboxes, then with 20 broken ones beside them."""
    source = LiveSource(EngineOptions(run_root=LAYOUT.run_root, with_vmm=False))

    def median(rounds: int = 15) -> float:
        source.next()
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            source.next()
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)

    healthy = median()
    sbs = os.path.join(LAYOUT.run_root, "vc", "sbs")
    made = []
    for i in range(20):
        d = os.path.join(sbs, f"b{i:063x}")
        os.makedirs(d)
        made.append(d)
        p = os.path.join(d, "persist.json")
        kind = i % 5
        if kind == 0:
            open(p, "w").close()  # empty
        elif kind == 1:
            os.mkfifo(p)
        elif kind == 2:
            os.symlink("/etc/hostname", p)
        else:
            target = f"/run/netns/{LAYOUT.prefix}-gone{i}"
            if kind == 3:
                target = os.path.join(d, "fifo-ns")
                os.mkfifo(target)
            with open(p, "w") as fh:
                json.dump(persist_doc(target, f"broken-{i}"), fh)
    with_broken = median()
    for d in made:
        shutil.rmtree(d)
    source.close()
    return {"healthy_median_ms": round(healthy, 2), "with_20_broken_median_ms":
            round(with_broken, 2), "ratio": round(with_broken / healthy, 2)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sandboxes", type=int, default=200)
    ap.add_argument("--qemu-sandboxes", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--no-broken", action="store_true")
    ap.add_argument("--prefix", default="ktbsoak",
                    help="name prefix of the labs and their run roots /run/PREFIX[q]")
    ap.add_argument("--log-file", default=os.devnull,
                    help="where the collectors log what they meet (default: nowhere)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    setup_logging(args.log_file)
    use_prefix(args.prefix)
    for layout in (LAYOUT, QEMU_LAYOUT):
        build.down(layout)
    try:
        man = build.up(LAYOUT, build.UpOptions(sandboxes=args.sandboxes, qemu=False,
                                               scenario="plain"))
        qman = build.up(QEMU_LAYOUT, build.UpOptions(sandboxes=args.qemu_sandboxes,
                                                     scenario="plain"))
        result = soak(args, man, qman)
        print(json.dumps(result), flush=True)
        if not args.no_broken:
            print(json.dumps(broken_phase(args)), flush=True)
    finally:
        for layout in (LAYOUT, QEMU_LAYOUT):
            build.down(layout)
    ok = result["escaped_exceptions"] == 0 and not result["watch_traceback"] and \
        result["fds_start_end"][1] <= result["fds_start_end"][0] and \
        result["threads_start_end"][1] <= result["threads_start_end"][0]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
