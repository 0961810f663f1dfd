"""A recording (`snapshot --watch` NDJSON) played back: read-only, seekable."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from kata_top.model import Snapshot
from kata_top.sources.base import Source


class ReplaySource(Source):
    """Steps through a recording; `next()` advances unless paused, seek/step move the cursor.
    `snapshots`: a list, or a Recording (kata_top/formats/recording.py) that builds each one
    when it is first asked for and may end early at a damaged line."""

    kind = "replay"
    read_only = True

    def __init__(self, snapshots: Sequence[Snapshot]) -> None:
        self.snapshots = snapshots
        self.index = -1
        # the collect worker steps forward while a key's seek worker may move the cursor
        self._lock = threading.Lock()

    def _at(self, index: int) -> Snapshot:
        while True:
            try:
                snap = self.snapshots[index]
                break
            except IndexError:
                # a recording that found a damaged line ended there (it keeps its first
                # snapshot): stay on its last
                index = len(self.snapshots) - 1
        self.index = index
        return snap

    def next(self) -> Snapshot:
        with self._lock:
            return self._at(min(self.index + 1, len(self.snapshots) - 1))

    @property
    def seekable(self) -> bool:
        return True

    def seek(self, delta: int) -> Snapshot:
        with self._lock:
            return self._at(max(0, min(len(self.snapshots) - 1, self.index + delta)))

    def position(self) -> str:
        return f"{self.index + 1}/{len(self.snapshots)}"

    def close(self) -> None:
        close = getattr(self.snapshots, "close", None)
        if close is not None:
            close()
