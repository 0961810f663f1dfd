"""The audit log's new lines, read as it grows: kata-top's own actions, told as events."""

from __future__ import annotations

import os
from typing import Any

from kata_top.boundedjson import loads


class AuditTail:
    """The audit log's lines appended since the last call (kata-top's own actions), read
    without following a link and without blocking; a rotated or truncated log is re-read
    from its start.

    One audit log serves every run root on the node: with `run_root`, a line naming another
    root is not this stream's and is left out here. Lines that name none (written before
    the log recorded roots) pass, for the events' diff to judge by their sandbox."""

    def __init__(self, path: str, run_root: str | None = None) -> None:
        self.path = path
        self.run_root = os.path.normpath(run_root) if run_root else None
        # Actions before we started are history, not events: start at the log's end. A log
        # that does not exist yet is read from its start when it appears.
        try:
            st = os.lstat(path)
            self._offset: int | None = st.st_size
            self._ino: int | None = st.st_ino
        except OSError:
            self._offset, self._ino = 0, None

    def new_entries(self) -> list[dict[str, Any]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return []
        try:
            st = os.fstat(fd)
            if self._offset is None or (self._ino is not None and st.st_ino != self._ino) \
                    or st.st_size < self._offset:
                self._offset = 0  # rotated or truncated: the new log from its start
            self._ino = st.st_ino
            if st.st_size == self._offset:
                return []
            os.lseek(fd, self._offset, os.SEEK_SET)
            data = os.read(fd, min(st.st_size - self._offset, 4 << 20))
        finally:
            os.close(fd)
        lines = data.split(b"\n")
        complete, rest = lines[:-1], lines[-1]  # a line being written waits for next time
        self._offset += len(data) - len(rest)
        out = []
        for line in complete:
            try:
                entry = loads(line)
            except ValueError:
                continue
            # an intent is not an action yet: its outcome line is (or an unfinished change)
            if isinstance(entry, dict) and entry.get("phase") != "intent" \
                    and self._ours(entry):
                out.append(entry)
        return out

    def _ours(self, entry: dict[str, Any]) -> bool:
        root = entry.get("run_root")
        if self.run_root is None or root is None:
            return True
        return isinstance(root, str) and os.path.normpath(root) == self.run_root
