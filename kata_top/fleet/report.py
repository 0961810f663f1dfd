"""`kata-top fleet check` as text: what is wrong, node by node, worst first."""

from __future__ import annotations

from kata_top.fleet.model import FleetNode, FleetSnapshot
from kata_top.units import fmt_rate

STALE_AFTER_S = 120.0


def node_problems(snap: FleetSnapshot, node: FleetNode) -> list[tuple[str, str]]:
    """(severity, sentence) for one node."""
    out: list[tuple[str, str]] = []
    if node.up is False or (node.last_seen_age_s or 0) > STALE_AFTER_S:
        age = f"last seen {node.last_seen_age_s:.0f} s ago" \
            if node.last_seen_age_s is not None else "never seen"
        out.append(("critical", f"kata-top on this node does not answer scrapes ({age}): "
                                "its sandboxes are not watched"))
    rows = [r for r in snap.sandboxes if r.node == node.node]
    for r in rows:
        pod = f"{r.pod_namespace}/{r.pod_name}" if r.pod_name else r.sandbox_id[:12]
        if r.missing_redirects:
            out.append(("critical", f"{pod}: redirect {'+'.join(r.missing_redirects)} "
                                    "missing (one-way or cut off)"))
        if r.state == "stale":
            out.append(("critical", f"{pod}: VMM dead, state left behind"))
        if r.rate_limit_drops_ps > 0:
            out.append(("warning", f"{pod}: rate limit drops {r.rate_limit_drops_ps:.1f} "
                                   "pkt/s"))
        other = [c for c in r.codes if c not in ("KT-S001", "KT-S002", "KT-S020")]
        if other and (r.critical or r.warning):
            out.append(("critical" if r.critical else "warning",
                        f"{pod}: findings {', '.join(other)} (kata-top check --sandbox "
                        f"{r.sandbox_id[:12]} on the node)"))
    return out


def problems(snap: FleetSnapshot) -> bool:
    return any(sev in ("critical", "warning") for n in snap.nodes
               for sev, _ in node_problems(snap, n))


def render(snap: FleetSnapshot) -> str:
    lines: list[str] = []
    for err in snap.errors:
        lines.append(f"note: {err}")
    marks = {"critical": "CRIT", "warning": "WARN"}
    bad = 0
    for n in sorted(snap.nodes, key=lambda n: n.node):
        found = sorted(node_problems(snap, n), key=lambda p: p[0] != "critical")
        bad += bool(found)
        for sev, text in found:
            lines.append(f"{marks[sev]} {n.node}: {text}")
    total = sum(n.sandboxes for n in snap.nodes)
    traffic = sum(n.in_bps for n in snap.nodes), sum(n.out_bps for n in snap.nodes)
    lines.append(f"{len(snap.nodes)} nodes, {total} sandboxes, in {fmt_rate(traffic[0])} out "
                 f"{fmt_rate(traffic[1])}; {bad} node(s) with problems "
                 f"({snap.queries} queries to {snap.prometheus}, {snap.duration_ms:.0f} ms)")
    return "\n".join(lines)
