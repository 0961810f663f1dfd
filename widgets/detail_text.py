"""Short texts of a sandbox's detail: what was lost on the way into the VM, and when a tc
action was last used."""

from __future__ import annotations

from kata_top import rates
from kata_top.model import Action, Sandbox
from kata_top.units import fmt_rate


def lost_text(sb: Sandbox) -> str:
    """Beside what reached the VM: what the in redirect tried, and what was lost on the way
    (mirred's failures, the tap's drops), when anything was."""
    v = rates.vm(sb)
    lost = (v.in_failed_pps or 0.0) + (v.in_dropped_pps or 0.0)
    if not lost:
        return ""
    tried = f"tried {fmt_rate(v.in_attempted_bps)}, " if v.in_attempted_bps is not None else ""
    return f" ({tried}lost {lost:.0f} pkt/s)"


def last_used(a: Action, now: float) -> str:
    """The kernel stamps an action's last use at install, so one that never matched would
    read as used then: with no packet counted, it is `never`."""
    if a.stats.packets == 0 and not a.stats.overlimits and not a.stats.drops:
        return "never"
    return f"{max(0.0, now - a.last_used_at):.0f}s ago" if a.last_used_at is not None else "-"
