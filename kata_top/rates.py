"""Rates from two consecutive snapshots: bytes/s and packets/s per link and per redirect."""

from __future__ import annotations

from msgspec import Struct

from kata_top.model import Sandbox, Snapshot, evolve


def _delta(cur: int, prev: int) -> int:
    # A counter that went down was reset (link re-created): count from zero, never negative.
    return cur - prev if cur >= prev else cur


TC_KEYS = ("redirect.", "qdisc.")  # the rates counted from tc's counters


def sandbox_rates(cur: Sandbox, prev: Sandbox | None, dt: float, tc_dt: float | None = None,
                  tc_stale: bool = False) -> dict[str, float]:
    """Rates over `dt` seconds; tc's (redirects', qdiscs') over `tc_dt` (default `dt`), the
    time between the reads of the two sandboxes' tc counters. tc_stale: `cur`'s tc counters
    are the ones `prev` had (not read again, kata_top/engine/options.py tc_busy_refresh_s), so
    `prev`'s tc rates stand."""
    if prev is None or dt <= 0:
        return {}
    out: dict[str, float] = {}
    per_s = 1.0 / dt
    tc_dt = dt if tc_dt is None else tc_dt
    tc_per_s = None if tc_stale or tc_dt <= 0 else 1.0 / tc_dt
    prev_links = {lk.name: lk for lk in prev.links}
    for lk in cur.links:
        p = prev_links.get(lk.name)
        if p is None or p.ifindex != lk.ifindex:
            continue
        s, ps = lk.stats, p.stats
        pre = f"link.{lk.name}."
        if s is ps or s == ps:  # idle link (the decoder memo hands back the same stats)
            out[pre + "rx_bps"] = out[pre + "tx_bps"] = out[pre + "rx_pps"] = \
                out[pre + "tx_pps"] = out[pre + "drops_ps"] = 0.0
            continue
        out[pre + "rx_bps"] = round(_delta(s.rx_bytes, ps.rx_bytes) * 8 * per_s, 3)
        out[pre + "tx_bps"] = round(_delta(s.tx_bytes, ps.tx_bytes) * 8 * per_s, 3)
        out[pre + "rx_pps"] = round(_delta(s.rx_packets, ps.rx_packets) * per_s, 3)
        out[pre + "tx_pps"] = round(_delta(s.tx_packets, ps.tx_packets) * per_s, 3)
        out[pre + "drops_ps"] = round(_delta(s.rx_dropped + s.tx_dropped,
                                             ps.rx_dropped + ps.tx_dropped) * per_s, 3)
    if tc_per_s is None:
        out.update((k, v) for k, v in prev.rates.items() if k.startswith(TC_KEYS))
    elif cur.redirects:
        prev_red = {r.direction: r for r in prev.redirects}
        for r in cur.redirects:
            pr = prev_red.get(r.direction)
            if pr is None:
                continue
            out[f"redirect.{r.direction}.bps"] = round(
                _delta(r.bytes, pr.bytes) * 8 * tc_per_s, 3)
            out[f"redirect.{r.direction}.pps"] = round(
                _delta(r.packets, pr.packets) * tc_per_s, 3)
            # mirred's failures: packets it could not hand to the target (down, gone)
            out[f"redirect.{r.direction}.failed_pps"] = round(
                _delta(r.overlimits + r.drops, pr.overlimits + pr.drops) * tc_per_s, 3)
    # Into/out of the VM: what the tap handed to the VMM (a tun tap's tx counts a packet when
    # the VMM reads it; a macvtap counts frames headed to QEMU as rx) and what the VMM wrote
    # to it. The redirects' mirred counters are attempts: a redirect to a tap that is down,
    # or that no VMM drains, counts every packet it fails to deliver (`ip -s link` and
    # `tc -s filter` side by side show it), so they are kept beside, as `attempted`.
    tap = cur.tap_name
    if tap and f"link.{tap}.tx_bps" in out:
        tap_link = next((lk for lk in cur.links if lk.name == tap), None)
        kind = tap_link.kind if tap_link else "tun"
        to_vm, from_vm = ("rx", "tx") if kind == "macvtap" else ("tx", "rx")
        out["vm.in_bps"] = out[f"link.{tap}.{to_vm}_bps"]
        out["vm.out_bps"] = out[f"link.{tap}.{from_vm}_bps"]
        out["vm.in_pps"] = out[f"link.{tap}.{to_vm}_pps"]
        out["vm.out_pps"] = out[f"link.{tap}.{from_vm}_pps"]
        p_tap = prev_links.get(tap)
        if tap_link is not None and p_tap is not None and p_tap.ifindex == tap_link.ifindex:
            # dropped at the tap on the way in: the VMM not draining it (or not holding it)
            cur_d = tap_link.stats.rx_dropped if kind == "macvtap" else \
                tap_link.stats.tx_dropped
            prev_d = p_tap.stats.rx_dropped if kind == "macvtap" else p_tap.stats.tx_dropped
            out["vm.in_dropped_pps"] = round(_delta(cur_d, prev_d) * per_s, 3)
    for d in ("in", "out"):
        if f"redirect.{d}.bps" in out:
            out[f"vm.{d}_attempted_bps"] = out[f"redirect.{d}.bps"]
            out[f"vm.{d}_attempted_pps"] = out[f"redirect.{d}.pps"]
            out[f"vm.{d}_failed_pps"] = out.get(f"redirect.{d}.failed_pps", 0.0)
    if cur.qdiscs and tc_per_s is not None:
        qprev = {(q.dev, q.handle, q.parent): q for q in prev.qdiscs}
        for q in cur.qdiscs:
            pq = qprev.get((q.dev, q.handle, q.parent))
            if pq is None:
                continue
            pre = f"qdisc.{q.dev}.{q.handle}."
            out[pre + "drops_ps"] = round(_delta(q.stats.drops, pq.stats.drops) * tc_per_s, 3)
            out[pre + "overlimits_ps"] = round(
                _delta(q.stats.overlimits, pq.stats.overlimits) * tc_per_s, 3)
    return out


