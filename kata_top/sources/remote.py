"""A node dashboard fed by a remote `kata-top serve` (its /api/v1/snapshot), read-only."""

from __future__ import annotations

import urllib.error
import urllib.request

from kata_top.formats.jsonin import RecordingError, decode
from kata_top.model import Snapshot
from kata_top.sources.base import Source, SourceError

MAX_BYTES = 256 << 20


class RemoteSource(Source):
    kind = "remote"
    read_only = True

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.label = self.url
        self.timeout = timeout

    def next(self) -> Snapshot:
        """The node's current snapshot; SourceError (the last good one stays on screen)."""
        try:
            with urllib.request.urlopen(self.url + "/api/v1/snapshot",
                                        timeout=self.timeout) as resp:
                body = resp.read(MAX_BYTES + 1)
        except urllib.error.HTTPError as exc:
            reason = exc.read(500).decode("utf-8", "replace").strip()
            raise SourceError(f"{self.url} answered {exc.code}: {reason}") from exc
        except (OSError, ValueError) as exc:
            raise SourceError(f"{self.url} unreachable: {getattr(exc, 'reason', exc)}") from exc
        if len(body) > MAX_BYTES:
            raise SourceError(f"{self.url} sent more than {MAX_BYTES >> 20} MiB")
        try:
            return decode(body)
        except RecordingError as exc:
            raise SourceError(f"{self.url} did not send a kata-top snapshot: {exc}") from exc
