"""One pipeline from the node to every view: engine → rates → findings → host findings →
drop-trace findings → events. The dashboard's live source, `snapshot` (once and --watch),
`serve`, `events --follow`, `check` and `drops` all take their snapshots from a Pipeline;
nothing downstream reads the engine.

Plain Python, one thread at a time: the engine's netlink sockets belong to the thread that
made them.
"""

from __future__ import annotations

import time
from collections.abc import Collection as Ids
from typing import TYPE_CHECKING

from msgspec.structs import replace

from kata_top.engine import Collection, Engine, EngineOptions
from kata_top.model import Finding, Snapshot
from kata_top.stream import Derivation

if TYPE_CHECKING:
    from kata_top.drops.model import DropReport

# The kernel probe spawns a scratch namespace and the orphans' look dumps every named
# namespace: a stream repeats them this seldom, not every snapshot.
HOST_PROBE_EVERY_S = 300.0


class Step:
    """One turn of the pipeline: the snapshot handed out, and the engine's collection it was
    made from (timings and counters for bench/ and tests)."""

    __slots__ = ("collection", "snapshot")

    def __init__(self, snapshot: Snapshot, collection: Collection) -> None:
        self.snapshot = snapshot
        self.collection = collection


class Pipeline:
    """host_every_s: how often the host findings (kernel probe, namespaces left behind) are
    looked for again, None: never (a one-shot `snapshot`: the probe forks, and `check` is the
    command that judges the host). events: diff each snapshot against the last (the tc
    notifications, the audit log's new entries and drop counters included)."""

    def __init__(self, opts: EngineOptions, host_every_s: float | None = HOST_PROBE_EVERY_S,
                 events: bool = True) -> None:
        self.opts = opts
        self._engine = Engine(opts)
        self._derive = Derivation()
        self._host_every_s = host_every_s
        self._host: tuple[Finding, ...] = ()
        self._host_at: float | None = None
        self._events = events
        self._prev: Snapshot | None = None
        self.last: Snapshot | None = None  # the last snapshot handed out
        # the last drop trace (`kata-top drops`, the dashboard's D): its reasons are the
        # sandboxes' findings for a while after it (kata_top/diagnose/drop_findings.py)
        self.drop_report: DropReport | None = None
        if events:
            from kata_top.events.audit_tail import AuditTail
            from kata_top.events.drops import DropTracker
            from kata_top.settings import audit_log_path

            self._audit = AuditTail(audit_log_path(), opts.run_root)
            self._drops = DropTracker()

    def watch_closely(self, sandbox_ids: Ids[str] | None) -> None:
        """The sandboxes on the operator's screen: read whole every cycle (the others only
        as EngineOptions.unwatched_refresh_s and tc_busy_refresh_s say). None: all."""
        self._engine.watched = None if sandbox_ids is None else frozenset(sandbox_ids)

    def next(self, fresh_vmm: bool = False) -> Snapshot:
        return self.step(fresh_vmm).snapshot

    def step(self, fresh_vmm: bool = False) -> Step:
        """One snapshot through every stage. fresh_vmm: ask every VMM now."""
        host_due = self._host_every_s is not None and (
            self._host_at is None or time.monotonic() - self._host_at > self._host_every_s)
        got = self._engine.collect(fresh_vmm=fresh_vmm, orphans=host_due)
        snap = self._derive.next(got.snapshot)
        if host_due:
            from kata_top.collectors.hostcheck import host_findings

            self._host = (*host_findings(), *(got.orphan_findings or ()))
            self._host_at = time.monotonic()
        if self._host:
            from kata_top.diagnose.hostfacts import in_context

            # judged against this snapshot's sandboxes (their DisableVhostNet)
            snap = replace(snap, host_findings=in_context(self._host, snap))
        if self.drop_report is not None:
            from kata_top.diagnose.drop_findings import with_drop_findings

            snap = with_drop_findings(snap, self.drop_report)
        if self._events:
            from kata_top.events.diff import diff_events

            events = diff_events(self._prev, snap, got.tc_changes, self._audit.new_entries(),
                                 self._drops)
            if events:
                snap = replace(snap, events=events)
            self._prev = snap
        self.last = snap
        return Step(snap, got)

    def close(self) -> None:
        self._engine.close()

