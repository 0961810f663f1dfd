"""Prometheus series of where packets went: each redirect's state and failures, and what the
tap handed to the VMM (kata_top/formats/prometheus.py calls these per sandbox)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kata_top.derive import redirect_state
from kata_top.model import Redirect, Sandbox

if TYPE_CHECKING:
    from kata_top.formats.prom_text import Exposition


def redirect_health(ex: Exposition, sb: Sandbox, r: Redirect, who: str,
                    red: dict[str, str]) -> None:
    ex.add("redirect_failed_packets", "counter", "Packets the redirect attempted but could "
           "not hand to its target (mirred overlimits + drops: the target down or gone); "
           "redirect_packets counts attempts.", who, r.overlimits + r.drops, **red)
    state = redirect_state(r, sb.links)
    ex.add("redirect_state", "gauge", "1 for the state tc holds this direction in: ok, "
           "elsewhere (redirects to `target`, not `to`), missing, no-qdisc (no ingress qdisc "
           "on `from`), failing (target down).", who, 1, **red, state=state,
           target=r.elsewhere if state == "elsewhere" and r.elsewhere else r.to_dev)


def vm_counters(ex: Exposition, sb: Sandbox, who: str) -> None:
    """Into the VM is what the tap handed to the VMM (a tun tap's tx; a macvtap's rx), out
    of it what the VMM wrote to the tap; the tap's drops on the way in beside."""
    tap = next((lk for lk in sb.links if lk.name == sb.tap_name), None)
    if tap is None:
        return
    st = tap.stats
    mac = tap.kind == "macvtap"
    for d, nbytes, pkts in (("in", st.rx_bytes if mac else st.tx_bytes,
                             st.rx_packets if mac else st.tx_packets),
                            ("out", st.tx_bytes if mac else st.rx_bytes,
                             st.tx_packets if mac else st.rx_packets)):
        ex.add("vm_delivered_bytes", "counter", "Bytes the tap handed to the VMM (in) or the "
               "VMM wrote to the tap (out).", who, nbytes, direction=d, interface=tap.name)
        ex.add("vm_delivered_packets", "counter", "Packets the tap handed to the VMM (in) or "
               "the VMM wrote to the tap (out).", who, pkts, direction=d, interface=tap.name)
    ex.add("vm_dropped_packets", "counter", "Packets the tap dropped on the way into the VM "
           "(the VMM not draining it, or not holding it).", who,
           st.rx_dropped if mac else st.tx_dropped, direction="in", interface=tap.name)


def rate_limits(ex: Exposition, sb: Sandbox, who: str) -> None:
    for lim in sb.rate_limits:
        ll = {"direction": lim.direction, "device": lim.dev, "shape": lim.shape}
        ex.add("rate_limit_bytes_per_second", "gauge", "Rate limit found in tc (bytes/s, "
               "Prometheus' base unit; tc shows bits/s).", who, lim.rate_bps / 8, **ll)
        ex.add("rate_limit_overlimits", "counter", "Packets the limit held back (its root "
               "qdisc's overlimits).", who, lim.overlimits, **ll)
        ex.add("rate_limit_drops", "counter", "Packets the limit dropped (its root qdisc's "
               "drops).", who, lim.drops, **ll)
