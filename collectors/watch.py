"""Wake the dashboard when sandboxes come and go, without waiting for the next poll.

pyinotify watches the state roots and /run/netns. Traps, each seen on this kernel: a directory
that does not exist yet cannot be watched (it is left to the poll; a parent is never watched
recursively instead), `ip netns add` fires IN_CREATE before the namespace is mounted (a
second wake-up shortly after catches it), and a queue overflow means events were lost (any
event triggers a full collection anyway).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

MASK_NAMES = ("IN_CREATE", "IN_DELETE", "IN_MOVED_TO", "IN_MOVED_FROM", "IN_CLOSE_WRITE",
              "IN_Q_OVERFLOW", "IN_DELETE_SELF")
SECOND_LOOK_S = 0.3


class StateWatcher:
    def __init__(self, paths: Sequence[str], on_change: Callable[[], None],
                 min_interval: float = 0.2) -> None:
        import pyinotify

        self._on_change = on_change
        self._min_interval = min_interval
        self._last = 0.0
        self._timer: threading.Timer | None = None
        # after stop() nothing is called back: a second look already counting down, or an
        # event being handled in the notifier's thread, would wake a UI that has gone
        self._lock = threading.Lock()
        self._stopped = False
        mask = 0
        for name in MASK_NAMES:
            mask |= getattr(pyinotify, name)
        self._wm = pyinotify.WatchManager()
        watcher = self

        class Handler(pyinotify.ProcessEvent):  # type: ignore[misc]
            def process_default(self, event: Any) -> None:
                watcher.fire()

        self._notifier = pyinotify.ThreadedNotifier(self._wm, Handler())
        self._notifier.daemon = True
        self._mask = mask
        self.missing: list[str] = []
        for p in paths:
            if os.path.isdir(p) and not os.path.islink(p):
                # Kata's trees are one directory per sandbox: recursion is two levels deep,
                # a few watches per sandbox. auto_add follows new sandboxes.
                self._wm.add_watch(p, mask, rec=True, auto_add=True, quiet=True)
            else:
                self.missing.append(p)
        # A state tree that does not exist yet is never replaced by watching a parent
        # recursively (a mistyped run root such as /usr would cost thousands of watches of
        # root's inotify budget, shared with kubelet and containerd): the poll covers it.

    @property
    def watch_count(self) -> int:
        """How many inotify watches this watcher holds (root's budget is shared)."""
        return len(self._wm.watches)

    @property
    def running(self) -> bool:
        return bool(self._notifier.is_alive())

    def start(self) -> None:
        self._notifier.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._timer:
                self._timer.cancel()
        self._notifier.stop()

    def _call(self) -> None:
        with self._lock:
            if self._stopped:
                return
        self._on_change()

    def fire(self) -> None:
        now = time.monotonic()
        if now - self._last >= self._min_interval:
            self._last = now
            self._call()
        # A second look catches the namespace that was not mounted yet at IN_CREATE.
        with self._lock:
            if not self._stopped and (self._timer is None or not self._timer.is_alive()):
                self._timer = threading.Timer(SECOND_LOOK_S, self._call)
                self._timer.daemon = True
                self._timer.start()


def watch_paths(run_root: str) -> list[str]:
    return [os.path.join(run_root, "vc", "sbs"), os.path.join(run_root, "kata"), "/run/netns"]
