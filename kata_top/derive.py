"""Facts derived from raw tc state: redirect pairs, Kata-shaped rate limits, the network model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from kata_top import rates
from kata_top.model import (
    Filter,
    Link,
    NetworkModel,
    Qdisc,
    RateLimit,
    Redirect,
    Route,
    Sandbox,
    TcClass,
)

DEFAULT_TAP = "tap0_kata"
DEFAULT_VIRT = "eth0"


def find_tap(links: Sequence[Link], recorded: str | None) -> str | None:
    names = {lk.name for lk in links}
    if recorded and recorded in names:
        return recorded
    for lk in links:
        if lk.name.startswith("tap") and lk.name.endswith("_kata"):
            return lk.name
    return recorded


def infer_model(recorded: NetworkModel | None, links: Sequence[Link],
                filters: Sequence[Filter], tap: str | None,
                routes: Sequence[Route] = ()) -> NetworkModel:
    """Kata's model as recorded (the Go runtime), else as the namespace shows it. runtime-rs
    records none: its l3forwarding (resource/src/network/network_model/l3_forwarding_model.rs)
    leaves a /32 route to the pod IP via the tap, proxy ARP and no tc at all."""
    if recorded:
        return recorded
    kinds = {lk.name: lk.kind for lk in links}
    if tap and kinds.get(tap) == "macvtap":
        return "macvtap"
    if any(a.kind == "mirred" for f in filters for a in f.actions):
        return "tcfilter"
    if tap and tap in kinds and any(r.dev == tap and r.dst.endswith("/32") for r in routes):
        return "l3forwarding"
    return "none" if tap else "unknown"


def endpoint_kind(recorded: str | None, links: Sequence[Link], virt: str) -> str | None:
    """The pod's endpoint: what Kata recorded, else the kernel's kind of the pod interface
    (a `netkit` one is an endpoint Kata cannot attach, kata-containers#12159)."""
    if recorded:
        return recorded
    for lk in links:
        if lk.name == virt:
            return lk.kind
    return None


def redirect(filters: Sequence[Filter], direction: str, src: str, dst: str,
             qdiscs: Sequence[Qdisc] | None = None) -> Redirect:
    """The mirred egress redirect src → dst on src's ingress, summed over matching filters;
    with what else tc holds there: a redirect to another device (the first by prio), and
    whether src has an ingress qdisc (qdiscs None: not known, taken as there)."""
    packets = nbytes = over = drops = 0
    prio: int | None = None
    present = False
    other: tuple[int, str] | None = None
    for f in filters:
        if f.dev != src or f.parent not in ("ffff:", "ffff:fff2"):
            continue
        for a in f.actions:
            if a.kind != "mirred" or a.action != "redirect" or a.direction != "egress":
                continue
            if a.target == dst:
                present = True
                packets += a.stats.packets
                nbytes += a.stats.bytes
                over += a.stats.overlimits
                drops += a.stats.drops
                prio = f.prio if prio is None else prio
            elif other is None or f.prio < other[0]:
                other = (f.prio, a.target or f"if{a.target_ifindex}")
    ingress = qdiscs is None or any(q.dev == src and q.kind in ("ingress", "clsact")
                                    for q in qdiscs)
    return Redirect(direction="in" if direction == "in" else "out", from_dev=src, to_dev=dst,
                    present=present, packets=packets, bytes=nbytes, prio=prio,
                    elsewhere=other[1] if other else None,
                    elsewhere_prio=other[0] if other else None, ingress_qdisc=ingress,
                    overlimits=over, drops=drops)


def redirects(model: str, filters: Sequence[Filter], tap: str | None,
              virt: str | None, qdiscs: Sequence[Qdisc] | None = None
              ) -> tuple[Redirect, ...]:
    if model != "tcfilter" or not tap:
        return ()
    v = virt or DEFAULT_VIRT
    return (redirect(filters, "in", v, tap, qdiscs), redirect(filters, "out", tap, v, qdiscs))


#: one direction's redirect as tc holds it (kata_top/derive.py:redirect_state)
RedirectState = Literal["ok", "elsewhere", "missing", "no-qdisc", "failing"]


def redirect_state(r: Redirect, links: Sequence[Link], failing_pps: float | None = None
                   ) -> RedirectState:
    """`ok` (present, pointing where Kata points it), `elsewhere` (the first redirect on the
    device goes to another device), `no-qdisc` (no ingress qdisc to hold a filter), `missing`,
    or `failing` (present but the target is down, or mirred's failures rise:
    failing_pps from kata_top/rates.py). The overview, the findings and the diagram all ask
    this one function; kata_top/actions/plan.py repairs the same states."""
    if r.elsewhere is not None and (not r.present or (r.elsewhere_prio or 0) <= (r.prio or 0)):
        return "elsewhere"
    if not r.present:
        return "no-qdisc" if not r.ingress_qdisc else "missing"
    # (a target that is not there at all is the tap's own fault, KT-S013)
    target = next((lk for lk in links if lk.name == r.to_dev), None)
    if (target is not None and not target.up) or (failing_pps or 0) > 0:
        return "failing"
    return "ok"


def redirect_states(sb: Sandbox) -> dict[str, RedirectState]:
    """Each redirect's state with its mirred failure rate, as the overview, the diagram and
    the findings show it."""
    return {r.direction: redirect_state(r, sb.links,
                                        rates.redirect(sb, r.direction).failed_pps)
            for r in sb.redirects}


def kata_htb_rate(dev: str, qdiscs: Sequence[Qdisc], classes: Sequence[TcClass]) -> int | None:
    """The rate of Kata's shape on dev (`htb 1: root default 2`, 1:1 under 1:, 1:2 under 1:1,
    rate = ceil on both), or None when dev's shaping is not exactly that."""
    root = [q for q in qdiscs if q.dev == dev and q.parent == "root"]
    if len(root) != 1 or root[0].kind != "htb" or root[0].handle != "1:" \
            or root[0].default_class != "2":
        return None
    cls = {c.handle: c for c in classes if c.dev == dev}
    c1, c2 = cls.get("1:1"), cls.get("1:2")
    if c1 is None or c2 is None or set(cls) != {"1:1", "1:2"}:
        return None
    if c1.parent not in ("root", "1:") or c2.parent != "1:1":
        return None
    if c1.rate_bps != c1.ceil_bps or c2.rate_bps != c2.ceil_bps or c1.rate_bps != c2.rate_bps:
        return None
    return c2.rate_bps


SHAPING_QDISCS = ("htb", "tbf", "hfsc", "cake", "cbq", "netem")


def rate_limits(model: str, links: Sequence[Link], qdiscs: Sequence[Qdisc],
                classes: Sequence[TcClass], tap: str | None,
                virt: str | None) -> tuple[RateLimit, ...]:
    """Kata-shaped limits with their direction; other shaping qdiscs shown as they are."""
    out: list[RateLimit] = []
    v = virt or DEFAULT_VIRT
    ifbs = {lk.name for lk in links if lk.kind == "ifb"}
    for q in qdiscs:
        if q.parent != "root" or q.kind not in SHAPING_QDISCS:
            continue
        if q.dev == tap:
            direction = "in"
        elif q.dev == v or q.dev in ifbs:
            direction = "out"
        else:
            continue
        rate = kata_htb_rate(q.dev, qdiscs, classes)
        over, drops = q.stats.overlimits, q.stats.drops
        if rate is not None:
            out.append(RateLimit(direction=direction, dev=q.dev, rate_bps=rate,  # type: ignore[arg-type]
                                 shape="kata-htb", overlimits=over, drops=drops))
        else:
            rates = [c.rate_bps for c in classes if c.dev == q.dev and c.rate_bps]
            out.append(RateLimit(direction=direction, dev=q.dev,  # type: ignore[arg-type]
                                 rate_bps=min(rates) if rates else 0, shape=q.kind,
                                 overlimits=over, drops=drops))
    return tuple(out)
