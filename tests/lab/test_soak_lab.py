"""The churn soak's short variant (bench/soak.py): sandboxes created and destroyed twice a
second, filters replaced, a QEMU killed, under a live collection and `snapshot --watch`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import ROOT, TEST_PREFIX, need_qemu


def test_short_churn_soak_leaks_nothing_and_never_raises() -> None:
    need_qemu()
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "soak.py"),
                          "--sandboxes", "20", "--qemu-sandboxes", "2", "--minutes", "0.4",
                          "--no-broken", "--prefix", f"{TEST_PREFIX}k"], cwd=ROOT,
                         capture_output=True, text=True, timeout=240, check=False)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0, out.stderr[-2000:]
    assert result["escaped_exceptions"] == 0 and not result["watch_traceback"]
    assert result["churn_per_s"] >= 2
    assert result["fds_start_end"][1] <= result["fds_start_end"][0]
    assert result["threads_start_end"][1] <= result["threads_start_end"][0]
    assert result["watch_lines"] >= 10  # `snapshot --watch 1` kept streaming through it
