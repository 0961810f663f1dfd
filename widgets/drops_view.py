"""The dashboard's drop trace: a key on the overview and in a sandbox's detail asks the
source for one (never otherwise), in a worker; progress and the report reach the app as
messages, and the screens show the report where it applies (the overview's drops pane, the
detail's datapath marks the hop where packets die)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text
from textual.message import Message

from kata_top.drops.model import HOP_LABEL, HOPS, DropReport, Hop, SandboxDrops
from kata_top.widgets.palette import MUTED, STRONG, Palette

if TYPE_CHECKING:
    from kata_top.sources.base import Source

TRACE_SECONDS = 10


class DropsProgress(Message):
    def __init__(self, left: int, total: int) -> None:
        super().__init__()
        self.left, self.total = left, total


class DropsReady(Message):
    def __init__(self, report: DropReport | None, error: str | None) -> None:
        super().__init__()
        self.report, self.error = report, error


class DropTracing:
    """Mixed into the app: at most one trace, started by a key, results as messages."""

    source: Source
    drops: DropReport | None = None
    drops_status: str | None = None  # "drops: 7 s left" while a trace runs
    _drops_stop: threading.Event | None = None

    def trace_drops(self, sandbox_id: str | None, target: str) -> None:
        app: Any = self
        if self._drops_stop is not None:
            app.notify("a drop trace is already running", severity="warning", timeout=4)
            return
        stop = self._drops_stop = threading.Event()
        self.drops_status = f"drops: starting a {TRACE_SECONDS} s trace"
        app.notify(f"tracing the kernel's drops for {TRACE_SECONDS} s ({target}); the key "
                   "again shows it", timeout=4)
        app.update_header()
        shown = {"left": -1}

        def progress(left: float, total: float) -> None:
            whole = int(left + 0.999)
            if whole != shown["left"]:
                shown["left"] = whole
                app.post_message(DropsProgress(whole, int(total)))

        def run() -> None:
            try:
                rep = self.source.trace_drops(TRACE_SECONDS, sandbox_id, progress, stop.is_set)
            except Exception as exc:  # the source's one sentence (no bpftrace, no root, …)
                app.post_message(DropsReady(None, str(exc)))
                return
            app.post_message(DropsReady(rep, None))

        app.run_worker(run, thread=True, group="drops", exit_on_error=False)

    def stop_drops(self) -> None:
        if self._drops_stop is not None:
            self._drops_stop.set()

    def on_drops_progress(self, message: DropsProgress) -> None:
        self.drops_status = f"drops: tracing, {message.left} s left of {message.total}"
        self.update_header()  # type: ignore[attr-defined]

    def on_drops_ready(self, message: DropsReady) -> None:
        app: Any = self
        self._drops_stop = None
        self.drops_status = None
        app.update_header()
        if message.error is not None:
            app.notify(f"drops: {message.error}", severity="error", timeout=10)
            return
        rep = self.drops = message.report
        assert rep is not None
        app.notify(f"drops: {rep.total} in {rep.traced_seconds:.0f} s, "
                   f"{len(rep.sandboxes)} sandbox sides", timeout=6)
        for screen in app.visible_screens():
            show = getattr(screen, "show_drops", None)
            if show is not None:
                show(rep)


def hop_marks(drops: tuple[SandboxDrops, ...]) -> dict[Hop, list[tuple[str, int]]]:
    """Per hop, the reasons and counts where this sandbox's packets died."""
    out: dict[Hop, list[tuple[str, int]]] = {}
    for s in drops:
        for d in s.drops:
            out.setdefault(d.hop, []).append((d.reason, d.count))
    return out


def drops_table(rep: DropReport, p: Palette, sandbox_id: str | None = None,
                limit: int = 40) -> Table | Text:
    """The report as a table: pod, side, hop, reason, count, device, function, meaning."""
    rows = [s for s in rep.sandboxes if sandbox_id is None or s.sandbox_id == sandbox_id]
    head = Text(f"drops traced {rep.traced_seconds:.0f} s: ", style=STRONG)
    if not rows:
        head.append("none here" if sandbox_id else f"none in any sandbox ({rep.total} "
                    "elsewhere on the node)", style=MUTED)
        return head
    t = Table("pod", "side", "hop", "reason", "count", "device", "function", "meaning",
              title=head, title_justify="left", expand=True, box=None)
    lines = sorted(((s, d) for s in rows for d in s.drops),
                   key=lambda sd: (HOPS.index(sd[1].hop), -sd[1].count))
    for s, d in lines[:limit]:
        t.add_row(s.pod or s.sandbox_id[:12], s.side, HOP_LABEL[d.hop],
                  Text(d.reason, style=p.bad_strong), str(d.count), d.device or "-",
                  d.function, Text(d.meaning, style=MUTED))
    return t
