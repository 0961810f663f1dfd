"""The fleet console's refresh over a large fleet, in one real Prometheus.

50 simulated nodes × 200 sandboxes: one small test exporter serves one recorded-shape scrape
(the demo recording's sandboxes cloned to 200 with fresh ids, rendered by kata-top's own
Prometheus encoder) and Prometheus scrapes it as 50 targets, each labelled node=nodeNN, so
10,000 sandboxes' series sit in one Prometheus. Then N refreshes of the console's round of
queries (kata_top.fleet.query.collect, what the console's worker runs), of three kinds, taken
in turn: the fleet screen's (nodes only), a node screen's (the nodes and one node's
sandboxes), and the whole fleet's (every sandbox: `fleet --json`, `fleet check`, and what
every console refresh asked for up to commit f581473). Wall time and CPU per refresh, queries
per refresh, and the CPU share that makes at a 5 s refresh.

Run (needs Debian's prometheus): python3 bench/fleet.py [--nodes 50] [--sandboxes 200]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import resource
import secrets
import statistics
import sys
import tempfile
import threading
import time

from msgspec.structs import replace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.ui import Terminal  # noqa: E402
from kata_top.fleet.promql import PrometheusClient  # noqa: E402
from kata_top.fleet.query import ALL, collect, nodes_query  # noqa: E402
from kata_top.formats import prometheus as prom_format  # noqa: E402
from kata_top.formats.recording import load_recording  # noqa: E402
from tests.deploy_helpers import write_rules  # noqa: E402
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
    ap.add_argument("--console-seconds", type=float, default=30.0,
                    help="how long the console runs with key presses (default 30)")
    args = ap.parse_args()
    body = scrape_text(args.sandboxes)
    args.series_per_node = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
    # the pod a node's sandbox list shows first (sorted by namespace, then name)
    args.first_pod = min(re.findall(rb'cri_name="([^"]*)",cri_namespace="([^"]*)"', body),
                         key=lambda m: (m[1], m[0]))[0].decode()

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
    with tempfile.TemporaryDirectory(prefix="ktbfleet-") as tmp:
        # deploy/'s rules, as a cluster runs them: the console reads the recorded node sums
        rules = write_rules(os.path.join(tmp, "rules.yaml"))
        with prometheus(tmp, targets, (rules,), scrape_interval="15s",
                        evaluation_interval="15s") as prom:
            row = measure(prom, args)
    srv.shutdown()
    print(json.dumps(row))
    return 0


def measure(prom: str, args: argparse.Namespace) -> dict[str, object]:
    """Refreshes of each kind, interleaved; one JSON row."""
    wait_for(lambda: (lambda r: r and float(r[0]["value"][1]) >= args.nodes)(
        promql(prom, "count(kata_top_sandboxes)")), 180, "every node scraped")
    # rate() over [2m] needs two samples of every series, the rules one evaluation
    wait_for(lambda: (lambda r: r and float(r[0]["value"][1]) >= args.nodes)(
        promql(prom, "count(node:kata_top_sandboxes:count)")), 120,
        "the recording rules evaluated")
    time.sleep(16)
    client = PrometheusClient(prom, timeout=30)
    computed = PrometheusClient(prom, timeout=30)
    # "nodes": the fleet screen's refresh (recorded sums); "nodes_computed": the same
    # without deploy/'s recording rules; "one_node": a node screen's (the nodes and one
    # node's sandboxes); "whole_fleet": every sandbox (fleet --json, fleet check, and
    # every console refresh up to commit f581473)
    kinds = {"nodes": None, "nodes_computed": None, "one_node": "node07",
             "whole_fleet": ALL}
    for scope in kinds.values():
        collect(client, sandboxes=scope)  # warm
    walls: dict[str, list[float]] = {k: [] for k in kinds}
    cpus: dict[str, list[float]] = {k: [] for k in kinds}
    snaps = {}
    for _ in range(args.refreshes):  # interleaved, so a slow moment hits every kind
        for kind, scope in kinds.items():
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            if kind == "nodes_computed":
                computed.query(nodes_query(recorded=False))
            else:
                snaps[kind] = collect(client, sandboxes=scope)
            walls[kind].append((time.perf_counter() - t0) * 1000)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpus[kind].append((r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
                              * 1000)
    row: dict[str, object] = {"nodes": args.nodes, "sandboxes_per_node": args.sandboxes,
                              "series_in_prometheus": args.nodes * args.series_per_node}
    for kind in kinds:
        snap = snaps.get(kind, snaps["nodes"])
        row[kind] = {"nodes_seen": len(snap.nodes), "sandboxes_seen": len(snap.sandboxes),
                     "sandboxes_counted": sum(n.sandboxes for n in snap.nodes),
                     "queries": 1 if kind == "nodes_computed" else snap.queries,
                     "wall_median_ms": round(statistics.median(walls[kind]), 1),
                     "wall_max_ms": round(max(walls[kind]), 1),
                     "cpu_median_ms": round(statistics.median(cpus[kind]), 1),
                     "cpu_share_at_5s_percent": round(statistics.median(cpus[kind]) / 50, 2)}
    for kind in ("nodes", "one_node"):
        row[f"{kind}_vs_whole_fleet_wall"] = round(
            statistics.median(walls["whole_fleet"]) / statistics.median(walls[kind]), 1)
    row["recorded_vs_computed_wall"] = round(
        statistics.median(walls["nodes_computed"]) / statistics.median(walls["nodes"]), 1)
    row["console"] = console(prom, args.nodes, args.console_seconds, args.first_pod)
    return row


def console(prom: str, nodes: int, seconds: float, first_pod: str) -> dict[str, object]:
    """`kata-top fleet` itself on a pseudo-terminal (bench/ui.py's harness) at a 5 s refresh:
    its CPU share with a key press every ~1.5 s, key→screen latency, and how long opening a
    node takes until its sandboxes are on screen."""
    term = Terminal([sys.executable, "-m", "kata_top", "fleet", "--prometheus", prom,
                     "--refresh", "5", "--log-file", os.devnull])
    try:
        if not term.wait_for(f"{nodes} nodes".encode(), 60):
            raise SystemExit(f"the fleet console never showed {nodes} nodes: "
                             f"{term.tail[-300:]!r}")
        time.sleep(6)  # a refresh or two on screen
        cpu0, t0 = term.cpu_seconds(), time.monotonic()
        latencies: list[float] = []
        while time.monotonic() - t0 < seconds:
            term.wait_quiet(0.15, 1.5)
            ms = term.press(b"j")
            if ms is not None:
                latencies.append(ms)
            time.sleep(1.3)
        wall = time.monotonic() - t0
        cpu = term.cpu_seconds() - cpu0
        term.wait_quiet(0.15, 1.5)
        k0 = time.monotonic()
        os.write(term.master, b"\r")  # open the node under the cursor: its sandboxes
        opened = term.wait_for(first_pod.encode(), 30)  # the node's first row
        open_ms = (time.monotonic() - k0) * 1000 if opened else None
        rss = term.peak_rss_mb()
    finally:
        term.quit()
    lat = sorted(latencies)
    return {"cpu_percent_of_one_core": round(100 * cpu / wall, 2), "peak_rss_mb": round(rss, 1),
            "key_presses": len(lat),
            "key_latency_median_ms": round(statistics.median(lat), 1) if lat else None,
            "key_latency_p90_ms": round(lat[int(0.9 * (len(lat) - 1))], 1) if lat else None,
            "open_node_until_its_sandboxes_show_ms": round(open_ms, 1) if open_ms else None}


if __name__ == "__main__":
    sys.exit(main())
