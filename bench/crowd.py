"""The exporter against a crowd, this tree beside a baseline commit, on one lab.

On a lab of N sandboxes (`lab up --no-qemu --scenario plain`, default 200), `kata-top serve`
(as installed, --min-interval 5) of each tree, in turn:
1. crowd: --scrapers concurrent gzip scrapes of /metrics released at once (a Prometheus fleet
   on one tick): how many answered within 30 s, median / p99 / slowest at the client;
2. idle: --idle connections held open (half silent, half with a head started and never ended)
   for 5 s: the server's threads, open fds and RSS, and one /metrics scrape's time meanwhile;
3. heads: 40 clients each sending 99 headers of 60 KB: the answers, and the peak RSS growth.
Everything is on loopback and bounded in count and time. Run as root:
  python3 bench/crowd.py [--sandboxes 200] [--baseline REV]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import CONSOLE_SCRIPT, checkout, installed_python  # noqa: E402
from kata_top.lab import build  # noqa: E402
from kata_top.lab.layout import Layout  # noqa: E402

LAYOUT = Layout(run_root="/run/ktbcrowd", prefix="ktbcrowd")


def usage(pid: int) -> dict[str, int]:
    out = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("Threads", "VmRSS"):
                out[key.lower()] = int(value.split()[0])
    return out


def get(url: str, timeout: float = 30.0) -> int:
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return -1


def crowd(url: str, n: int) -> dict[str, Any]:
    times: list[float] = []
    ok: list[bool] = []
    start = threading.Barrier(n + 1)

    def one() -> None:
        start.wait()
        t0 = time.monotonic()
        status = get(url)
        times.append(time.monotonic() - t0)
        ok.append(status == 200)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    start.wait()
    for t in threads:
        t.join()
    times.sort()
    return {"answered": sum(ok), "of": n, "median_s": round(statistics.median(times), 3),
            "p99_s": round(times[int(len(times) * 0.99) - 1], 3), "max_s": round(times[-1], 3)}


def idle(addr: tuple[str, int], url: str, pid: int, n: int) -> dict[str, Any]:
    before = usage(pid)
    with ExitStack() as stack:
        for i in range(n):
            try:
                s = stack.enter_context(socket.create_connection(addr, timeout=5))
                if i % 2:
                    s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: a")
            except OSError:
                break
        time.sleep(5)
        during = usage(pid)
        t0 = time.monotonic()
        status = get(url, timeout=30)
        scrape = time.monotonic() - t0
    return {"connections": n, "threads": [before["threads"], during["threads"]],
            "fds": [before["fds"], during["fds"]],
            "rss_mb": [round(before["vmrss"] / 1024, 1), round(during["vmrss"] / 1024, 1)],
            "scrape_meanwhile": status, "scrape_meanwhile_s": round(scrape, 3)}


def heads(addr: tuple[str, int], pid: int) -> dict[str, Any]:
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-Pad-%d: %s\r\n" % (i, b"a" * 60_000) for i in range(98)) + b"\r\n"
    before = usage(pid)["vmrss"]
    peak = before
    answers: list[bytes] = []

    def client() -> None:
        with socket.create_connection(addr, timeout=30) as s:
            with contextlib.suppress(OSError):
                s.sendall(head)
            try:
                answers.append(s.recv(12))
            except OSError:
                answers.append(b"reset")

    threads = [threading.Thread(target=client) for _ in range(40)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, usage(pid)["vmrss"])
        time.sleep(0.05)
    statuses: dict[str, int] = {}
    for a in answers:
        key = a.split(b" ")[1].decode() if a.startswith(b"HTTP/") else a.decode()
        statuses[key] = statuses.get(key, 0) + 1
    return {"answers": statuses, "rss_growth_mb": round((peak - before) / 1024, 1)}


def measure(python: str, args: argparse.Namespace) -> dict[str, Any]:
    # cwd: `python -c` puts it first on sys.path, and this checkout must not shadow the
    # installed tree under test
    proc = subprocess.Popen([python, "-c", CONSOLE_SCRIPT, "--log-file", os.devnull, "serve",
                             "--run-root", LAYOUT.run_root, "--listen", "127.0.0.1:0",
                             "--min-interval", "5"], cwd="/", stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        url = line.split("listening on ", 1)[1].split(" ", 1)[0]
        host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
        addr = (host, int(port))
        get(url, timeout=60)  # the first collection
        out = {"crowd": crowd(url, args.scrapers)}
        time.sleep(1)
        out["idle"] = idle(addr, url, proc.pid, args.idle)
        time.sleep(1)
        out["heads"] = heads(addr, proc.pid)
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sandboxes", type=int, default=200)
    ap.add_argument("--scrapers", type=int, default=200)
    ap.add_argument("--idle", type=int, default=1000)
    ap.add_argument("--baseline", metavar="REV")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/crowd.py builds a lab: run it as root", file=sys.stderr)
        return 2
    res: dict[str, Any] = {"sandboxes": args.sandboxes}
    build.down(LAYOUT)
    build.up(LAYOUT, build.UpOptions(sandboxes=args.sandboxes, qemu=False, scenario="plain"))
    try:
        with installed_python() as python:
            res["this_tree"] = measure(python, args)
            if args.baseline:
                with checkout(args.baseline) as tree, installed_python(tree) as base:
                    res[f"baseline_{args.baseline}"] = measure(base, args)
    finally:
        build.down(LAYOUT)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
