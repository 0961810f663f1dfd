"""The readable table of `kata-top snapshot`."""

from __future__ import annotations

from kata_top import rates, summary
from kata_top.model import Snapshot
from kata_top.units import fmt_rate

COLUMNS = (("POD", 30), ("SANDBOX", 12), ("RT", 3), ("HV", 6), ("STATE", 8), ("MODEL", 9),
           ("IN", 9), ("OUT", 9), ("REDIRECT", 11), ("RATELIMIT", 22), ("VM", 9), ("VFS", 7),
           ("!", 3))


def render(snap: Snapshot) -> str:
    lines = [f"node {snap.host.node}  kernel {snap.host.kernel}  run-root {snap.host.run_root}  "
             f"{len(snap.sandboxes)} sandboxes  collected in {snap.duration_ms:.0f} ms"]
    for err in snap.errors:
        lines.append(f"! {err.where}: {err.message}")
    if not snap.sandboxes:
        lines.append(f"no Kata sandboxes under {snap.host.run_root} (vc/sbs, kata/) and no "
                     "Kata VMM running. To try kata-top without Kata: kata-top lab up, then "
                     "kata-top --run-root /run/kata-top-lab")
        return "\n".join(lines)
    lines.append(" ".join(f"{name:<{w}}" for name, w in COLUMNS).rstrip())
    for sb in sorted(snap.sandboxes, key=lambda s: summary.pod_text(s)):
        r = sb.rates
        hv = sb.hypervisor.kind[:6]
        row = (summary.pod_text(sb), sb.id[:12], sb.runtime, hv, sb.state, sb.network_model,
               fmt_rate(rates.vm(sb).in_bps) if r else "-",
               fmt_rate(rates.vm(sb).out_bps) if r else "-",
               summary.redirect_health(sb), summary.rate_limit_text(sb),
               summary.resources_text(sb), summary.virtiofsd_text(sb),
               str(summary.problem_count(sb) or ""))
        lines.append(" ".join(f"{str(v)[:w]:<{w}}" for v, (_n, w) in zip(row, COLUMNS,
                                                                          strict=True)).rstrip())
        for err in sb.errors:
            lines.append(f"    ! {err.where}: {err.message}")
    return "\n".join(lines)
