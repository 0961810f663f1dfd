"""Findings: named incidents with evidence and a fix, computed from a Snapshot alone.

`findings` holds the per-sandbox rules, `report` the text form; host findings come from the
kernel probe in collectors.hostcheck (it spawns a scratch namespace, so callers pace it).
"""

from kata_top.diagnose.findings import CLEAR_AFTER, SEVERITY_ORDER, annotate, sandbox_findings
from kata_top.diagnose.report import render_findings, worst
from kata_top.model import Finding


def host_findings() -> list[Finding]:
    from kata_top.collectors.hostcheck import host_findings as probe

    return probe()


__all__ = ["CLEAR_AFTER", "SEVERITY_ORDER", "annotate", "host_findings", "render_findings",
           "sandbox_findings", "worst"]
