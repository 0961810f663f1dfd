"""A steady scraper's next scrape is predicted, and the hub collects just before it: the scrape
is answered at once, for the same one collection per scrape; anything irregular, or a scraper
that went away, is collected on demand only."""

from __future__ import annotations

import time
from typing import Any

from kata_top.serve.cadence import Cadence
from kata_top.serve.hub import SnapshotHub
from tests.unit.test_serve import CountingSource


def test_a_steady_period_predicts_the_next_ask() -> None:
    c = Cadence(same_tick_s=1.0)
    for t in (10.0, 25.0, 40.02, 40.5, 55.01):  # 40.5: a second scraper on the same tick
        c.asked(t)
    assert c.next_ask(55.1) is not None and abs(c.next_ask(55.1) - 70.01) < 0.1  # type: ignore
    assert c.next_ask(80.0) is None  # half a period late: the scraper went away


def test_an_irregular_caller_predicts_nothing() -> None:
    c = Cadence(same_tick_s=1.0)
    for t in (0.0, 3.0, 11.0, 12.5):
        c.asked(t)
    assert c.next_ask(13.0) is None
    c = Cadence(same_tick_s=1.0)
    c.asked(0.0)
    c.asked(15.0)
    assert c.next_ask(16.0) is None  # two asks are not yet a cadence


def _scrape(hub: SnapshotHub) -> float:
    t0 = time.monotonic()
    hub.get(5.0)
    return time.monotonic() - t0


def test_a_steady_scrape_finds_its_collection_done(tmp_path: Any) -> None:
    source = CountingSource(delay=0.15)
    hub = SnapshotHub(lambda: source, str(tmp_path), min_interval=0.5)
    hub.start()
    try:
        waits = []
        for _ in range(8):
            t0 = time.monotonic()
            waits.append(_scrape(hub))
            time.sleep(max(0.0, 0.8 - (time.monotonic() - t0)))  # a slow scrape: no ValueError
        # the first scrapes wait for their collection; once the period is known, the
        # collection is done when the scrape comes
        assert min(waits[:3]) >= 0.14
        assert max(waits[5:]) < 0.1, waits
        assert hub.prefetched >= 3
        assert source.calls <= 9  # one collection per scrape (and at most one spare)
        calls = source.calls
        time.sleep(1.5)  # the scraper went away: nothing more is collected
        assert source.calls <= calls + 1
    finally:
        hub.stop()


def test_no_collection_ahead_when_every_request_wants_its_own(tmp_path: Any) -> None:
    source = CountingSource(delay=0.05)
    hub = SnapshotHub(lambda: source, str(tmp_path), min_interval=0.0)
    hub.start()
    try:
        for _ in range(5):
            _scrape(hub)
            time.sleep(0.3)
        assert hub.prefetched == 0 and source.calls == 5
    finally:
        hub.stop()
