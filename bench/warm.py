"""The warm path against the cold one, side by side in one run, on the lab.

For each size (default 200, then 1,000 sandboxes; `lab up --no-qemu --scenario plain`):
1. warm: `kata-top snapshot --json` (as installed: a whole interpreter start) while a
   `kata-top serve` of the run root holds a collection (it answers on its local socket);
   wall per run at the caller, each answer checked to say it was served;
2. cold: the same command with --fresh (collects itself), wall;
3. /api/v1/snapshot: per request at the client, the same collection asked again (its encoded
   bytes reused) and the first request after a collection (encoding included);
4. at the first size only: /metrics scraped --interval apart (1 s: every scrape is a fresh
   collection, as a real scrape interval gives), median wall at the client and the serve's
   CPU per scrape, beside a cron'd `snapshot --prometheus --output FILE --fresh` (the whole
   process's CPU, interpreter included) in the same run.
Prints JSON lines and a Markdown table. Run as root, niced on a shared machine:
  nice python3 bench/warm.py [--sizes 200,1000] [--runs 15] [--scrapes 20]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
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

from bench.common import CONSOLE_SCRIPT, installed_python  # noqa: E402
from bench.serve import cpu_s  # noqa: E402
from kata_top.lab import build  # noqa: E402
from kata_top.lab.layout import Layout  # noqa: E402

LAYOUT = Layout(run_root="/run/ktbwarm", prefix="ktbwarm")


def start_serve(python: str, min_interval: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([python, "-c", CONSOLE_SCRIPT, "serve", "--run-root",
                             LAYOUT.run_root, "--listen", "127.0.0.1:0", "--min-interval",
                             str(min_interval), "--log-file", os.devnull], cwd="/",
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    url = line.split("listening on ", 1)[1].split(" ", 1)[0].removesuffix("/metrics")
    proc.stderr.readline()  # where its local socket is
    return proc, url


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(10)


def timed(argv: list[str]) -> tuple[float, float, str]:
    """(wall ms, CPU ms of the whole child, its stderr)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(argv, cwd="/", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True, check=True)
    wall = (time.perf_counter() - t0) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
    return wall, cpu, out.stderr


def get(url: str, gz: bool = False) -> tuple[float, int]:
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gz else {})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = resp.read()
    wall = (time.perf_counter() - t0) * 1000
    if gz:
        gzip.decompress(body)  # not timed: what the client does after the answer
    return wall, len(body)


def med(xs: list[float]) -> float:
    return round(statistics.median(xs), 1) if xs else float("nan")


