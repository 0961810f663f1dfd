"""Redirect findings: each direction of the tcfilter model judged from what tc holds.

One state per direction (kata_top/derive.py:redirect_state) names what is wrong, and the fix
is the list of commands that repair it from that exact state: the same steps
`kata-top redirect add` plans (kata_top/actions/plan.py), shown as raw `tc`/`ip` commands in
the pod's namespace (evidence `commands`, so a test can run them as printed).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from typing import Any

from kata_top import derive, rates
from kata_top.model import Finding, Redirect, Sandbox, Severity
from kata_top.select import label

q = shlex.quote
Held = Callable[[Sandbox, Sandbox | None, str, bool, Callable[[], Finding]], Iterable[Finding]]


def ns_prefix(sb: Sandbox) -> str:
    """How a command is run in the sandbox's namespace: `ip netns exec NAME` for a named one
    (what operators type), `nsenter --net=PATH` for any other path."""
    if sb.netns.name:
        return f"ip netns exec {q(sb.netns.name)}"
    return f"nsenter --net={q(sb.netns.path or '<netns>')}"


def add_filter_cmd(src: str, dst: str) -> str:
    # no prio: the kernel picks one, as it does for Kata (49152 on an empty ingress)
    return (f"tc filter add dev {q(src)} parent ffff: protocol all u32 match u8 0 0 "
            f"action mirred egress redirect dev {q(dst)}")


def repair_commands(r: Redirect, state: str) -> list[str]:
    """The tc/ip commands that make this direction what Kata leaves, from its state."""
    if state == "no-qdisc":
        return [f"tc qdisc add dev {q(r.from_dev)} ingress", add_filter_cmd(r.from_dev,
                                                                             r.to_dev)]
    if state == "elsewhere":
        cmds = [f"tc filter del dev {q(r.from_dev)} parent ffff: prio {r.elsewhere_prio}"]
        return cmds if r.present else [*cmds, add_filter_cmd(r.from_dev, r.to_dev)]
    if state == "missing":
        return [add_filter_cmd(r.from_dev, r.to_dev)]
    if state == "failing":
        return [f"ip link set dev {q(r.to_dev)} up"]
    return []


def _fix(sb: Sandbox, directions: list[str], cmds: list[str]) -> str:
    d = directions[0] if len(directions) == 1 else "both"
    ns = ns_prefix(sb)
    raw = " && ".join(f"{ns} {c}" for c in cmds)
    return f"kata-top redirect add {q(sb.id[:12])} --direction {d}  (= {raw})"


def _mk(sb: Sandbox, code: str, sev: Severity, summary: str, fix: str,
        **evidence: Any) -> Finding:
    return Finding(code=code, severity=sev, summary=summary, evidence=evidence, fix=fix,
                   sandbox=sb.id)


def redirect_findings(sb: Sandbox, prev: Sandbox | None, held: Held) -> Iterable[Finding]:
    if sb.network_model != "tcfilter" or not sb.redirects:
        return
    st = derive.redirect_states(sb)
    red: dict[str, Redirect] = {r.direction: r for r in sb.redirects}
    gone = "" if sb.hypervisor.alive else " (and the VMM is gone)"
    if set(st.values()) == {"missing"}:
        cmds = [c for r in sb.redirects for c in repair_commands(r, "missing")]
        yield _mk(sb, "KT-S001", "critical",
                  f"{label(sb)}: both tc redirects are missing: the VM is cut off{gone}",
                  _fix(sb, ["in", "out"], cmds), missing=["in", "out"], commands=cmds)
    else:
        for code in ("KT-S002", "KT-S004", "KT-S005"):
            state = {"KT-S002": "missing", "KT-S004": "elsewhere", "KT-S005": "no-qdisc"}[code]
            dirs = [d for d in ("in", "out") if st.get(d) == state]
            if not dirs:
                continue
            cmds = [c for d in dirs for c in repair_commands(red[d], state)]
            yield _mk(sb, code, "critical", _summary(sb, state, [red[d] for d in dirs]) + gone,
                      _fix(sb, dirs, cmds), directions=dirs, commands=cmds,
                      present=[x.direction for x in sb.redirects if x.present],
                      **_extra(state, [red[d] for d in dirs]))
    # Without a VMM every packet for the tap is lost: KT-S020 says so once; here only a
    # target that is down, which stays a fault of its own.
    links = {lk.name: lk for lk in sb.links}
    failing = [r for r in sb.redirects if st.get(r.direction) == "failing" and (
        sb.hypervisor.alive or (r.to_dev in links and not links[r.to_dev].up))]
    yield from held(sb, prev, "KT-S006", bool(failing), lambda: _failing(sb, failing))
    dropped = (rates.vm(sb).in_dropped_pps or 0.0) if sb.hypervisor.alive else 0.0
    yield from held(sb, prev, "KT-S007", dropped > 0, lambda: _mk(
        sb, "KT-S007", "warning",
        f"{label(sb)}: {sb.tap_name} drops {dropped:.0f} pkt/s on the way into the VM: the "
        "VMM does not drain it",
        f"check the VMM{f' (pid {sb.hypervisor.pid})' if sb.hypervisor.pid else ''}: a "
        "stalled VM or a vhost thread that does not run; `ip -s link show dev "
        + q(sb.tap_name or "tap0_kata") + "` (TX dropped)",
        tap=sb.tap_name, dropped_pps=dropped))


def _summary(sb: Sandbox, state: str, rs: list[Redirect]) -> str:
    who = label(sb)
    if state == "missing":
        r = rs[0]
        what = "receive" if r.direction == "out" else "send"
        other = "send" if what == "receive" else "receive"
        return (f"{who}: redirect {r.direction} ({r.from_dev} → {r.to_dev}) is missing: "
                f"traffic flows one way only, the VM can {what} but not {other}")
    if state == "elsewhere":
        parts = [f"{r.direction} ({r.from_dev}) redirects to {r.elsewhere}, not {r.to_dev}"
                 for r in rs]
        return f"{who}: redirect {'; '.join(parts)}: that traffic never reaches its peer"
    devs = " and ".join(r.from_dev for r in rs)
    return (f"{who}: {devs} {'has' if len(rs) == 1 else 'have'} no ingress qdisc (ffff:): "
            f"no redirect {' and '.join(r.direction for r in rs)} can exist")


def _extra(state: str, rs: list[Redirect]) -> dict[str, Any]:
    if state == "elsewhere":
        return {"redirects_to": {r.direction: r.elsewhere for r in rs},
                "expected": {r.direction: r.to_dev for r in rs}}
    if state == "no-qdisc":
        return {"devices": [r.from_dev for r in rs]}
    return {}


def _failing(sb: Sandbox, rs: list[Redirect]) -> Finding:
    links = {lk.name: lk for lk in sb.links}
    parts, cmds = [], []
    for r in rs:
        target = links.get(r.to_dev)
        failed = rates.redirect(sb, r.direction).failed_pps or 0.0
        why = "is down" if target is not None and not target.up else \
            f"refuses {failed:.0f} pkt/s (mirred overlimits)"
        parts.append(f"{r.direction} ({r.from_dev} → {r.to_dev}): {r.to_dev} {why}")
        if target is not None and not target.up:
            cmds += repair_commands(r, "failing")
    if cmds:
        fix = f"{ns_prefix(sb)} " + f" && {ns_prefix(sb)} ".join(cmds)
    elif not sb.hypervisor.alive:
        fix = "no VMM holds the tap: re-create the pod (crictl stopp/rmp)"
    else:
        fix = ("the target takes no packets: tc -s filter show dev " + q(rs[0].from_dev)
               + " ingress; ip -s link show dev " + q(rs[0].to_dev))
    gone = "" if sb.hypervisor.alive else " (the VMM is gone)"
    return _mk(sb, "KT-S006", "critical",
               f"{label(sb)}: redirect {'; '.join(parts)}: its packets count as sent but are "
               f"not delivered{gone}", fix, directions=[r.direction for r in rs], commands=cmds,
               failed_pps={r.direction: rates.redirect(sb, r.direction).failed_pps for r in rs})
