"""The overview and sandbox-detail screens. They only display snapshots handed to them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.json import JSON
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane

from kata_top import rates
from kata_top.formats.jsonout import sandbox_to_dict
from kata_top.history import marks, resample
from kata_top.model import Sandbox, Snapshot
from kata_top.select import label
from kata_top.units import fmt_bytes, fmt_rate
from kata_top.widgets.datapath import datapath
from kata_top.widgets.detail_text import last_used, lost_text
from kata_top.widgets.drops_view import drops_table, hop_marks
from kata_top.widgets.events_view import events_table
from kata_top.widgets.findings import findings_table
from kata_top.widgets.header import HeaderBar
from kata_top.widgets.overview_columns import sparkline
from kata_top.widgets.palette import MUTED, Palette, palette_of
from kata_top.widgets.sandbox_table import SandboxTable
from kata_top.widgets.table_screen import TableScreen

if TYPE_CHECKING:
    from kata_top.drops.model import DropReport
    from kata_top.widgets.app import KataTopApp

GRAPH_W = 45  # columns of the detail's 15-minute traffic graph
EMPTY_TEXT = ("No Kata sandboxes under {root} (vc/sbs/*/persist.json, kata/*/state.json) and "
              "no Kata VMM is running.\n\nTo see kata-top at work without Kata:\n"
              "  sudo kata-top lab up\n  sudo kata-top --run-root /run/kata-top-lab")


class KataScreen(Screen[None]):
    """What every full screen shares: the header line and the too-small notice."""

    @property
    def kapp(self) -> KataTopApp:
        return self.app  # type: ignore[return-value]

    def chrome(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield Static(id="too-small")

    def on_screen_resume(self) -> None:
        # Uncovered again: snapshots that came while hidden were not drawn here.
        snap = self.kapp.snapshot
        show = getattr(self, "show_snapshot", None)
        if snap is not None and show is not None:
            show(snap)
        self.kapp.update_header()


def _event_ids(snap: Snapshot) -> set[str]:
    return {e.sandbox_id for e in snap.events if e.sandbox_id}


class OverviewScreen(KataScreen, TableScreen):
    _recorded: Snapshot | None = None  # the last snapshot the table's trends counted
    BINDINGS = [Binding("h", "host", "Host", id="host"),
                Binding("e", "events", "Events", id="events"),
                Binding("D", "drops", "Drops (trace)", show=False, id="drops")]

    def compose(self) -> ComposeResult:
        yield from self.chrome()
        yield Static(id="empty")
        yield from self.table_parts()
        yield Static(id="events-pane")
        yield Static(id="drops-pane")
        yield Footer()

    def action_drops(self) -> None:
        self.kapp.trace_drops(None, "every sandbox")

    def show_drops(self, rep: DropReport) -> None:
        pane = self.query_one("#drops-pane", Static)
        pane.add_class("shown")
        pane.update(drops_table(rep, palette_of(self.app)))

    def action_events(self) -> None:
        pane = self.query_one("#events-pane", Static)
        pane.toggle_class("shown")
        self._show_events()

    def _show_events(self) -> None:
        """The node's events, newest first, narrowed by the table's `/` filter."""
        pane = self.query_one("#events-pane", Static)
        if not pane.has_class("shown"):
            return
        needle = self.query_one(SandboxTable).filter_text.lower()
        events = [e for e in self.kapp.events
                  if not needle or needle in f"{e.pod} {e.summary} {e.kind}".lower()]
        pane.update(events_table(events, palette_of(self.app), "no events yet", limit=50))

    def ids_on_screen(self) -> list[str]:
        return self.query_one(SandboxTable).ids_on_screen()

    def on_mount(self) -> None:
        self.query_one(SandboxTable).set_width(self.size.width or 120)
        if self.kapp.snapshot is not None:
            self.show_snapshot(self.kapp.snapshot)

    def note_snapshot(self, snap: Snapshot) -> None:
        """Hidden under a detail screen: keep the trend history, draw nothing."""
        self._recorded = snap
        self.query_one(SandboxTable).record(snap.sandboxes, _event_ids(snap))

    def show_snapshot(self, snap: Snapshot) -> None:
        table = self.query_one(SandboxTable)
        if snap is self._recorded:
            table.redraw(snap.sandboxes)  # its trends already count it
        else:
            self._recorded = snap
            table.show(snap.sandboxes, _event_ids(snap))
        empty = self.query_one("#empty", Static)
        empty.set_class(not snap.sandboxes, "shown")
        if not snap.sandboxes:
            empty.update(EMPTY_TEXT.format(root=snap.host.run_root))
        if snap.events:
            self._show_events()
        if self.kapp.drops is not None and not self.query_one("#drops-pane").has_class("shown"):
            self.show_drops(self.kapp.drops)  # a trace that ended while a detail was open

    def open_row(self, row_id: str) -> None:
        self.kapp.open_sandbox(row_id)

    def action_host(self) -> None:
        self.kapp.show_host()


def _links_table(sb: Sandbox, p: Palette) -> Table:
    t = Table("name", "idx", "kind", "mtu", "mac", "state", "rx", "tx", "rx pkt", "tx pkt",
              "drops", "peer", expand=True, box=None, header_style="bold")
    for lk in sb.links:
        peer = ""
        if lk.peer:
            peer = f"{lk.peer.name or f'if{lk.peer.ifindex}'}@{lk.peer.netns or lk.peer.netnsid}"
            if lk.peer.mtu and lk.peer.mtu != lk.mtu:
                peer += f" mtu {lk.peer.mtu}"
        kind = lk.kind
        if lk.tun:
            kind = f"{lk.tun.type}{' mq' if lk.tun.multi_queue else ''}" \
                   f"{' vnet_hdr' if lk.tun.vnet_hdr else ''}"
        t.add_row(lk.name, str(lk.ifindex), kind, str(lk.mtu), lk.mac or "-",
                  f"{lk.operstate}{'' if lk.carrier is not False else ' no-carrier'}",
                  fmt_rate(rates.link(sb, lk.name).rx_bps),
                  fmt_rate(rates.link(sb, lk.name).tx_bps),
                  str(lk.stats.rx_packets), str(lk.stats.tx_packets),
                  str(lk.stats.rx_dropped + lk.stats.tx_dropped), peer)
    return t


def _tc_tables(sb: Sandbox, p: Palette, now: float) -> Table:
    outer = Table.grid()
    q = Table("dev", "kind", "handle", "parent", "bytes", "pkts", "drops", "overlimits",
              "backlog", "qlen", title="qdiscs", box=None, expand=True, header_style="bold")
    for x in sb.qdiscs:
        q.add_row(x.dev, x.kind, x.handle, x.parent, str(x.stats.bytes), str(x.stats.packets),
                  str(x.stats.drops), str(x.stats.overlimits), str(x.stats.backlog),
                  str(x.stats.qlen))
    outer.add_row(q)
    if sb.classes:
        c = Table("dev", "kind", "class", "parent", "rate", "ceil", "pkts", "drops",
                  title="classes", box=None, expand=True, header_style="bold")
        for k in sb.classes:
            c.add_row(k.dev, k.kind, k.handle, k.parent, fmt_rate(k.rate_bps),
                      fmt_rate(k.ceil_bps), str(k.stats.packets), str(k.stats.drops))
        outer.add_row(c)
    f = Table("dev", "parent", "kind", "prio", "proto", "action", "target", "pkts", "bytes",
              "last used", title="filters", box=None, expand=True, header_style="bold")
    for flt in sb.filters:
        for a in flt.actions or ():
            f.add_row(flt.dev, flt.parent, flt.kind + (" match-all" if flt.match_all else ""),
                      str(flt.prio), flt.protocol,
                      f"{a.kind} {a.direction or ''} {a.action or ''}".strip(),
                      a.target or "-", str(a.stats.packets), str(a.stats.bytes),
                      last_used(a, now))
    outer.add_row(f)
    return outer


def _kv(rows: list[tuple[str, Any]]) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, v if isinstance(v, Text) else Text(str(v if v not in (None, "") else "-")))
    return t


def _vmm_panel(sb: Sandbox, p: Palette) -> Table:
    v = sb.vmm
    if v is None:
        return _kv([("vmm", "not collected")])
    rows: list[tuple[str, Any]] = [
        ("source", v.source), ("status", v.status), ("reason", v.reason),
        ("error", Text(v.error, style=p.bad) if v.error else None), ("name", v.name),
        ("version", v.version), ("machine", f"{v.machine or '-'} accel={v.accel or '-'}"),
        ("vCPUs", f"{v.vcpus or '-'} threads {list(v.vcpu_threads) or '-'}"),
        ("memory", f"{fmt_bytes(v.memory_bytes)} plugged {fmt_bytes(v.plugged_memory_bytes)}"),
        ("devices", ", ".join(v.devices)), ("chardevs", ", ".join(v.chardevs)),
        ("taps held", ", ".join(v.taps_held)), ("vhost-net fds", v.vhost_net_fds),
        ("query", f"{v.query_ms} ms, {max(0.0, time.time() - v.queried_at):.0f}s ago"
                  if v.query_ms is not None and v.queried_at is not None
                  else f"{v.query_ms} ms" if v.query_ms is not None else None),
    ]
    for n in v.nics:
        rf = n.rx_filter or {}
        line = (f"{n.model} mac {n.mac} tap {n.tap or '-'} vhost {n.vhost} queues "
                f"{n.queues} promisc {rf.get('promiscuous', '-')} multicast "
                f"{rf.get('multicast_table', '-')}")
        if n.rx_bytes is not None or n.tx_bytes is not None:
            line += (f" · VMM counters rx {fmt_bytes(n.rx_bytes)}/{n.rx_frames} frames "
                     f"tx {fmt_bytes(n.tx_bytes)}/{n.tx_frames} frames")
        if n.rx_rate_bps or n.tx_rate_bps:
            line += f" · VMM limits rx {n.rx_rate_bps or '-'} tx {n.tx_rate_bps or '-'} bit/s"
        rows.append((f"nic {n.netdev or '?'}", line))
    # where each fact came from (an API path, /proc, the command line)
    rows += [(f"from: {fact}", where) for fact, where in sorted(v.sources.items())]
    return _kv(rows)


def _vfs_panel(sb: Sandbox, p: Palette) -> Table:
    rows: list[tuple[str, Any]] = []
    for v in sb.virtiofsd:
        rows += [("pid", f"{v.pid} {'alive' if v.alive else 'DEAD'}"), ("socket", v.socket),
                 ("shared dir", v.shared_dir), ("cache", v.cache),
                 ("thread pool", v.thread_pool_size),
                 ("rate-limit flags", " ".join(v.rate_limit_flags) or "none"),
                 ("open-files limit", v.rlimit_nofile or "virtiofsd's default"),
                 ("cpu / rss", f"{v.cpu_percent if v.cpu_percent is not None else '-'}% / "
                               f"{fmt_bytes(v.rss_bytes)}"),
                 ("io", f"read {fmt_bytes(v.read_bytes)} write {fmt_bytes(v.write_bytes)}")]
    return _kv(rows or [("virtiofsd", "none found")])


def _procs_panel(sb: Sandbox, _p: Palette) -> Table:
    t = Table("role", "pid", "cpu%", "rss", "threads", "command", box=None, expand=True,
              header_style="bold")
    for role, proc in (("shim", sb.shim), ("vmm", sb.vmm_proc)):
        if proc:
            t.add_row(role, str(proc.pid), f"{proc.cpu_percent:.1f}"
                      if proc.cpu_percent is not None else "-", fmt_bytes(proc.rss_bytes),
                      str(proc.threads or "-"), " ".join(proc.cmdline)[:200])
    if sb.shim_monitor is not None:
        t.add_row("", "", "", "", "", f"management socket (shim-monitor.sock): "
                  f"{sb.shim_monitor}")
    return t


def _problems_panel(sb: Sandbox, p: Palette) -> Table:
    return findings_table(sb.findings, p, "no problems found", sb.errors)


class DetailScreen(KataScreen):
    BINDINGS = [
        Binding("escape", "back", "Back", id="back"),
        Binding("d", "redirect", "Redirect…", id="redirect"),
        Binding("l", "ratelimit", "Rate limit…", id="ratelimit"),
        Binding("D", "drops", "Drops (trace)", show=False, id="drops"),
    ]

    def __init__(self, sandbox_id: str) -> None:
        super().__init__()
        self.sandbox_id = sandbox_id
        self._sb: Sandbox | None = None
        self._shown: dict[str, object] = {}  # what each part shows now
        self._shape: dict[str, object] = {}  # what its height depends on

    def compose(self) -> ComposeResult:
        yield from self.chrome()
        with VerticalScroll(id="detail-body"):
            yield Static(id="title")
            yield Static(id="datapath")
            yield Static(id="detail-drops")
            yield Static(id="history")
            with TabbedContent():
                for pane_id, title in (("problems", "Problems"), ("links", "Links"),
                                       ("tc", "tc"), ("vmm", "VMM"), ("vfs", "virtiofsd"),
                                       ("procs", "Processes"), ("events", "Events"),
                                       ("json", "JSON")):
                    with TabPane(title, id=f"tab-{pane_id}"):
                        yield Static(id=f"panel-{pane_id}", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        if self.kapp.drops is not None:
            self.show_drops(self.kapp.drops)  # shows the snapshot too
        elif self.kapp.snapshot is not None:
            self.show_snapshot(self.kapp.snapshot)
        self.kapp.tell_source_what_is_on_screen()

    def ids_on_screen(self) -> list[str]:
        return [self.sandbox_id]

    def show_snapshot(self, snap: Snapshot) -> None:
        sb = snap.find(self.sandbox_id)
        self._sb = sb
        if sb is None:
            self._put_text("title", Text(f"sandbox {self.sandbox_id[:12]} is gone (removed "
                                         "from the node); Esc goes back",
                                         style=palette_of(self.app).bad_strong))
            return
        head = Text()
        head.append(label(sb), style="bold")
        head.append(f" · {sb.id}\n", style=MUTED)
        pid = f" pid {sb.hypervisor.pid}" if sb.hypervisor.pid else " (no pid recorded)"
        # an endpoint other than Kata's usual veth is named (a netkit one Kata cannot attach)
        odd = f" ({sb.endpoint} endpoint)" if sb.endpoint not in (None, "virtual", "veth") \
            else ""
        head.append(f"{sb.runtime} runtime · {sb.hypervisor.kind}{pid} · "
                    f"{sb.state} · {sb.network_model}{odd} · netns "
                    f"{sb.netns.name or sb.netns.path} · in "
                    f"{fmt_rate(rates.vm(sb).in_bps)} out "
                    f"{fmt_rate(rates.vm(sb).out_bps)}{lost_text(sb)}")
        self._put_text("title", head)
        p = palette_of(self.app)
        dead = self.kapp.drops.for_sandbox(sb.id) if self.kapp.drops else ()
        self._put("datapath", (sb.links, sb.redirects, sb.vmm, sb.hypervisor, sb.tap_name,
                               tuple(sb.rates.items()),
                               tuple((f.severity, f.summary) for f in sb.findings), p, dead),
                  (sb.network_model, sum(f.severity != "info" for f in sb.findings), dead),
                  lambda: datapath(sb, p, hop_marks(dead)))
        self._put_text("history", self._history_text(sb, snap, p))
        self._show_panel()

    def _history_text(self, sb: Sandbox, snap: Snapshot, p: Palette) -> Text:
        """The last 15 minutes into and out of the VM, with ▲ where this sandbox's events
        happened (the app keeps the history for every sandbox, so it is there on opening)."""
        points = self.kapp.traffic.points(sb.id)
        cols_in, cols_out = resample(points, GRAPH_W, snap.taken_at)
        raw_in = [v for _t, v, _o in points]
        raw_out = [o for _t, _v, o in points]
        hist = Text()
        for name, cols, raw in (("into VM ", cols_in, raw_in), ("out of VM", cols_out,
                                                                  raw_out)):
            hist.append(f"{name} ", style="bold")
            known = [c for c in cols if c is not None]
            top = [" "] * (len(cols) - len(known))  # before the first sample: no data
            hist.append("".join(top) + sparkline(known), style=p.value)
            hist.append(f" {fmt_rate(raw[-1] if raw else None)}"
                        f"  peak {fmt_rate(max(raw) if raw else None)}\n")
        times = [e.at for e in self.kapp.events if e.sandbox_id == sb.id]
        hist.append("events    ", style=MUTED)
        hist.append(marks(times, GRAPH_W, snap.taken_at), style=p.warn)
        hist.append("  the last 15 min", style=MUTED)
        return hist

    # Each cycle repaints only what changed, and asks for a layout pass (which repaints the
    # whole screen) only when a part's height may have changed. Only the visible tab is fed;
    # another tab is filled when it is opened.
    def _put(self, widget_id: str, key: object, shape: object,
             build: Callable[[], RenderableType]) -> None:
        """Show build() in the Static unless key (what it shows) is unchanged; re-layout
        only when shape (what its height depends on) changed."""
        if self._shown.get(widget_id) == key:
            return
        self._shown[widget_id] = key
        layout = self._shape.get(widget_id) != shape
        self._shape[widget_id] = shape
        self.query_one(f"#{widget_id}", Static).update(build(), layout=layout)

    def _put_text(self, widget_id: str, text: Text) -> None:
        key = (text.plain, tuple(text.spans))
        if self._shown.get(widget_id) == key:
            return
        widget = self.query_one(f"#{widget_id}", Static)
        width = max(1, widget.content_size.width or self.size.width)
        self._put(widget_id, key, len(text.wrap(self.app.console, width)), lambda: text)

    def _show_panel(self) -> None:
        sb = self._sb
        if sb is None:
            return
        tab = self.query_one(TabbedContent).active.removeprefix("tab-")
        key: object
        shape: object
        build: Any
        if tab == "problems":
            key = (sb.errors, tuple((f.severity, f.code, f.summary, f.fix) for f in sb.findings))
            shape, build = key, _problems_panel
        elif tab == "links":
            key = (sb.links, tuple(rates.link(sb, lk.name) for lk in sb.links))
            shape, build = len(sb.links), _links_table
        elif tab == "tc":
            # ages count up to the snapshot's time (a replay shows them as recorded)
            snap = self.kapp.snapshot
            now = snap.taken_at if snap is not None else time.time()
            key = (sb.qdiscs, sb.classes, sb.filters, int(now))
            shape = (len(sb.qdiscs), len(sb.classes), len(sb.filters))
            build = lambda sb_, p_: _tc_tables(sb_, p_, now)  # noqa: E731
        elif tab == "vmm":
            age = int(time.time() - sb.vmm.queried_at) if sb.vmm and sb.vmm.queried_at else 0
            key, shape, build = (sb.vmm, age), sb.vmm, _vmm_panel
        elif tab == "vfs":
            key, shape, build = sb.virtiofsd, len(sb.virtiofsd), _vfs_panel
        elif tab == "procs":
            key = (sb.shim, sb.vmm_proc, sb.shim_monitor)
            shape, build = (sb.shim is None, sb.vmm_proc is None), _procs_panel
        elif tab == "events":
            mine = [e for e in self.kapp.events if e.sandbox_id == sb.id]
            key, shape = (len(mine), mine[-1] if mine else None), len(mine)
            build = lambda _sb, p: events_table(  # noqa: E731
                mine, p, "no events for this sandbox since kata-top started")
        else:
            snap = self.kapp.snapshot
            doc = json.dumps(sandbox_to_dict(sb, snap.taken_at if snap else time.time()),
                             indent=2)
            key, shape, build = doc, doc.count("\n"), lambda _sb, _p: JSON(doc)
        p = palette_of(self.app)  # a theme change redraws: the palette is part of the key
        self._put(f"panel-{tab}", (key, p), shape, lambda: build(sb, p))

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self._show_panel()

    def action_drops(self) -> None:
        self.kapp.trace_drops(self.sandbox_id, label(self._sb) if self._sb else "sandbox")

    def show_drops(self, rep: DropReport) -> None:
        box = self.query_one("#detail-drops", Static)
        box.add_class("shown")
        box.update(drops_table(rep, palette_of(self.app), self.sandbox_id))
        if self.kapp.snapshot is not None:
            self.show_snapshot(self.kapp.snapshot)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_redirect(self) -> None:
        self.kapp.start_action("redirect", self.sandbox_id)

    def action_ratelimit(self) -> None:
        self.kapp.start_action("ratelimit", self.sandbox_id)

