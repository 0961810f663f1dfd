"""The datapath diagram: node link ⇄ eth0 ⇄ tc mirred ⇄ tap0_kata ⇄ virtio-net ⇄ guest.

Each hop shows its MTU, packets/s, bits/s and drops; a missing or broken hop is drawn broken
(red ╳) so a one-way redirect is visible at a glance.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from kata_top.model import Link, Redirect, Sandbox
from kata_top.units import fmt_rate

OK_IN = ("══▶", "green")
OK_OUT = ("◀══", "green")
BROKEN = ("─╳─", "bold red")
IDLE = ("───", "dim")


def _rate(sb: Sandbox, key: str) -> float | None:
    return sb.rates.get(key)


def _link_cell(sb: Sandbox, lk: Link | None, title: str) -> Text:
    t = Text()
    if lk is None:
        t.append(f"{title}\n", style="bold red")
        t.append("missing", style="red")
        return t
    state_style = "green" if lk.operstate in ("up", "unknown") and lk.up else "yellow"
    t.append(f"{lk.name}\n", style="bold")
    t.append(f"mtu {lk.mtu}  ", style="cyan")
    t.append(f"{lk.operstate}\n", style=state_style)
    rx_pps = _rate(sb, f"link.{lk.name}.rx_pps")
    tx_pps = _rate(sb, f"link.{lk.name}.tx_pps")
    if rx_pps is not None and tx_pps is not None:
        t.append(f"rx {rx_pps:.0f}p/s {fmt_rate(_rate(sb, f'link.{lk.name}.rx_bps'))}\n")
        t.append(f"tx {tx_pps:.0f}p/s {fmt_rate(_rate(sb, f'link.{lk.name}.tx_bps'))}\n")
    drops = lk.stats.rx_dropped + lk.stats.tx_dropped
    t.append(f"drops {drops}", style="red" if drops else "dim")
    return t


def _redirect_cell(sb: Sandbox, r: Redirect | None, direction: str) -> Text:
    t = Text()
    arrow = "▶" if direction == "in" else "◀"
    if r is None or not r.present:
        t.append(f"{arrow} {direction}: MISSING\n", style="bold red")
        t.append("no mirred redirect", style="red")
        return t
    t.append(f"{arrow} {direction} ", style="bold green")
    t.append(f"{r.from_dev}→{r.to_dev}\n", style="green")
    pps = _rate(sb, f"redirect.{direction}.pps")
    bps = _rate(sb, f"redirect.{direction}.bps")
    if pps is not None:
        t.append(f"{pps:.0f}p/s {fmt_rate(bps)}  ")
    t.append(f"{r.packets} pkt", style="dim")
    return t


def _arrow(ok: bool | None, direction: str) -> Text:
    glyph, style = (OK_IN if direction == "in" else OK_OUT) if ok else \
        (BROKEN if ok is False else IDLE)
    return Text(glyph, style=style)


def datapath(sb: Sandbox) -> Group:
    links = {lk.name: lk for lk in sb.links}
    eth0 = links.get("eth0")
    tap = links.get(sb.tap_name or "")
    vmm = sb.vmm
    alive = sb.hypervisor.alive
    red = {r.direction: r for r in sb.redirects}

    node = Text()
    if eth0 and eth0.peer:
        node.append(f"{eth0.peer.name or f'if{eth0.peer.ifindex}'}\n", style="bold")
        node.append(f"mtu {eth0.peer.mtu or '?'}", style="cyan" if not eth0.peer.mtu or
                    eth0.peer.mtu == eth0.mtu else "bold red")
        node.append(f"\n{eth0.peer.netns or 'peer ns ?'}", style="dim")
    elif sb.network_model == "none":
        node.append("node netns\n(tap on a bridge)", style="dim")
    else:
        node.append("node\n?", style="dim")

    nic = Text()
    if vmm and vmm.nics:
        n = vmm.nics[0]
        nic.append(f"{n.model or 'nic'}\n", style="bold")
        mac_ok = not sb.guest_mac or (n.mac or "").lower() == sb.guest_mac.lower()
        nic.append(f"{n.mac or '?'}\n", style="cyan" if mac_ok else "bold red")
        nic.append(f"vhost {'on' if n.vhost else 'off' if n.vhost is False else '?'}",
                   style="dim")
    else:
        nic.append("virtio-net\n", style="bold")
        nic.append("?" if alive else "VMM dead", style="dim" if alive else "bold red")

    guest = Text()
    status = vmm.status if vmm else "unknown"
    guest.append("guest\n", style="bold")
    guest.append(status, style="green" if status == "running" else
                 "bold red" if status == "dead" else "yellow")
    if vmm and vmm.source:
        guest.append(f"\nvia {vmm.source}", style="dim")

    grid = Table.grid(padding=(0, 1))
    cols = ["node", "", "eth0", "", "tc ingress", "", "tap", "", "QEMU NIC", "", "guest"]
    for _ in cols:
        grid.add_column(vertical="middle")
    grid.add_row(*[Text(c, style="bold underline") for c in cols])
    tap_ok = tap is not None and tap.up and tap.carrier is not False
    if sb.network_model == "tcfilter":
        in_ok = red.get("in") is not None and red["in"].present
        out_ok = red.get("out") is not None and red["out"].present
        tc = Text()
        tc.append_text(_redirect_cell(sb, red.get("in"), "in"))
        tc.append("\n")
        tc.append_text(_redirect_cell(sb, red.get("out"), "out"))
        both = Text()
        both.append_text(_arrow(in_ok, "in"))
        both.append("\n")
        both.append_text(_arrow(out_ok, "out"))
        wire = Text("═══\n═══", style="green" if eth0 else "red")
        grid.add_row(node, wire, _link_cell(sb, eth0, "eth0"), both, tc, both.copy(),
                     _link_cell(sb, tap, sb.tap_name or "tap"),
                     _arrow(tap_ok and alive, "in"), nic, _arrow(alive, "in"), guest)
    else:
        label = "macvtap on eth0" if sb.network_model == "macvtap" else \
            f"{sb.network_model} (no tc redirects)"
        grid.add_row(node, Text("═══", style="green"), _link_cell(sb, eth0, "eth0") if eth0
                     else Text("-", style="dim"), Text("═══", style="dim"),
                     Text(label, style="dim"), Text("═══", style="dim"),
                     _link_cell(sb, tap, sb.tap_name or "tap"),
                     _arrow(tap_ok and alive, "in"), nic, _arrow(alive, "in"), guest)
    notes: list[Text] = []
    for f in sb.findings:
        if f.severity != "info":
            notes.append(Text(f"● {f.summary}", style="bold red" if f.severity == "critical"
                              else "yellow"))
    return Group(grid, *notes)