def _still(cur: Sandbox, prev: Sandbox | None) -> bool:
    """No counter moved and none had moved before: the sandbox's rates are the last ones
    (all zero). The engine hands an idle sandbox out with its very links, qdiscs and
    redirects of the last cycle (kata_top/engine/core.py), so identity says it."""
    return (prev is not None and bool(prev.rates) and cur.links is prev.links
            and cur.qdiscs is prev.qdiscs and cur.redirects is prev.redirects
            and not any(prev.rates.values()))


def with_rates(cur: Snapshot, prev: Snapshot | None,
               memo: dict[str, Sandbox] | None = None) -> Snapshot:
    """`cur` with each sandbox's rates since `prev`. A stream passes the same `memo` every
    cycle (the engine's sandboxes it saw last): a sandbox the engine handed out as the very
    object of last cycle, with still counters, is the previous snapshot's sandbox itself —
    those fields, those (zero) rates; `annotate` then finds its findings too.
    Each snapshot's `tc_read_at` names the sandboxes whose tc counters are an earlier
    collection's (and when that was); `links_read_at` those not read at all: the previous
    snapshot's sandbox stands, rates included; once read again its rates count over the
    time since."""
    seen: dict[str, Sandbox] = {}
    if prev is None:
        if memo is not None:
            memo.clear()
            memo.update((sb.id, sb) for sb in cur.sandboxes)
        return cur
    read_at, tc_read_at = cur.links_read_at, cur.tc_read_at
    prev_read_at, prev_tc_read_at = prev.links_read_at, prev.tc_read_at
    prev_by_id = {sb.id: sb for sb in prev.sandboxes}
    out = []
    for sb in cur.sandboxes:
        p = prev_by_id.get(sb.id)
        unread = p is not None and sb.id in read_at
        if memo is not None:
            seen[sb.id] = sb
            if p is not None and memo.get(sb.id) is sb and (unread or _still(sb, p)):
                out.append(p)
                continue
        if p is not None and (unread or _still(sb, p)):
            rates = p.rates
        else:
            prev_read = prev_tc_read_at.get(sb.id, prev.taken_at)
            link_dt = cur.taken_at - prev_read_at.get(sb.id, prev.taken_at)
            rates = sandbox_rates(sb, p, link_dt, cur.taken_at - prev_read,
                                  tc_stale=sb.id in tc_read_at)
        out.append(evolve(sb, rates=rates))
    if memo is not None:
        memo.clear()
        memo.update(seen)
    return evolve(cur, sandboxes=tuple(out))


