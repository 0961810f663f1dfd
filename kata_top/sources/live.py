"""This node, collected live: the engine, rates, findings, host probe, inotify wake-ups and
(with --write) the write path. Plain Python: the UI calls `next()` from a worker thread."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from msgspec.structs import replace

from kata_top.diagnose.drop_findings import with_drop_findings
from kata_top.engine import Engine, EngineOptions
from kata_top.events import DropTracker, append_journal, diff_events
from kata_top.model import Event, Finding, Snapshot
from kata_top.sources.base import Source
from kata_top.stream import Derivation

if TYPE_CHECKING:
    from kata_top.actions import ActionRequest, Outcome, Plan
    from kata_top.drops.model import DropReport

EVENTS_KEPT = 10_000
HOST_PROBE_EVERY_S = 300.0  # the kernel probe spawns a scratch namespace: not every second

log = logging.getLogger(__name__)


class LiveSource(Source):
    kind = "live"

    def __init__(self, opts: EngineOptions, write: bool = False,
                 journal: str | None = None) -> None:
        from kata_top.events import AuditTail
        from kata_top.settings import audit_log_path

        self._engine = Engine(opts)
        self._audit = AuditTail(audit_log_path())
        self._drops = DropTracker()
        self._journal = journal
        # The events of this source's life, newest last (bounded: a long incident keeps the
        # last EVENTS_KEPT), and how many of each kind there were.
        self.history: deque[Event] = deque(maxlen=EVENTS_KEPT)
        self.event_counts: dict[str, int] = {}
        self.run_root = opts.run_root
        self.read_only = not write
        self._prev: Snapshot | None = None
        self._derive = Derivation()
        self._host: tuple[Finding, ...] = ()
        self._host_at = 0.0
        self._lock = threading.Lock()
        self._fresh = False
        self._watcher: Any = None
        self._logged: set[str] = set()
        self._drop_report: DropReport | None = None  # the last drop trace, for findings

    def refresh_all(self) -> None:
        """The next snapshot asks every VMM again (the operator pressed `r`)."""
        self._fresh = True

    def watch_closely(self, sandbox_ids: Collection[str] | None) -> None:
        """The sandboxes on the operator's screen: read whole every cycle (the others only
        as EngineOptions.unwatched_refresh_s and tc_busy_refresh_s say). None: all."""
        self._engine.watched = None if sandbox_ids is None else frozenset(sandbox_ids)

    def next(self) -> Snapshot:
        with self._lock:  # one collector thread at a time: its sockets are per thread
            fresh, self._fresh = self._fresh, False
            raw = self._engine.collect(fresh_vmm=fresh)
            snap = self._derive.next(raw, self._engine.tc_read_at, self._engine.read_at)
            if time.monotonic() - self._host_at > HOST_PROBE_EVERY_S or not self._host_at:
                from kata_top.collectors.hostcheck import host_findings

                self._host = (*host_findings(), *self._engine.orphan_findings())
                self._host_at = time.monotonic()
            from kata_top.diagnose.hostfacts import in_context

            snap = with_drop_findings(replace(snap, host_findings=in_context(self._host, snap)),
                                      self._drop_report)
            events = diff_events(self._prev, snap, self._engine.tc_changes,
                                 self._audit.new_entries(), self._drops)
            if events:
                snap = replace(snap, events=events)
                self._record(events)
            self._log_new_errors(snap)
            self._prev = snap
            return snap

    def _record(self, events: tuple[Event, ...]) -> None:
        self.history.extend(events)
        for e in events:
            self.event_counts[e.kind] = self.event_counts.get(e.kind, 0) + 1
        if self._journal:
            append_journal(self._journal, events)

    def _log_new_errors(self, snap: Snapshot) -> None:
        """Each collection problem is logged once when it appears and once when it clears,
        not every second, so the log stays readable through a long incident."""
        now = {f"{e.where}: {e.message}" for e in snap.errors}
        now |= {f"sandbox {sb.id[:12]} {e.where}: {e.message}"
                for sb in snap.sandboxes for e in sb.errors}
        for text in sorted(now - self._logged):
            log.warning("collection: %s", text)
        for text in sorted(self._logged - now):
            log.info("collection recovered: %s", text)
        self._logged = now

    def start_watching(self, wake: Callable[[], None]) -> str | None:
        from kata_top.collectors.watch import StateWatcher, watch_paths

        root = self._engine.opts.run_root
        try:
            self._watcher = StateWatcher(watch_paths(root), wake)
            self._watcher.start()
        except Exception as exc:
            log.warning("inotify unavailable: %s", exc)
            return f"inotify unavailable ({exc}); polling only"
        trees = [p for p in self._watcher.missing if p.startswith(root.rstrip("/") + "/")]
        if len(trees) == 2:
            return (f"{root} has neither vc/sbs nor kata: is it Kata's run root? (sandboxes "
                    "that appear show at the next refresh)")
        return None

    def trace_drops(self, seconds: int, sandbox_id: str | None = None,
                    progress: Callable[[float, float], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> DropReport:
        from kata_top.drops.trace import trace

        snap = self._prev or self.next()  # the sandboxes as last collected
        self._drop_report = trace(snap, seconds, sandbox_id, progress, should_stop)
        return self._drop_report

    def plan(self, request: ActionRequest) -> Plan:
        if self.read_only:
            raise self._refusal()
        from kata_top.actions import plan_request

        return plan_request(self._engine.opts.run_root, request)

    def apply(self, plan: Plan) -> Outcome:
        if self.read_only:
            raise self._refusal()
        from kata_top.actions import execute

        outcome = execute(plan)
        log.info("action %s: %s", plan.operation, outcome.message)
        return outcome

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None
        with self._lock:
            self._engine.close()
