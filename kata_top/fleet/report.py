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
    if snap.sandboxes_of not in ("*", node.node):  # only the node's sums are at hand
        return out + _sums(node)
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
        out += _lost(pod, r.redirect_failed_ps, r.tap_dropped_ps)
        other = [c for c in r.codes if c not in ("KT-S001", "KT-S002", "KT-S020")]
        if other and (r.critical or r.warning):
            out.append(("critical" if r.critical else "warning",
                        f"{pod}: findings {', '.join(other)} (kata-top check --sandbox "
                        f"{r.sandbox_id[:12]} on the node)"))
    return out


def _lost(who: str, failed_ps: float, dropped_ps: float) -> list[tuple[str, str]]:
    """Packets that never reached the VM (or the pod's side): the traffic columns count
    only what the taps delivered, so these are said on their own."""
    out: list[tuple[str, str]] = []
    if failed_ps > 0:
        out.append(("critical", f"{who}: redirects fail {failed_ps:.1f} pkt/s (the tap down "
                                "or gone: nothing reaches the VM)"))
    if dropped_ps > 0:
        out.append(("warning", f"{who}: taps drop {dropped_ps:.1f} pkt/s on the way into the "
                               "VM (the VMM not draining them)"))
    return out


def _sums(node: FleetNode) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if node.one_way:
        out.append(("critical", f"{node.one_way} sandbox(es) with a redirect missing"))
    if node.dead_vmms:
        out.append(("critical", f"{node.dead_vmms} sandbox(es) whose VMM is dead"))
    if node.rate_limit_drops_ps > 0:
        out.append(("warning", f"rate limits drop {node.rate_limit_drops_ps:.1f} pkt/s"))
    out += _lost("its sandboxes", node.redirect_failed_ps, node.tap_dropped_ps)
    if node.critical or node.warning:
        out.append(("critical" if node.critical else "warning",
                    f"{node.critical} critical and {node.warning} warning findings "
                    f"(kata-top fleet check --node {node.node})"))
    return out


def checked_nodes(snap: FleetSnapshot) -> list[FleetNode]:
    """The nodes a check speaks of: the one asked for (--node), else all."""
    if snap.sandboxes_of not in (None, "*"):
        return [n for n in snap.nodes if n.node == snap.sandboxes_of]
    return list(snap.nodes)


def problems(snap: FleetSnapshot) -> bool:
    if snap.sandboxes_of not in (None, "*") and not checked_nodes(snap):
        return True  # the node asked for is not watched at all
    return any(sev in ("critical", "warning") for n in checked_nodes(snap)
               for sev, _ in node_problems(snap, n))


def render(snap: FleetSnapshot) -> str:
    lines: list[str] = []
    for err in snap.errors:
        lines.append(f"note: {err}")
    marks = {"critical": "CRIT", "warning": "WARN"}
    bad = 0
    nodes = checked_nodes(snap)
    if not nodes and snap.sandboxes_of not in (None, "*"):
        lines.append(f"no node {snap.sandboxes_of!r} in Prometheus")
    for n in sorted(nodes, key=lambda n: n.node):
        found = sorted(node_problems(snap, n), key=lambda p: p[0] != "critical")
        bad += bool(found)
        for sev, text in found:
            lines.append(f"{marks[sev]} {n.node}: {text}")
    total = sum(n.sandboxes for n in nodes)
    traffic = sum(n.in_bps for n in nodes), sum(n.out_bps for n in nodes)
    lines.append(f"{len(nodes)} nodes, {total} sandboxes, in {fmt_rate(traffic[0])} out "
                 f"{fmt_rate(traffic[1])}; {bad} node(s) with problems "
                 f"({snap.queries} queries to {snap.prometheus}, {snap.duration_ms:.0f} ms)")
    return "\n".join(lines)
