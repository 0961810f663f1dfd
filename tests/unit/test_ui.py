"""The dashboard, driven with Pilot: deterministic on a replayed recording, live on the lab."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from kata_top.formats.recording import load_recording
from kata_top.settings import Settings
from kata_top.sources.live import LiveSource
from kata_top.sources.replay import ReplaySource
from kata_top.widgets.app import KataTopApp
from kata_top.widgets.modals import HelpScreen
from kata_top.widgets.sandbox_table import SandboxTable
from kata_top.widgets.screens import DetailScreen, OverviewScreen
from tests.helpers import ROOT

RECORDING = os.path.join(ROOT, "tests", "data", "demo.ndjson")


@pytest.fixture(autouse=True)
def _own_config(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KATA_TOP_CONFIG", os.path.join(str(tmp_path), "config.json"))


def replay_app(theme: str = "kata-dark") -> KataTopApp:
    snaps, _ = load_recording(RECORDING)
    # A refresh of an hour: the replay stays on its first step unless the test moves it.
    return KataTopApp(ReplaySource(snaps), refresh=3600, theme=theme, settings=Settings())


def shown_text(screen: Any) -> str:
    """The text of every Static and Toast on a screen, rendered as the terminal shows it."""
    from rich.console import Console

    console = Console(width=200, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    for widget in screen.query("Static"):  # Toasts are Statics too
        console.print(widget.content)
    console.file.close()
    return console.export_text()


async def settle(pilot: Any) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def test_overview_lists_every_sandbox() -> None:
    app = replay_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SandboxTable)
        snaps, _ = load_recording(RECORDING)
        assert table.row_count == len(snaps[0].sandboxes)
        assert "READ-ONLY" in str(app.header_text())


async def test_enter_opens_detail_and_esc_goes_back() -> None:
    app = replay_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SandboxTable)
        first = table.selected_id()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen) and app.screen.sandbox_id == first
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, OverviewScreen)


async def test_cursor_stays_on_sandbox_across_sort_and_steps() -> None:
    app = replay_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("j", "j", "j")
        table = app.screen.query_one(SandboxTable)
        chosen = table.selected_id()
        await pilot.press("s", "s", "S")
        await pilot.press("n")  # next recorded snapshot (replay step)
        await settle(pilot)
        assert app.screen.query_one(SandboxTable).selected_id() == chosen


async def test_filter_and_negation() -> None:
    app = replay_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SandboxTable)
        total = table.row_count
        await pilot.press("slash", *"stale")
        await pilot.pause()
        assert table.row_count == 1
        await pilot.press("escape")
        await pilot.press("slash", "!", *"stale", "enter")
        await pilot.pause()
        assert table.row_count == total - 1


async def test_help_lists_every_key_and_greys_writes() -> None:
    app = replay_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = shown_text(app.screen)  # what the help screen shows, as an operator reads it
        for key in ("Enter", "/", "Pause", "Refresh", "Theme", "Quit", "Redirect",
                    "read-only: start with --write"):
            assert key in text
        await pilot.press("escape")


async def test_pause_badge_and_write_keys_explain_themselves() -> None:
    from textual.notifications import Notify

    app = replay_app()
    told: list[str] = []

    def hook(message: object) -> None:  # what the app tells the operator, as it is posted
        if isinstance(message, Notify):
            told.append(message.notification.message)

    async with app.run_test(size=(160, 48), message_hook=hook) as pilot:
        await settle(pilot)
        await pilot.press("p")
        assert "[PAUSED]" in str(app.header_text())
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert any("read-only" in m for m in told)


async def test_too_small_terminal_says_so() -> None:
    app = replay_app()
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(pilot)
        assert app.screen.has_class("too-small")


async def test_empty_run_root_says_how_to_start_the_lab(tmp_path: Any) -> None:
    from kata_top.engine import EngineOptions

    app = KataTopApp(LiveSource(EngineOptions(run_root=str(tmp_path), with_vmm=False)),
                     refresh=3600, theme="kata-dark", settings=Settings())
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        empty = app.screen.query_one("#empty")
        assert empty.has_class("shown")
        assert "kata-top lab up" in str(empty.render())


@pytest.mark.parametrize("args,needle", [
    (["--theme", "purple"], "unknown theme"),
    (["--replay", RECORDING + ".missing"], "cannot open"),
    (["--replay", os.path.join(ROOT, "README.md")], "not a kata-top recording"),
    (["--run-root", "/nonexistent/x"], "does not exist"),
])
def test_bad_dashboard_input(args: list[str], needle: str) -> None:
    out = subprocess.run([sys.executable, "-m", "kata_top", *args], capture_output=True,
                         text=True, cwd=ROOT, check=False, timeout=30)
    assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr


# ---- SVG snapshots (pytest-textual-snapshot), fed by the recording --------------------------
SIZES = [(80, 24), (160, 48)]


async def _to_detail(pilot: Any) -> None:
    """Straight to the sandbox with a lost redirect (the keys are tested elsewhere)."""
    await settle(pilot)
    snap = pilot.app.snapshot
    broken = next(sb for sb in snap.sandboxes if sb.pod.name == "no-out-redirect-3")
    pilot.app.open_sandbox(broken.id)
    await settle(pilot)
    # The same snapshot arriving again (as it can, racing the mount) must not change a thing.
    from kata_top.widgets.app import SnapshotReady

    pilot.app.post_message(SnapshotReady(snap))
    await settle(pilot)


async def _help(pilot: Any) -> None:
    await settle(pilot)
    await pilot.press("question_mark")
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_overview(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(replay_app(), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_detail(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(replay_app(), terminal_size=size, run_before=_to_detail)


@pytest.mark.parametrize("size", SIZES)
def test_snapshot_help(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(replay_app(), terminal_size=size, run_before=_help)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("theme", ["kata-light", "kata-high-contrast", "ansi-dark"])
def test_snapshot_themes(snap_compare: Any, theme: str, size: tuple[int, int]) -> None:
    assert snap_compare(replay_app(theme=theme), terminal_size=size, run_before=settle)


# ---- live behaviour on a lab of the test's own -----------------------------------------------


async def test_keymap_from_config_remaps_a_binding() -> None:
    snaps, _ = load_recording(RECORDING)
    app = KataTopApp(ReplaySource(snaps), refresh=3600, theme="kata-dark",
                     settings=Settings(keymap={"pause": "z"}))
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("z")
        assert app.paused


async def test_theme_key_cycles_and_persists() -> None:
    app = replay_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SandboxTable)
        dark = [seg.style for seg in table.render_line(2)]
        await pilot.press("t")
        await pilot.pause()
        assert app.theme == "kata-light"
        # The table's cached lines were dropped: the same row now has the light colours.
        assert [seg.style for seg in table.render_line(2)] != dark
    assert Settings.load().theme == "kata-light"


async def test_rows_off_screen_show_the_newest_data_when_scrolled_in() -> None:
    from msgspec.structs import replace

    snaps, _ = load_recording(RECORDING)
    base = next(sb for sb in snaps[0].sandboxes if sb.state == "running")
    many = tuple(replace(base, id=f"{i:064x}", pod=replace(base.pod, name=f"pod-{i:03d}"))
                 for i in range(60))
    first = replace(snaps[0], sandboxes=many)
    second = replace(first, sandboxes=tuple(
        replace(sb, state="stale") if sb.pod.name == "pod-059" else sb for sb in many))
    app = KataTopApp(ReplaySource([first, second]), refresh=3600, theme="kata-dark",
                     settings=Settings())
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SandboxTable)
        screen_text = " ".join(table.render_line(y).text for y in range(table.size.height))
        assert "pod-000" in screen_text and "pod-059" not in screen_text
        await pilot.press("n")  # the next recorded snapshot: pod-059, off screen, went stale
        await settle(pilot)
        await pilot.press("G")
        await pilot.pause()
        assert table.selected_id() == many[-1].id
        bottom = table.render_line(table.size.height - 1).text
        assert "pod-059" in bottom and "stale" in bottom
        await pilot.press("g")
        await pilot.pause()
        assert "pod-000" in table.render_line(1).text and table.cursor_row == 0


async def test_mouse_sorts_by_header_and_opens_on_double_click() -> None:
    app = replay_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SandboxTable)
        x = sum(c.width + 2 for c in table.columns[:3]) + 2  # inside the STATE header
        assert table.columns[3].key == "state"
        await pilot.click(SandboxTable, offset=(x, 0))
        assert (table.sort_index, table.sort_reverse) == (4, False)
        assert "running" in table.row_text(0)
        await pilot.click(SandboxTable, offset=(x, 0))
        assert table.sort_reverse and "stale" in table.row_text(0)
        await pilot.double_click(SandboxTable, offset=(5, 3))
        await settle(pilot)
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.sandbox_id == table.selected_id() and table.cursor_row == 2


async def test_detail_tabs_fill_when_opened_and_follow_new_data() -> None:
    from textual.widgets import Static, TabbedContent

    app = replay_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        sb = next(s for s in app.snapshot.sandboxes if s.pod.name == "web-0")
        app.open_sandbox(sb.id)
        await settle(pilot)
        tabs = app.screen.query_one(TabbedContent)
        expect = {"links": "eth0", "tc": "mirred", "vmm": "source", "vfs": "shared dir",
                  "procs": "role", "json": sb.id, "problems": "sev"}
        for tab, word in expect.items():
            tabs.active = f"tab-{tab}"
            await settle(pilot)
            shown = _text(app.screen.query_one(f"#panel-{tab}", Static))
            assert word in shown, (tab, shown[:200])
        tabs.active = "tab-json"
        await settle(pilot)
        before = _text(app.screen.query_one("#panel-json", Static))
        await pilot.press("n")  # the next recorded snapshot: new counters
        await settle(pilot)
        assert _text(app.screen.query_one("#panel-json", Static)) != before


def _text(widget: Any) -> str:
    import io

    from rich.console import Console

    console = Console(width=160, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()


async def test_overview_hidden_under_detail_catches_up_on_return() -> None:
    from msgspec.structs import replace

    snaps, _ = load_recording(RECORDING)
    web = next(sb for sb in snaps[0].sandboxes if sb.pod.name == "web-0")
    api = next(sb for sb in snaps[0].sandboxes if sb.pod.name == "api-1")
    second = replace(snaps[0], taken_at=snaps[0].taken_at + 1, sandboxes=tuple(
        replace(sb, state="stale") if sb.id == api.id else sb for sb in snaps[0].sandboxes))
    app = KataTopApp(ReplaySource([snaps[0], second]), refresh=3600, theme="kata-dark",
                     settings=Settings())
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        app.open_sandbox(web.id)
        await settle(pilot)
        await pilot.press("n")  # api-1 goes stale while the overview is covered
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        table = app.screen.query_one(SandboxTable)
        row = next(i for i in range(table.row_count) if "payments/api-1" in table.row_text(i))
        assert "stale" in table.row_text(row)
        assert len(table.trend(api.id)) == 2  # both snapshots counted once


async def test_events_appear_at_their_moment_in_a_replay(tmp_path: Any) -> None:
    """A recording's events show in the overview's pane (e) and the sandbox's Events tab
    when the replay reaches the snapshot that carries them, not before."""
    from msgspec.structs import replace

    from kata_top.formats import jsonout
    from kata_top.model import Event

    snaps, _ = load_recording(RECORDING)
    sb = next(s for s in snaps[1].sandboxes if s.pod.name == "web-0")
    mark = "redirect out (tap0_kata → eth0) removed by the test"
    event = Event(at=snaps[1].taken_at, kind="redirect-removed", severity="critical",
                  summary=mark, sandbox_id=sb.id, pod="default/web-0", before=True,
                  after=False)
    path = tmp_path / "rec.ndjson"
    path.write_text("".join(jsonout.dumps(s) + "\n" for s in
                            [snaps[0], replace(snaps[1], events=(event,)), snaps[2]]))
    recorded, _ = load_recording(str(path))
    app = KataTopApp(ReplaySource(recorded), refresh=3600, theme="kata-dark",
                     settings=Settings())
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("e")
        await pilot.pause()
        assert mark not in shown_text(app.screen)  # not yet: the first step has no events
        table = app.screen.query_one(SandboxTable)

        def web_row() -> str:
            return next(table.row_text(i) for i in range(table.row_count)
                        if "default/web-0" in table.row_text(i))

        assert "▲" not in web_row()
        await pilot.press("n")
        await settle(pilot)
        assert mark in shown_text(app.screen)
        assert "▲" in web_row()  # the overview's TREND marks the moment
        assert not any("▲" in table.row_text(i) for i in range(table.row_count)
                       if "default/web-0" not in table.row_text(i))
        app.open_sandbox(sb.id)
        await settle(pilot)
        from textual.widgets import TabbedContent

        app.screen.query_one(TabbedContent).active = "tab-events"
        await settle(pilot)
        assert mark in shown_text(app.screen)


async def test_the_source_hears_which_sandboxes_are_on_screen() -> None:
    """A live source reads every counter of the rows on screen each cycle and spares the
    others (EngineOptions.unwatched_refresh_s): the app tells it which rows and
    which detail screen the operator looks at."""
    from msgspec.structs import replace

    snaps, _ = load_recording(RECORDING)
    base = next(sb for sb in snaps[0].sandboxes if sb.state == "running")
    many = tuple(replace(base, id=f"{i:064x}", pod=replace(base.pod, name=f"pod-{i:03d}"))
                 for i in range(60))
    told: list[set[str] | None] = []

    class Listening(ReplaySource):
        def watch_closely(self, sandbox_ids: Any) -> None:
            told.append(None if sandbox_ids is None else set(sandbox_ids))

    app = KataTopApp(Listening([replace(snaps[0], sandboxes=many)] * 2), refresh=3600,
                     theme="kata-dark", settings=Settings())
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one(SandboxTable)
        drawn = set(table.ids_on_screen())
        assert told and told[-1] == drawn
        assert many[0].id in drawn and many[-1].id not in drawn and 10 < len(drawn) < 40
        await pilot.press("G")  # to the last row, then the next snapshot
        await pilot.press("n")
        await settle(pilot)
        assert told[-1] is not None and many[-1].id in told[-1] and many[0].id not in told[-1]
        await pilot.press("enter")
        await settle(pilot)
        assert told[-1] == {many[-1].id}


async def test_a_replay_step_is_read_off_the_ui_thread() -> None:
    """A recording reads and builds the step it lands on: in a worker, never on the thread
    that draws; a step that fails says so."""
    import threading
    import time

    from textual.notifications import Notify

    snaps, _ = load_recording(RECORDING)
    on_ui: list[bool] = []

    class Recorded(ReplaySource):
        def seek(self, delta: int) -> Any:
            on_ui.append(threading.current_thread() is threading.main_thread())
            if delta == 10:
                raise OSError("the recording's disk is gone")
            time.sleep(0.05)  # a step being built: the next key comes meanwhile
            return super().seek(delta)

    notes: list[str] = []

    def hook(message: Any) -> None:
        if isinstance(message, Notify):
            notes.append(message.notification.message)

    app = KataTopApp(Recorded(snaps), refresh=3600, theme="kata-dark", settings=Settings())
    async with app.run_test(size=(160, 48), message_hook=hook) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert app.source.position() == "2/3" and app.paused  # type: ignore[attr-defined]
        await pilot.press("right_square_bracket")
        await settle(pilot)
        await pilot.press("b", "b", "n", "b", "n")  # faster than the steps are built
        await settle(pilot)
        source: Any = app.source
        assert source.position() == "2/3" and app.snapshot is snaps[1]  # drawn where it stands
    assert on_ui == [False] * 7
    assert any("disk is gone" in n for n in notes), notes
