"""This node, collected live: the pipeline (engine, rates, findings, host probe, events), the
events' history and journal, inotify wake-ups and (with --write) the write path. Plain
Python: the UI calls `next()` from a worker thread."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from kata_top.engine import EngineOptions
from kata_top.events.journal import append_journal
from kata_top.model import Event, Snapshot
from kata_top.pipeline import Pipeline
from kata_top.sources.base import Source

if TYPE_CHECKING:
    from kata_top.actions import ActionRequest, Outcome, Plan
    from kata_top.drops.model import DropReport

EVENTS_KEPT = 10_000

log = logging.getLogger(__name__)


class LiveSource(Source):
    kind = "live"

    def __init__(self, opts: EngineOptions, write: bool = False,
                 journal: str | None = None) -> None:
        self.opts = opts
        self._pipeline = Pipeline(opts)
        self._journal = journal
        # The events of this source's life, newest last (bounded: a long incident keeps the
        # last EVENTS_KEPT), and how many of each kind there were.
        self.history: deque[Event] = deque(maxlen=EVENTS_KEPT)
        self.event_counts: dict[str, int] = {}
        self.run_root: str = opts.run_root
        self.read_only = not write
        self._lock = threading.Lock()
        self._fresh = False
        self._watcher: Any = None
        self._logged: set[str] = set()

    def refresh_all(self) -> None:
        """The next snapshot asks every VMM again (the operator pressed `r`)."""
        self._fresh = True

    def watch_closely(self, sandbox_ids: Collection[str] | None) -> None:
        """The sandboxes on the operator's screen: read whole every cycle (the others only
        as EngineOptions.unwatched_refresh_s and tc_busy_refresh_s say). None: all."""
        self._pipeline.watch_closely(sandbox_ids)

    def next(self) -> Snapshot:
        with self._lock:  # one collector thread at a time: its sockets are per thread
            fresh, self._fresh = self._fresh, False
            snap = self._pipeline.next(fresh_vmm=fresh)
            if snap.events:
                self._record(snap.events)
            self._log_new_errors(snap)
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

        root = self.run_root
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

    def notices(self) -> list[str]:
        from kata_top.actions.audit import unfinished_warning

        warning = unfinished_warning()
        return [warning] if warning else []

    def trace_drops(self, seconds: int, sandbox_id: str | None = None,
                    progress: Callable[[float, float], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> DropReport:
        from kata_top.drops.trace import trace

        snap = self._pipeline.last or self.next()  # the sandboxes as last collected
        report = trace(snap, seconds, sandbox_id, progress, should_stop)
        self._pipeline.drop_report = report  # its findings, from the next snapshot on
        return report

    def plan(self, request: ActionRequest) -> Plan:
        if self.read_only:
            raise self._refusal()
        from kata_top.actions import plan_request

        return plan_request(self.run_root, request)

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
            self._pipeline.close()
