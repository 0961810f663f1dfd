"""A recording (`snapshot --watch` NDJSON) opened for replay: its lines indexed, each snapshot
built when it is shown.

Building every snapshot up front made `--replay` wait and hold them all: a minute of a
200-sandbox node (~1 MB a line) took ~20 s and ~300 MB, an hour would not have fit. Opening
reads the file once for where its lines start, builds the first (it must be a snapshot) and
checks the last (an interrupted `--watch` leaves it cut off); the others are read back by
offset and built on demand, the last few kept.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import overload

from kata_top.formats.jsonin import RecordingError, decode, whole
from kata_top.model import Snapshot

KEPT = 8  # built snapshots kept: stepping back and forth does not build them again

log = logging.getLogger(__name__)

Line = tuple[int, int, int]  # offset, length, line number (1-based)


class Recording(Sequence[Snapshot]):
    """The snapshots of an NDJSON recording, in order. A line found damaged when it is
    first built ends the recording there: IndexError, `warning` says so and len() shrinks;
    what came before it still plays, as when it was cut off."""

    def __init__(self, path: str) -> None:
        from kata_top.collectors.safeopen import open_regular

        try:
            self._fh = open_regular(path)
        except OSError as exc:
            raise RecordingError(f"cannot open {path}: {exc.strerror or exc}") from exc
        self.path = path
        self.warning: str | None = None
        self._built: OrderedDict[int, Snapshot] = OrderedDict()
        self._lock = threading.Lock()  # the collect worker and a key's seek may both read
        try:
            self._lines = self._index()
            self._check_ends()
        except BaseException:
            self._fh.close()
            raise

    def _index(self) -> list[Line]:
        lines: list[Line] = []
        offset = 0
        for n, raw in enumerate(self._fh, 1):
            if raw and not raw.isspace():  # blank lines are skipped, as ever
                lines.append((offset, len(raw), n))
            offset += len(raw)
        return lines

    def _check_ends(self) -> None:
        if not self._lines:
            raise RecordingError(f"{self.path} is empty: no snapshots to replay")
        try:
            self._first = self._decode(0)
        except RecordingError as exc:
            raise RecordingError(f"{self.path} is not a kata-top recording (line "
                                 f"{self._lines[0][2]}: {str(exc)[:120]}); make one with "
                                 "`kata-top snapshot --watch 1 > FILE`") from exc
        # `--watch` stopped mid-line (killed, the disk full): only the last line is read
        # now, the others when shown
        if len(self._lines) > 1 and not whole(self._read(len(self._lines) - 1)):
            self._cut(len(self._lines) - 1)

    def _read(self, i: int) -> bytes:
        offset, length, _n = self._lines[i]
        return os.pread(self._fh.fileno(), length, offset)

    def _decode(self, i: int) -> Snapshot:
        # (a read that fails, or a closed recording, is no damage; bad UTF-8, bad JSON or
        # nesting too deep is this line's, a RecordingError)
        return decode(self._read(i))

    def _cut(self, i: int) -> None:
        """The recording ends before line i: it is cut off or damaged."""
        self.warning = (f"recording ends early: line {self._lines[i][2]} is cut off or "
                        f"damaged; {i} snapshots to replay")
        log.warning("%s: %s", self.path, self.warning)
        del self._lines[i:]
        for k in [k for k in self._built if k >= i]:
            del self._built[k]

    def __len__(self) -> int:
        return len(self._lines)

    @overload
    def __getitem__(self, i: int) -> Snapshot: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[Snapshot]: ...

    def __getitem__(self, i: int | slice) -> Snapshot | Sequence[Snapshot]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        with self._lock:
            if i < 0:
                i += len(self._lines)
            if not 0 <= i < len(self._lines):
                raise IndexError(i)
            if i == 0:
                return self._first  # kept: a recording always has it
            snap = self._built.get(i)
            if snap is not None:
                self._built.move_to_end(i)
                return snap
            try:
                snap = self._decode(i)
            except RecordingError:
                self._cut(i)
                raise IndexError(i) from None
            self._built[i] = snap
            if len(self._built) > KEPT:
                self._built.popitem(last=False)
            return snap

    def close(self) -> None:
        with self._lock:  # not while a worker reads: its fd number could be reused meanwhile
            self._fh.close()


def open_recording(path: str) -> Recording:
    """The recording at path (a regular file; a FIFO or device is refused without blocking).
    RecordingError when it cannot be opened, is empty or its first line is no snapshot."""
    return Recording(path)


def load_recording(path: str) -> tuple[list[Snapshot], str | None]:
    """Every snapshot of a recording, built now, and its warning when it ends early: what a
    replay plays to its end (tests, bench/). RecordingError as open_recording."""
    rec = Recording(path)
    try:
        return list(rec), rec.warning
    finally:
        rec.close()
