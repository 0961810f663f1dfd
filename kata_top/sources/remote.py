"""A node dashboard fed by a remote `kata-top serve` (its /api/v1/snapshot), read-only."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING

from kata_top.boundedjson import check_depth, loads
from kata_top.formats.jsonin import RecordingError, decode
from kata_top.httpget import where
from kata_top.model import Snapshot
from kata_top.sources.base import Source, SourceError

if TYPE_CHECKING:
    from kata_top.drops.model import DropReport

# A snapshot is ~7 KB per sandbox (1.4 MB at 200): 32 MiB is ample, and decoding it stays
# within a few hundred MB however it is shaped.
MAX_BYTES = 32 << 20


class RemoteSource(Source):
    kind = "remote"
    read_only = True

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.label = where(self.url)  # user:password authenticate; never on screen
        self.timeout = timeout

    def next(self) -> Snapshot:
        """The node's current snapshot; SourceError (the last good one stays on screen)."""
        from kata_top.httpget import HttpError, fetch, server_text

        try:
            body = fetch(self.url + "/api/v1/snapshot", timeout=self.timeout,
                         max_bytes=MAX_BYTES)
        except HttpError as exc:
            reason = f": {server_text(exc.body)}" if exc.body else ""
            raise SourceError(f"{exc}{reason}") from exc
        try:
            check_depth(body)
            return decode(body)
        except (ValueError, RecordingError) as exc:
            raise SourceError(f"{where(self.url)} did not send a kata-top snapshot: "
                              f"{server_text(str(exc))}") from exc

    def trace_drops(self, seconds: int, sandbox_id: str | None = None,
                    progress: Callable[[float, float], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> DropReport:
        """Ask the node's serve for one trace (`POST /api/v1/drops`; the node refuses unless
        its exporter has authentication, given here as the URL's user:password)."""
        from kata_top.drops.reader import report_from_dict
        from kata_top.httpget import HttpError, fetch, server_text

        query = {"seconds": str(seconds), **({"sandbox": sandbox_id} if sandbox_id else {})}
        done = threading.Event()
        if progress is not None:  # the node traces: count its seconds down from here
            tick = progress
            start = time.monotonic()

            def countdown() -> None:
                while not done.wait(0.5):
                    tick(max(0.0, seconds - (time.monotonic() - start)), float(seconds))

            threading.Thread(target=countdown, daemon=True).start()
        try:  # the URL's user:password go as basic authentication (httpget)
            body = fetch(f"{self.url}/api/v1/drops?{urllib.parse.urlencode(query)}", data=b"",
                         timeout=self.timeout + seconds + 30, max_bytes=MAX_BYTES)
        except HttpError as exc:
            reason = f": {server_text(exc.body)}" if exc.body else ""
            raise SourceError(f"{exc}{reason}") from exc
        finally:
            done.set()
        try:
            return report_from_dict(loads(body))
        except (ValueError, RecursionError) as exc:
            raise SourceError(f"{where(self.url)} did not send a drop report: "
                              f"{server_text(str(exc))}") from exc
