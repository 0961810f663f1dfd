"""A stream of snapshots (the pipeline's middle stages): each with its rates and findings,
judged against the one before it.

What with_rates and annotate keep from one snapshot to the next lives here, so an idle
sandbox passes through both as the very same object (kata_top/rates.py,
kata_top/diagnose/findings.py) wherever a stream is kept.
"""

from __future__ import annotations

from kata_top.diagnose import annotate
from kata_top.model import Sandbox, Snapshot
from kata_top.rates import with_rates


class Derivation:
    def __init__(self) -> None:
        self.prev: Snapshot | None = None  # the last snapshot handed out
        self._raw_seen: dict[str, Sandbox] = {}  # the engine's sandboxes of the last one
        self._stable: dict[str, Sandbox] = {}  # sandboxes whose findings hold as they are

    def next(self, raw: Snapshot) -> Snapshot:
        """The engine's snapshot with rates since the last one, and findings (its own
        links_read_at and tc_read_at say whose counters are an earlier collection's)."""
        snap = annotate(with_rates(raw, self.prev, self._raw_seen), self.prev, self._stable)
        self.prev = snap
        return snap
