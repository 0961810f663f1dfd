"""The fleet console: every Kata node (from Prometheus), then one node's sandboxes, then —
through that node's `kata-top serve` — the node dashboard's own detail screen.

The same table, keys, filter, sort, themes and help as the node dashboard (TableScreen with
another RowModel). Collection runs in a worker thread; a failed round keeps the last good
data on screen under a banner with the reason.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from kata_top import themes
from kata_top.fleet.model import FleetSnapshot
from kata_top.fleet.query import ALL
from kata_top.settings import Settings
from kata_top.sources.base import SourceError
from kata_top.widgets.fleet_columns import NODES, SANDBOXES_OF_NODE
from kata_top.widgets.header import HeaderBar
from kata_top.widgets.modals import HelpScreen
from kata_top.widgets.palette import MUTED, palette_of
from kata_top.widgets.sandbox_table import SandboxTable
from kata_top.widgets.table_screen import TableScreen

MIN_W, MIN_H = 80, 24
OpenRequest = tuple[str, str, str]  # ("open", serve URL, sandbox id)


class FleetReady(Message):
    def __init__(self, snapshot: FleetSnapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class FleetFailed(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class _FleetTable(TableScreen):
    """What the fleet's two table screens share: header, size notice, banner, table."""

    @property
    def fapp(self) -> FleetApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        yield Static(f"kata-top needs at least {MIN_W}×{MIN_H}; enlarge the terminal",
                     id="too-small")
        yield Static(id="banner")
        yield from self.table_parts()
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(SandboxTable).set_width(self.size.width or 120)
        if self.fapp.snapshot is not None:
            self.show_fleet(self.fapp.snapshot)

    def show_fleet(self, snap: FleetSnapshot) -> None:
        raise NotImplementedError


class FleetScreen(_FleetTable):
    MODEL = NODES
    FILTER_PLACEHOLDER = "filter: node name (! negates), Enter keeps, Esc clears"

    def show_fleet(self, snap: FleetSnapshot) -> None:
        self.query_one(SandboxTable).show(snap.nodes)

    def open_row(self, row_id: str) -> None:
        self.app.push_screen(NodeScreen(row_id))


class NodeScreen(_FleetTable):
    """One node's sandboxes as the metrics tell them; Enter opens the node's own detail."""

    MODEL = SANDBOXES_OF_NODE
    BINDINGS: ClassVar[list[BindingType]] = [Binding("backspace,left", "back", "Back",
                                                     id="back")]

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def on_mount(self) -> None:
        # The fleet screen's rounds ask for nodes only; from now on they also ask for this
        # node's sandboxes, starting at once. (_FleetTable.on_mount runs after this one:
        # Textual calls every class's handler along the MRO.)
        self.fapp.focus(self.node)

    def on_unmount(self) -> None:
        self.fapp.focus(None)

    def show_fleet(self, snap: FleetSnapshot) -> None:
        if snap.sandboxes_of in (self.node, ALL):  # else: a round from before this screen
            self.query_one(SandboxTable).show([s for s in snap.sandboxes
                                               if s.node == self.node])

    def open_row(self, row_id: str) -> None:
        self.fapp.open_sandbox(self.node, row_id)

    def action_clear_filter(self) -> None:
        table = self.query_one(SandboxTable)
        if table.filter_text:
            super().action_clear_filter()
        else:
            self.action_back()  # Esc with no filter goes back, as on the node dashboard

    def action_back(self) -> None:
        self.app.pop_screen()


