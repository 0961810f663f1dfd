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

import getpass
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from collectors import netns
from collectors.netlink import RtnlSocket
from collectors.rtnl import NetnsDump, dump_netns
from kata_top import derive
from kata_top.engine import Engine, EngineOptions
from kata_top.model import Filter, Sandbox
from kata_top.select import label, resolve
from kata_top.settings import audit_log_path
from kata_top.units import fmt_rate, tc_rate

INGRESS = 0xFFFF0000
ETH_P_ALL = 0x0003
KATA_PRIO = 49152  # what the kernel picks for the first filter, as Kata leaves it
DEFAULT_ROOT_QDISCS = {"noqueue", "mq", "pfifo_fast", "fq_codel", "pfifo", "fq"}
IFB = "ifb0"


class ActionError(Exception):
    """Refused or failed; the message says why (and, on failure, that it was rolled back)."""


@dataclass
class Step:
    command: str  # the equivalent tc/ip command (without the netns prefix)
    do: Callable[[Any], None]
    undo: Callable[[Any], None] | None = None


@dataclass
class Plan:
    sandbox: Sandbox
    netns_path: str
    netns_label: str
    operation: str
    title: str
    steps: list[Step] = field(default_factory=list)
    noop: str | None = None
    before: dict[str, Any] = field(default_factory=dict)

    def commands(self) -> list[str]:
        return [f"ip netns exec {self.netns_label} {s.command}" for s in self.steps]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    changed: bool


# ---- fresh state ------------------------------------------------------------------------
def find_sandbox(run_root: str, query: str) -> Sandbox:
    engine = Engine(EngineOptions(run_root=run_root, with_vmm=False))
    try:
        snap = engine.collect()
    finally:
        engine.close()
    try:
        return resolve(snap.sandboxes, query)
    except ValueError as exc:
        raise ActionError(str(exc)) from exc


def _fresh(sb: Sandbox) -> tuple[str, NetnsDump]:
    path = sb.netns.path
    if not path:
        raise ActionError(f"{label(sb)} has no known network namespace; nothing to change")
    try:
        sock = RtnlSocket.open(path)
    except FileNotFoundError as exc:
        raise ActionError(f"{label(sb)}: its network namespace {path} is gone; refusing") \
            from exc
    try:
        return path, dump_netns(sock)
    finally:
        sock.close()


def _ns_label(sb: Sandbox) -> str:
    return sb.netns.name or sb.netns.path or "?"


def _counters(dump: NetnsDump, tap: str | None, virt: str) -> dict[str, Any]:
    reds = derive.redirects("tcfilter", dump.filters, tap, virt) if tap else ()
    limits = derive.rate_limits("tcfilter", dump.links, dump.qdiscs, dump.classes, tap, virt)
    return {"redirects": {r.direction: {"present": r.present, "packets": r.packets,
                                        "bytes": r.bytes} for r in reds},
            "rate_limits": {r.direction: {"dev": r.dev, "rate_bps": r.rate_bps,
                                          "shape": r.shape} for r in limits}}


def _ifindex(dump: NetnsDump, name: str) -> int:
    for lk in dump.links:
        if lk.name == name:
            return lk.ifindex
    raise ActionError(f"device {name} not found in the sandbox's namespace")


def _kata_redirects(filters: tuple[Filter, ...], src: str, dst: str) -> list[Filter]:
    return [f for f in filters if f.dev == src and f.parent == "ffff:" and any(
        a.kind == "mirred" and a.action == "redirect" and a.direction == "egress"
        and a.target == dst for a in f.actions)]


def _is_kata_filter(f: Filter) -> bool:
    return f.kind == "u32" and f.match_all and f.protocol == "all" and len(f.actions) == 1 \
        and f.actions[0].kind == "mirred" and f.actions[0].action == "redirect"


# ---- step builders (pyroute2 is imported only on the write path) ------------------------
def _add_ingress(ifindex: int, dev: str) -> Step:
    return Step(f"tc qdisc add dev {dev} ingress",
                lambda ipr: ipr.tc("add", "ingress", index=ifindex),
                lambda ipr: ipr.tc("del", "ingress", index=ifindex))


def _del_ingress(ifindex: int, dev: str) -> Step:
    return Step(f"tc qdisc del dev {dev} ingress",
                lambda ipr: ipr.tc("del", "ingress", index=ifindex),
                lambda ipr: ipr.tc("add", "ingress", index=ifindex))


