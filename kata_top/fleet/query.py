"""One refresh of the fleet: one instant query for the nodes, one more for the sandboxes a
screen shows — never one per row.

Prometheus does the summing: the nodes' answer is a few rows per node whatever the number of
sandboxes (at 50 nodes × 200 sandboxes, ~300 rows instead of ~40,000), and a node's sandboxes
are asked for only while a screen shows them. Each answer joins its parts with `or`, every part
tagged by a `q` label (label_replace), so a round is one round trip per level.

The node of a series is its `node` label (the PodMonitor in deploy/ sets it from the pod's
node); a target without one falls back to `instance`, and the snapshot says so.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from kata_top.fleet.model import FleetNode, FleetSandbox, FleetSnapshot
from kata_top.fleet.promql import PrometheusClient, Sample
from kata_top.httpget import without_credentials

JOB = "kata-top"
ALL = "*"  # `sandboxes=ALL`: every node's sandboxes (fleet --json, fleet check)

# What the fleet screen shows of a node, summed over its sandboxes: (q tag, recording rule
# name, expression). Over a large fleet these sums are Prometheus' heaviest evaluation (they
# read every sandbox's series), so deploy/prometheusrule.yaml records them
# (tests/unit/test_deploy.py keeps the two equal) and a refresh reads only the recorded rows
# (a few per node); without those rules each refresh computes them.
NODE_SUMS: tuple[tuple[str, str, str], ...] = (
    ("sandboxes", "node:kata_top_sandboxes:count",
     "count by (node, instance) (kata_top_sandbox_info)"),
    ("stale", "node:kata_top_stale_sandboxes:count",
     'count by (node, instance) (kata_top_sandbox_info{state="stale"})'),
    ("findings", "node:kata_top_findings:sum",
     "sum by (node, instance, severity) (kata_top_findings)"),
    # into/out of the VMs: what the taps handed to the VMMs (a failing redirect's attempts
    # are not traffic into a VM)
    ("bps", "node:kata_top_vm_delivered_bits:rate2m",
     "sum by (node, instance, direction) (rate(kata_top_vm_delivered_bytes_total[2m])) * 8"),
    ("oneway", "node:kata_top_one_way_sandboxes:count",
     "count by (node, instance) (count by (node, instance, sandbox_id) "
     "(kata_top_redirect_present == 0))"),
    ("htbdrops", "node:kata_top_htb_drops:rate2m",
     'sum by (node, instance) (rate(kata_top_qdisc_drops_total{kind="htb"}[2m]))'),
    # packets lost at the redirect (the tap down or gone) and at the tap (the VMM not
    # draining it): beside bps, which counts only what was delivered
    ("failed", "node:kata_top_redirect_failed_packets:rate2m",
     "sum by (node, instance) (rate(kata_top_redirect_failed_packets_total[2m]))"),
    ("tapdrops", "node:kata_top_vm_dropped_packets:rate2m",
     "sum by (node, instance) (rate(kata_top_vm_dropped_packets_total[2m]))"),
)
RULES_HINT = ("Prometheus has no kata-top recording rules (the `kata-top.fleet` group of "
              "deploy/prometheusrule.yaml): every refresh sums the nodes itself, slowly on "
              "large fleets")


def _tag(expr: str, q: str) -> str:
    return f'label_replace({expr}, "q", "{q}", "", "")'


def nodes_query(job: str = JOB, recorded: bool = True) -> str:
    """Per node: exporter health, the last snapshot time it sent (also after it stopped: up
    to an hour), and its sandboxes summed up (recorded by the rules, or computed)."""
    parts = [_tag(f"up{{job={_string(job)}}}", "up"),
             _tag("max by (node, instance) (last_over_time("
                  "kata_top_snapshot_timestamp_seconds[1h]))", "seen")]
    parts += [_tag(name if recorded else expr, q) for q, name, expr in NODE_SUMS]
    return " or ".join(parts)


# One node's (or every node's) sandboxes: only the labels the console shows (at 10,000
# sandboxes the answer's size is the cost), their findings, traffic, lost redirects,
# rate-limit drops and the packets lost at the redirect and at the tap.
Q_SANDBOXES = (
    'label_replace(group by (node, instance, sandbox_id, cri_name, cri_namespace, state, '
    'network_model) (kata_top_sandbox_info{{{m}}}), "q", "info", "", "") or '
    'label_replace(sum by (node, instance, sandbox_id, code, severity) '
    '(kata_top_findings{{{m}}} > 0), "q", "findings", "", "") or '
    'label_replace(sum by (node, instance, sandbox_id, direction) '
    '(rate(kata_top_vm_delivered_bytes_total{{{m}}}[2m])) * 8, "q", "bps", "", "") or '
    'label_replace(kata_top_redirect_present{{{m}}} == 0, "q", "missing", "", "") or '
    'label_replace(sum by (node, instance, sandbox_id) '
    '(rate(kata_top_qdisc_drops_total{{kind="htb"{c}{m}}}[2m])), "q", "htbdrops", "", "") or '
    'label_replace(sum by (node, instance, sandbox_id) '
    '(rate(kata_top_redirect_failed_packets_total{{{m}}}[2m])), "q", "failed", "", "") or '
    'label_replace(sum by (node, instance, sandbox_id) '
    '(rate(kata_top_vm_dropped_packets_total{{{m}}}[2m])), "q", "tapdrops", "", "")')


def _string(value: str) -> str:
    """A PromQL string literal (node names come from Prometheus' own answers)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def node_matcher(node: str, by_instance: bool) -> str:
    """The label matcher that selects one node's series: its `node` label, or for a target
    without one, its `instance` and no `node`."""
    if by_instance:
        return f'node="",instance={_string(node)}'
    return f"node={_string(node)}"


def sandboxes_query(matcher: str = "") -> str:
    return Q_SANDBOXES.format(m=matcher, c="," if matcher else "")


def _node_of(labels: dict[str, str], missing: set[str]) -> str:
    node = labels.get("node")
    if node:
        return node
    inst = labels.get("instance", "?")
    missing.add(inst)
    return inst


def collect(client: PrometheusClient, job: str = JOB,
            sandboxes: str | None = ALL) -> FleetSnapshot:
    """One round (PrometheusError when Prometheus cannot answer): the nodes, and the sandboxes
    of `sandboxes` (a node's name, ALL, or None for none: the fleet screen needs none)."""
    t0 = time.monotonic()
    now = time.time()
    no_node: set[str] = set()
    node_rows = client.query(nodes_query(job, recorded=True))
    queries = 1
    notes: list[str] = []
    if not any(s.labels.get("q") == "sandboxes" for s in node_rows):
        # No recorded sums: the rules are not loaded (or not evaluated yet), or no node has
        # a sandbox. Compute them; say so only when that finds sandboxes.
        node_rows = client.query(nodes_query(job, recorded=False))
        queries += 1
        if any(s.labels.get("q") == "sandboxes" for s in node_rows):
            notes.append(RULES_HINT)
    rows: tuple[FleetSandbox, ...] = ()
    if sandboxes is not None:
        # a node named by its instance (its target has no `node` label) is selected so
        matcher = "" if sandboxes == ALL else node_matcher(sandboxes, sandboxes in no_node)
        rows = fold_sandboxes(client.query(sandboxes_query(matcher)), no_node)
        queries += 1
    nodes = fold_nodes(node_rows, now, no_node)
    if no_node:
        notes.append(f"series without a `node` label (grouped by instance): "
                     f"{', '.join(sorted(no_node))}; label the scrape target with node=…")
    errors = tuple(notes)
    urls = tuple(sorted({(_node_of(s.labels, no_node), f"http://{s.labels['instance']}")
                         for s in node_rows if s.labels.get("q") == "up"
                         and s.labels.get("instance")}))
    return FleetSnapshot(taken_at=now, prometheus=without_credentials(client.url),
                         nodes=nodes, sandboxes=rows,
                         errors=errors, serve_urls=urls, queries=queries,
                         duration_ms=round((time.monotonic() - t0) * 1000, 2),
                         sandboxes_of=sandboxes)


class _Acc:
    """One sandbox's facts gathered across the answer's parts."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels
        self.critical = self.warning = 0
        self.codes: set[str] = set()
        self.in_bps = self.out_bps = self.drops = self.failed = self.tap_drops = 0.0
        self.missing: set[str] = set()

    def row(self, node: str, sandbox_id: str) -> FleetSandbox:
        lab = self.labels
        return FleetSandbox(
            node=node, sandbox_id=sandbox_id, pod_namespace=lab.get("cri_namespace", ""),
            pod_name=lab.get("cri_name", ""), state=lab.get("state", "unknown"),
            network_model=lab.get("network_model", "unknown"), critical=self.critical,
            warning=self.warning, codes=tuple(sorted(self.codes)), in_bps=self.in_bps,
            out_bps=self.out_bps, missing_redirects=tuple(sorted(self.missing)),
            rate_limit_drops_ps=self.drops, redirect_failed_ps=self.failed,
            tap_dropped_ps=self.tap_drops)


def fold_sandboxes(answer: Iterable[Sample], no_node: set[str]) -> tuple[FleetSandbox, ...]:
    acc: dict[tuple[str, str], _Acc] = {}
    rest: list[tuple[tuple[str, str], Sample]] = []
    for s in answer:  # infos first: the other parts only add to sandboxes that exist
        key = (_node_of(s.labels, no_node), s.labels.get("sandbox_id", "?"))
        if s.labels.get("q") == "info":
            acc[key] = _Acc(s.labels)
        else:
            rest.append((key, s))
    for key, s in rest:
        sb = acc.get(key)
        if sb is None:
            continue
        q, lab = s.labels.get("q"), s.labels
        if q == "findings":
            if lab.get("severity") == "critical":
                sb.critical += int(_finite(s))
            elif lab.get("severity") == "warning":
                sb.warning += int(_finite(s))
            sb.codes.add(lab.get("code", "?"))
        elif q == "bps" and lab.get("direction") == "in":
            sb.in_bps += _finite(s)
        elif q == "bps" and lab.get("direction") == "out":
            sb.out_bps += _finite(s)
        elif q == "missing":
            sb.missing.add(lab.get("direction", ""))
        elif q == "htbdrops":
            sb.drops += _finite(s)
        elif q == "failed":
            sb.failed += _finite(s)
        elif q == "tapdrops":
            sb.tap_drops += _finite(s)
    return tuple(sorted((a.row(node, sid) for (node, sid), a in acc.items()),
                        key=lambda r: (r.node, r.pod_namespace, r.pod_name, r.sandbox_id)))


def _finite(s: Sample) -> float:
    return s.value if s.value == s.value else 0.0  # NaN (a fresh counter) counts as 0


class _NodeAcc:
    def __init__(self) -> None:
        self.up: bool | None = None
        self.seen: float | None = None
        self.sandboxes = self.critical = self.warning = self.one_way = self.stale = 0
        self.in_bps = self.out_bps = self.drops = self.failed = self.tap_drops = 0.0


def fold_nodes(answer: Iterable[Sample], now: float,
               no_node: set[str]) -> tuple[FleetNode, ...]:
    acc: dict[str, _NodeAcc] = defaultdict(_NodeAcc)
    for s in answer:
        n, q, lab = acc[_node_of(s.labels, no_node)], s.labels.get("q"), s.labels
        if q == "up":
            n.up = s.value >= 1 or bool(n.up)  # one answering target of the node is enough
        elif q == "seen":
            n.seen = s.value if n.seen is None or s.value > n.seen else n.seen
        elif q == "sandboxes":
            n.sandboxes += int(_finite(s))
        elif q == "stale":
            n.stale += int(_finite(s))
        elif q == "findings" and lab.get("severity") == "critical":
            n.critical += int(_finite(s))
        elif q == "findings" and lab.get("severity") == "warning":
            n.warning += int(_finite(s))
        elif q == "bps" and lab.get("direction") == "in":
            n.in_bps += _finite(s)
        elif q == "bps" and lab.get("direction") == "out":
            n.out_bps += _finite(s)
        elif q == "oneway":
            n.one_way += int(_finite(s))
        elif q == "htbdrops":
            n.drops += _finite(s)
        elif q == "failed":
            n.failed += _finite(s)
        elif q == "tapdrops":
            n.tap_drops += _finite(s)
    return tuple(FleetNode(
        node=name, up=n.up, last_seen_age_s=round(now - n.seen, 1)
        if n.seen is not None and n.seen == n.seen else None,
        sandboxes=n.sandboxes, critical=n.critical, warning=n.warning, in_bps=n.in_bps,
        out_bps=n.out_bps, one_way=n.one_way, dead_vmms=n.stale, rate_limit_drops_ps=n.drops,
        redirect_failed_ps=n.failed, tap_dropped_ps=n.tap_drops)
        for name, n in sorted(acc.items()))
