"""kata-top's Textual app: a collection loop in a thread worker feeding the screens.

The next cycle is scheduled only when the previous one ended (a slow node never stacks
polls); snapshots reach the screens as one message per cycle; inotify wakes the loop early
when sandboxes come and go. Widgets never read the kernel or QEMU: the source does.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Static
from textual.worker import Worker, WorkerState

from kata_top import rates, themes
from kata_top.history import TrafficHistory
from kata_top.model import Event, Sandbox, Snapshot
from kata_top.requests import ActionError, ActionRequest, RedirectRequest
from kata_top.same_object import SameObjectMemo
from kata_top.select import label
from kata_top.settings import Settings
from kata_top.sources.base import Source
from kata_top.widgets.drops_view import DropTracing
from kata_top.widgets.header import HeaderBar
from kata_top.widgets.modals import ActionScreen, ConfirmScreen, HelpScreen, HostScreen
from kata_top.widgets.palette import MUTED, palette_of
from kata_top.widgets.screens import DetailScreen, OverviewScreen

if TYPE_CHECKING:
    from kata_top.actions import Plan

MIN_W, MIN_H = 80, 24
EVENTS_KEPT = 2000
REFRESH_STEPS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


def _vm_traffic(sb: Any) -> tuple[float, float]:
    vm = rates.vm(sb)
    return vm.in_bps or 0.0, vm.out_bps or 0.0


class SnapshotReady(Message):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class SandboxCommands(Provider):
    """Command palette: jump to any sandbox."""

    async def search(self, query: str) -> Hits:
        app: KataTopApp = self.app  # type: ignore[assignment]
        matcher = self.matcher(query)
        for sb in app.snapshot.sandboxes if app.snapshot else ():
            text = f"open {label(sb)} ({sb.id[:12]}, {sb.state})"
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(app.open_sandbox, sb.id),
                          help=f"{sb.network_model}, {sb.hypervisor.kind}")


class KataTopApp(DropTracing, App[int]):
    TITLE = "kata-top"
    CSS_PATH = themes.TCSS_PATH
    COMMANDS = App.COMMANDS | {SandboxCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("p,space", "pause", "Pause", id="pause"),
        Binding("plus", "faster", "Faster", show=False, id="faster"),
        Binding("minus", "slower", "Slower", show=False, id="slower"),
        Binding("r", "refresh_now", "Refresh", show=False, id="refresh"),
        Binding("t", "cycle_theme", "Theme", show=False, id="theme"),
        Binding("n", "step(1)", "Step", show=False, id="step"),
        Binding("b", "step(-1)", "Step back", show=False, id="step-back"),
        Binding("right_square_bracket", "step(10)", "Seek +10", show=False, id="seek-forward"),
        Binding("left_square_bracket", "step(-10)", "Seek -10", show=False, id="seek-back"),
    ]


    def __init__(self, source: Source, refresh: float, theme: str, settings: Settings,
                 replay_warning: str | None = None, watch: bool = False,
                 initial_sandbox: str | None = None) -> None:
        super().__init__()
        self._initial_sandbox = initial_sandbox  # opened once it is in a snapshot
        self.source = source
        self.refresh_s = refresh
        self.settings = settings
        self._initial_theme = theme
        self._watch = watch
        self._collecting = False
        self._again = False
        self._timer: Any = None
        self._seeking = threading.Lock()  # replay steps, one at a time (see _seek)
        self._replay_warning = replay_warning
        self._last_error: str | None = None
        # Plain attributes, not reactives: a reactive on the App repaints the whole screen
        # (the 200-row table included) every time it is set.
        self.snapshot: Snapshot | None = None
        self.paused = False
        # every event this session saw (a recording's, as it is played), newest last
        self.events: deque[Event] = deque(maxlen=EVENTS_KEPT)
        self.traffic = TrafficHistory()  # 15 minutes per sandbox for the detail's graph
        # each sandbox's VM traffic, kept while it is the very same object (an idle one)
        self._traffic_of: SameObjectMemo[Sandbox, tuple[float, float]] = SameObjectMemo()

    # ---- lifecycle -------------------------------------------------------------------
    def on_mount(self) -> None:
        themes.install(self, self._initial_theme, self.settings.keymap)
        self.push_screen(OverviewScreen())
        self.set_interval(0.5, self.update_header)
        self.call_after_refresh(self._update_size_notice)
        if self._replay_warning:
            self.notify(self._replay_warning, severity="warning", timeout=8)
        for notice in self.source.notices():  # a change of kata-top's left unfinished
            self.notify(notice, severity="warning", timeout=20)
        if self._watch:
            # The source calls back from its watcher thread: hop onto the UI thread.
            problem = self.source.start_watching(self.wake_from_watcher)
            if problem:
                self.notify(problem, severity="warning")
        self.collect()

    def on_unmount(self) -> None:
        self.stop_drops()
        self.source.close()

    # ---- the collection loop -----------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="collect")
    def collect(self) -> None:
        self._collecting = True
        snap = self.source.next()
        self.post_message(SnapshotReady(snap))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == "seek" and event.state == WorkerState.ERROR:
            self.notify(f"replay: {event.worker.error}", severity="error", timeout=6)
        if event.worker.group != "collect":
            return
        if event.state == WorkerState.ERROR:
            err = str(event.worker.error)
            if err != self._last_error:
                # a remote node's words: shown as they are, never read as markup
                self.notify(f"collection failed: {err}", severity="error", timeout=6,
                            markup=False)
            self._last_error = err
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self._collecting = False
            if self._again:
                self._again = False
                self._schedule(0.0)
            elif not self.paused:
                self._schedule(self.refresh_s)

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(max(delay, 0.01), self._tick)

    def _tick(self) -> None:
        if not self._collecting:
            self.collect()

    def wake_from_watcher(self) -> None:
        """The inotify watcher's thread: a sandbox came or went."""
        # the app may have exited meanwhile (its loop closed): nothing to wake then
        with contextlib.suppress(RuntimeError):
            self.call_from_thread(self._wake)

    def _wake(self) -> None:
        """Something changed on disk: collect now, or right after the running cycle."""
        if self.paused:
            return
        if self._collecting:
            self._again = True
        else:
            self._schedule(0.0)

    def visible_screens(self) -> list[Screen[Any]]:
        """The top screen and, under modals, the screen they float over. A screen hidden under
        another full screen is not drawn to: Textual would repaint the top screen wherever
        the hidden one changed (the whole 200-row overview under a detail screen)."""
        out: list[Screen[Any]] = []
        for screen in reversed(self.screen_stack):
            out.append(screen)
            if not isinstance(screen, ModalScreen):
                break
        return out

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self._last_error = None
        if message.snapshot is not self.snapshot:  # a replay paused on one step: once
            snap = message.snapshot
            self.events.extend(snap.events)
            self.traffic.add(snap.taken_at, ((sb.id, *self._traffic_of.get(sb.id, sb,
                                                                            _vm_traffic))
                                             for sb in snap.sandboxes))
            self._traffic_of.end_round()
        self.snapshot = message.snapshot
        if self._initial_sandbox and message.snapshot.find(self._initial_sandbox):
            sid, self._initial_sandbox = self._initial_sandbox, None
            self.call_after_refresh(self.open_sandbox, sid)
        visible = self.visible_screens()
        for screen in self.screen_stack:
            if screen in visible:
                show = getattr(screen, "show_snapshot", None)
            else:  # e.g. the overview under a detail screen: keep its trends, draw later
                show = getattr(screen, "note_snapshot", None)
            if show is not None:
                show(message.snapshot)
        self.update_header()
        self.tell_source_what_is_on_screen()

    def tell_source_what_is_on_screen(self) -> None:
        """The sandboxes the operator looks at: a live source reads their every counter each
        cycle (the others only every few seconds, unless their namespace notifies a
        change)."""
        ids: list[str] = []
        for screen in self.visible_screens():
            on_screen = getattr(screen, "ids_on_screen", None)
            if on_screen is not None:
                ids.extend(on_screen())
        self.source.watch_closely(ids)

    # ---- header --------------------------------------------------------------------------
    def header_text(self) -> Text:
        snap = self.snapshot
        p = palette_of(self)
        t = Text()
        t.append(" kata-top ", style="bold reverse")
        if snap is not None:
            t.append(f" {snap.host.node} · {snap.host.kernel} · {len(snap.sandboxes)} sandboxes")
        t.append(f" · every {self.refresh_s:g}s ")
        t.append(" WRITE " if self.write else " READ-ONLY ",
                 style=p.badge(p.warn) if self.write else p.badge(p.ok))
        if self.paused:
            t.append(" [PAUSED] ", style=p.badge(p.value))
        if self.source.seekable:
            t.append(f" REPLAY {self.source.position()} ", style=p.badge(p.accent))
        if self.source.kind == "remote":
            t.append(f" REMOTE {self.source.label} ", style=p.badge(p.value))
        if snap is not None and self.source.seekable:
            t.append(time.strftime(" recorded %Y-%m-%d %H:%M:%S UTC", time.gmtime(snap.taken_at)),
                     style=MUTED)
        elif snap is not None:
            age = time.time() - snap.taken_at
            stale = age > max(3 * self.refresh_s, 3.0) and not self.paused
            if self.paused or age >= max(2 * self.refresh_s, 2.0):
                t.append(f" data {int(age)}s old", style=p.bad_strong if stale else MUTED)
            else:
                # fresh: no age ticking by tenths twice a second, each tick a repaint
                t.append(" live", style=MUTED)
            if stale:
                t.append(" STALE: the collector is slow or stuck ", style=p.bad_strong)
        else:
            t.append(" collecting…", style=MUTED)
        if self.drops_status:
            t.append(f" {self.drops_status} ", style=p.badge(p.warn))
        if snap is not None:
            crit = sum(1 for f in snap.host_findings if f.severity != "info")
            if crit:
                t.append(f" host: {crit} findings (h)", style=p.warn)
        return t

    def update_header(self) -> None:
        text = self.header_text()
        for screen in self.visible_screens():
            for header in screen.query(HeaderBar):
                header.show(text)

    def _update_size_notice(self) -> None:
        w, h = self.size
        small = w < MIN_W or h < MIN_H
        for screen in self.screen_stack:
            screen.set_class(small, "too-small")
            if small:
                for msg in screen.query("#too-small"):
                    if isinstance(msg, Static):
                        msg.update(f"terminal is {w}×{h}; kata-top needs at least "
                                   f"{MIN_W}×{MIN_H} — enlarge the window (q quits)")

    def on_resize(self) -> None:
        self._update_size_notice()
        self.update_header()

    def on_screen_resume(self) -> None:
        self._update_size_notice()

    # ---- actions ---------------------------------------------------------------------------
    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen, self.write))

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self._schedule(0.0)
        elif self._timer is not None:
            self._timer.stop()
        self.update_header()

    def _set_refresh(self, step: int) -> None:
        idx = min(range(len(REFRESH_STEPS)), key=lambda i: abs(REFRESH_STEPS[i] -
                                                                 self.refresh_s))
        self.refresh_s = REFRESH_STEPS[max(0, min(len(REFRESH_STEPS) - 1, idx + step))]
        self.notify(f"refresh every {self.refresh_s:g}s", timeout=1.5)
        self.update_header()

    def action_faster(self) -> None:
        self._set_refresh(-1)

    def action_slower(self) -> None:
        self._set_refresh(1)

    def action_refresh_now(self) -> None:
        self.source.refresh_all()  # VMM monitors too, not only what changes every cycle
        self._wake() if not self.paused else self._schedule(0.0)

    def action_cycle_theme(self) -> None:
        names = list(themes.CYCLE)
        nxt = names[(names.index(self.theme) + 1) % len(names)] if self.theme in names \
            else names[0]
        self.theme = nxt
        self.settings.theme = nxt
        try:
            self.settings.save()
        except OSError as exc:
            self.notify(f"theme not saved: {exc}", severity="warning")
        self.notify(f"theme {nxt}", timeout=1.5)

    def action_step(self, delta: int) -> None:
        if not self.source.seekable:
            self.notify("step and seek work in --replay", timeout=2)
            return
        self.paused = True
        self._seek(delta)

    @work(thread=True, exit_on_error=False, group="seek")
    def _seek(self, delta: int) -> None:
        # off the UI thread: a recording reads and builds the step it lands on (a large node's
        # step takes a noticeable moment, bench/replay.py). Steps pressed in a row run one at
        # a time, each posting what it reached before the next moves on: the last one drawn
        # is where the cursor stands.
        with self._seeking:
            self.post_message(SnapshotReady(self.source.seek(delta)))

    def open_sandbox(self, sandbox_id: str) -> None:
        if isinstance(self.screen, DetailScreen):
            self.pop_screen()
        self.push_screen(DetailScreen(sandbox_id))

    def show_host(self) -> None:
        snap = self.snapshot
        self.push_screen(HostScreen(snap.host_findings if snap else ()))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Pause / resume", "stop or restart collection", self.action_pause)
        yield SystemCommand("Refresh now", "collect immediately", self.action_refresh_now)
        yield SystemCommand("Host findings", "devices, kernel probe, Kata config",
                            self.show_host)
        yield SystemCommand("Next theme", "cycle the themes", self.action_cycle_theme)
        if isinstance(screen, DetailScreen):
            yield SystemCommand("Redirect…", "add or remove a tc redirect",
                                screen.action_redirect)
            yield SystemCommand("Rate limit…", "set or clear Kata's HTB limit",
                                screen.action_ratelimit)

    # ---- write actions: typed requests through the source (it refuses when read-only) ---
    @property
    def write(self) -> bool:
        """Whether this session may change anything (shown in the header and the help)."""
        return not self.source.read_only

    def start_action(self, kind: str, sandbox_id: str) -> None:
        if self.source.read_only:
            # The source would refuse the plan anyway; say why before the dialog opens.
            try:
                self.source.plan(RedirectRequest(sandbox_id, "add", "both"))
            except ActionError as exc:
                self.notify(str(exc), severity="warning", timeout=4)
            return
        snap = self.snapshot
        sb = snap.find(sandbox_id) if snap else None
        target = label(sb) if sb else sandbox_id[:12]

        def chosen(result: ActionRequest | None) -> None:
            if result is not None:
                self._plan(result)

        self.push_screen(ActionScreen(kind, target, sandbox_id), chosen)

    @work(thread=True, exit_on_error=False, group="action")
    def _plan(self, request: ActionRequest) -> None:
        try:
            plan = self.source.plan(request)
        except ActionError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", timeout=8)
            return
        if plan.noop:
            self.call_from_thread(self.notify, plan.noop, timeout=4)
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._apply(plan)

        self.call_from_thread(self.push_screen,
                              ConfirmScreen(plan.title, plan.commands()), confirmed)

    @work(thread=True, exit_on_error=False, group="action")
    def _apply(self, plan: Plan) -> None:
        try:
            outcome = self.source.apply(plan)
        except ActionError as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", timeout=8)
            return
        self.call_from_thread(self.notify, outcome.message,
                              severity="information" if outcome.ok else "error", timeout=8)
        self.call_from_thread(self._wake)
