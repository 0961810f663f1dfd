"""The dashboard's drop trace: only on its key, through the Source, shown in place."""

from __future__ import annotations

import threading
from collections.abc import Callable

from textual.notifications import Notify

from kata_top.drops.attribute import build_report
from kata_top.drops.model import DropCount, DropReport, RawTrace
from kata_top.formats.recording import load_recording
from kata_top.settings import Settings
from kata_top.sources.replay import ReplaySource
from kata_top.widgets.app import KataTopApp
from tests.helpers import RECORDING
from tests.unit.test_ui import settle, shown_text


class TracingReplay(ReplaySource):
    """A recording whose `trace_drops` answers with a canned report (the kernel side has its
    own lab tests); it counts calls, so a trace nobody asked for would show."""

    def __init__(self) -> None:
        snaps, _ = load_recording(RECORDING)
        super().__init__(snaps)
        self.snap = snaps[0]
        self.calls: list[str | None] = []
        self.release = threading.Event()

    def trace_drops(self, seconds: int, sandbox_id: str | None = None,
                    progress: Callable[[float, float], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> DropReport:
        self.calls.append(sandbox_id)
        if progress is not None:
            progress(3.0, float(seconds))
        self.release.wait(10)
        web = next(sb for sb in self.snap.sandboxes if sb.pod.name == "web-0")
        raw = RawTrace((DropCount(web.netns.inode or 0, "tap0_kata", "FULL_RING", 80,
                                  "tun_net_xmit", 812),), float(seconds), float(seconds))
        return build_report(raw, self.snap)


async def test_the_key_traces_through_the_source_and_marks_the_hop() -> None:
    source = TracingReplay()
    app = KataTopApp(source, refresh=3600, theme="kata-dark", settings=Settings())
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        assert source.calls == []  # never by itself
        web = next(sb for sb in source.snap.sandboxes if sb.pod.name == "web-0")
        app.open_sandbox(web.id)
        await settle(pilot)
        await pilot.press("D")
        await pilot.pause(0.2)
        assert "drops:" in str(app.header_text())  # it says it is tracing, and how long
        await pilot.press("D")  # one at a time
        await pilot.pause(0.1)
        source.release.set()
        await settle(pilot)
        assert source.calls == [web.id]
        text = shown_text(app.screen)
        assert "✖ FULL_RING 812" in text  # on the hop where packets die
        assert "the VMM is not reading the tap" in text
        assert "drops:" not in str(app.header_text())
        await pilot.press("escape")  # the overview, under the detail meanwhile, shows it too
        await settle(pilot)
        assert "FULL_RING" in shown_text(app.screen)
        assert source.calls == [web.id]


async def test_a_source_that_cannot_trace_says_why() -> None:
    snaps, _ = load_recording(RECORDING)
    app = KataTopApp(ReplaySource(snaps), refresh=3600, theme="kata-dark", settings=Settings())
    told: list[str] = []

    def hook(message: object) -> None:
        if isinstance(message, Notify):
            told.append(message.notification.message)

    async with app.run_test(size=(160, 48), message_hook=hook) as pilot:
        await settle(pilot)
        await pilot.press("D")
        await settle(pilot)
        await pilot.pause(0.2)
        assert any("a recording has no kernel" in m for m in told), told
        assert app.drops_status is None
