"""Write actions: add/remove Kata's tc redirects, set/clear Kata's HTB rate limits.

The one write path of kata-top, for the CLI and the dashboard alike. Every action:
1. reads the sandbox's namespace fresh (the read path's netlink decoder),
2. computes a Plan: steps with the exact equivalent `tc`/`ip` command and an undo each,
   or a no-op ("already so"), or a refusal when something not of Kata's shape is in the way,
3. applies it all-or-nothing: if a step fails, the finished steps are undone in reverse and
   the error carries the kernel's own words (extended ack),
4. appends time, user, sandbox, plan, result and before/after counters to the audit log.
"""


from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kata_top import derive
from kata_top.actions.model import (
    ActionError,
    ActionRequest,
    Plan,
    RateLimitRequest,
    RedirectRequest,
    Step,
)
from kata_top.actions.steps import (
    DEFAULT_ROOT_QDISCS,
    IFB,
    KATA_PRIO,
    add_ingress,
    add_redirect,
    del_htb,
    del_ingress,
    del_redirect,
    htb_change_steps,
    htb_steps,
    ifb_steps,
    ifb_teardown,
    ifindex,
    is_kata_filter,
    kata_redirects,
)
from kata_top.collectors.rtnetlink import NetnsDump, RtnlSocket, dump_netns
from kata_top.engine import read_one
from kata_top.model import Direction, Filter, Sandbox
from kata_top.select import label
from kata_top.units import fmt_rate


# ---- fresh state ------------------------------------------------------------------------
def find_sandbox(run_root: str, query: str) -> Sandbox:
    try:
        return read_one(run_root, query)
    except ValueError as exc:
        raise ActionError(str(exc)) from exc


def fresh_dump(sb: Sandbox) -> tuple[str, NetnsDump]:
    path = sb.netns.path
    if not path:
        raise ActionError(f"{label(sb)} has no known network namespace; nothing to change")
    try:
        sock = RtnlSocket.open(path)
    except OSError as exc:  # gone, or no longer a namespace (UnsafeFile): being torn down
        raise ActionError(f"{label(sb)}: its network namespace {path} is gone "
                          f"({exc.strerror or exc}); refusing") from exc
    try:
        return path, dump_netns(sock)
    except OSError as exc:
        raise ActionError(f"{label(sb)}: reading its network namespace {path} failed "
                          f"({exc.strerror or exc}); refusing") from exc
    finally:
        sock.close()


def _ns_label(sb: Sandbox) -> str:
    return sb.netns.name or sb.netns.path or "?"


def counters(dump: NetnsDump, tap: str | None, virt: str) -> dict[str, Any]:
    reds = derive.redirects("tcfilter", dump.filters, tap, virt) if tap else ()
    limits = derive.rate_limits("tcfilter", dump.links, dump.qdiscs, dump.classes, tap, virt)
    return {"redirects": {r.direction: {"present": r.present, "packets": r.packets,
                                        "bytes": r.bytes} for r in reds},
            "rate_limits": {r.direction: {"dev": r.dev, "rate_bps": r.rate_bps,
                                          "shape": r.shape} for r in limits}}



# ---- planners ---------------------------------------------------------------------------
def _pairs(tap: str, virt: str, direction: str) -> list[tuple[str, str, str]]:
    both = [("in", virt, tap), ("out", tap, virt)]
    return [p for p in both if direction in ("both", p[0])]


def plan_redirect(sb: Sandbox, op: str, direction: str) -> Plan:
    if direction not in ("in", "out", "both"):
        raise ActionError(f"--direction must be in, out or both (got {direction!r})")
    if op not in ("add", "remove"):
        raise ActionError(f"redirect takes add or remove (got {op!r})")
    if sb.network_model != "tcfilter":
        raise ActionError(f"{label(sb)} uses the {sb.network_model} model: it has no tc "
                          "redirects to change")
    path, dump = fresh_dump(sb)
    tap = derive.find_tap(dump.links, sb.tap_name) or "tap0_kata"
    virt = "eth0"
    names = {lk.name for lk in dump.links}
    for dev in (tap, virt):
        if dev not in names:
            raise ActionError(f"{label(sb)}: {dev} does not exist in its namespace")
    plan = Plan(sandbox=sb, netns_path=path, netns_label=_ns_label(sb),
                operation=f"redirect {op} {direction}",
                title=f"{op} redirect {direction} on {label(sb)}",
                before=counters(dump, tap, virt),
                request=RedirectRequest(sb.id, op, direction))  # type: ignore[arg-type]
    ingress_devs = {q.dev for q in dump.qdiscs if q.kind == "ingress"}
    done: list[str] = []
    for d, src, dst in _pairs(tap, virt, direction):
        src_idx, dst_idx = ifindex(dump, src), ifindex(dump, dst)
        existing = kata_redirects(dump.filters, src, dst)
        if op == "add":
            wrong = _redirects_elsewhere(sb, dump, src, dst, existing)
            plan.steps += [_del_wrong(dump, f) for f in wrong]
            if existing:
                if not wrong:
                    done.append(f"{d} ({src} → {dst}) is already there")
                continue
            if src not in ingress_devs:
                plan.steps.append(add_ingress(src_idx, src))
            prios = [f.prio for f in dump.filters if f.dev == src and f.parent == "ffff:"
                     and f not in wrong]
            prio = KATA_PRIO if not prios else min(prios) - 1
            plan.steps.append(add_redirect(src, src_idx, dst, dst_idx, prio))
        else:
            if not existing:
                done.append(f"{d} ({src} → {dst}) is already absent")
                continue
            for f in existing:
                if not is_kata_filter(f):
                    raise ActionError(f"{label(sb)}: the filter on {src} (prio {f.prio}, "
                                      f"{f.kind}) redirects to {dst} but is not of Kata's "
                                      "shape (u32 match-all, one mirred action); refusing to "
                                      "touch it")
                plan.steps.append(del_redirect(src, src_idx, dst, dst_idx, f.prio))
            others = [f for f in dump.filters if f.dev == src and f.parent == "ffff:"
                      and f not in existing]
            if not others and src in ingress_devs:
                plan.steps.append(del_ingress(src_idx, src))
    if not plan.steps:
        plan.noop = f"nothing to do on {label(sb)}: " + "; ".join(done)
    return plan


