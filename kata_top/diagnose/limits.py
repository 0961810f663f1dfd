"""Rate-limit findings: each limit tc holds judged against the sandbox's configuration
(Kata's RxRateLimiterMaxRate / TxRateLimiterMaxRate) with what it held back and dropped, and
limits where Kata's network model never puts one."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from kata_top import derive
from kata_top.model import Finding, Sandbox, Severity
from kata_top.select import label
from kata_top.units import fmt_rate

q = shlex.quote


# VMMs that limit rates themselves (Cloud Hypervisor, Firecracker: IsRateLimiterBuiltin in
# clh.go and fc.go; Dragonball in the runtime-rs shim): no tc limit is expected
BUILTIN_LIMITERS = ("cloud-hypervisor", "firecracker", "dragonball")

def _f(sb: Sandbox, code: str, severity: Severity, summary: str, fix: str,
       **evidence: Any) -> Finding:
    return Finding(code=code, severity=severity, summary=summary, evidence=evidence, fix=fix,
                   sandbox=sb.id)


CONFIG_KEY = {"in": "RxRateLimiterMaxRate", "out": "TxRateLimiterMaxRate"}


def _limit_counts(sb: Sandbox, dev: str, overlimits: int, drops: int) -> str:
    """What a limit did: its root qdisc's overlimits and drops, with their rates."""
    r = sb.rates
    handle = next((x.handle for x in sb.qdiscs if x.dev == dev and x.parent == "root"), "1:")
    over_ps = r.get(f"qdisc.{dev}.{handle}.overlimits_ps") or 0.0
    drops_ps = r.get(f"qdisc.{dev}.{handle}.drops_ps") or 0.0
    return (f"{overlimits} held back ({over_ps:.0f}/s), {drops} dropped ({drops_ps:.0f}/s)"
            if overlimits or drops else "nothing held back or dropped yet")


def rate_limit_findings(sb: Sandbox) -> Iterable[Finding]:
    actual = {r.direction: r for r in sb.rate_limits}
    cfg = sb.configured_rate_limits
    for r in sb.rate_limits:
        counts = _limit_counts(sb, r.dev, r.overlimits, r.drops)
        ev = {"direction": r.direction, "dev": r.dev, "rate_bps": r.rate_bps, "shape": r.shape,
              "overlimits": r.overlimits, "drops": r.drops}
        ns = sb.netns.name or sb.netns.path or "<netns>"
        clear = (f"kata-top ratelimit clear {q(sb.id[:12])} --direction {r.direction} "
                 if r.shape == "kata-htb" else "") + \
            f"(= ip netns exec {q(ns)} tc qdisc del dev {q(r.dev)} root)"
        if cfg.get(r.direction) == 0:
            # Kata's configuration holds no limit in this direction: someone added this.
            key = CONFIG_KEY[r.direction]
            yield _f(sb, "KT-S054", "warning",
                     f"{label(sb)}: rate limit {r.direction} {fmt_rate(r.rate_bps)} on {r.dev} "
                     f"({r.shape}) is not Kata's: the sandbox's {key} is 0 (no limit); "
                     f"{counts}", f"if it is not wanted: {clear}",
                     **ev, configured_bps=0, config_key=key)
            continue
        yield _f(sb, "KT-S050", "info",
                 f"{label(sb)}: rate limit {r.direction} {fmt_rate(r.rate_bps)} on {r.dev} "
                 f"({r.shape}); {counts}", f"{clear} (if it is not wanted)", **ev)
    if sb.hypervisor.kind in BUILTIN_LIMITERS:
        return  # the VMM limits rates itself, not tc (IsRateLimiterBuiltin, clh.go, fc.go)
    for direction, configured in cfg.items():
        have = actual.get(direction)
        if configured and (have is None or have.rate_bps != configured):
            yield _f(sb, "KT-S051", "warning",
                     f"{label(sb)}: Kata configured {direction} {fmt_rate(configured)} "
                     f"({CONFIG_KEY[direction]}) but tc has "
                     f"{fmt_rate(have.rate_bps) if have else 'no limit'}",
                     f"kata-top ratelimit set {q(sb.id[:12])} --{direction} {configured}bit",
                     direction=direction, configured_bps=configured,
                     actual_bps=have.rate_bps if have else None)


def limit_place_findings(sb: Sandbox) -> Iterable[Finding]:
    """A limiter not where Kata puts one (kata-notes.md, Kata's network code): rx on the tap;
    tx on eth0 for tcfilter, on an ifb fed by a mirred redirect from the tap's ingress for
    macvtap and none. A tx HTB on an ifb nothing is redirected to shapes nothing."""
    if sb.network_model not in ("tcfilter", "macvtap", "none") or not sb.tap_name:
        return
    tap, model = sb.tap_name, sb.network_model
    ifbs = {lk.name for lk in sb.links if lk.kind == "ifb"}
    for q_ in sb.qdiscs:
        if q_.parent != "root" or q_.kind != "htb":
            continue
        if derive.kata_htb_rate(q_.dev, sb.qdiscs, sb.classes) is None:
            continue  # not Kata's shape: shown as it is (KT-S050), not judged
        if q_.dev == tap:
            continue
        expected = "eth0" if model == "tcfilter" else "an ifb device fed from the tap"
        wrong = (model == "tcfilter" and q_.dev != "eth0") or \
            (model != "tcfilter" and q_.dev not in ifbs)
        if wrong:
            yield _f(sb, "KT-S053", "warning",
                     f"{label(sb)}: a Kata-shaped rate limit sits on {q_.dev}, where Kata's "
                     f"{model} model never puts one (tx goes on {expected}, rx on {tap})",
                     f"remove it (tc qdisc del dev {q(q_.dev)} root, in the pod netns) and "
                     f"set the limit with kata-top ratelimit set {q(sb.id[:12])}",
                     dev=q_.dev, model=model)
            continue
        if q_.dev in ifbs:
            fed = any(f.dev == tap and a.kind == "mirred" and a.action == "redirect"
                      and a.target == q_.dev for f in sb.filters for a in f.actions)
            if not fed:
                yield _f(sb, "KT-S052", "warning",
                         f"{label(sb)}: the tx limit on {q_.dev} shapes nothing: no redirect "
                         f"from {tap}'s ingress to {q_.dev}",
                         f"tc filter add dev {q(tap)} parent ffff: protocol all u32 match u8 "
                         f"0 0 action mirred egress redirect dev {q(q_.dev)}  (in the pod "
                         "netns, after tc qdisc add dev " + q(tap) + " ingress)",
                         ifb=q_.dev, tap=tap)
