"""The churn soak's short variant (bench/soak.py): sandboxes created and destroyed twice a
second, filters replaced, a QEMU killed, under a live collection and `snapshot --watch` —
and the dashboard itself (Pilot) on the same churning run root."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from tests.helpers import ROOT, TEST_PREFIX, need_qemu


async def _dashboard_under_churn(run_root: str, seconds: float) -> tuple[int, list[str]]:
    """Drive the real dashboard on run_root for `seconds`; (snapshots shown, failures told)."""
    from textual.notifications import Notify

    from kata_top.engine import EngineOptions
    from kata_top.settings import Settings
    from kata_top.sources.live import LiveSource
    from kata_top.widgets.app import KataTopApp, SnapshotReady

    shown, failures = [0], []

    def hook(message: Any) -> None:
        if isinstance(message, SnapshotReady):
            shown[0] += 1
        elif isinstance(message, Notify) and message.notification.severity == "error":
            failures.append(message.notification.message)

    app = KataTopApp(LiveSource(EngineOptions(run_root=run_root)), refresh=0.5,
                     theme="kata-dark", settings=Settings(), watch=True)
    async with app.run_test(size=(120, 40), message_hook=hook) as pilot:
        end = time.monotonic() + seconds
        keys = ["j", "j", "enter", "escape", "s", "k", "slash", "w", "escape"]
        i = 0
        while time.monotonic() < end:
            await pilot.press(keys[i % len(keys)])
            i += 1
            await pilot.pause(0.3)
        await pilot.press("q")
    return shown[0], failures


def test_short_churn_soak_leaks_nothing_and_never_raises() -> None:
    need_qemu()
    prefix = f"{TEST_PREFIX}k"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "soak.py"),
                             "--sandboxes", "20", "--qemu-sandboxes", "2", "--minutes", "0.4",
                             "--no-broken", "--prefix", prefix], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(os.path.join("/run", prefix, "vc", "sbs")) and \
                time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        shown, failures = asyncio.run(_dashboard_under_churn(f"/run/{prefix}", 12.0))
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    assert proc.returncode == 0 and out.strip(), err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["escaped_exceptions"] == 0 and not result["watch_traceback"]
    assert result["churn_per_s"] >= 2
    assert result["fds_start_end"][1] <= result["fds_start_end"][0]
    assert result["threads_start_end"][1] <= result["threads_start_end"][0]
    assert result["watch_lines"] >= 10  # `snapshot --watch 1` kept streaming through it
    assert shown >= 10, "the dashboard stopped receiving snapshots under churn"
    assert failures == [], failures  # no collection failed on screen
