"""Rates from two consecutive snapshots: bytes/s and packets/s per link and per redirect."""

from __future__ import annotations

from dataclasses import replace

from kata_top.model import Sandbox, Snapshot


def _delta(cur: int, prev: int) -> int:
    # A counter that went down was reset (link re-created): count from zero, never negative.
    return cur - prev if cur >= prev else cur


def sandbox_rates(cur: Sandbox, prev: Sandbox | None, dt: float) -> dict[str, float]:
    if prev is None or dt <= 0:
        return {}
    out: dict[str, float] = {}
    prev_links = {lk.name: lk for lk in prev.links}
    for lk in cur.links:
        p = prev_links.get(lk.name)
        if p is None or p.ifindex != lk.ifindex:
            continue
        s, ps = lk.stats, p.stats
        out[f"link.{lk.name}.rx_bps"] = _delta(s.rx_bytes, ps.rx_bytes) * 8 / dt
        out[f"link.{lk.name}.tx_bps"] = _delta(s.tx_bytes, ps.tx_bytes) * 8 / dt
        out[f"link.{lk.name}.rx_pps"] = _delta(s.rx_packets, ps.rx_packets) / dt
        out[f"link.{lk.name}.tx_pps"] = _delta(s.tx_packets, ps.tx_packets) / dt
        out[f"link.{lk.name}.drops_ps"] = (_delta(s.rx_dropped + s.tx_dropped,
                                                  ps.rx_dropped + ps.tx_dropped)) / dt
    prev_red = {r.direction: r for r in prev.redirects}
    for r in cur.redirects:
        pr = prev_red.get(r.direction)
        if pr is None:
            continue
        out[f"redirect.{r.direction}.bps"] = _delta(r.bytes, pr.bytes) * 8 / dt
        out[f"redirect.{r.direction}.pps"] = _delta(r.packets, pr.packets) / dt
    # Into/out of the VM: for tcfilter the mirred hit counters (what the datapath carries
    # toward QEMU even when the guest is not reading); otherwise what the tap sends/receives.
    tap = cur.tap_name
    if "redirect.in.bps" in out and "redirect.out.bps" in out:
        out["vm.in_bps"] = out["redirect.in.bps"]
        out["vm.out_bps"] = out["redirect.out.bps"]
        out["vm.in_pps"] = out["redirect.in.pps"]
        out["vm.out_pps"] = out["redirect.out.pps"]
    elif tap and f"link.{tap}.tx_bps" in out:
        # A tun tap transmits toward QEMU; a macvtap counts frames headed to QEMU as rx.
        kind = next((lk.kind for lk in cur.links if lk.name == tap), "tun")
        to_vm, from_vm = ("rx", "tx") if kind == "macvtap" else ("tx", "rx")
        out["vm.in_bps"] = out[f"link.{tap}.{to_vm}_bps"]
        out["vm.out_bps"] = out[f"link.{tap}.{from_vm}_bps"]
        out["vm.in_pps"] = out[f"link.{tap}.{to_vm}_pps"]
        out["vm.out_pps"] = out[f"link.{tap}.{from_vm}_pps"]
    qprev = {(q.dev, q.handle, q.parent): q for q in prev.qdiscs}
    for q in cur.qdiscs:
        pq = qprev.get((q.dev, q.handle, q.parent))
        if pq is None:
            continue
        out[f"qdisc.{q.dev}.{q.handle}.drops_ps"] = _delta(q.stats.drops, pq.stats.drops) / dt
        out[f"qdisc.{q.dev}.{q.handle}.overlimits_ps"] = _delta(
            q.stats.overlimits, pq.stats.overlimits) / dt
    return {k: round(v, 3) for k, v in out.items()}


def with_rates(cur: Snapshot, prev: Snapshot | None) -> Snapshot:
    if prev is None:
        return cur
    dt = cur.taken_at - prev.taken_at
    prev_by_id = {sb.id: sb for sb in prev.sandboxes}
    return replace(cur, sandboxes=tuple(
        replace(sb, rates=sandbox_rates(sb, prev_by_id.get(sb.id), dt)) for sb in cur.sandboxes))