def _filter_ops(src_idx: int, dst_idx: int, prio: int) -> tuple[Callable[[Any], None],
                                                                  Callable[[Any], None]]:
    def add(ipr: Any) -> None:
        ipr.tc("add-filter", "u32", index=src_idx, parent=INGRESS, protocol=ETH_P_ALL,
               prio=prio, target=0, keys=["0x0/0x0+0"],
               action={"kind": "mirred", "direction": "egress", "action": "redirect",
                       "ifindex": dst_idx})

    def delete(ipr: Any) -> None:
        ipr.tc("del-filter", "u32", index=src_idx, parent=INGRESS, protocol=ETH_P_ALL,
               prio=prio, target=0)

    return add, delete


def _add_redirect(src: str, src_idx: int, dst: str, dst_idx: int, prio: int) -> Step:
    add, delete = _filter_ops(src_idx, dst_idx, prio)
    return Step(f"tc filter add dev {src} parent ffff: protocol all prio {prio} u32 match u8 0 0 "
                f"action mirred egress redirect dev {dst}", add, delete)


def _del_redirect(src: str, src_idx: int, dst: str, dst_idx: int, prio: int) -> Step:
    add, delete = _filter_ops(src_idx, dst_idx, prio)
    return Step(f"tc filter del dev {src} parent ffff: protocol all prio {prio} u32", delete,
                add)


def _htb_steps(dev: str, idx: int, rate: int) -> list[Step]:
    r = tc_rate(rate)

    def cls(handle: int, parent: int) -> Callable[[Any], None]:
        return lambda ipr: ipr.tc("add-class", "htb", index=idx, handle=handle, parent=parent,
                                  rate=f"{rate}bit", ceil=f"{rate}bit")

    return [
        Step(f"tc qdisc add dev {dev} root handle 1: htb default 2",
             lambda ipr: ipr.tc("add", "htb", index=idx, handle=0x10000, default=2),
             lambda ipr: ipr.tc("del", index=idx, handle=0x10000, parent=0xFFFFFFFF)),
        Step(f"tc class add dev {dev} parent 1: classid 1:1 htb rate {r} ceil {r}",
             cls(0x10001, 0x10000)),
        Step(f"tc class add dev {dev} parent 1:1 classid 1:2 htb rate {r} ceil {r}",
             cls(0x10002, 0x10001)),
    ]


def _htb_change_steps(dev: str, idx: int, old: int, new: int) -> list[Step]:
    def change(rate: int, handle: int, parent: int) -> Callable[[Any], None]:
        return lambda ipr: ipr.tc("change-class", "htb", index=idx, handle=handle,
                                  parent=parent, rate=f"{rate}bit", ceil=f"{rate}bit")

    r = tc_rate(new)
    return [Step(f"tc class change dev {dev} parent {p} classid {c} htb rate {r} ceil {r}",
                 change(new, h, ph), change(old, h, ph))
            for c, p, h, ph in (("1:1", "1:", 0x10001, 0x10000),
                                ("1:2", "1:1", 0x10002, 0x10001))]


def _del_htb(dev: str, idx: int, rate: int) -> Step:
    def restore(ipr: Any) -> None:
        for s in _htb_steps(dev, idx, rate):
            s.do(ipr)

    return Step(f"tc qdisc del dev {dev} root handle 1: htb",
                lambda ipr: ipr.tc("del", index=idx, handle=0x10000, parent=0xFFFFFFFF), restore)


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
    path, dump = _fresh(sb)
    tap = derive.find_tap(dump.links, sb.tap_name) or "tap0_kata"
    virt = "eth0"
    names = {lk.name for lk in dump.links}
    for dev in (tap, virt):
        if dev not in names:
            raise ActionError(f"{label(sb)}: {dev} does not exist in its namespace")
    plan = Plan(sandbox=sb, netns_path=path, netns_label=_ns_label(sb),
                operation=f"redirect {op} {direction}",
                title=f"{op} redirect {direction} on {label(sb)}",
                before=_counters(dump, tap, virt))
    ingress_devs = {q.dev for q in dump.qdiscs if q.kind == "ingress"}
    done: list[str] = []
    for d, src, dst in _pairs(tap, virt, direction):
        src_idx, dst_idx = _ifindex(dump, src), _ifindex(dump, dst)
        existing = _kata_redirects(dump.filters, src, dst)
        if op == "add":
            if existing:
                done.append(f"{d} ({src} → {dst}) is already there")
                continue
            if src not in ingress_devs:
                plan.steps.append(_add_ingress(src_idx, src))
            prios = [f.prio for f in dump.filters if f.dev == src and f.parent == "ffff:"]
            prio = KATA_PRIO if not prios else min(prios) - 1
            plan.steps.append(_add_redirect(src, src_idx, dst, dst_idx, prio))
        else:
            if not existing:
                done.append(f"{d} ({src} → {dst}) is already absent")
                continue
            for f in existing:
                if not _is_kata_filter(f):
                    raise ActionError(f"{label(sb)}: the filter on {src} (prio {f.prio}, "
                                      f"{f.kind}) redirects to {dst} but is not of Kata's "
                                      "shape (u32 match-all, one mirred action); refusing to "
                                      "touch it")
                plan.steps.append(_del_redirect(src, src_idx, dst, dst_idx, f.prio))
            others = [f for f in dump.filters if f.dev == src and f.parent == "ffff:"
                      and f not in existing]
            if not others and src in ingress_devs:
                plan.steps.append(_del_ingress(src_idx, src))
    if not plan.steps:
        plan.noop = f"nothing to do on {label(sb)}: " + "; ".join(done)
    return plan