# ---- typed reading of `Sandbox.rates` -----------------------------------------------------
# The JSON contract keeps rates as one flat object with composed keys ("vm.in_bps",
# "link.eth0.rx_pps", …); these are the only places that spell them.
class VmRates(Struct, frozen=True):
    """Into/out of the VM: the redirects' hit counters (tcfilter) or the tap's own."""

    in_bps: float | None
    out_bps: float | None
    in_pps: float | None
    out_pps: float | None
    # what the redirects attempted (tcfilter), what mirred failed to hand on, and what the
    # tap dropped on the way in (None: not known for this model or not yet)
    in_attempted_bps: float | None = None
    out_attempted_bps: float | None = None
    in_attempted_pps: float | None = None
    out_attempted_pps: float | None = None
    in_failed_pps: float | None = None
    out_failed_pps: float | None = None
    in_dropped_pps: float | None = None


class LinkRates(Struct, frozen=True):
    rx_bps: float | None
    tx_bps: float | None
    rx_pps: float | None
    tx_pps: float | None
    drops_ps: float | None


class RedirectRates(Struct, frozen=True):
    bps: float | None
    pps: float | None
    failed_pps: float | None = None


class QdiscRates(Struct, frozen=True):
    dev: str
    handle: str
    drops_ps: float
    overlimits_ps: float | None


def vm(sb: Sandbox) -> VmRates:
    r = sb.rates
    return VmRates(r.get("vm.in_bps"), r.get("vm.out_bps"), r.get("vm.in_pps"),
                   r.get("vm.out_pps"), r.get("vm.in_attempted_bps"),
                   r.get("vm.out_attempted_bps"), r.get("vm.in_attempted_pps"),
                   r.get("vm.out_attempted_pps"), r.get("vm.in_failed_pps"),
                   r.get("vm.out_failed_pps"), r.get("vm.in_dropped_pps"))


def link_drops(sb: Sandbox, dev: str) -> float | None:
    """A link's drops per second (the hot path of event detection: no record built)."""
    return sb.rates.get(f"link.{dev}.drops_ps")


def link(sb: Sandbox, dev: str) -> LinkRates:
    r, pre = sb.rates, f"link.{dev}."
    return LinkRates(r.get(pre + "rx_bps"), r.get(pre + "tx_bps"), r.get(pre + "rx_pps"),
                     r.get(pre + "tx_pps"), r.get(pre + "drops_ps"))


def redirect(sb: Sandbox, direction: str) -> RedirectRates:
    r = sb.rates
    return RedirectRates(r.get(f"redirect.{direction}.bps"), r.get(f"redirect.{direction}.pps"),
                         r.get(f"redirect.{direction}.failed_pps"))


def qdiscs(sb: Sandbox) -> list[QdiscRates]:
    """Per-qdisc drop rates (present once two snapshots saw the qdisc)."""
    out = []
    for key, value in sb.rates.items():
        if key.startswith("qdisc.") and key.endswith(".drops_ps"):
            dev, handle = key[len("qdisc."):-len(".drops_ps")].rsplit(".", 1)
            out.append(QdiscRates(dev, handle, value,
                                  sb.rates.get(f"qdisc.{dev}.{handle}.overlimits_ps")))
    return out
