"""README pictures made from a running lab: the overview, a detail screen and `check`.

`kata-top lab screenshots --output docs/images` (lab up first) drives the real dashboard
headless on the lab's run root, waits until rates are known, and saves Textual's SVG
screenshots; `check` is rendered with Rich into an SVG of the same terminal look.
"""

from __future__ import annotations

import asyncio
import os

from kata_top.lab.layout import Layout

SIZE = (160, 42)


async def _dashboard(run_root: str, out_dir: str, pod: str) -> list[str]:
    from kata_top.engine import VMM_REFRESH_S, EngineOptions
    from kata_top.settings import Settings
    from kata_top.sources.live import LiveSource
    from kata_top.widgets.app import KataTopApp

    source = LiveSource(EngineOptions(run_root=run_root, vmm_refresh_s=VMM_REFRESH_S))
    app = KataTopApp(source, refresh=1.0, theme="kata-dark", settings=Settings())
    written = []
    async with app.run_test(size=SIZE) as pilot:
        seen = 0
        while seen < 4:  # rates need two snapshots; a few more fill the trends
            await pilot.pause(1.0)
            seen += 1
        await pilot.pause(0.5)
        path = os.path.join(out_dir, "overview.svg")
        app.save_screenshot(path)
        written.append(path)
        sb = next((s for s in app.snapshot.sandboxes if s.pod.name == pod), None) \
            if app.snapshot else None
        if sb is not None:
            app.open_sandbox(sb.id)
            for _ in range(3):
                await pilot.pause(1.0)
            path = os.path.join(out_dir, "detail.svg")
            app.save_screenshot(path)
            written.append(path)
    return written


def _check(run_root: str, out_dir: str) -> str:
    from rich.console import Console
    from rich.text import Text

    from kata_top.cli.check import check_snapshot
    from kata_top.diagnose import render_findings
    from kata_top.engine import EngineOptions

    snap = check_snapshot(EngineOptions(run_root=run_root), pause=1.0)
    findings = list(snap.host_findings) + [f for sb in snap.sandboxes for f in sb.findings]
    console = Console(record=True, width=SIZE[0], file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(Text(f"$ sudo kata-top check --run-root {run_root}", style="bold"))
    console.print(Text(render_findings(snap, findings)))
    console.file.close()
    path = os.path.join(out_dir, "check.svg")
    console.save_svg(path, title="kata-top check")
    return path


def take(layout: Layout, out_dir: str, pod: str = "no-out-redirect-3") -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    written = asyncio.run(_dashboard(layout.run_root, out_dir, pod))
    written.append(_check(layout.run_root, out_dir))
    return written
