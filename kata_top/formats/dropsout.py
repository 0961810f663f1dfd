"""`kata-top drops` output: the `kata-top/drops/1` JSON document and the text report."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from kata_top.drops.model import HOP_LABEL, DropLine, DropReport


def to_plain(report: DropReport) -> dict[str, Any]:
    doc = dataclasses.asdict(report)
    doc["notes"] = list(report.notes)
    return {"schema": doc.pop("schema"), **doc}


def render_json(report: DropReport) -> str:
    return json.dumps(to_plain(report), indent=2)


def _line(d: DropLine) -> list[str]:
    where = f"{HOP_LABEL[d.hop]:<12} {d.reason:<18} {d.count:>9}  {d.device or '-'}  " \
            f"{d.function}"
    return [f"  {where}", f"      {d.meaning}", f"      fix: {d.fix}"]


def render_text(report: DropReport) -> str:
    state = " (stopped early)" if report.interrupted else ""
    out = [f"kata-top drops on {report.node}: {report.traced_seconds:.1f} s of "
           f"{report.seconds:.0f} s traced{state}, {report.total} drops"]
    mine = [s for s in report.sandboxes if s.side == "sandbox"]
    node = [s for s in report.sandboxes if s.side == "node"]
    if not report.total:
        out.append("no packet was dropped"
                   + (f" for {report.sandbox_filter}" if report.sandbox_filter else ""))
    for s in mine:
        out.append("")
        out.append(f"{s.pod or '-'}  {s.sandbox_id[:12]}  netns {s.netns_inode}  "
                   f"{s.total} drops")
        for d in s.drops:
            out += _line(d)
    if node:
        out += ["", "node side of the sandboxes' veth pairs:"]
        for s in node:
            out.append(f"{s.pod or '-'}  {s.sandbox_id[:12]}  {s.total} drops")
            for d in s.drops:
                out += _line(d)
    if report.other:
        out += ["", "drops in no sandbox (other namespaces; inode 0: no device):"]
        for o in report.other:
            out.append(f"netns {o.netns_inode}  {o.total} drops")
            out += [f"  {d.reason:<18} {d.count:>9}  {d.device or '-'}  {d.function}"
                    for d in o.drops]
    out += [f"note: {n}" for n in report.notes]
    return "\n".join(out)
