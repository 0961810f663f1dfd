"""Where the dashboard's snapshots come from: the live engine, or a recording being replayed.

Both are plain Python (no Textual): the UI calls `next()` from a worker thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace

from kata_top.diagnose import annotate
from kata_top.engine import Engine, EngineOptions
from kata_top.model import Finding, Snapshot
from kata_top.rates import with_rates

HOST_PROBE_EVERY_S = 300.0  # the kernel probe spawns a scratch namespace: not every second
VMM_REFRESH_S = 5.0  # how often a live view re-asks each VM's monitor (see EngineOptions)


class LiveSource:
    replay = False

    def __init__(self, opts: EngineOptions) -> None:
        self._engine = Engine(opts)
        self._prev: Snapshot | None = None
        self._host: tuple[Finding, ...] = ()
        self._host_at = 0.0
        self._lock = threading.Lock()
        self._fresh = False

    def refresh_all(self) -> None:
        """The next snapshot asks every VMM again (the operator pressed `r`)."""
        self._fresh = True

    def next(self) -> Snapshot:
        with self._lock:  # one collector thread at a time: its sockets are per thread
            fresh, self._fresh = self._fresh, False
            snap = annotate(with_rates(self._engine.collect(fresh_vmm=fresh), self._prev),
                            self._prev)
            if time.monotonic() - self._host_at > HOST_PROBE_EVERY_S or not self._host_at:
                from kata_top.hostcheck import host_findings

                self._host = tuple(host_findings())
                self._host_at = time.monotonic()
            snap = replace(snap, host_findings=self._host)
            self._prev = snap
            return snap

    def close(self) -> None:
        with self._lock:
            self._engine.close()


class ReplaySource:
    """Steps through a recording; `next()` advances unless paused, seek/step move the cursor."""

    replay = True

    def __init__(self, snapshots: list[Snapshot]) -> None:
        self.snapshots = snapshots
        self.index = -1

    def refresh_all(self) -> None:
        """Nothing to ask again in a recording."""

    def next(self) -> Snapshot:
        if self.index < len(self.snapshots) - 1:
            self.index += 1
        return self.snapshots[self.index]

    def seek(self, delta: int) -> Snapshot:
        self.index = max(0, min(len(self.snapshots) - 1, self.index + delta))
        return self.snapshots[self.index]

    def position(self) -> str:
        return f"{self.index + 1}/{len(self.snapshots)}"

    def close(self) -> None:
        pass
