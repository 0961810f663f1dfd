"""One refresh of the fleet: at most five instant queries, never one per row.

The node of a series is its `node` label (the PodMonitor in deploy/ sets it from the pod's
node); a target without one falls back to `instance`, and the snapshot says so.
"""

from __future__ import annotations

import time
from collections import defaultdict

from kata_top.fleet.model import FleetNode, FleetSandbox, FleetSnapshot
from kata_top.fleet.promql import PrometheusClient, Sample

JOB = "kata-top"

# The last snapshot time each node's exporter sent (also after it stopped: up to an hour).
Q_LAST_SEEN = ("max by (node, instance) "
               "(last_over_time(kata_top_snapshot_timestamp_seconds[1h]))")
Q_UP = 'up{{job="{job}"}}'
# Only the labels the console shows: at 10,000 sandboxes the answer's size is the cost.
Q_SANDBOXES = ("group by (node, instance, sandbox_id, cri_name, cri_namespace, state, "
               "network_model) (kata_top_sandbox_info)")
Q_FINDINGS = "sum by (node, instance, sandbox_id, code, severity) (kata_top_findings > 0)"
# Traffic, lost redirects and rate-limit drops in one answer, told apart by a `q` label.
Q_DATAPATH = (
    'label_replace(sum by (node, instance, sandbox_id, direction) '
    '(rate(kata_top_redirect_bytes_total[2m])) * 8, "q", "bps", "", "") or '
    'label_replace(kata_top_redirect_present == 0, "q", "missing", "", "") or '
    'label_replace(sum by (node, instance, sandbox_id) '
    '(rate(kata_top_qdisc_drops_total{kind="htb"}[2m])), "q", "htbdrops", "", "")')


def _node_of(labels: dict[str, str], missing: set[str]) -> str:
    node = labels.get("node")
    if node:
        return node
    inst = labels.get("instance", "?")
    missing.add(inst)
    return inst


def collect(client: PrometheusClient, job: str = JOB) -> FleetSnapshot:
    """One round of queries (PrometheusError when Prometheus cannot answer)."""
    t0 = time.monotonic()
    now = time.time()
    no_node: set[str] = set()
    last_seen = client.query(Q_LAST_SEEN)
    up = client.query(Q_UP.format(job=job))
    infos = client.query(Q_SANDBOXES)
    findings = client.query(Q_FINDINGS)
    datapath = client.query(Q_DATAPATH)

    acc: dict[tuple[str, str], _Acc] = {}
    for s in infos:
        key = (_node_of(s.labels, no_node), s.labels.get("sandbox_id", "?"))
        acc[key] = _Acc(s.labels)
    for s in findings:
        sb = acc.get((_node_of(s.labels, no_node), s.labels.get("sandbox_id", "")))
        if sb is None:
            continue
        sev = s.labels.get("severity", "")
        if sev == "critical":
            sb.critical += int(_finite(s))
        elif sev == "warning":
            sb.warning += int(_finite(s))
        sb.codes.add(s.labels.get("code", "?"))
    for s in datapath:
        sb = acc.get((_node_of(s.labels, no_node), s.labels.get("sandbox_id", "")))
        if sb is None:
            continue
        q, direction = s.labels.get("q"), s.labels.get("direction", "")
        if q == "bps" and direction == "in":
            sb.in_bps += _finite(s)
        elif q == "bps" and direction == "out":
            sb.out_bps += _finite(s)
        elif q == "missing":
            sb.missing.add(direction)
        elif q == "htbdrops":
            sb.drops += _finite(s)
    rows = tuple(sorted((a.row(node, sid) for (node, sid), a in acc.items()),
                        key=lambda r: (r.node, r.pod_namespace, r.pod_name, r.sandbox_id)))
    nodes = _nodes(rows, up, last_seen, now, no_node)
    errors: tuple[str, ...] = ()
    if no_node:
        errors = (f"series without a `node` label (grouped by instance): "
                  f"{', '.join(sorted(no_node))}; label the scrape target with node=…",)
    urls = tuple(sorted({(_node_of(s.labels, no_node), f"http://{s.labels['instance']}")
                         for s in up if s.labels.get("instance")}))
    return FleetSnapshot(taken_at=now, prometheus=client.url, nodes=nodes, sandboxes=rows,
                         errors=errors, serve_urls=urls, queries=5,
                         duration_ms=round((time.monotonic() - t0) * 1000, 2))


class _Acc:
    """One sandbox's facts gathered across the round's answers."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.critical = self.warning = 0
        self.codes: set[str] = set()
        self.in_bps = self.out_bps = self.drops = 0.0
        self.missing: set[str] = set()

    def row(self, node: str, sandbox_id: str) -> FleetSandbox:
        lab = self.labels
        return FleetSandbox(
            node=node, sandbox_id=sandbox_id, pod_namespace=lab.get("cri_namespace", ""),
            pod_name=lab.get("cri_name", ""), state=lab.get("state", "unknown"),
            network_model=lab.get("network_model", "unknown"), critical=self.critical,
            warning=self.warning, codes=tuple(sorted(self.codes)), in_bps=self.in_bps,
            out_bps=self.out_bps, missing_redirects=tuple(sorted(self.missing)),
            rate_limit_drops_ps=self.drops)


def _finite(s: Sample) -> float:
    return s.value if s.value == s.value else 0.0  # NaN (a fresh counter) counts as 0


def _nodes(rows: tuple[FleetSandbox, ...], up: list[Sample], last_seen: list[Sample],
           now: float, no_node: set[str]) -> tuple[FleetNode, ...]:
    by_node: dict[str, list[FleetSandbox]] = defaultdict(list)
    for r in rows:
        by_node[r.node].append(r)
    up_of = {_node_of(s.labels, no_node): s.value >= 1 for s in up}
    seen_of = {_node_of(s.labels, no_node): s.value for s in last_seen}
    names = sorted(set(by_node) | set(up_of) | set(seen_of))
    out = []
    for n in names:
        sbs = by_node.get(n, [])
        seen = seen_of.get(n)
        out.append(FleetNode(
            node=n, up=up_of.get(n), last_seen_age_s=round(now - seen, 1)
            if seen is not None and seen == seen else None,
            sandboxes=len(sbs), critical=sum(r.critical for r in sbs),
            warning=sum(r.warning for r in sbs), in_bps=sum(r.in_bps for r in sbs),
            out_bps=sum(r.out_bps for r in sbs),
            one_way=sum(1 for r in sbs if r.missing_redirects),
            dead_vmms=sum(1 for r in sbs if r.state == "stale"),
            rate_limit_drops_ps=sum(r.rate_limit_drops_ps for r in sbs)))
    return tuple(out)
