"""One drop trace, end to end: the sandboxes (a snapshot), the tracer, the report. Shared by
`kata-top drops`, the dashboard's live source and serve's drops route.

One trace at a time per process: a second caller gets TraceBusy instead of a second bpftrace.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from kata_top.collectors.droptrace import (
    DEFAULT_SECONDS,
    MAX_SECONDS,
    Progress,
    TraceBusy,
    TraceUnavailable,
)
from kata_top.drops.model import DropReport
from kata_top.model import Snapshot

_ONE = threading.Lock()

__all__ = ["DEFAULT_SECONDS", "MAX_SECONDS", "TraceBusy", "TraceUnavailable", "busy",
           "trace"]


def busy() -> bool:
    return _ONE.locked()


def trace(snapshot: Snapshot, seconds: int, sandbox: str | None = None,
          progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
          on_started: Callable[[int], None] | None = None) -> DropReport:
    """Trace for `seconds` and attribute the drops to `snapshot`'s sandboxes (only the one
    `sandbox` names, when given: SelectError if it names none)."""
    from kata_top.collectors import droptrace
    from kata_top.drops.attribute import build_report

    ids: set[str] | None = None
    if sandbox:
        from kata_top.select import resolve

        ids = {resolve(snapshot.sandboxes, sandbox).id}
    if not _ONE.acquire(blocking=False):
        raise TraceBusy("a drop trace is already running; one at a time")
    try:
        raw = droptrace.run(seconds, progress=progress, should_stop=should_stop,
                            on_started=on_started)
    finally:
        _ONE.release()
    return build_report(raw, snapshot, ids, sandbox)
