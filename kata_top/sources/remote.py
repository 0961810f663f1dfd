"""A node dashboard fed by a remote `kata-top serve` (its /api/v1/snapshot), read-only."""

from __future__ import annotations

import json

from kata_top.boundedjson import check_depth
from kata_top.formats.jsonin import RecordingError, snapshot_from_dict
from kata_top.model import Snapshot
from kata_top.sources.base import Source, SourceError

# A snapshot is ~7 KB per sandbox (1.4 MB at 200): 32 MiB is ample, and decoding it stays
# within a few hundred MB however it is shaped.
MAX_BYTES = 32 << 20


class RemoteSource(Source):
    kind = "remote"
    read_only = True

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.label = self.url
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
            return snapshot_from_dict(json.loads(body))
        except (ValueError, RecursionError, RecordingError) as exc:
            raise SourceError(f"{server_text(self.url)} did not send a kata-top snapshot: "
                              f"{server_text(str(exc))}") from exc
