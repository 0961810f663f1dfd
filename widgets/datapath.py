"""The datapath diagram: node link ⇄ eth0 ⇄ tc mirred ⇄ tap0_kata ⇄ virtio-net ⇄ guest.

Each hop shows its MTU, packets/s, bits/s and drops; a missing or broken hop is drawn broken
(red ╳) so a one-way redirect is visible at a glance.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from kata_top import rates
from kata_top.derive import redirect_states
from kata_top.drops.model import Hop
from kata_top.model import Link, Redirect, Sandbox
from kata_top.units import fmt_rate
from kata_top.widgets.palette import DEFAULT, MUTED, STRONG, Palette


def _link_cell(p: Palette, sb: Sandbox, lk: Link | None, title: str) -> Text:
    t = Text()
    if lk is None:
        t.append(f"{title}\n", style=p.bad_strong)
        t.append("missing", style=p.bad)
        return t
    state_style = p.ok if lk.operstate in ("up", "unknown") and lk.up else p.warn
    t.append(f"{lk.name}\n", style=STRONG)
    t.append(f"mtu {lk.mtu}  ", style=p.value)
    t.append(f"{lk.operstate}\n", style=state_style)
    lr = rates.link(sb, lk.name)
    rx_pps, tx_pps = lr.rx_pps, lr.tx_pps
    if rx_pps is not None and tx_pps is not None:
        t.append(f"rx {rx_pps:.0f}p/s {fmt_rate(lr.rx_bps)}\n")
        t.append(f"tx {tx_pps:.0f}p/s {fmt_rate(lr.tx_bps)}\n")
    drops = lk.stats.rx_dropped + lk.stats.tx_dropped
    t.append(f"drops {drops}", style=p.bad if drops else MUTED)
    return t


def _redirect_cell(p: Palette, sb: Sandbox, r: Redirect | None, direction: str,
                   state: str | None) -> Text:
    """One direction as tc holds it (the state of kata_top/derive.py:redirect_state, the
    one the overview and the findings use): where it points, and attempts vs failures."""
    t = Text()
    arrow = "▶" if direction == "in" else "◀"
    if r is None:
        t.append(f"{arrow} {direction}: MISSING\n", style=p.bad_strong)
        t.append("no mirred redirect", style=p.bad)
        return t
    if state == "elsewhere":
        t.append(f"{arrow} {direction}: WRONG TARGET\n", style=p.bad_strong)
        t.append(f"{r.from_dev}→{r.elsewhere} (Kata: {r.to_dev})", style=p.bad)
        return t
    if state == "no-qdisc":
        t.append(f"{arrow} {direction}: NO INGRESS QDISC\n", style=p.bad_strong)
        t.append(f"{r.from_dev} has no ffff: qdisc", style=p.bad)
        return t
    if state == "missing":
        t.append(f"{arrow} {direction}: MISSING\n", style=p.bad_strong)
        t.append("no mirred redirect", style=p.bad)
        return t
    failing = state == "failing"
    t.append(f"{arrow} {direction} ", style=(p.bad_strong if failing else p.ok + STRONG))
    t.append(f"{r.from_dev}→{r.to_dev}" + (" FAILING" if failing else "") + "\n",
             style=p.bad if failing else p.ok)
    rr = rates.redirect(sb, direction)
    if rr.pps is not None:
        t.append(f"tried {rr.pps:.0f}p/s {fmt_rate(rr.bps)}  ")
    if rr.failed_pps:
        t.append(f"failed {rr.failed_pps:.0f}p/s  ", style=p.bad)
    t.append(f"{r.packets} pkt", style=MUTED)
    if r.overlimits or r.drops:
        t.append(f" ({r.overlimits + r.drops} failed)", style=p.bad if failing else MUTED)
    return t


def _into_vm(p: Palette, sb: Sandbox, ok: bool) -> Text:
    """The tap → VMM hop: what the VMM took (the tap's tx) and what the tap dropped."""
    v = rates.vm(sb)
    t = Text()
    t.append_text(_arrow(p, ok, "in"))
    if v.in_pps is not None:
        t.append(f"\n{v.in_pps:.0f}p/s", style=p.value)
    if v.in_dropped_pps:
        t.append(f"\ndrop {v.in_dropped_pps:.0f}p/s", style=p.bad_strong)
    return t


def _arrow(p: Palette, ok: bool | None, direction: str) -> Text:
    glyph, style = (("══▶" if direction == "in" else "◀══"), p.ok) if ok else \
        (("─╳─", p.bad_strong) if ok is False else ("───", MUTED))
    return Text(glyph, style=style)


def _mark(p: Palette, cell: Text, marks: list[tuple[str, int]] | None) -> Text:
    """A hop where a drop trace saw packets die: ✖ and each reason with its count."""
    if marks:
        for reason, count in marks:
            cell.append(f"\n✖ {reason} {count}", style=p.bad_strong)
    return cell


def datapath(sb: Sandbox, p: Palette = DEFAULT,
             dead: dict[Hop, list[tuple[str, int]]] | None = None) -> Group:
    """The diagram; `dead`: per hop, the reasons a drop trace saw packets die there."""
    dead = dead or {}
    links = {lk.name: lk for lk in sb.links}
    eth0 = links.get("eth0")
    tap = links.get(sb.tap_name or "")
    vmm = sb.vmm
    alive = sb.hypervisor.alive
    red = {r.direction: r for r in sb.redirects}

    node = Text()
    if eth0 and eth0.peer:
        node.append(f"{eth0.peer.name or f'if{eth0.peer.ifindex}'}\n", style=STRONG)
        node.append(f"mtu {eth0.peer.mtu or '?'}", style=p.value if not eth0.peer.mtu or
                    eth0.peer.mtu == eth0.mtu else p.bad_strong)
        node.append(f"\n{eth0.peer.netns or 'peer ns ?'}", style=MUTED)
    elif sb.network_model == "none":
        node.append("node netns\n(tap on a bridge)", style=MUTED)
    else:
        node.append("node\n?", style=MUTED)

    nic = Text()
    if vmm and vmm.nics:
        n = vmm.nics[0]
        nic.append(f"{n.model or 'nic'}\n", style=STRONG)
        mac_ok = not sb.guest_mac or (n.mac or "").lower() == sb.guest_mac.lower()
        nic.append(f"{n.mac or '?'}\n", style=p.value if mac_ok else p.bad_strong)
        nic.append(f"vhost {'on' if n.vhost else 'off' if n.vhost is False else '?'}",
                   style=MUTED)
        if n.rx_frames is not None:  # the VMM's own counters (Cloud Hypervisor)
            nic.append(f"\nrx {n.rx_frames} tx {n.tx_frames} frames", style=MUTED)
    else:
        nic.append("virtio-net\n", style=STRONG)
        nic.append("?" if alive else "VMM dead", style=MUTED if alive else p.bad_strong)

    guest = Text()
    status = vmm.status if vmm else "unknown"
    guest.append("guest\n", style=STRONG)
    guest.append(status, style=p.ok if status == "running" else
                 p.bad_strong if status == "dead" else p.warn)
    if vmm and vmm.source:
        guest.append(f"\nvia {vmm.source}", style=MUTED)

    grid = Table.grid(padding=(0, 1))
    vmm_name = {"qemu": "QEMU"}.get(sb.hypervisor.kind, sb.hypervisor.kind)
    cols = ["node", "", "eth0", "", "tc ingress", "", "tap", "", f"{vmm_name} NIC", "",
            "guest"]
    for _ in cols:
        grid.add_column(vertical="middle")
    grid.add_row(*[Text(c, style="bold underline") for c in cols])
    tap_ok = tap is not None and tap.up and tap.carrier is not False
    if sb.network_model == "tcfilter":
        st = redirect_states(sb)
        in_ok = st.get("in") == "ok"
        out_ok = st.get("out") == "ok"
        tc = Text()
        tc.append_text(_redirect_cell(p, sb, red.get("in"), "in", st.get("in")))
        tc.append("\n")
        tc.append_text(_redirect_cell(p, sb, red.get("out"), "out", st.get("out")))
        both = Text()
        both.append_text(_arrow(p, in_ok, "in"))
        both.append("\n")
        both.append_text(_arrow(p, out_ok, "out"))
        wire = Text("═══\n═══", style=p.ok if eth0 else p.bad)
        grid.add_row(_mark(p, node, dead.get("node-veth")), wire,
                     _mark(p, _link_cell(p, sb, eth0, "eth0"), dead.get("eth0")), both,
                     _mark(p, tc, dead.get("mirred")), both.copy(),
                     _mark(p, _link_cell(p, sb, tap, sb.tap_name or "tap"), dead.get("tap")),
                     _into_vm(p, sb, tap_ok and alive), _mark(p, nic, dead.get("vmm")),
                     _arrow(p, alive, "in"), guest)
    else:
        label = "macvtap on eth0" if sb.network_model == "macvtap" else \
            f"{sb.network_model} (no tc redirects)"
        grid.add_row(_mark(p, node, dead.get("node-veth")), Text("═══", style=p.ok),
                     _mark(p, _link_cell(p, sb, eth0, "eth0"), dead.get("eth0")) if eth0
                     else Text("-", style=MUTED), Text("═══", style=MUTED),
                     _mark(p, Text(label, style=MUTED), dead.get("mirred")),
                     Text("═══", style=MUTED),
                     _mark(p, _link_cell(p, sb, tap, sb.tap_name or "tap"), dead.get("tap")),
                     _arrow(p, tap_ok and alive, "in"), _mark(p, nic, dead.get("vmm")),
                     _arrow(p, alive, "in"), guest)
    notes: list[Text] = []
    for f in sb.findings:
        if f.severity != "info":
            notes.append(Text(f"● {f.summary}", style=p.bad_strong if f.severity == "critical"
                              else p.warn))
    return Group(grid, *notes)

