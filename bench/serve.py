"""The exporter against what it replaces, side by side in one run, on one lab.

On a lab of N sandboxes (`lab up --no-qemu --scenario plain`, default 200):
1. scrape: `kata-top serve --min-interval 0` (every scrape collects) scraped over loopback as
   Prometheus does (Accept-Encoding: gzip); per scrape the wall time at the client, the time
   at the server as its Server-Timing header reports it (collect: the collection with rates,
   findings and events; render; gzip), and the server process's CPU (utime+stime from
   /proc/PID/stat);
2. baseline: the cron'd `kata-top snapshot --prometheus --output FILE` (a whole interpreter
   start and a cold collection each time); wall and CPU (the child's rusage);
3. soak (--soak-minutes, default 10): the exporter scraped every --interval seconds (15) as a
   Prometheus would, with its CPU share, RSS and open fds logged each minute.
With --baseline REV, that commit's exporter runs beside this tree's on the same lab (both as
installed) and the scrapes alternate between the two. Prints JSON lines and a Markdown table
with medians and ratios. Run as root:
  python3 bench/serve.py [--sandboxes 200] [--scrapes 30] [--soak-minutes 10]
  [--baseline REV] [--prefix P --run-root DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.common import checkout, compile_bytecode, installed_python  # noqa: E402
from kata_top.lab import build  # noqa: E402
from kata_top.lab.layout import Layout  # noqa: E402

LAYOUT = Layout(run_root="/run/ktbserve", prefix="ktbserve")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def scrape(url: str) -> tuple[int, float, dict[str, float]]:
    """(gzip bytes, the collection's own duration in ms as the scrape reports it, the
    server's Server-Timing parts in ms: collect, render, gzip)."""
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
        timing = resp.headers.get("Server-Timing", "")
    text = gzip.decompress(body).decode()
    m = re.search(r"^kata_top_collection_duration_seconds (\S+)$", text, re.M)
    parts = {name: float(dur) for name, dur in re.findall(r"(\w+);dur=([\d.]+)", timing)}
    return len(body), float(m.group(1)) * 1000 if m else float("nan"), parts


def start_serve(min_interval: str, python: str = sys.executable,
                cwd: str = ROOT) -> tuple[subprocess.Popen[str], str]:
    """An exporter over the lab (python: one as installed runs from a neutral cwd)."""
    proc = subprocess.Popen([python, "-m", "kata_top", "serve", "--run-root",
                             LAYOUT.run_root, "--listen", "127.0.0.1:0", "--min-interval",
                             min_interval, "--log-file", os.devnull], cwd=cwd,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    url = line.split("listening on ", 1)[1].split(" ", 1)[0]
    return proc, url


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(10)


def side_by_side(args: argparse.Namespace) -> dict[str, object]:
    """This tree's exporter and the baseline's, both as installed, scraped in turn."""
    import contextlib

    with contextlib.ExitStack() as stack:
        pythons = {"this": stack.enter_context(installed_python()),
                   "baseline": stack.enter_context(installed_python(
                       stack.enter_context(checkout(args.baseline))))}
        servers = {k: start_serve("0", py, "/") for k, py in pythons.items()}
        for proc, _url in servers.values():
            stack.callback(stop, proc)
        for _proc, url in servers.values():
            scrape(url)  # warm
        walls: dict[str, list[float]] = {k: [] for k in servers}
        cpus: dict[str, list[float]] = {k: [] for k in servers}
        collect: dict[str, list[float]] = {k: [] for k in servers}
        for n in range(args.scrapes):
            order = list(servers) if n % 2 == 0 else list(servers)[::-1]
            for k in order:
                proc, url = servers[k]
                c0, t0 = cpu_s(proc.pid), time.perf_counter()
                _size, _coll, parts = scrape(url)
                walls[k].append((time.perf_counter() - t0) * 1000)
                collect[k].append(parts.get("collect", 0.0))
                time.sleep(0.05)
                cpus[k].append((cpu_s(proc.pid) - c0) * 1000)
    row: dict[str, object] = {"sandboxes": args.sandboxes, "baseline": args.baseline,
                              "scrapes": args.scrapes}
    for k in servers:
        pre = "" if k == "this" else "baseline_"
        row[f"{pre}scrape_wall_median_ms"] = round(statistics.median(walls[k]), 1)
        row[f"{pre}scrape_cpu_median_ms"] = round(statistics.median(cpus[k]), 1)
        row[f"{pre}server_collect_median_ms"] = round(statistics.median(collect[k]), 1)
    return row


def main() -> int:
    global LAYOUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--sandboxes", type=int, default=200)
    ap.add_argument("--scrapes", type=int, default=30)
    ap.add_argument("--cron-runs", type=int, default=10)
    ap.add_argument("--soak-minutes", type=float, default=10.0)
    ap.add_argument("--interval", type=float, default=15.0)
    ap.add_argument("--settle", type=float, default=60.0,
                    help="seconds to wait after lab up before measuring (default 60)")
    ap.add_argument("--baseline", metavar="REV",
                    help="scrape that commit's exporter in turn with this tree's (both as "
                         "installed); no cron'd runs, no soak")
    ap.add_argument("--prefix", default=LAYOUT.prefix, help="the lab's name prefix")
    ap.add_argument("--run-root", default=LAYOUT.run_root, help="the lab's run root")
    args = ap.parse_args()
    LAYOUT = Layout(run_root=args.run_root, prefix=args.prefix)
    # SIGTERM (a background run being stopped) unwinds like Ctrl-C: the lab goes down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    # without bytecode every cron'd run would also pay the compiler: a baseline worse than
    # it is
    compile_bytecode()
    build.down(LAYOUT)
    build.up(LAYOUT, build.UpOptions(sandboxes=args.sandboxes, qemu=False, scenario="plain"))
    try:
        # The first minute after `lab up`, IPv6 neighbour discovery makes every namespace busy
        # (every tc dump taken every cycle); measure the node as it runs, after that.
        time.sleep(args.settle)
        if args.baseline:
            print(json.dumps(side_by_side(args)), flush=True)
            return 0
        proc, url = start_serve("0")
        try:
            scrape(url)  # warm: sockets opened, processes indexed, first tc dumps taken
            walls, cpus, colls, size = [], [], [], 0
            server: dict[str, list[float]] = {"collect": [], "render": [], "gzip": [],
                                              "total": []}
            for _ in range(args.scrapes):
                c0, t0 = cpu_s(proc.pid), time.perf_counter()
                size, coll, parts = scrape(url)
                colls.append(coll)
                for name in ("collect", "render", "gzip"):
                    server[name].append(parts.get(name, 0.0))
                server["total"].append(sum(parts.values()))
                walls.append((time.perf_counter() - t0) * 1000)
                time.sleep(0.05)  # let the server's thread finish its accounting
                cpus.append((cpu_s(proc.pid) - c0) * 1000)
        finally:
            stop(proc)
        cron_walls, cron_cpus = [], []
        out = os.path.join(tempfile.mkdtemp(prefix="ktbserve-"), "kata.prom")
        for _ in range(args.cron_runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "kata_top", "snapshot", "--prometheus",
                            "--output", out, "--run-root", LAYOUT.run_root, "--log-file",
                            os.devnull], cwd=ROOT, check=True)
            cron_walls.append((time.perf_counter() - t0) * 1000)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cron_cpus.append((after.ru_utime + after.ru_stime - before.ru_utime
                              - before.ru_stime) * 1000)
        os.unlink(out)
        os.rmdir(os.path.dirname(out))
        row = {"sandboxes": args.sandboxes, "scrape_wall_median_ms": round(
            statistics.median(walls), 1), "scrape_cpu_median_ms": round(statistics.median(cpus), 1),
            "scrape_bytes_gzip": size,
            "collection_part_median_ms": round(statistics.median(colls), 1),
            **{f"server_{k}_median_ms": round(statistics.median(v), 1)
               for k, v in server.items()},
            "cron_wall_median_ms": round(statistics.median(cron_walls), 1),
            "cron_cpu_median_ms": round(statistics.median(cron_cpus), 1)}
        row["cpu_ratio"] = round(row["cron_cpu_median_ms"] / max(row["scrape_cpu_median_ms"],
                                                                 0.1), 1)
        print(json.dumps(row), flush=True)
        soak = []
        if args.soak_minutes > 0:
            proc, url = start_serve("1")
            try:
                start, c_start = time.monotonic(), cpu_s(proc.pid)
                next_log, c_prev, t_prev = start + 60, c_start, start
                soak_server: list[float] = []
                while time.monotonic() - start < args.soak_minutes * 60:
                    soak_server.append(sum(scrape(url)[2].values()))
                    time.sleep(args.interval)
                    now = time.monotonic()
                    if now >= next_log:
                        c = cpu_s(proc.pid)
                        entry = {"minute": round((now - start) / 60, 1),
                                 "cpu_percent": round((c - c_prev) / (now - t_prev) * 100, 2),
                                 "rss_mb": round(rss_mb(proc.pid), 1), "fds": fds(proc.pid)}
                        soak.append(entry)
                        print(json.dumps(entry), flush=True)
                        next_log, c_prev, t_prev = now + 60, c, now
                total = (cpu_s(proc.pid) - c_start) / (time.monotonic() - start) * 100
            finally:
                stop(proc)
            print(json.dumps({"soak_cpu_percent": round(total, 2),
                              # each scrape's time at the server at this interval (the
                              # first, which starts the exporter's caches, left out)
                              "soak_scrape_server_median_ms": round(
                                  statistics.median(soak_server[1:] or [0.0]), 1),
                              "soak_scrape_server_max_ms": round(
                                  max(soak_server[1:] or [0.0]), 1),
                              "rss_mb_first_last": [soak[0]["rss_mb"], soak[-1]["rss_mb"]]
                              if soak else None,
                              "fds_first_last": [soak[0]["fds"], soak[-1]["fds"]]
                              if soak else None}), flush=True)
    finally:
        build.down(LAYOUT)
    print("\n| sandboxes | scrape wall at the client (median) | at the server: collect + "
          "render + gzip = total | scrape CPU | cron'd `snapshot --prometheus` wall / CPU | "
          "CPU ratio |")
    print("|---|---|---|---|---|---|")
    print(f"| {row['sandboxes']} | {row['scrape_wall_median_ms']} ms | "
          f"{row['server_collect_median_ms']} + {row['server_render_median_ms']} + "
          f"{row['server_gzip_median_ms']} = {row['server_total_median_ms']} ms | "
          f"{row['scrape_cpu_median_ms']} ms | {row['cron_wall_median_ms']} ms / "
          f"{row['cron_cpu_median_ms']} ms | {row['cpu_ratio']}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
