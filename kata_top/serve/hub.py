"""Collections on demand, shared between concurrent requests, never stacked.

The engine's netlink sockets belong to the thread that made them, so every collection runs on
the hub's own thread. A request asks for a snapshot no older than `min_interval`: a fresh
enough one is returned at once; otherwise the request waits for the next collection to finish
(one already running counts), so two scrapers at once share one collection and a slow one is
never started twice. A request that waits longer than its deadline gets `Unavailable`. When
one scraper asks at a steady period (kata_top/serve/cadence.py), the next collection starts
early enough to finish just before its next scrape, which then gets a fresh snapshot at once:
still one collection per scrape.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from msgspec import Struct

from kata_top.model import Snapshot
from kata_top.serve.cadence import Cadence
from kata_top.serve.encoded import PerCollection
from kata_top.sources.base import Source

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """No snapshot can be served now; the message says why (it becomes a 503's body)."""


class HubStats(Struct, frozen=True):
    collections: int
    failures: int
    last_duration_s: float
    last_error: str | None


class SnapshotHub:
    def __init__(self, make_source: Callable[[], Source], run_root: str,
                 min_interval: float = 1.0) -> None:
        self._make_source = make_source
        self._run_root = run_root
        self.min_interval = min_interval
        self._cond = threading.Condition()
        self._snap: Snapshot | None = None
        self._error: str | None = None
        self._done_at = 0.0  # monotonic end of the last collection
        self._seq = 0  # collections finished
        self._wanted = False
        self._running = False
        self._stopping = False
        self._failures = 0
        self._last_duration = 0.0
        self._thread = threading.Thread(target=self._loop, name="kata-top-collector",
                                        daemon=True)
        self.source: Source | None = None  # set by the collector thread once made
        # each collection's answers, encoded once for every client (HTTP and the local socket)
        self.encoded = PerCollection()
        self.started_at = time.time()  # events before this are only in the journal
        self._cadence = Cadence(min_interval)
        self.prefetched = 0  # collections started ahead of a predicted scrape

    @property
    def run_root(self) -> str:
        return self._run_root

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def stats(self) -> HubStats:
        with self._cond:
            return HubStats(self._seq, self._failures, self._last_duration, self._error)

    def latest(self) -> tuple[Snapshot | None, float]:
        """The last good snapshot and its age in seconds (inf when there is none), without
        asking for a collection."""
        with self._cond:
            if self._snap is None or self._error is not None:
                return None, float("inf")
            return self._snap, time.monotonic() - self._done_at

    def again(self, deadline: float) -> None:
        """Wait up to `deadline` seconds for one more collection than has finished (a check
        wants two: rates)."""
        with self._cond:
            target = self._seq + 1
            if not self._running:
                self._wanted = True
                self._cond.notify_all()
            self._cond.wait_for(lambda: self._seq >= target or self._stopping, timeout=deadline)

    def get(self, deadline: float, paced: bool = True) -> Snapshot:
        """A snapshot at most `min_interval` old, or Unavailable after `deadline` seconds.
        `paced`: a scrape, whose cadence may be learned (not a one-shot local client)."""
        with self._cond:
            if paced:
                self._cadence.asked(time.monotonic())
                self._cond.notify_all()  # the collector thread's wait may now end sooner
            fresh = self._snap is not None and self._error is None and \
                time.monotonic() - self._done_at < self.min_interval
            if fresh and self._snap is not None:
                return self._snap
            target = self._seq + 1
            if not self._running:  # a running collection answers this request too
                self._wanted = True
                self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._seq >= target or self._stopping,
                                       timeout=deadline):
                raise Unavailable(f"no collection finished within {deadline:g} s (the node "
                                  "is slow or a collector is stuck); see the exporter's log")
            if self._stopping:
                raise Unavailable("the exporter is shutting down")
            if self._error is not None or self._snap is None:
                raise Unavailable(self._error or "no snapshot")
            return self._snap

    def _loop(self) -> None:
        source: Source | None = None
        try:
            source = self._make_source()
            self.source = source
            while True:
                with self._cond:
                    while not (self._wanted or self._stopping):
                        ahead = self._ahead_in()
                        if ahead is not None and ahead <= 0:
                            self.prefetched += 1
                            break
                        self._cond.wait(ahead)
                    if self._stopping:
                        return
                    self._wanted = False
                    self._running = True
                self._collect_once(source)
        except Exception:  # the source could not even be made: every request says so
            log.exception("the collector thread failed")
            with self._cond:
                self._error = "the collector could not start; see the exporter's log"
                self._seq += 1
                self._cond.notify_all()
        finally:
            if source is not None:
                source.close()

    def _ahead_in(self) -> float | None:
        """Seconds until a collection should start to be done just before the next scrape
        (called with the lock held), or None: no steady scraper, or the snapshot will still
        be fresh when it comes."""
        margin = 0.5 * self._last_duration + 0.05  # how old the snapshot is at the scrape
        if margin >= self.min_interval / 2:
            return None  # it would be too old for the scrape, which would collect again
        now = time.monotonic()
        nxt = self._cadence.next_ask(now)
        if nxt is None or self._done_at + self.min_interval > nxt:
            return None
        return nxt - self._last_duration - margin - now

    def _collect_once(self, source: Source) -> None:
        t0 = time.monotonic()
        snap: Snapshot | None = None
        error: str | None = None
        try:
            if not os.path.isdir(self._run_root):
                raise Unavailable(f"run root {self._run_root} does not exist (any more)")
            snap = source.next()
        except Unavailable as exc:
            error = str(exc)
        except Exception as exc:  # one bad cycle is a 503 with the reason, never a crash
            log.exception("collection failed")
            error = f"collection failed: {type(exc).__name__}: {exc}"
        with self._cond:
            if error is not None:
                if error != self._error:
                    log.warning("%s", error)
                self._failures += 1
            elif self._error is not None:
                log.info("collections succeed again")
            self._error = error
            if snap is not None:
                self._snap = snap
            self._last_duration = time.monotonic() - t0
            self._done_at = time.monotonic()
            self._running = False
            self._seq += 1
            self._cond.notify_all()
