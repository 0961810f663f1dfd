"""The dashboard on live labs (Pilot): real collection, inotify wake-ups, the write flow."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from kata_top.settings import Settings
from kata_top.sources.live import LiveSource
from kata_top.widgets.app import KataTopApp
from kata_top.widgets.sandbox_table import SandboxTable

# Each wait ends on the event it waits for; this only bounds a hang. With a refresh of an
# hour (inotify test), the new row can only come from the inotify wake-up: the event is the
# proof, not a stopwatch. Timing targets live in bench/.
HANG_S = 30.0


@pytest.fixture(autouse=True)
def _own_config(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KATA_TOP_CONFIG", os.path.join(str(tmp_path), "config.json"))


async def test_live_lab_fills_the_overview(demo_lab: Any) -> None:
    layout, man = demo_lab
    from kata_top.engine import EngineOptions

    app = KataTopApp(LiveSource(EngineOptions(run_root=layout.run_root)), refresh=1.0,
                     theme="kata-dark", settings=Settings())
    t0 = time.monotonic()
    async with app.run_test(size=(160, 48)) as pilot:
        while app.screen.query_one(SandboxTable).row_count < len(man.sandboxes):
            assert time.monotonic() - t0 < HANG_S, "overview never filled"
            await pilot.pause(0.05)
        await pilot.press("q")


async def test_inotify_shows_new_and_removed_sandboxes(scratch_lab: Any) -> None:
    import shutil

    from kata_top.engine import EngineOptions
    from kata_top.lab import build

    man = build.up(scratch_lab, build.UpOptions(sandboxes=2, qemu=False, scenario="plain"))
    app = KataTopApp(LiveSource(EngineOptions(run_root=scratch_lab.run_root)), refresh=3600,
                     theme="kata-dark", settings=Settings(), watch=True)
    src_dir = os.path.dirname(man.sandboxes[0].state_file or "")
    new_dir = os.path.join(os.path.dirname(src_dir), "e" * 64)
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.screen.query_one(SandboxTable)
        while table.row_count < 2:
            await pilot.pause(0.05)
        shutil.copytree(src_dir, new_dir)  # a sandbox appears; polling is an hour away
        t0 = time.monotonic()
        while table.row_count < 3:
            assert time.monotonic() - t0 < HANG_S, "new sandbox never shown"
            await pilot.pause(0.05)
        shutil.rmtree(new_dir)
        t0 = time.monotonic()
        while table.row_count > 2:
            assert time.monotonic() - t0 < HANG_S, "removed sandbox never went"
            await pilot.pause(0.05)


async def test_write_flow_from_the_dashboard(scratch_lab: Any) -> None:
    from kata_top.engine import EngineOptions
    from kata_top.lab import build
    from kata_top.widgets.modals import ActionScreen, ConfirmScreen

    build.up(scratch_lab, build.UpOptions(sandboxes=1, qemu=False, scenario="plain"))
    app = KataTopApp(LiveSource(EngineOptions(run_root=scratch_lab.run_root), write=True),
                     refresh=1.0, theme="kata-dark", settings=Settings())
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.screen.query_one(SandboxTable)
        while table.row_count < 1:
            await pilot.pause(0.05)
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ActionScreen)
        await pilot.click("#remove")
        await pilot.click("#in")
        await pilot.click("#yes")
        t0 = time.monotonic()
        while not isinstance(app.screen, ConfirmScreen):
            assert time.monotonic() - t0 < HANG_S, "no confirmation dialog"
            await pilot.pause(0.05)
        assert "tc filter del dev eth0" in str(app.screen.query_one("#confirm-box").render()) \
            or any("tc filter del dev eth0" in str(w.render())
                   for w in app.screen.query("Static"))
        await pilot.press("y")
        await pilot.press("escape")  # back to the overview while the change lands
        t0 = time.monotonic()
        while "out only" not in table.row_text(0):
            assert time.monotonic() - t0 < HANG_S, "broken hop never shown"
            await pilot.pause(0.1)