def _rate_dev(sb: Sandbox, direction: str, tap: str) -> str:
    if direction == "in":
        return tap
    return "eth0" if sb.network_model == "tcfilter" else IFB


def plan_ratelimit(sb: Sandbox, rates: dict[str, int | None]) -> Plan:
    """rates: direction -> bits/s to set, or None to clear."""
    path, dump = _fresh(sb)
    tap = derive.find_tap(dump.links, sb.tap_name) or "tap0_kata"
    what = ", ".join(f"{d} {fmt_rate(r) if r else 'clear'}" for d, r in rates.items())
    plan = Plan(sandbox=sb, netns_path=path, netns_label=_ns_label(sb),
                operation=f"ratelimit {what}", title=f"rate limit {what} on {label(sb)}",
                before=_counters(dump, tap, "eth0"))
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
            plan.steps.append(_del_htb(dev, _ifindex(dump, dev), current))
            if dev == IFB:
                plan.steps += _ifb_teardown(dump, tap)
            continue
        if current == rate:
            done.append(f"{direction} is already {fmt_rate(rate)}")
            continue
        if dev == IFB and dev not in names:
            # The ifb does not exist yet: its htb steps look its index up at apply time.
            plan.steps += _ifb_steps(dump, tap) + _late_htb_steps(dev, rate)
            continue
        idx = _ifindex(dump, dev)
        plan.steps += _htb_change_steps(dev, idx, current, rate) if current else \
            _htb_steps(dev, idx, rate)
    if not plan.steps:
        plan.noop = f"nothing to do on {label(sb)}: " + "; ".join(done)
    return plan


def _ifb_steps(dump: NetnsDump, tap: str) -> list[Step]:
    """macvtap/none: the tap's ingress is redirected to an ifb in the sandbox's namespace."""
    tap_idx = _ifindex(dump, tap)

    def add_ifb(ipr: Any) -> None:
        ipr.link("add", ifname=IFB, kind="ifb")
        ipr.link("set", index=ipr.link_lookup(ifname=IFB)[0], state="up")

    def del_ifb(ipr: Any) -> None:
        ipr.link("del", index=ipr.link_lookup(ifname=IFB)[0])

    def add_red(ipr: Any) -> None:
        _filter_ops(tap_idx, ipr.link_lookup(ifname=IFB)[0], KATA_PRIO)[0](ipr)

    def del_red(ipr: Any) -> None:
        _filter_ops(tap_idx, 0, KATA_PRIO)[1](ipr)

    steps = [Step(f"ip link add {IFB} type ifb && ip link set {IFB} up", add_ifb, del_ifb)]
    if not any(q.dev == tap and q.kind == "ingress" for q in dump.qdiscs):
        steps.append(_add_ingress(tap_idx, tap))
    steps.append(Step(f"tc filter add dev {tap} parent ffff: protocol all prio {KATA_PRIO} u32 "
                      f"match u8 0 0 action mirred egress redirect dev {IFB}", add_red, del_red))
    return steps