class FleetApp(App[OpenRequest | None]):
    TITLE = "kata-top fleet"
    CSS_PATH = themes.TCSS_PATH
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("p,space", "pause", "Pause", id="pause"),
        Binding("r", "refresh_now", "Refresh", show=False, id="refresh"),
        Binding("t", "cycle_theme", "Theme", show=False, id="theme"),
    ]
    HELP_SECTIONS: ClassVar[tuple[tuple[str, list[BindingType]], ...]] = (
        ("everywhere", BINDINGS), ("nodes and a node's sandboxes", [
            *TableScreen.BINDINGS, *NodeScreen.BINDINGS]))

    def __init__(self, source: Any, refresh: float, theme: str, settings: Settings) -> None:
        super().__init__()
        self.source = source
        self.refresh_s = refresh
        self.settings = settings
        self._initial_theme = theme
        self.snapshot: FleetSnapshot | None = None
        self.error: str | None = None
        self.paused = False
        self._timer: Any = None
        self._received = 0.0

    def on_mount(self) -> None:
        themes.install(self, self._initial_theme, self.settings.keymap)
        self.push_screen(FleetScreen())
        self.set_interval(1.0, self.update_header)
        self.collect()

    @work(thread=True, exclusive=True, exit_on_error=False, group="fleet")
    def collect(self) -> None:
        try:
            self.post_message(FleetReady(self.source.next()))
        except SourceError as exc:
            self.post_message(FleetFailed(str(exc)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "fleet":
            return
        if event.state == WorkerState.ERROR:
            self.post_message(FleetFailed(f"{type(event.worker.error).__name__}: "
                                          f"{event.worker.error}"))
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR) and not self.paused:
            if self._timer is not None:  # a round asked for early (r, a node opened)
                self._timer.stop()
            self._timer = self.set_timer(self.refresh_s, self.collect)

    def on_fleet_ready(self, message: FleetReady) -> None:
        self.snapshot, self.error = message.snapshot, None
        self._received = time.monotonic()
        for screen in self.screen_stack:
            show = getattr(screen, "show_fleet", None)
            if show is not None:
                show(message.snapshot)
        self.update_header()

    def on_fleet_failed(self, message: FleetFailed) -> None:
        self.error = message.reason
        self.update_header()

    def header_text(self) -> Text:
        p = palette_of(self)
        t = Text()
        t.append(" kata-top fleet ", style="bold reverse")
        snap = self.snapshot
        if snap is not None:
            sbs = sum(n.sandboxes for n in snap.nodes)
            t.append(f" {len(snap.nodes)} nodes · {sbs} sandboxes · {snap.prometheus} · every "
                     f"{self.refresh_s:g}s ")
            t.append(time.strftime(" as of %H:%M:%S UTC", time.gmtime(snap.taken_at)),
                     style=MUTED)
            age = time.monotonic() - self._received
            if age > max(3 * self.refresh_s, 30.0) and not self.paused:
                t.append(f" STALE: {age:.0f}s since Prometheus answered ", style=p.bad_strong)
        else:
            t.append(" asking Prometheus…", style=MUTED)
        t.append(" READ-ONLY ", style=p.badge(p.ok))
        if self.paused:
            t.append(" [PAUSED] ", style=p.badge(p.value))
        return t

    def update_header(self) -> None:
        text = self.header_text()
        banner = Text(f" Prometheus: {self.error} — showing the last good data", style=palette_of(
            self).bad_strong) if self.error else Text("")
        for notes in self.snapshot.errors if self.snapshot else ():
            banner.append(f"\n note: {notes}", style=MUTED)
        screen = self.screen
        for header in screen.query(HeaderBar):
            header.show(text)
        for b in screen.query("#banner"):
            if isinstance(b, Static):
                b.update(banner)
                b.set_class(bool(banner.plain), "shown")
        w, h = self.size
        screen.set_class(w < MIN_W or h < MIN_H, "too-small")

    def focus(self, node: str | None) -> None:
        """Whose sandboxes the rounds ask for (None: the nodes only); a new focus is asked
        for at once."""
        if getattr(self.source, "focus", node) != node:
            self.source.focus = node
            if node is not None and not self.paused:
                self.collect()

    def open_sandbox(self, node: str, sandbox_id: str) -> None:
        url = self.source.serve_urls.get(node)
        if not url:
            self.notify(f"the detail of a sandbox needs its node: no kata-top serve address is "
                        f"known for {node} (its scrape target has no instance label); the "
                        "metrics above are all Prometheus holds", severity="warning",
                        timeout=8)
            return
        self.exit(("open", url, sandbox_id))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen, False))

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.collect()
        elif self._timer is not None:
            self._timer.stop()
        self.update_header()

    def action_refresh_now(self) -> None:
        self.collect()

    def action_cycle_theme(self) -> None:
        names = list(themes.CYCLE)
        self.theme = names[(names.index(self.theme) + 1) % len(names)] \
            if self.theme in names else names[0]
