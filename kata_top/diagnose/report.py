"""Findings as text for a terminal, and the worst severity among them."""

from __future__ import annotations

from collections.abc import Sequence

from kata_top.diagnose.findings import SEVERITY_ORDER
from kata_top.model import Finding, Severity, Snapshot


def worst(findings: Sequence[Finding]) -> Severity | None:
    if not findings:
        return None
    return max(findings, key=lambda f: SEVERITY_ORDER[f.severity]).severity


def render_findings(snap: Snapshot, findings: Sequence[Finding]) -> str:
    if not findings:
        return f"no findings: {len(snap.sandboxes)} sandboxes look healthy"
    by_id = {sb.id: sb for sb in snap.sandboxes}
    lines: list[str] = []
    marks = {"critical": "CRIT", "warning": "WARN", "info": "info"}
    for f in sorted(findings, key=lambda f: (-SEVERITY_ORDER[f.severity], f.code)):
        where = "" if f.sandbox in by_id else "host: "
        lines.append(f"{marks[f.severity]:<4} {f.code}  {where}{f.summary}")
        lines.append(f"           fix: {f.fix}")
    counts = {s: sum(1 for f in findings if f.severity == s) for s in SEVERITY_ORDER}
    lines.append(f"{counts['critical']} critical, {counts['warning']} warning, "
                 f"{counts['info']} info across {len(snap.sandboxes)} sandboxes")
    return "\n".join(lines)