def _redirects_elsewhere(sb: Sandbox, dump: NetnsDump, src: str, dst: str,
                         existing: list[Filter]) -> list[Filter]:
    """The filters on src's ingress that redirect to another device ahead of Kata's (all of
    them when Kata's is missing): what KT-S004 names, removed before the right one is added.
    One not of Kata's shape is refused, as `redirect remove` refuses it."""
    first = min((f.prio for f in existing), default=None)
    out = []
    for f in dump.filters:
        if f.dev != src or f.parent != "ffff:" or f in existing:
            continue
        if not any(a.kind == "mirred" and a.action == "redirect" and a.target != dst
                   for a in f.actions):
            continue
        if first is not None and f.prio > first:
            continue  # behind Kata's redirect: it never sees a packet
        if not is_kata_filter(f):
            raise ActionError(f"{label(sb)}: the filter on {src} (prio {f.prio}, {f.kind}) "
                              f"redirects away from {dst} but is not of Kata's shape (u32 "
                              "match-all, one mirred action); refusing to touch it")
        out.append(f)
    return out


def _del_wrong(dump: NetnsDump, f: Filter) -> Step:
    a = f.actions[0]
    idx = a.target_ifindex if a.target_ifindex is not None else ifindex(dump, a.target or "")
    return del_redirect(f.dev, ifindex(dump, f.dev), a.target or f"if{idx}", idx, f.prio)


def _rate_dev(sb: Sandbox, direction: Direction, tap: str) -> str:
    if direction == "in":
        return tap
    return "eth0" if sb.network_model == "tcfilter" else IFB


def plan_ratelimit(sb: Sandbox, rates: Mapping[Direction, int | None]) -> Plan:
    """rates: direction -> bits/s to set, or None to clear."""
    path, dump = fresh_dump(sb)
    tap = derive.find_tap(dump.links, sb.tap_name) or "tap0_kata"
    what = ", ".join(f"{d} {fmt_rate(r) if r else 'clear'}" for d, r in rates.items())
    plan = Plan(sandbox=sb, netns_path=path, netns_label=_ns_label(sb),
                operation=f"ratelimit {what}", title=f"rate limit {what} on {label(sb)}",
                before=counters(dump, tap, "eth0"), request=RateLimitRequest(sb.id, dict(rates)))
    names = {lk.name: lk for lk in dump.links}
    done: list[str] = []
    for direction, rate in rates.items():
        dev = _rate_dev(sb, direction, tap)
        if dev == IFB and dev not in names and rate is None:
            done.append(f"{direction} has no limit")
            continue
        root = [q for q in dump.qdiscs if q.dev == dev and q.parent == "root"]
        current = derive.kata_htb_rate(dev, dump.qdiscs, dump.classes) if dev in names else None
        foreign = [q for q in root if q.kind not in DEFAULT_ROOT_QDISCS and current is None]
        if foreign:
            raise ActionError(f"{label(sb)}: {dev} has a {foreign[0].kind} root qdisc that is "
                              "not Kata's shape (htb 1: default 2 with classes 1:1 and 1:2); "
                              "refusing to replace it")
        if rate is None:
            if current is None:
                done.append(f"{direction} has no limit")
                continue
            plan.steps.append(del_htb(dev, ifindex(dump, dev), current))
            if dev == IFB:
                plan.steps += ifb_teardown(dump, tap)
            continue
        if current == rate:
            done.append(f"{direction} is already {fmt_rate(rate)}")
            continue
        if dev == IFB and dev not in names:
            made, ifb_idx = ifb_steps(dump, tap)
            plan.steps += made + htb_steps(dev, ifb_idx, rate)
            continue
        idx = ifindex(dump, dev)
        plan.steps += htb_change_steps(dev, idx, current, rate) if current else \
            htb_steps(dev, idx, rate)
    if not plan.steps:
        plan.noop = f"nothing to do on {label(sb)}: " + "; ".join(done)
    return plan



def replan(plan: Plan) -> Plan:
    """The plan's request planned again from fresh state (under the sandbox's lock)."""
    request = plan.request
    if isinstance(request, RedirectRequest):
        fresh = plan_redirect(plan.sandbox, request.op, request.direction)
    elif isinstance(request, RateLimitRequest):
        fresh = plan_ratelimit(plan.sandbox, request.rates)
    else:
        return plan
    fresh.run_root = plan.run_root
    return fresh


def plan_request(run_root: str, request: ActionRequest) -> Plan:
    """Plan a typed request (the dashboard's dialogs make them) against fresh state."""
    sb = find_sandbox(run_root, request.sandbox_id)
    if isinstance(request, RedirectRequest):
        plan = plan_redirect(sb, request.op, request.direction)
    else:
        assert isinstance(request, RateLimitRequest)
        plan = plan_ratelimit(sb, request.rates)
    plan.run_root = run_root
    return plan
