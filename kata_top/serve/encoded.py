"""Each collection's answers encoded once and handed, the same bytes, to every client.

A scrape, an /api/v1/snapshot request and a local client's `kata-top snapshot --json` of the
same collection all want the same bytes (JSON, Prometheus text, their gzip); encoding them per
request made every client pay the whole encoding again (a 1,000-sandbox document is several
megabytes). Entries are keyed by what they encode and belong to one snapshot object: the first
request for a key builds it while the others wait for that build, and the next collection's
first request drops them all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable


class PerCollection:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: object | None = None  # the snapshot the entries were built from
        self._entries: dict[Hashable, bytes] = {}
        self._building: dict[Hashable, threading.Lock] = {}
        self.builds = 0  # how many entries were built (for tests and bench/)

    def get(self, snap: object, key: Hashable, build: Callable[[], bytes]) -> bytes:
        """The bytes `build()` gives for `snap`, built at most once per (snapshot, key) while
        `snap` is the newest snapshot asked for (an older one is built but not kept)."""
        with self._lock:
            if snap is not self._owner:
                if self._owner is not None and not self._newer(snap):
                    stale = True
                else:
                    self._owner, self._entries, self._building = snap, {}, {}
                    stale = False
            else:
                stale = False
            if not stale:
                found = self._entries.get(key)
                if found is not None:
                    return found
                gate = self._building.setdefault(key, threading.Lock())
        if stale:
            return build()
        with gate:  # one build per key; the others wait for it and take its bytes
            with self._lock:
                if snap is self._owner and key in self._entries:
                    return self._entries[key]
            body = build()
            self.builds += 1
            with self._lock:
                if snap is self._owner:
                    self._entries[key] = body
            return body

    def _newer(self, snap: object) -> bool:
        """A request still holding the previous collection must not evict the current one."""
        mine = getattr(self._owner, "taken_at", 0.0)
        return float(getattr(snap, "taken_at", 0.0)) >= float(mine)
