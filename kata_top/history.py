"""Traffic history per sandbox for 15 minutes, in bounded memory.

The last minute at full resolution (one point per snapshot), then 15-second buckets back to
15 minutes: at most 60 + 60 points per sandbox whatever the refresh, so 200 sandboxes cost
well under a megabyte. The detail screen draws it with the sandbox's events marked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

RAW_S = 60.0
BUCKET_S = 15.0
WINDOW_S = 15 * 60.0

Point = tuple[float, float, float]  # (time, in bits/s, out bits/s)


@dataclass
class _Series:
    raw: deque[Point] = field(default_factory=lambda: deque(maxlen=600))
    buckets: deque[Point] = field(
        default_factory=lambda: deque(maxlen=int(WINDOW_S / BUCKET_S)))
    _acc: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0])  # start, n, in, out

    def add(self, t: float, v_in: float, v_out: float) -> None:
        self.raw.append((t, v_in, v_out))
        while self.raw and self.raw[0][0] < t - RAW_S:
            self._fold(self.raw.popleft())

    def _fold(self, p: Point) -> None:
        start, n, s_in, s_out = self._acc
        if n and p[0] >= start + BUCKET_S:
            self.buckets.append((start, s_in / n, s_out / n))
            n = s_in = s_out = 0.0
        if not n:
            start = p[0]
        self._acc = [start, n + 1, s_in + p[1], s_out + p[2]]

    def points(self) -> list[Point]:
        start, n, s_in, s_out = self._acc
        pending = [(start, s_in / n, s_out / n)] if n else []
        return [*self.buckets, *pending, *self.raw]


class TrafficHistory:
    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}

    def add(self, t: float, samples: Iterable[tuple[str, float, float]]) -> None:
        """One snapshot's (sandbox id, in, out); sandboxes not in it are forgotten."""
        seen = set()
        for sid, v_in, v_out in samples:
            self._series.setdefault(sid, _Series()).add(t, v_in, v_out)
            seen.add(sid)
        for gone in set(self._series) - seen:
            del self._series[gone]

    def points(self, sandbox_id: str) -> list[Point]:
        s = self._series.get(sandbox_id)
        return s.points() if s else []

    def __len__(self) -> int:
        return sum(len(s.raw) + len(s.buckets) for s in self._series.values())


def resample(points: list[Point], width: int, now: float,
             window: float = WINDOW_S) -> tuple[list[float | None], list[float | None]]:
    """`width` columns of the last `window` seconds (in, out); a column with no point repeats
    its left neighbour so a gap in the data does not look like silence, and columns before
    the first point are None (no data yet, not zero)."""
    cols_in, cols_out = [0.0] * width, [0.0] * width
    counts = [0] * width
    start = now - window
    for t, v_in, v_out in points:
        if t < start:
            continue
        i = min(width - 1, int((t - start) / window * width))
        cols_in[i] += v_in
        cols_out[i] += v_out
        counts[i] += 1
    out_in: list[float | None] = [None] * width
    out_out: list[float | None] = [None] * width
    for i in range(width):
        if counts[i]:
            out_in[i], out_out[i] = cols_in[i] / counts[i], cols_out[i] / counts[i]
        elif i:
            out_in[i], out_out[i] = out_in[i - 1], out_out[i - 1]
    return out_in, out_out


def marks(times: Iterable[float], width: int, now: float, window: float = WINDOW_S) -> str:
    """A line of `width` with ▲ under the columns where an event happened."""
    line = [" "] * width
    start = now - window
    for t in times:
        if start <= t <= now:
            line[min(width - 1, int((t - start) / window * width))] = "▲"
    return "".join(line)