def _ifb_teardown(dump: NetnsDump, tap: str) -> list[Step]:
    """Undo _ifb_steps: the tap → ifb redirect, the tap's ingress if bare, the ifb itself."""
    tap_idx, ifb_idx = _ifindex(dump, tap), _ifindex(dump, IFB)
    steps: list[Step] = []
    to_ifb = _kata_redirects(dump.filters, tap, IFB)
    for f in to_ifb:
        steps.append(_del_redirect(tap, tap_idx, IFB, ifb_idx, f.prio))
    others = [f for f in dump.filters if f.dev == tap and f.parent == "ffff:" and f not in to_ifb]
    if not others and any(q.dev == tap and q.kind == "ingress" for q in dump.qdiscs):
        steps.append(_del_ingress(tap_idx, tap))

    def add_ifb(ipr: Any) -> None:
        ipr.link("add", ifname=IFB, kind="ifb")
        ipr.link("set", index=ipr.link_lookup(ifname=IFB)[0], state="up")

    steps.append(Step(f"ip link del {IFB}", lambda ipr: ipr.link("del", index=ifb_idx),
                      add_ifb))
    return steps


def _late_htb_steps(dev: str, rate: int) -> list[Step]:
    def late(i: int) -> Step:
        def do(ipr: Any) -> None:
            _htb_steps(dev, ipr.link_lookup(ifname=dev)[0], rate)[i].do(ipr)

        return Step(_htb_steps(dev, 0, rate)[i].command, do, None)

    return [late(0), late(1), late(2)]


# ---- apply --------------------------------------------------------------------------------
def _kernel_words(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int):
        return f"{args[1]} (errno {args[0]})"
    return str(exc) or type(exc).__name__


def execute(plan: Plan, fail_at: int | None = None, audit: bool = True) -> Outcome:
    """Apply every step or none. fail_at injects a failure before that step (tests)."""
    if plan.noop:
        return Outcome(True, plan.noop, False)
    from pyroute2 import IPRoute

    try:
        with netns.entered(plan.netns_path):
            ipr = IPRoute(ext_ack=True)  # its socket belongs to the sandbox's namespace
    except FileNotFoundError:
        return _finish(plan, Outcome(False, f"{label(plan.sandbox)}: its namespace vanished "
                                            "before the change; nothing was done", False),
                       audit)
    done: list[Step] = []
    try:
        for i, step in enumerate(plan.steps):
            if fail_at is not None and i == fail_at:
                raise ActionError("injected failure")
            step.do(ipr)
            done.append(step)
    except Exception as exc:  # every failure is rolled back and reported
        undo_errors = []
        for step in reversed(done):
            if step.undo is None:
                continue
            try:
                step.undo(ipr)
            except Exception as uexc:
                undo_errors.append(f"{step.command}: {_kernel_words(uexc)}")
        ipr.close()
        failed = plan.steps[len(done)].command if len(done) < len(plan.steps) else "?"
        msg = (f"{plan.title} failed at `{failed}`: {_kernel_words(exc)}; "
               + ("the earlier steps were undone" if not undo_errors else
                  f"undo failed too: {'; '.join(undo_errors)}"))
        return _finish(plan, Outcome(False, msg, False), audit)
    ipr.close()
    return _finish(plan, Outcome(True, f"done: {plan.title} ({len(plan.steps)} steps)", True),
                   audit)


def _finish(plan: Plan, outcome: Outcome, audit: bool) -> Outcome:
    if audit:
        write_audit(plan, outcome)
    return outcome


def write_audit(plan: Plan, outcome: Outcome) -> None:
    after: dict[str, Any] = {}
    try:
        _path, dump = _fresh(plan.sandbox)
        after = _counters(dump, derive.find_tap(dump.links, plan.sandbox.tap_name), "eth0")
    except ActionError:
        after = {"error": "namespace gone"}
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "user": os.environ.get("SUDO_USER")
        or getpass.getuser(), "sandbox": plan.sandbox.id, "pod": label(plan.sandbox),
        "operation": plan.operation, "plan": plan.commands(), "ok": outcome.ok,
        "changed": outcome.changed, "result": outcome.message, "before": plan.before,
        "after": after,
    }
    path = audit_log_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
    except OSError:
        pass  # the change is done; the caller still reports it


def plan_from_ui(source: Any, sandbox_id: str, request: tuple[str, str, str]) -> Plan:
    """The dashboard's dialogs produce (kind, op, arg); plan it against fresh state."""
    run_root = source._engine.opts.run_root
    sb = find_sandbox(run_root, sandbox_id)
    kind, op, arg = request
    if kind == "redirect":
        return plan_redirect(sb, op, arg)
    rates: dict[str, int | None] = {}
    for part in arg.split(","):
        d, _, v = part.partition("=")
        rates[d] = None if v == "clear" else int(v)
    return plan_ratelimit(sb, rates)
