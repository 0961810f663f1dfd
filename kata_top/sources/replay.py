"""A recording (`snapshot --watch` NDJSON) played back: read-only, seekable."""

from __future__ import annotations

from kata_top.model import Snapshot
from kata_top.sources.base import Source


class ReplaySource(Source):
    """Steps through a recording; `next()` advances unless paused, seek/step move the cursor."""

    kind = "replay"
    read_only = True

    def __init__(self, snapshots: list[Snapshot]) -> None:
        self.snapshots = snapshots
        self.index = -1

    def next(self) -> Snapshot:
        if self.index < len(self.snapshots) - 1:
            self.index += 1
        return self.snapshots[self.index]

    @property
    def seekable(self) -> bool:
        return True

    def seek(self, delta: int) -> Snapshot:
        self.index = max(0, min(len(self.snapshots) - 1, self.index + delta))
        return self.snapshots[self.index]

    def position(self) -> str:
        return f"{self.index + 1}/{len(self.snapshots)}"
