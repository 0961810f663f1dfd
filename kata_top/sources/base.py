"""The one interface every view reads through: where snapshots come from, and whether (and
how) this source may change anything.

Live (local collectors), replay (a recording) and — later — remote (`kata-top serve`) sources
implement it. Widgets hold a `Source` and nothing else: they never reach an engine, the
inotify watcher or the write path themselves. A read-only source refuses writes here, in one
place, whatever the UI offers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from kata_top.actions import ActionRequest, Outcome, Plan
    from kata_top.drops.model import DropReport
    from kata_top.model import Snapshot

SourceKind = Literal["live", "replay", "remote"]


class SourceError(Exception):
    """The source cannot do what was asked (seek a live node, write through a replay)."""


class Source(ABC):
    """Snapshots for a view. `next()` is called from one worker thread at a time."""

    #: what kind of source this is (shown in the header)
    kind: SourceKind
    #: True when plan()/apply() always refuse (replay, remote, or live without --write)
    read_only: bool = True
    #: the run root collected, when there is one on this machine
    run_root: str | None = None
    #: where a remote source reads from (shown in the header)
    label: str | None = None

    @abstractmethod
    def next(self) -> Snapshot:
        """The next snapshot: a fresh collection (live) or the next recorded one (replay)."""

    def refresh_all(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Ask everything again on the next `next()` (VMM monitors too). Default: nothing."""

    def watch_closely(self, sandbox_ids: Collection[str] | None) -> None:  # noqa: B027
        """The sandboxes on screen, whose every counter the next `next()` should read
        (None: all). An optional hook, a no-op by default."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release sockets, threads and watchers. Idempotent."""

    # ---- position in time (recordings) ---------------------------------------------------
    @property
    def seekable(self) -> bool:
        """True when seek()/position() move through time (a recording)."""
        return False

    def seek(self, delta: int) -> Snapshot:
        """Move `delta` snapshots forward (negative: back) and return that snapshot."""
        raise SourceError(f"a {self.kind} source cannot seek")

    def position(self) -> str | None:
        """Where in the recording we are, as `i/n`; None when not seekable."""
        return None

    # ---- change notifications ------------------------------------------------------------
    def start_watching(self, wake: Callable[[], None]) -> str | None:
        """Call `wake` (from any thread) when the node changes between polls. Returns a
        warning to show when watching is not possible; None when it works or is moot."""
        return None

    def notices(self) -> list[str]:
        """Warnings to show once when a view opens on this source."""
        return []

    # ---- kernel drop traces (only when the operator asks; time-boxed) -------------------
    def trace_drops(self, seconds: int, sandbox_id: str | None = None,
                    progress: Callable[[float, float], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> DropReport:
        """Trace where and why the kernel drops packets for `seconds` (`kata-top drops`);
        `progress(seconds_left, seconds)` while it runs. SourceError when this source
        cannot trace."""
        raise SourceError(f"a {self.kind} source cannot trace drops"
                          + (": a recording has no kernel" if self.kind == "replay" else ""))

    # ---- writes (the only way a view changes anything) -----------------------------------
    def plan(self, request: ActionRequest) -> Plan:
        """Plan `request` against fresh state (ActionError when refused)."""
        raise self._refusal()

    def apply(self, plan: Plan) -> Outcome:
        """Apply a plan made by `plan()`, all-or-nothing, audited."""
        raise self._refusal()

    def _refusal(self) -> Exception:
        from kata_top.actions import ActionError

        reason = {"replay": "a replay is read-only: a recording cannot change anything",
                  "remote": "a remote node is read-only from here: run the write command on "
                            "that node",
                  "live": "kata-top is read-only: start it with --write to change tc state"}
        return ActionError(reason[self.kind])
