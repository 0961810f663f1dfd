"""The fleet console's refresh over a large fleet, in one real Prometheus.

50 simulated nodes × 200 sandboxes: one small test exporter serves one recorded-shape scrape
(the demo recording's sandboxes cloned to 200 with fresh ids, rendered by kata-top's own
Prometheus encoder) and Prometheus scrapes it as 50 targets, each labelled node=nodeNN, so
10,000 sandboxes' series sit in one Prometheus. Then N refreshes of the console's round of
queries (kata_top.fleet.query.collect, what the console's worker runs): wall time and CPU per
refresh, queries per refresh, and the CPU share that makes at a 5 s refresh.

Run (needs Debian's prometheus): python3 bench/fleet.py [--nodes 50] [--sandboxes 200]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import resource
import secrets
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import replace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kata_top.fleet.promql import PrometheusClient  # noqa: E402
from kata_top.fleet.query import collect  # noqa: E402
from kata_top.formats import prometheus as prom_format  # noqa: E402
from kata_top.formats.jsonin import load_recording  # noqa: E402
from tests.serve_helpers import prometheus, promql, wait_for  # noqa: E402


def scrape_text(sandboxes: int) -> bytes:
    snaps, _ = load_recording(os.path.join(ROOT, "tests", "data", "demo.ndjson"))
    base = snaps[-1]
    clones = []
    for i in range(sandboxes):
        sb = base.sandboxes[i % len(base.sandboxes)]
        clones.append(replace(sb, id=secrets.token_hex(32),
                              pod=replace(sb.pod, name=f"{sb.pod.name}-{i}")))
    return prom_format.exposition(replace(base, sandboxes=tuple(clones))).text()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--sandboxes", type=int, default=200)
    ap.add_argument("--refreshes", type=int, default=20)
    args = ap.parse_args()
    body = scrape_text(args.sandboxes)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_a: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    addr = f"127.0.0.1:{srv.server_address[1]}"
    targets = {f"node{i:02d}": addr for i in range(args.nodes)}
    with tempfile.TemporaryDirectory(prefix="ktbfleet-") as tmp, \
            prometheus(tmp, targets, scrape_interval="15s") as prom:
        wait_for(lambda: (lambda r: r and float(r[0]["value"][1]) >= args.nodes)(
            promql(prom, "count(kata_top_sandboxes)")), 180, "every node scraped")
        client = PrometheusClient(prom, timeout=30)
        collect(client)  # warm
        walls, cpus, series = [], [], 0
        for _ in range(args.refreshes):
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            snap = collect(client)
            walls.append((time.perf_counter() - t0) * 1000)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpus.append((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1000)
        series = int(float(promql(prom, "count({__name__=~\"kata_top_.+\"})")[0]["value"][1]))
    srv.shutdown()
    row = {"nodes": args.nodes, "sandboxes_per_node": args.sandboxes,
           "sandboxes_seen": len(snap.sandboxes), "nodes_seen": len(snap.nodes),
           "series_in_prometheus": series, "queries_per_refresh": snap.queries,
           "refresh_wall_median_ms": round(statistics.median(walls), 1),
           "refresh_wall_max_ms": round(max(walls), 1),
           "console_cpu_median_ms": round(statistics.median(cpus), 1),
           "cpu_share_at_5s_percent": round(statistics.median(cpus) / 5000 * 100, 2)}
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
