"""Step builders: each tc/ip change as the equivalent command, a do and an undo.

pyroute2 is imported only on the write path (by apply.py); these functions take its handle.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from kata_top.actions.model import ActionError, Step
from kata_top.collectors.rtnetlink import NetnsDump
from kata_top.model import Filter
from kata_top.units import tc_rate

INGRESS = 0xFFFF0000
ETH_P_ALL = 0x0003
KATA_PRIO = 49152  # what the kernel picks for the first filter, as Kata leaves it
DEFAULT_ROOT_QDISCS = {"noqueue", "mq", "pfifo_fast", "fq_codel", "pfifo", "fq"}
IFB = "ifb0"
q = shlex.quote  # device names come from the kernel: quote them for copy-paste


def ifindex(dump: NetnsDump, name: str) -> int:
    for lk in dump.links:
        if lk.name == name:
            return lk.ifindex
    raise ActionError(f"device {name} not found in the sandbox's namespace")


def kata_redirects(filters: tuple[Filter, ...], src: str, dst: str) -> list[Filter]:
    return [f for f in filters if f.dev == src and f.parent == "ffff:" and any(
        a.kind == "mirred" and a.action == "redirect" and a.direction == "egress"
        and a.target == dst for a in f.actions)]


def is_kata_filter(f: Filter) -> bool:
    return f.kind == "u32" and f.match_all and f.protocol == "all" and len(f.actions) == 1 \
        and f.actions[0].kind == "mirred" and f.actions[0].action == "redirect"


# ---- step builders (pyroute2 is imported only on the write path) ------------------------
def add_ingress(ifindex: int, dev: str) -> Step:
    return Step(f"tc qdisc add dev {q(dev)} ingress",
                lambda ipr: ipr.tc("add", "ingress", index=ifindex),
                lambda ipr: ipr.tc("del", "ingress", index=ifindex))


def del_ingress(ifindex: int, dev: str) -> Step:
    return Step(f"tc qdisc del dev {q(dev)} ingress",
                lambda ipr: ipr.tc("del", "ingress", index=ifindex),
                lambda ipr: ipr.tc("add", "ingress", index=ifindex))


def filter_ops(src_idx: int, dst_idx: int, prio: int) -> tuple[Callable[[Any], None],
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


def add_redirect(src: str, src_idx: int, dst: str, dst_idx: int, prio: int) -> Step:
    add, delete = filter_ops(src_idx, dst_idx, prio)
    return Step(f"tc filter add dev {q(src)} parent ffff: protocol all prio {prio} u32 "
                f"match u8 0 0 action mirred egress redirect dev {q(dst)}", add, delete)


def del_redirect(src: str, src_idx: int, dst: str, dst_idx: int, prio: int) -> Step:
    add, delete = filter_ops(src_idx, dst_idx, prio)
    return Step(f"tc filter del dev {q(src)} parent ffff: protocol all prio {prio} u32", delete,
                add)


def htb_steps(dev: str, idx: int, rate: int) -> list[Step]:
    r = tc_rate(rate)

    def cls(handle: int, parent: int) -> Callable[[Any], None]:
        return lambda ipr: ipr.tc("add-class", "htb", index=idx, handle=handle, parent=parent,
                                  rate=f"{rate}bit", ceil=f"{rate}bit")

    return [
        Step(f"tc qdisc add dev {q(dev)} root handle 1: htb default 2",
             lambda ipr: ipr.tc("add", "htb", index=idx, handle=0x10000, default=2),
             lambda ipr: ipr.tc("del", index=idx, handle=0x10000, parent=0xFFFFFFFF)),
        Step(f"tc class add dev {q(dev)} parent 1: classid 1:1 htb rate {r} ceil {r}",
             cls(0x10001, 0x10000)),
        Step(f"tc class add dev {q(dev)} parent 1:1 classid 1:2 htb rate {r} ceil {r}",
             cls(0x10002, 0x10001)),
    ]


def htb_change_steps(dev: str, idx: int, old: int, new: int) -> list[Step]:
    def change(rate: int, handle: int, parent: int) -> Callable[[Any], None]:
        return lambda ipr: ipr.tc("change-class", "htb", index=idx, handle=handle,
                                  parent=parent, rate=f"{rate}bit", ceil=f"{rate}bit")

    r = tc_rate(new)
    return [Step(f"tc class change dev {q(dev)} parent {p} classid {c} htb rate {r} ceil {r}",
                 change(new, h, ph), change(old, h, ph))
            for c, p, h, ph in (("1:1", "1:", 0x10001, 0x10000),
                                ("1:2", "1:1", 0x10002, 0x10001))]


def del_htb(dev: str, idx: int, rate: int) -> Step:
    def restore(ipr: Any) -> None:
        for s in htb_steps(dev, idx, rate):
            s.do(ipr)

    return Step(f"tc qdisc del dev {q(dev)} root handle 1: htb",
                lambda ipr: ipr.tc("del", index=idx, handle=0x10000, parent=0xFFFFFFFF), restore)



def _add_ifb(ifb_idx: int) -> Callable[[Any], None]:
    # The ifb is created with the index its htb and redirect name, so all of them go in
    # one netlink batch (nothing can be looked up between the messages of a batch).
    def add(ipr: Any) -> None:
        ipr.link("add", ifname=IFB, kind="ifb", index=ifb_idx)
        ipr.link("set", index=ifb_idx, state="up")

    return add


def ifb_steps(dump: NetnsDump, tap: str) -> tuple[list[Step], int]:
    """macvtap/none: the tap's ingress is redirected to an ifb in the sandbox's namespace.
    Returns the steps and the index the ifb will have (the first one free)."""
    tap_idx = ifindex(dump, tap)
    ifb_idx = max((lk.ifindex for lk in dump.links), default=1) + 1
    add_red, del_red = filter_ops(tap_idx, ifb_idx, KATA_PRIO)
    steps = [Step(f"ip link add {IFB} type ifb && ip link set {IFB} up", _add_ifb(ifb_idx),
                  lambda ipr: ipr.link("del", index=ifb_idx))]
    if not any(q.dev == tap and q.kind == "ingress" for q in dump.qdiscs):
        steps.append(add_ingress(tap_idx, tap))
    steps.append(Step(f"tc filter add dev {q(tap)} parent ffff: protocol all prio {KATA_PRIO} u32 "
                      f"match u8 0 0 action mirred egress redirect dev {IFB}", add_red, del_red))
    return steps, ifb_idx


def ifb_teardown(dump: NetnsDump, tap: str) -> list[Step]:
    """Undo ifb_steps: the tap → ifb redirect, the tap's ingress if bare, the ifb itself."""
    tap_idx, ifb_idx = ifindex(dump, tap), ifindex(dump, IFB)
    steps: list[Step] = []
    to_ifb = kata_redirects(dump.filters, tap, IFB)
    for f in to_ifb:
        steps.append(del_redirect(tap, tap_idx, IFB, ifb_idx, f.prio))
    others = [f for f in dump.filters if f.dev == tap and f.parent == "ffff:" and f not in to_ifb]
    if not others and any(q.dev == tap and q.kind == "ingress" for q in dump.qdiscs):
        steps.append(del_ingress(tap_idx, tap))
    steps.append(Step(f"ip link del {IFB}", lambda ipr: ipr.link("del", index=ifb_idx),
                      _add_ifb(ifb_idx)))
    return steps