def one_size(n: int, python: str, args: argparse.Namespace, scrape: bool) -> dict[str, object]:
    # as an operator or a cron job runs it: no --log-file (naming one imports logging)
    snapshot = [python, "-c", CONSOLE_SCRIPT, "snapshot", "--json", "--run-root",
                LAYOUT.run_root]
    row: dict[str, object] = {"sandboxes": n}
    row["interpreter_alone_ms"] = med([timed([python, "-c", "pass"])[0] for _ in range(5)])
    proc, url = start_serve(python, args.min_interval)
    try:
        for _ in range(30):  # the serve's first collection (its engine starting)
            if "from kata-top serve" in timed(snapshot)[2]:
                break
        warm, warm_cpu = [], []
        for _ in range(args.runs):
            wall, cpu, err = timed(snapshot)
            if "from kata-top serve" not in err:
                # older than --max-age (the serve's --min-interval): it collects again,
                # and the next run is warm; not a warm answer, so not counted here
                continue
            warm.append(wall)
            warm_cpu.append(cpu)
        row["warm_snapshot_json_ms"] = med(warm)
        row["warm_snapshot_json_cpu_ms"] = med(warm_cpu)
        row["warm_runs"] = len(warm)
        same, first = [], []
        for _ in range(args.runs):
            same.append(get(url + "/api/v1/snapshot")[0])
        row["api_snapshot_same_collection_ms"] = med(same)
        row["api_snapshot_bytes"] = get(url + "/api/v1/snapshot")[1]
        row["api_snapshot_gzip_ms"] = med([get(url + "/api/v1/snapshot", gz=True)[0]
                                           for _ in range(args.runs)])
        for _ in range(3):
            time.sleep(args.min_interval + 0.1)  # the next request collects and encodes
            first.append(get(url + "/api/v1/snapshot")[0])
        row["api_snapshot_new_collection_ms"] = med(first)
    finally:
        stop(proc)
    if scrape:
        proc, url = start_serve(python, 1.0)
        try:
            for _ in range(4):  # the serve learns the scrapes' cadence (serve/cadence.py)
                time.sleep(args.interval)
                get(url + "/metrics", gz=True)
            walls = []
            c0 = cpu_s(proc.pid)
            for _ in range(args.scrapes):
                time.sleep(args.interval)
                walls.append(get(url + "/metrics", gz=True)[0])
            time.sleep(0.05)  # the server thread's accounting after the last answer
            # the whole window's CPU per scrape: a collection made ahead of a scrape counts
            cpu_per_scrape = (cpu_s(proc.pid) - c0) * 1000 / args.scrapes
        finally:
            stop(proc)
        row["metrics_1s_apart_wall_ms"] = med(walls)
        row["metrics_1s_apart_serve_cpu_ms"] = round(cpu_per_scrape, 1)
        out = os.path.join(tempfile.mkdtemp(prefix="ktbwarm-"), "kata.prom")
        cron = [timed([python, "-c", CONSOLE_SCRIPT, "snapshot", "--prometheus", "--output",
                       out, "--fresh", "--run-root", LAYOUT.run_root])
                for _ in range(args.cold_runs)]
        row["cron_prometheus_wall_ms"] = med([c[0] for c in cron])
        row["cron_prometheus_cpu_ms"] = med([c[1] for c in cron])
        row["metrics_cpu_ratio"] = round(
            float(row["cron_prometheus_cpu_ms"]) / max(float(row["metrics_1s_apart_serve_cpu_ms"]),
                                                       0.1), 1)  # type: ignore[arg-type]
    cold = [timed([*snapshot, "--fresh"]) for _ in range(args.cold_runs)]
    row["cold_snapshot_json_ms"] = med([c[0] for c in cold])
    row["cold_snapshot_json_cpu_ms"] = med([c[1] for c in cold])
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="200,1000")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--cold-runs", type=int, default=5)
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--min-interval", type=float, default=10.0,
                    help="the serve's (and so the warm clients' default --max-age; default 10)")
    ap.add_argument("--settle", type=float, default=30.0,
                    help="seconds after lab up before measuring (IPv6 neighbour discovery)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/warm.py builds a lab: run it as root", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    rows = []
    with installed_python() as python:
        for i, n in enumerate(int(s) for s in args.sizes.split(",")):
            build.down(LAYOUT)
            try:
                build.up(LAYOUT, build.UpOptions(sandboxes=n, qemu=False, scenario="plain"))
                time.sleep(args.settle)
                row = one_size(n, python, args, scrape=i == 0)
            finally:
                build.down(LAYOUT)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("\n| sandboxes | warm `snapshot --json` wall / CPU | cold (--fresh) wall / CPU | "
          "interpreter alone | /api/v1/snapshot same collection / gzip / new collection |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['sandboxes']} | {r['warm_snapshot_json_ms']} / "
              f"{r['warm_snapshot_json_cpu_ms']} ms | {r['cold_snapshot_json_ms']} / "
              f"{r['cold_snapshot_json_cpu_ms']} ms | {r['interpreter_alone_ms']} ms | "
              f"{r['api_snapshot_same_collection_ms']} / {r['api_snapshot_gzip_ms']} / "
              f"{r['api_snapshot_new_collection_ms']} ms |")
    first = rows[0]
    if "metrics_1s_apart_wall_ms" in first:
        print(f"\n/metrics at {first['sandboxes']}, scraped {args.interval:g} s apart: "
              f"{first['metrics_1s_apart_wall_ms']} ms median at the client, "
              f"{first['metrics_1s_apart_serve_cpu_ms']} ms serve CPU per scrape; cron'd "
              f"`snapshot --prometheus --fresh`: {first['cron_prometheus_wall_ms']} ms wall, "
              f"{first['cron_prometheus_cpu_ms']} ms CPU: {first['metrics_cpu_ratio']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
