"""When the next scrape will come, when one scraper asks at a steady period.

Prometheus scrapes each target at a fixed interval (and spreads targets over it, each at the
same offset every time). An exporter that collects when a scrape arrives makes every scrape
wait for a collection; one that knows the period can collect just before the next scrape and
answer it at once, for the same one collection per scrape. Only a steady cadence counts: asks
closer than the hub's min_interval to the last one are the same tick (two scrapers, a retry),
and anything irregular (a person's curl, several scrapers at other offsets) predicts nothing,
so the hub then collects on demand only, as before.
"""

from __future__ import annotations

import itertools
from collections import deque


class Cadence:
    def __init__(self, same_tick_s: float, keep: int = 4, tolerance: float = 0.1) -> None:
        self.same_tick_s = same_tick_s
        self.tolerance = tolerance
        self._asks: deque[float] = deque(maxlen=keep)

    def asked(self, now: float) -> None:
        if not self._asks or now - self._asks[-1] >= max(self.same_tick_s, 0.05):
            self._asks.append(now)

    def next_ask(self, now: float) -> float | None:
        """The monotonic time of the next ask, or None (no steady cadence, or it stopped)."""
        if len(self._asks) < 3:
            return None
        asks = list(self._asks)
        gaps = sorted(b - a for a, b in itertools.pairwise(asks))
        period = gaps[len(gaps) // 2]
        if period < 0.2 or gaps[-1] - gaps[0] > self.tolerance * period + 0.05:
            return None
        nxt = asks[-1] + period
        return nxt if now <= nxt + period / 2 else None  # the scraper went away
