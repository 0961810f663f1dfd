"""Findings from a drop trace: once `kata-top drops` (or the dashboard's trace) has run, the
reasons it saw become findings of the sandboxes they belong to, with the counts as evidence.

A trace is a moment, not a state: its findings are added to snapshots taken within
`MAX_AGE` seconds after it, then dropped.
"""

from __future__ import annotations

from kata_top.drops.model import DropLine, DropReport, Hop
from kata_top.model import Finding, Sandbox, Severity, Snapshot, evolve

MAX_AGE = 600.0

# (reason, hop) → (code, severity, summary); other reasons in the sandbox: KT-S089, info
_RULES: dict[tuple[str, Hop], tuple[str, Severity, str]] = {
    ("FULL_RING", "vmm"): ("KT-S080", "critical",
                           "the VMM is not draining its tap: packets into the VM are dropped"),
    ("DEV_READY", "vmm"): ("KT-S081", "critical",
                           "no VMM has the tap open: packets into the VM are dropped"),
    ("TC_INGRESS", "mirred"): ("KT-S082", "critical",
                               "the tc mirred redirect fails: its target is down"),
    ("QDISC_DROP", "tap"): ("KT-S083", "warning",
                            "the rate limit into the VM is full: packets are dropped"),
    ("QDISC_DROP", "eth0"): ("KT-S083", "warning",
                             "the rate limit out of the VM is full: packets are dropped"),
    ("PKT_TOO_BIG", "node-veth"): ("KT-S084", "warning",
                                   "frames larger than a hop's MTU are dropped"),
    ("PKT_TOO_BIG", "tap"): ("KT-S084", "warning", "frames larger than a hop's MTU are dropped"),
    ("NOT_SPECIFIED", "node-veth"): ("KT-S084", "warning",
                                     "frames larger than the veth peer's MTU are dropped"),
}


def _finding(sb: Sandbox, d: DropLine, report: DropReport) -> Finding:
    code, severity, summary = _RULES.get((d.reason, d.hop)) or (
        "KT-S089", "info", f"the kernel dropped packets ({d.reason})")
    return Finding(code=code, severity=severity,
                   summary=f"{summary} ({d.count} {d.reason} on {d.device or '-'} in "
                           f"{report.traced_seconds:.0f} s)",
                   evidence={"reason": d.reason, "count": d.count, "device": d.device,
                             "function": d.function, "hop": d.hop, "meaning": d.meaning,
                             "traced_at": report.started_at,
                             "traced_seconds": report.traced_seconds},
                   fix=d.fix, sandbox=sb.id)


def drop_findings(sb: Sandbox, report: DropReport) -> tuple[Finding, ...]:
    out = [_finding(sb, d, report) for s in report.for_sandbox(sb.id) for d in s.drops]
    return tuple(out)


def with_drop_findings(snap: Snapshot, report: DropReport | None) -> Snapshot:
    """`snap` with the findings of `report` added to its sandboxes (unchanged when there is
    no report, or it is older than MAX_AGE)."""
    if report is None or not report.sandboxes or \
            snap.taken_at - report.started_at > MAX_AGE:
        return snap
    from kata_top.diagnose.findings import SEVERITY_ORDER

    hit = {s.sandbox_id for s in report.sandboxes}
    out = []
    for sb in snap.sandboxes:
        if sb.id in hit:
            found = (*sb.findings, *drop_findings(sb, report))
            sb = evolve(sb, findings=tuple(sorted(
                found, key=lambda f: (-SEVERITY_ORDER[f.severity], f.code))))
        out.append(sb)
    return evolve(snap, sandboxes=tuple(out))
